"""The SQLite store of an index generation: papers, chunks, and cached embeddings.

Papers are kept as their pydantic JSON (no pickle); chunks as rows so that
filters (date, tags, language, section) become SQL over bound parameters.
Embeddings are cached by the sha256 of the exact passage text sent to the
model, so a rebuild re-encodes only passages whose text changed.
"""

from __future__ import annotations

import datetime as _dt
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
from pydantic import ValidationError

from digest_rag.errors import IndexClosedError, IndexCorruptedError, IndexVersionError
from digest_rag.models import Chunk, Paper

SCHEMA_VERSION = 1

#: The columns a chunk row carries after its id and paper id, shared by the store and a build's spool.
CHUNK_COLUMNS = """\
    section_index INTEGER NOT NULL,
    section_kind TEXT NOT NULL,
    language TEXT NOT NULL,
    start INTEGER NOT NULL,
    "end" INTEGER NOT NULL,
    text TEXT NOT NULL,
    passage_hash TEXT NOT NULL
"""

_SCHEMA = f"""
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE papers (
    id TEXT PRIMARY KEY,
    date TEXT,
    source TEXT NOT NULL,
    json TEXT NOT NULL
);
CREATE TABLE paper_tags (paper_id TEXT NOT NULL, tag TEXT NOT NULL, PRIMARY KEY (paper_id, tag));
CREATE TABLE chunks (
    id INTEGER PRIMARY KEY,
    paper_id TEXT NOT NULL REFERENCES papers(id),
{CHUNK_COLUMNS});
CREATE INDEX chunks_paper ON chunks(paper_id);
CREATE TABLE embeddings (passage_hash TEXT PRIMARY KEY, vector BLOB NOT NULL);
CREATE TABLE doc_tokens (text_hash TEXT PRIMARY KEY, tokens TEXT NOT NULL);
CREATE TABLE name_owners (key TEXT PRIMARY KEY, owners TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE english_only (paper_id TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE loanwords (skeleton TEXT NOT NULL, token TEXT NOT NULL, form TEXT NOT NULL,
                        PRIMARY KEY (skeleton, token)) WITHOUT ROWID;
"""

#: Papers with no Korean or mixed text (titles aside): their only text is English.
_ENGLISH_ONLY = ("SELECT paper_id FROM chunks WHERE section_kind != 'title' GROUP BY paper_id "
                 "HAVING SUM(language != 'en') = 0")
_NO_KOREAN = "SELECT paper_id FROM chunks GROUP BY paper_id HAVING SUM(language != 'en') = 0"


class ChunkHead(NamedTuple):
    """A chunk's paper and section kind (`Store.chunk_heads`)."""

    paper_id: str
    section_kind: str


