"""storage/bounded_cache.py: what a loaded index keeps of its store's records, bounded, least recently used out."""

from __future__ import annotations

from digest_rag.storage.bounded_cache import BoundedCache


def test_bounded_cache_keeps_the_most_recently_used() -> None:
    cache: BoundedCache[int, str] = BoundedCache(2)
    cache.keep({1: "a", 2: "b"})
    assert cache.found([2, 1, 3]) == {2: "b", 1: "a"}  # in the order asked; 1 is now the most recent
    cache.keep({3: "c"})
    assert list(cache) == [1, 3] and len(cache) == 2
    cache.clear()
    assert list(cache) == [] and cache.found([1]) == {}
