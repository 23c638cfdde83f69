"""`digest-rag mcp`: the index as MCP tools over stdio, for LLM agents (official `mcp` package, extra [mcp]).

Tools:

- ``search_papers(query, k, mode, lang, date_from, date_to, tags)`` -> the hits as
  ``search --json`` records (rank, paper_id, titles, date, tags, urls, score, snippet, ...);
- ``get_paper(id)`` -> one paper with all its sections.

Arguments are validated with the same limits as ``serve`` (``k`` <= 100, a query
of at most 2,000 characters, ISO dates); a bad one is a tool error naming the
typed error (``UsageError: …``), which the agent reads and can correct. Only the
protocol goes to stdout; warnings and logs go to stderr. The index follows new
generations written by build/update (:class:`~digest_rag.frontends.live.LiveIndex`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import Field

try:
    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.exceptions import ToolError
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError("digest-rag mcp needs the 'mcp' extra: pip install \"digest-rag[mcp]\"") from exc

from digest_rag.version import __version__
from digest_rag.errors import DigestRagError
from digest_rag.frontends.live import LiveIndex
from digest_rag.models import Language, SearchMode
from digest_rag.frontends.service import MAX_K, MAX_QUERY_CHARS, SearchRequest, find_paper, paper_record

__all__ = ["create_server", "run_mcp"]

INSTRUCTIONS = (
    "Search a collection of machine-learning papers summarised in Korean and English digests. "
    "Ask search_papers in Korean or English (it matches across the two languages); each hit has the paper's "
    "English and Korean titles, date, tags, links and the best-matching passage. Call get_paper with a hit's "
    "paper_id for the paper's whole text."
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
        date_from: Annotated[str | None, Field(description="only papers dated on or after, YYYY-MM-DD")] = None,
        date_to: Annotated[str | None, Field(description="only papers dated on or before, YYYY-MM-DD")] = None,
        tags: Annotated[list[str] | None, Field(description="only papers with any of these tags")] = None,
        authors: Annotated[list[str] | None, Field(description="only papers with an author whose name contains any of these")] = None,
        min_score: Annotated[float | None, Field(description="only hits scoring at least this (the mode's scale)")] = None,
    ) -> list[dict[str, Any]]:
        """Find papers that answer a question, best first, each with its best-matching passage as snippet.
        Every hit carries strong_match: false means no paper matches the question well (say so, do not
        present the hits as answers)."""
        try:
            request = SearchRequest.parse(query=query, k=k, mode=mode, language=lang, date_from=date_from,
                                          date_to=date_to, tags=tags or [], authors=authors or [], min_score=min_score)
            # On the index's thread, where torch's OpenMP team lives (digest_rag.frontends.live).
            return live.call(lambda index: request.run(index).to_records())
        except DigestRagError as exc:
            raise ToolError(f"{type(exc).__name__}: {' '.join(str(exc).split())}") from None

    @server.tool()
    def get_paper(id: Annotated[str, Field(description="a paper_id from search_papers")]) -> dict[str, Any]:  # noqa: A002 - the tool's documented argument name
        """One paper whole: titles, date, authors, tags, links and the text of every section (ko and en)."""
        try:
            return live.call(lambda index: paper_record(find_paper(index, id)))
        except DigestRagError as exc:
            raise ToolError(f"{type(exc).__name__}: {' '.join(str(exc).split())}") from None

    return server


def run_mcp(index_dir: str | Path) -> None:
    """Serve ``index_dir`` over stdio until the client closes the connection (what `digest-rag mcp` does)."""
    live = LiveIndex(index_dir)
    try:
        create_server(live).run()
    finally:
        live.close()
