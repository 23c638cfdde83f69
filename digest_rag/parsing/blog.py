"""Blog post copied from a Tistory-like page: a Korean walkthrough of one paper.

The post text is wrapped in site chrome that must not be indexed: the calendar
table and tag cloud at the top, the site name and "<title> 본문" header, and the
"'<category>' 카테고리의 다른 글" related-posts table at the bottom. The body
alternates English sentences of the paper with their Korean translation and
commentary; it becomes one English and one Korean/mixed body section.
"""

from __future__ import annotations

import datetime as _dt
import re

from ..errors import ParseError
from ..models import Paper, Section
from ..text import arxiv_ids, detect_language, has_hangul, make_paper_id
from ._util import MAX_MATCH_LINE, find_urls, guard, make_date, safe_score, section

# "<post title> 본문" (the page header). Lines are cut to MAX_MATCH_LINE first, and the pattern
# has no lazy group before the whitespace run: "(.+?)\s+본문" was quadratic on long runs of spaces.
_HEADER_RE = re.compile(r"^(?P<title>.*\S)\s+본문\s*$")
_BYLINE_RE = re.compile(
    r"^(?P<author>[^\s\d][^\s]{0,30})\s+(?P<y>\d{4})\.\s*(?P<m>\d{1,2})\.\s*(?P<d>\d{1,2})\.?\s*(?:\d{1,2}:\d{2})?\s*(?P<rest>.*)$"
)
_DATE_ANY_RE = re.compile(r"(\d{4})\.\s*(\d{1,2})\.\s*(\d{1,2})\.")
_RELATED_RE = re.compile(r"카테고리의 다른 글\s*$")
_WEEKDAYS_RE = re.compile(r"^\s*일\s*\|\s*월\s*\|\s*화\s*\|")
# Calendar rows: only digits, pipes, dashes and spaces ("1 | 2 | 3 |", "---|---|").
_TABLE_ROW_RE = re.compile(r"^[\s\d\-:]*\|[\s\d|\-:]*$")  # the first run excludes '|': no backtracking over pipes
_COUNTER_RE = re.compile(r"^\s*-\s*(Today|Total|Yesterday)\b.*$", re.I)


def _is_calendar_line(line: str) -> bool:
    line = line[:MAX_MATCH_LINE]
    return bool(_WEEKDAYS_RE.match(line) or _TABLE_ROW_RE.match(line))


def _header(line: str) -> re.Match[str] | None:
    return _HEADER_RE.match(line.strip()[:MAX_MATCH_LINE])


def _english_title(post_title: str) -> str:
    """'LLaMA: ... Models를 알아보자 - 1편, Introduction' -> 'LLaMA: ... Models'.

    Korean post titles wrap the paper title in a Korean tail; the paper title is
    the text before the first Hangul character when that prefix is substantial.
    """
    m = re.search(r"[\uac00-\ud7a3]", post_title)
    if m:
        head = post_title[: m.start()].strip(" -–:,([")
        if len(re.findall(r"[A-Za-z]", head)) >= 3:
            return head
    return post_title.strip()


def _find_header(lines: list[str]) -> int | None:
    for i, line in enumerate(lines):
        if _header(line):
            return i
    return None


def _strip_top_chrome(lines: list[str]) -> list[str]:
    """Without a '... 본문' header: drop the calendar rows and the tag cloud up to '- Total'."""
    last_counter = max((i for i, ln in enumerate(lines[:200]) if _COUNTER_RE.match(ln[:MAX_MATCH_LINE])), default=-1)
    out = lines[last_counter + 1 :]
    return [ln for ln in out if not _is_calendar_line(ln)]


@guard
def parse(text: str, source: str) -> list[Paper]:
    """The single paper of a blog post; raises ParseError when no post body is found."""
    lines = [ln.rstrip() for ln in text.split("\n")]
    header = _find_header(lines)
    author: str | None = None
    date: _dt.date | None = None
    if header is not None:
        hm = _header(lines[header])
        assert hm is not None
        post_title = hm.group("title").strip()
        body = lines[header + 1 :]
    else:
        body = _strip_top_chrome(lines)
        first = next((ln.strip() for ln in body if ln.strip()), "")
        if not first:
            raise ParseError(f"{source}: empty blog post")
        post_title = first
    # Related posts and everything after them are site chrome.
    for i, line in enumerate(body):
        if _RELATED_RE.search(line.strip()):
            body = body[:i]
            break
    content: list[str] = []
    title_skipped = False
    for line in body:
        s = line.strip()
        if not s:
            continue
        if not title_skipped and s == post_title:
            title_skipped = True  # the post title repeated under the header
            continue
        if date is None and not content:
            bm = _BYLINE_RE.match(s[:MAX_MATCH_LINE])
            if bm:
                date = make_date(int(bm.group("y")), int(bm.group("m")), int(bm.group("d")))
                author = bm.group("author")
                rest = bm.group("rest").strip()
                if rest:
                    content.append(rest)  # the byline is glued to the first body sentence
                continue
        content.append(s)
    if not content:
        raise ParseError(f"{source}: blog post has no body text")
    if date is None:
        dm = _DATE_ANY_RE.search(text)
        date = make_date(int(dm.group(1)), int(dm.group(2)), int(dm.group(3))) if dm else None
    title = _english_title(post_title)
    title_ko = post_title if post_title != title and has_hangul(post_title) else None
    en = [ln for ln in content if detect_language(ln) == "en"]
    ko = [ln for ln in content if detect_language(ln) != "en"]
    sections: list[Section] = []
    for sec in (section("body", "\n".join(en), "en"), section("body", "\n".join(ko))):
        if sec is not None:
            sections.append(sec)
    urls = find_urls("\n".join(content))
    ids = arxiv_ids(title_ko or "")  # only a link in the title would be the paper's own
    return [
        Paper(
            id=make_paper_id(title, date, ids[0] if ids else None),
            title=title,
            title_ko=title_ko,
            authors=[author] if author else [],
            date=date,
            urls=urls,
            format="blog",
            source=source,
            sections=sections,
        )
    ]


@safe_score
def score(text: str) -> float:
    """How much the text looks like a blog post page (0..1)."""
    lines = [ln[:MAX_MATCH_LINE] for ln in text.split("\n")]
    value = 0.0
    if any(_WEEKDAYS_RE.match(ln) for ln in lines[:20]):
        value += 0.3
    if any(_header(ln) for ln in lines[:300]):
        value += 0.3
    if any(_RELATED_RE.search(ln) for ln in lines):
        value += 0.25
    if any(_COUNTER_RE.match(ln) for ln in lines[:200]):
        value += 0.15
    return value
