"""`ChunkTable`: every chunk's paper and section kind in memory, equal to what `Store.chunk_heads` reads."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from digest_rag import DigestIndex
from digest_rag.storage.chunk_table import ChunkTable
from digest_rag.storage.store import Store


@pytest.mark.parametrize("held_heads", [65_536, 0])  # each chunk's record made once and kept, or per search
def test_heads_equal_the_stores(seed_index_dir: Path, monkeypatch: pytest.MonkeyPatch, held_heads: int) -> None:
    monkeypatch.setattr("digest_rag.storage.chunk_table.HELD_HEADS", held_heads)
    store = Store(next(seed_index_dir.glob("gen-*")) / "store.sqlite")
    table = ChunkTable.read(store)
    ids = sorted(store.chunks())
    assert len(table) == len(ids)
    asked = ids[::3] + [10**12, -5]  # ids the store lacks are left out, as by `chunk_heads`
    for _ in range(2):
        assert table.heads(asked) == store.chunk_heads(asked)
        assert table.heads(set(asked[:5])) == store.chunk_heads(asked[:5])
    assert (table._heads is not None) == bool(held_heads)  # noqa: SLF001
    assert table.heads([]) == {}
    store.close()


def test_a_chunk_whose_paper_row_is_gone_is_not_held(seed_index_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite"
    shutil.copy(next(seed_index_dir.glob("gen-*")) / "store.sqlite", path)
    con = sqlite3.connect(path)
    pid, cid = con.execute("SELECT paper_id, id FROM chunks LIMIT 1").fetchone()
    con.execute("DELETE FROM papers WHERE id = ?", (pid,))
    con.commit()
    con.close()
    store = Store(path)
    table = ChunkTable.read(store)
    assert cid not in table.heads([cid])
    assert pid not in table.paper_ids
    store.close()


def test_search_reads_the_table_and_answers_as_with_sqlite(seed_index_dir: Path, monkeypatch) -> None:
    idx = DigestIndex.load(seed_index_dir)
    question = "긴 컨텍스트를 악용하는 탈옥 공격"
    first = [(h.paper.id, h.score, h.snippet) for h in idx.search(question, k=5, mode="lexical")]
    # A process's first search asks SQLite (a one-question CLI process never reads every chunk's row) ...
    assert idx._query._chunk_table is None  # noqa: SLF001
    with_table = [(h.paper.id, h.score, h.snippet) for h in idx.search(question, k=5, mode="lexical")]
    # ... the second reads the table, and answers the same.
    assert with_table == first
    assert idx._query._chunk_table is not None and len(idx.chunk_table) == idx.manifest.chunk_count  # noqa: SLF001
    # Above the size limit the index asks SQLite per search: the same answers.
    monkeypatch.setattr("digest_rag.search.pipeline.MAX_TABLE_CHUNKS", 0)
    sqlite_only = DigestIndex.load(seed_index_dir)
    assert sqlite_only.chunk_table is None
    for _ in range(2):
        assert [(h.paper.id, h.score, h.snippet) for h in sqlite_only.search(question, k=5, mode="lexical")] == first
    idx.close()
    sqlite_only.close()


def test_chunks_of_papers_equal_the_stores(seed_index_dir: Path) -> None:
    store = Store(next(seed_index_dir.glob("gen-*")) / "store.sqlite")
    table = ChunkTable.read(store)
    papers = table.paper_ids[::2] + ["no-such-paper"]
    assert table.chunks_of(papers) == store.chunk_ids_of(papers) and len(table.chunks_of(papers)) > len(papers) // 2
    assert table.chunks_of([]) == {} == table.chunks_of(["no-such-paper"])
    store.close()
