"""The FAISS side of an index: choosing, building, saving, loading and searching.

Vectors are L2-normalised, so every index uses inner product (= cosine). Ids
are the chunks' stable int64 ids, kept by an IDMap (or natively by IVF).
Small corpora get exact search; large ones an IVF over scalar-quantised codes
with its nprobe exposed (see choose_factory and BENCHMARKS.md for the numbers).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from digest_rag.errors import IndexCorruptedError, IndexWriteError, UsageError
from digest_rag.threads import faiss_build_threads, faiss_search_threads

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
# The largest efSearch (HNSW) or nprobe (IVF) accepted: FAISS allocates per-query work of that size,
# so 2e9 took a minute and 16 GB on a 133-vector index, and 2**31 overflowed into a traceback. The
# largest IVF has MAX_NLIST lists, so nprobe never needs more; efSearch above the vector count is cut to it.
MAX_SEARCH_PARAM = MAX_NLIST


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
    n, dim = vectors.shape if vectors.ndim == 2 else (0, 0)
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    index, factory = new_index(n, dim, factory)
    with _build_errors(factory), faiss_build_threads():
        rows = training_rows(index, factory, n, seed)
        train_index(index, x if rows is None else x[rows])
        if n:
            index.add_with_ids(x, np.ascontiguousarray(ids, dtype=np.int64))
    set_search_param(index, default_search_param(index))
    return index, factory


def new_index(n_vectors: int, dimension: int, factory: str | None = None) -> tuple[object, str]:
    """An empty, untrained FAISS index for ``factory`` (default: :func:`choose_factory`), and the factory used."""
    import faiss

    factory = (factory or choose_factory(n_vectors, dimension)).strip()
    try:
        return faiss.index_factory(dimension, factory, faiss.METRIC_INNER_PRODUCT), factory
    except RuntimeError as exc:
        raise UsageError(f"invalid FAISS factory string '{factory}': {_faiss_msg(exc)}") from exc


@contextmanager
def _build_errors(factory: str) -> Iterator[None]:
    """FAISS's RuntimeErrors while training or adding, as a UsageError naming the factory."""
    try:
        yield
    except RuntimeError as exc:
        hint = " (prefix it with 'IDMap2,' so it keeps chunk ids)" if "add_with_ids not implemented" in str(exc) else ""
        raise UsageError(f"FAISS index '{factory}' cannot be built here: {_faiss_msg(exc)}{hint}") from exc


def training_rows(index: object, factory: str, n_vectors: int, seed: int = 1234) -> np.ndarray | None:
    """Which of ``n_vectors`` rows train ``index``: None for all of them (or no training needed).

    A fixed-seed sample, drawn from the row count alone, so a build that holds
    its vectors in shards on many machines trains on exactly the rows a
    single-process build would: training on all of a large corpus costs
    minutes and gains nothing. Raises UsageError when there are too few rows.
    """
    if index.is_trained:
        return None
    if n_vectors == 0:
        raise UsageError(f"FAISS index '{factory}' needs training vectors, and the corpus has none")
    ivf = _ivf_of(index)
    if ivf is not None and n_vectors < int(ivf.nlist):
        raise UsageError(f"FAISS index '{factory}' has {ivf.nlist} lists but the corpus has only {n_vectors} vectors")
    limit = TRAIN_POINTS_PER_LIST * int(ivf.nlist) if ivf is not None else 100_000
    if n_vectors <= limit:
        return None
    return np.sort(np.random.default_rng(seed).choice(n_vectors, size=limit, replace=False))


def train_index(index: object, train: np.ndarray) -> None:
    """Train ``index`` (k-means for IVF, with our iteration count) unless it needs no training."""
    if index.is_trained:
        return
    ivf = _ivf_of(index)
    if ivf is not None:
        ivf.cp.niter = KMEANS_ITERATIONS
    index.train(np.ascontiguousarray(train, dtype=np.float32))


