"""`digest-rag serve`: a read-only HTTP API and search page over one index (FastAPI + uvicorn).

Endpoints (all GET; nothing writes):

- ``/search?q=&k=&mode=&lang=&from=&to=&tag=`` -> the hits as ``search --json``
  prints them (``SearchResults.to_records``); ``highlight=html`` adds
  ``snippet_html``, ``title_html`` and ``title_ko_html`` (escaped text, query terms in ``<mark>``). The
  ``X-Index-Generation`` header names the generation that answered.
  ``offset`` skips the best N papers (paging; ranks continue from N+1).
- ``/papers/{id}`` -> one paper with all its sections (``?q=`` adds highlighted ``html`` per section).
- ``/similar/{id}?k=&mode=&offset=`` -> "more like this": the papers nearest to one paper (itself left out).
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

With ``access_log``, each request is one line on the ``digest_rag.access`` logger (client, time, method,
path, status, bytes, milliseconds); the query string, which holds the question, only with ``log_queries``.

The index is reloaded when a build commits a new generation
(:class:`~digest_rag.frontends.live.LiveIndex`); ``/healthz`` reports a reload
that failed or stalls in ``reload_error``.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar
from urllib.parse import quote

try:
    from fastapi import FastAPI, Query, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import FileResponse, JSONResponse, Response
    from fastapi.staticfiles import StaticFiles
    from starlette.exceptions import HTTPException as StarletteHTTPException
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError("digest-rag serve needs the 'serve' extra: pip install \"digest-rag[serve]\"") from exc

from digest_rag.version import __version__
from digest_rag.frontends.display import highlight as _highlight
from digest_rag.search.snippets import Highlighter
from digest_rag.errors import (
    DigestRagError,
    IncompatibleModelError,
    IndexError_,
    ModelUnavailableError,
    PaperNotFoundError,
    UsageError,
)
from digest_rag.index import DigestIndex
from digest_rag.lexical.kiwi import start_kiwi_in_background
from digest_rag.frontends.live import LiveIndex
from digest_rag.models import Language, SearchMode
from digest_rag.text import strip_controls
from digest_rag.frontends.service import (
    MAX_K,
    MAX_OFFSET,
    MAX_QUERY_CHARS,
    SearchRequest,
    SimilarRequest,
    check_query_terms,
    find_paper,
    paper_record,
)
from digest_rag.frontends.connections import BACKLOG, HEADER_TIMEOUT, KEEP_ALIVE_TIMEOUT, _install_log_throttle, connection_cap, guarded_protocol
from digest_rag.frontends.http_guard import DEFAULT_RATE_LIMIT, LOOPBACK_HOSTS, RateLimiter, _Guard, _error, allowed_host_names, check_bind
from digest_rag.frontends.work_queue import ClientGone, DEFAULT_MAX_QUEUE, Job, ServerBusy, WorkQueue

if TYPE_CHECKING:
    import uvicorn

__all__ = ["create_app", "serve", "server_config"]

log = logging.getLogger(__name__)

T = TypeVar("T")

"""Requests per second per client address on the data endpoints (bursts of twice that); 0 turns the limit off."""

"""Requests that may wait for (or run on) the index's one worker thread at once; more get 503 at once."""

MAX_HIGHLIGHT_CHARS = 100_000
"""Characters of one paper's sections that ``/papers/{id}?q=`` highlights (Kiwi's analysis is ~1 s per MB);
the sections past them get ``html`` as escaped text without marks, and ``highlight_truncated`` says so."""

"""Seconds a connection may take to send a request's headers (first request or the next on a kept-alive one)."""

"""Seconds an idle kept-alive connection stays open between requests."""

"""Open connections at most (lowered to fit the open-file limit; see :func:`connection_cap`)."""

"""The listening socket's backlog (uvicorn's default is 2,048); also how many connections asyncio accepts at once."""

"""Shortest bearer token accepted when binding beyond loopback (a guessable token guards nothing)."""

"""Host names the server answers to by default: a page of another site that rebinds its DNS name to 127.0.0.1
still sends its own name as Host, and gets 400."""

STATIC_DIR = Path(str(resources.files("digest_rag") / "static"))

_STATUS: list[tuple[type[DigestRagError], int]] = [
    (PaperNotFoundError, 404),
    (UsageError, 400),
    (ModelUnavailableError, 503),
    (IncompatibleModelError, 503),
    (IndexError_, 503),
]


