"""A build's papers and chunks on disk (a temporary SQLite file) instead of in memory.

A build of a million small papers held every Paper, every Chunk, every token
list and the BM25 input at once: 7.2 GB at 1M papers. Papers are now streamed
from the parser into this spool (merging duplicates by id exactly as
`parsing.combine_parsed` does), chunks are cut and written batch by batch, and
the store and BM25 index are written from it in one more pass; what stays in
memory is a batch at a time plus compact arrays.

The spool lives in a hidden ``.tmp-gen-spool-*`` directory inside the index
directory (or in ``TMPDIR`` when none is given) and is deleted when the build
ends; a build that is killed leaves it behind, and the next build's garbage
collection removes it like any abandoned generation. It is never part of an index.
"""

from __future__ import annotations

import secrets
import shutil
import sqlite3
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from pydantic import ValidationError

from digest_rag.errors import CorpusError, IndexCorruptedError, ParseError
from digest_rag.storage.layout import TMP_GENERATION_PREFIX
from digest_rag.models import Chunk, Paper
from digest_rag.parsing import (
    PaperMerger,
    ParseResult,
    Skip,
    combine_parsed,
    corpus_files,
    iter_file,
    iter_text,
    walk_corpus,
)
from digest_rag.build.parse_cache import MAX_CACHED_BYTES, ParseCache
from digest_rag.storage.store import CHUNK_COLUMNS
from digest_rag.text import decode_bytes, read_bytes
from digest_rag.models import ProgressCallback

__all__ = ["PaperSpool", "SPOOL_BATCH"]

#: Papers per batch when streaming through the spool: big enough that SQL round trips do not matter,
#: small enough that a batch's Paper and Chunk objects stay a few MB.
SPOOL_BATCH = 2000

_SCHEMA = f"""
CREATE TABLE papers (id TEXT PRIMARY KEY, source TEXT NOT NULL, json TEXT NOT NULL);
CREATE TABLE chunks (
    seq INTEGER PRIMARY KEY,
    id INTEGER NOT NULL UNIQUE,
    paper_id TEXT NOT NULL,
{CHUNK_COLUMNS});
CREATE INDEX chunks_paper ON chunks(paper_id);
"""



