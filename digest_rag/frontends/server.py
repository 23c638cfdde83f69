"""`digest-rag serve`: a read-only HTTP API and search page over one index (FastAPI + uvicorn).

Endpoints (all GET; nothing writes):

- ``/search?q=&k=&mode=&lang=&from=&to=&tag=`` -> the hits as ``search --json``
  prints them (``SearchResults.to_records``); ``highlight=html`` adds
  ``snippet_html`` (escaped text, query terms in ``<mark>``). The
  ``X-Index-Generation`` header names the generation that answered.
- ``/papers/{id}`` -> one paper with all its sections (``?q=`` adds highlighted ``html`` per section).
- ``/info`` -> what ``info --json`` says, without the per-paper list.
- ``/healthz`` -> ``{"status": "ok", ...}``; ``/openapi.json`` -> the schema.
- ``/`` -> the search page (static files shipped in the package; no CDN).

Safe by default (docs/THREAT_MODEL.md, "serve"):

- binds 127.0.0.1 and answers only requests whose ``Host`` is a loopback name
  (``--allowed-host`` adds names; any other Host gets 400), which stops DNS rebinding;
- a bearer token (``--token`` or ``$DIGEST_RAG_TOKEN``, at least 16 characters) is
  required to bind any other address and, when set, guards the data endpoints;
- the rate limit per client counts the peer address; ``X-Forwarded-For`` is
  believed only with ``--trust-proxy`` (then from the proxy at loopback);
- work is bounded: ``k``, the query's characters and analysed terms, the highlighted
  text of a paper, and a queue of at most ``max_queue`` requests waiting for the
  index's one worker thread (503 beyond it); a request whose client has gone is
  dropped from the queue, or stopped at its next stage if it is running;
- connections are bounded: request headers must arrive within ``header_timeout``
  seconds, idle keep-alive connections close after ``keep_alive`` seconds, and at
  most ``max_connections`` are open (below the open-file limit; the oldest idle
  one is closed for a newcomer); error logs are deduplicated and rate-limited;
- errors are ``{"error": <typed error name>, "detail": ...}`` JSON with a 4xx
  status for bad input and never a traceback.

The index is reloaded when a build commits a new generation
(:class:`~digest_rag.frontends.live.LiveIndex`); ``/healthz`` reports a reload
that failed or stalls in ``reload_error``.
"""

from __future__ import annotations

import asyncio
import errno
import hmac
import ipaddress
import logging
import os
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

try:
    from fastapi import FastAPI, Query, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import FileResponse, JSONResponse, Response
    from fastapi.staticfiles import StaticFiles
    from starlette.datastructures import MutableHeaders
    from starlette.exceptions import HTTPException as StarletteHTTPException
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError("digest-rag serve needs the 'serve' extra: pip install \"digest-rag[serve]\"") from exc

from digest_rag.version import __version__
from digest_rag.frontends.display import highlight as _highlight
from digest_rag.errors import (
    DigestRagError,
    IncompatibleModelError,
    IndexError_,
    ModelUnavailableError,
    PaperNotFoundError,
    UsageError,
)
from digest_rag.index import DigestIndex
from digest_rag.frontends.live import LiveIndex
from digest_rag.models import Language, SearchMode
from digest_rag.frontends.service import (
    MAX_K,
    MAX_QUERY_CHARS,
    SearchRequest,
    check_query_terms,
    find_paper,
    paper_record,
)

if TYPE_CHECKING:
    import uvicorn

