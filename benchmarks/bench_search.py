"""Search latency, recall@10, size on disk and memory of exact vs approximate FAISS indexes.

Synthetic clustered vectors (a gaussian mixture on the unit sphere, dim 384),
not uniform noise: real E5 embeddings are clustered, and clustering is what
makes IVF routing hard or easy. Every configuration is built, saved, then
loaded and queried in a fresh subprocess so peak memory (ru_maxrss) is the
search process's own. Baseline: numpy brute force (one matrix-vector product
plus argpartition) over the same float32 matrix.

Usage:
    python benchmarks/bench_search.py --sizes 10000 100000 1000000 [--factories auto IVF2048,SQ4] [--params 8 16 32 64]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import WORK, machine  # noqa: E402

DIM = 384
N_QUERIES = 200


def mixture(n: int, rng: np.random.Generator, centres: np.ndarray) -> np.ndarray:
    """n points of the mixture: a centre plus noise whose spread varies by cluster, normalised."""
    which = rng.integers(0, len(centres), size=n)
    spread = 0.6 + 0.6 * (np.arange(len(centres)) % 7) / 6  # cluster-dependent spread 0.6 .. 1.2
    out = np.empty((n, DIM), dtype=np.float32)
    step = 100_000
    for s in range(0, n, step):
        w = which[s : s + step]
        noise = rng.standard_normal((len(w), DIM), dtype=np.float32) / np.sqrt(DIM)
        x = centres[w] + noise * spread[w, None].astype(np.float32)
        out[s : s + step] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def data(n: int) -> tuple[Path, Path]:
    """Database and query vectors for size n (cached as .npy)."""
    base = WORK / f"vectors-{n}.npy"
    queries = WORK / f"queries-{n}.npy"
    if not base.is_file():
        rng = np.random.default_rng(n)
        centres = rng.standard_normal((max(100, n // 1000), DIM)).astype(np.float32)
        centres /= np.linalg.norm(centres, axis=1, keepdims=True)
        WORK.mkdir(parents=True, exist_ok=True)
        np.save(base, mixture(n, rng, centres))
        np.save(queries, mixture(N_QUERIES, rng, centres))
    return base, queries


def child_build(vec_path: str, factory: str, out: str) -> None:
    from digest_rag.dense.faiss_index import build_faiss, save_faiss, search_param_of

    x = np.load(vec_path)
    t = time.perf_counter()
    index, used = build_faiss(np.arange(len(x), dtype=np.int64), x, None if factory == "auto" else factory)
    secs = time.perf_counter() - t
    save_faiss(index, Path(out))
    print(json.dumps({"factory": used, "build_s": round(secs, 2), "search_param": search_param_of(index)}))


def child_search(index_path: str, q_path: str, gt_path: str, param: int, mmap: bool) -> None:
    from _common import peak_rss_mib

    from digest_rag.dense.faiss_index import load_faiss, search_faiss, set_search_param

    t = time.perf_counter()
    index = load_faiss(Path(index_path), mmap=mmap)
    load_s = time.perf_counter() - t
    if param > 0:
        set_search_param(index, param)
    q = np.load(q_path)
    gt = np.load(gt_path)
    for v in q[:10]:  # warm caches / mmap pages the way a running service would have them
        search_faiss(index, v, 10)
    out: dict[str, float] = {"load_s": round(load_s, 3)}
    for k in (10, 200):
        lat, found = [], []
        for v in q:
            t = time.perf_counter()
            hits = search_faiss(index, v, k)
            lat.append((time.perf_counter() - t) * 1000)
            found.append([i for i, _ in hits[:10]])
        out[f"p50_ms_k{k}"] = round(float(np.percentile(lat, 50)), 3)
        out[f"p95_ms_k{k}"] = round(float(np.percentile(lat, 95)), 3)
        if k == 10:
            out["recall10"] = round(float(np.mean([len(set(f) & set(g[:10])) / 10 for f, g in zip(found, gt, strict=True)])), 4)
    out["peak_rss_mib"] = round(peak_rss_mib(), 1)
    print(json.dumps(out))


def child_numpy(vec_path: str, q_path: str) -> None:
    from _common import peak_rss_mib

    x = np.load(vec_path)
    q = np.load(q_path)
    lat = []
    for v in q:
        t = time.perf_counter()
        s = x @ v
        top = np.argpartition(-s, 10)[:10]
        top[np.argsort(-s[top])]
        lat.append((time.perf_counter() - t) * 1000)
    print(json.dumps({"p50_ms_k10": round(float(np.percentile(lat, 50)), 3),
                      "p95_ms_k10": round(float(np.percentile(lat, 95)), 3), "peak_rss_mib": round(peak_rss_mib(), 1)}))


def run_child(*args: str) -> dict:
    res = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(res.stderr[-2000:])
    return json.loads(res.stdout.strip().splitlines()[-1])


def ground_truth(vec_path: Path, q_path: Path) -> Path:
    gt_path = vec_path.with_suffix(".gt.npy")
    if not gt_path.is_file():
        import faiss

        x, q = np.load(vec_path), np.load(q_path)
        flat = faiss.IndexFlatIP(DIM)
        flat.add(x)
        _, ids = flat.search(q, 10)
        np.save(gt_path, ids)
    return gt_path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--factories", nargs="+", default=["IDMap2,Flat", "auto"], help="'auto' = choose_factory")
    ap.add_argument("--params", type=int, nargs="*", default=[], help="extra nprobe/efSearch values to sweep")
    ap.add_argument("--mmap", action="store_true", help="load with memory mapping")
    args = ap.parse_args()
    print(f"# machine: {machine()}")
    print(f"# {N_QUERIES} queries, dim {DIM}, clustered synthetic vectors; FAISS part only (no query encoding)")
    print("| vectors | index | param | build s | disk MiB | load s | peak RSS MiB | p50 ms k=10 | p95 ms k=10 | p50 ms k=200 | recall@10 | p50 speed-up vs numpy |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for n in args.sizes:
        vec, q = data(n)
        gt = ground_truth(vec, q)
        base = run_child("numpy", str(vec), str(q))
        print(f"| {n:,} | numpy brute force (baseline) | - | - | {vec.stat().st_size / 2**20:.0f} | - | {base['peak_rss_mib']} | "
              f"{base['p50_ms_k10']} | {base['p95_ms_k10']} | - | 1.0 | 1.0x |", flush=True)
        from digest_rag.dense.faiss_index import choose_factory

        seen: set[str] = set()
        for fac in args.factories:
            if (choose_factory(n, DIM) if fac == "auto" else fac) in seen:
                continue
            seen.add(choose_factory(n, DIM) if fac == "auto" else fac)
            path = WORK / f"index-{n}-{fac.replace(',', '_')}.faiss"
            built = run_child("build", str(vec), fac, str(path))
            params = [0] + ([p for p in args.params] if built["search_param"] is not None else [])
            for p in params:
                r = run_child("search", str(path), str(q), str(gt), str(p), "1" if args.mmap else "0")
                shown = p or built["search_param"] or "-"
                print(f"| {n:,} | {built['factory']} | {shown} | {built['build_s']} | {path.stat().st_size / 2**20:.0f} | {r['load_s']} | "
                      f"{r['peak_rss_mib']} | {r['p50_ms_k10']} | {r['p95_ms_k10']} | {r['p50_ms_k200']} | {r['recall10']} | "
                      f"{base['p50_ms_k10'] / r['p50_ms_k10']:.1f}x |", flush=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in ("build", "search", "numpy"):
        cmd, rest = sys.argv[1], sys.argv[2:]
        if cmd == "build":
            child_build(*rest)
        elif cmd == "search":
            child_search(rest[0], rest[1], rest[2], int(rest[3]), rest[4] == "1")
        else:
            child_numpy(*rest)
    else:
        main()
