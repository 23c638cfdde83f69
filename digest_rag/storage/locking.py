"""One writer per index directory: an fcntl lock on ``.<name>.lock`` beside the real index directory.

The lock is held by the kernel for the life of the process, so a crashed or
killed builder releases it automatically (no stale lock can block anyone);
the file's content only tells the next comer who holds it.

The index path is resolved first (every symlink followed), so ``alias -> idx``
and ``idx`` share one lock. The lock file itself is never followed: it is
opened with O_NOFOLLOW and without O_TRUNC, and refused unless it is a plain
regular file with one name whose content is a lock's (empty or our holder
record). Otherwise a symlink or hard link planted at the lock's name would
let a build truncate and overwrite whatever it points to.
"""

from __future__ import annotations

import datetime as _dt
import errno
import fcntl
import json
import os
import stat
import time
from pathlib import Path
from types import TracebackType

from digest_rag.errors import IndexLockedError, IndexWriteError, UnsafeIndexPathError

# A holder record is a small JSON object; anything bigger was never written by us.
_MAX_LOCK_BYTES = 4096


def real_index_dir(index_dir: str | Path) -> Path:
    """``index_dir`` made absolute with every symlink resolved, checked to be usable as an index path.

    Raises UnsafeIndexPathError when the path is (or goes through) a dangling
    symlink or a symlink loop, when a parent is not a directory, or when it is
    the file system root. The directory itself need not exist yet.
    """
    given = Path(os.path.abspath(index_dir))
    try:
        real = given.resolve(strict=False)
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop (Python < 3.13)
        raise UnsafeIndexPathError(f"{given}: cannot resolve the index path ({_why(exc)}); "
                                   "choose another --index directory") from None
    if real.parent == real:
        raise UnsafeIndexPathError(f"{given}: the file system root cannot be an index directory")
    # resolve() keeps a dangling link's target: building would create it, wherever it points.
    for part in (*reversed(given.parents), given):
        if os.path.islink(part) and not os.path.exists(part):
            raise UnsafeIndexPathError(
                f"{given}: {'is' if part == given else f'goes through {part}, which is'} a dangling symbolic link "
                f"(to {os.readlink(part)}); refusing to create its target; fix the link or choose another --index"
            )
    for part in (*reversed(real.parents), real):
        try:
            st = os.lstat(part)
        except FileNotFoundError:
            break  # the rest is created by the build
        except OSError as exc:
            raise UnsafeIndexPathError(f"{given}: cannot use {part} ({_why(exc)})") from None
        if part != real and not stat.S_ISDIR(st.st_mode):
            raise UnsafeIndexPathError(f"{given}: {part} is not a directory, so no index can be under it")
    return real


def lock_path(index_dir: str | Path) -> Path:
    """The lock file of an index directory: beside the real directory, so it survives the directory's swap."""
    real = real_index_dir(index_dir)
    return real.parent / f".{real.name}.lock"


class WriterLock:
    """Exclusive, non-blocking (or bounded-wait) writer lock for one index directory."""

    def __init__(self, index_dir: str | Path, wait: float = 0.0) -> None:
        #: The index directory with symlinks resolved: every writer of it locks (and writes) here.
        self.index_dir = real_index_dir(index_dir)
        self.path = lock_path(self.index_dir)
        self.wait = wait
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise IndexLockedError naming the holder.

        Raises UnsafeIndexPathError when the lock's name holds anything but a
        lock file of ours, IndexWriteError when it cannot be created.
        """
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _write_error(self.path.parent, exc) from None
        fd = _open_lock_file(self.path)
        try:
            deadline = time.monotonic() + max(0.0, self.wait)
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        holder = _read_holder(fd)
                        waited = f" after waiting {self.wait:g}s" if self.wait else ""
                        raise IndexLockedError(
                            f"index {self.index_dir} is being written by {holder}{waited}; "
                            "try again later or pass --wait SECONDS"
                        ) from None
                    time.sleep(0.1)
            # Only the holder may judge the content: nobody else writes it now.
            if not _is_lock_content(fd):
                raise UnsafeIndexPathError(
                    f"{self.path}: exists and is not a digest_rag lock file; refusing to overwrite it "
                    "(move it away if it is yours)"
                )
            info = {"pid": os.getpid(), "started": _dt.datetime.now().astimezone().isoformat(timespec="seconds")}
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, json.dumps(info).encode(), 0)
            except OSError:
                pass  # the record is informative only (a full disk must not stop the lock itself)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def release(self) -> None:
        """Drop the lock (the file stays, emptied; its content is only informative)."""
        if self._fd is not None:
            try:
                try:
                    os.ftruncate(self._fd, 0)
                except OSError:
                    pass
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            finally:
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> WriterLock:
        self.acquire()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.release()


def _why(exc: BaseException) -> str:
    return (exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)) or type(exc).__name__


def _write_error(path: Path, exc: OSError) -> Exception:
    if exc.errno in (errno.EEXIST, errno.ENOTDIR):
        return UnsafeIndexPathError(f"{path}: a part of this path is not a directory, so no index can be there")
    return IndexWriteError(f"{path}: cannot create the index's lock file here ({_why(exc)})")


def _open_lock_file(path: Path) -> int:
    """Open (or create) the lock file without following a link, truncating, or blocking on a FIFO."""
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    refuse = f"{path}: the index's lock file"
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafeIndexPathError(f"{refuse} is a symbolic link; refusing to follow it (remove the link)") from None
        if exc.errno == errno.EISDIR:
            raise UnsafeIndexPathError(f"{refuse} is a directory; refusing to use it (move it away)") from None
        if exc.errno in (errno.ENXIO, errno.EOPNOTSUPP):
            raise UnsafeIndexPathError(f"{refuse} is not a regular file; refusing to use it") from None
        raise _write_error(path, exc) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = "a FIFO" if stat.S_ISFIFO(st.st_mode) else "not a regular file"
            raise UnsafeIndexPathError(f"{refuse} is {kind}; refusing to use it (move it away)")
        if st.st_nlink != 1:
            # A hard link to someone's file passes O_NOFOLLOW; writing our record would overwrite it.
            raise UnsafeIndexPathError(f"{refuse} has {st.st_nlink} names (a hard link to another file); "
                                       "refusing to write to it")
    except BaseException:
        os.close(fd)
        raise
    return fd


def _is_lock_content(fd: int) -> bool:
    """True when the file is empty or holds a holder record, as our lock files always do."""
    size = os.fstat(fd).st_size
    if size == 0:
        return True
    if size > _MAX_LOCK_BYTES:
        return False
    try:
        info = json.loads(os.pread(fd, _MAX_LOCK_BYTES, 0).decode("utf-8"))
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(info, dict) and isinstance(info.get("pid"), int) and set(info) <= {"pid", "started"}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, owned by someone else
    return True


def _read_holder(fd: int) -> str:
    """Who holds the lock, from the lock file's content (written by the holder after locking)."""
    try:
        raw = os.pread(fd, _MAX_LOCK_BYTES, 0).decode("utf-8", "replace")
        info = json.loads(raw)
        pid = int(info["pid"])
    except (OSError, ValueError, KeyError, TypeError, RecursionError, OverflowError):
        # Empty between the holder's flock and its write, or garbled: still locked, holder unknown.
        return "another process"
    who = f"process {pid} (started {info.get('started')})"
    if not _pid_alive(pid):
        # The kernel drops a dead process's flock, so a forked child of it must still hold the file.
        who += ", which has exited; a child process it forked may still hold the lock"
    return who
