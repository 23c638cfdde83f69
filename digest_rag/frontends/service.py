"""What `serve`, `mcp` and `shell` share: validated search requests and paper records.

The three front ends are thin layers over :class:`~digest_rag.index.DigestIndex`;
this module holds the one definition of their request limits and of the JSON a
paper becomes, so that an HTTP client, an MCP agent and a person at the shell
get the same answers and the same errors for the same input.

    >>> from digest_rag.frontends.service import SearchRequest
    >>> SearchRequest(query="스케일링 법칙", k=5, mode="lexical").k
    5
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from digest_rag.errors import UsageError
from digest_rag.index import DigestIndex
from digest_rag.lexical.terms import QueryTerms
from digest_rag.models import Language, Paper, SearchMode, SearchResults
from digest_rag.search.request import (
    DATE_FORMS,
    MAX_OFFSET,
    MAX_QUERY_CHARS,
    period_day,
)

__all__ = [
    "MAX_K",
    "MAX_OFFSET",
    "MAX_QUERY_CHARS",
    "MAX_QUERY_TERMS",
    "SearchOptions",
    "SearchRequest",
    "SimilarRequest",
    "check_query_terms",
    "find_paper",
    "paper_record",
    "usage_error",
]

MAX_K = 100
"""Most papers one request may ask for: bounds the work (and the response size) of a single request."""


MAX_QUERY_TERMS = 64
"""Most analysed terms (BM25 tokens) one question may have: a question's cost grows with its terms (lookups,
scoring, and highlighting every snippet), and a 2,000-character paste has hundreds. Real questions have a few."""

MAX_PAPER_ID_CHARS = 1_000
MAX_TAGS = 20
MAX_TAG_CHARS = 100


def usage_error(exc: ValidationError) -> UsageError:
    """A pydantic validation failure as one readable line, typed as the library's UsageError."""
    parts = []
    for err in exc.errors():
        where = ".".join(str(x) for x in err.get("loc", ()) if x != "__root__")
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"{where}: {msg}" if where else msg)
    return UsageError("; ".join(parts) or "invalid request")


class SearchOptions(BaseModel):
    """Search settings without the question: what the shell keeps between questions."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    k: int = Field(default=10, ge=1, le=MAX_K, description=f"number of papers, 1..{MAX_K}")
    mode: SearchMode = "hybrid"
    language: Language | None = Field(default=None, description="only matches in ko, en or mixed text")
    date_from: _dt.date | None = Field(default=None, description="only papers dated on or after (YYYY-MM-DD; YYYY-MM or YYYY: from its first day)")
    date_to: _dt.date | None = Field(default=None, description="only papers dated on or before (YYYY-MM-DD; YYYY-MM or YYYY: to its last day)")
    tags: list[str] = Field(default_factory=list, max_length=MAX_TAGS, description="only papers with any of these tags")
    authors: list[str] = Field(default_factory=list, max_length=MAX_TAGS,
                               description="only papers with an author whose name contains any of these")
    min_score: float | None = Field(default=None, allow_inf_nan=False,
                                    description="only hits scoring at least this (the mode's scale)")

    @field_validator("date_from", "date_to", mode="before")
    @classmethod
    def _iso_date(cls, v: Any, info: ValidationInfo) -> Any:
        # A day, a month or a year (`request.period_day`): pydantic would also take timestamps and
        # datetimes, which nobody means here.
        if v is None or v == "" or isinstance(v, _dt.date):
            return v or None
        try:
            return period_day(str(v), end=info.field_name == "date_to")
        except ValueError:
            raise ValueError(f"must be {DATE_FORMS} (got {str(v)[:40]!r})") from None

    @field_validator("tags", mode="before")
    @classmethod
    def _tags(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = [v]
        tags = [t.strip().lstrip("#") for t in (v or []) if isinstance(t, str) and t.strip().lstrip("#")]
        if any(len(t) > MAX_TAG_CHARS for t in tags):
            raise ValueError(f"a tag has at most {MAX_TAG_CHARS} characters")
        return tags

    @field_validator("authors", mode="before")
    @classmethod
    def _authors(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = [v]
        authors = [a.strip() for a in (v or []) if isinstance(a, str) and a.strip()]
        if any(len(a) > MAX_TAG_CHARS for a in authors):
            raise ValueError(f"an author name has at most {MAX_TAG_CHARS} characters")
        return authors

    @model_validator(mode="after")
    def _date_range(self) -> SearchOptions:
        if self.date_from is not None and self.date_to is not None and self.date_from > self.date_to:
            raise ValueError(f"from {self.date_from} is after to {self.date_to}: no paper can match; swap them")
        return self

    @classmethod
    def parse(cls, **values: Any) -> SearchOptions:
        """Validated options; bad values raise UsageError (one line) instead of pydantic's report."""
        try:
            return cls(**values)
        except ValidationError as exc:
            raise usage_error(exc) from None

    def changed(self, **values: Any) -> SearchOptions:
        """A copy with some settings changed, validated (UsageError on a bad value)."""
        return type(self).parse(**{**self.model_dump(), **values})


class SearchRequest(SearchOptions):
    """One question with its settings, validated against the limits every front end applies."""

    query: str = Field(max_length=MAX_QUERY_CHARS, description=f"the question, at most {MAX_QUERY_CHARS} characters")
    offset: int = Field(default=0, ge=0, le=MAX_OFFSET, description="skip the best N papers (paging)")

    def run(self, index: DigestIndex) -> SearchResults:
        """Ask ``index``; an empty query raises EmptyQueryError, bad filters or too many terms UsageError."""
        terms = index.analyse(self.query)  # once: counted here, then searched with
        check_query_terms(terms)
        return index.search(
            terms, k=self.k, mode=self.mode, language=self.language, date_from=self.date_from,
            date_to=self.date_to, tags=self.tags or None, author=self.authors or None, min_score=self.min_score,
            offset=self.offset,
        )


class SimilarRequest(SearchOptions):
    """"More like this" for one paper, with the settings and limits of a search."""

    paper_id: str = Field(min_length=1, max_length=MAX_PAPER_ID_CHARS, description="the paper's id")
    offset: int = Field(default=0, ge=0, le=MAX_OFFSET, description="skip the best N papers (paging)")

    def run(self, index: DigestIndex) -> SearchResults:
        """Ask ``index`` for the papers nearest to ``paper_id``; PaperNotFoundError when it has none."""
        return index.similar(
            self.paper_id, k=self.k, mode=self.mode, language=self.language, date_from=self.date_from,
            date_to=self.date_to, tags=self.tags or None, offset=self.offset,
        )


def check_query_terms(query: QueryTerms) -> int:
    """How many terms the analyser made of the question (its own tokens, repeats counted, not their expansions);
    UsageError when more than MAX_QUERY_TERMS.

    Counted on the analysed tokens, not characters: 2,000 Hangul characters may be five terms or five hundred.
    """
    terms = len(query.tokens)
    if terms > MAX_QUERY_TERMS:
        raise UsageError(f"the query has {terms} terms; at most {MAX_QUERY_TERMS} are allowed (ask a shorter question)")
    return terms


def paper_record(paper: Paper) -> dict[str, Any]:
    """A paper as JSON-ready data: id, titles, date, authors, tags, urls, source and every section's text."""
    return {"paper_id": paper.id, **paper.model_dump(mode="json", exclude={"id"})}


def find_paper(index: DigestIndex, paper_id: str) -> Paper:
    """The paper with id ``paper_id``; PaperNotFoundError when the index has none (`DigestIndex.get`)."""
    return index.get(paper_id)
