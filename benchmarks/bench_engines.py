"""Build time by engine: local vs Ray (1 and 2 workers) on seeds + ml-papers with the e5-shaped model.

Every build is a fresh `digest-rag build ... --json` process, timed from the
outside, as a user waits for it: Python start-up, imports, model load and,
for Ray, starting a local Ray instance and its worker processes are all
included. Runs, in order:

- cold builds (new index directory, so an empty embedding cache): local, then
  Ray with each worker count; the overhead ratio is Ray's wall time over local's;
- all cached: the same build again with --force over each engine's cold index
  (every embedding from the cache, 0 encodes), which leaves only parsing,
  chunking, BM25, FAISS and each engine's fixed cost;
- lexical-only cold builds (no model at all): the engine's fixed cost plus parsing and BM25.

Ray's own start-up (`ray.init()` of a local instance and shutdown, nothing
else) is timed separately. Besides wall time, the CPU seconds of the build's
process tree (RUSAGE_CHILDREN: every descendant that was reaped, Ray's node
and worker processes included) and the load average when it started are
printed, since on a shared machine wall time depends on the neighbours. Run it alone on the machine: the encodes take
minutes on 2 cores and anything else running skews the ratio.

Usage: python benchmarks/bench_engines.py [--workers 1 2] [--skip-cold] [--seeds-only]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, SEEDS, WORK, corpora, e5_shaped_model, machine  # noqa: E402

CORPORA: list[Path] = []


def _build(label: str, index: Path, args: list[str], rows: list[dict[str, object]], *, fresh: bool = True) -> float:
    if fresh:
        shutil.rmtree(index, ignore_errors=True)
    cmd = [sys.executable, "-m", "digest_rag", "build", *[str(c) for c in CORPORA], "--index", str(index), "--json",
           *args]
    load = os.getloadavg()[0]
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    secs = time.perf_counter() - t
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    if res.returncode != 0:
        print(f"# {label}: FAILED (exit {res.returncode}): {res.stderr.strip().splitlines()[-1:]}", flush=True)
        return float("nan")
    r = json.loads(res.stdout)
    rows.append({"label": label, "seconds": secs, "cpu": cpu, "load": load, "papers": r["papers"], "chunks": r["chunks"],
                 "encoded": r["encoded"], "reused": r["reused"]})
    print(f"# {label}: {secs:.1f}s wall, {cpu:.1f}s CPU, load {load:.1f}, papers {r['papers']}, chunks {r['chunks']}, "
          f"encoded {r['encoded']}, reused {r['reused']}", flush=True)
    return secs


def _ray_startup() -> float:
    code = ("import logging, ray; ray.init(include_dashboard=False, logging_level=logging.WARNING, "
            "log_to_driver=False); ray.shutdown()")
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], capture_output=True, check=True)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="Ray worker counts to measure")
    ap.add_argument("--skip-cold", action="store_true", help="only the cached and lexical-only runs")
    ap.add_argument("--seeds-only", action="store_true", help="the 4 seed digests only (minutes instead of an hour on a busy 2-core machine)")
    args = ap.parse_args()
    CORPORA[:] = [SEEDS] if args.seeds_only else corpora()
    model = e5_shaped_model()
    print(f"# machine: {machine()}")
    print(f"# corpora: {', '.join(str(c) for c in CORPORA)}; model: e5-small-shaped random ({model})")
    rows: list[dict[str, object]] = []
    base = WORK / "engines"
    m = ["--model", str(model)]
    ray_runs = [(f"ray, {w} worker{'s' if w > 1 else ''}", ["--engine", "ray", "--workers", str(w)]) for w in args.workers]
    print(f"# Ray start-up alone (ray.init of a local instance + shutdown, fresh process): {_ray_startup():.1f}s",
          flush=True)
    cold: dict[str, float] = {}
    if not args.skip_cold:
        cold["local"] = _build("cold, local", base / "local", m, rows)
        for label, extra in ray_runs:
            cold[label] = _build(f"cold, {label}", base / label.replace(", ", "-").replace(" ", ""), m + extra, rows)
    # All cached: every embedding comes from each index's embedding cache.
    cached: dict[str, float] = {}
    cached["local"] = _build("all cached (--force), local", base / "local", m + ["--force"], rows, fresh=False)
    label, extra = ray_runs[-1]
    cached[label] = _build(f"all cached (--force), {label}", base / label.replace(", ", "-").replace(" ", ""),
                           m + extra + ["--force"], rows, fresh=False)
    lexical: dict[str, float] = {}
    lexical["local"] = _build("lexical-only, local", base / "lex-local", ["--lexical-only"], rows)
    lexical[label] = _build(f"lexical-only, {label}", base / "lex-ray", ["--lexical-only", *extra], rows)

    print()
    print("| build | wall s | CPU s (process tree) | load avg at start | papers | chunks | encoded | reused |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['label']} | {r['seconds']:.1f} | {r['cpu']:.1f} | {r['load']:.1f} | {r['papers']} | {r['chunks']} | "
              f"{r['encoded']} | {r['reused']} |")
    print()
    for name, group in (("cold", cold), ("all cached", cached), ("lexical-only", lexical)):
        if "local" in group:
            for label, secs in group.items():
                if label != "local":
                    print(f"# {name}: {label} / local = {secs / group['local']:.2f}x "
                          f"(+{secs - group['local']:.1f}s)")


if __name__ == "__main__":
    main()