class StoreWriter:
    """Writes a new store file in one transaction, a batch at a time (a build of a million papers streams).

    The number of BM25 documents, which opening an index checks against the
    BM25 files, goes into the meta table at `finish`: a reader need not derive it.
    """

    def __init__(self, path: Path, analysis_key: str | None = None) -> None:
        self.path = path
        self.con = sqlite3.connect(str(path), isolation_level=None)
        self.con.executescript(_SCHEMA)
        self.con.execute("BEGIN")
        self.con.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        if analysis_key:
            self.con.execute("INSERT INTO meta VALUES ('analysis_key', ?)", (analysis_key,))

    def add_papers(self, papers: Iterable[tuple[Paper, str]]) -> None:
        """Papers with their JSON (``p.model_dump_json()``, which the caller may already have)."""
        rows = list(papers)
        self.con.executemany("INSERT INTO papers VALUES (?, ?, ?, ?)",
                             ((p.id, p.date.isoformat() if p.date else None, p.source, js) for p, js in rows))
        self.con.executemany("INSERT OR IGNORE INTO paper_tags VALUES (?, ?)",
                             ((p.id, t.lower()) for p, _js in rows for t in p.tags))

    def add_chunks(self, chunks: Sequence[Chunk], passage_hashes: Sequence[str]) -> None:
        """Chunks with the hashes of the passages they embed."""
        self.con.executemany(
            "INSERT INTO chunks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            ((c.id, c.paper_id, c.section_index, c.section_kind, c.language, c.start, c.end, c.text, h)
             for c, h in zip(chunks, passage_hashes, strict=True)),
        )

    def add_embeddings(self, passage_hashes: Sequence[str], vectors: np.ndarray) -> None:
        """Embeddings by passage hash (a repeated passage is kept once)."""
        self.con.executemany(
            "INSERT OR IGNORE INTO embeddings VALUES (?, ?)",
            ((h, np.ascontiguousarray(v, dtype=np.float32).tobytes())
             for h, v in zip(passage_hashes, vectors, strict=True)),
        )

    def tokens(self, keys: Sequence[str]) -> dict[str, list[str]]:
        """Tokens already recorded in this store for these text hashes."""
        return _token_rows(lambda sql, params: self.con.execute(sql, params).fetchall(), keys)

    def record_tokens(self, entries: Mapping[str, list[str]], raw: Mapping[str, str] | None = None) -> None:
        """BM25 tokens by text hash: the next build's token cache. ``raw``: the JSON of entries read from
        a previous store (`Store.tokens_for`), copied as stored instead of encoded again."""
        raw = raw or {}
        self.con.executemany("INSERT OR IGNORE INTO doc_tokens VALUES (?, ?)",
                             ((h, raw.get(h) or json.dumps(toks, ensure_ascii=False)) for h, toks in entries.items()))

    def titles(self) -> Iterator[tuple[str, str]]:
        """(paper id, English title) of every paper written so far, streamed (`known_item.name_owners`)."""
        for pid, title in self.con.execute("SELECT id, json_extract(json, '$.title') FROM papers"):
            yield str(pid), str(title or "")

    def author_names(self) -> Iterator[str]:
        """Every author name written so far (`loanwords.loanword_rows` leaves their words out: a name is no
        English word a loanword spells)."""
        return _author_names(self.con.execute("SELECT json_extract(json, '$.authors') FROM papers"))

    def add_loanwords(self, rows: Iterable[tuple[str, str, str]], rules: str) -> None:
        """The English tokens a question's Hangul loanwords may spell, by consonant skeleton
        (`loanwords.loanword_rows`, made by the rules ``rules``: `loanwords.LOANWORD_RULES`)."""
        self.con.executemany("INSERT OR IGNORE INTO loanwords VALUES (?, ?, ?)", rows)
        self.con.execute("INSERT INTO meta VALUES ('loanword_rules', ?)", (rules,))

    def add_search_tables(self, owners: Mapping[str, Sequence[str]], rules: str) -> None:
        """What searches would otherwise compute from every paper on a process's first use: the names papers'
        titles own (name key -> owner ids, made by the naming rules ``rules``: `known_item.NAME_RULES`) and the
        English-only papers (`Store.english_only_papers`). Call after the last papers and chunks."""
        self.con.executemany("INSERT INTO name_owners VALUES (?, ?)",
                             ((k, json.dumps(list(v), ensure_ascii=False)) for k, v in owners.items()))
        self.con.execute("INSERT INTO english_only " + _ENGLISH_ONLY)  # constants only: no value reaches SQL text
        self.con.executemany("INSERT INTO meta VALUES (?, ?)", (("name_rules", rules), ("english_only", "1")))

    def finish(self, lexical: int) -> None:
        """Record the number of BM25 documents (chunks `lexical_chunks` keeps) and commit."""
        self.con.execute("INSERT INTO meta VALUES ('lexical_count', ?)", (str(lexical),))
        self.con.execute("COMMIT")
        self.con.execute("PRAGMA journal_mode=DELETE")

    def close(self) -> None:
        """Close (without `finish`, nothing is committed)."""
        self.con.close()


def _check_tables(path: Path, kinds: Mapping[str, str]) -> None:
    """IndexCorruptedError unless each of the store's tables is a real table (``kinds``: sqlite_master's
    name -> type, "virtual table" for those). A view named ``chunks`` could run an endless recursive query
    on every read; a virtual table runs its module's code."""
    for name in STORE_TABLES + OPTIONAL_TABLES:
        kind = kinds.get(name)
        if kind is None and name in OPTIONAL_TABLES:
            continue
        if kind == "virtual table":
            kind = "virtual table (a module's code runs on every read)"
        if kind != "table":
            raise IndexCorruptedError(
                f"{path}: SQLite store's {name!r} is {'missing' if kind is None else 'a ' + str(kind)}, not a table")


