"""Checking what a caller passes to `DigestIndex.search`: filters and k, normalised or refused.

Python accepts anything as an argument, so every search option is checked
here once and turned into a `SearchFilters` (or a UsageError naming the
option) before it reaches SQL, BM25 or FAISS. Without this, ``tags="llm"``
was read letter by letter and matched nothing, ``section="sumary"`` silently
matched nothing, and ``k="5"`` raised a bare TypeError.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable, Sequence
from typing import Any, get_args

import numpy as np
from pydantic import BaseModel, ConfigDict

from .errors import UsageError
from .models import LANGUAGES, ChunkKind

#: The section kinds a search can be restricted to: those of chunks, including the title passage.
SEARCH_SECTIONS: tuple[str, ...] = get_args(ChunkKind)


class SearchFilters(BaseModel):
    """The filters of one search, checked: dates, tags (any of), languages and section kinds of the matched text."""

    model_config = ConfigDict(frozen=True)

    date_from: _dt.date | None = None
    date_to: _dt.date | None = None
    tags: tuple[str, ...] = ()
    languages: tuple[str, ...] = ()
    sections: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        """True when nothing is filtered."""
        return not (self.date_from or self.date_to or self.tags or self.languages or self.sections)


def check_k(k: Any) -> int:
    """``k`` as a positive int; a float, a string or a bool is a UsageError, not a TypeError later."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise UsageError(f"k must be a whole number of results, like 5 (got {k!r})")
    if k < 1:
        raise UsageError(f"k must be at least 1 (got {k})")
    return int(k)


def search_filters(
    date_from: Any = None,
    date_to: Any = None,
    tags: str | Iterable[str] | None = None,
    language: str | Iterable[str] | None = None,
    section: str | Iterable[str] | None = None,
) -> SearchFilters:
    """Check and normalise search filters; raise UsageError naming the first bad one.

    Dates may be `datetime.date` or ISO strings. ``tags``, ``language`` and
    ``section`` take one string (one value, never its letters) or a sequence
    of strings; languages must be ko, en or mixed, sections one of
    SEARCH_SECTIONS.
    """
    return SearchFilters(
        date_from=_as_date(date_from, "date_from"),
        date_to=_as_date(date_to, "date_to"),
        tags=_as_strings(tags, "tags"),
        languages=_as_choices(language, "language", LANGUAGES),
        sections=_as_choices(section, "section", SEARCH_SECTIONS),
    )


def _as_date(value: Any, name: str) -> _dt.date | None:
    if value is None or (isinstance(value, _dt.date) and not isinstance(value, _dt.datetime)):
        return value
    if isinstance(value, _dt.datetime):
        return value.date()
    if not isinstance(value, str):
        raise UsageError(f"{name} must be a date like 2024-06-28 (got {_short(value)})")
    try:
        return _dt.date.fromisoformat(value.strip())
    except ValueError as exc:
        raise UsageError(f"{name} must be a date like 2024-06-28 (got {_short(value)})") from exc


def _as_strings(value: str | Iterable[str] | None, name: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)  # one tag, not its letters
    if isinstance(value, (bytes, bytearray, dict)) or not isinstance(value, Iterable):
        raise UsageError(f"{name} must be a string or a list of strings (got {_short(value)})")
    items = tuple(value)
    bad = [v for v in items if not isinstance(v, str)]
    if bad:
        raise UsageError(f"{name} must be strings (got {_short(bad[0])})")
    return items


def _as_choices(value: str | Iterable[str] | None, name: str, allowed: Sequence[str]) -> tuple[str, ...]:
    items = _as_strings(value, name)
    for v in items:
        if v not in allowed:
            raise UsageError(f"unknown {name} {_short(v)}; choose {', '.join(allowed[:-1])} or {allowed[-1]}")
    return items


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
