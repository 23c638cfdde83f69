"""The streamed BM25 matrix is bm25s's matrix: same vocabulary numbering, postings and scores."""

from __future__ import annotations

import random

import numpy as np

from digest_rag.lexical.matrix import BM25Matrix


def _dense(scores: dict, n_terms: int) -> np.ndarray:
    out = np.zeros((scores["num_docs"], n_terms), dtype=np.float64)
    indptr, indices, data = (np.asarray(scores[k]) for k in ("indptr", "indices", "data"))
    for t in range(len(indptr) - 1):  # bm25s adds "" to its vocabulary after building the matrix
        lo, hi = int(indptr[t]), int(indptr[t + 1])
        docs = indices[lo:hi]
        assert np.all(np.diff(docs) > 0), "a posting list lists each document once, in order"
        out[docs, t] = data[lo:hi]
    return out


def test_batches_give_bm25s_scores() -> None:
    import bm25s

    rng = random.Random(7)
    words = [f"w{i}" for i in range(40)]
    docs = [[rng.choice(words[: rng.randint(3, 40)]) for _ in range(rng.randint(0, 30))] for _ in range(57)]
    ref = bm25s.BM25(k1=1.2, b=0.75)
    ref.index(docs, show_progress=False)

    ours = BM25Matrix(k1=1.2, b=0.75)
    for start in range(0, len(docs), 10):  # uneven batches, one with an empty document
        ours.add(docs[start : start + 10])
    built = ours.build()

    assert built["num_docs"] == ref.scores["num_docs"] == len(docs)
    assert set(ours.vocab) == set(ref.vocab_dict)  # numbered in another order; "" included, as bm25s does
    n_terms = len(ref.vocab_dict)
    column = [ours.vocab[t] for t in sorted(ref.vocab_dict, key=ref.vocab_dict.__getitem__)]
    ref_dense = _dense(ref.scores, n_terms)
    assert np.count_nonzero(ref_dense) > 100
    np.testing.assert_allclose(_dense(built, n_terms)[:, column], ref_dense, rtol=1e-6, atol=1e-7)


def test_no_documents() -> None:
    built = BM25Matrix().build()
    assert built["num_docs"] == 0 and built["data"].size == 0
