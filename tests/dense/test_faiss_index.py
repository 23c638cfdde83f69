"""FAISS side: index choice by size, factory overrides, search parameters, ids kept."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from digest_rag.errors import UsageError
from digest_rag.dense.faiss_index import (
    EXACT_LIMIT,
    MAX_SEARCH_PARAM,
    build_faiss,
    build_faiss_sharded,
    choose_factory,
    default_search_param,
    load_faiss,
    new_index,
    save_faiss,
    search_faiss,
    search_param_of,
    set_search_param,
    training_rows,
)


@pytest.fixture(scope="module")
def clustered() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((20, 32)).astype(np.float32)
    x = centres[rng.integers(0, 20, 4000)] + 0.5 * rng.standard_normal((4000, 32)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    ids = rng.choice(10**12, size=len(x), replace=False).astype(np.int64)
    return ids, x


def test_choice_by_size() -> None:
    assert choose_factory(10, 384) == "IDMap2,Flat"
    assert choose_factory(EXACT_LIMIT - 1, 384) == "IDMap2,Flat"
    big = choose_factory(1_000_000, 384)
    assert big.startswith("IVF") and "SQ" in big
    # More vectors, more lists.
    assert int(choose_factory(10_000_000, 384)[3:].split(",")[0]) > int(big[3:].split(",")[0])


def test_exact_index_keeps_ids_and_finds_itself(clustered: tuple[np.ndarray, np.ndarray]) -> None:
    ids, x = clustered
    index, factory = build_faiss(ids, x)
    assert factory == "IDMap2,Flat"
    assert search_param_of(index) is None
    hits = search_faiss(index, x[7], 5)
    assert hits[0][0] == int(ids[7]) and hits[0][1] == pytest.approx(1.0, abs=1e-5)


def test_hnsw_override_searchable_with_ef(clustered: tuple[np.ndarray, np.ndarray], tmp_path: Path) -> None:
    ids, x = clustered
    index, factory = build_faiss(ids, x, "IDMap2,HNSW16,Flat")
    assert factory == "IDMap2,HNSW16,Flat"
    assert search_param_of(index) == default_search_param(index) == 64
    set_search_param(index, 200)
    assert search_param_of(index) == 200
    save_faiss(index, tmp_path / "v.faiss")
    loaded = load_faiss(tmp_path / "v.faiss")
    assert search_param_of(loaded) == 200  # FAISS persists efSearch with the index
    assert search_faiss(loaded, x[3], 1)[0][0] == int(ids[3])


def test_ivf_nprobe_controls_recall(clustered: tuple[np.ndarray, np.ndarray], tmp_path: Path) -> None:
    ids, x = clustered
    exact, _ = build_faiss(ids, x, "IDMap2,Flat")
    ivf, _ = build_faiss(ids, x, "IVF64,SQ8")
    assert search_param_of(ivf) == default_search_param(ivf) == 16
    queries = x[:50] + 0.05
    truth = [{i for i, _ in search_faiss(exact, q, 10)} for q in queries]

    def recall(index: object) -> float:
        return float(np.mean([len({i for i, _ in search_faiss(index, q, 10)} & t) / 10 for q, t in zip(queries, truth)]))

    set_search_param(ivf, 1)
    low = recall(ivf)
    set_search_param(ivf, 64)
    high = recall(ivf)
    assert high > low and high >= 0.9
    set_search_param(ivf, 10_000)  # clamped to the number of lists
    assert search_param_of(ivf) == 64
    save_faiss(ivf, tmp_path / "ivf.faiss")
    mapped = load_faiss(tmp_path / "ivf.faiss", mmap=True)
    assert search_param_of(mapped) == 64 and recall(mapped) == high


def test_filtered_search_keeps_k(clustered: tuple[np.ndarray, np.ndarray]) -> None:
    ids, x = clustered
    index, _ = build_faiss(ids, x)
    allowed = {int(i) for i in ids[::100]}
    hits = search_faiss(index, x[0], 10, allowed)
    assert len(hits) == 10 and all(h[0] in allowed for h in hits)


@pytest.mark.parametrize("bad", ["NoSuchIndex", "IVF64,Nonsense", "HNSW16,Flat"])
def test_invalid_factory_is_usage_error(clustered: tuple[np.ndarray, np.ndarray], bad: str) -> None:
    ids, x = clustered
    with pytest.raises(UsageError):
        build_faiss(ids, x, bad)


def test_too_few_vectors_for_ivf(clustered: tuple[np.ndarray, np.ndarray]) -> None:
    ids, x = clustered
    with pytest.raises(UsageError, match="lists"):
        build_faiss(ids[:10], x[:10], "IVF64,Flat")


def test_bad_search_param(clustered: tuple[np.ndarray, np.ndarray]) -> None:
    ids, x = clustered
    index, _ = build_faiss(ids, x, "IVF16,Flat")
    with pytest.raises(UsageError):
        set_search_param(index, 0)


# ---------------------------------------------------------------- sharded builds
@pytest.fixture(scope="module")
def corpus_20k() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """20k clustered 32-d vectors with random int64 ids, and 50 queries near some of them."""
    from digest_rag.testing import clustered_vectors

    return clustered_vectors(20_000, 32, clusters=64, noise=0.6, query_noise=0.1, seed=7)


def _shards(ids: np.ndarray, x: np.ndarray, sizes: list[int]) -> list[tuple[np.ndarray, np.ndarray]]:
    out, start = [], 0
    for size in sizes:
        out.append((ids[start : start + size], x[start : start + size]))
        start += size
    assert start == len(ids)
    return out


def _top10(index: object, queries: np.ndarray) -> list[list[int]]:
    return [[i for i, _s in search_faiss(index, q, 10)] for q in queries]


# Uneven shards, one of them empty: the merge must not care how the rows were cut.
SHARD_SIZES = [5_000, 7_000, 0, 3_000, 5_000]


@pytest.mark.parametrize("factory", ["IVF32,SQ8", "IVF16,Flat", "IDMap2,Flat"])
def test_sharded_build_equals_single_add(corpus_20k: tuple[np.ndarray, np.ndarray, np.ndarray], factory: str) -> None:
    import faiss

    ids, x, queries = corpus_20k
    single, _ = build_faiss(ids, x, factory)
    sharded, used = build_faiss_sharded(_shards(ids, x, SHARD_SIZES), factory)
    assert used == factory
    assert sharded.ntotal == single.ntotal == len(ids)
    assert search_param_of(sharded) == search_param_of(single)
    assert _top10(sharded, queries) == _top10(single, queries)
    # Same training sample, same seed, shards merged in row order: the very same index, byte for byte.
    assert np.array_equal(faiss.serialize_index(sharded), faiss.serialize_index(single))


def test_sharded_training_uses_the_single_process_sample(corpus_20k: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    ids, x, queries = corpus_20k
    # 20k rows > 64 points x 64 lists: both builds train on the same fixed-seed sample of 4,096 rows.
    rows = training_rows(new_index(len(x), 32, "IVF64,SQ8")[0], "IVF64,SQ8", len(x))
    assert rows is not None and len(rows) == 64 * 64
    single, _ = build_faiss(ids, x, "IVF64,SQ8")
    sharded, _ = build_faiss_sharded(_shards(ids, x, [1_234, 18_766]), "IVF64,SQ8")
    assert _top10(sharded, queries) == _top10(single, queries)


def test_sharded_hnsw_falls_back_to_one_add(clustered: tuple[np.ndarray, np.ndarray]) -> None:
    ids, x = clustered
    single, _ = build_faiss(ids, x, "IDMap2,HNSW16,Flat")
    seen: list[tuple[int, int]] = []
    sharded, _ = build_faiss_sharded(_shards(ids, x, [1_000, 3_000]), "IDMap2,HNSW16,Flat",
                                     progress=lambda done, total: seen.append((done, total)))
    assert sharded.ntotal == len(ids) and seen[-1] == (2, 2)
    assert _top10(sharded, x[:20]) == _top10(single, x[:20])


def test_merge_shards_runs_the_adds_through_the_mapper(clustered: tuple[np.ndarray, np.ndarray]) -> None:
    ids, x = clustered
    calls: list[int] = []

    def mapper(fn, args):  # noqa: ANN001, ANN202 - the ShardMapper shape
        for a in args:
            calls.append(len(a[1]))
            yield fn(*a)

    index, _ = build_faiss_sharded(_shards(ids, x, [2_500, 1_500]), "IVF16,Flat", mapper=mapper)
    assert calls == [2_500, 1_500] and index.ntotal == len(ids)


def test_sharded_errors_are_usage_errors(clustered: tuple[np.ndarray, np.ndarray]) -> None:
    ids, x = clustered
    with pytest.raises(UsageError, match="IDMap2"):
        build_faiss_sharded(_shards(ids, x, [4_000]), "HNSW16,Flat")
    with pytest.raises(UsageError, match="lists"):
        build_faiss_sharded(_shards(ids[:10], x[:10], [10]), "IVF64,Flat")


def test_search_param_is_bounded(clustered: tuple[np.ndarray, np.ndarray], tmp_path: Path) -> None:
    """Issue 16 item 5: efSearch 2**31 was an OverflowError traceback, 2e9 a minute and 16 GB per search."""
    import faiss

    ids, x = clustered
    index, _ = build_faiss(ids[:133], x[:133], "IDMap2,HNSW16,Flat")
    for bad in (2_147_483_648, 2_000_000_000, MAX_SEARCH_PARAM + 1, 0, -5):
        with pytest.raises(UsageError, match=f"between 1 and {MAX_SEARCH_PARAM}"):
            set_search_param(index, bad)
    for bad in (5.5, "64", True, None.__class__):
        with pytest.raises(UsageError, match="must be an integer"):
            set_search_param(index, bad)  # type: ignore[arg-type]
    assert search_param_of(index) == 64  # refused values changed nothing
    # Up to the documented maximum is accepted; efSearch past the vector count visits nothing more.
    set_search_param(index, MAX_SEARCH_PARAM)
    assert search_param_of(index) == 133
    set_search_param(index, np.int64(100))
    assert search_param_of(index) == 100
    # A file whose saved efSearch is absurd is cut to the bounds on load.
    faiss.downcast_index(index.index).hnsw.efSearch = 2_000_000_000
    save_faiss(index, tmp_path / "forged.faiss")
    loaded = load_faiss(tmp_path / "forged.faiss")
    assert search_param_of(loaded) == 133
    assert search_faiss(loaded, x[7], 5)[0][0] == int(ids[7])


def test_cli_search_param_beyond_the_maximum_is_one_line(seed_index_dir: Path) -> None:
    from typer.testing import CliRunner

    from digest_rag.frontends.cli import app

    for bad in ("2147483648", "2000000000", "99999999999999999999999"):
        res = CliRunner().invoke(app, ["search", "Gemma 2", "--index", str(seed_index_dir), "--search-param", bad])
        assert res.exit_code == 1, (res.output, res.exception)
        assert res.stderr.startswith("error: ") and res.stderr.count("\n") == 1 and str(MAX_SEARCH_PARAM) in res.stderr