__all__ = [
    "DEFAULT_MAX_QUEUE",
    "DEFAULT_RATE_LIMIT",
    "LOOPBACK_HOSTS",
    "MIN_TOKEN_CHARS",
    "LogThrottle",
    "RateLimiter",
    "WorkQueue",
    "check_bind",
    "create_app",
    "serve",
    "server_config",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_RATE_LIMIT = 20.0
"""Requests per second per client address on the data endpoints (bursts of twice that); 0 turns the limit off."""

DEFAULT_MAX_QUEUE = 16
"""Requests that may wait for (or run on) the index's one worker thread at once; more get 503 at once."""

MAX_HIGHLIGHT_CHARS = 100_000
"""Characters of one paper's sections that ``/papers/{id}?q=`` highlights (Kiwi's analysis is ~1 s per MB);
the sections past them get ``html`` as escaped text without marks, and ``highlight_truncated`` says so."""

HEADER_TIMEOUT = 10.0
"""Seconds a connection may take to send a request's headers (first request or the next on a kept-alive one)."""

KEEP_ALIVE_TIMEOUT = 5
"""Seconds an idle kept-alive connection stays open between requests."""

DEFAULT_MAX_CONNECTIONS = 1000
"""Open connections at most (lowered to fit the open-file limit; see :func:`connection_cap`)."""

BACKLOG = 128
"""The listening socket's backlog (uvicorn's default is 2,048); also how many connections asyncio accepts at once."""

MIN_TOKEN_CHARS = 16
"""Shortest bearer token accepted when binding beyond loopback (a guessable token guards nothing)."""

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
"""Host names the server answers to by default: a page of another site that rebinds its DNS name to 127.0.0.1
still sends its own name as Host, and gets 400."""

STATIC_DIR = Path(str(resources.files("digest_rag") / "static"))
PROTECTED = ("/search", "/papers", "/info")  # the data endpoints: token and rate limit apply

_STATUS: list[tuple[type[DigestRagError], int]] = [
    (PaperNotFoundError, 404),
    (UsageError, 400),
    (ModelUnavailableError, 503),
    (IncompatibleModelError, 503),
    (IndexError_, 503),
]

_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    # Everything the page needs comes from this server; nothing may be loaded or sent elsewhere.
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; "
                               "form-action 'self'",
}