access_logger = logging.getLogger("digest_rag.access")
_LOG_SAFE = "/:@-._~!$&'()*+,;="  # printable ASCII a path may show as it is; the rest is %-encoded


def access_line(scope: dict[str, Any], status: int, size: str | None, seconds: float, *, log_queries: bool) -> str:
    """One access-log line, in the Common Log Format plus milliseconds: ``client - - [time] "GET /path HTTP/1.1"
    status bytes 12.3ms``. The query string (the question, in ``q``) is left out unless ``log_queries``; every
    character outside printable ASCII is %-encoded, so a request cannot forge or split log lines."""
    client = scope.get("client")
    target = quote(str(scope.get("path", "")), safe=_LOG_SAFE)
    query = scope.get("query_string") or b""
    if log_queries and query:
        target += "?" + quote(query.decode("latin-1"), safe=_LOG_SAFE + "?%", encoding="latin-1")
    when = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime())
    method = quote(str(scope.get("method", "-")), safe="")
    version = quote(str(scope.get("http_version", "1.1")), safe=".")
    return (f'{client[0] if client else "-"} - - [{when}] "{method} {target} HTTP/{version}" {status} {size or "-"} '
            f"{seconds * 1000:.1f}ms")


class _AccessLog:
    """ASGI middleware outside every other: one `access_line` per HTTP request once it is answered, refused
    ones (400, 401, 429, 503) and failed ones (500) included."""

    def __init__(self, app: Any, *, log_queries: bool) -> None:
        self.app = app
        self.log_queries = log_queries

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status, size = 500, None

        async def send_logged(message: dict[str, Any]) -> None:
            nonlocal status, size
            if message["type"] == "http.response.start":
                status = message["status"]
                size = next((v.decode("latin-1") for k, v in message.get("headers", ()) if k.lower() == b"content-length"),
                            None)
            await send(message)

        try:
            await self.app(scope, receive, send_logged)
        finally:
            access_logger.info(access_line(scope, status, size, time.perf_counter() - started,
                                           log_queries=self.log_queries))


# The query parameters /search and /similar share.
KParam = Annotated[int, Query(ge=1, le=MAX_K, description="number of papers")]
ModeParam = Annotated[SearchMode, Query(description="hybrid, dense or lexical")]
LangParam = Annotated[Language | None, Query(description="only matches in ko, en or mixed text")]
FromParam = Annotated[str | None, Query(alias="from", description="YYYY-MM-DD, YYYY-MM or YYYY (its first day), inclusive")]
ToParam = Annotated[str | None, Query(alias="to", description="YYYY-MM-DD, YYYY-MM or YYYY (its last day), inclusive")]
TagParam = Annotated[list[str] | None, Query(description="only papers with any of these tags (repeatable)")]
OffsetParam = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="skip the best N papers (paging)")]


# ------------------------------------------------------------------ the app
def _highlight_titles(record: dict[str, Any], marks: Highlighter) -> None:
    """Add ``title_html`` (and ``title_ko_html``): the titles escaped, the query's terms (``marks``, what
    `highlight` takes) in ``<mark>``."""
    record["title_html"] = _highlight(str(record["title"]), marks, style="html")
    if record.get("title_ko"):
        record["title_ko_html"] = _highlight(str(record["title_ko"]), marks, style="html")


