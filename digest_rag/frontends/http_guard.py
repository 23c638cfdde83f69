"""serve's guard in front of the app: the Host check (loopback names unless allowed), the token, the per-client rate limit, security headers, and the bind rule (a long token off loopback)."""

from __future__ import annotations

import hmac
import ipaddress
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

try:
    from fastapi.responses import JSONResponse, Response
    from starlette.datastructures import MutableHeaders
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError("digest-rag serve needs the 'serve' extra: pip install \"digest-rag[serve]\"") from exc

from digest_rag.errors import (
    UsageError,
)


DEFAULT_RATE_LIMIT = 20.0


MIN_TOKEN_CHARS = 16


LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")


PROTECTED = ("/search", "/papers", "/similar", "/info")  # the data endpoints: token and rate limit apply


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
