"""Issue 16 scale check: a synthetic JSONL of many small papers builds lexical-only and answers a CLI search.

    python benchmarks/bench_build_scale.py [--papers 200000] [--keep]

Issue 16 found that 1M tiny papers build (lexical-only) in 3 min 22 s at 7.2 GB peak and that one CLI search
on that index took 25 s and 3.4 GB. Speed and memory targets belong to the speed and serving work; this
makes sure nothing breaks at 200k papers (the default): the corpus (benchmarks/synth_papers.py) is written,
`digest-rag build --lexical-only` and one `digest-rag search` run as their own processes, and each one's
wall time and peak RSS (/usr/bin/time) are printed with the index's size. Any failure exits non-zero.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import synth_papers  # noqa: E402
from _common import ROOT, WORK, code_env, machine, timed_process  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--papers", type=int, default=200_000)
    ap.add_argument("--keep", action="store_true", help="keep the corpus and index under /tmp/digest_rag_bench")
    args = ap.parse_args()
    work = WORK / f"build-scale-{args.papers}"
    shutil.rmtree(work, ignore_errors=True)
    t = time.perf_counter()
    corpus = synth_papers.write(args.papers, work / "corpus" / "papers.jsonl")
    print(f"# {machine()}")
    print(f"corpus: {args.papers:,} papers, {corpus.stat().st_size / 2**20:.0f} MiB JSONL "
          f"(written in {time.perf_counter() - t:.1f}s)")
    env = code_env(ROOT)
    index = work / "index"
    cli = [sys.executable, "-m", "digest_rag.cli"]
    wall, rss, out = timed_process([*cli, "build", str(corpus), "--index", str(index), "--lexical-only", "-q",
                                    "--json"], env, timeout=3600)
    report = json.loads(out)
    size = sum(p.stat().st_size for p in index.rglob("*") if p.is_file())
    print(f"build --lexical-only: {wall:.1f}s, peak RSS {rss:.0f} MiB; {report.get('papers'):,} papers, "
          f"{report.get('chunks'):,} chunks, {len(report.get('skipped', []))} skipped; index {size / 2**20:.0f} MiB")
    if report.get("papers") != args.papers or report.get("skipped"):
        sys.exit(f"unexpected build report: {str(report)[:500]}")
    for query in ("scaling laws for language models", "긴 컨텍스트를 악용하는 탈옥 공격"):
        wall, rss, out = timed_process([*cli, "search", query, "--index", str(index), "--mode", "lexical", "-k", "5",
                                        "--json"], env)
        hits = json.loads(out)
        print(f"search {query!r} (one CLI process, lexical): {wall:.1f}s, peak RSS {rss:.0f} MiB, {len(hits)} hits")
        if len(hits) != 5:
            sys.exit(f"expected 5 hits, got {len(hits)}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
