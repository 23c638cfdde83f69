"""The FAISS side of an index: choosing, building, saving, loading and searching.

Vectors are L2-normalised, so every index uses inner product (= cosine). Ids
are the chunks' stable int64 ids, kept by an IDMap (or natively by IVF).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import IndexCorruptedError, UsageError

EXACT_LIMIT = 100_000


def choose_factory(n_vectors: int, dimension: int) -> str:
    """The FAISS factory string for a corpus of this size.

    Exact search is fast enough (and perfect) below ~100k vectors; above it an
    HNSW graph answers in about a millisecond with recall near exact.
    """
    if n_vectors < EXACT_LIMIT:
        return "IDMap2,Flat"
    return "IDMap2,HNSW32,Flat"


def build_faiss(ids: np.ndarray, vectors: np.ndarray, factory: str | None = None) -> tuple[object, str]:
    """A trained, filled FAISS index over ``vectors`` with ``ids``; returns (index, factory)."""
    import faiss

    n, dim = vectors.shape if vectors.ndim == 2 else (0, 0)
    factory = factory or choose_factory(n, dim)
    try:
        index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        raise UsageError(f"invalid FAISS factory string '{factory}': {str(exc).splitlines()[0][:200]}") from exc
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    if not index.is_trained:
        if n == 0:
            raise UsageError(f"FAISS index '{factory}' needs training vectors, and the corpus has none")
        index.train(x)
    if n:
        index.add_with_ids(x, np.ascontiguousarray(ids, dtype=np.int64))
    return index, factory


def save_faiss(index: object, path: Path) -> None:
    """Write the index with FAISS's own format (no pickle)."""
    import faiss

    faiss.write_index(index, str(path))


def load_faiss(path: Path, mmap: bool = False) -> object:
    """Read an index, raising IndexCorruptedError instead of crashing on a bad file."""
    import faiss

    if not path.is_file():
        raise IndexCorruptedError(f"{path}: FAISS index file is missing")
    if path.stat().st_size < 16:
        raise IndexCorruptedError(f"{path}: FAISS index file is truncated ({path.stat().st_size} bytes)")
    flags = faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY if mmap else 0
    try:
        return faiss.read_index(str(path), flags)
    except RuntimeError as exc:
        msg = str(exc).strip().splitlines()
        raise IndexCorruptedError(f"{path}: FAISS index is unreadable ({(msg[-1] if msg else 'read error')[:160]})") from exc


def set_search_param(index: object, value: int | None) -> None:
    """Set efSearch (HNSW) or nprobe (IVF) on an index, wherever it sits in the wrapper chain."""
    if value is None:
        return
    import faiss

    inner = index
    while inner is not None:
        hnsw = getattr(inner, "hnsw", None)
        if hnsw is not None:
            hnsw.efSearch = int(value)
            return
        if hasattr(inner, "nprobe"):
            inner.nprobe = int(value)
            return
        inner = getattr(inner, "index", None)
        if inner is not None:
            inner = faiss.downcast_index(inner)


def search_faiss(
    index: object, query: np.ndarray, k: int, allowed: set[int] | None = None
) -> list[tuple[int, float]]:
    """Top-k (chunk id, score) for one query vector; ``allowed`` restricts to those ids."""
    import faiss

    ntotal = int(index.ntotal)
    if ntotal == 0 or k <= 0:
        return []
    q = np.ascontiguousarray(query.reshape(1, -1), dtype=np.float32)
    if allowed is not None:
        if not allowed:
            return []
        # Filtering inside FAISS keeps k results even when few chunks pass the filter.
        sel = faiss.IDSelectorBatch(np.fromiter(allowed, dtype=np.int64, count=len(allowed)))
        try:
            scores, ids = index.search(q, min(k, ntotal), params=faiss.SearchParameters(sel=sel))
        except (RuntimeError, TypeError):
            scores, ids = index.search(q, ntotal)
            pairs = [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0 and int(i) in allowed]
            return pairs[:k]
    else:
        scores, ids = index.search(q, min(k, ntotal))
    return [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]
