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

Safe by default: binds 127.0.0.1; a bearer token (``--token`` or
``$DIGEST_RAG_TOKEN``) is required to bind any other address and, when set,
guards the data endpoints; ``k``, the query length and the request rate per
client are bounded; errors are ``{"error": <typed error name>, "detail": ...}``
JSON with a 4xx status for bad input and never a traceback. The index is
reloaded when a build commits a new generation (:class:`~digest_rag.frontends.live.LiveIndex`).
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import sys
import threading
import time
from collections import OrderedDict
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

try:
    from fastapi import FastAPI, Query, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import FileResponse, JSONResponse
    from fastapi.staticfiles import StaticFiles
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
from digest_rag.frontends.service import MAX_K, MAX_QUERY_CHARS, SearchRequest, find_paper, paper_record

__all__ = ["DEFAULT_RATE_LIMIT", "RateLimiter", "check_bind", "create_app", "serve"]

log = logging.getLogger(__name__)

DEFAULT_RATE_LIMIT = 20.0
"""Requests per second per client address on the data endpoints (bursts of twice that); 0 turns the limit off."""

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


def create_app(index: LiveIndex | str | Path, *, token: str | None = None,
               rate_limit: float = DEFAULT_RATE_LIMIT) -> FastAPI:
    """The ASGI application serving ``index`` (a LiveIndex, or an index directory to follow).

    ``token``: when set, ``/search``, ``/papers`` and ``/info`` need ``Authorization: Bearer <token>``.
    ``rate_limit``: requests per second per client address on those endpoints (0: no limit).
    """
    live = index if isinstance(index, LiveIndex) else LiveIndex(index)
    limiter = RateLimiter(rate_limit)
    expected = f"Bearer {token}".encode() if token else None
    app = FastAPI(
        title="digest_rag",
        version=__version__,
        description="Search ML papers across Korean and English digests (read-only).",
        docs_url=None,  # Swagger UI and ReDoc load scripts from a CDN; the schema is at /openapi.json
        redoc_url=None,
    )
    app.state.live = live

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Any:
        path = request.url.path
        if path.startswith(PROTECTED):
            client = request.client.host if request.client else "?"
            wait = limiter.retry_after(client)
            if wait > 0:
                return _error(429, "RateLimited", f"too many requests; retry in {wait:.2f}s",
                              {"Retry-After": str(max(1, round(wait)))})
            if expected is not None:
                given = request.headers.get("authorization", "").encode()
                if not hmac.compare_digest(given, expected):
                    return _error(401, "Unauthorized", "this server needs 'Authorization: Bearer <token>'",
                                  {"WWW-Authenticate": "Bearer"})
        response = await call_next(request)
        for key, value in _SECURITY_HEADERS.items():
            response.headers.setdefault(key, value)
        return response

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
                "reload_error": live.last_error, "version": __version__}

    @app.get("/info", summary="The index: counts, languages, sections, model, dates, top tags")
    def info() -> dict[str, Any]:
        return live.info()

    @app.get("/search", summary="Papers answering a question, best first (the records of `search --json`)")
    async def search(
        q: Annotated[str, Query(max_length=MAX_QUERY_CHARS, description="the question, Korean or English")],
        k: Annotated[int, Query(ge=1, le=MAX_K, description="number of papers")] = 10,
        mode: Annotated[SearchMode, Query(description="hybrid, dense or lexical")] = "hybrid",
        lang: Annotated[Language | None, Query(description="only matches in ko, en or mixed text")] = None,
        date_from: Annotated[str | None, Query(alias="from", description="YYYY-MM-DD, inclusive")] = None,
        date_to: Annotated[str | None, Query(alias="to", description="YYYY-MM-DD, inclusive")] = None,
        tag: Annotated[list[str] | None, Query(description="only papers with any of these tags (repeatable)")] = None,
        highlight: Annotated[Literal["html"] | None, Query(description="html: add snippet_html")] = None,
    ) -> JSONResponse:
        req = SearchRequest.parse(query=q, k=k, mode=mode, language=lang, date_from=date_from, date_to=date_to,
                                  tags=tag or [])

        def work(idx: DigestIndex) -> tuple[str, list[dict[str, Any]]]:
            with idx.stored_analysis():  # Korean words from the index's table, not Kiwi
                hits = req.run(idx)
                records = hits.to_records()
                if highlight == "html":
                    for rec in records:
                        rec["snippet_html"] = _highlight(str(rec["snippet"]), hits.query, style="html")
            return idx.generation, records

        # On the index's one worker thread, not anyio's pool: see digest_rag.frontends.live on torch's OpenMP teams.
        generation, records = await asyncio.wrap_future(live.submit(work))
        return JSONResponse(records, headers={"X-Index-Generation": generation})

    @app.get("/papers/{paper_id:path}", summary="One paper with all its sections")
    async def paper(
        paper_id: str,
        q: Annotated[str | None, Query(max_length=MAX_QUERY_CHARS, description="highlight these terms")] = None,
    ) -> JSONResponse:
        def work(idx: DigestIndex) -> tuple[str, dict[str, Any]]:
            with idx.stored_analysis():
                record = paper_record(find_paper(idx, paper_id))
                if q and q.strip():
                    for section in record["sections"]:
                        section["html"] = _highlight(section["text"], q, style="html")
            return idx.generation, record

        generation, record = await asyncio.wrap_future(live.submit(work))
        return JSONResponse(record, headers={"X-Index-Generation": generation})

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html; charset=utf-8")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


def check_bind(host: str, token: str | None) -> None:
    """Refuse (UsageError) to listen beyond this machine without a token."""
    if host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        loopback = False
    if not loopback and not token:
        raise UsageError(
            f"binding {host} exposes the index beyond this machine; set a token with --token or DIGEST_RAG_TOKEN"
        )


def serve(index_dir: str | Path, *, host: str = "127.0.0.1", port: int = 8000, token: str | None = None,
          rate_limit: float = DEFAULT_RATE_LIMIT) -> None:
    """Run the server until interrupted (what `digest-rag serve` does)."""
    import uvicorn

    check_bind(host, token)
    if not 0 <= port <= 65535:
        raise UsageError(f"port must be 0..65535 (got {port})")
    live = LiveIndex(index_dir)
    try:
        app = create_app(live, token=token, rate_limit=rate_limit)
        shown = f"[{host}]" if ":" in host else host
        print(f"serving {live.index_dir} ({live.generation}) on http://{shown}:{port}/ (Ctrl-C stops)",
              file=sys.stderr, flush=True)
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, server_header=False)
    finally:
        live.close()
