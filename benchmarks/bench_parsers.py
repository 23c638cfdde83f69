"""Parse time of each parser (and of merging copies of one paper) at a size and at twice that size.

Issue 23: a parser or the merge that is quadratic shows a ratio near 4x; a linear one about 2x. Inputs:
the seed digests (daily, weekly, blog) repeated, the test notes repeated (older and newer styles), the
hostile newer-style note of the issue (a plain 'Title' line every other line), JSONL records with
distinct ids, and JSONL records sharing one id (merged: `parse_paths` and the build's spool). CPU seconds
of this process (a loaded machine's waits do not count), best of
``--rounds`` runs per size.

Usage: python benchmarks/bench_parsers.py [--rounds 3] [--scale 1]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import ROOT, machine  # noqa: E402

from digest_rag.build.spool import PaperSpool  # noqa: E402
from digest_rag.parsing import detect_format, parse_paths, parse_text  # noqa: E402
from digest_rag.text import read_text  # noqa: E402
from tests.parsing.test_scaling import _best, hostile_note, shared_id_records  # noqa: E402


def _repeat(path: Path, k: int) -> tuple[str, Callable[[], object]]:
    text = read_text(path)
    fmt = detect_format(text, str(path))
    big = ("\n\n" + text) * k
    return big, lambda: parse_text(big, str(path), fmt)


def _merge(tmp: Path, n: int, spool: bool) -> tuple[str, Callable[[], object]]:
    d = tmp / f"{'spool' if spool else 'paths'}-{n}"
    d.mkdir(exist_ok=True)
    text = shared_id_records(n)
    (d / "dup.jsonl").write_text(text, encoding="utf-8")
    if not spool:
        return text, lambda: parse_paths([d])

    def run() -> None:
        with PaperSpool() as sp:
            sp.parse_paths([d])
    return text, run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--scale", type=int, default=1, help="multiply every size")
    args = ap.parse_args()
    s = args.scale
    tmp = Path(tempfile.mkdtemp(prefix="bench-parsers-"))
    notes = ROOT / "tests" / "data" / "notes"
    jsonl = lambda n: "".join(f'{{"id": "p{i}", "title": "Paper {i}", "abstract": "x y"}}\n' for i in range(n))  # noqa: E731
    cases: list[tuple[str, str, Callable[[int], tuple[str, Callable[[], object]]], int]] = [
        ("daily", "seed daily digest repeated", lambda k: _repeat(ROOT / "corpus/2024-02-13-daily-digest.txt", k), 16),
        ("weekly", "seed weekly roundup repeated", lambda k: _repeat(ROOT / "corpus/2024-04-weekly-top-papers-roundup.txt", k), 8),
        ("blog", "seed blog post repeated", lambda k: _repeat(ROOT / "corpus/2024-04-22-blog-llama-introduction.txt", k), 16),
        ("notes (older)", "'Wrapped Title' note repeated", lambda k: _repeat(notes / "250111 Wrapped Title.md", k), 1024),
        ("notes (newer)", "'English Commentary' note repeated", lambda k: _repeat(notes / "250113 English Commentary.md", k), 1024),
        ("notes (newer)", "note without a title line repeated",
         lambda k: _repeat(notes / "250116 Can Small Training Runs Reliably Guide Data Curation.md", k), 2048),
        ("notes (newer)", "issue 23's hostile note (KB)", lambda kb: (t := hostile_note(kb), lambda: parse_text(t, "n.md", "notes")), 105),
        ("jsonl", "records with distinct ids", lambda n: (t := jsonl(n), lambda: parse_text(t, "x.jsonl")), 8000),
        ("merge", "records sharing one id, parse_paths", lambda n: _merge(tmp, n, spool=False), 4000),
        ("merge", "records sharing one id, build spool", lambda n: _merge(tmp, n, spool=True), 4000),
    ]
    print(f"# {machine()}; best of {args.rounds}")
    print("| parser | input | size n | input at n | CPU s at n | CPU s at 2n | ratio |")
    print("|---|---|---|---|---|---|---|")
    for parser, what, make, n in cases:
        n *= s
        text1, run1 = make(n)
        text2, run2 = make(2 * n)
        run1()  # warm
        t1, t2 = _best(run1, args.rounds), _best(run2, args.rounds)
        print(f"| {parser} | {what} | {n:,} | {len(text1.encode()) / 1024:,.0f} KB | {t1:.3f} | {t2:.3f} | "
              f"{t2 / t1:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
