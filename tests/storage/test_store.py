"""The SQLite store: read-only opening, odd paths, schema versions, damaged rows."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from digest_rag import IndexCorruptedError, IndexVersionError
from digest_rag.storage.store import Store


def _store_copy(seed_index_dir: Path, dst: Path) -> Path:
    src = next(seed_index_dir.glob("gen-*")) / "store.sqlite"
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(src, dst)
    return dst


def test_odd_paths_open_read_only(seed_index_dir: Path, tmp_path: Path) -> None:
    path = _store_copy(seed_index_dir, tmp_path / "a?b#c%20 d" / "store.sqlite")
    store = Store(path)
    papers, chunks, text_chunks = store.counts()
    assert papers == 29 and chunks > text_chunks > 0
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        store.con.execute("DELETE FROM papers")
    store.close()


def test_schema_version_and_damaged_rows(seed_index_dir: Path, tmp_path: Path) -> None:
    path = _store_copy(seed_index_dir, tmp_path / "s.sqlite")
    con = sqlite3.connect(path)
    with con:
        con.execute("UPDATE papers SET json = ? WHERE id = (SELECT MIN(id) FROM papers)", ('{"id": 1}',))
        con.execute("UPDATE chunks SET language = ? WHERE id = (SELECT MIN(id) FROM chunks)", ("klingon",))
    con.close()
    store = Store(path)
    with pytest.raises(IndexCorruptedError, match="damaged paper record"):
        store.papers()
    with pytest.raises(IndexCorruptedError, match="damaged chunk record"):
        store.chunks()
    store.close()
    con = sqlite3.connect(path)
    with con:
        con.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", ("99",))
    con.close()
    with pytest.raises(IndexVersionError, match="schema version '99'"):
        Store(path)


def test_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite"
    path.write_bytes(b"SQLite format 3\x00" + b"\xff" * 5000)
    with pytest.raises(IndexCorruptedError, match="store.sqlite"):
        Store(path)
    with pytest.raises(IndexCorruptedError):
        Store(tmp_path / "missing.sqlite")


def test_token_cache_is_keyed_by_analysis(seed_index_dir: Path, tmp_path: Path) -> None:
    from digest_rag.storage.layout import read_manifest
    from digest_rag.lexical.builder import analysis_cache_key

    src = seed_index_dir / read_manifest(seed_index_dir).data_dir / "store.sqlite"
    store = Store(src)
    try:
        cached = store.doc_tokens(analysis_cache_key())
        assert cached and all(isinstance(v, list) for v in cached.values())
        assert store.doc_tokens("another analysis") == {}
    finally:
        store.close()
    # A store written before the cache existed: no table, no key -> an empty cache, not an error.
    old = tmp_path / "old.sqlite"
    shutil.copy(src, old)
    con = sqlite3.connect(old)
    con.execute("DROP TABLE doc_tokens")
    con.execute("DELETE FROM meta WHERE key = 'analysis_key'")
    con.commit()
    con.close()
    store = Store(old)
    try:
        assert store.doc_tokens(analysis_cache_key()) == {}
    finally:
        store.close()


def test_hostile_token_cache_row_is_ignored(seed_index_dir: Path, tmp_path: Path) -> None:
    """Issue 16 item 6: a cached token list nested 200k deep was a RecursionError traceback in the next build."""
    from digest_rag.index import read_manifest
    from digest_rag.lexical.builder import analysis_cache_key

    copy = tmp_path / "store.sqlite"
    shutil.copy(seed_index_dir / read_manifest(seed_index_dir).data_dir / "store.sqlite", copy)
    con = sqlite3.connect(copy)
    con.execute("UPDATE doc_tokens SET tokens = ? WHERE rowid = (SELECT MIN(rowid) FROM doc_tokens)", ("[" * 200_000,))
    con.commit()
    con.close()
    store = Store(copy)
    try:
        assert store.doc_tokens(analysis_cache_key()) == {}  # a cache: unreadable means analyse again
    finally:
        store.close()


def test_bm25_count_is_recorded_not_recomputed(seed_index_dir: Path, tmp_path: Path) -> None:
    """Opening an index counts rows (cheap) but reads the BM25 document count recorded at commit: computing it
    per paper (a correlated scan of every chunk) took a second per 100k papers on every load."""
    path = _store_copy(seed_index_dir, tmp_path / "s.sqlite")
    store = Store(path)
    statements: list[str] = []
    store.con.set_trace_callback(statements.append)
    recorded = store.counts()
    store.con.set_trace_callback(None)
    assert statements and not any("EXISTS" in s or "section_kind" in s for s in statements), statements
    # What was recorded is what a scan finds (a store written before the counts were recorded is scanned).
    con = sqlite3.connect(path)
    with con:
        con.execute("DELETE FROM meta WHERE key = 'lexical_count'")
    con.close()
    store.close()
    old_style = Store(path)
    scanned = old_style.counts()
    old_style.close()
    assert recorded == scanned and recorded[0] == 29 and recorded[1] > recorded[2] > 0


def test_chunk_heads_match_the_chunks(seed_index_dir: Path, tmp_path: Path) -> None:
    store = Store(_store_copy(seed_index_dir, tmp_path / "store.sqlite"))
    chunks = store.chunks()
    ids = sorted(chunks)[:40] + [10**9]  # an id the store lacks is left out, as by `chunks`
    heads = store.chunk_heads(ids)
    assert heads == {cid: (chunks[cid].paper_id, chunks[cid].section_kind) for cid in ids if cid in chunks}
    store.close()
