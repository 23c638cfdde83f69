"""The FAISS side of an index: choosing, building, saving, loading and searching.

Vectors are L2-normalised, so every index uses inner product (= cosine). Ids
are the chunks' stable int64 ids, kept by an IDMap (or natively by IVF).
Small corpora get exact search; large ones an IVF over scalar-quantised codes
with its nprobe exposed (see choose_factory and BENCHMARKS.md for the numbers).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import IndexCorruptedError, UsageError

EXACT_LIMIT = 100_000
# ~2*sqrt(n) lists: each list holds ~sqrt(n)/2 vectors (500 at 1M), and k-means stays affordable on 2 cores.
MIN_NLIST, MAX_NLIST = 256, 65_536
# k-means needs ~40-60 points per centroid; more only slows training (FAISS caps at 256 anyway).
TRAIN_POINTS_PER_LIST = 64
# Ten k-means iterations instead of FAISS's 25: coarse centroids only route queries, and recall
# at a given nprobe barely moves while training time drops 2.5x.
KMEANS_ITERATIONS = 10
# Probe ~1/64 of the lists (at least 16): recall@10 >= 0.9 on clustered 384-d data (BENCHMARKS.md).
NPROBE_FRACTION = 64
MIN_NPROBE = 16
DEFAULT_EF_SEARCH = 64


def ivf_lists(n_vectors: int) -> int:
    """Power-of-two number of IVF lists for ``n_vectors``: about 2*sqrt(n)."""
    target = 2 * max(1, n_vectors) ** 0.5
    nlist = 1 << max(0, round(np.log2(target)))
    return int(min(MAX_NLIST, max(MIN_NLIST, nlist)))


def choose_factory(n_vectors: int, dimension: int) -> str:
    """The FAISS factory string for a corpus of this size.

    Below 100k vectors exact search (IDMap2 over Flat) costs ~10 ms or less on
    2 cores and is perfect. Above, an inverted file over 8-bit scalar-quantised
    codes: at 1M clustered 384-d vectors, 377 MiB on disk against Flat's 1472
    (0.26x), p50 2 ms per query and recall@10 0.97 against exact at the
    default nprobe (BENCHMARKS.md). 6-bit codes (SQ6) would save another
    quarter but sit at recall 0.905, on the edge of the 0.9 target, whatever
    nprobe is; override with factory="IVF2048,SQ6" where memory matters more.
    IVF keeps the chunk ids itself, so no IDMap is needed.
    """
    if n_vectors < EXACT_LIMIT:
        return "IDMap2,Flat"
    return f"IVF{ivf_lists(n_vectors)},SQ8"


def _ivf_of(index: object) -> object | None:
    import faiss

    inner = index
    while inner is not None:
        inner = faiss.downcast_index(inner)
        if isinstance(inner, faiss.IndexIVF):
            return inner
        inner = getattr(inner, "index", None)
    return None


def _hnsw_of(index: object) -> object | None:
    import faiss

    inner = index
    while inner is not None:
        inner = faiss.downcast_index(inner)
        if getattr(inner, "hnsw", None) is not None:
            return inner.hnsw
        inner = getattr(inner, "index", None)
    return None


def default_search_param(index: object) -> int | None:
    """The search-time knob we set at build time: nprobe for IVF, efSearch for HNSW, None for exact."""
    ivf = _ivf_of(index)
    if ivf is not None:
        return int(min(ivf.nlist, max(MIN_NPROBE, ivf.nlist // NPROBE_FRACTION)))
    if _hnsw_of(index) is not None:
        return DEFAULT_EF_SEARCH
    return None


def search_param_of(index: object) -> int | None:
    """The current nprobe (IVF) or efSearch (HNSW) of an index; None for exact indexes."""
    ivf = _ivf_of(index)
    if ivf is not None:
        return int(ivf.nprobe)
    hnsw = _hnsw_of(index)
    if hnsw is not None:
        return int(hnsw.efSearch)
    return None


def build_faiss(ids: np.ndarray, vectors: np.ndarray, factory: str | None = None, *, seed: int = 1234) -> tuple[object, str]:
    """A trained, filled FAISS index over ``vectors`` with ``ids``; returns (index, factory).

    ``factory`` overrides :func:`choose_factory` (any FAISS factory string whose
    index accepts ids, e.g. "IDMap2,HNSW16,Flat" or "IVF1024,PQ48"); an invalid
    one raises UsageError. Approximate indexes get their default search
    parameter (:func:`default_search_param`), which FAISS saves with the index.
    """
    import faiss

    from .threads import faiss_build_threads

    n, dim = vectors.shape if vectors.ndim == 2 else (0, 0)
    factory = (factory or choose_factory(n, dim)).strip()
    try:
        index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        raise UsageError(f"invalid FAISS factory string '{factory}': {_faiss_msg(exc)}") from exc
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    try:
        with faiss_build_threads():
            _train_and_add(index, factory, ids, x, seed)
    except RuntimeError as exc:
        hint = " (prefix it with 'IDMap2,' so it keeps chunk ids)" if "add_with_ids not implemented" in str(exc) else ""
        raise UsageError(f"FAISS index '{factory}' cannot be built here: {_faiss_msg(exc)}{hint}") from exc
    set_search_param(index, default_search_param(index))
    return index, factory


def _train_and_add(index: object, factory: str, ids: np.ndarray, x: np.ndarray, seed: int) -> None:
    n = x.shape[0]
    if not index.is_trained:
        if n == 0:
            raise UsageError(f"FAISS index '{factory}' needs training vectors, and the corpus has none")
        ivf = _ivf_of(index)
        if ivf is not None and n < int(ivf.nlist):
            raise UsageError(f"FAISS index '{factory}' has {ivf.nlist} lists but the corpus has only {n} vectors")
        if ivf is not None:
            ivf.cp.niter = KMEANS_ITERATIONS
        limit = TRAIN_POINTS_PER_LIST * int(ivf.nlist) if ivf is not None else 100_000
        train = x
        if n > limit:
            # A fixed-seed sample: training on all of a large corpus costs minutes and gains nothing.
            pick = np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))
            train = x[pick]
        index.train(train)
    if n:
        index.add_with_ids(x, np.ascontiguousarray(ids, dtype=np.int64))


def _faiss_msg(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    # FAISS puts the useful sentence last, after "Error in ... at file:line".
    return (lines[-1] if lines else type(exc).__name__)[:200]


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
    """Set efSearch (HNSW) or nprobe (IVF) on an index, wherever it sits in the wrapper chain.

    None leaves the index as saved; exact indexes ignore the value. A value
    below 1 raises UsageError.
    """
    if value is None:
        return
    if int(value) < 1:
        raise UsageError(f"search parameter must be a positive integer (got {value})")
    ivf = _ivf_of(index)
    if ivf is not None:
        ivf.nprobe = int(min(int(value), int(ivf.nlist)))
        return
    hnsw = _hnsw_of(index)
    if hnsw is not None:
        hnsw.efSearch = int(value)


def search_faiss(
    index: object, query: np.ndarray, k: int, allowed: set[int] | None = None
) -> list[tuple[int, float]]:
    """Top-k (chunk id, score) for one query vector; ``allowed`` restricts to those ids."""
    import faiss

    from .threads import faiss_search_threads

    ntotal = int(index.ntotal)
    if ntotal == 0 or k <= 0:
        return []
    q = np.ascontiguousarray(query.reshape(1, -1), dtype=np.float32)
    if allowed is not None and not allowed:
        return []
    with faiss_search_threads():
        if allowed is not None:
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
