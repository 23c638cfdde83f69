"""One `digest-rag search` process on a lexical index of N small synthetic papers: today's code (e0e9ee5) vs now.

    python benchmarks/synth_papers.py --papers 1000000 --out /tmp/digest_rag_bench/synth-1m.jsonl
    digest-rag build /tmp/digest_rag_bench/synth-1m.jsonl --index /tmp/digest_rag_bench/synth-1m-lex --lexical-only
    python benchmarks/bench_scale.py --index /tmp/digest_rag_bench/synth-1m-lex [--rounds 3]

The index is built once (minutes at 1M; in the background, e.g. nohup) by whichever code can read it back:
both codes read format-1 indexes, so one built by the baseline serves both. Each round runs the baseline's
and the current tree's CLI on the same index and queries (an English and a Korean one), interleaved, and
reports wall time and peak RSS (/usr/bin/time) of each process; one warm-up run each first (page cache).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import BASELINE_COMMIT, ROOT, baseline_tree, code_env, machine, timed_process  # noqa: E402

QUERIES = ["scaling laws for language models", "긴 컨텍스트를 악용하는 탈옥 공격"]
TARGET_S, TARGET_MIB = 3.0, 1536.0  # issue 14, at 1M papers


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--index", type=Path, required=True)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    manifest = json.loads((args.index / "manifest.json").read_text())
    codes = {f"baseline-{BASELINE_COMMIT}": baseline_tree(), "current": ROOT}

    def cmd(query: str) -> list[str]:
        return [sys.executable, "-m", "digest_rag.cli", "search", query, "--index", str(args.index), "-k", "5",
                "--mode", "lexical", "--json"]

    results: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for tag, tree in codes.items():  # warm-up: page cache, compiled glossary
        timed_process(cmd(QUERIES[0]), code_env(tree), timeout=3600)
    for r in range(args.rounds):
        for q in QUERIES:
            for tag, tree in (list(codes.items()) if r % 2 == 0 else reversed(list(codes.items()))):
                wall, rss, out = timed_process(cmd(q), code_env(tree), timeout=3600)
                assert json.loads(out), f"{tag}: no hits for {q!r}"
                results.setdefault((q, tag), []).append((wall, rss))
        print(f"# round {r + 1}/{args.rounds} done", file=sys.stderr)
    base, cur = codes
    print(f"# machine: {machine()}")
    print(f"# index: {args.index} ({manifest['paper_count']} papers, {manifest['chunk_count']} chunks); "
          f"{args.rounds} rounds interleaved; median (min-max)")
    print(f"| query | {base} wall s | current wall s | ratio | {base} peak RSS MiB | current peak RSS MiB | ratio |")
    print("|---|---|---|---|---|---|---|")
    for q in QUERIES:
        b, c = results[(q, base)], results[(q, cur)]
        cells = []
        for i, fmt in ((0, "{:.2f}"), (1, "{:.0f}")):
            bs, cs = [x[i] for x in b], [x[i] for x in c]
            cells += [f"{fmt.format(statistics.median(bs))} ({fmt.format(min(bs))}-{fmt.format(max(bs))})",
                      f"{fmt.format(statistics.median(cs))} ({fmt.format(min(cs))}-{fmt.format(max(cs))})",
                      f"{statistics.median(cs) / statistics.median(bs):.2f}x"]
        print(f"| {q} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
