"""Human-readable search results: query-term highlighting and terminal layout.

Highlighting finds the query's BM25 terms (``digest_rag.analysis.tokenize``)
back in a snippet. Korean words carry particles and endings ("스케일링의",
"법칙을", "학습했다"), so Hangul text is re-analysed with Kiwi and each
morpheme whose form (nouns) or lemma (verbs, adjectives) is a query term is
marked at its exact character offsets; the particle stays unmarked. Latin
words are matched through the same normalisation as the index ("models"
matches "model", "SWE-bench" matches "bench"), and the glossary's English
forms of a Korean query term are marked too ("스케일링 법칙" marks "Scaling Laws").

    >>> from digest_rag.display import highlight
    >>> highlight("스케일링 법칙을 따르는 모델", "스케일링 법칙", style="markdown")  # doctest: +SKIP
    '**스케일링** **법칙**을 따르는 모델'
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from typing import Literal

from .analysis import get_kiwi, tokenize, tokenize_many
from .models import SearchHit

__all__ = [
    "HighlightStyle",
    "display_width",
    "format_hit",
    "format_hits",
    "highlight",
    "match_spans",
    "query_terms",
]

HighlightStyle = Literal["ansi", "markdown", "brackets", "none"]

Span = tuple[int, int]

# Same word shape the analyser uses for Latin text, so spans cover what BM25 matched.
_LATIN_WORD = re.compile(r"[0-9A-Za-z\u00c0-\u024f]+(?:[-.'\u2019][0-9A-Za-z\u00c0-\u024f]+)*")
_HANGUL = re.compile(r"[\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f\u4e00-\u9fff]")
_NOUN_TAGS = frozenset({"NNG", "NNP", "XR", "SH"})
_PRED_TAGS = frozenset({"VV", "VA"})

_ANSI_MATCH = ("\x1b[1;33m", "\x1b[0m")  # bold yellow: readable on dark and light themes
_ANSI_BOLD = ("\x1b[1m", "\x1b[0m")
_ANSI_DIM = ("\x1b[2m", "\x1b[0m")
_MARKS: dict[str, tuple[str, str]] = {
    "ansi": _ANSI_MATCH,
    "markdown": ("**", "**"),
    "brackets": ("[", "]"),
    "none": ("", ""),
}


def query_terms(query: str) -> frozenset[str]:
    """The normalised words of ``query`` that highlighting looks for: BM25's own query terms.

    Where the analyser expands a query through its bilingual glossary
    ("스케일링 법칙" -> "scaling", "law"), the expansions are highlighted too,
    so an English snippet found by a Korean question shows why it matched.
    """
    try:
        from .analysis import query_terms as _bm25_query_terms
    except ImportError:  # an analyser without glossary expansion: the plain tokens
        return frozenset(tokenize(query))
    # Concept tokens ("ml:12") stand for phrases and never occur as words in text.
    return frozenset(t for t in _bm25_query_terms(query) if ":" not in t)


def _latin_spans(text: str, terms: frozenset[str]) -> list[Span]:
    matches = list(_LATIN_WORD.finditer(text))
    if not matches:
        return []
    # Each Latin word alone never reaches Kiwi, so this is a cheap regex pass.
    tokens = tokenize_many([m.group(0) for m in matches])
    return [m.span() for m, toks in zip(matches, tokens, strict=True) if terms.intersection(toks)]


def _korean_spans(text: str, terms: frozenset[str]) -> list[Span]:
    if not _HANGUL.search(text):
        return []
    spans: list[Span] = []
    for t in get_kiwi().tokenize(text):
        tag = str(t.tag).split("-", 1)[0]
        if tag in _NOUN_TAGS:
            hit = t.form in terms
        elif tag in _PRED_TAGS:
            hit = (getattr(t, "lemma", None) or t.form + "다") in terms
        else:
            continue
        if hit and _HANGUL.search(t.form):
            spans.append((int(t.start), int(t.start) + int(t.len)))
    return spans


def _merge(spans: Iterable[Span]) -> list[Span]:
    out: list[Span] = []
    for start, end in sorted(spans):
        if end <= start:
            continue
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def match_spans(text: str, query: str | Iterable[str]) -> list[Span]:
    """Sorted, non-overlapping ``(start, end)`` character spans of query terms in ``text``.

    ``query`` is the question as typed, or an iterable of already-normalised
    terms (as returned by :func:`query_terms`).
    """
    terms = query_terms(query) if isinstance(query, str) else frozenset(query)
    if not terms or not text:
        return []
    return _merge([*_latin_spans(text, terms), *_korean_spans(text, terms)])


def _apply(text: str, spans: Sequence[Span], marks: tuple[str, str], offset: int = 0) -> str:
    """``text`` (which starts at ``offset`` of the text the spans refer to) with spans wrapped in marks."""
    if not spans or marks == ("", ""):
        return text
    out: list[str] = []
    pos = 0
    for start, end in spans:
        s, e = max(start - offset, 0), min(end - offset, len(text))
        if e <= s or s >= len(text):
            continue
        out.append(text[pos:s])
        out.append(marks[0] + text[s:e] + marks[1])
        pos = e
    out.append(text[pos:])
    return "".join(out)


def highlight(text: str, query: str | Iterable[str], style: HighlightStyle = "ansi") -> str:
    """``text`` with every query term marked: ANSI bold colour, ``**markdown**``, ``[brackets]`` or nothing."""
    if style not in _MARKS:
        raise ValueError(f"unknown highlight style {style!r}; choose one of {', '.join(_MARKS)}")
    return _apply(text, match_spans(text, query), _MARKS[style])


def display_width(text: str) -> int:
    """Terminal columns ``text`` takes: Hangul, CJK and full-width characters take two."""
    return sum(2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1 for ch in text)


def _wrap(text: str, width: int) -> list[Span]:
    """Line spans of ``text`` broken at spaces so that each fits ``width`` columns (by display width)."""
    lines: list[Span] = []
    start = 0
    n = len(text)
    while start < n:
        cols = 0
        end = start
        last_space = -1
        while end < n:
            w = display_width(text[end])
            if cols + w > width:
                break
            if text[end] == " ":
                last_space = end
            cols += w
            end += 1
        if end < n and last_space > start:
            end = last_space
        elif end == start:  # a single character wider than the line
            end = start + 1
        lines.append((start, end))
        start = end
        while start < n and text[start] == " ":
            start += 1
    return lines


_SECTION_LABELS = {
    "summary": "summary",
    "abstract": "abstract",
    "commentary": "commentary",
    "key_points": "key points",
    "body": "text",
    "title": "title",
}


def format_hit(hit: SearchHit, rank: int, query: str | Iterable[str], *, color: bool = False,
               width: int = 100) -> str:
    """One hit as a few lines: titles, date/tags/score, then the snippet with query terms marked.

    With ``color`` the title is bold and matches are bold yellow (ANSI); without
    it the output is plain text, safe to pipe or log.
    """
    p = hit.paper
    indent = "    "
    room = max(width - len(indent), 20)
    bold = _ANSI_BOLD if color else ("", "")
    dim = _ANSI_DIM if color else ("", "")
    marks = _ANSI_MATCH if color else ("", "")

    def block(text: str, style: tuple[str, str], spans: Sequence[Span] = ()) -> list[str]:
        # Every line, titles included, fits the width; styles are applied per line so a wrap never splits a code.
        return [indent + style[0] + _apply(text[s:e], spans, marks, offset=s) + style[1] for s, e in _wrap(text, room)]

    lines = block(p.title, bold)
    lines[0] = f"{rank:>2}. " + lines[0][len(indent):]
    if p.title_ko and p.title_ko != p.title:
        lines += block(p.title_ko, ("", ""))
    meta = [p.date.isoformat() if p.date else "no date"]
    if p.tags:
        meta.append(" ".join("#" + t for t in p.tags))
    meta.append(f"score {hit.score:.4f} ({'+'.join(hit.modes) or 'none'})")
    lines += block(" · ".join(meta), dim)
    label = f"[{_SECTION_LABELS.get(hit.section, hit.section)}, {hit.language}] "
    spans = [(s + len(label), e + len(label)) for s, e in match_spans(hit.snippet, query)]
    lines += block(label + hit.snippet, ("", ""), spans)
    return "\n".join(lines)


def format_hits(hits: Sequence[SearchHit], query: str, *, color: bool = False, width: int = 100) -> str:
    """A ranked, readable list of hits (blank line between papers); "no matching papers" when empty."""
    if not hits:
        return "no matching papers"
    terms = query_terms(query)
    return "\n\n".join(format_hit(h, i, terms, color=color, width=width) for i, h in enumerate(hits, 1))
