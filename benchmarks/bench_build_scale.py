"""Scale check: a synthetic JSONL of many tiny papers, built lexical-only, then searched from the CLI.

Issue 16 found that 1M tiny papers build (lexical-only) in 3 min 22 s at
7.2 GB peak, and one CLI search on that index takes 25 s and 3.4 GB. This
script makes sure nothing breaks at 200k papers (the default) and reports the
numbers: build time and peak RSS, the index's size, and a cold CLI search's
wall time and peak RSS, each in its own process (VmHWM). Speed and memory
targets belong to the speed and serving work; here every step must succeed.

Usage: python benchmarks/bench_scale.py [--papers 200000] [--keep]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import WORK, machine  # noqa: E402

WORDS_EN = ("scaling", "laws", "language", "model", "attention", "sparse", "retrieval", "agent", "vision",
            "diffusion", "reasoning", "benchmark", "distillation", "alignment", "robust", "efficient")
WORDS_KO = ("언어", "모델", "학습", "추론", "검색", "증류", "정렬", "효율", "평가", "데이터", "에이전트", "확산")
TAGS = ("llm", "cv", "rl", "rag", "agents", "efficiency")

# Run in a child so VmHWM is this step's alone (exec resets it).
_BUILD = """
import json, re, sys, time
from pathlib import Path
from digest_rag import DigestIndex
t = time.perf_counter()
idx = DigestIndex.build([sys.argv[1]], index_dir=sys.argv[2], lexical_only=True)
s = time.perf_counter() - t
hwm = int(re.search(r'VmHWM:\\s+(\\d+)', Path('/proc/self/status').read_text()).group(1))
print(json.dumps({"seconds": round(s, 1), "peak_rss_mib": round(hwm / 1024), "papers": idx.manifest.paper_count,
                  "chunks": idx.manifest.chunk_count, "skipped": len(idx.last_build.skipped)}))
"""


def write_corpus(path: Path, n: int, seed: int = 0) -> None:
    """``n`` tiny bilingual papers, one JSON object per line, reproducible from ``seed``."""
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(n):
            title = " ".join(rng.choices(WORDS_EN, k=5)) + f" {i}"
            rec = {
                "title": title,
                "title_ko": " ".join(rng.choices(WORDS_KO, k=4)),
                "date": f"2024-{1 + i % 12:02d}-{1 + i % 28:02d}",
                "tags": rng.sample(TAGS, 2),
                "abstract_en": " ".join(rng.choices(WORDS_EN, k=30)) + ".",
                "summary_ko": " ".join(rng.choices(WORDS_KO, k=20)) + ".",
            }
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--papers", type=int, default=200_000)
    ap.add_argument("--keep", action="store_true", help="keep the corpus and index under /tmp/digest_rag_bench")
    args = ap.parse_args()
    work = WORK / f"scale-{args.papers}"
    shutil.rmtree(work, ignore_errors=True)
    (work / "corpus").mkdir(parents=True)
    corpus = work / "corpus" / "papers.jsonl"
    t = time.perf_counter()
    write_corpus(corpus, args.papers)
    print(f"# {machine()}")
    print(f"corpus: {args.papers:,} papers, {corpus.stat().st_size / 2**20:.0f} MiB JSONL "
          f"(written in {time.perf_counter() - t:.1f}s)")
    index = work / "index"
    out = subprocess.run([sys.executable, "-c", _BUILD, str(corpus), str(index)], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"build failed (exit {out.returncode}): {out.stderr[-2000:]}")
    build = json.loads(out.stdout.strip().splitlines()[-1])
    size = sum(p.stat().st_size for p in index.rglob("*") if p.is_file())
    print(f"build (lexical-only): {build['seconds']}s, peak RSS {build['peak_rss_mib']} MiB, "
          f"{build['papers']:,} papers, {build['chunks']:,} chunks, index {size / 2**20:.0f} MiB")
    assert build["papers"] == args.papers and build["skipped"] == 0, build
    cmd = [sys.executable, "-c", "import resource, runpy, sys; sys.argv = ['digest-rag'] + sys.argv[1:]; "
           "import atexit, re; from pathlib import Path; "
           "atexit.register(lambda: print('VmHWM', re.search(r'VmHWM:\\s+(\\d+)', "
           "Path('/proc/self/status').read_text()).group(1), file=sys.stderr)); "
           "runpy.run_module('digest_rag.cli', run_name='__main__')",
           "search", "스케일링 법칙 language model", "--index", str(index), "--mode", "lexical", "-k", "5",
           "--tag", "llm", "--json"]
    t = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if res.returncode != 0:
        sys.exit(f"search failed (exit {res.returncode}): {res.stderr[-2000:]}")
    hits = json.loads(res.stdout)
    hwm = int(next(ln.split()[1] for ln in res.stderr.splitlines() if ln.startswith("VmHWM")))
    print(f"CLI search (cold process, lexical, --tag llm): {wall:.1f}s, peak RSS {hwm / 1024:.0f} MiB, "
          f"{len(hits)} hits")
    assert len(hits) == 5, hits
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
