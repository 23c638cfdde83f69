"""Rebuild time: cold, no change, and 1% of papers changed, with the e5-shaped model.

The corpus (seeds + ml-papers, or the sub-folders of ml-papers named with
--subset) is copied to a scratch directory so 1% of its papers can be edited.
Each build goes through DigestIndex.build as the CLI does (model load
included). The naive baseline re-encodes every chunk on every rebuild, i.e.
costs a cold build each time. Peak RSS is the whole process's (VmHWM).

"No change" is measured three ways: the up-to-date check a plain rebuild does
(inputs and options hashed, nothing parsed or written), the same as a fresh
CLI process (imports included), and --force (the whole pipeline, every
embedding reused from the cache).

Usage: python benchmarks/bench_rebuild.py [--subset 2022] [--backend torch]
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ML_PAPERS, SEEDS, WORK, e5_shaped_model, machine, peak_rss_mib  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subset", nargs="*", default=None, help="ml-papers sub-folders to use (default: all)")
    ap.add_argument("--backend", default="torch")
    args = ap.parse_args()
    from digest_rag import DigestIndex
    from digest_rag.parsing import parse_paths

    model = e5_shaped_model()
    corpus = WORK / "rebuild-corpus"
    shutil.rmtree(corpus, ignore_errors=True)
    shutil.copytree(SEEDS, corpus / "seeds")
    if ML_PAPERS.is_dir():
        for sub in sorted(ML_PAPERS.iterdir()):
            if sub.is_dir() and (args.subset is None or sub.name in args.subset):
                shutil.copytree(sub, corpus / "ml-papers" / sub.name)
    else:
        print(f"# ml-papers absent at {ML_PAPERS}: seeds only")
    out = WORK / f"rebuild-index-{args.backend}"
    shutil.rmtree(out, ignore_errors=True)
    print(f"# machine: {machine()}")
    print(f"# corpus: seeds + ml-papers/{'{' + ','.join(args.subset) + '}' if args.subset else '*'}; backend {args.backend}")
    rows = []

    def build(label: str, force: bool = False) -> float:
        t = time.perf_counter()
        idx = DigestIndex.build([corpus], index_dir=out, model=str(model), backend=args.backend, force=force)
        secs = time.perf_counter() - t
        r = idx.last_build
        rows.append((label, secs, r.papers, r.chunks, r.encoded, r.reused))
        idx.close()
        print(f"# {label}: {secs:.1f}s, encoded {r.encoded}, reused {r.reused}, up to date {r.up_to_date}", flush=True)
        return secs

    def cli_build(label: str) -> None:
        """What a maintainer waits for: a fresh `digest-rag build` process, imports included."""
        t = time.perf_counter()
        res = subprocess.run([sys.executable, "-m", "digest_rag", "build", str(corpus), "--index", str(out),
                              "--model", str(model), "--backend", args.backend, "--json"],
                             capture_output=True, text=True, check=True)
        secs = time.perf_counter() - t
        r = json.loads(res.stdout)
        rows.append((label, secs, r["papers"], r["chunks"], r["encoded"], r["reused"]))
        print(f"# {label}: {secs:.1f}s, up to date {r['up_to_date']}", flush=True)

    cold = build("cold")
    build("no change (inputs unchanged: up-to-date check)")
    cli_build("no change, as a fresh `digest-rag build` process")
    build("no change, --force (parse, chunk, BM25; all embeddings from the cache)", force=True)
    # Edit 1% of the papers: append a sentence to the files holding them.
    parsed = parse_paths([corpus])
    by_file: dict[str, int] = {}
    for p in parsed.papers:
        by_file[p.source] = by_file.get(p.source, 0) + 1
    want = max(1, math.ceil(0.01 * len(parsed.papers)))
    touched, edited = 0, []
    for src, count in sorted(by_file.items(), key=lambda kv: kv[1]):
        if touched >= want:
            break
        with open(src, "a", encoding="utf-8") as fh:
            fh.write("\n\nThis paragraph was added by the rebuild benchmark to change the paper.\n")
        touched += count
        edited.append(src)
    build(f"{touched} of {len(parsed.papers)} papers changed ({len(edited)} files)")
    print("| rebuild | seconds | papers | chunks | encoded | reused | speed-up vs cold (naive) |")
    print("|---|---|---|---|---|---|---|")
    for label, secs, papers, chunks, enc, reused in rows:
        print(f"| {label} | {secs:.1f} | {papers} | {chunks} | {enc} | {reused} | {cold / secs:.1f}x |")
    print(f"# peak RSS of the whole run: {peak_rss_mib():.0f} MiB")


if __name__ == "__main__":
    main()
