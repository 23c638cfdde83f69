"""Scale check: a synthetic JSONL of many small papers builds lexical-only and answers a CLI search.

    python benchmarks/bench_build_scale.py [--papers 200000] [--corpus FILE.jsonl] [--keep]

Issue 16 found that 1M tiny papers build (lexical-only) in 3 min 22 s at 7.2 GB peak and that one CLI search
on that index took 25 s and 3.4 GB; issue 15 asks the build to peak at <= 3 GB there, issue 14 the search
at <= 3 s and <= 1.5 GB. The corpus (benchmarks/synth_papers.py; --corpus reuses one already written, e.g.
/tmp/digest_rag_bench/synth-1m.jsonl) is built by one `digest-rag build --lexical-only` process and
searched by one `digest-rag search` process per query; each one's wall time and peak RSS (/usr/bin/time)
are printed with the index's size and the machine's load. Any failure exits non-zero. Memory figures hold
on a loaded machine; wall times do not.
"""

from __future__ import annotations

import argparse
import json
import os
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
    ap.add_argument("--corpus", type=Path, help="a JSONL already written by synth_papers.py (--papers must match)")
    ap.add_argument("--keep", action="store_true", help="keep the corpus and index under /tmp/digest_rag_bench")
    args = ap.parse_args()
    work = WORK / f"build-scale-{args.papers}"
    shutil.rmtree(work, ignore_errors=True)
    t = time.perf_counter()
    corpus = args.corpus or synth_papers.write(args.papers, work / "corpus" / "papers.jsonl")
    print(f"# {machine()}; load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"corpus: {args.papers:,} papers, {corpus.stat().st_size / 2**20:.0f} MiB JSONL "
          f"(written in {time.perf_counter() - t:.1f}s)")
    env = code_env(ROOT)
    index = work / "index"
    cli = [sys.executable, "-m", "digest_rag.frontends.cli"]
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
    print(f"# load average at the end {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