def _token_rows(run: Callable[[str, Sequence[object]], list[tuple]], keys: Sequence[str], raw: dict[str, str] | None = None) -> dict[str, list[str]]:
    """doc_tokens rows for ``keys``, decoded; an unreadable row is left out (a cache: analyse again).
    ``raw`` receives the stored JSON of each row returned (to copy it without encoding it again)."""
    out: dict[str, list[str]] = {}
    for i in range(0, len(keys), 500):
        part = list(keys[i : i + 500])
        for h, raw_json in run(f"SELECT text_hash, tokens FROM doc_tokens WHERE text_hash IN "
                                       f"({','.join('?' * len(part))})", part):
            try:
                toks = json.loads(raw_json)
            except (ValueError, TypeError, RecursionError):
                continue
            if isinstance(toks, list) and all(isinstance(t, str) for t in toks):
                out[h] = toks
                if raw is not None:
                    raw[h] = raw_json
    return out


def _author_names(rows: Iterable[tuple]) -> Iterator[str]:
    for (raw,) in rows:
        try:
            names = json.loads(raw) if raw else []
        except (ValueError, TypeError, RecursionError):
            continue
        yield from (name for name in names if isinstance(name, str)) if isinstance(names, list) else ()


#: Most loanword candidates one consonant skeleton gives (`Store.loanword_candidates`).
MAX_LOANWORD_CANDIDATES = 1000

#: Most rows of the loanword and name tables `Store.hold_small_tables` holds in memory (each).
HELD_ROWS = 65_536


#: Tables a store must hold as real tables; ``doc_tokens`` came later and may be missing from old stores.
STORE_TABLES = ("meta", "papers", "paper_tags", "chunks", "embeddings")
OPTIONAL_TABLES = ("doc_tokens", "name_owners", "english_only", "loanwords")

#: Seconds one read of a store may run before it is taken for a hostile file. The table check catches
#: an endless view at once; this bounds whatever else a forged file could make SQLite compute. It is far
#: above any honest read (a COUNT over a million papers is ~0.2 s; `info` reads every chunk in one query).
READ_DEADLINE_S = 30.0
#: SQLite virtual-machine steps between two looks at the clock.
_PROGRESS_STEPS = 100_000


class _Deadline:
    """A progress handler that interrupts a statement once ``READ_DEADLINE_S`` has passed since its read began.

    The clock is per thread: SQLite calls the handler on the thread that steps the statement, so threads
    sharing a connection (a server's) each have their own read's deadline.
    """

    def __init__(self) -> None:
        self._local = threading.local()

    def start(self) -> None:
        self._local.until = time.monotonic() + READ_DEADLINE_S
        self._local.expired = False

    def stop(self) -> None:
        self._local.until = float("inf")

    @property
    def expired(self) -> bool:
        return bool(getattr(self._local, "expired", False))

    def __call__(self) -> int:
        if time.monotonic() > getattr(self._local, "until", float("inf")):
            self._local.expired = True
            return 1  # non-zero: SQLite interrupts the statement ("interrupted")
        return 0


