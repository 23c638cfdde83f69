"""Rebuild time: cold, no change, 1% of papers changed, and a killed build resumed, with the e5-shaped model.

The corpus (seeds + ml-papers, or the sub-folders of ml-papers named with
--subset) is copied to a scratch directory so 1% of its papers can be edited.
Each in-process build goes through DigestIndex.build as the CLI does (model
load included); "fresh process" rows run `python -m digest_rag build` and
time the whole process (interpreter start and imports included). The naive
baseline re-encodes every chunk on every rebuild, i.e. costs a cold build
each time. Peak RSS is the whole process's (VmHWM).

"No change" is measured as the up-to-date check a plain rebuild does (inputs
and options hashed, nothing parsed or written), in-process and as a fresh
process, and as --force (the whole pipeline, every embedding from the cache).
The cold build's report splits its time by stage (BuildReport.timings), which
gives the share outside encoding. The resume row starts a cold build into a
new index directory as a fresh process, SIGKILLs it once encoding passes 80%
(DIGEST_RAG_TEST_PAUSE_AT=encoding@0.8), and times the rerun.

Usage: python benchmarks/bench_rebuild.py [--subset 2022] [--backend torch] [--no-resume] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
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
    ap.add_argument("--no-resume", action="store_true", help="skip the killed-and-resumed build (another cold encode)")
    ap.add_argument("--work", type=Path, default=WORK,
                    help="scratch directory for the corpus copy and the indexes (another one lets two runs coexist)")
    args = ap.parse_args()
    from digest_rag import DigestIndex
    from digest_rag.parsing import parse_paths

    model = e5_shaped_model()
    corpus = args.work / "rebuild-corpus"
    shutil.rmtree(corpus, ignore_errors=True)
    shutil.copytree(SEEDS, corpus / "seeds")
    if ML_PAPERS.is_dir():
        for sub in sorted(ML_PAPERS.iterdir()):
            if sub.is_dir() and (args.subset is None or sub.name in args.subset):
                shutil.copytree(sub, corpus / "ml-papers" / sub.name)
    else:
        print(f"# ml-papers absent at {ML_PAPERS}: seeds only")
    out = args.work / f"rebuild-index-{args.backend}"
    shutil.rmtree(out, ignore_errors=True)
    print(f"# machine: {machine()}")
    print(f"# corpus: seeds + ml-papers/{'{' + ','.join(args.subset) + '}' if args.subset else '*'}; backend {args.backend}")
    rows = []

    reports = {}

    def build(label: str, force: bool = False) -> float:
        t = time.perf_counter()
        idx = DigestIndex.build([corpus], index_dir=out, model=str(model), backend=args.backend, force=force)
        secs = time.perf_counter() - t
        r = idx.last_build
        reports[label] = r
        rows.append((label, secs, r.papers, r.chunks, r.encoded, r.reused))
        idx.close()
        print(f"# {label}: {secs:.1f}s, encoded {r.encoded}, reused {r.reused}, up to date {r.up_to_date}, "
              f"model loaded {r.model_loaded}, re-cut {r.rechunked} papers, timings {r.timings}", flush=True)
        return secs

    def cli_cmd(index: Path, *extra: str) -> list[str]:
        return [sys.executable, "-m", "digest_rag", "build", str(corpus), "--index", str(index), "--model", str(model),
                "--backend", args.backend, "--json", *extra]

    def cli_build(label: str, *extra: str, index: Path = out) -> float:
        """What a maintainer waits for: a fresh `digest-rag build` process, imports included."""
        t = time.perf_counter()
        res = subprocess.run(cli_cmd(index, *extra), capture_output=True, text=True, check=True)
        secs = time.perf_counter() - t
        r = json.loads(res.stdout)
        rows.append((label, secs, r["papers"], r["chunks"], r["encoded"], r["reused"]))
        print(f"# {label}: {secs:.2f}s, up to date {r['up_to_date']}, model loaded {r['model_loaded']}, "
              f"timings {r['timings']}", flush=True)
        return secs

    cold = build("cold")
    cold_rep = reports["cold"]
    build("no change (inputs unchanged: up-to-date check)")
    cli_build("no change, as a fresh `digest-rag build` process")
    build("no change, --force (parse, chunk, BM25; all embeddings from the cache)", force=True)
    cli_build("no change, --force, as a fresh process", "--force")
    # Edit 1% of the papers: append a sentence to the files holding them.
    parsed = parse_paths([corpus])
    by_file: dict[str, int] = {}
    for p in parsed.papers:
        by_file[p.source] = by_file.get(p.source, 0) + 1
    want = max(1, math.ceil(0.01 * len(parsed.papers)))

    def edit(tag: str) -> tuple[int, int]:
        touched, edited = 0, []
        for src, count in sorted(by_file.items(), key=lambda kv: kv[1]):
            if touched >= want:
                break
            with open(src, "a", encoding="utf-8") as fh:
                fh.write(f"\n\nThis paragraph was added by the rebuild benchmark ({tag}) to change the paper.\n")
            touched += count
            edited.append(src)
        return touched, len(edited)

    touched, files = edit("in-process")
    one_pct = build(f"{touched} of {len(parsed.papers)} papers changed ({files} files)")
    touched, files = edit("fresh process")
    cli_build(f"{touched} of {len(parsed.papers)} papers changed again, as a fresh process")

    resume = None
    if not args.no_resume:
        killed = args.work / f"rebuild-index-{args.backend}-killed"
        shutil.rmtree(killed, ignore_errors=True)
        env = {**os.environ, "DIGEST_RAG_TEST_PAUSE_AT": "encoding@0.8"}
        t = time.perf_counter()
        proc = subprocess.Popen(cli_cmd(killed, "-q"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                env=env)
        assert proc.stderr is not None
        for line in proc.stderr:
            if "paused at encoding@0.8" in line:
                break
        killed_after = time.perf_counter() - t
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        print(f"# cold build killed after {killed_after:.1f}s (encoding past 80%)", flush=True)
        resume = cli_build("cold build killed at 80% of encoding, run again (fresh process)", index=killed)

    print("| rebuild | seconds | papers | chunks | encoded | reused | speed-up vs cold (naive) |")
    print("|---|---|---|---|---|---|---|")
    for label, secs, papers, chunks, enc, reused in rows:
        print(f"| {label} | {secs:.2f} | {papers} | {chunks} | {enc} | {reused} | {cold / secs:.1f}x |")
    encode_s = cold_rep.timings.get("encode", 0.0) + cold_rep.timings.get("load", 0.0)
    print(f"# cold build stages: {cold_rep.timings}; outside encoding and model load "
          f"{cold - encode_s:.1f}s = {100 * (cold - encode_s) / cold:.1f}% of {cold:.1f}s "
          f"(outside encoding alone, model load counted as overhead: "
          f"{100 * (cold - cold_rep.timings.get('encode', 0.0)) / cold:.1f}%)")
    print(f"# 1% changed in-process: {cold / one_pct:.1f}x faster than cold")
    if resume is not None:
        print(f"# resume: encoded {rows[-1][4]} of {rows[-1][3]} chunks ({100 * rows[-1][4] / rows[-1][3]:.1f}%)")
    print(f"# peak RSS of the whole run: {peak_rss_mib():.0f} MiB")


if __name__ == "__main__":
    main()
