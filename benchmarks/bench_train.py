"""Cost of `digest-rag train --static` on seeds + ml-papers, and of using the model it writes.

    python benchmarks/bench_train.py [--out /tmp/digest_rag_bench/train/model] [--reuse]

Issue 24's cost lines, on the machine's cores (2 here): training <= 10 min wall and <= 2 GB peak RSS
(one `digest-rag train` process, /usr/bin/time); the model <= 100 MB on disk; one query encoded by the
static model <= 2 ms (median over the dev questions, after loading, in-process); a full build with the
model <= 1.5x the wall time of a lexical-only build of the same corpus (two fresh `digest-rag build`
processes, each with an empty cache directory, same corpus; best of --rounds interleaved rounds). Prints one line per figure and exits non-zero when one misses.
``--reuse`` skips the training and measures an existing model at --out. Wall times on a loaded machine
are upper bounds; the load average is printed beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, WORK, code_env, corpora, machine, timed_process  # noqa: E402


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def _timed_with_cpu(cmd: list[str], env: dict[str, str]) -> tuple[float, float, float, str]:
    """(wall s, peak RSS MiB, CPU s, stdout) of one process, by GNU time: CPU time tells what an idle machine takes."""
    import subprocess
    import tempfile

    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
        res = subprocess.run(["/usr/bin/time", "-f", "%e %M %U %S", "-o", tf.name, *cmd], env=env, capture_output=True,
                             text=True, timeout=3600, cwd=env.get("PYTHONPATH") or None)
        if res.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd[:6])}... exited {res.returncode}: {res.stderr.strip()[-800:]}")
        wall, kib, user, system = tf.read().split()[-4:]
    return float(wall), int(kib) / 1024, float(user) + float(system), res.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=WORK / "train" / "model")
    ap.add_argument("--reuse", action="store_true", help="measure the model already at --out")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved build rounds (best of each kind)")
    args = ap.parse_args()
    env = code_env(ROOT)
    cli = [sys.executable, "-m", "digest_rag.frontends.cli"]
    paths = [str(p) for p in corpora()]
    print(f"# {machine()}; load average {_load()}")
    missed: list[str] = []
    if not args.reuse:
        wall, rss, cpu, out = _timed_with_cpu([*cli, "train", *paths, "--out", str(args.out), "--force", "--json"], env)
        report = json.loads(out)
        print(f"train --static ({report['steps']} steps): {wall:.1f}s wall, {cpu:.1f}s CPU (user+sys), peak RSS "
              f"{rss:.0f} MiB (load {_load()}); pairs {report['pair_counts']}; "
              f"self-check {report['selfcheck_before']} -> {report['selfcheck_after']}")
        if wall > 600:
            missed.append(f"training {wall:.0f}s > 600s")
        if rss > 2000:
            missed.append(f"training peak RSS {rss:.0f} MiB > 2000")
    size = sum(f.stat().st_size for f in args.out.rglob("*") if f.is_file())
    print(f"model size: {size / 1e6:.1f} MB")
    if size > 100e6:
        missed.append(f"model {size / 1e6:.0f} MB > 100")

    from digest_rag.dense.encoder import Encoder

    t = time.perf_counter()
    enc = Encoder.load(str(args.out), light=True)
    load_s = time.perf_counter() - t
    queries = [json.loads(line)["query"] for line in (ROOT / "eval" / "dev_queries.jsonl").read_text().splitlines()
               if line.strip()]
    times = []
    for q in queries * 3:
        t = time.perf_counter()
        enc.encode_queries([q])
        times.append((time.perf_counter() - t) * 1000)
    p50 = statistics.median(times)
    print(f"query encode: median {p50:.3f} ms, p95 {sorted(times)[int(len(times) * 0.95)]:.3f} ms over "
          f"{len(times)} encodes ({len(queries)} dev questions x 3); load {load_s:.2f}s")
    if p50 > 2.0:
        missed.append(f"query encode {p50:.2f} ms > 2")

    work = WORK / "train"
    walls: dict[str, list[float]] = {"lexical-only": [], "static model": []}
    for _round in range(args.rounds):  # interleaved: a change in the machine's load hits both alike
        for name, extra in (("lexical-only", ["--lexical-only"]), ("static model", ["--model", str(args.out)])):
            index = work / f"index-{name.split()[0]}"
            cache = work / f"cache-{name.split()[0]}"  # cold for each: no parse, token or embedding cache to reuse
            shutil.rmtree(index, ignore_errors=True)
            shutil.rmtree(cache, ignore_errors=True)
            wall, rss, _ = timed_process([*cli, "build", *paths, "--index", str(index), "--force", "-q", *extra],
                                         {**env, "DIGEST_RAG_CACHE": str(cache)}, timeout=3600)
            walls[name].append(wall)
            print(f"build {name}: {wall:.1f}s wall, peak RSS {rss:.0f} MiB (load {_load()})")
    ratio = min(walls["static model"]) / min(walls["lexical-only"])
    print(f"build with the static model / lexical-only, best of {args.rounds}: {ratio:.2f}x")
    if ratio > 1.5:
        missed.append(f"build ratio {ratio:.2f}x > 1.5x")
    print(f"# load average at the end {_load()}")
    if missed:
        sys.exit("missed: " + "; ".join(missed))


if __name__ == "__main__":
    main()
