"""Helpers shared by the format parsers (private to the parsing package)."""

from __future__ import annotations

import datetime as _dt
import functools
import re
from collections.abc import Callable, Iterable
from typing import TypeVar

from ..errors import ParseError
from ..models import Language, Section, SectionKind
from ..text import clean_inline, detect_language

T = TypeVar("T")

# Closing brackets and quotes are excluded: digests write "(https://...)" inline.
URL_RE = re.compile(r"https?://[^\s<>\"'()\[\]{}]+")
# "#tag #tag-two #tag_3" and nothing else; "# Heading" (with a space) is not a tag line.
TAG_LINE_RE = re.compile(r"^\s*#[^\s#]+(?:\s+#[^\s#]+)*\s*$")
URL_LINE_RE = re.compile(r"^\s*<?https?://\S+>?\s*$")
# Lines are cut to this many characters before structural patterns look at them: no heading,
# title or byline is longer, and it bounds the work any pattern can do on a hostile line.
MAX_MATCH_LINE = 4096


def guard(func: Callable[[str, str], T]) -> Callable[[str, str], T]:
    """Turn any unexpected exception of a parser into a ParseError.

    The contract is that parsers raise only ParseError on arbitrary text, so a
    bug on odd input becomes a per-file skip instead of aborting a whole corpus.
    """

    @functools.wraps(func)
    def wrapper(text: str, source: str) -> T:
        try:
            return func(text, source)
        except ParseError:
            raise
        except Exception as exc:  # noqa: BLE001 - deliberate: see docstring
            raise ParseError(f"{source}: cannot parse ({type(exc).__name__}: {exc})") from exc

    return wrapper


def safe_score(func: Callable[[str], float]) -> Callable[[str], float]:
    """Clamp a score function to [0, 1] and make it return 0.0 instead of raising."""

    @functools.wraps(func)
    def wrapper(text: str) -> float:
        try:
            value = float(func(text))
        except Exception:  # noqa: BLE001 - a score must never break detection
            return 0.0
        return max(0.0, min(1.0, value))

    return wrapper


def find_urls(text: str) -> list[str]:
    """Every http(s) URL in the text, in order, without duplicates or trailing punctuation."""
    out: list[str] = []
    for m in URL_RE.finditer(text):
        url = m.group(0).rstrip(".,;:!?")
        if url and url not in out:
            out.append(url)
    return out


def is_tag_line(line: str) -> bool:
    """True for a line made only of '#tag' words."""
    return len(line) <= MAX_MATCH_LINE and bool(TAG_LINE_RE.match(line))


def tags_of(line: str) -> list[str]:
    """The tags of a tag line, without '#'."""
    return [t.lstrip("#") for t in line.split() if t.lstrip("#")]


def is_url_line(line: str) -> bool:
    """True for a line holding a single URL and nothing else."""
    return len(line) <= MAX_MATCH_LINE and bool(URL_LINE_RE.match(line))


def merge_unique(*lists: Iterable[str]) -> list[str]:
    """Concatenate lists keeping the first occurrence of each item (linear: a set remembers what is kept)."""
    out: list[str] = []
    seen: set[str] = set()
    for lst in lists:
        for item in lst:
            if item not in seen:
                seen.add(item)
                out.append(item)
    return out


def section(kind: SectionKind, text: str, language: Language | None = None) -> Section | None:
    """A Section with cleaned text and detected language, or None when the text is empty."""
    cleaned = clean_inline(text)
    if not cleaned:
        return None
    return Section(kind=kind, language=language or detect_language(cleaned), text=cleaned)


def make_date(year: int, month: int, day: int) -> _dt.date | None:
    """A date, or None when the numbers do not form one (typos in digests)."""
    try:
        return _dt.date(year, month, day)
    except ValueError:
        return None


def split_authors(text: str) -> list[str]:
    """Split 'A, B (X), C' on top-level commas; parentheses stay with their author."""
    out: list[str] = []
    depth = 0
    cur: list[str] = []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth = max(0, depth - 1)
        if ch == "," and depth == 0:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur))
    return [re.sub(r"\s+", " ", a).strip() for a in out if a.strip()]


def trailing_parenthetical(text: str) -> tuple[str, str] | None:
    """Split 'Title (inner (x) text)' into ('Title', 'inner (x) text') when it ends with a balanced group."""
    s = text.rstrip()
    if not s.endswith(")"):
        return None
    depth = 0
    for i in range(len(s) - 1, -1, -1):
        if s[i] == ")":
            depth += 1
        elif s[i] == "(":
            depth -= 1
            if depth == 0:
                head, inner = s[:i].rstrip(), s[i + 1 : -1].strip()
                return (head, inner) if head and inner else None
    return None
