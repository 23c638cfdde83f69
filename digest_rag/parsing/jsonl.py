"""JSON Lines: one paper object per line.

Schema: ``title`` (required), ``title_ko``, ``authors`` (list or comma string),
``date`` (YYYY-MM-DD), ``url`` or ``urls``, ``tags`` (list or space/comma
string, '#' stripped), ``id`` (optional, else derived), and text fields named
``<kind>`` or ``<kind>_<lang>`` with kind in summary/abstract/commentary/
key_points/body and lang in en/ko/mixed (no suffix: language detected).
"""

from __future__ import annotations

import datetime as _dt
import json
import re
from collections.abc import Iterator
from typing import Any, cast

from ..errors import ParseError
from ..models import Language, Paper, Section, SectionKind
from ..text import arxiv_ids, make_paper_id
from ._util import guard, safe_score, section

_SECTION_KEY_RE = re.compile(r"^(summary|abstract|commentary|key_points|body)(?:_(en|ko|mixed))?$")


def _str_list(value: Any, field: str, split_re: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        items = re.split(split_re, value)
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        items = value
    else:
        raise ValueError(f"'{field}' must be a string or a list of strings")
    return [s.strip() for s in items if s.strip()]


def _check_unicode(obj: Any, where: str = "") -> None:
    """Refuse strings that cannot be written as UTF-8 (lone surrogates from '\\ud800' escapes).

    json.loads accepts such escapes, but SQLite, JSON output and terminals cannot encode the
    result; refusing the record here keeps that text out of everything downstream.
    """
    if isinstance(obj, str):
        try:
            obj.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError(
                f"{where or 'a value'} holds text that is not valid Unicode (lone surrogate {obj[exc.start]!r})"
            ) from None
    elif isinstance(obj, dict):
        for key, value in obj.items():
            _check_unicode(key, "a key")
            _check_unicode(value, f"'{key}'")
    elif isinstance(obj, list):
        for value in obj:
            _check_unicode(value, where)


def _record(obj: Any, source: str) -> Paper:
    """One JSON object -> Paper; ValueError explains what is wrong."""
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    _check_unicode(obj)
    title = obj.get("title")
    if not isinstance(title, str) or not title.strip():
        raise ValueError("missing or empty 'title'")
    title = title.strip()
    title_ko = obj.get("title_ko")
    if title_ko is not None and not isinstance(title_ko, str):
        raise ValueError("'title_ko' must be a string")
    date: _dt.date | None = None
    if obj.get("date"):
        try:
            date = _dt.date.fromisoformat(str(obj["date"])[:10])
        except ValueError as exc:
            raise ValueError(f"bad 'date' {obj['date']!r} (want YYYY-MM-DD)") from exc
    authors = _str_list(obj.get("authors"), "authors", r",")
    tags = [t.lstrip("#") for t in _str_list(obj.get("tags"), "tags", r"[\s,]+")]
    tags = [t for t in dict.fromkeys(tags) if t]
    urls = _str_list(obj.get("urls"), "urls", r"\s+")
    if isinstance(obj.get("url"), str) and obj["url"].strip():
        urls = [obj["url"].strip()] + [u for u in urls if u != obj["url"].strip()]
    sections: list[Section] = []
    for key, value in obj.items():
        m = _SECTION_KEY_RE.match(key)
        if not m or value is None:
            continue
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            value = "\n".join(value)
        if not isinstance(value, str):
            raise ValueError(f"'{key}' must be a string")
        sec = section(cast(SectionKind, m.group(1)), value, cast(Language, m.group(2)) if m.group(2) else None)
        if sec is not None:
            sections.append(sec)
    pid = obj.get("id")
    if pid is not None and (not isinstance(pid, str) or not pid.strip()):
        raise ValueError("'id' must be a non-empty string")
    if not pid:
        ids = arxiv_ids(" ".join(urls))
        pid = make_paper_id(title, date, ids[0] if ids else None)
    return Paper(
        id=pid.strip(),
        title=title,
        title_ko=title_ko.strip() if title_ko and title_ko.strip() else None,
        authors=authors,
        date=date,
        tags=tags,
        urls=urls,
        format="jsonl",
        source=source,
        sections=sections,
    )


@guard
def parse(text: str, source: str) -> list[Paper]:
    """Papers of a JSONL file; the first bad line raises ParseError('<source>: line N: ...')."""
    return list(iter_parse(text, source))


def _lines(text: str) -> Iterator[str]:
    """The lines of ``text`` one at a time (``str.split`` would copy a 400 MB file into a million strings)."""
    start = 0
    while start <= len(text):
        end = text.find("\n", start)
        if end < 0:
            end = len(text)
        yield text[start:end]
        start = end + 1


def iter_parse(text: str, source: str) -> Iterator[Paper]:
    """`parse` one record at a time: a build streams a million-line file instead of holding its papers.

    Raises ParseError, like `parse`, from the iteration: at the first bad line, or at the end for a
    file without records. Any other error of a record is a ParseError too (see `guard`).
    """
    any_record = False
    for n, line in enumerate(_lines(text), start=1):
        if not line.strip():
            continue
        try:
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ParseError(f"{source}: line {n}: invalid JSON ({exc.msg})") from exc
            try:
                paper = _record(obj, source)
            except ValueError as exc:
                raise ParseError(f"{source}: line {n}: {exc}") from exc
        except ParseError:
            raise
        except Exception as exc:  # noqa: BLE001 - as `guard` does: a bug on odd input skips the file
            raise ParseError(f"{source}: cannot parse ({type(exc).__name__}: {exc})") from exc
        any_record = True
        yield paper
    if not any_record:
        raise ParseError(f"{source}: no JSON records")


@safe_score
def score(text: str) -> float:
    """Share of the first non-empty lines that are JSON objects with a title (0..1)."""
    lines = [ln for ln in text.split("\n") if ln.strip()][:20]
    if not lines:
        return 0.0
    good = 0
    for ln in lines:
        try:
            obj = json.loads(ln)
        except ValueError:
            continue
        if isinstance(obj, dict) and "title" in obj:
            good += 1
    return good / len(lines)
