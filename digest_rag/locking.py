"""One writer per index directory: an fcntl lock on ``<index>.lock`` beside the index.

The lock is held by the kernel for the life of the process, so a crashed or
killed builder releases it automatically (no stale lock can block anyone);
the file's content only tells the next comer who holds it.
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import json
import os
import time
from pathlib import Path
from types import TracebackType

from .errors import IndexLockedError


def lock_path(index_dir: Path) -> Path:
    """The lock file of an index directory: beside it, so it survives the directory's swap."""
    return index_dir.parent / f".{index_dir.name}.lock"


class WriterLock:
    """Exclusive, non-blocking (or bounded-wait) writer lock for one index directory."""

    def __init__(self, index_dir: Path, wait: float = 0.0) -> None:
        self.path = lock_path(index_dir)
        self.wait = wait
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise IndexLockedError naming the holder."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + max(0.0, self.wait)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = _read_holder(fd)
                    os.close(fd)
                    waited = f" after waiting {self.wait:g}s" if self.wait else ""
                    raise IndexLockedError(
                        f"index {self.path.parent / self.path.name[1:-5]} is being written by {holder}{waited}; "
                        "try again later or pass --wait SECONDS"
                    ) from None
                time.sleep(0.1)
        info = {"pid": os.getpid(), "started": _dt.datetime.now().astimezone().isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Drop the lock (the file stays; its content is only informative)."""
        if self._fd is not None:
            try:
                os.ftruncate(self._fd, 0)
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            finally:
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> WriterLock:
        self.acquire()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.release()


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
        raw = os.pread(fd, 4096, 0).decode("utf-8", "replace")
        info = json.loads(raw)
        pid = int(info["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        # Empty between the holder's flock and its write, or garbled: still locked, holder unknown.
        return "another process"
    who = f"process {pid} (started {info.get('started')})"
    if not _pid_alive(pid):
        # The kernel drops a dead process's flock, so a forked child of it must still hold the file.
        who += ", which has exited; a child process it forked may still hold the lock"
    return who
