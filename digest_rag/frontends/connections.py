"""serve's connection limits under uvicorn: header and keep-alive timeouts, a connection cap under the open-file limit, and error logs that cannot flood."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import sys
import threading
import time
from collections import OrderedDict




HEADER_TIMEOUT = 10.0


KEEP_ALIVE_TIMEOUT = 5


DEFAULT_MAX_CONNECTIONS = 1000


BACKLOG = 128


# ------------------------------------------------------------------ connections and logs
def _open_files() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 64


def connection_cap(requested: int | None = None) -> int:
    """Connections to allow: ``requested`` (default DEFAULT_MAX_CONNECTIONS), lowered to leave room under the
    open-file limit for the files already open and a margin (index reloads, logs), so ``accept()`` never meets
    EMFILE: each connection is one file descriptor."""
    cap = DEFAULT_MAX_CONNECTIONS if requested is None else requested
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (ImportError, ValueError, OSError):  # pragma: no cover - not POSIX
        return max(1, cap)
    if soft != getattr(resource, "RLIM_INFINITY", -1):
        # asyncio accepts up to BACKLOG connections per wake-up before any of them is seen (and closed when over
        # the cap): room for two such rounds, and 64 files for the index's own use.
        room = soft - _open_files() - 64 - 2 * BACKLOG
        cap = min(cap, room)
    return max(1, cap)


_BUSY_RESPONSE = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
                  b"connection: close\r\nretry-after: 1\r\ncontent-length: 69\r\n\r\n"
                  b'{"error": "ServerBusy", "detail": "too many connections; retry later"}')


def guarded_protocol(*, header_timeout: float = HEADER_TIMEOUT,
                     max_connections: int = DEFAULT_MAX_CONNECTIONS) -> type[asyncio.Protocol]:
    """uvicorn's h11 protocol with a header timeout and a connection cap (uvicorn has neither).

    A connection must send a request's headers within ``header_timeout`` seconds of opening or of its previous
    response (slow-loris clients otherwise hold a file descriptor for ever). At ``max_connections`` open, a new
    connection closes the oldest one that is waiting for a request, or is answered 503 and closed when every
    connection is busy.
    """
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class GuardedH11Protocol(H11Protocol):
        _opened: float
        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._opened = self.loop.time()
            if len(self.connections) > max_connections and not self._evict_idle():
                transport.write(_BUSY_RESPONSE)
                transport.close()
                return
            self._arm()

        def _waiting(self) -> bool:
            """Between requests: no request's headers received yet."""
            return self.conn.their_state is h11.IDLE

        def _arm(self) -> None:
            self._disarm()
            self._header_timer = self.loop.call_later(header_timeout, self._expire)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _expire(self) -> None:
            self._header_timer = None
            if self._waiting() and not self.transport.is_closing():
                self._close_idle()

        def _close_idle(self) -> None:
            try:
                self.conn.send(h11.ConnectionClosed())
            except h11.LocalProtocolError:
                pass
            self.transport.close()

        def _evict_idle(self) -> bool:
            idle = [c for c in self.connections
                    if c is not self and isinstance(c, GuardedH11Protocol) and c._waiting()
                    and not c.transport.is_closing()]
            if not idle:
                return False
            min(idle, key=lambda c: c._opened)._close_idle()
            return True

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self._header_timer is not None and not self._waiting():
                self._disarm()  # the headers are in; the request runs as long as its work queue allows

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing() and self._waiting():
                self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

    return GuardedH11Protocol


class LogThrottle(logging.Filter):
    """A log filter that cannot let a flood through: each distinct message at most once per ``interval``
    seconds, and at most ``burst`` records per ``interval`` in all; the next record passed says how many were
    held back. Tracebacks of "too many open files" are cut to one line (asyncio logs one per failed accept)."""

    def __init__(self, interval: float = 60.0, burst: int = 20, max_keys: int = 1_000) -> None:
        super().__init__()
        self.interval = interval
        self.burst = burst
        self._max_keys = max_keys
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._window = (0.0, 0)  # start, records passed in it
        self.suppressed = 0
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        key = f"{record.name}:{record.levelno}:{str(record.msg)[:200]}"
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None:
            key += f":{type(exc).__name__}:{getattr(exc, 'errno', '')}"
        now = time.monotonic()
        with self._lock:
            start, passed = self._window
            if now - start >= self.interval:
                start, passed = now, 0
            last = self._seen.get(key)
            if (last is not None and now - last < self.interval) or passed >= self.burst:
                self.suppressed += 1
                return False
            self._window = (start, passed + 1)
            self._seen[key] = now
            self._seen.move_to_end(key)
            while len(self._seen) > self._max_keys:
                self._seen.popitem(last=False)
            held, self.suppressed = self.suppressed, 0
        if isinstance(exc, OSError) and exc.errno in (errno.EMFILE, errno.ENFILE):
            record.msg = f"{record.getMessage()}: {exc}"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        if held:
            record.msg = f"{record.getMessage()} [{held} similar log records held back]"
            record.args = None
        return True


_THROTTLED_LOGGERS = ("", "asyncio", "uvicorn", "uvicorn.error", "digest_rag")


def _install_log_throttle() -> tuple[LogThrottle, list[logging.Handler]]:
    """One stderr handler with a LogThrottle for everything serve logs (uvicorn's own configuration is off)."""
    throttle = LogThrottle()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s: %(name)s: %(message)s"))
    handler.addFilter(throttle)
    handler.setLevel(logging.WARNING)
    root = logging.getLogger()
    root.addHandler(handler)
    for name in _THROTTLED_LOGGERS[1:]:
        logger = logging.getLogger(name)
        for existing in logger.handlers:  # handlers set up by an embedding program pass through it too
            existing.addFilter(throttle)
    return throttle, [handler]
