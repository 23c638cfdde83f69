"""The persistent embedding cache: round trip, killed writers, damage, model isolation, deletion, size cap."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from digest_rag.dense.embedding_cache import CACHE_DIR, EmbeddingCache, ModelIdentity, clear_cache
from digest_rag.errors import UnsafeIndexPathError, UsageError
from digest_rag.text import sha256_text

ROOT = Path(__file__).resolve().parents[2]
DIM = 16
IDENT = ModelIdentity(name="tiny", revision="local-abc", dimension=DIM, passage_prefix="passage: ")


def _batch(start: int, n: int, dim: int = DIM) -> tuple[list[str], np.ndarray]:
    """n distinct passages (hashes) with deterministic unit vectors."""
    hashes = [sha256_text(f"passage: text {i}") for i in range(start, start + n)]
    vecs = np.random.default_rng(start).standard_normal((n, dim)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    return hashes, vecs


def test_round_trip_and_nothing_written_before_a_put(tmp_path: Path) -> None:
    cache = EmbeddingCache.for_index(tmp_path / "index", IDENT)
    hashes, vecs = _batch(0, 10)
    assert cache.lookup(hashes) == {}
    assert cache.contains(hashes) == set()
    assert not (tmp_path / "index").exists(), "a lookup must not create the cache"
    cache.put(hashes[:6], vecs[:6])
    cache.put(hashes[4:], vecs[4:])  # overlapping batch: already cached rows stay as they are
    cache.close()
    with EmbeddingCache.for_index(tmp_path / "index", IDENT) as again:
        got = again.lookup(hashes + [sha256_text("passage: unknown")])
        assert sorted(got) == sorted(hashes)
        for h, v in zip(hashes, vecs, strict=True):
            np.testing.assert_array_equal(got[h], v)
        assert again.stats.hits == 10 and again.stats.misses == 1
        assert again.contains(hashes[:3]) == set(hashes[:3])
        assert len(again) == 10
    assert (tmp_path / "index" / CACHE_DIR).is_dir()


def test_put_checks_its_input(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path / "c", IDENT)
    hashes, vecs = _batch(0, 3)
    with pytest.raises(UsageError):
        cache.put(hashes, vecs[:, :8])  # wrong dimension
    with pytest.raises(UsageError):
        cache.put(hashes[:2], vecs)  # count mismatch
    with pytest.raises(UsageError):
        cache.put(["not-a-hash"] * 3, vecs)
    bad = vecs.copy()
    bad[1, 0] = np.nan
    with pytest.raises(UsageError):
        cache.put(hashes, bad)
    assert cache.lookup(hashes) == {}
    cache.close()


_WRITER = textwrap.dedent(
    """
    import sys
    import numpy as np
    sys.path.insert(0, {root!r})
    from digest_rag.dense.embedding_cache import EmbeddingCache, ModelIdentity
    from digest_rag.text import sha256_text
    ident = ModelIdentity.model_validate_json({ident!r})
    cache = EmbeddingCache({root_dir!r}, ident)
    b = 0
    while True:  # write batches until killed
        hashes = [sha256_text(f"passage: text {{i}}") for i in range(b * 50, b * 50 + 50)]
        vecs = np.random.default_rng(b * 50).standard_normal((50, {dim})).astype(np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        cache.put(hashes, vecs)
        print(b, flush=True)
        b += 1
    """
)


def test_cache_survives_a_killed_writer(tmp_path: Path) -> None:
    """SIGKILL at an arbitrary point of a stream of batches: every acknowledged batch is served intact."""
    code = _WRITER.format(root=str(ROOT), ident=IDENT.model_dump_json(), root_dir=str(tmp_path / "c"), dim=DIM)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    done = -1
    while done < 5:
        line = proc.stdout.readline()
        assert line, "writer died before writing"
        done = int(line)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with EmbeddingCache(tmp_path / "c", IDENT) as cache:
        n_cached = len(cache)
        assert n_cached >= (done + 1) * 50
        assert n_cached % 50 == 0, "a killed writer must leave whole batches, never part of one"
        for b in range((n_cached // 50) + 2):
            hashes, vecs = _batch(b * 50, 50)
            got = cache.lookup(hashes)
            if b <= done:
                assert len(got) == 50
            for h, v in zip(hashes, vecs, strict=True):
                if h in got:
                    np.testing.assert_array_equal(got[h], v)
        assert cache.stats.dropped == 0
        # And the cache takes new batches after the crash.
        h2, v2 = _batch(10_000, 5)
        cache.put(h2, v2)
        assert len(cache.lookup(h2)) == 5


def test_a_damaged_row_is_dropped_and_never_served(tmp_path: Path) -> None:
    hashes, vecs = _batch(0, 20)
    with EmbeddingCache(tmp_path / "c", IDENT) as cache:
        cache.put(hashes, vecs)
        db = cache.path
    con = sqlite3.connect(db)
    flipped = bytearray(vecs[3].tobytes())
    flipped[5] ^= 0x40  # one bit of one float
    con.execute("UPDATE vectors SET vector = ? WHERE hash = ?", (bytes(flipped), bytes.fromhex(hashes[3])))
    con.execute("UPDATE vectors SET vector = ? WHERE hash = ?", (vecs[7].tobytes()[:-4], bytes.fromhex(hashes[7])))
    con.execute("UPDATE vectors SET checksum = ? WHERE hash = ?", (b"\0" * 16, bytes.fromhex(hashes[11])))
    con.commit()
    con.close()
    with EmbeddingCache(tmp_path / "c", IDENT) as cache:
        got = cache.lookup(hashes)
        assert set(hashes) - set(got) == {hashes[3], hashes[7], hashes[11]}
        assert cache.stats.dropped == 3
        for h, v in zip(hashes, vecs, strict=True):
            if h in got:
                np.testing.assert_array_equal(got[h], v)
        # Dropped for good: the next lookup misses them too (so the build re-encodes and puts them).
        assert cache.contains([hashes[3], hashes[7], hashes[11]]) == set()
        cache.put([hashes[3]], vecs[3:4])
        np.testing.assert_array_equal(cache.lookup([hashes[3]])[hashes[3]], vecs[3])


@pytest.mark.parametrize("where", ["header", "middle", "tail"])
def test_a_damaged_file_never_serves_a_wrong_vector(tmp_path: Path, where: str) -> None:
    hashes, vecs = _batch(0, 300)
    with EmbeddingCache(tmp_path / "c", IDENT) as cache:
        cache.put(hashes, vecs)
        db = cache.path
    data = bytearray(db.read_bytes())
    at = {"header": 0, "middle": len(data) // 2, "tail": len(data) - 3000}[where]
    data[at : at + 2000] = np.random.default_rng(1).integers(0, 256, 2000, dtype=np.uint8).tobytes()
    db.write_bytes(bytes(data))
    with EmbeddingCache(tmp_path / "c", IDENT) as cache:
        got = cache.lookup(hashes)
        for h, v in zip(hashes, vecs, strict=True):
            if h in got:
                np.testing.assert_array_equal(got[h], v)
        assert len(got) < 300 or where == "tail"
        # Whatever happened, the cache works again afterwards: re-encoded vectors go back in.
        cache.put(hashes, vecs)
    with EmbeddingCache(tmp_path / "c", IDENT) as cache:
        again = cache.lookup(hashes)
        assert len(again) == 300 and cache.stats.dropped == 0 and cache.stats.reset == 0


def test_never_mixes_models_or_dimensions(tmp_path: Path) -> None:
    root = tmp_path / "c"
    hashes, vecs = _batch(0, 8)
    with EmbeddingCache(root, IDENT) as cache:
        cache.put(hashes, vecs)
    others = [
        IDENT.model_copy(update={"dimension": 32}),
        IDENT.model_copy(update={"name": "other"}),
        IDENT.model_copy(update={"revision": "local-def"}),
        IDENT.model_copy(update={"passage_prefix": ""}),
        IDENT.model_copy(update={"variant": "int8"}),
    ]
    assert len({IDENT.key, *(o.key for o in others)}) == 6
    for other in others:
        with EmbeddingCache(root, other) as cache:
            assert cache.lookup(hashes) == {}
            assert cache.contains(hashes) == set()
    # A database renamed to another identity's file is recognised as foreign and discarded, never served.
    wide = others[0]
    src = root / f"m-{IDENT.key}.sqlite"
    src.rename(root / f"m-{wide.key}.sqlite")
    with EmbeddingCache(root, wide) as cache:
        assert cache.lookup(hashes) == {}
        assert cache.stats.reset == 1
        h32, v32 = _batch(0, 8, dim=32)
        cache.put(h32, v32)
        assert cache.lookup(h32)[h32[0]].shape == (32,)
    with EmbeddingCache(root, IDENT) as cache:
        assert cache.lookup(hashes) == {}


def test_deleting_the_cache_only_costs_time(tmp_path: Path) -> None:
    index = tmp_path / "index"
    hashes, vecs = _batch(0, 8)
    with EmbeddingCache.for_index(index, IDENT) as cache:
        cache.put(hashes, vecs)
    assert clear_cache(index) > 0
    assert not (index / CACHE_DIR).exists()
    assert clear_cache(index) == 0
    with EmbeddingCache.for_index(index, IDENT) as cache:
        assert cache.lookup(hashes) == {}
        cache.put(hashes, vecs)
        np.testing.assert_array_equal(cache.lookup(hashes)[hashes[0]], vecs[0])


def test_size_cap_evicts_other_models_then_rows_the_index_does_not_use(tmp_path: Path) -> None:
    root = tmp_path / "c"
    ident = IDENT.model_copy(update={"dimension": 384})  # e5-small's width: vectors dominate the file
    other = ident.model_copy(update={"name": "old-model"})
    with EmbeddingCache(root, other) as cache:
        cache.put(*_batch(0, 200, dim=384))
    old_h, old_v = _batch(1000, 200, dim=384)
    new_h, new_v = _batch(2000, 200, dim=384)
    with EmbeddingCache(root, ident) as cache:
        cache.put(old_h, old_v)
    with EmbeddingCache(root, ident) as cache:  # a later build: uses half of the old rows, adds new ones
        assert len(cache.lookup(old_h[:100])) == 100
        cache.put(new_h, new_v)
    live = old_h[:100] + new_h
    with EmbeddingCache(root, ident) as cache:
        full = cache.size_bytes()
        assert cache.collect_garbage(max_bytes=full * 10, keep=live) == 0  # under the cap: nothing to do
        own = cache.path.stat().st_size
        cache.collect_garbage(max_bytes=own, keep=live)
        assert cache.stats.evicted_databases == 1 and cache.stats.evicted == 0
        assert not (root / f"m-{other.key}.sqlite").exists()
        cap = int(own * 0.8)
        freed = cache.collect_garbage(max_bytes=cap, keep=live)
        assert freed > 0
        assert cache.size_bytes() <= cap
        assert 0 < cache.stats.evicted <= 100
        survivors = cache.contains(old_h + new_h)
        # Rows the current index does not use go first.
        assert survivors >= set(live)
        assert len(survivors) == 400 - cache.stats.evicted
        got = cache.lookup(new_h)
        for h, v in zip(new_h, new_v, strict=True):
            np.testing.assert_array_equal(got[h], v)
        # A cap below the live set is still a hard cap: the oldest live rows go too.
        cache.collect_garbage(max_bytes=cap // 4, keep=live)
        assert cache.size_bytes() <= cap // 4
        assert cache.contains(new_h[-10:]) == set(new_h[-10:])


def test_refuses_symlinked_cache(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    index = tmp_path / "index"
    index.mkdir()
    (index / CACHE_DIR).symlink_to(elsewhere)
    cache = EmbeddingCache.for_index(index, IDENT)
    with pytest.raises(UnsafeIndexPathError):
        cache.put(*_batch(0, 2))
    assert list(elsewhere.iterdir()) == []
    assert clear_cache(index) == 0
    assert elsewhere.is_dir() and not (index / CACHE_DIR).exists()
