"""The papers parsed from each input file, kept beside the generations so an unchanged file is not parsed again.

Why: a rebuild (``--force``, or one with 1% of the notes edited) parsed every
input file again: about 0.8-1.5 s for ml-papers' 1,710 files (format detection
alone 0.6 s), on every build, for files whose bytes had not changed.

The cache is a cache, never the index: searches never read it, a build may
drop any entry at any time, and deleting the file only costs the time to parse
again. Like the embedding cache, ``--force`` still uses it: ``--force`` means
"write a new generation", not "distrust what is cached" (every entry is
verified on read, and its key covers everything the papers depend on).

Layout: one SQLite file, ``<index>/parse-cache.sqlite`` (a file, not a directory,
so an index keeps one directory per generation plus the embedding cache).

Keys. An entry is keyed by sha256 of (`parser_version`, the file's path as the
build names it, sha256 of the file's bytes). The parser version hashes the
source of the whole ``parsing`` package (format detection included), of
``models.py`` and ``text.py`` (decoding, ids) and the versions of digest_rag and
pydantic (which writes the JSON), so any change to the code that turns bytes
into papers misses every entry instead of serving stale papers. The path is
part of the key because it becomes each paper's ``source`` (and the notes
parser reads dates from it).

Value. The file's format and its papers as the JSON the build's spool stores
(`Paper.model_dump_json`, one per line: that JSON never holds a raw newline),
in the parser's order, with a blake2b checksum of key and value. A row whose
checksum fails is deleted and the file parsed again, never served. A database
SQLite cannot read, or of another format, is deleted and started afresh. No
pickle. Files the parser rejects are not cached (they are re-read each build),
nor are files over `MAX_CACHED_BYTES` (a large JSONL file is streamed record by
record and must not be held in memory as one value).

Writes are buffered and committed once when the build closes the cache; a
killed build loses only that. `ParseCache.close(collect=True)` (a full build)
drops the entries this build did not use, so the file tracks the corpus.
Only the process holding the index's writer lock opens it.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from digest_rag.storage.side_cache import check_cache_paths, entry_checksum, remove_db

__all__ = ["MAX_CACHED_BYTES", "PARSE_CACHE_FILE", "PARSE_CACHE_FORMAT", "ParseCache", "parser_version"]

log = logging.getLogger(__name__)

#: File name inside the index directory (also in layout's list of our names).
PARSE_CACHE_FILE = "parse-cache.sqlite"
#: Layout of the database; another value means another digest_rag wrote it: started afresh.
PARSE_CACHE_FORMAT = 1
#: Files larger than this are parsed every build, never cached.
MAX_CACHED_BYTES = 8 << 20
_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE entries (key BLOB PRIMARY KEY, value TEXT NOT NULL, checksum BLOB NOT NULL) WITHOUT ROWID;
"""


@functools.lru_cache(maxsize=1)
def parser_version() -> str:
    """A hash of everything besides a file's path and bytes that decides the papers parsed from it."""
    import pydantic

    from digest_rag.version import __version__

    here = Path(__file__).resolve().parent.parent  # the digest_rag package
    h = hashlib.sha256(f"{PARSE_CACHE_FORMAT}|{__version__}|pydantic-{pydantic.VERSION}".encode())
    for f in sorted((here / "parsing").glob("*.py")) + [here / "models.py", here / "text.py"]:
        h.update(b"\x00" + f.name.encode() + b"\x00" + f.read_bytes())
    return h.hexdigest()


def _checksum(key: bytes, value: str) -> bytes:
    return entry_checksum(key, value.encode("utf-8", "surrogatepass"))


