"""serve's work queue: requests run one at a time on the index's thread, a bounded queue answers 503 when full, and a request whose client has gone is dropped or stopped between stages."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import TypeVar

try:
    from fastapi import Request
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError("digest-rag serve needs the 'serve' extra: pip install \"digest-rag[serve]\"") from exc

from digest_rag.errors import (
    UsageError,
)
from digest_rag.index import DigestIndex
from digest_rag.frontends.live import LiveIndex

__all__ = ["DEFAULT_MAX_QUEUE", "ClientGone", "Job", "ServerBusy", "WorkQueue"]

T = TypeVar("T")

DEFAULT_MAX_QUEUE = 16


# ------------------------------------------------------------------ work queue
class ServerBusy(Exception):
    """The work queue is full (answered 503)."""


class ClientGone(Exception):
    """The client disconnected before its answer was ready; nobody reads the response."""


class Job:
    """What one request's work checks between its stages: whether its client is still there."""

    def __init__(self) -> None:
        self._cancelled = threading.Event()

    def cancel(self) -> None:
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def check(self) -> None:
        """Raise ClientGone when the request was cancelled (called between stages on the worker thread)."""
        if self._cancelled.is_set():
            raise ClientGone


class WorkQueue:
    """At most ``limit`` requests waiting for or running on the LiveIndex's worker thread; the rest are refused.

    A request that finds the queue full waits up to ``admit_wait`` seconds for room (as many such waiters as
    the queue holds, no more), then gets 503. A request whose client disconnects is cancelled: dropped from
    the queue if it has not started, and told (:meth:`Job.check`) to stop at its next stage if it has.
    Without this, 30 slow requests abandoned by their clients kept the one worker busy for nearly a minute
    (issue 23).
    """

    def __init__(self, live: LiveIndex, limit: int = DEFAULT_MAX_QUEUE, admit_wait: float = 1.0) -> None:
        if limit < 1:
            raise UsageError(f"the work queue needs room for at least 1 request (got {limit})")
        self.live = live
        self.limit = limit
        self.admit_wait = admit_wait
        self._count = 0
        self._waiters = 0
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._room: asyncio.Event | None = None  # set (and replaced) whenever a request leaves the queue
        self.dropped = 0  # requests cancelled because their client went away

    @property
    def pending(self) -> int:
        """Requests queued or running now."""
        return self._count

    def _release(self, _future: object = None) -> None:
        with self._lock:
            self._count -= 1
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self._wake)
            except RuntimeError:  # pragma: no cover - the loop closed meanwhile
                pass

    def _wake(self) -> None:
        room, self._room = self._room, None
        if room is not None:
            room.set()

    def _try_enter(self) -> bool:
        with self._lock:
            if self._count >= self.limit:
                return False
            self._count += 1
            return True

    async def _enter(self) -> None:
        """Take a place in the queue, waiting up to ``admit_wait`` seconds for one; ServerBusy if none comes."""
        if self._try_enter():
            return
        if self._waiters >= self.limit or self.admit_wait <= 0:
            raise ServerBusy
        self._loop = asyncio.get_running_loop()
        deadline = self._loop.time() + self.admit_wait
        self._waiters += 1
        try:
            while not self._try_enter():
                remaining = deadline - self._loop.time()
                if remaining <= 0:
                    raise ServerBusy
                if self._room is None:
                    self._room = asyncio.Event()
                try:
                    await asyncio.wait_for(self._room.wait(), remaining)
                except asyncio.TimeoutError:
                    raise ServerBusy from None
        finally:
            self._waiters -= 1

    async def run(self, request: Request, fn: Callable[[DigestIndex, Job], T]) -> T:
        """``fn(index, job)`` on the worker thread; ServerBusy when full, ClientGone when the client left."""
        self._loop = asyncio.get_running_loop()
        await self._enter()
        job = Job()
        try:
            future = self.live.submit(fn, job)
        except BaseException:
            self._release()
            raise
        future.add_done_callback(self._release)  # also when cancelled while queued
        answer = asyncio.wrap_future(future)
        gone = asyncio.ensure_future(_disconnected(request))
        try:
            await asyncio.wait({answer, gone}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            job.cancel()
            future.cancel()
            raise
        finally:
            gone.cancel()
        if answer.done():
            return answer.result()
        job.cancel()  # running: stops at its next stage
        if future.cancel():  # still queued: never runs
            self.dropped += 1
        answer.cancel()
        raise ClientGone


async def _disconnected(request: Request) -> None:
    """Return when the client has gone (ASGI ``http.disconnect``); GET requests have no body to read first."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return
