"""storage/paper_lookup.py: a search's candidate papers, read from the store only when shown, in a bounded cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from digest_rag import DigestIndex
from digest_rag.storage import paper_lookup
from digest_rag.storage.bounded_cache import BoundedCache
from digest_rag.storage.paper_lookup import PaperLookup


def _some_ids(idx: DigestIndex, n: int) -> list[str]:
    return sorted(idx.store.paper_ids(r[0] for r in idx.store._query(f"SELECT id FROM papers LIMIT {n}")))


def _count_reads(idx: DigestIndex, monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The ids of each `Store.papers` call of ``idx``'s store, from now on."""
    reads: list[list[str]] = []
    real = idx.store.papers
    monkeypatch.setattr(idx.store, "papers", lambda pids: reads.append(list(pids)) or real(pids))
    return reads


def test_membership_without_reading_and_records_read_once(seed_lexical_index_dir: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    with DigestIndex.load(seed_lexical_index_dir) as idx:
        ids = _some_ids(idx, 3)
        reads = _count_reads(idx, monkeypatch)
        lookup = PaperLookup(idx.store, [*ids, "no-such-paper"], BoundedCache(paper_lookup.PAPER_CACHE_SIZE))
        assert set(lookup) == set(ids) and len(lookup) == 3 and "no-such-paper" not in lookup
        assert reads == []  # membership comes from the ids alone
        assert lookup[ids[0]].id == ids[0] and lookup[ids[0]].id == ids[0]
        assert reads == [[ids[0]]]  # parsed once, then kept
        with pytest.raises(KeyError):
            lookup["no-such-paper"]


def test_the_cache_is_bounded(seed_lexical_index_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(paper_lookup, "PAPER_CACHE_SIZE", 2)
    with DigestIndex.load(seed_lexical_index_dir) as idx:
        ids = _some_ids(idx, 4)
        cache: BoundedCache = BoundedCache(paper_lookup.PAPER_CACHE_SIZE)
        lookup = PaperLookup(idx.store, ids, cache)
        for pid in ids:
            lookup[pid]
        assert list(cache) == ids[-2:]  # least recently read first out


def test_a_page_of_papers_is_one_read_of_the_store(seed_lexical_index_dir: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    with DigestIndex.load(seed_lexical_index_dir) as idx:
        ids = _some_ids(idx, 5)
        reads = _count_reads(idx, monkeypatch)
        lookup = PaperLookup(idx.store, ids, BoundedCache(paper_lookup.PAPER_CACHE_SIZE))
        lookup[ids[0]]
        page = lookup.read(list(reversed(ids)))
        assert list(page) == list(reversed(ids)) and all(page[p].id == p for p in ids)
        assert reads == [[ids[0]], sorted(ids[1:], reverse=True)]  # the cached one is not read again
        with pytest.raises(KeyError):
            lookup.read(["no-such-paper"])
        # and a search reads its page's papers at once
        idx._query._paper_cache.clear()  # noqa: SLF001
        reads.clear()
        hits = idx.search("트랜스포머", k=5, mode="lexical")
        assert len(hits) > 1 and len(reads) == 1 and sorted(reads[0]) == sorted(h.paper.id for h in hits)

