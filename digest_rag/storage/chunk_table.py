"""Every chunk's paper and section kind in memory arrays: what ranking a search's candidates reads.

A lexical search ranks a few hundred candidate chunks; each needs its paper (to group chunks into papers,
boost English-only papers, promote a named paper) and whether it is a title passage (a poor snippet). Asking
SQLite for them on every search (`Store.chunk_heads`, then `Store.paper_ids` to check the papers exist) was
a fifth of a 3 ms lexical search at ml-papers size. `ChunkTable` reads them once per loaded index, in one
query, into numpy arrays: sorted chunk ids (int64), each chunk's paper number (int32) and title flag, and
the paper ids once each. Memory: 13 bytes per chunk plus the paper ids (about 0.3 MB at 1,645 papers and
4,311 chunks). The read costs a few milliseconds per 10,000 chunks, so an index of more than
`MAX_CHUNKS` chunks keeps asking SQLite per search (as before) instead of holding a million-paper table.

Only chunks whose paper row exists are held (an inner join), so a chunk of a missing paper is skipped the
way `PaperLookup` skipped it.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from digest_rag.storage.store import ChunkHead, Store

__all__ = ["MAX_CHUNKS", "ChunkTable"]

#: Largest index (in chunks) whose table is held in memory; bigger ones ask SQLite per search.
MAX_CHUNKS = 250_000

#: Largest table whose chunks' `ChunkHead` records are made once and kept (~100 bytes each).
HELD_HEADS = 65_536


class ChunkTable:
    """Chunk id -> (paper id, section kind) for every chunk of a store, as arrays."""

    __slots__ = ("_heads", "_ids", "_kind_names", "_kinds", "_number", "_paper_of", "paper_ids")

    def __init__(self, rows: Iterable[tuple[int, str, str]]) -> None:
        numbers: dict[str, int] = {}
        kinds: dict[str, int] = {}
        ids: list[int] = []
        paper_of: list[int] = []
        kind_of: list[int] = []
        for cid, pid, kind in rows:
            ids.append(int(cid))
            paper_of.append(numbers.setdefault(str(pid), len(numbers)))
            kind_of.append(kinds.setdefault(str(kind), len(kinds)))
        order = np.argsort(np.asarray(ids, dtype=np.int64), kind="stable")
        self._ids = np.asarray(ids, dtype=np.int64)[order]
        self._paper_of = np.asarray(paper_of, dtype=np.int32)[order]
        self._kinds = np.asarray(kind_of, dtype=np.int8)[order]
        #: Paper ids by paper number.
        self.paper_ids: list[str] = list(numbers)
        self._kind_names: list[str] = list(kinds)  # section kind by code
        self._number = numbers  # paper id -> paper number
        # Each chunk's `ChunkHead`, made once for a table of at most HELD_HEADS chunks (a search asks for ~200).
        self._heads: list[ChunkHead] | None = None

    @classmethod
    def read(cls, store: Store) -> ChunkTable:
        """The table of every chunk of ``store`` whose paper exists, in one query."""
        return cls(store.chunk_rows())

    def __len__(self) -> int:
        return int(self._ids.shape[0])

    def heads(self, ids: Iterable[int]) -> dict[int, ChunkHead]:
        """`Store.chunk_heads` from memory: the chunks of ``ids`` the table holds (others are left out)."""
        wanted = np.fromiter(ids, dtype=np.int64)
        if wanted.size == 0 or self._ids.size == 0:
            return {}
        pos = np.searchsorted(self._ids, wanted)
        pos[pos >= self._ids.size] = 0
        found = self._ids[pos] == wanted
        at = pos[found]
        papers, kinds = self.paper_ids, self._kind_names
        if self._heads is None and self._ids.size <= HELD_HEADS:
            self._heads = list(map(ChunkHead._make, zip(map(papers.__getitem__, self._paper_of.tolist()),
                                                         map(kinds.__getitem__, self._kinds.tolist()), strict=True)))
        if self._heads is not None:
            return dict(zip(wanted[found].tolist(), map(self._heads.__getitem__, at.tolist()), strict=True))
        # map/zip/_make keep the per-candidate work in C: a search has hundreds of candidates.
        heads = map(ChunkHead._make, zip(map(papers.__getitem__, self._paper_of[at].tolist()),
                                         map(kinds.__getitem__, self._kinds[at].tolist()), strict=True))
        return dict(zip(wanted[found].tolist(), heads, strict=True))

    def chunks_of(self, paper_ids: Iterable[str]) -> dict[int, str]:
        """`Store.chunk_ids_of` from memory: chunk id -> paper id of every chunk of ``paper_ids`` it holds."""
        numbers = [self._number[p] for p in set(paper_ids) if p in self._number]
        if not numbers:
            return {}
        at = np.flatnonzero(np.isin(self._paper_of, numbers))
        papers = self.paper_ids
        return dict(zip(self._ids[at].tolist(), map(papers.__getitem__, self._paper_of[at].tolist()), strict=True))
