"""The papers of a search's candidates as a mapping (`PaperLookup`): membership from their ids, each record
read from the store and parsed only when a page shows it, kept in the loaded index's bounded cache."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

from digest_rag.errors import IndexCorruptedError
from digest_rag.models import Paper
from digest_rag.storage.bounded_cache import BoundedCache
from digest_rag.storage.store import Store

#: Parsed papers a loaded index keeps for later searches (a shell or server asks about the same papers often).
PAPER_CACHE_SIZE = 4096


class PaperLookup(Mapping[str, Paper]):
    """The papers of a search's candidate chunks: membership from their ids, records parsed when read.

    A search touches a few hundred candidate chunks but shows ``k`` papers;
    loading every paper of the index (all of them parsed from JSON: 25 s and
    GBs at a million papers) or even every candidate's is wasted work.
    """

    def __init__(self, store: Store, ids: Iterable[str], cache: BoundedCache[str, Paper], *,
                 known: bool = False) -> None:
        self._store = store
        # ``known``: the ids come from a `ChunkTable`, which holds only chunks whose paper exists.
        self._ids = set(ids) if known else store.paper_ids(ids)
        self._cache = cache

    def __contains__(self, pid: object) -> bool:
        return pid in self._ids

    def __getitem__(self, pid: str) -> Paper:
        if pid not in self._ids:
            raise KeyError(pid)
        return self.read([pid])[pid]

    def read(self, pids: Iterable[str]) -> dict[str, Paper]:
        """The papers ``pids`` (all among this lookup's), from the cache or with one read of the store: a
        page's papers cost one query, not one each."""
        wanted = list(dict.fromkeys(pids))
        kept = self._cache.found(wanted)
        missing = [pid for pid in wanted if pid not in kept]
        for pid in missing:
            if pid not in self._ids:
                raise KeyError(pid)
        fresh: dict[str, Paper] = {}
        if missing:
            fresh = self._store.papers(missing)
            for pid in missing:
                if pid not in fresh:  # deleted under us: the store is read-only, so this is damage
                    raise IndexCorruptedError(f"{self._store.path}: paper {pid!r} vanished while searching")
            self._cache.keep(fresh)
        return {pid: kept[pid] if pid in kept else fresh[pid] for pid in wanted}

    def __iter__(self) -> Iterator[str]:
        return iter(self._ids)

    def __len__(self) -> int:
        return len(self._ids)
