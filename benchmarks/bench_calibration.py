"""Time of the fusion calibration (digest_rag.search.calibration) a build with a model runs, on a built index.

A build draws the pseudo-queries while it writes the chunks, then searches each
one lexically (the generation's BM25 files and word table) and densely (the
query encoder, FAISS) and scores the grid of fusion weights. This does the
same on a built index's store, FAISS file and encoder, so the number is what
calibration adds to a build (the encoder's load is not counted: a build has it
loaded already, having encoded the passages). It draws and scores them as a build does (a trained model's
held-out papers and sentences, the stand-ins, the English-only share), so the calibration it prints is the
one `digest-rag info` shows.

Usage: python benchmarks/bench_calibration.py --index INDEX [--repeat 3]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from digest_rag import DigestIndex
from digest_rag.search.calibration import calibrate_generation, describe
from digest_rag.search.pseudo_queries import (
    PseudoQuerySampler,
    trained_heldout,
    trained_sentences,
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--index", required=True)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    ix = DigestIndex.load(args.index)
    if ix.faiss_index is None:
        raise SystemExit(f"{args.index}: lexical-only, nothing to calibrate")
    by_paper: dict[str, list] = {}
    for c in ix.store.chunks().values():
        by_paper.setdefault(c.paper_id, []).append(c)
    encoder = ix.encoder
    encoder.encode_queries(["warm-up"])
    times = []
    model = ix.manifest.model_name
    for _ in range(args.repeat):
        t = time.perf_counter()
        # As a build draws them (build/writer.py): a model `digest-rag train` made is asked what it never saw.
        sampler = PseudoQuerySampler(keep=trained_heldout(model), sentences=trained_sentences(model))
        for pid in sorted(by_paper):
            sampler.add(by_paper[pid])
        queries = sampler.queries()
        cal = calibrate_generation(Path(args.index) / ix.manifest.data_dir, ix.faiss_index, encoder.encode_queries,
                                   queries, ix.manifest.paper_count, encode_passages=encoder.encode_passages,
                                   english_share=sampler.english_share, model_name=model)
        times.append(time.perf_counter() - t)
    kinds = {k: sum(q.kind == k for q in queries) for k in ("note", "english")}
    print(f"papers {ix.manifest.paper_count}, pseudo-queries {len(queries)} {kinds}")
    print(f"calibration {min(times):.2f} s (best of {args.repeat}; all {', '.join(f'{t:.2f}' for t in times)})")
    print(describe(cal))
    ix.close()


if __name__ == "__main__":
    main()
