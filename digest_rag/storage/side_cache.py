"""What the SQLite caches beside an index's generations share (the parse cache, the embedding cache).

Each is a cache: a damaged or foreign database is deleted with its side files and started afresh, at the
cost of time only. Neither may follow a planted symbolic link, and each entry carries a checksum of its
key and value, so a damaged row is read as missing, never as a wrong value.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from digest_rag.errors import UnsafeIndexPathError

__all__ = ["SQLITE_SIDE_FILES", "check_cache_paths", "entry_checksum", "remove_db"]

#: The files SQLite keeps beside a database (rollback journal, write-ahead log, its shared-memory index).
SQLITE_SIDE_FILES = ("-journal", "-wal", "-shm")


def database_files(path: Path) -> list[Path]:
    """A database file and its SQLite side files."""
    return [path, *(path.with_name(path.name + s) for s in SQLITE_SIDE_FILES)]


def remove_db(path: Path) -> None:
    """Delete a cache database and its side files."""
    for p in database_files(path):
        p.unlink(missing_ok=True)


def check_cache_paths(path: Path, what: str, directory: Path | None = None) -> None:
    """Refuse a cache database (or its ``directory``, or a side file) that is a symbolic link, or that exists
    as something other than a regular file (a directory); ``what`` names the cache in the message."""
    for p in ([directory] if directory is not None else []) + database_files(path):
        if p.is_symlink():
            raise UnsafeIndexPathError(f"{p}: is a symbolic link; refusing to use it as the {what} (delete it)")
    if directory is not None and directory.exists() and not directory.is_dir():
        raise UnsafeIndexPathError(f"{directory}: exists and is not a directory; refusing to use it as the {what}")
    if path.exists() and not path.is_file():
        raise UnsafeIndexPathError(f"{path}: is not a regular file; refusing to use it as the {what}")


def entry_checksum(*parts: bytes) -> bytes:
    """The 16-byte checksum of one cache entry's parts (its key and value)."""
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        h.update(part)
    return h.digest()
