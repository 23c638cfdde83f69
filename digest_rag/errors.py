"""Typed exceptions and warnings. The CLI maps each exception family to one line and an exit code."""

from __future__ import annotations

import errno
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class DigestRagError(Exception):
    """Base class of every error digest_rag raises on purpose."""

    exit_code: int = 2


class UsageError(DigestRagError, ValueError):
    """The caller asked for something that makes no sense (bad option, empty query)."""

    exit_code = 1


class EmptyQueryError(UsageError):
    """The query is empty or only whitespace."""


class IndexClosedError(UsageError):
    """The index was closed (`DigestIndex.close`, or the end of its ``with`` block); load it again to search."""


class ParseError(DigestRagError, ValueError):
    """A corpus file could not be read or understood."""


class CorpusError(DigestRagError):
    """The corpus as a whole is unusable (no papers, strict mode skips)."""


class IndexError_(DigestRagError):
    """Base for index directory problems (named with a trailing underscore to avoid shadowing)."""


class IndexNotFoundError(IndexError_, FileNotFoundError):
    """No digest_rag index at the given directory."""


class IndexCorruptedError(IndexError_):
    """An index file is missing, truncated, altered or of an unknown format."""


class IndexVersionError(IndexCorruptedError):
    """The index (or one of its files) has a format version this digest_rag cannot read."""


class IndexLockedError(IndexError_):
    """Another process holds the writer lock of the index directory."""


class UnsafeIndexPathError(IndexError_):
    """Refusing to overwrite a directory that is not a digest_rag index."""


class IndexWriteError(IndexError_):
    """The index could not be written (disk full, no permission, read-only file system); the old one is intact."""


class IncompatibleModelError(IndexError_):
    """The query encoder's model or dimension differs from the index's."""


class ModelUnavailableError(DigestRagError):
    """The embedding model cannot be loaded (offline, no cache, bad path)."""

    exit_code = 3


class ModelFallbackWarning(UserWarning):
    """Hybrid search answered from the lexical side, or a build went lexical-only, because the encoder is unavailable."""


class FusionCalibrationWarning(UserWarning):
    """A build's fusion calibration gave the dense side no weight: hybrid search on that index is lexical search."""


class QueryTruncatedWarning(UserWarning):
    """A query longer than the query length limit was cut."""


class DamagedIndexWarning(UserWarning):
    """A build found the previous index damaged and rebuilt from scratch (no embedding reuse)."""


# OS failures that say "this place cannot take the index now", not "digest_rag has a bug".
_WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO})
_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
_SQLITE_WRITE_ERRORS = ("database or disk is full", "disk i/o error", "readonly database", "unable to open database")


@contextmanager
def index_write_errors(index_dir: Path) -> Iterator[None]:
    """Turn a full disk, quota, read-only or permission failure while writing an index into IndexWriteError.

    Use it only around writes that happen before the commit point, so that the
    message's promise holds: the previous index is unchanged.
    """
    try:
        yield
    except OSError as exc:
        if exc.errno not in _WRITE_ERRNOS:
            raise
        # A copy (shutil) names its source first and the file it was writing second: name the one written.
        written = exc.filename2 if exc.errno in _FULL_ERRNOS and exc.filename2 else None
        where = written or exc.filename or index_dir
        raise IndexWriteError(
            f"{where}: cannot write the index ({exc.strerror or exc}); the previous index at {index_dir} is unchanged"
        ) from exc
    except sqlite3.OperationalError as exc:
        if not any(msg in str(exc).lower() for msg in _SQLITE_WRITE_ERRORS):
            raise
        raise IndexWriteError(
            f"{index_dir}: cannot write the index's SQLite store ({exc}); the previous index is unchanged"
        ) from exc


class PaperNotFoundError(DigestRagError):
    """No paper with the requested id in the index."""