class ParseCache:
    """The parse cache of one index directory. Use as a context manager.

    ``writable=False`` (a dry run) reads entries but never creates, changes or
    deletes anything. Nothing is created on disk before the first `put`.
    """

    def __init__(self, index_dir: str | os.PathLike[str], *, writable: bool = True) -> None:
        self.path = Path(index_dir) / PARSE_CACHE_FILE
        self.writable = writable
        self.hits = 0
        self.misses = 0
        self.dropped = 0
        self._con: sqlite3.Connection | None = None
        self._opened = False
        self._pending: dict[bytes, str] = {}
        self._used: set[bytes] = set()

    def __enter__(self) -> ParseCache:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close(commit=exc_type is None)

    # ------------------------------------------------------------------ keys and lookups
    @staticmethod
    def key(source: str, data: bytes) -> bytes:
        """The entry key of the file named ``source`` holding ``data``."""
        return ParseCache.key_of_digest(source, hashlib.sha256(data).digest())

    @staticmethod
    def key_of_digest(source: str, digest: bytes) -> bytes:
        """`key` from the sha256 of the file's bytes (a build hashed them already for its up-to-date check)."""
        h = hashlib.sha256(parser_version().encode())
        h.update(b"\x00" + source.encode("utf-8", "surrogatepass") + b"\x00" + digest)
        return h.digest()

    def get(self, key: bytes) -> tuple[str, list[str]] | None:
        """(format, papers' JSON) of a verified entry, or None (absent, damaged: then deleted)."""
        self._used.add(key)
        con = self._connect(create=False)
        row = None
        if con is not None:
            try:
                row = con.execute("SELECT value, checksum FROM entries WHERE key = ?", (key,)).fetchone()
            except sqlite3.DatabaseError as exc:
                self._reset(exc)
        if row is None:
            self.misses += 1
            return None
        value, checksum = row
        fmt, sep, body = value.partition("\n") if isinstance(value, str) else ("", "", "")
        if not isinstance(value, str) or checksum != _checksum(key, value) or not sep or not fmt:
            # Damaged: dropped and parsed again, never served.
            self.dropped += 1
            self.misses += 1
            if self.writable:
                self._guard(lambda: con.execute("DELETE FROM entries WHERE key = ?", (key,)))  # type: ignore[union-attr]
            return None
        self.hits += 1
        return fmt, body.split("\n") if body else []

    def put(self, key: bytes, fmt: str, papers: Sequence[str]) -> None:
        """Remember the papers (as JSON) parsed from the file of ``key``; written when the cache closes."""
        self._used.add(key)
        if self.writable:
            self._pending[key] = "\n".join([fmt, *papers])

    # ------------------------------------------------------------------ the database
    def _check_paths(self) -> None:
        check_cache_paths(self.path, "parse cache")

    def _connect(self, create: bool) -> sqlite3.Connection | None:
        if self._con is not None or (self._opened and not create):
            return self._con
        self._opened = True
        self._check_paths()
        if not self.path.exists() and not (create and self.writable):
            return None
        uri = self.path.resolve().as_uri() + ("" if self.writable else "?mode=ro")
        try:
            con = sqlite3.connect(uri, uri=True, isolation_level=None)
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if not tables and self.writable:
                con.executescript(_SCHEMA)
                con.execute("INSERT INTO meta VALUES ('format', ?)", (str(PARSE_CACHE_FORMAT),))
            elif tables != {"meta", "entries"} or con.execute(
                    "SELECT value FROM meta WHERE key = 'format'").fetchone() != (str(PARSE_CACHE_FORMAT),):
                con.close()
                self._reset("another format")
                return self._connect(create) if self.writable and create else None
        except sqlite3.DatabaseError as exc:
            self._reset(exc)
            return None
        self._con = con
        return con

    def _reset(self, why: object) -> None:
        """The database is unreadable or foreign: delete it (a cache), unless read-only."""
        log.warning("%s: parse cache unusable (%s); %s", self.path, why,
                    "starting it afresh" if self.writable else "not using it")
        if self._con is not None:
            self._con.close()
            self._con = None
        if self.writable:
            remove_db(self.path)
        self._opened = False

    def _guard(self, fn) -> None:  # noqa: ANN001 - internal
        try:
            fn()
        except sqlite3.DatabaseError as exc:
            self._reset(exc)

    def close(self, *, commit: bool = True, collect: bool = False) -> None:
        """Write the new entries (unless ``commit`` is false) and, with ``collect``, drop the unused ones."""
        try:
            if commit and self.writable and (self._pending or collect):
                con = self._connect(create=bool(self._pending))
                if con is not None:
                    self._guard(lambda: self._write(con, collect))
        finally:
            if self._con is not None:
                self._con.close()
                self._con = None
            self._pending = {}

    def _write(self, con: sqlite3.Connection, collect: bool) -> None:
        con.execute("BEGIN IMMEDIATE")
        con.executemany("INSERT OR REPLACE INTO entries VALUES (?, ?, ?)",
                        ((k, v, _checksum(k, v)) for k, v in self._pending.items()))
        if collect:
            con.execute("CREATE TEMP TABLE used (key BLOB PRIMARY KEY) WITHOUT ROWID")
            con.executemany("INSERT OR IGNORE INTO used VALUES (?)", ((k,) for k in self._used))
            con.execute("DELETE FROM entries WHERE key NOT IN (SELECT key FROM used)")
        con.execute("COMMIT")
