"""End-to-end query latency: DigestIndex.search (query encoding + FAISS + SQLite + aggregation).

Runs on the index bench_rebuild.py leaves behind (e5-shaped model), for each
backend: query encoding alone, then dense and hybrid search end to end.
At larger corpora the FAISS part grows as bench_search.py shows; the rest
(encoding one query, fetching <= 200 chunks, aggregating) does not depend on size.

Usage: python benchmarks/bench_query.py [--index /tmp/digest_rag_bench/rebuild-index-torch] [--backends torch onnx-int8]
       python benchmarks/bench_query.py --lexical --index INDEX   (BM25 only; any index, lexical-only too)
       python benchmarks/bench_query.py --lexical --feedback --index INDEX   (the same with pseudo-relevance feedback)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import WORK, machine  # noqa: E402

QUERIES = [
    "긴 컨텍스트를 악용하는 탈옥 공격", "scaling laws for language models", "효율적인 어텐션 메커니즘",
    "retrieval augmented generation", "이미지 생성 확산 모델", "reinforcement learning from human feedback",
    "멀티모달 대형 언어 모델 평가", "quantization of transformer weights", "코드 생성 벤치마크", "mixture of experts routing",
]


def pct(xs: list[float]) -> str:
    return f"{np.percentile(xs, 50):.1f} / {np.percentile(xs, 95):.1f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--index", default=str(WORK / "rebuild-index-torch"))
    ap.add_argument("--backends", nargs="+", default=["torch", "onnx-int8"])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--lexical", action="store_true", help="time lexical (BM25) search end to end only")
    ap.add_argument("--feedback", action="store_true",
                    help="with --lexical: turn pseudo-relevance feedback on (digest_rag.lexical.feedback.FeedbackSettings())")
    args = ap.parse_args()
    from digest_rag import DigestIndex

    print(f"# machine: {machine()}")
    if args.lexical:
        from digest_rag.lexical.feedback import FeedbackSettings

        idx = DigestIndex.load(args.index, feedback=FeedbackSettings() if args.feedback else None)
        idx.search(QUERIES[0], k=10, mode="lexical")  # load Kiwi and the glossary, warm caches
        lex = []
        for _ in range(args.repeat):
            for q in QUERIES:
                t = time.perf_counter()
                idx.search(q, k=10, mode="lexical")
                lex.append((time.perf_counter() - t) * 1000)
        print(f"# index: {args.index}; {len(QUERIES)} queries x {args.repeat}; milliseconds p50 / p95")
        print("| chunks | lexical search e2e |\n|---|---|")
        print(f"| {idx.manifest.chunk_count} | {pct(lex)} |")
        idx.close()
        return
    print(f"# index: {args.index}; {len(QUERIES)} queries x {args.repeat}; milliseconds p50 / p95")
    print("| backend | chunks | query encoding | dense search e2e | hybrid search e2e |")
    print("|---|---|---|---|---|")
    for backend in args.backends:
        idx = DigestIndex.load(args.index, backend=backend)
        idx.search(QUERIES[0], k=10, mode="hybrid")  # load the encoder, warm caches
        enc, dense, hybrid = [], [], []
        for _ in range(args.repeat):
            for q in QUERIES:
                t = time.perf_counter()
                idx.encoder.encode_queries([q])
                enc.append((time.perf_counter() - t) * 1000)
                t = time.perf_counter()
                idx.search(q, k=10, mode="dense")
                dense.append((time.perf_counter() - t) * 1000)
                t = time.perf_counter()
                idx.search(q, k=10, mode="hybrid")
                hybrid.append((time.perf_counter() - t) * 1000)
        print(f"| {backend} | {idx.manifest.chunk_count} | {pct(enc)} | {pct(dense)} | {pct(hybrid)} |")
        idx.close()


if __name__ == "__main__":
    main()
