"""A persistent, content-addressed cache of passage embeddings, beside an index's generations.

Why: an index generation is written only when a build commits, so before this
cache a build killed at 90 % of its encoding (Ctrl-C, OOM, a pre-empted
machine) started again from zero, and a rebuild could reuse only the vectors
of the last committed generation. The cache is written batch by batch *while*
a build encodes, so whatever finished survives.

The cache is a cache, never the index: readers never open it, a build may
delete any part of it at any time, and deleting the whole directory only
costs the time to re-encode.

Layout (inside an index directory)::

    indexes/default/
        embedding-cache/
            m-<model key>.sqlite     one database per model identity (+ -wal/-shm while open)

API, in the order a build uses it::

    identity = ModelIdentity.of(encoder, encoder.backend)   # or of(model_files.inspect_model(...), backend)
    with EmbeddingCache.for_index(index_dir, identity) as cache:
        found = cache.lookup(hashes)          # {hash: vector} for the hashes cached, each verified
        for batch in misses:                  # encode the misses in batches ...
            cache.put(batch_hashes, vectors)  # ... one committed transaction per batch
        cache.collect_garbage(keep=hashes)    # keep the directory under its size cap

Keys. A passage is keyed by ``passage_hash`` = sha256 hex of the exact text
the model reads (``passage_prefix + passage``: digest_rag.text.sha256_text),
which does not depend on the backend or the machine. Vectors are kept in one
database per ``ModelIdentity`` (model name, revision, dimension, passage
prefix and numeric precision: onnx-int8 vectors are close to torch's but not
equal), so models, dimensions and prefixes are never mixed; a
database whose recorded identity or format differs from its file name's is
discarded.

Integrity. SQLite (WAL, one transaction per ``put``) makes each batch atomic:
a writer killed at any instant leaves every batch it committed readable and
nothing of the one it was writing. Each row also carries a checksum
(blake2b of hash and vector bytes) and a length check, verified on every
``lookup``: a damaged row is deleted and reported as a miss (so it is
re-encoded), never served. A database SQLite itself cannot read is deleted
and started afresh. No pickle: vectors are raw little-endian float32.

Concurrency. Only the process holding the index's writer lock
(digest_rag.storage.locking) opens the cache; an engine that encodes elsewhere (Ray
workers) returns its vectors to that process, which ``put``s them. SQLite's own
locking would still keep a stray second writer from damaging the file.

Garbage collection. ``collect_garbage(keep=hashes of the index just built)``
keeps the directory's size under ``max_bytes`` (default DEFAULT_MAX_BYTES):
first whole databases of other models, least recently modified first, then
this model's rows the current index does not use, oldest first. Lookups never
write, so a build whose every passage is cached writes nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import shutil
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from types import TracebackType

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from digest_rag.errors import UnsafeIndexPathError, UsageError
from digest_rag.storage.layout import CACHE_DIR
from digest_rag.storage.side_cache import check_cache_paths, entry_checksum, remove_db

log = logging.getLogger(__name__)

CACHE_FORMAT_VERSION = 1
DEFAULT_MAX_BYTES = 4 << 30
_DB_PREFIX = "m-"
_DB_SUFFIX = ".sqlite"
_BATCH = 500  # bound parameters per statement (SQLite's default limit is 32766; stay well below)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS vectors (
    hash BLOB PRIMARY KEY,
    vector BLOB NOT NULL,
    checksum BLOB NOT NULL,
    added INTEGER NOT NULL
);
"""


def precision_of(backend: str | None) -> str:
    """The numeric variant a backend's vectors belong to: torch and fp32 ONNX agree to float precision
    (mean cosine 1.00000, BENCHMARKS.md); int8 weights give close but different vectors."""
    return "int8" if backend == "onnx-int8" else "float"


