"""Daily digest: a date line, then per paper title, "(authors)", abstract, commentary, "#tags".

Layout (one paper)::

    Gemma 2: Improving Open Language Models at a Practical Size
    (Gemma Team, Google DeepMind)
    In this work, we introduce Gemma 2 ...        <- English abstract, may span lines
    Gemma 2가 나왔습니다. ...                       <- Korean commentary, one or more lines
    #llm #distillation                             <- ends the paper

arXiv links inside the commentary cite *other* papers, so they never become the
paper's id; only a link on the title line does.
"""

from __future__ import annotations

import datetime as _dt
import re

from ..errors import ParseError
from ..models import Paper, Section
from ..text import arxiv_ids, detect_language, has_hangul, make_paper_id
from ._util import URL_RE, find_urls, guard, is_tag_line, make_date, safe_score, section, split_authors, tags_of

_DATE_RE = re.compile(r"^\s*(\d{4})\s*년\s*(\d{1,2})\s*월\s*(\d{1,2})\s*일\s*$")


def _is_authors_line(line: str) -> bool:
    """'(Name, Name, ...)': a whole line in parentheses, without Hangul."""
    s = line.strip()
    return len(s) > 2 and s.startswith("(") and s.endswith(")") and not has_hangul(s)


def _is_title_candidate(line: str) -> bool:
    s = line.strip()
    return bool(s) and not has_hangul(s) and not is_tag_line(s) and not _is_authors_line(s) and len(s) < 400


def _is_korean(line: str) -> bool:
    """Commentary starts at the first line that is mostly Korean."""
    return has_hangul(line) and detect_language(line) != "en"


def file_date(text: str) -> _dt.date | None:
    """The digest date from its first non-empty line ('2024년 6월 28일')."""
    for line in text.split("\n")[:5]:
        if line.strip():
            m = _DATE_RE.match(line)
            return make_date(int(m.group(1)), int(m.group(2)), int(m.group(3))) if m else None
    return None


@guard
def parse(text: str, source: str) -> list[Paper]:
    """Papers of a daily digest; raises ParseError when no "title / (authors)" pair is found."""
    lines = [ln.rstrip() for ln in text.split("\n")]
    date = file_date(text)
    starts = [
        i - 1
        for i in range(1, len(lines))
        if _is_authors_line(lines[i]) and _is_title_candidate(lines[i - 1]) and not _DATE_RE.match(lines[i - 1])
    ]
    if not starts:
        raise ParseError(f"{source}: no daily digest entries (title line followed by '(authors)')")
    papers: list[Paper] = []
    for n, start in enumerate(starts):
        end = starts[n + 1] if n + 1 < len(starts) else len(lines)
        title_line = lines[start].strip()
        own_urls = find_urls(title_line)
        title = URL_RE.sub("", title_line).strip(" -–|") or title_line
        authors = split_authors(lines[start + 1].strip()[1:-1])
        abstract: list[str] = []
        commentary: list[str] = []
        tags: list[str] = []
        in_commentary = False
        for line in lines[start + 2 : end]:
            s = line.strip()
            if not s:
                continue
            if is_tag_line(s):
                tags.extend(tags_of(s))
                break  # the tag line ends the paper; anything after is not its text
            if not in_commentary and _is_korean(s):
                in_commentary = True
            (commentary if in_commentary else abstract).append(s)
        sections: list[Section] = []
        # Abstract lines break at odd places (copied from PDFs), so they are re-joined with spaces.
        for sec in (
            section("abstract", " ".join(abstract)),
            section("commentary", "\n".join(commentary)),
        ):
            if sec is not None:
                sections.append(sec)
        # Only title-line links are the paper's own; commentary links cite other work.
        urls = own_urls
        ids = arxiv_ids(" ".join(own_urls))
        papers.append(
            Paper(
                id=make_paper_id(title, date, ids[0] if ids else None),
                title=title,
                authors=authors,
                date=date,
                tags=list(dict.fromkeys(tags)),
                urls=urls,
                format="daily",
                source=source,
                sections=sections,
            )
        )
    return papers


@safe_score
def score(text: str) -> float:
    """How much the text looks like a daily digest (0..1)."""
    lines = text.split("\n")
    value = 0.0
    if file_date(text) is not None:
        value += 0.45
    pairs = sum(
        1 for i in range(1, len(lines)) if _is_authors_line(lines[i]) and _is_title_candidate(lines[i - 1])
    )
    tag_lines = sum(1 for ln in lines if is_tag_line(ln))
    if pairs:
        value += 0.25 + min(0.1, 0.02 * pairs)
    if tag_lines:
        value += min(0.2, 0.05 * tag_lines)
    return value
