"""Encoding throughput (chunks/s) of torch fp32, onnx and onnx-int8 on the same e5-shaped weights.

A deterministic sample of real chunks (seeds + ml-papers, cut by the library's
chunker with the model's tokenizer) is encoded by each backend in a fresh
subprocess, after a short warm-up. Baseline: SentenceTransformer.encode with
default settings. Agreement: mean/min cosine of each backend's embeddings with
torch's on the same inputs.

With --rounds N the backends run N times, interleaved and in a rotated order
each round, and the table reports each backend's median chunks/s: on a shared
2-core machine a single run swings by 2x, and interleaving spreads that noise
over all backends alike instead of over whichever ran at a bad moment.

Usage: python benchmarks/bench_encode.py [--sample 256] [--batch-size 32] [--rounds 1]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import WORK, corpora, e5_shaped_model, machine, peak_rss_mib  # noqa: E402


def sample_passages(model: Path, size: int) -> Path:
    out = WORK / f"passages-{size}.json"
    if out.is_file():
        return out
    from transformers import AutoTokenizer

    from digest_rag.build.chunking import chunk_papers, passage_text
    from digest_rag.models import ChunkerSettings
    from digest_rag.parsing import parse_paths

    tok = AutoTokenizer.from_pretrained(str(model))
    parsed = parse_paths([str(p) for p in corpora()])
    papers = {p.id: p for p in parsed.papers}
    settings = ChunkerSettings(max_tokens=512)
    chunks = chunk_papers(list(papers.values()), settings, lambda t: len(tok(t, add_special_tokens=False)["input_ids"]), "passage: ")
    texts = [passage_text(papers[c.paper_id], c.text, settings, c.section_kind) for c in chunks]
    random.Random(0).shuffle(texts)
    out.write_text(json.dumps({"total_chunks": len(texts), "passages": texts[:size]}, ensure_ascii=False))
    return out


def child(backend: str, model: str, passages_path: str, batch_size: int, emb_out: str) -> None:
    texts = json.loads(Path(passages_path).read_text())["passages"]
    t = time.perf_counter()
    if backend == "naive":
        from sentence_transformers import SentenceTransformer

        st = SentenceTransformer(model, device="cpu")
        load_s = time.perf_counter() - t
        st.encode(["passage: " + x for x in texts[:8]])
        t = time.perf_counter()
        emb = st.encode(["passage: " + x for x in texts], normalize_embeddings=True)
    else:
        from digest_rag.dense.encoder import Encoder

        enc = Encoder.load(model, device="cpu", backend=backend, batch_size=batch_size)
        load_s = time.perf_counter() - t
        enc.encode_passages(texts[:8])
        t = time.perf_counter()
        emb = enc.encode_passages(texts)
    secs = time.perf_counter() - t
    np.save(emb_out, np.asarray(emb, dtype=np.float32))
    print(json.dumps({"chunks_per_s": round(len(texts) / secs, 2), "seconds": round(secs, 1), "load_s": round(load_s, 1),
                      "peak_rss_mib": round(peak_rss_mib())}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sample", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--backends", nargs="+", default=["naive", "torch", "onnx", "onnx-int8"])
    ap.add_argument("--rounds", type=int, default=1, help="interleaved repetitions; the table shows medians")
    args = ap.parse_args()
    model = e5_shaped_model()
    passages = sample_passages(model, args.sample)
    meta = json.loads(passages.read_text())
    print(f"# machine: {machine()}")
    print(f"# model: e5-shaped random weights ({model}); sample: {len(meta['passages'])} of {meta['total_chunks']} chunks "
          f"(seeds + ml-papers), batch size {args.batch_size}; first-load times include the one-time ONNX export")
    # Export outside the timed runs, so 'load s' below is the steady state.
    for b in args.backends:
        if b.startswith("onnx"):
            subprocess.run([sys.executable, "-c", f"from digest_rag.dense.encoder import Encoder; Encoder.load({str(model)!r}, device='cpu', backend={b!r})"],
                           check=True, capture_output=True)
    runs: dict[str, list[dict]] = {b: [] for b in args.backends}
    embs: dict[str, np.ndarray] = {}
    for r in range(args.rounds):
        order = args.backends[r % len(args.backends):] + args.backends[:r % len(args.backends)]
        for b in order:
            emb_path = WORK / f"emb-{b}.npy"
            res = subprocess.run([sys.executable, __file__, "child", b, str(model), str(passages), str(args.batch_size), str(emb_path)],
                                 capture_output=True, text=True)
            if res.returncode != 0:
                raise RuntimeError(res.stderr[-2000:])
            runs[b].append(json.loads(res.stdout.strip().splitlines()[-1]))
            embs.setdefault(b, np.load(emb_path))
        if args.rounds > 1:
            print(f"# round {r + 1}: " + ", ".join(f"{b} {runs[b][-1]['chunks_per_s']}" for b in order), flush=True)
    rows = {b: {"chunks_per_s": round(statistics.median(x["chunks_per_s"] for x in rs), 2),
                "load_s": round(statistics.median(x["load_s"] for x in rs), 1),
                "peak_rss_mib": max(x["peak_rss_mib"] for x in rs),
                "spread": f"{min(x['chunks_per_s'] for x in rs)}-{max(x['chunks_per_s'] for x in rs)}"}
            for b, rs in runs.items()}
    ref = embs.get("torch", embs.get("naive"))
    base = rows.get("naive", rows.get("torch"))["chunks_per_s"]
    label = "median chunks/s" if args.rounds > 1 else "chunks/s"
    print(f"| backend | {label} | min-max | vs naive | vs torch | load s | peak RSS MiB | mean cos vs torch | min cos vs torch |")
    print("|---|---|---|---|---|---|---|---|---|")
    for b, r in rows.items():
        cos = (embs[b] * ref).sum(1)
        vs_torch = r["chunks_per_s"] / rows["torch"]["chunks_per_s"] if "torch" in rows else float("nan")
        print(f"| {b} | {r['chunks_per_s']} | {r['spread']} | {r['chunks_per_s'] / base:.2f}x | {vs_torch:.2f}x | {r['load_s']} | "
              f"{r['peak_rss_mib']} | {cos.mean():.5f} | {cos.min():.5f} |")

if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        child(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), sys.argv[6])
    else:
        main()
