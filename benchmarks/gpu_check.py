"""Check the CUDA path of the encoder: device auto-selection, fp16, normalisation, agreement with CPU.

Run on a machine with a GPU:  python benchmarks/gpu_check.py
It builds a tiny model and an e5-small-shaped random model from the seed corpus, encodes the seed
chunks on CUDA (fp16) and on CPU (fp32), and prints the device, dtype, norms, mean cosine between
the two, and GPU throughput for the e5-small shape.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from digest_rag.build.chunking import chunk_papers, passage_text  # noqa: E402
from digest_rag.dense.encoder import Encoder, auto_device  # noqa: E402
from digest_rag.models import ChunkerSettings  # noqa: E402
from digest_rag.parsing import parse_paths  # noqa: E402
from digest_rag.testing import build_e5_shaped_model, build_tiny_model, corpus_texts  # noqa: E402


def main() -> None:
    import torch

    out: dict[str, object] = {"auto_device": auto_device(), "torch": torch.__version__}
    if torch.cuda.is_available():
        out["gpu"] = torch.cuda.get_device_name(0)
    papers = parse_paths([ROOT / "corpus"]).papers
    texts = corpus_texts([ROOT / "corpus"])
    with tempfile.TemporaryDirectory() as tmp:
        models = [("tiny", build_tiny_model), ("e5-small-shape", build_e5_shaped_model)]
        # Without a GPU this only checks the plumbing; the e5-shaped model would just be slow.
        for name, builder in models if torch.cuda.is_available() else models[:1]:
            path = builder(Path(tmp) / name, texts)
            gpu = Encoder.load(str(path))  # device auto: CUDA when present, fp16 there
            cpu = Encoder.load(str(path), device="cpu")
            settings = ChunkerSettings(max_tokens=gpu.max_seq_length)
            chunks = chunk_papers(papers, settings, gpu.count_tokens, gpu.passage_prefix)
            by_id = {p.id: p for p in papers}
            passages = [passage_text(by_id[c.paper_id], c.text, settings, c.section_kind) for c in chunks]
            g = gpu.encode_passages(passages)
            c = cpu.encode_passages(passages)
            cos = np.sum(g * c, axis=1)
            reps = 5 if name != "tiny" else 1
            t0 = time.perf_counter()
            for _ in range(reps):
                gpu.encode_passages(passages)
            dt = (time.perf_counter() - t0) / reps
            out[name] = {
                "device": gpu.device,
                "param_dtype": str(next(gpu.model.parameters()).dtype),
                "chunks": len(passages),
                "norm_min": float(np.linalg.norm(g, axis=1).min()),
                "norm_max": float(np.linalg.norm(g, axis=1).max()),
                "cosine_gpu_fp16_vs_cpu_fp32_mean": float(cos.mean()),
                "cosine_min": float(cos.min()),
                "gpu_chunks_per_s": round(len(passages) / dt, 1),
                "query_prefix_embedding_shape": list(gpu.encode_queries(["스케일링 법칙"]).shape),
            }
    print(json.dumps(out, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