class PaperSpool:
    """Papers (by id, as their JSON) and chunks (in index order) of one build, in a temporary SQLite file.

    Use as a context manager; the file is removed on exit. ``skipped``,
    ``merged`` and ``files`` are a `ParseResult`'s, without its papers.
    """

    def __init__(self, index_dir: Path | None = None) -> None:
        if index_dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="digest-rag-build-"))
        else:
            index_dir.mkdir(parents=True, exist_ok=True)
            self._dir = index_dir / f"{TMP_GENERATION_PREFIX}spool-{secrets.token_hex(4)}"
            self._dir.mkdir()
        self.path = self._dir / "spool.sqlite"
        # Autocommit mode: transactions and savepoints are ours (a file with a bad record rolls back).
        self.con = sqlite3.connect(self.path.as_uri(), uri=True, isolation_level=None)
        self.con.executescript("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA temp_store=FILE;" + _SCHEMA)
        self.con.execute("BEGIN")
        self.skipped: list[Skip] = []
        self.merged: list[str] = []
        self.files: dict[str, str] = {}
        self._chunks = 0
        self._merging: dict[str, PaperMerger] = {}  # id -> copies merged so far, written by _finish_merges
        self._marks: dict[str, tuple | None] = {}  # the current file's merges: id -> PaperMerger.mark before it

    def __enter__(self) -> PaperSpool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Drop the spool file."""
        try:
            self.con.close()
        finally:
            shutil.rmtree(self._dir, ignore_errors=True)

    # ------------------------------------------------------------------ papers in
    def parse_paths(self, paths: Iterable[str | Path], progress: ProgressCallback | None = None,
                    cache: ParseCache | None = None, *, listing: tuple[list[Path], list[Skip]] | None = None,
                    digests: Mapping[str, bytes] | None = None) -> None:
        """`parsing.parse_paths` into the spool, each file's papers streamed (a JSONL file record by record).

        With a ``cache`` (`parse_cache.ParseCache`), a file whose bytes and parser are unchanged gives back
        the papers it gave before instead of being parsed again; newly parsed files are added to it.
        ``listing`` is `corpus_files` of ``paths`` when the caller has it; ``digests`` (file name -> sha256
        of its bytes, as the caller read them) saves reading a file whose entry is cached.
        """
        files, skips = listing if listing is not None else corpus_files(paths)
        self.skipped.extend(skips)
        for f, name, bad_name in walk_corpus(files, progress):
            if bad_name is not None:
                self._skip(name, bad_name)
                continue
            data = key = None
            if cache is not None:
                hit, data, key = _cached(f, cache, digests)
                if hit is not None:
                    self._parse_file(f, hit[0], iter(hit[1]), savepoint=False)
                    continue
            try:
                fmt, papers = iter_file(f) if data is None else iter_text(decode_bytes(data, str(f)), str(f))
                kept = self._parse_file(f, fmt, ((p, p.model_dump_json()) for p in papers))
            except ParseError as exc:
                self._skip(str(f), exc)
                continue
            if cache is not None and key is not None:
                cache.put(key, fmt, kept)
        self._finish_merges()

    def _parse_file(self, f: Path, fmt: str, papers: Iterator[tuple[Paper, str]], *,
                    savepoint: bool = True) -> list[str]:
        """Add one file's papers (each with its JSON); returns their JSON in order.

        A file with a bad record is skipped whole, as parse_paths does: inside a ``savepoint``, what it
        added is undone before its ParseError goes up. Papers already validated (a cache hit) need none.
        """
        if savepoint:
            self.con.execute("SAVEPOINT file")
        self._marks = {}
        notes: list[str] = []
        kept: list[str] = []
        try:
            batch: list[tuple[Paper, str]] = []
            for pair in papers:
                batch.append(pair)
                kept.append(pair[1])
                if len(batch) >= SPOOL_BATCH:  # read at call time: tests shrink it
                    self._add([p for p, _js in batch], notes, [js for _p, js in batch])
                    batch = []
            self._add([p for p, _js in batch], notes, [js for _p, js in batch])
        except ParseError:
            if savepoint:
                self.con.execute("ROLLBACK TO file")
                self.con.execute("RELEASE file")
                for pid, mark in self._marks.items():  # the merges of this file's papers are undone too
                    if mark is None:
                        del self._merging[pid]
                    else:
                        self._merging[pid].rollback(mark)
            raise
        if savepoint:
            self.con.execute("RELEASE file")
        self.files[str(f)] = fmt
        self.merged.extend(notes)
        return kept

    def add_result(self, result: ParseResult) -> None:
        """Papers an engine parsed elsewhere (already merged by `combine_parsed`)."""
        self.skipped.extend(result.skipped)
        self.merged.extend(result.merged)
        self.files.update(result.files)
        for i in range(0, len(result.papers), SPOOL_BATCH):
            self._add(result.papers[i : i + SPOOL_BATCH], self.merged)
        self._finish_merges()

    def _skip(self, source: str, exc: ParseError) -> None:
        # combine_parsed words a skip's reason; reuse it so both paths report alike.
        self.skipped.extend(combine_parsed([(source, exc)]).skipped)

    def _add(self, papers: Sequence[Paper], notes: list[str], jsons: Sequence[str] | None = None) -> None:
        """Insert ``papers`` (``jsons``: their `model_dump_json`, when already made); one whose id is
        already here is merged into the first (`PaperMerger`), written back by `_finish_merges`."""
        if not papers:
            return
        ids = [p.id for p in papers if p.id not in self._merging]
        known = {r[0] for r in self._in("SELECT id FROM papers WHERE id IN", ids)}
        fresh: dict[str, tuple[Paper, str | None]] = {}
        for i, p in enumerate(papers):
            merger = self._merging.get(p.id)
            if p.id not in self._marks and (merger is not None or p.id in known or p.id in fresh):
                self._marks[p.id] = merger.mark() if merger is not None else None
            if merger is None and (p.id in known or p.id in fresh):
                # The kept paper is read (or taken) once per id, however many copies follow.
                merger = self._merging[p.id] = PaperMerger(fresh[p.id][0] if p.id in fresh else self.paper(p.id))
            if merger is not None:
                notes.append(merger.add(p))
            else:
                fresh[p.id] = (p, jsons[i] if jsons is not None else None)
        self.con.executemany("INSERT INTO papers VALUES (?, ?, ?)",
                             ((p.id, p.source, js if js is not None else p.model_dump_json())
                              for p, js in fresh.values()))

    def _finish_merges(self) -> None:
        """Write the merged papers over their first copies (once each, after every copy was added)."""
        self.con.executemany("UPDATE papers SET json = ? WHERE id = ?",
                             ((m.paper().model_dump_json(), pid) for pid, m in self._merging.items()))
        self._merging.clear()

    def keep_old(self, old_db: Path, reread: Iterable[str]) -> None:
        """An update: add the previous index's papers, except those of files read again or replaced by id."""
        self.con.execute("CREATE TEMP TABLE IF NOT EXISTS reread (source TEXT PRIMARY KEY)")
        self.con.executemany("INSERT OR IGNORE INTO reread VALUES (?)", ((s,) for s in reread))
        with self._attached(old_db):
            cur = self.con.cursor().execute(
                "SELECT json FROM old.papers WHERE source NOT IN (SELECT source FROM reread) "
                "AND id NOT IN (SELECT id FROM main.papers) ORDER BY id")
            while rows := cur.fetchmany(SPOOL_BATCH):
                # Re-dumped: the spool keeps every paper's JSON as this version writes it.
                papers = [_paper(js, old_db) for (js,) in rows]
                self.con.executemany("INSERT INTO papers VALUES (?, ?, ?)",
                                     ((p.id, p.source, p.model_dump_json()) for p in papers))

    def diff(self, old_db: Path) -> tuple[list[str], list[str], list[str]]:
        """(added, removed, changed) paper ids against the previous index's store, each sorted."""
        with self._attached(old_db):
            added = [r[0] for r in self.con.execute(
                "SELECT id FROM main.papers WHERE id NOT IN (SELECT id FROM old.papers) ORDER BY id")]
            removed = [r[0] for r in self.con.execute(
                "SELECT id FROM old.papers WHERE id NOT IN (SELECT id FROM main.papers) ORDER BY id")]
            changed = []
            cur = self.con.cursor().execute(
                "SELECT m.id, m.json, o.json FROM main.papers m JOIN old.papers o ON o.id = m.id "
                "WHERE m.json != o.json ORDER BY m.id")
            while rows := cur.fetchmany(SPOOL_BATCH):
                # Different JSON is usually a different paper; an older version's JSON of the same paper is not.
                changed += [pid for pid, new, old in rows if _paper(new, self.path) != _paper(old, old_db)]
        return added, removed, changed

    @contextmanager
    def _attached(self, old_db: Path) -> Iterator[None]:
        self.con.execute("COMMIT")  # SQLite attaches outside transactions only
        self.con.execute("ATTACH DATABASE ? AS old", (Path(old_db).resolve().as_uri() + "?mode=ro",))
        self.con.execute("BEGIN")
        try:
            yield
        except sqlite3.DatabaseError as exc:
            raise IndexCorruptedError(f"{old_db}: SQLite store is damaged ({exc})") from exc
        finally:
            self.con.execute("COMMIT")
            self.con.execute("DETACH DATABASE old")
            self.con.execute("BEGIN")

    # ------------------------------------------------------------------ papers out
    def __len__(self) -> int:
        return int(self.con.execute("SELECT COUNT(*) FROM papers").fetchone()[0])

    def paper(self, pid: str) -> Paper:
        """One paper by id."""
        row = self.con.execute("SELECT json FROM papers WHERE id = ?", (pid,)).fetchone()
        if row is None:
            raise KeyError(pid)
        return _paper(row[0], self.path)

    def ids(self) -> Iterator[str]:
        """Every paper id, sorted."""
        cur = self.con.cursor().execute("SELECT id FROM papers ORDER BY id")
        while rows := cur.fetchmany(10_000):
            yield from (r[0] for r in rows)

    def batches(self, size: int | None = None) -> Iterator[list[tuple[Paper, str]]]:
        """Papers in id order, ``size`` at a time, each with its JSON (what the store keeps)."""
        cur = self.con.cursor().execute("SELECT json FROM papers ORDER BY id")
        while rows := cur.fetchmany(size or SPOOL_BATCH):
            yield [(_paper(js, self.path), js) for (js,) in rows]

    def sorted_json(self) -> Iterator[str]:
        """Every paper's JSON in code-point order (SQLite sorts UTF-8 bytewise, which is the same order)."""
        cur = self.con.cursor().execute("SELECT json FROM papers ORDER BY json")
        while rows := cur.fetchmany(10_000):
            yield from (r[0] for r in rows)

    def sources(self) -> list[str]:
        """Distinct sources of the papers, sorted."""
        return [r[0] for r in self.con.execute("SELECT DISTINCT source FROM papers ORDER BY source")]

    # ------------------------------------------------------------------ chunks
    def add_chunks(self, chunks: Sequence[Chunk], hashes: Sequence[str]) -> None:
        """Append chunks in index order with their passage hashes; a repeated chunk id is a CorpusError."""
        rows = [(self._chunks + i, c.id, c.paper_id, c.section_index, c.section_kind, c.language, c.start, c.end,
                 c.text, h) for i, (c, h) in enumerate(zip(chunks, hashes, strict=True))]
        try:
            self.con.executemany("INSERT INTO chunks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        except sqlite3.IntegrityError as exc:
            raise CorpusError("chunk id collision; two papers share an id and position") from exc
        self._chunks += len(rows)

    def clear_chunks(self) -> None:
        """Forget the chunks (a build that plans again with another model cuts them again)."""
        self.con.execute("DELETE FROM chunks")
        self._chunks = 0

    @property
    def chunk_count(self) -> int:
        """Chunks added so far."""
        return self._chunks

    def chunks_of(self, paper_ids: Sequence[str]) -> list[tuple[Chunk, str]]:
        """Chunks of these papers (with passage hashes), in index order."""
        cols = 'id, paper_id, section_index, section_kind, language, start, "end", text, passage_hash, seq'
        rows = sorted(self._in(f"SELECT {cols} FROM chunks WHERE paper_id IN", paper_ids), key=lambda r: r[-1])
        keys = ("id", "paper_id", "section_index", "section_kind", "language", "start", "end", "text")
        return [(Chunk(**dict(zip(keys, r[:8], strict=True))), r[8]) for r in rows]

    def _in(self, sql: str, values: Sequence[object]) -> list[tuple]:
        rows: list[tuple] = []
        for i in range(0, len(values), 500):
            part = values[i : i + 500]
            rows += self._rows(f"{sql} ({','.join('?' * len(part))})", part)
        return rows

    def _rows(self, sql: str, params: Sequence[object]) -> list[tuple]:
        """Rows of a query the spool's own code built (constants and '?' placeholders only)."""
        return self.con.execute(sql, params).fetchall()


_Cached = tuple[str, list[tuple[Paper, str]]]


def _cached(f: Path, cache: ParseCache, digests: Mapping[str, bytes] | None
            ) -> tuple[_Cached | None, bytes | None, bytes | None]:
    """(format, papers with their JSON) of ``f`` from ``cache``; else None, the file's bytes and the key to
    cache its papers under (None: unreadable, parsed and reported as without a cache; or too large)."""
    digest = digests.get(str(f)) if digests is not None else None
    if digest is not None:
        hit = _from_cache(cache, cache.key_of_digest(str(f), digest))
        if hit is not None:
            return hit, None, None
    try:
        data = read_bytes(f)
    except ParseError:
        return None, None, None
    if len(data) > MAX_CACHED_BYTES:
        return None, data, None
    # Keyed by the bytes parsed here, whatever the caller hashed earlier.
    key = cache.key(str(f), data)
    hit = _from_cache(cache, key) if digest is None else None
    return (hit, None, None) if hit is not None else (None, data, key)


def _from_cache(cache: ParseCache, key: bytes) -> _Cached | None:
    """A cached file's format and papers with their JSON; None when absent, damaged or no longer valid."""
    hit = cache.get(key)
    if hit is None:
        return None
    try:
        return hit[0], [(Paper.model_validate_json(js), js) for js in hit[1]]
    except ValidationError:
        return None  # parsed again, and the entry replaced


def _paper(js: str, where: Path) -> Paper:
    try:
        return Paper.model_validate_json(js)
    except ValidationError as exc:
        raise IndexCorruptedError(f"{where}: damaged paper record ({exc.errors()[0]['msg']})") from exc
