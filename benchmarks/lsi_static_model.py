"""A quick untrained stand-in for a corpus-trained model, to exercise fusion calibration (docs/EVAL.md, issue 24).

A WordPiece tokenizer trained on the corpus and token vectors from a 256-dimension SVD of the tf-idf
paper x token matrix (latent semantic indexing), saved as a sentence-transformers `StaticEmbedding`.
With ``--heldout-share S`` the papers of `digest-rag train`'s held-out split (salt ``train-heldout``)
are left out of the SVD and the model directory gets a training report naming the share, as a trained
model's would, so calibration draws its pseudo-queries from those papers only.

Usage: python benchmarks/lsi_static_model.py OUT PATHS... [--heldout-share 0.1]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import svds


def main() -> None:
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import StaticEmbedding
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    from digest_rag import parse_paths
    from digest_rag.evaluation.evaluate import stable_bucket
    from digest_rag.search.pseudo_queries import TRAIN_HELDOUT_SALT, TRAIN_REPORT

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("paths", nargs="+")
    ap.add_argument("--heldout-share", type=float, default=0.0)
    ap.add_argument("--dim", type=int, default=256)
    args = ap.parse_args()
    papers = parse_paths(args.paths).papers
    if args.heldout_share > 0:
        buckets = max(2, round(1 / args.heldout_share))
        papers = [p for p in papers if stable_bucket(p.id, buckets, TRAIN_HELDOUT_SALT) != 0]
    docs = ["\n".join([p.title, p.title_ko or ""] + [s.text for s in p.sections]) for p in papers]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=False)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(docs, trainers.WordPieceTrainer(vocab_size=20000, special_tokens=["[PAD]", "[UNK]"]))
    rows: list[int] = []
    cols: list[int] = []
    for i, d in enumerate(docs):
        ids = set(tok.encode(d).ids)
        rows += [i] * len(ids)
        cols += list(ids)
    n_vocab = tok.get_vocab_size()
    x = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(len(docs), n_vocab))
    df = np.asarray((x > 0).sum(0)).ravel()
    x = x @ sp.diags(np.log((1 + len(docs)) / (1 + df)).astype(np.float32))
    _u, s, vt = svds(x.astype(np.float64), k=args.dim)
    table = np.ascontiguousarray((vt.T * s).astype(np.float32))
    table[df == 0] = 0
    SentenceTransformer(modules=[StaticEmbedding(tok, embedding_weights=table)]).save(args.out)
    if args.heldout_share > 0:
        (Path(args.out) / TRAIN_REPORT).write_text(json.dumps({"options": {"heldout_share": args.heldout_share}}))
    print(f"saved {args.out}: {table.shape[0]} tokens x {table.shape[1]}, {len(docs)} papers")


if __name__ == "__main__":
    main()