class Store:
    """Read access to a store file. Opened read-only: searching never writes.

    The file is untrusted even when its checksum matches (a checksum can be forged): it opens only
    when its tables are tables (not views that could compute forever), and every read runs under a
    deadline that ends in IndexCorruptedError instead of a hang.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._closed = False
        self._deadline = _Deadline()
        # The loanword candidates by skeleton and the name table's rows, once `hold_small_tables` read them.
        self._held_loanwords: dict[str, list[tuple[str, str]]] | None = None
        self._held_names: dict[str, str] | None = None
        # as_uri() percent-encodes, so paths holding '?', '#' or '%' still open read-only.
        uri = Path(path).resolve().as_uri() + "?mode=ro"
        con: sqlite3.Connection | None = None
        try:
            con = sqlite3.connect(uri, uri=True, check_same_thread=False)
            con.set_progress_handler(self._deadline, _PROGRESS_STEPS)
            self.con = con
            _check_tables(path, {name: "virtual table" if kind == "table" and str(sql or "").lstrip()[:14].upper()
                                 == "CREATE VIRTUAL" else kind
                                 for name, kind, sql in self._query("SELECT name, type, sql FROM sqlite_master")})
            row = self._query("SELECT value FROM meta WHERE key = 'schema_version'")
        except (sqlite3.DatabaseError, IndexCorruptedError) as exc:
            if con is not None:
                con.close()
            if isinstance(exc, IndexCorruptedError):
                raise
            raise IndexCorruptedError(f"{path}: SQLite store is unreadable ({exc})") from exc
        if not row or row[0][0] != str(SCHEMA_VERSION):
            con.close()
            if not row:
                raise IndexCorruptedError(f"{path}: SQLite store has no schema version")
            raise IndexVersionError(f"{path}: unknown store schema version {row[0][0]!r} "
                                    f"(this digest_rag reads {SCHEMA_VERSION})")

    def close(self) -> None:
        """Close the connection; reading afterwards raises IndexClosedError."""
        self._closed = True
        self.con.close()

    def _run(self, sql: str, params: Sequence[object] = ()) -> list[tuple]:
        """Rows of ``sql`` under the read deadline. SQLite's own errors go up as they are, except a deadline
        passed (IndexCorruptedError) and a closed store (IndexClosedError)."""
        if self._closed:
            raise IndexClosedError(f"{self.path}: the store was closed; load the index again")
        self._deadline.start()
        try:
            return self.con.execute(sql, params).fetchall()
        except sqlite3.DatabaseError as exc:
            if self._deadline.expired:
                raise IndexCorruptedError(
                    f"{self.path}: SQLite store took over {READ_DEADLINE_S:g} s to answer one read; "
                    f"it is damaged or hostile (rebuild with build --force)") from exc
            raise
        finally:
            self._deadline.stop()

    def _query(self, sql: str, params: Sequence[object] = ()) -> list[tuple]:
        try:
            return self._run(sql, params)
        except sqlite3.DatabaseError as exc:
            raise IndexCorruptedError(f"{self.path}: SQLite store is damaged ({exc})") from exc

    def _query_in(self, sql: str, values: Iterable[object]) -> list[tuple]:
        """Rows of ``sql`` (ending in "IN") for each batch of distinct ``values``, 500 bound parameters at a time."""
        unique = list(dict.fromkeys(values))
        rows: list[tuple] = []
        for i in range(0, len(unique), 500):
            part = unique[i : i + 500]
            rows += self._query(f"{sql} ({','.join('?' * len(part))})", part)
        return rows

    def papers(self, ids: Iterable[str] | None = None) -> dict[str, Paper]:
        """Papers by id (all when ``ids`` is None)."""
        if ids is None:
            rows = self._query("SELECT json FROM papers ORDER BY id")
        else:
            rows = self._query_in("SELECT json FROM papers WHERE id IN", ids)
        out = {}
        for (js,) in rows:
            try:
                p = Paper.model_validate_json(js)
            except ValidationError as exc:
                raise IndexCorruptedError(f"{self.path}: damaged paper record ({exc.errors()[0]['msg']})") from exc
            out[p.id] = p
        return out

    def titles(self) -> list[tuple[str, str]]:
        """(paper id, English title) of every paper, read without validating whole records."""
        return [(str(r[0]), str(r[1] or "")) for r in self._query("SELECT id, json_extract(json, '$.title') FROM papers")]

    def english_only_papers(self, paper_ids: Iterable[str] | None = None) -> set[str]:
        """Papers with no Korean or mixed text (titles aside): their only text is English. All of them, or
        those among ``paper_ids``. Computed from every chunk; `stored_english_only` reads what a build stored."""
        sql = _ENGLISH_ONLY
        rows = self._query(sql) if paper_ids is None else self._query_in(sql + " AND paper_id IN", paper_ids)
        return {str(r[0]) for r in rows}

    def no_korean_papers(self, paper_ids: Iterable[str] | None = None) -> set[str]:
        """Papers with no Korean or mixed chunk at all, titles included (an English-only paper, or one of an
        English title alone): all of them, or those among ``paper_ids`` (ids the store lacks are left out).
        Score fusion gives their dense side a weight of its own (`search.fusion.fuse_scores`)."""
        if paper_ids is None:
            return {str(r[0]) for r in self._query(_NO_KOREAN)}
        rows = self._query_in("SELECT paper_id, language != 'en' FROM chunks WHERE paper_id IN", paper_ids)
        korean = {str(pid) for pid, other in rows if other}
        return {str(pid) for pid, _other in rows} - korean

    def _meta(self, key: str) -> str | None:
        rows = self._query("SELECT value FROM meta WHERE key = ?", (key,))
        return str(rows[0][0]) if rows else None

    def has_stored_english_only(self) -> bool:
        """Whether the build stored its English-only papers (stores written before issue 25's part 2 did not)."""
        return self._meta("english_only") == "1"

    def stored_english_only(self, paper_ids: Iterable[str] | None = None) -> set[str]:
        """The English-only papers the build stored (all, or those among ``paper_ids``); see
        `has_stored_english_only`."""
        if paper_ids is None:
            return {str(r[0]) for r in self._query("SELECT paper_id FROM english_only")}
        return {str(r[0]) for r in self._query_in("SELECT paper_id FROM english_only WHERE paper_id IN", paper_ids)}

    def has_loanwords(self, rules: str) -> bool:
        """Whether the build stored its loanword candidates by the rules ``rules`` (older stores did not)."""
        return self._meta("loanword_rules") == rules

    def loanword_candidates(self, skeleton: str) -> list[tuple[str, str]]:
        """(token, phonetic form) of the stored candidates under one consonant skeleton (`has_loanwords`), at
        most `MAX_LOANWORD_CANDIDATES` (a real skeleton has a few dozen; a forged store is not read whole)."""
        held = self._held_loanwords
        if held is not None:
            return held.get(skeleton, [])
        return [(str(t), str(f)) for t, f in self._query(
            "SELECT token, form FROM loanwords WHERE skeleton = ? LIMIT ?", (skeleton, MAX_LOANWORD_CANDIDATES))]

    def hold_small_tables(self, limit: int = HELD_ROWS) -> None:
        """Read the loanword candidates and the name table whole, each of at most ``limit`` rows, so that a
        question's new words cost no query each (`loanword_candidates`, `StoredNames`): a search process's
        second search does it for a small index (`search.pipeline.QueryPipeline`). A bigger table, or one
        the store lacks or cannot read, keeps being read row by row (the read that meets damage reports it)."""
        try:
            tables = {name for (name,) in self._query("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if self._held_loanwords is None and "loanwords" in tables \
                    and self._query("SELECT COUNT(*) FROM loanwords")[0][0] <= limit:
                held: dict[str, list[tuple[str, str]]] = {}
                for sk, t, f in self._query("SELECT skeleton, token, form FROM loanwords"):
                    found = held.setdefault(str(sk), [])
                    if len(found) < MAX_LOANWORD_CANDIDATES:
                        found.append((str(t), str(f)))
                self._held_loanwords = held
            if self._held_names is None and "name_owners" in tables \
                    and self._query("SELECT COUNT(*) FROM name_owners")[0][0] <= limit:
                self._held_names = {str(k): v for k, v in self._query("SELECT key, owners FROM name_owners")}
        except IndexCorruptedError:
            return

    def loanword_summary(self) -> dict[str, object] | None:
        """The stored loanword candidates' rules and count (`info`); None for a store written before."""
        rules = self._meta("loanword_rules")
        if rules is None:
            return None
        return {"rules": rules, "candidates": int(self._query("SELECT COUNT(*) FROM loanwords")[0][0])}

    def author_names(self) -> Iterator[str]:
        """`StoreWriter.author_names` of a written store (for an index built before loanwords were stored)."""
        return _author_names(self._query("SELECT json_extract(json, '$.authors') FROM papers", ()))

    def name_owners(self, rules: str) -> StoredNames | None:
        """The names the build found in the titles (`known_item.name_owners`), read key by key; None when the
        store has none or they were made by other naming rules than ``rules``."""
        return StoredNames(self) if self._meta("name_rules") == rules else None

    def chunk_ids_of(self, paper_ids: Iterable[str]) -> dict[int, str]:
        """Chunk id -> paper id of every chunk of ``paper_ids``."""
        return {int(r[0]): str(r[1]) for r in self._query_in("SELECT id, paper_id FROM chunks WHERE paper_id IN",
                                                             paper_ids)}

    def paper_ids(self, ids: Iterable[str]) -> set[str]:
        """Which of ``ids`` are papers of this store (no record is parsed)."""
        id_list = list(dict.fromkeys(ids))
        found: set[str] = set()
        for i in range(0, len(id_list), 500):
            part = id_list[i : i + 500]
            found.update(r[0] for r in self._query(f"SELECT id FROM papers WHERE id IN ({','.join('?' * len(part))})", part))
        return found

    def counts(self) -> tuple[int, int, int]:
        """(papers, chunks, chunks the BM25 index holds): compared with the manifest on load.

        BM25 holds every chunk but title passages, except the title passage of a
        paper with no other text (see `lexical.lexical_chunks`).
        """
        # Rows are counted (a plain COUNT reads the narrowest index: ~0.2 s at a million papers) so that a
        # deleted row is caught; the BM25 document count is recorded at commit (StoreWriter.finish), because
        # computing it per paper took 1 s per 100k papers on every load. Older stores compute it.
        papers = self._query("SELECT COUNT(*) FROM papers")[0][0]
        chunks = self._query("SELECT COUNT(*) FROM chunks")[0][0]
        recorded = self._query("SELECT value FROM meta WHERE key = 'lexical_count'")
        if recorded:
            try:
                return int(papers), int(chunks), int(recorded[0][0])
            except ValueError as exc:
                raise IndexCorruptedError(f"{self.path}: damaged counts in the meta table") from exc
        text_chunks = self._query(
            "SELECT COALESCE(SUM(section_kind != 'title' OR NOT EXISTS ("
            "SELECT 1 FROM chunks d WHERE d.paper_id = c.paper_id AND d.section_kind != 'title')), 0) FROM chunks c"
        )[0][0]
        return int(papers), int(chunks), int(text_chunks)

    def chunks(self, ids: Iterable[int] | None = None) -> dict[int, Chunk]:
        """Chunks by id (all when ``ids`` is None)."""
        cols = 'id, paper_id, section_index, section_kind, language, start, "end", text'
        if ids is None:
            rows = self._query(f"SELECT {cols} FROM chunks ORDER BY paper_id, section_index, start")
        else:
            rows = self._query_in(f"SELECT {cols} FROM chunks WHERE id IN", (int(i) for i in ids))
        keys = ("id", "paper_id", "section_index", "section_kind", "language", "start", "end", "text")
        try:
            return {r[0]: Chunk(**dict(zip(keys, r, strict=True))) for r in rows}
        except ValidationError as exc:
            raise IndexCorruptedError(f"{self.path}: damaged chunk record ({exc.errors()[0]['msg']})") from exc

    def chunk_heads(self, ids: Iterable[int]) -> dict[int, ChunkHead]:
        """Paper and section kind of each chunk by id: what ranking a search's candidates needs, without
        reading and validating their texts (`chunks` then fetches the few that are shown)."""
        rows = self._query_in("SELECT id, paper_id, section_kind FROM chunks WHERE id IN", (int(i) for i in ids))
        return {int(r[0]): ChunkHead(str(r[1]), str(r[2])) for r in rows}

    def chunk_rows(self) -> list[tuple[int, str, str]]:
        """(chunk id, paper id, section kind) of every chunk whose paper exists (`chunk_table.ChunkTable`)."""
        return self._query("SELECT c.id, c.paper_id, c.section_kind FROM chunks c JOIN papers p ON p.id = c.paper_id")

    def first_text_chunk(self, paper_id: str) -> Chunk | None:
        """The paper's first chunk of real text (not its title passage)."""
        rows = self._query(
            "SELECT id FROM chunks WHERE paper_id = ? AND section_kind != 'title' ORDER BY section_index, start LIMIT 1",
            (paper_id,),
        )
        return self.chunks([rows[0][0]])[rows[0][0]] if rows else None

    def chunk_ids_where(
        self,
        date_from: _dt.date | None = None,
        date_to: _dt.date | None = None,
        tags: Sequence[str] | None = None,
        languages: Sequence[str] | None = None,
        sections: Sequence[str] | None = None,
        authors: Sequence[str] | None = None,
    ) -> set[int]:
        """Ids of chunks that pass the filters (papers without a date fail any date filter). An author filter
        keeps papers with an author whose name contains any of ``authors``, ignoring case."""
        where: list[str] = []
        params: list[object] = []
        if date_from is not None:
            where.append("p.date >= ?")
            params.append(date_from.isoformat())
        if date_to is not None:
            where.append("p.date <= ?")
            params.append(date_to.isoformat())
        if tags:
            where.append(f"p.id IN (SELECT paper_id FROM paper_tags WHERE tag IN ({','.join('?' * len(tags))}))")
            params.extend(t.lower().lstrip("#") for t in tags)
        if languages:
            where.append(f"c.language IN ({','.join('?' * len(languages))})")
            params.extend(languages)
        if sections:
            where.append(f"c.section_kind IN ({','.join('?' * len(sections))})")
            params.extend(sections)
        if authors:
            where.append("EXISTS (SELECT 1 FROM json_each(p.json, '$.authors') a WHERE "
                         + " OR ".join("instr(lower(a.value), ?) > 0" for _a in authors) + ")")
            params.extend(a.lower() for a in authors)
        sql = "SELECT c.id FROM chunks c JOIN papers p ON p.id = c.paper_id"
        if where:
            sql += " WHERE " + " AND ".join(where)
        return {r[0] for r in self._query(sql, params)}

    def embeddings(self, dimension: int, hashes: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Embeddings kept with this generation: passage hash -> vector (only ``hashes`` when given)."""
        out: dict[str, np.ndarray] = {}
        if hashes is None:
            rows = self._query("SELECT passage_hash, vector FROM embeddings")
        else:
            rows = self._query_in("SELECT passage_hash, vector FROM embeddings WHERE passage_hash IN", hashes)
        for h, blob in rows:
            vec = np.frombuffer(blob, dtype=np.float32)
            if vec.shape[0] != dimension:
                raise IndexCorruptedError(f"{self.path}: cached embedding of dimension {vec.shape[0]}, expected {dimension}")
            out[h] = vec
        return out

    def doc_tokens(self, analysis_key: str) -> dict[str, list[str]]:
        """The BM25 token cache (text hash -> tokens), empty unless made by the analysis ``analysis_key``.

        Stores written before the cache existed have no such table: empty too.
        """
        try:
            if not self.has_tokens_of(analysis_key):
                return {}
            rows = self._run("SELECT text_hash, tokens FROM doc_tokens")
        except sqlite3.OperationalError:
            return {}
        except sqlite3.DatabaseError as exc:
            raise IndexCorruptedError(f"{self.path}: SQLite store is damaged ({exc})") from exc
        out: dict[str, list[str]] = {}
        for h, raw in rows:
            try:
                toks = json.loads(raw)
            except (ValueError, TypeError, RecursionError):
                return {}  # a cache is an optimisation: unreadable means rebuild the tokens
            if isinstance(toks, list) and all(isinstance(t, str) for t in toks):
                out[h] = toks
        return out

    def has_tokens_of(self, analysis_key: str) -> bool:
        """Whether this store's BM25 token cache was made by the analysis ``analysis_key``."""
        try:
            rows = self._run("SELECT value FROM meta WHERE key = 'analysis_key'")
        except sqlite3.DatabaseError:
            return False
        return bool(rows) and rows[0][0] == analysis_key

    def tokens_for(self, analysis_key: str, keys: Sequence[str], raw: dict[str, str] | None = None,
                   ) -> dict[str, list[str]]:
        """`doc_tokens` for these text hashes only (a build at scale looks its batch up, not the whole table);
        ``raw`` receives each returned row's stored JSON."""
        try:
            if not self.has_tokens_of(analysis_key):
                return {}
            return _token_rows(self._run, keys, raw)
        except sqlite3.OperationalError:
            return {}
        except sqlite3.DatabaseError as exc:
            raise IndexCorruptedError(f"{self.path}: SQLite store is damaged ({exc})") from exc

    def chunks_of(self, paper_ids: Sequence[str]) -> list[Chunk]:
        """Chunks of these papers, ordered by paper, section and start (the order chunk_paper cuts them)."""
        cols = 'id, paper_id, section_index, section_kind, language, start, "end", text'
        rows = self._query_in(f"SELECT {cols} FROM chunks WHERE paper_id IN", paper_ids)
        rows.sort(key=lambda r: (r[1], r[2], r[5]))
        keys = ("id", "paper_id", "section_index", "section_kind", "language", "start", "end", "text")
        try:
            return [Chunk(**dict(zip(keys, r, strict=True))) for r in rows]
        except ValidationError as exc:
            raise IndexCorruptedError(f"{self.path}: damaged chunk record ({exc.errors()[0]['msg']})") from exc

    def sources(self) -> dict[str, int]:
        """Papers per source file, as the build recorded the file's path."""
        return dict(self._query("SELECT source, COUNT(*) FROM papers GROUP BY source ORDER BY source"))

    def stats(self) -> dict[str, object]:
        """Counts by language and section kind, date range, top tags, sources."""
        by_lang = dict(self._query("SELECT language, COUNT(*) FROM chunks GROUP BY language ORDER BY language"))
        by_kind = dict(self._query("SELECT section_kind, COUNT(*) FROM chunks GROUP BY section_kind ORDER BY section_kind"))
        lo, hi = self._query("SELECT MIN(date), MAX(date) FROM papers")[0]
        tags = self._query("SELECT tag, COUNT(*) AS n FROM paper_tags GROUP BY tag ORDER BY n DESC, tag LIMIT 15")
        sources = self._query("SELECT source, COUNT(*) FROM papers GROUP BY source ORDER BY source")
        return {
            "chunks_by_language": by_lang,
            "chunks_by_section": by_kind,
            "date_from": lo,
            "date_to": hi,
            "top_tags": dict(tags),
            "sources": dict(sources),
        }


class StoredNames(Mapping[str, tuple[str, ...]]):
    """A store's name table (name key -> owner paper ids) as a mapping, read key by key and kept: a question
    asks about a few keys, never the whole table (a million papers own hundreds of thousands of names)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._seen: dict[str, tuple[str, ...] | None] = {}

    def _read(self, key: str) -> tuple[str, ...] | None:
        if key in self._seen:
            return self._seen[key]
        held = self._store._held_names
        if held is not None:
            rows = [(held[key],)] if key in held else []
        else:
            rows = self._store._query("SELECT owners FROM name_owners WHERE key = ?", (key,))
        owners: tuple[str, ...] | None = None
        if rows:
            try:
                value = json.loads(rows[0][0])
            except (ValueError, TypeError, RecursionError) as exc:
                raise IndexCorruptedError(f"{self._store.path}: damaged name table row {key!r}") from exc
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise IndexCorruptedError(f"{self._store.path}: damaged name table row {key!r}")
            owners = tuple(value)
        if len(self._seen) >= _NAMES_KEPT:
            self._seen.clear()
        self._seen[key] = owners
        return owners

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self._read(key) is not None

    def __getitem__(self, key: str) -> tuple[str, ...]:
        owners = self._read(key) if isinstance(key, str) else None
        if owners is None:
            raise KeyError(key)
        return owners

    def __iter__(self) -> Iterator[str]:
        return iter([str(r[0]) for r in self._store._query("SELECT key FROM name_owners ORDER BY key")])

    def __len__(self) -> int:
        return int(self._store._query("SELECT COUNT(*) FROM name_owners")[0][0])


#: Name table keys (found or not) a `StoredNames` keeps before it starts over.
_NAMES_KEPT = 1 << 14




