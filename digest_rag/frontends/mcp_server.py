"""`digest-rag mcp`: the index as MCP tools over stdio, for LLM agents (official `mcp` package, extra [mcp]).

Tools:

- ``search_papers(query, k, mode, lang, date_from, date_to, tags)`` -> the hits as
  ``search --json`` records (rank, paper_id, titles, date, tags, urls, score, snippet, ...);
- ``get_paper(id)`` -> one paper with all its sections;
- ``similar_papers(id, k, mode, offset)`` -> "more like this": the papers nearest to one paper, as
  ``search_papers`` records, the paper itself left out.

``search_papers`` takes ``offset`` too, for the next page of a ranking.

Arguments are validated with the same limits as ``serve`` (``k`` <= 100, a query
of at most 2,000 characters, ISO dates); a bad one is a tool error naming the
typed error (``UsageError: …``), which the agent reads and can correct. Only the
protocol goes to stdout; warnings and logs go to stderr. The index follows new
generations written by build/update (:class:`~digest_rag.frontends.live.LiveIndex`).
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, BinaryIO

from pydantic import Field, ValidationError

try:
    import anyio
    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.exceptions import ToolError
    from mcp.server.stdio import stdio_server
    from mcp_types import INVALID_REQUEST, PARSE_ERROR, jsonrpc_message_adapter
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError("digest-rag mcp needs the 'mcp' extra: pip install \"digest-rag[mcp]\"") from exc

from digest_rag.version import __version__
from digest_rag.errors import DigestRagError
from digest_rag.frontends.live import LiveIndex
from digest_rag.models import Language, SearchMode
from digest_rag.text import strip_controls
from digest_rag.frontends.service import (
    MAX_K,
    MAX_OFFSET,
    MAX_QUERY_CHARS,
    SearchRequest,
    SimilarRequest,
    find_paper,
    paper_record,
)

__all__ = ["create_server", "run_mcp"]

INSTRUCTIONS = (
    "Search a collection of machine-learning papers summarised in Korean and English digests. "
    "Ask search_papers in Korean or English (it matches across the two languages); each hit has the paper's "
    "English and Korean titles, date, tags, links and the best-matching passage. Call get_paper with a hit's "
    "paper_id for the paper's whole text, and similar_papers with it for papers like that one. "
    "Both search tools take offset for the next page (offset=k skips the first k papers)."
)


def create_server(live: LiveIndex) -> MCPServer:
    """An MCP server whose tools search ``live`` (call ``.run()`` on it for stdio)."""
    server: MCPServer = MCPServer(name="digest-rag", version=__version__, instructions=INSTRUCTIONS, log_level="WARNING")

    @server.tool()
    def search_papers(
        query: Annotated[str, Field(description=f"the question, Korean or English (at most {MAX_QUERY_CHARS} characters)")],
        k: Annotated[int, Field(description=f"number of papers, 1..{MAX_K}")] = 10,
        mode: Annotated[SearchMode, Field(description="hybrid (default), dense (meaning) or lexical (words)")] = "hybrid",
        lang: Annotated[Language | None, Field(description="only matches in ko, en or mixed text")] = None,
        date_from: Annotated[str | None, Field(description="only papers dated on or after: YYYY-MM-DD, or YYYY-MM / YYYY from its first day")] = None,
        date_to: Annotated[str | None, Field(description="only papers dated on or before: YYYY-MM-DD, or YYYY-MM / YYYY to its last day")] = None,
        tags: Annotated[list[str] | None, Field(description="only papers with any of these tags")] = None,
        authors: Annotated[list[str] | None, Field(description="only papers with an author whose name contains any of these")] = None,
        min_score: Annotated[float | None, Field(description="only hits scoring at least this (the mode's scale)")] = None,
        offset: Annotated[int, Field(description=f"skip the best N papers, 0..{MAX_OFFSET} (paging)")] = 0,
    ) -> list[dict[str, Any]]:
        """Find papers that answer a question, best first, each with its best-matching passage as snippet.
        Every hit carries strong_match: false means no paper matches the question well (say so, do not
        present the hits as answers)."""
        try:
            request = SearchRequest.parse(query=query, k=k, mode=mode, language=lang, date_from=date_from,
                                          date_to=date_to, tags=tags or [], authors=authors or [], min_score=min_score,
                                          offset=offset)
            # On the index's thread, where torch's OpenMP team lives (digest_rag.frontends.live).
            return _clean(live.call(lambda index: request.run(index).to_records()))
        except DigestRagError as exc:
            raise _tool_error(exc) from None

    @server.tool()
    def get_paper(id: Annotated[str, Field(description="a paper_id from search_papers")]) -> dict[str, Any]:  # noqa: A002 - the tool's documented argument name
        """One paper whole: titles, date, authors, tags, links and the text of every section (ko and en)."""
        try:
            return _clean(live.call(lambda index: paper_record(find_paper(index, id))))
        except DigestRagError as exc:
            raise _tool_error(exc) from None

    @server.tool()
    def similar_papers(
        id: Annotated[str, Field(description="a paper_id from search_papers")],  # noqa: A002 - as get_paper's
        k: Annotated[int, Field(description=f"number of papers, 1..{MAX_K}")] = 10,
        mode: Annotated[SearchMode, Field(description="hybrid (default), dense (meaning) or lexical (words)")] = "hybrid",
        offset: Annotated[int, Field(description=f"skip the best N papers, 0..{MAX_OFFSET} (paging)")] = 0,
    ) -> list[dict[str, Any]]:
        """More like this: the papers nearest to one paper (found with its own text), best first, itself left out."""
        try:
            request = SimilarRequest.parse(paper_id=id, k=k, mode=mode, offset=offset)
            return _clean(live.call(lambda index: request.run(index).to_records()))
        except DigestRagError as exc:
            raise _tool_error(exc) from None

    return server


def _clean(value: Any) -> Any:
    """A tool's result with every string stripped of control characters (`strip_controls`): an agent shows
    titles and snippets to a person, maybe in a terminal."""
    if isinstance(value, str):
        return strip_controls(value)
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    return value


def _tool_error(exc: DigestRagError) -> ToolError:
    return ToolError(f"{type(exc).__name__}: {' '.join(strip_controls(str(exc)).split())}")


def run_mcp(index_dir: str | Path) -> None:
    """Serve ``index_dir`` over stdio until the client closes the connection (what `digest-rag mcp` does)."""
    live = LiveIndex(index_dir)
    try:
        anyio.run(_run_stdio, create_server(live))
    finally:
        live.close()


async def _run_stdio(server: MCPServer) -> None:
    """`MCPServer.run_stdio_async` with guarded streams: every request is answered (`_Requests`)."""
    with _claimed_stdio() as (wire_in, wire_out):
        out = _Wire(wire_out)
        async with stdio_server(stdin=_Requests(wire_in, out), stdout=out) as (read, write):  # type: ignore[arg-type]
            low = server._lowlevel_server  # noqa: SLF001 - what run_stdio_async runs, on our streams
            await low.run(read, write, low.create_initialization_options())


@contextmanager
def _claimed_stdio() -> Iterator[tuple[BinaryIO, BinaryIO]]:
    """The protocol's stdin and stdout on private descriptors; fd 0 reads /dev/null and fd 1 writes to stderr
    meanwhile, so that no stray print of a library reaches the wire (as the mcp package's own claim does)."""
    sys.stdout.flush()
    wire_in, wire_out = os.dup(0), os.dup(1)
    saved_in, saved_out = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    try:
        os.dup2(devnull, 0)
        os.dup2(2, 1)
        with os.fdopen(wire_in, "rb", buffering=0) as fin, os.fdopen(wire_out, "wb") as fout:
            yield fin, fout
    finally:
        os.dup2(saved_in, 0)
        os.dup2(saved_out, 1)
        for fd in (saved_in, saved_out, devnull):
            os.close(fd)


class _Wire:
    """The protocol's stdout: one whole line per write, one writer at a time, never an encoding error."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._lock = threading.Lock()

    def _write(self, text: str) -> None:
        with self._lock:
            self._raw.write(text.encode("utf-8", "replace"))
            self._raw.flush()

    async def write(self, text: str) -> None:
        await anyio.to_thread.run_sync(self._write, text)

    async def flush(self) -> None:
        return None  # each write is flushed

    async def error(self, request_id: object, code: int, message: str) -> None:
        """A JSON-RPC error response (ids the protocol allows only: string, number, or null)."""
        if not isinstance(request_id, (str, int)) or isinstance(request_id, bool):
            request_id = None
        body = {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}}
        await self.write(json.dumps(body, ensure_ascii=True) + "\n")


class _Requests:
    """Lines of the protocol's stdin, as the mcp package's reader takes them, minus the ones it cannot read.

    The package drops a line it cannot validate without answering it (a lone surrogate such as
    ``\\ud800`` in an argument is valid JSON for Python but not for pydantic), and its client then waits
    forever. Such a line is answered here with a JSON-RPC error naming its id: -32700 when it is not JSON
    at all (id null), -32600 when it is JSON but not a request the server can read. A notification (no
    id) gets no answer, as JSON-RPC says.
    """

    def __init__(self, raw: BinaryIO, out: _Wire) -> None:
        self._raw = raw
        self._out = out

    def __aiter__(self) -> AsyncIterator[str]:
        return self._lines()

    async def _lines(self) -> AsyncIterator[str]:
        while True:
            data = await anyio.to_thread.run_sync(self._raw.readline)
            if not data:
                return
            line = data.decode("utf-8", "replace")
            if not line.strip():
                continue
            try:
                jsonrpc_message_adapter.validate_json(line, by_name=False)
            except ValueError as exc:
                await self._refuse(line, exc)
                continue
            yield line

    async def _refuse(self, line: str, exc: ValueError) -> None:
        try:
            message = json.loads(line)
        except (ValueError, RecursionError):
            await self._out.error(None, PARSE_ERROR, "Parse error: the line is not JSON")
            return
        if isinstance(message, dict) and "id" in message and "method" in message:
            errors = exc.errors() if isinstance(exc, ValidationError) else []
            why = str(errors[0].get("msg", exc)) if errors else str(exc)
            why = " ".join(strip_controls(why).split())[:200].encode("ascii", "backslashreplace").decode()
            await self._out.error(message["id"], INVALID_REQUEST, f"Invalid request: {why}")