def create_app(index: LiveIndex | str | Path, *, token: str | None = None,
               rate_limit: float = DEFAULT_RATE_LIMIT, allowed_hosts: Iterable[str] | None = None,
               max_queue: int = DEFAULT_MAX_QUEUE, access_log: bool = False, log_queries: bool = False) -> FastAPI:
    """The ASGI application serving ``index`` (a LiveIndex, or an index directory to follow).

    ``token``: when set, ``/search``, ``/papers``, ``/similar`` and ``/info`` need ``Authorization: Bearer <token>``.
    ``rate_limit``: requests per second per client address on those endpoints (0: no limit).
    ``allowed_hosts``: Host names answered (default: :data:`LOOPBACK_HOSTS`; ``"*"`` allows any);
    other Hosts get 400. ``max_queue``: requests waiting for the index at once; more get 503.
    ``access_log``: one line per request on the ``digest_rag.access`` logger (`access_line`), without the
    query string unless ``log_queries``.
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
    if access_log:  # added last, so outermost: what the guard refuses is logged too
        app.add_middleware(_AccessLog, log_queries=log_queries)

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
        k: KParam = 10,
        mode: ModeParam = "hybrid",
        lang: LangParam = None,
        date_from: FromParam = None,
        date_to: ToParam = None,
        tag: TagParam = None,
        author: Annotated[list[str] | None, Query(description="only papers with an author whose name contains this")] = None,
        min_score: Annotated[float | None, Query(description="only hits scoring at least this (the mode's scale)")] = None,
        highlight: Annotated[Literal["html"] | None, Query(description="html: add snippet_html")] = None,
        offset: OffsetParam = 0,
    ) -> Response:
        req = SearchRequest.parse(query=q, k=k, mode=mode, language=lang, date_from=date_from, date_to=date_to,
                                  tags=tag or [], authors=author or [], min_score=min_score, offset=offset)

        def work(idx: DigestIndex, job: Job) -> tuple[str, list[dict[str, Any]]]:
            job.check()
            hits = req.run(idx)  # refuses a question of more than MAX_QUERY_TERMS terms before searching
            job.check()
            records = hits.to_records()
            if highlight == "html" and hits.highlighter is not None:
                for rec in records:
                    job.check()
                    rec["snippet_html"] = _highlight(str(rec["snippet"]), hits.highlighter, style="html")
                    _highlight_titles(rec, hits.highlighter)
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
                _highlight_titles(record, marks)
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

    @app.get("/similar/{paper_id:path}", summary="More like this: the papers nearest to one paper, itself left out")
    async def similar(
        request: Request,
        paper_id: str,
        k: KParam = 10,
        mode: ModeParam = "hybrid",
        lang: LangParam = None,
        date_from: FromParam = None,
        date_to: ToParam = None,
        tag: TagParam = None,
        offset: OffsetParam = 0,
    ) -> Response:
        req = SimilarRequest.parse(paper_id=paper_id, k=k, mode=mode, language=lang, date_from=date_from,
                                   date_to=date_to, tags=tag or [], offset=offset)

        def work(idx: DigestIndex, job: Job) -> tuple[str, list[dict[str, Any]]]:
            job.check()
            return idx.generation, req.run(idx).to_records()

        return await answer(request, work)

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html; charset=utf-8")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


def _log_to_stderr(logger: logging.Logger) -> logging.Handler:
    """``logger``'s INFO lines as they are on stderr, not through the root's throttled WARNING handler: an
    access log is one line per request by design. The caller removes the handler when serve stops."""
    logger.setLevel(logging.INFO)
    logger.propagate = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    return handler


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
          max_queue: int = DEFAULT_MAX_QUEUE, max_connections: int | None = None, access_log: bool = True,
          log_queries: bool = False) -> None:
    """Run the server until interrupted (what `digest-rag serve` does).

    ``access_log``: one line per request on stderr (`access_line`); the question only with ``log_queries``.
    """
    import uvicorn

    check_bind(host, token)
    if not 0 <= port <= 65535:
        raise UsageError(f"port must be 0..65535 (got {port})")
    if max_connections is not None and max_connections < 1:
        raise UsageError(f"--max-connections must be at least 1 (got {max_connections})")
    live = LiveIndex(index_dir)
    # Kiwi starts on first need (~3.6 s, +320 MiB), on the one worker thread where nothing can cancel it: the
    # first question with a word the index's table lacks would hold every request behind it. Started here in
    # the background, it is ready before anyone can ask (a question needing it meanwhile waits for it).
    start_kiwi_in_background()
    _throttle, handlers = _install_log_throttle()
    try:
        app = create_app(live, token=token, rate_limit=rate_limit, max_queue=max_queue,
                         allowed_hosts=allowed_host_names(host, allowed_hosts), access_log=access_log,
                         log_queries=log_queries)
        if access_log:
            handlers.append(_log_to_stderr(access_logger))
        config = server_config(app, host=host, port=port, trust_proxy=trust_proxy, max_connections=max_connections)
        shown = f"[{host}]" if ":" in host else host
        # The index path is the user's, but a directory name can carry an ESC like any corpus file name.
        print(strip_controls(f"serving {live.index_dir} ({live.generation}) on http://{shown}:{port}/ (Ctrl-C stops)"),
              file=sys.stderr, flush=True)
        uvicorn.Server(config).run()
    finally:
        for handler in handlers:
            logging.getLogger().removeHandler(handler)
            access_logger.removeHandler(handler)
        live.close()