def _error(status: int, name: str, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": name, "detail": detail}, status_code=status, headers=headers)


class RateLimiter:
    """A token bucket per client address: ``rate`` requests per second, bursts of ``burst``.

    Twenty lines of our own rather than a dependency (slowapi pulls in `limits`
    and storage back-ends) for one in-process counter per address.
    """

    def __init__(self, rate: float, burst: float | None = None, max_clients: int = 10_000) -> None:
        self.rate = rate
        self.burst = burst if burst is not None else max(2 * rate, 1.0)
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()
        self._max_clients = max_clients

    def retry_after(self, key: str) -> float:
        """0 when ``key`` may make a request now (and counts it), else the seconds until it may."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.pop(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            wait = 0.0
            if tokens >= 1.0:
                tokens -= 1.0
            else:
                wait = (1.0 - tokens) / self.rate
            self._buckets[key] = (tokens, now)
            while len(self._buckets) > self._max_clients:  # forget the least recently seen clients
                self._buckets.popitem(last=False)
            return wait


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


async def _disconnected(request: Request) -> None:
    """Return when the client has gone (ASGI ``http.disconnect``); GET requests have no body to read first."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


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


# ------------------------------------------------------------------ hosts
def _host_name(header: str) -> str:
    """The name in a Host header without its port, lower-cased: ``[::1]:8000`` -> ``::1``."""
    host = header.strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    name, _, _port = host.partition(":")
    return name.rstrip(".")


def allowed_host_names(bind: str | None = None, extra: Iterable[str] = ()) -> frozenset[str]:
    """The Host names to answer: the loopback names, the bound address (unless a wildcard) and ``extra``.

    ``"*"`` in ``extra`` allows any Host (for a server behind a proxy that checks it).
    """
    names = {*LOOPBACK_HOSTS}
    if bind and bind not in ("0.0.0.0", "::", ""):
        names.add(_host_name(bind if ":" not in bind or bind.startswith("[") else f"[{bind}]"))
    for name in extra:
        name = name.strip()
        if name:
            names.add("*" if name == "*" else _host_name(name if ":" not in name or name.startswith("[")
                                                        or name.count(":") == 1 else f"[{name}]"))
    return frozenset(names)


class _Guard:
    """ASGI middleware in front of every route: Host check, then rate limit and token on the data endpoints,
    and the security headers on every response. Plain ASGI, so the routes see the client's disconnect."""

    def __init__(self, app: Any, *, hosts: frozenset[str], limiter: RateLimiter, expected: bytes | None) -> None:
        self.app = app
        self.hosts = hosts
        self.any_host = "*" in hosts
        self.limiter = limiter
        self.expected = expected

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        refusal = self._refusal(scope, headers)
        if refusal is not None:
            await self._send_headers(refusal)(scope, receive, send)
            return

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                response_headers = MutableHeaders(scope=message)
                for key, value in _SECURITY_HEADERS.items():
                    response_headers.setdefault(key, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)

    @staticmethod
    def _send_headers(response: Response) -> Response:
        for key, value in _SECURITY_HEADERS.items():
            response.headers.setdefault(key, value)
        return response

    def _refusal(self, scope: dict[str, Any], headers: dict[bytes, bytes]) -> Response | None:
        if not self.any_host:
            host = headers.get(b"host", b"").decode("latin-1")
            if _host_name(host) not in self.hosts:
                shown = host[:100] if host else "(none)"
                return _error(400, "BadHost", f"this server does not answer to Host {shown!r}; "
                                              "start it with --allowed-host NAME to add a name")
        path = scope.get("path", "")
        if path.startswith(PROTECTED):
            client = scope.get("client")
            wait = self.limiter.retry_after(client[0] if client else "?")
            if wait > 0:
                return _error(429, "RateLimited", f"too many requests; retry in {wait:.2f}s",
                              {"Retry-After": str(max(1, round(wait)))})
            if self.expected is not None:
                given = headers.get(b"authorization", b"")
                if not hmac.compare_digest(given, self.expected):
                    return _error(401, "Unauthorized", "this server needs 'Authorization: Bearer <token>'",
                                  {"WWW-Authenticate": "Bearer"})
        return None


# ------------------------------------------------------------------ the app
def create_app(index: LiveIndex | str | Path, *, token: str | None = None,
               rate_limit: float = DEFAULT_RATE_LIMIT, allowed_hosts: Iterable[str] | None = None,
               max_queue: int = DEFAULT_MAX_QUEUE) -> FastAPI:
    """The ASGI application serving ``index`` (a LiveIndex, or an index directory to follow).

    ``token``: when set, ``/search``, ``/papers`` and ``/info`` need ``Authorization: Bearer <token>``.
    ``rate_limit``: requests per second per client address on those endpoints (0: no limit).
    ``allowed_hosts``: Host names answered (default: :data:`LOOPBACK_HOSTS`; ``"*"`` allows any);
    other Hosts get 400. ``max_queue``: requests waiting for the index at once; more get 503.
    """
    live = index if isinstance(index, LiveIndex) else LiveIndex(index)
    queue = WorkQueue(live, max_queue)
    hosts = allowed_host_names(None, allowed_hosts) if allowed_hosts is not None else frozenset(LOOPBACK_HOSTS)
    app = FastAPI(
        title="digest_rag",
        version=__version__,
        description="Search ML papers across Korean and English digests (read-only).",
        docs_url=None,  # Swagger UI and ReDoc load scripts from a CDN; the schema is at /openapi.json
        redoc_url=None,
    )
    app.state.live = live
    app.state.queue = queue
    app.add_middleware(_Guard, hosts=hosts, limiter=RateLimiter(rate_limit),
                       expected=f"Bearer {token}".encode() if token else None)

    async def answer(request: Request, fn: Callable[[DigestIndex, Job], tuple[str, Any]]) -> Response:
        try:
            generation, body = await queue.run(request, fn)
        except ServerBusy:
            return _error(503, "ServerBusy", f"{queue.limit} requests are already waiting; retry shortly",
                          {"Retry-After": "1"})
        except ClientGone:
            return Response(status_code=499)  # nobody reads it; uvicorn drops it
        return JSONResponse(body, headers={"X-Index-Generation": generation})

    @app.exception_handler(DigestRagError)
    async def typed_error(_request: Request, exc: DigestRagError) -> JSONResponse:
        status = next((code for cls, code in _STATUS if isinstance(exc, cls)), 500)
        return _error(status, type(exc).__name__, " ".join(str(exc).split()))

    @app.exception_handler(RequestValidationError)
    async def bad_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors():
            loc = [str(x) for x in err.get("loc", ()) if x not in ("query", "path")]
            parts.append(f"{'.'.join(loc)}: {err.get('msg', 'invalid')}" if loc else str(err.get("msg", "invalid")))
        return _error(400, "UsageError", "; ".join(parts) or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        names = {404: "NotFound", 405: "MethodNotAllowed"}
        return _error(exc.status_code, names.get(exc.status_code, "HTTPError"), str(exc.detail),
                      dict(exc.headers or {}))

    @app.exception_handler(Exception)
    async def internal_error(_request: Request, exc: Exception) -> JSONResponse:
        log.error("internal error: %s: %s", type(exc).__name__, exc)  # the detail stays in the server's log
        return _error(500, "InternalError", "internal error; see the server log")

    @app.get("/healthz", summary="Liveness: the server answers and has an index loaded")
    def healthz() -> dict[str, Any]:
        return {"status": "ok", "generation": live.generation, "reloads": live.reloads,
                "reload_error": live.last_error, "queued": queue.pending, "version": __version__}

    @app.get("/info", summary="The index: counts, languages, sections, model, dates, top tags")
    def info() -> dict[str, Any]:
        return live.info()

    @app.get("/search", summary="Papers answering a question, best first (the records of `search --json`)")
    async def search(
        request: Request,
        q: Annotated[str, Query(max_length=MAX_QUERY_CHARS, description="the question, Korean or English")],
        k: Annotated[int, Query(ge=1, le=MAX_K, description="number of papers")] = 10,
        mode: Annotated[SearchMode, Query(description="hybrid, dense or lexical")] = "hybrid",
        lang: Annotated[Language | None, Query(description="only matches in ko, en or mixed text")] = None,
        date_from: Annotated[str | None, Query(alias="from", description="YYYY-MM-DD, inclusive")] = None,
        date_to: Annotated[str | None, Query(alias="to", description="YYYY-MM-DD, inclusive")] = None,
        tag: Annotated[list[str] | None, Query(description="only papers with any of these tags (repeatable)")] = None,
        highlight: Annotated[Literal["html"] | None, Query(description="html: add snippet_html")] = None,
    ) -> Response:
        req = SearchRequest.parse(query=q, k=k, mode=mode, language=lang, date_from=date_from, date_to=date_to,
                                  tags=tag or [])

        def work(idx: DigestIndex, job: Job) -> tuple[str, list[dict[str, Any]]]:
            job.check()
            hits = req.run(idx)  # refuses a question of more than MAX_QUERY_TERMS terms before searching
            job.check()
            records = hits.to_records()
            if highlight == "html" and hits.highlighter is not None:
                for rec in records:
                    job.check()
                    rec["snippet_html"] = _highlight(str(rec["snippet"]), hits.highlighter, style="html")
            return idx.generation, records

        # On the index's one worker thread, not anyio's pool: see digest_rag.frontends.live on torch's OpenMP teams.
        return await answer(request, work)

    @app.get("/papers/{paper_id:path}", summary="One paper with all its sections")
    async def paper(
        request: Request,
        paper_id: str,
        q: Annotated[str | None, Query(max_length=MAX_QUERY_CHARS, description="highlight these terms")] = None,
    ) -> Response:
        def work(idx: DigestIndex, job: Job) -> tuple[str, dict[str, Any]]:
            job.check()
            record = paper_record(find_paper(idx, paper_id))
            if q and q.strip():
                terms = idx.analyse(q)  # once, as a search would
                check_query_terms(terms)
                marks = idx.highlighter(terms)
                budget = MAX_HIGHLIGHT_CHARS
                for section in record["sections"]:
                    job.check()
                    text = section["text"]
                    if len(text) <= budget:
                        section["html"] = _highlight(text, marks, style="html")
                        budget -= len(text)
                    else:  # past the budget: the text escaped, unmarked
                        section["html"] = _highlight(text, (), style="html")
                        record["highlight_truncated"] = True
                        budget = 0
            return idx.generation, record

        return await answer(request, work)

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html; charset=utf-8")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse (UsageError) to listen beyond this machine without a token of at least MIN_TOKEN_CHARS characters."""
    if _is_loopback(host):
        return
    if not token:
        raise UsageError(
            f"binding {host} exposes the index beyond this machine; set a token with --token or DIGEST_RAG_TOKEN"
        )
    if len(token) < MIN_TOKEN_CHARS:
        raise UsageError(
            f"binding {host} needs a token of at least {MIN_TOKEN_CHARS} characters (got {len(token)}); "
            "e.g. python -c 'import secrets; print(secrets.token_urlsafe(24))'"
        )


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


def server_config(app: Any, *, host: str = "127.0.0.1", port: int = 8000, trust_proxy: bool = False,
                  max_connections: int | None = None, header_timeout: float = HEADER_TIMEOUT,
                  keep_alive: int = KEEP_ALIVE_TIMEOUT) -> uvicorn.Config:
    """uvicorn's settings for ``app``: what `serve` runs (and what the tests run, on a free port).

    ``trust_proxy``: believe ``X-Forwarded-For`` from a proxy at loopback (off by default: uvicorn would
    otherwise let any local client choose the address the rate limit counts).
    """
    import uvicorn

    cap = connection_cap(max_connections)
    return uvicorn.Config(
        app, host=host, port=port, log_level="warning", access_log=False, server_header=False,
        log_config=None,  # logs go through the LogThrottle handler, not uvicorn's unthrottled ones
        proxy_headers=trust_proxy, forwarded_allow_ips="127.0.0.1,::1" if trust_proxy else "",
        http=guarded_protocol(header_timeout=header_timeout, max_connections=cap),
        limit_concurrency=cap + 1,  # uvicorn counts this connection too; requests past it get 503
        timeout_keep_alive=keep_alive, h11_max_incomplete_event_size=16 * 1024, backlog=BACKLOG,
        lifespan="off",
    )


def serve(index_dir: str | Path, *, host: str = "127.0.0.1", port: int = 8000, token: str | None = None,
          rate_limit: float = DEFAULT_RATE_LIMIT, trust_proxy: bool = False, allowed_hosts: Sequence[str] = (),
          max_queue: int = DEFAULT_MAX_QUEUE, max_connections: int | None = None) -> None:
    """Run the server until interrupted (what `digest-rag serve` does)."""
    import uvicorn

    check_bind(host, token)
    if not 0 <= port <= 65535:
        raise UsageError(f"port must be 0..65535 (got {port})")
    if max_connections is not None and max_connections < 1:
        raise UsageError(f"--max-connections must be at least 1 (got {max_connections})")
    live = LiveIndex(index_dir)
    _throttle, handlers = _install_log_throttle()
    try:
        app = create_app(live, token=token, rate_limit=rate_limit, max_queue=max_queue,
                         allowed_hosts=allowed_host_names(host, allowed_hosts))
        config = server_config(app, host=host, port=port, trust_proxy=trust_proxy, max_connections=max_connections)
        shown = f"[{host}]" if ":" in host else host
        print(f"serving {live.index_dir} ({live.generation}) on http://{shown}:{port}/ (Ctrl-C stops)",
              file=sys.stderr, flush=True)
        uvicorn.Server(config).run()
    finally:
        for handler in handlers:
            logging.getLogger().removeHandler(handler)
        live.close()
