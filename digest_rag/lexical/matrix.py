"""The BM25 score matrix built batch by batch from token-id arrays, for indexes of millions of documents.

bm25s (`bm25s.BM25.index`) takes every document's token list at once, as
Python lists of strings, and builds its matrix from Python lists of ints:
several GB at a million chunks. This builds the same matrix (bm25s's default
method: Lucene's idf and term-frequency saturation) from documents handed over
a batch at a time, keeping per document only its distinct term ids and their
counts in numpy arrays, and writes it in bm25s's CSC layout (one posting list
per term: ``indptr`` over terms, ``indices`` the documents, ``data`` the
scores), which `lexical.LexicalIndex` saves, loads and searches as before.
tests/test_lexical.py checks the scores against bm25s's on the same documents.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["BM25Matrix"]


class BM25Matrix:
    """Collects documents (lists of tokens) and builds their BM25 score matrix."""

    def __init__(self, k1: float = 1.5, b: float = 0.75) -> None:
        self.k1 = float(k1)
        self.b = float(b)
        #: token -> term id, in order of first appearance.
        self.vocab: dict[str, int] = {}
        self._terms: list[np.ndarray] = []  # per batch: distinct term ids of each document, concatenated
        self._tfs: list[np.ndarray] = []  # per batch: their counts
        self._widths: list[np.ndarray] = []  # per batch: distinct terms per document
        self._lengths: list[np.ndarray] = []  # per batch: tokens per document
        self.num_docs = 0

    def add(self, docs: Sequence[Sequence[str]]) -> None:
        """Append a batch of documents (each a list of tokens, repeats counting as term frequency)."""
        if not docs:
            return
        vocab = self.vocab
        lengths = np.fromiter((len(d) for d in docs), dtype=np.int64, count=len(docs))
        flat = np.fromiter((vocab.setdefault(t, len(vocab)) for d in docs for t in d), dtype=np.int64,
                           count=int(lengths.sum()))
        doc_of = np.repeat(np.arange(len(docs), dtype=np.int64), lengths)
        # One sort per batch gives each document's distinct terms and counts.
        keys, counts = np.unique(doc_of << 32 | flat, return_counts=True)
        docs_of_keys = keys >> 32
        self._terms.append((keys & 0xFFFFFFFF).astype(np.int32))
        self._tfs.append(counts.astype(np.int32))
        self._widths.append(np.bincount(docs_of_keys, minlength=len(docs)).astype(np.int32))
        self._lengths.append(lengths.astype(np.int32))
        self.num_docs += len(docs)

    def build(self) -> dict[str, Any]:
        """The score matrix as bm25s's ``scores`` dict: data, indices, indptr, num_docs, and ``avg_len`` (the
        mean document length, which scoring a document outside the matrix needs: `LexicalIndex.score_document`)."""
        self.vocab.setdefault("", len(self.vocab))  # bm25s's empty token, which no document holds
        n_terms = len(self.vocab)
        df = np.zeros(n_terms, dtype=np.int64)
        for terms in self._terms:
            df += np.bincount(terms, minlength=n_terms)
        lengths = np.concatenate(self._lengths) if self._lengths else np.zeros(0, dtype=np.int32)
        n = self.num_docs
        avg_len = float(lengths.mean()) if n else 0.0
        # bm25s's "lucene" idf, computed per term in float64 and kept as float32 as bm25s keeps it.
        idf = np.log(1.0 + (n - df + 0.5) / (df + 0.5)).astype(np.float32)
        indptr = np.zeros(n_terms + 1, dtype=np.int64)
        np.cumsum(df, out=indptr[1:])
        data = np.empty(int(indptr[-1]), dtype=np.float32)
        indices = np.empty(int(indptr[-1]), dtype=np.int32)
        cursor = indptr[:-1].copy()
        first_doc = 0
        for terms, tfs, widths, lens in zip(self._terms, self._tfs, self._widths, self._lengths, strict=True):
            docs = np.repeat(np.arange(first_doc, first_doc + len(widths), dtype=np.int64), widths)
            doc_len = np.repeat(lens.astype(np.float64), widths)
            tf = tfs.astype(np.float64)
            tfc = tf / (self.k1 * ((1 - self.b) + self.b * doc_len / avg_len) + tf)
            scores = (idf[terms].astype(np.float64) * tfc).astype(np.float32)
            # Each term's postings in document order: sort this batch by term (stably, documents ascend),
            # then place every run after what earlier batches put in that term's list.
            order = np.argsort(terms, kind="stable")
            t_sorted = terms[order]
            starts = np.flatnonzero(np.r_[True, t_sorted[1:] != t_sorted[:-1]])
            run_terms = t_sorted[starts]
            run_lens = np.diff(np.r_[starts, t_sorted.size])
            rank = np.arange(t_sorted.size) - np.repeat(starts, run_lens)
            pos = cursor[t_sorted] + rank
            data[pos] = scores[order]
            indices[pos] = docs[order]
            cursor[run_terms] += run_lens
            first_doc += len(widths)
        return {"data": data, "indices": indices, "indptr": indptr, "num_docs": n, "avg_len": avg_len}