class ModelIdentity(BaseModel):
    """Everything that decides a passage's vector besides its text.

    ``variant`` is the numeric precision (`precision_of` the backend): an
    index must not mix int8 vectors with float ones, nor depend on which build
    happened to encode which passage.
    """

    model_config = ConfigDict(frozen=True)

    name: str = Field(min_length=1)
    revision: str = Field(min_length=1)
    dimension: int = Field(ge=1, le=65_536)
    passage_prefix: str
    variant: str = Field(default="float", min_length=1)

    @property
    def key(self) -> str:
        """A file-name-safe digest of the identity (24 hex characters)."""
        raw = json.dumps(self.model_dump(), sort_keys=True, ensure_ascii=False).encode("utf-8")
        return hashlib.sha256(raw).hexdigest()[:24]

    @classmethod
    def of(cls, model: object, backend: str | None) -> ModelIdentity:
        """The identity of a loaded Encoder, or of `model_files.ModelFacts` plus the backend that would load it.

        Duck-typed (name, revision, dimension, passage_prefix) so that no torch import is needed here.
        """
        return cls(
            name=str(model.name),  # type: ignore[attr-defined]
            revision=str(model.revision),  # type: ignore[attr-defined]
            dimension=int(model.dimension),  # type: ignore[attr-defined]
            passage_prefix=str(model.passage_prefix),  # type: ignore[attr-defined]
            variant=precision_of(backend),
        )


class CacheStats(BaseModel):
    """What one cache session did (counts of passages)."""

    hits: int = 0
    misses: int = 0
    written: int = 0
    dropped: int = Field(default=0, description="damaged rows found by lookup, deleted and reported as misses")
    reset: int = Field(default=0, description="databases SQLite could not read (or of another format), deleted")
    evicted: int = Field(default=0, description="rows deleted by garbage collection")
    evicted_databases: int = Field(default=0, description="other models' databases deleted by garbage collection")


def _checksum(hash_bytes: bytes, vector_bytes: bytes) -> bytes:
    return entry_checksum(hash_bytes, vector_bytes)


def _hash_bytes(passage_hash: str) -> bytes:
    try:
        raw = bytes.fromhex(passage_hash)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"passage hash {passage_hash!r} is not a hex sha256") from exc
    if len(raw) != 32:
        raise UsageError(f"passage hash {passage_hash!r} is not a hex sha256 (32 bytes)")
    return raw


def _file_size(path: Path) -> int:
    try:
        st = path.lstat()
    except FileNotFoundError:
        return 0
    return st.st_size


