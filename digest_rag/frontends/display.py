"""Human-readable search results: highlighting and terminal layout.

Where the query's words are in a text is `digest_rag.search.snippets.match_spans`'s
job; this module only marks those spans (ANSI, markdown, brackets, escaped HTML) and lays
hits out for a terminal, wrapping by display width (Hangul takes two columns).

    >>> from digest_rag.frontends.display import highlight
    >>> highlight("스케일링 법칙을 따르는 모델", "스케일링 법칙", style="markdown")  # doctest: +SKIP
    '**스케일링** **법칙**을 따르는 모델'
"""

from __future__ import annotations

import html
import unicodedata
from collections.abc import Iterable, Sequence
from typing import Literal

from digest_rag.models import Paper, SearchHit
from digest_rag.search.snippets import Highlighter, Span, as_highlighter, match_spans
from digest_rag.text import strip_controls

__all__ = [
    "HighlightStyle",
    "display_width",
    "format_hit",
    "format_hits",
    "format_paper",
    "highlight",
    "as_highlighter",
    "match_spans",
]

HighlightStyle = Literal["ansi", "markdown", "brackets", "html", "none"]

_ANSI_MATCH = ("\x1b[1;33m", "\x1b[0m")  # bold yellow: readable on dark and light themes
_ANSI_BOLD = ("\x1b[1m", "\x1b[0m")
_ANSI_DIM = ("\x1b[2m", "\x1b[0m")
_MARKS: dict[str, tuple[str, str]] = {
    "ansi": _ANSI_MATCH,
    "markdown": ("**", "**"),
    "brackets": ("[", "]"),
    "html": ("<mark>", "</mark>"),
    "none": ("", ""),
}


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


def _apply_html(text: str, spans: Sequence[Span]) -> str:
    """``text`` HTML-escaped, with spans wrapped in ``<mark>``: safe to insert into a page as markup."""
    out: list[str] = []
    pos = 0
    for start, end in spans:
        out.append(html.escape(text[pos:start]))
        out.append("<mark>" + html.escape(text[start:end]) + "</mark>")
        pos = end
    out.append(html.escape(text[pos:]))
    return "".join(out)


def highlight(text: str, query: str | Highlighter | Iterable[str], style: HighlightStyle = "ansi") -> str:
    """``text`` with every query term marked: ANSI bold colour, ``**markdown**``, ``[brackets]``, HTML or nothing.

    ``style="html"`` escapes the text (``<``, ``&``, quotes) and wraps matches in
    ``<mark>``, so the result can be inserted into a page as it is.
    """
    if style not in _MARKS:
        raise ValueError(f"unknown highlight style {style!r}; choose one of {', '.join(_MARKS)}")
    spans = match_spans(text, as_highlighter(query))
    if style == "html":
        return _apply_html(text, spans)
    return _apply(text, spans, _MARKS[style])


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


def format_hit(hit: SearchHit, rank: int, query: Highlighter | Iterable[str], *, color: bool = False,
               width: int = 100) -> str:
    """One hit as a few lines: titles, date/tags/score, then the snippet with query terms marked.

    With ``color`` the title is bold and matches are bold yellow (ANSI); without
    it the output is plain text, safe to pipe or log.
    """
    p = hit.paper
    # Corpus text is stripped of control characters before any colour code is added (strip_controls).
    title, title_ko, snippet = strip_controls(p.title), strip_controls(p.title_ko or ""), strip_controls(hit.snippet)
    indent = "    "
    room = max(width - len(indent), 20)
    bold = _ANSI_BOLD if color else ("", "")
    dim = _ANSI_DIM if color else ("", "")
    marks = _ANSI_MATCH if color else ("", "")

    def block(text: str, style: tuple[str, str], spans: Sequence[Span] = ()) -> list[str]:
        # Every line, titles included, fits the width; styles are applied per line so a wrap never splits a code.
        return [indent + style[0] + _apply(text[s:e], spans, marks, offset=s) + style[1] for s, e in _wrap(text, room)]

    lines = block(title, bold)
    lines[0] = f"{rank:>2}. " + lines[0][len(indent):]
    if title_ko and title_ko != title:
        lines += block(title_ko, ("", ""))
    meta = [p.date.isoformat() if p.date else "no date"]
    if p.tags:
        meta.append(" ".join("#" + t for t in p.tags))
    meta.append(f"score {hit.score:.4f} ({'+'.join(hit.modes) or 'none'})")
    lines += block(strip_controls(" · ".join(meta)), dim)
    label = f"[{_SECTION_LABELS.get(hit.section, hit.section)}, {hit.language}] "
    # Spans cost a Kiwi pass over the snippet: only worth it when they will be coloured.
    spans = [(s + len(label), e + len(label)) for s, e in match_spans(snippet, query)] if color else []
    lines += block(label + snippet, ("", ""), spans)
    return "\n".join(lines)


#: The line below results whose top hit matches the question only loosely (`SearchResults.strong_match` False).
NO_STRONG_MATCH = "no strong match: 질문에 잘 맞는 논문이 없습니다; these are the closest papers"


def format_hits(hits: Sequence[SearchHit], query: str | Highlighter | None = None, *, color: bool = False,
                width: int = 100, start: int = 1) -> str:
    """A ranked, readable list of hits (blank line between papers), numbered from ``start`` (a later page
    starts after the papers before it); "no matching papers" when empty; the `NO_STRONG_MATCH` line after
    them when the search found no strong match.

    Terms are marked as the search analysed them (`SearchResults.highlighter`), else as ``query`` gives them
    (an empty one marks nothing).
    """
    if not hits:
        return "no matching papers"
    found = getattr(hits, "highlighter", None)
    terms = found if found is not None else as_highlighter(query or "")
    text = "\n\n".join(format_hit(h, i, terms, color=color, width=width) for i, h in enumerate(hits, start))
    if getattr(hits, "strong_match", None) is False:  # SearchResults say so; a plain list of hits says nothing
        # Last, where a terminal leaves it on screen after the list scrolled by.
        return text + "\n\n" + NO_STRONG_MATCH
    return text


def format_paper(paper: Paper, *, width: int = 100) -> str:
    """A whole paper as plain text: titles, date, authors, tags, links, then every section under its label."""
    indent = "    "
    room = max(width - len(indent), 20)

    def block(text: str) -> list[str]:
        return [indent + text[s:e] for s, e in _wrap(text, room)] or [indent]

    lines = [paper.title]
    if paper.title_ko and paper.title_ko != paper.title:
        lines.append(paper.title_ko)
    meta = [paper.date.isoformat() if paper.date else "no date", f"id {paper.id}"]
    if paper.tags:
        meta.append(" ".join("#" + t for t in paper.tags))
    lines.append(" · ".join(meta))
    if paper.authors:
        lines.append(", ".join(paper.authors))
    lines += paper.urls
    for section in paper.sections:
        lines.append("")
        lines.append(f"[{_SECTION_LABELS.get(section.kind, section.kind)}, {section.language}]")
        for para in section.text.splitlines():
            if para.strip():
                lines += block(para.strip())
    return strip_controls("\n".join(lines))
