"""What a search asks for, checked: the query text, k, the mode and the filters.

Every check raises `UsageError` (CLI exit 1) with a sentence saying what was
wrong, before any retriever runs.
"""

from __future__ import annotations

import calendar
import datetime as _dt
import re
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict

from digest_rag.errors import EmptyQueryError, QueryTruncatedWarning, UsageError
from digest_rag.models import CHUNK_KINDS, LANGUAGES, SEARCH_MODES

MAX_QUERY_CHARS = 2_000
#: How many chunks each retriever hands to fusion, at least.
CANDIDATES = 200


def check_mode(mode: Any) -> str:
    """``mode`` if it is one of SEARCH_MODES."""
    if mode not in SEARCH_MODES:
        raise UsageError(f"unknown mode {mode!r}; choose one of {', '.join(SEARCH_MODES)}")
    return str(mode)


def check_k(k: Any) -> int:
    """``k`` as a positive int; strings, floats and booleans are refused, not coerced."""
    if isinstance(k, bool) or not isinstance(k, int):
        raise UsageError(f"k must be a whole number of papers, at least 1 (got {_short(k)})")
    if k < 1:
        raise UsageError(f"k must be at least 1 (got {k})")
    return k


MAX_OFFSET = 1_000
"""Deepest page start: a search ranks ``(offset + k) * 20`` candidate chunks, so the offset is bounded."""


def check_offset(offset: Any) -> int:
    """``offset`` (papers to skip, for paging) as an int in 0..MAX_OFFSET; strings, floats and booleans are refused."""
    if isinstance(offset, bool) or not isinstance(offset, int):
        raise UsageError(f"offset must be a whole number of papers to skip, at least 0 (got {_short(offset)})")
    if not 0 <= offset <= MAX_OFFSET:
        raise UsageError(f"offset must be 0..{MAX_OFFSET} (got {offset})")
    return offset


def clean_query(query: Any) -> str:
    """The query with control characters blanked, cut to MAX_QUERY_CHARS (with a QueryTruncatedWarning)."""
    if not isinstance(query, str) or not query.strip():
        raise EmptyQueryError("the query is empty; ask a question, e.g. \"스케일링 법칙에 대한 논문\"")
    if not query.isprintable():  # (a C scan: most questions have nothing to blank)
        query = "".join(ch if ch.isprintable() or ch in "\n\t" else " " for ch in query)
    query = query.strip()
    if len(query) > MAX_QUERY_CHARS:
        warnings.warn(
            f"query of {len(query)} characters truncated to {MAX_QUERY_CHARS}", QueryTruncatedWarning, stacklevel=3
        )
        query = query[:MAX_QUERY_CHARS]
    if not query:
        raise EmptyQueryError("the query has no printable characters")
    return query


class Filters(BaseModel):
    """Which chunks a search may return: by paper date and tags, by chunk language and section kind."""

    model_config = ConfigDict(frozen=True)

    date_from: _dt.date | None = None
    date_to: _dt.date | None = None
    tags: tuple[str, ...] = ()
    languages: tuple[str, ...] = ()
    sections: tuple[str, ...] = ()
    authors: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        """True when nothing is filtered out."""
        return not (self.date_from or self.date_to or self.tags or self.languages or self.sections or self.authors)


#: What a date filter may say: a day, a month or a year.
DATE_FORMS = "a date like 2024-06-28, a month like 2024-06 or a year like 2024"
_YEAR_OR_MONTH = re.compile(r"(\d{4})(?:-(\d{2}))?")


def period_day(text: str, *, end: bool = False) -> _dt.date:
    """The day a date filter's text means: a day ("2024-06-28") is itself; a month ("2024-06") or a year
    ("2024") is its first day, or with ``end`` its last ("--to 2023" keeps December 2023). ValueError
    for anything else."""
    text = text.strip()
    m = _YEAR_OR_MONTH.fullmatch(text)
    if m is None:
        return _dt.date.fromisoformat(text)
    year = int(m.group(1))
    if m.group(2) is None:
        return _dt.date(year, 12, 31) if end else _dt.date(year, 1, 1)
    month = int(m.group(2))
    if not 1 <= month <= 12:
        raise ValueError(f"no month {month}")
    return _dt.date(year, month, calendar.monthrange(year, month)[1] if end else 1)


def _as_date(value: Any, name: str, *, end: bool = False) -> _dt.date | None:
    if value is None:
        return None
    if isinstance(value, _dt.datetime):  # a date too, but its isoformat() would not compare with dates
        return value.date()
    if isinstance(value, _dt.date):
        return value
    try:
        if not isinstance(value, str):
            raise ValueError(value)
        return period_day(value, end=end)
    except ValueError as exc:
        raise UsageError(f"{name} must be {DATE_FORMS} (got {_short(value)})") from exc


def check_dates(date_from: Any, date_to: Any, names: tuple[str, str] = ("date_from", "date_to"),
                ) -> tuple[_dt.date | None, _dt.date | None]:
    """The two date filters as dates (`period_day`: a month or a year starts ``date_from`` on its first day
    and ends ``date_to`` on its last); a range that ends before it starts matches nothing and is refused.
    ``names`` are what the caller calls them in its messages (the CLI: ``--from``, ``--to``)."""
    start, end = _as_date(date_from, names[0]), _as_date(date_to, names[1], end=True)
    if start is not None and end is not None and start > end:
        raise UsageError(f"{names[0]} {start} is after {names[1]} {end}: no paper can match; swap them")
    return start, end


def _names(value: str | Sequence[str] | None, what: str, allowed: Sequence[str] | None) -> tuple[str, ...]:
    # A lone string is one name, never a sequence of letters ("llm" is the tag llm, not l, l, m).
    if value is None:
        return ()
    if isinstance(value, str):
        names: tuple[Any, ...] = (value,)
    elif isinstance(value, (bytes, bytearray, dict)) or not isinstance(value, Iterable):
        raise UsageError(f"{what} must be a string or a list of strings (got {_short(value)})")
    else:
        names = tuple(value)
    for name in names:
        if not isinstance(name, str):
            raise UsageError(f"{what} must be strings (got {_short(name)})")
        if allowed is not None and name not in allowed:
            raise UsageError(f"unknown {what} {_short(name)}; choose from {', '.join(allowed)}")
    return names


def _short(value: Any) -> str:
    """repr of a caller's value, cut: a hostile 10,000-character value is not echoed whole."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def make_filters(
    date_from: Any = None,
    date_to: Any = None,
    tags: str | Sequence[str] | None = None,
    language: str | Sequence[str] | None = None,
    section: str | Sequence[str] | None = None,
    author: str | Sequence[str] | None = None,
) -> Filters:
    """Check the search filters and return them as `Filters`."""
    authors = tuple(a.strip() for a in _names(author, "author", None))
    if any(not a for a in authors):
        raise UsageError("an author filter is empty; give part of a name, e.g. author=\"Hinton\"")
    start, end = check_dates(date_from, date_to)
    return Filters(
        date_from=start,
        date_to=end,
        tags=_names(tags, "tag", None),
        languages=_names(language, "language", LANGUAGES),
        sections=_names(section, "section", CHUNK_KINDS),
        authors=authors,
    )


def check_min_score(min_score: Any) -> float | None:
    """``min_score`` as a float (None: no minimum); booleans, strings and NaN are refused."""
    if min_score is None:
        return None
    if isinstance(min_score, bool) or not isinstance(min_score, (int, float)) or min_score != min_score:
        raise UsageError(f"min_score must be a number (got {_short(min_score)})")
    return float(min_score)