class EmbeddingCache:
    """The embedding cache of one model identity under ``root``.

    Nothing is created on disk until the first ``put``: a dry run, or a build
    whose every passage is cached, opens no database for writing. Use as a
    context manager, or call ``close``.
    """

    def __init__(self, root: str | os.PathLike[str], identity: ModelIdentity, *, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        if max_bytes < 0:
            raise UsageError(f"embedding cache size cap must be >= 0 bytes (got {max_bytes})")
        self.root = Path(root)
        self.identity = identity
        self.max_bytes = max_bytes
        self.path = self.root / f"{_DB_PREFIX}{identity.key}{_DB_SUFFIX}"
        self.stats = CacheStats()
        self._con: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        # One clock tick per writing session: rows a build adds are younger than earlier builds' rows.
        self._clock: int | None = None
        self._disabled = False

    @classmethod
    def for_index(cls, index_dir: str | os.PathLike[str], identity: ModelIdentity, **kwargs: int) -> EmbeddingCache:
        """The cache that lives in ``index_dir`` (``<index_dir>/embedding-cache``)."""
        return cls(Path(index_dir) / CACHE_DIR, identity, **kwargs)

    # ------------------------------------------------------------- connection
    def _check_paths(self) -> None:
        """The cache directory and database must be what they seem: never follow a planted symlink."""
        check_cache_paths(self.path, "embedding cache", self.root)

    def _connect(self, create: bool) -> sqlite3.Connection | None:
        """Open (and with ``create``, make) the database; a damaged or foreign one is deleted first."""
        if self._con is not None:
            return self._con
        if self._disabled:
            return None
        self._check_paths()
        if not self.path.exists() and not create:
            return None
        for attempt in range(2):
            if create:
                self.root.mkdir(parents=True, exist_ok=True)
            con = None
            try:
                con = sqlite3.connect(str(self.path), timeout=30.0, isolation_level=None, check_same_thread=False)
                # Before anything creates the file (only a new, empty database takes them): 8 KiB pages
                # hold five 384-d rows where 4 KiB pages hold two (file 10% over the raw vectors instead
                # of 37%); auto_vacuum lets garbage collection give pages back without a full VACUUM.
                con.execute("PRAGMA page_size=8192")
                con.execute("PRAGMA auto_vacuum=INCREMENTAL")
                con.execute("PRAGMA journal_mode=WAL")
                # WAL + NORMAL: a killed process loses nothing committed; a power cut may lose the last
                # batches but never leaves a half batch, which is all a cache needs.
                con.execute("PRAGMA synchronous=NORMAL")
                if self._usable(con):
                    self._con = con
                    return con
                con.close()
                log.warning("%s: embedding cache of another format or model; starting it afresh", self.path)
            except sqlite3.OperationalError as exc:
                if con is not None:
                    con.close()
                log.warning("%s: embedding cache unavailable (%s); going on without it", self.path, exc)
                self._disabled = True
                return None
            except sqlite3.DatabaseError as exc:
                if con is not None:
                    con.close()
                log.warning("%s: embedding cache unreadable (%s); starting it afresh", self.path, exc)
            self.stats.reset += 1
            remove_db(self.path)
            if not create:
                return None
        raise UnsafeIndexPathError(f"{self.path}: cannot create an embedding cache here")  # pragma: no cover

    def _usable(self, con: sqlite3.Connection) -> bool:
        """Create the schema in a new database; check format and identity of an existing one."""
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not tables:
            con.executescript(_SCHEMA)
            con.execute("BEGIN IMMEDIATE")
            con.executemany(
                "INSERT OR REPLACE INTO meta VALUES (?, ?)",
                [("format_version", str(CACHE_FORMAT_VERSION)), ("identity", self.identity.model_dump_json()),
                 ("clock", "0")],
            )
            con.execute("COMMIT")
            return True
        if not {"meta", "vectors"} <= tables:
            return False
        meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
        if meta.get("format_version") != str(CACHE_FORMAT_VERSION):
            return False
        try:
            stored = ModelIdentity.model_validate_json(meta.get("identity", ""))
        except ValueError:
            return False
        return stored == self.identity

    def _tick(self, con: sqlite3.Connection) -> int:
        if self._clock is None:
            con.execute("BEGIN IMMEDIATE")
            row = con.execute("SELECT value FROM meta WHERE key = 'clock'").fetchone()
            clock = int(row[0]) + 1 if row and str(row[0]).isdigit() else 1
            con.execute("INSERT OR REPLACE INTO meta VALUES ('clock', ?)", (str(clock),))
            con.execute("COMMIT")
            self._clock = clock
        return self._clock

    def _guard(self, what: str, fn):  # noqa: ANN001, ANN202 - internal
        """Run ``fn()``; if SQLite finds the database damaged, delete it and report nothing cached.

        Operational failures (disk full, I/O error, a lock held too long) say nothing about the
        file's contents: the cache is switched off for this session, the file is left alone, and
        the build goes on encoding without it.
        """
        try:
            return fn()
        except sqlite3.OperationalError as exc:
            log.warning("%s: embedding cache unavailable during %s (%s); going on without it", self.path, what, exc)
            self._drop_connection()
            self._disabled = True
            return None
        except sqlite3.DatabaseError as exc:
            log.warning("%s: embedding cache damaged during %s (%s); starting it afresh", self.path, what, exc)
            self._drop_connection()
            self.stats.reset += 1
            remove_db(self.path)
            return None

    def _drop_connection(self) -> None:
        if self._con is not None:
            try:
                self._con.close()
            except sqlite3.Error:
                pass
            self._con = None
            self._clock = None

    # ------------------------------------------------------------------ reads
    def contains(self, hashes: Iterable[str]) -> set[str]:
        """The subset of ``hashes`` that have a cached row (not verified: for reports such as a dry run)."""
        wanted = list(dict.fromkeys(hashes))
        with self._lock:
            con = self._connect(create=False)
            if con is None or not wanted:
                return set()

            def run() -> set[str]:
                out: set[str] = set()
                for part in _chunks(wanted, _BATCH):
                    raw = [_hash_bytes(h) for h in part]
                    rows = con.execute(f"SELECT hash FROM vectors WHERE hash IN ({','.join('?' * len(raw))})", raw)
                    out.update(bytes(r[0]).hex() for r in rows)
                return out

            return self._guard("lookup", run) or set()

    def lookup(self, hashes: Iterable[str]) -> dict[str, np.ndarray]:
        """Cached vectors of ``hashes`` (read-only float32 arrays of the identity's dimension).

        Each row's length, checksum and values are verified; a damaged row is
        deleted, counted in ``stats.dropped`` and left out (so the caller
        re-encodes it). Otherwise a lookup only reads: a build whose every
        passage is cached writes nothing.
        """
        wanted = list(dict.fromkeys(hashes))
        with self._lock:
            con = self._connect(create=False)
            if con is None or not wanted:
                self.stats.misses += len(wanted)
                return {}
            found = self._guard("lookup", lambda: self._lookup(con, wanted))
            found = found or {}
        self.stats.hits += len(found)
        self.stats.misses += len(wanted) - len(found)
        return found

    def _lookup(self, con: sqlite3.Connection, wanted: list[str]) -> dict[str, np.ndarray]:
        nbytes = self.identity.dimension * 4
        good: list[tuple[bytes, bytes]] = []
        bad: list[bytes] = []
        for part in _chunks(wanted, _BATCH):
            raw = [_hash_bytes(h) for h in part]
            rows = con.execute(
                f"SELECT hash, vector, checksum FROM vectors WHERE hash IN ({','.join('?' * len(raw))})", raw
            ).fetchall()
            for hb, vb, cs in rows:
                hb, vb = bytes(hb), bytes(vb)
                if len(hb) == 32 and len(vb) == nbytes and _checksum(hb, vb) == bytes(cs):
                    good.append((hb, vb))
                else:
                    bad.append(hb)
        found: dict[str, np.ndarray] = {}
        if good:
            # One array for all hits (rows of it handed out): cheaper than an array per row.
            mat = np.frombuffer(b"".join(vb for _hb, vb in good), dtype="<f4").reshape(len(good), -1)
            finite = np.isfinite(mat).all(axis=1)
            for (hb, _vb), row, ok in zip(good, mat, finite, strict=True):
                if ok:
                    found[hb.hex()] = row
                else:
                    bad.append(hb)
        if bad:
            log.warning("%s: %d damaged embedding(s) dropped; they will be re-encoded", self.path, len(bad))
            con.execute("BEGIN IMMEDIATE")
            try:
                con.executemany("DELETE FROM vectors WHERE hash = ?", ((b,) for b in bad))
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
            self.stats.dropped += len(bad)
        return found

    def __len__(self) -> int:
        with self._lock:
            con = self._connect(create=False)
            if con is None:
                return 0
            n = self._guard("count", lambda: con.execute("SELECT COUNT(*) FROM vectors").fetchone()[0])
            return int(n or 0)

    # ----------------------------------------------------------------- writes
    def put(self, hashes: Sequence[str], vectors: np.ndarray) -> None:
        """Store one batch of freshly encoded vectors, in one committed transaction.

        ``vectors`` is (len(hashes), dimension) float; rows already cached are
        left as they are (content addressed: the same passage, the same vector).
        When this returns, the batch survives the process being killed.
        """
        arr = np.asarray(vectors)
        if arr.ndim != 2 or arr.shape != (len(hashes), self.identity.dimension):
            raise UsageError(
                f"embedding cache of dimension {self.identity.dimension} got vectors of shape {arr.shape} "
                f"for {len(hashes)} hashes"
            )
        if not len(hashes):
            return
        arr = np.ascontiguousarray(arr, dtype="<f4")
        if not np.isfinite(arr).all():
            raise UsageError("refusing to cache non-finite embeddings")
        rows = []
        for h, v in zip(hashes, arr, strict=True):
            hb, vb = _hash_bytes(h), v.tobytes()
            rows.append((hb, vb, _checksum(hb, vb)))
        with self._lock:
            con = self._connect(create=True)
            if con is None:
                return  # switched off for this session (see _guard)

            def run() -> bool:
                clock = self._tick(con)
                con.execute("BEGIN IMMEDIATE")
                try:
                    con.executemany(
                        "INSERT OR IGNORE INTO vectors VALUES (?, ?, ?, ?)", ((hb, vb, cs, clock) for hb, vb, cs in rows)
                    )
                    con.execute("COMMIT")
                except BaseException:
                    con.execute("ROLLBACK")
                    raise
                return True

            if self._guard("write", run):
                self.stats.written += len(rows)

    # ------------------------------------------------------------------ sizes
    def databases(self) -> list[Path]:
        """Every cache database under the root (all models), regular files only."""
        if not self.root.is_dir() or self.root.is_symlink():
            return []
        return sorted(
            p for p in self.root.iterdir()
            if p.name.startswith(_DB_PREFIX) and p.name.endswith(_DB_SUFFIX) and p.is_file() and not p.is_symlink()
        )

    def size_bytes(self) -> int:
        """Bytes on disk of the whole cache directory (every model), write-ahead log included."""
        total = 0
        for db in self.databases():
            # -shm is a transient shared-memory index (removed on close): not part of the cache's size.
            total += _file_size(db) + sum(_file_size(db.with_name(db.name + s)) for s in ("-wal", "-journal"))
        return total

    def collect_garbage(self, max_bytes: int | None = None, keep: Iterable[str] = ()) -> int:
        """Shrink the cache directory to at most ``max_bytes`` (default: this cache's cap); returns bytes freed.

        Other models' databases go first (least recently modified first), then
        this model's rows that are not in ``keep`` (pass the passage hashes of
        the index just built), oldest first, then, if the cap is smaller than
        the index itself, the oldest of those too. The caller holds the writer lock.
        """
        cap = self.max_bytes if max_bytes is None else max_bytes
        before = self.size_bytes()
        with self._lock:
            self._checkpoint()
            total = self.size_bytes()
            others = sorted((p for p in self.databases() if p != self.path), key=lambda p: p.stat().st_mtime)
            for db in others:
                if total <= cap:
                    break
                remove_db(db)
                self.stats.evicted_databases += 1
                total = self.size_bytes()
            if total > cap:
                self._evict_rows(cap, keep)
        return max(0, before - self.size_bytes())

    def _evict_rows(self, cap: int, keep: Iterable[str]) -> None:
        con = self._connect(create=False)
        if con is None:
            return

        def run() -> bool:
            con.execute("CREATE TEMP TABLE IF NOT EXISTS keep (hash BLOB PRIMARY KEY)")
            con.execute("DELETE FROM temp.keep")
            con.executemany("INSERT OR IGNORE INTO temp.keep VALUES (?)", ((_hash_bytes(h),) for h in keep))
            vacuumed = False
            for _round in range(16):
                total = self.size_bytes()
                rows = con.execute("SELECT COUNT(*) FROM vectors").fetchone()[0]
                if total <= cap or rows == 0:
                    break
                own = _file_size(self.path)
                per_row = max(1, own // rows)
                n = min(rows, max(1, -(-(total - cap) // per_row)))
                con.execute("BEGIN IMMEDIATE")
                con.execute(
                    "DELETE FROM vectors WHERE rowid IN (SELECT rowid FROM vectors "
                    "ORDER BY hash IN (SELECT hash FROM temp.keep), added, rowid LIMIT ?)",
                    (n,),
                )
                con.execute("COMMIT")
                self.stats.evicted += n
                # Give the freed pages back to the file system (auto_vacuum=INCREMENTAL is set at creation).
                # executescript steps the pragma to completion; execute() would free one page per call.
                con.executescript("PRAGMA incremental_vacuum;")
                con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                if _file_size(self.path) >= own and not vacuumed:
                    con.execute("VACUUM")  # a file made without auto-vacuum: rewrite it once
                    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                    vacuumed = True
            con.execute("DROP TABLE temp.keep")
            return True

        self._guard("garbage collection", run)

    def _checkpoint(self) -> None:
        if self._con is not None:
            self._guard("checkpoint", lambda: self._con.execute("PRAGMA wal_checkpoint(TRUNCATE)"))  # type: ignore[union-attr]

    # --------------------------------------------------------------- lifetime
    def close(self) -> None:
        """Fold the write-ahead log into the database and close it."""
        with self._lock:
            self._checkpoint()
            self._drop_connection()

    def __enter__(self) -> EmbeddingCache:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def clear_cache(index_dir: str | os.PathLike[str]) -> int:
    """Delete the whole embedding cache of an index directory (every model); returns bytes freed.

    Safe at any time no build holds the index's writer lock: the next build re-encodes.
    """
    root = Path(index_dir) / CACHE_DIR
    if root.is_symlink():
        root.unlink()
        return 0
    if not root.is_dir():
        return 0
    freed = sum(_file_size(p) for p in root.iterdir() if p.is_file() and not p.is_symlink())
    shutil.rmtree(root, ignore_errors=True)  # rmtree never follows symlinks inside the tree
    return freed


def _chunks(items: Sequence[str], n: int) -> Iterator[Sequence[str]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


__all__ = [
    "CACHE_DIR",
    "CACHE_FORMAT_VERSION",
    "DEFAULT_MAX_BYTES",
    "CacheStats",
    "EmbeddingCache",
    "ModelIdentity",
    "clear_cache",
    "precision_of",
]
