"""R@1 and MRR@10 of hybrid search over a grid of (RRF constant k, dense weight), beside lexical.

Development aid for fusion calibration (docs/EVAL.md, issue 24): run it on a tuning query set, never
on a held-out one. Each (k, weight) replaces the index's calibrated fusion in turn.

Usage: python benchmarks/fusion_sweep.py INDEX QUERIES.jsonl [--k 5 20 60] [--w 0.3 1 3]
"""

from __future__ import annotations

import argparse
import warnings

from digest_rag import DigestIndex
from digest_rag.evaluation.evaluate import evaluate, load_queries
from digest_rag.models import FusionCalibration


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("index")
    ap.add_argument("queries")
    ap.add_argument("--k", type=int, nargs="+", default=[5, 20, 60])
    ap.add_argument("--w", type=float, nargs="+", default=[0.3, 1.0, 3.0])
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    ix = DigestIndex.load(args.index)
    queries = load_queries(args.queries)
    papers = list(ix.papers.values())

    def row(mode: str) -> tuple[float, float]:
        r = evaluate(queries, lambda q, k: [h.paper.id for h in ix.search(q, k=k, mode=mode)], papers, mode)
        return r.recall_at_1, r.mrr_at_10

    print("lexical     R@1 %.3f  MRR@10 %.3f" % row("lexical"))
    print("dense       R@1 %.3f  MRR@10 %.3f" % row("dense"))
    for k in args.k:
        for w in args.w:
            ix.manifest = ix.manifest.model_copy(update={"fusion": FusionCalibration(
                weights={"dense": w, "lexical": 1.0}, rrf_k=k, method="sweep", queries=0, lexical_mrr=0.0,
                dense_mrr=0.0, hybrid_mrr=0.0, chance_mrr=0.0, gain_low=0.0, decision="sweep")})
            print(f"k {k:<3} w {w:<4g} R@1 %.3f  MRR@10 %.3f" % row("hybrid"))
    ix.close()


if __name__ == "__main__":
    main()
