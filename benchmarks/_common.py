"""Shared helpers for the benchmark scripts: the e5-shaped model, corpora, machine description, peak memory."""

from __future__ import annotations

import platform
import resource
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SEEDS = ROOT / "corpus"
ML_PAPERS = ROOT.parent / "shared" / "corpora" / "ml-papers" / "papers"
WORK = Path("/tmp/digest_rag_bench")


def corpora() -> list[Path]:
    """The seeds, plus the shared ml-papers corpus when it is present."""
    out = [SEEDS]
    if ML_PAPERS.is_dir():
        out.append(ML_PAPERS)
    else:
        print(f"# ml-papers corpus absent at {ML_PAPERS}: seeds only", file=sys.stderr)
    return out


def e5_shaped_model() -> Path:
    """A random model with multilingual-e5-small's exact shape (built once, tokenizer trained on the corpora)."""
    from digest_rag.testing import build_e5_shaped_model, corpus_texts

    path = WORK / "e5-shaped-model"
    if not (path / "modules.json").is_file():
        build_e5_shaped_model(path, corpus_texts(corpora()))
    return path


def machine() -> str:
    """CPU model and count, as `lscpu` reports them."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        name = next((ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name")), "?")
        cpus = next((ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("CPU(s)")), "?")
    except (OSError, subprocess.CalledProcessError):
        name, cpus = platform.processor() or "?", "?"
    return f"{name}, {cpus} CPUs, Python {platform.python_version()}"


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, in MiB.

    VmHWM from /proc (reset by exec), not ru_maxrss: Linux carries ru_maxrss
    over from the parent across fork+exec, so a child would report its parent's peak.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


BASELINE_COMMIT = "e0e9ee5"  # the code before issue 14 (fast CLI): "today's figures" in bench_cli / bench_peers


def baseline_tree(commit: str = BASELINE_COMMIT) -> Path:
    """A git worktree of ``commit`` (created once under WORK), to run the old code beside the current one."""
    path = WORK / f"baseline-{commit}"
    if not (path / "digest_rag" / "__init__.py").is_file():
        WORK.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), commit],
                       check=True, capture_output=True)
    return path


def code_env(tree: Path, **extra: str) -> dict[str, str]:
    """Environment running the digest_rag of ``tree`` (PYTHONPATH first), offline."""
    import os

    env = {**os.environ, "PYTHONPATH": str(tree), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.update(extra)
    return env


def timed_process(cmd: list[str], env: dict[str, str], timeout: float = 600) -> tuple[float, float, str]:
    """Run ``cmd``; (wall seconds, peak RSS MiB, stdout). Raises on a non-zero exit.

    Measured by /usr/bin/time (GNU time): a tiny parent, so the child's peak RSS is
    its own, not inherited from a large benchmark process across fork+exec.
    The process runs in the source tree named by the env's PYTHONPATH (see `code_env`):
    ``python -m`` puts the working directory first on sys.path, ahead of PYTHONPATH,
    so running elsewhere could import another checkout's digest_rag.
    """
    import tempfile

    cwd = env.get("PYTHONPATH") or None
    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
        res = subprocess.run(["/usr/bin/time", "-f", "%e %M", "-o", tf.name, *cmd], env=env, capture_output=True,
                             text=True, timeout=timeout, cwd=cwd)
        if res.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd[:6])}... exited {res.returncode}: {res.stderr.strip()[-800:]}")
        wall, kib = tf.read().split()[-2:]
    return float(wall), int(kib) / 1024, res.stdout


#: A script timing `DigestIndex.search` in one process: argv index, mode, repeat, JSON list of queries;
#: one warm-up pass (encoder load, caches), then prints the per-query milliseconds as a JSON list.
IN_PROCESS_SEARCH = """
import json, sys, time
from digest_rag import DigestIndex
index, mode, repeat, queries = sys.argv[1], sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4])
idx = DigestIndex.load(index)
for q in queries:
    idx.search(q, k=10, mode=mode)
ms = []
for _ in range(repeat):
    for q in queries:
        t = time.perf_counter()
        idx.search(q, k=10, mode=mode)
        ms.append((time.perf_counter() - t) * 1000)
print(json.dumps(ms))
"""