def add_shard(trained: np.ndarray, ids: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """Add one shard of vectors to a copy of a trained, empty index; both travel serialised.

    ``trained`` and the result are FAISS's own serialisation (uint8 arrays, no
    pickle), so this runs unchanged in another process or on another machine
    (the Ray engine ships it as a task).
    """
    import faiss


    index = faiss.deserialize_index(trained)
    with faiss_build_threads():
        index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), np.ascontiguousarray(ids, dtype=np.int64))
    return faiss.serialize_index(index)


ShardMapper = Callable[[Callable[..., np.ndarray], Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]]], Iterable[np.ndarray]]


def _serial_map(fn: Callable[..., np.ndarray], args: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> Iterable[np.ndarray]:
    return (fn(*a) for a in args)


def merge_shards(
    trained: object,
    shards: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    mapper: ShardMapper | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> object:
    """Fill copies of the trained, empty ``trained`` index with each (ids, vectors) shard, then merge them in order.

    ``mapper(fn, args)`` runs :func:`add_shard` over the shards and yields the
    results in shard order; by default in this process, one after another; the
    Ray engine passes one that runs them as parallel tasks. Merging appends
    each shard's inverted lists (or flat codes and id map) in shard order, so
    contiguous shards in row order give exactly the index that one
    ``add_with_ids`` of all rows gives: same ntotal, same lists, same results.
    Indexes FAISS cannot merge (HNSW graphs) get all shards added at once in
    this process instead. The result has its default search
    parameter set. ``progress(done, total)`` counts merged shards.
    """
    import faiss


    blob = faiss.serialize_index(trained)
    if trained.ntotal:
        raise UsageError("merge_shards needs a trained, empty index")
    total = len(shards)
    merged = faiss.deserialize_index(blob)
    if not _mergeable(merged):
        # One add of everything: an HNSW graph built in pieces would differ from the single-process one.
        if shards:
            with faiss_build_threads():
                merged.add_with_ids(_gather([x for _ids, x in shards], None),
                                    np.concatenate([np.asarray(ids, dtype=np.int64) for ids, _x in shards]))
        if progress:
            progress(total, total)
    else:
        results = (mapper or _serial_map)(add_shard, [(blob, ids, x) for ids, x in shards])
        for done, part in enumerate(results, 1):
            # merge_from moves the other index's entries, appending them after ours (add_id 0 keeps chunk ids).
            merged.merge_from(faiss.deserialize_index(part), 0)
            if progress:
                progress(done, total)
    set_search_param(merged, default_search_param(merged))
    return merged


def build_faiss_sharded(
    shards: Sequence[tuple[np.ndarray, np.ndarray]],
    factory: str | None = None,
    *,
    dimension: int | None = None,
    seed: int = 1234,
    mapper: ShardMapper | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[object, str]:
    """:func:`build_faiss` over vectors held as (ids, vectors) shards, in row order; returns (index, factory).

    Trains once, on the rows :func:`training_rows` picks from the whole
    (the same fixed-seed sample a single-process build uses), then fills and
    merges the shards with :func:`merge_shards` (``mapper`` runs the adds,
    e.g. as Ray tasks). The index equals ``build_faiss`` of the concatenation.
    """

    n = sum(len(ids) for ids, _x in shards)
    dim = dimension if dimension is not None else (int(shards[0][1].shape[1]) if shards else 0)
    index, factory = new_index(n, dim, factory)
    with _build_errors(factory):
        rows = training_rows(index, factory, n, seed)
        if not index.is_trained:
            with faiss_build_threads():
                train_index(index, _gather([x for _ids, x in shards], rows))
        index = merge_shards(index, [s for s in shards if len(s[0])], mapper=mapper, progress=progress)
    return index, factory


def _gather(parts: Sequence[np.ndarray], rows: np.ndarray | None) -> np.ndarray:
    """Rows (sorted indices into the concatenation of ``parts``) without concatenating everything."""
    if rows is None:
        return np.concatenate([np.asarray(p, dtype=np.float32) for p in parts])
    out = []
    start = 0
    for p in parts:
        lo, hi = np.searchsorted(rows, [start, start + len(p)])
        out.append(np.asarray(p[rows[lo:hi] - start], dtype=np.float32))
        start += len(p)
    return np.concatenate(out)


def _mergeable(index: object) -> bool:
    """Whether FAISS can merge_from two copies of this (empty) index: flat and IVF indexes can, HNSW cannot."""
    import faiss

    a, b = faiss.clone_index(index), faiss.clone_index(index)
    try:
        a.merge_from(b, 0)
    except RuntimeError:
        return False
    return True


def _faiss_msg(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    # FAISS puts the useful sentence last, after "Error in ... at file:line".
    return (lines[-1] if lines else type(exc).__name__)[:200]


def save_faiss(index: object, path: Path) -> None:
    """Write the index with FAISS's own format (no pickle); a failed write (full disk) raises IndexWriteError."""
    import faiss

    try:
        faiss.write_index(index, str(path))
    except RuntimeError as exc:  # FAISS reports a short fwrite (ENOSPC, EFBIG) as a RuntimeError
        raise IndexWriteError(f"{path}: cannot write the FAISS index ({_faiss_msg(exc)})") from exc


def load_faiss(path: Path, mmap: bool = False) -> object:
    """Read an index, raising IndexCorruptedError instead of crashing on a bad file."""
    import faiss

    if not path.is_file():
        raise IndexCorruptedError(f"{path}: FAISS index file is missing")
    if path.stat().st_size < 16:
        raise IndexCorruptedError(f"{path}: FAISS index file is truncated ({path.stat().st_size} bytes)")
    flags = faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY if mmap else 0
    try:
        index = faiss.read_index(str(path), flags)
    except RuntimeError as exc:
        msg = str(exc).strip().splitlines()
        raise IndexCorruptedError(f"{path}: FAISS index is unreadable ({(msg[-1] if msg else 'read error')[:160]})") from exc
    set_search_param(index, None)  # the saved efSearch/nprobe, within bounds
    return index


def set_search_param(index: object, value: int | None) -> None:
    """Set efSearch (HNSW) or nprobe (IVF) on an index, wherever it sits in the wrapper chain.

    ``value`` must be an integer from 1 to MAX_SEARCH_PARAM (65,536), else
    UsageError. nprobe is cut to the number of lists and efSearch to the number
    of vectors (more visits nothing new); exact indexes ignore the value. None
    keeps the saved value, cut to those same bounds (a forged file cannot make
    searches unbounded either).
    """
    if value is not None:
        value = check_search_param(value)
    ivf = _ivf_of(index)
    if ivf is not None:
        saved = int(ivf.nprobe) if value is None else value
        ivf.nprobe = int(max(1, min(saved, int(ivf.nlist), MAX_SEARCH_PARAM)))
        return
    hnsw = _hnsw_of(index)
    if hnsw is not None:
        saved = int(hnsw.efSearch) if value is None else value
        hnsw.efSearch = int(max(1, min(saved, max(int(index.ntotal), 1), MAX_SEARCH_PARAM)))


def check_search_param(value: object) -> int:
    """``value`` as a search parameter: an integer from 1 to MAX_SEARCH_PARAM, else UsageError."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise UsageError(f"search parameter must be an integer (got {value!r})")
    if not 1 <= int(value) <= MAX_SEARCH_PARAM:
        raise UsageError(f"search parameter must be between 1 and {MAX_SEARCH_PARAM} (got {value})")
    return int(value)


def search_faiss(
    index: object, query: np.ndarray, k: int, allowed: set[int] | None = None
) -> list[tuple[int, float]]:
    """Top-k (chunk id, score) for one query vector; ``allowed`` restricts to those ids."""
    import faiss


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
