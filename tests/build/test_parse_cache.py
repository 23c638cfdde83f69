"""The parse cache: unchanged files are not parsed again, and a build through it equals one without it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from digest_rag import DigestIndex
from digest_rag.storage.layout import read_manifest
from digest_rag.build.parse_cache import PARSE_CACHE_FILE, ParseCache


def _contents(ix: Path) -> tuple[list, list]:
    """Papers and chunks of the index's current generation, as stored."""
    con = sqlite3.connect(ix / read_manifest(ix).data_dir / "store.sqlite")
    try:
        papers = con.execute("SELECT * FROM papers ORDER BY id").fetchall()
        chunks = con.execute("SELECT * FROM chunks ORDER BY id").fetchall()
    finally:
        con.close()
    return papers, chunks


@pytest.fixture()
def parses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The sources the parser reads (cache hits never reach it)."""
    import digest_rag.build.spool as spool

    seen: list[str] = []
    real = spool.iter_text

    def counting(text: str, source: str, *args: object):  # noqa: ANN202
        seen.append(source)
        return real(text, source, *args)

    monkeypatch.setattr(spool, "iter_text", counting)
    return seen


def test_build_through_the_cache_equals_a_cold_build(tmp_path: Path, corpus: Path, parses: list[str]) -> None:
    ix = tmp_path / "ix"
    DigestIndex.build([corpus], index_dir=ix, lexical_only=True).close()
    files = len(parses)
    assert files == len(list(corpus.glob("*.txt"))) and (ix / PARSE_CACHE_FILE).is_file()
    cold = _contents(ix)
    # --force writes a new generation from cached papers: no file is parsed again, the result is the same.
    DigestIndex.build([corpus], index_dir=ix, lexical_only=True, force=True).close()
    assert len(parses) == files and _contents(ix) == cold
    # One file edited: only it is parsed; the result equals a cold build of the edited corpus.
    edited = sorted(corpus.glob("*.txt"))[0]
    edited.write_text(edited.read_text(encoding="utf-8") + "\n추가된 문장입니다.\n", encoding="utf-8")
    DigestIndex.build([corpus], index_dir=ix, lexical_only=True).close()
    assert parses[files:] == [str(edited)]
    ref = tmp_path / "ref"
    DigestIndex.build([corpus], index_dir=ref, lexical_only=True).close()
    assert _contents(ix) == _contents(ref)


def test_a_damaged_entry_is_parsed_again_never_served(tmp_path: Path, corpus: Path, parses: list[str]) -> None:
    ix = tmp_path / "ix"
    DigestIndex.build([corpus], index_dir=ix, lexical_only=True).close()
    cold, files = _contents(ix), len(parses)
    con = sqlite3.connect(ix / PARSE_CACHE_FILE)
    key, value = con.execute("SELECT key, value FROM entries ORDER BY key LIMIT 1").fetchone()
    # A plausible but wrong value (a title changed) with the old checksum.
    con.execute("UPDATE entries SET value = ? WHERE key = ?", (value.replace('"title":"', '"title":"X', 1), key))
    con.commit()
    con.close()
    DigestIndex.build([corpus], index_dir=ix, lexical_only=True, force=True).close()
    assert len(parses) == files + 1  # the damaged entry's file, and only it
    assert _contents(ix) == cold
    # A file that is not a database at all only costs the parsing.
    (ix / PARSE_CACHE_FILE).write_bytes(b"not sqlite" * 100)
    DigestIndex.build([corpus], index_dir=ix, lexical_only=True, force=True).close()
    assert len(parses) == 2 * files + 1 and _contents(ix) == cold
    with ParseCache(ix) as cache:  # rewritten whole by that build
        assert all(cache.get(ParseCache.key(str(f), f.read_bytes())) for f in sorted(corpus.glob("*.txt")))


def test_the_key_covers_path_bytes_and_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    import digest_rag.build.parse_cache as pc

    key = ParseCache.key("a/notes.md", b"x")
    assert key != ParseCache.key("b/notes.md", b"x") and key != ParseCache.key("a/notes.md", b"y")
    monkeypatch.setattr(pc, "parser_version", lambda: "another parser")
    assert ParseCache.key("a/notes.md", b"x") != key


def test_a_symlinked_cache_is_refused(tmp_path: Path, corpus: Path) -> None:
    from digest_rag.errors import UnsafeIndexPathError

    ix = tmp_path / "ix"
    DigestIndex.build([corpus], index_dir=ix, lexical_only=True).close()
    elsewhere = tmp_path / "elsewhere.sqlite"
    (ix / PARSE_CACHE_FILE).rename(elsewhere)
    (ix / PARSE_CACHE_FILE).symlink_to(elsewhere)
    with pytest.raises(UnsafeIndexPathError):
        DigestIndex.build([corpus], index_dir=ix, lexical_only=True, force=True)
