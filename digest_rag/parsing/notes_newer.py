"""Newer-style markdown paper notes (2024-): italic titles, quoted abstracts, ``<english>`` commentary.

A note holds one or more papers, each laid out as::

    https://arxiv.org/abs/2501.01234                              own links (optional)
    *Title: With? Punctuation!* (A. Author, B. Author)            italic, may wrap; authors optional
    > English abstract, one or more paragraphs                    -> abstract section
    >
    > second paragraph
    Korean commentary                                             -> commentary section (ko/mixed)
    <english>
    The author's English version of the commentary                -> commentary/en section
    </english>
    #tag #tag

and may end with a ``# Links`` heading, ``[[wikilinks]]`` and bare URLs, which go to the paper's
urls and never into its text. A note without a title line takes its title from the file name
(``Paper.title_from_filename``). Markup (``>`` prefixes, the ``*`` around the title, the
``<english>`` tags, tag lines, the ``# Links`` heading) is dropped; every other character of
the note lands in exactly one title, author list, section, tag list or url list.

`notes.parse` sends a note here when it shows one of these markers (see `is_newer_note`);
older notes keep their own, unchanged reader.
"""

from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass, field

from ..errors import ParseError
from ..models import Paper, Section
from ..text import arxiv_ids, detect_language, has_hangul, make_paper_id
from ._util import (
    MAX_MATCH_LINE,
    find_urls,
    is_tag_line,
    is_url_line,
    merge_unique,
    section,
    split_authors,
    tags_of,
    trailing_parenthetical,
)

# "<english>", "</english>", "< English >": the commentary's English version.
# One optional group between the whitespace runs: "<\s*/?\s*" was quadratic on "<" + spaces.
_ENGLISH_TAG_RE = re.compile(r"(<\s*(?:/\s*)?english\s*>)", re.I)
_QUOTE_RE = re.compile(r"^[ \t]{0,3}>")
_LEADING_URL_RE = re.compile(r"^[ \t]*<?(?P<u>https?://[^\s<>]+)>?[ \t]+(?=\S)")
# Opening emphasis of an italic/bold title: "*T", "**T", "_T", "***T" (not a "* bullet").
_ITALIC_OPEN_RE = re.compile(r"^[ \t]*(\*{1,3}|_{1,3})(?=[^\s*_])")
_WIKILINKS_RE = re.compile(r"(?:\[\[[^\[\]\n]+\]\][ \t,;]*)+")
_WIKILINK_RE = re.compile(r"\[\[[^\[\]\n]+\]\]")
_LINKISH_RE = re.compile(r"^(?:https?://\S+|[\w-]+(?:\.[\w-]+)+/?)$")
# Headings that introduce a note's trailing links ("# Links", "## Related", "# References:").
_LINK_HEADINGS = {
    "links", "link", "related", "related papers", "references", "see also",
    "링크", "관련 링크", "관련 논문", "참고", "참고 문헌", "참고문헌",
}
# A title (with its authors) is at most a few wrapped lines; longer runs are text.
_TITLE_LINES = 3
# Title lines are scanned by linear code only, so they may be long: 300-author lists exist.
_MAX_TITLE_LINE = 65_536
_AUTHOR_LINES = 4
# Unquoted English text this long right under the title, before any Korean, is the abstract.
_UNQUOTED_ABSTRACT_CHARS = 200

_OPEN, _CLOSE = "\x00<english>", "\x00</english>"


def is_newer_note(text: str) -> bool:
    """True when a note shows a marker of the newer style (quote, <english>, italic title, # Links)."""
    lines = text.split("\n")
    for i, raw in enumerate(lines):
        line = raw[:MAX_MATCH_LINE]
        if _QUOTE_RE.match(line) or _ENGLISH_TAG_RE.search(line) or _is_links_heading(line):
            return True
        if _ITALIC_OPEN_RE.match(line) and _italic_title(lines, i) is not None:
            return True
    return False


def italic_title_line(line: str) -> bool:
    """True for a newer-style title line: '*Title* (Authors)' or '*Title*'."""
    return _italic_title([line], 0) is not None


def english_block(text: str) -> bool:
    """True when the text holds an '<english>' tag (the newer notes' English commentary)."""
    return "english" in text.lower() and _ENGLISH_TAG_RE.search(text) is not None


def _is_links_heading(line: str) -> bool:
    s = line.strip()
    if not s.startswith("#") or len(s) > 40:
        return False
    body = s.lstrip("#")
    if body[:1] not in (" ", "\t"):
        return False  # "#links" is a tag
    return body.strip().rstrip("#").strip().rstrip(":").strip().lower() in _LINK_HEADINGS


def _is_wikilink_line(line: str) -> bool:
    return bool(_WIKILINKS_RE.fullmatch(line.strip()[:MAX_MATCH_LINE]))


def _unquote(line: str) -> str:
    """'> text' -> 'text', '>> text' -> 'text', '>' -> '' (one index pass: hostile '>>>>...' lines are long)."""
    s = line.lstrip(" \t")
    i, n = 0, len(s)
    while i < n and s[i] == ">":
        i += 1
        if i < n and s[i] in " \t":
            i += 1
    return s[i:]


_SPACES_RE = re.compile(r"[ \t]*")


def _find_close(buf: str, marker: str, lenient: bool = False) -> int | None:
    """Index of the emphasis marker closing an italic title.

    The first closing run followed by '(' or the end of the block; with ``lenient`` (where a
    paper starts), else the last closing run ("*Title*. text"), the rest being commentary.
    """
    start = 0
    ch = marker[0]
    last: int | None = None
    while True:
        p = buf.find(marker, start)
        if p < 0:
            return last if lenient else None
        start = p + 1
        end = p + len(marker)
        # A closing run: after a non-space, and not part of a longer run of the same character.
        if p == 0 or buf[p - 1].isspace() or buf[p - 1] == ch or (end < len(buf) and buf[end] == ch):
            continue
        nxt = _SPACES_RE.match(buf, end).end()  # type: ignore[union-attr]  # always matches
        if nxt == len(buf) or buf[nxt] == "(":
            return p
        last = p


def _leading_group(text: str) -> tuple[str, str, bool]:
    """'(a (x), b) tail' -> ('a (x), b', 'tail', True); an unclosed group -> (rest, '', False)."""
    depth = 0
    for i, c in enumerate(text):
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return text[1:i], text[i + 1 :], True
    return text[1:], "", False


@dataclass
class _Title:
    title: str
    authors: list[str]
    links: list[str]
    tail: str  # text after the title/authors on the same lines: commentary
    end: int  # index of the first line after the block


def _italic_title(lines: list[str], i: int, lenient: bool = False) -> _Title | None:
    """An italic title block at line i: '*Title* (Authors)', possibly wrapped; None when not one."""
    first = lines[i]
    if len(first) > _MAX_TITLE_LINE:
        return None
    m = _ITALIC_OPEN_RE.match(first)
    if not m:
        return None
    marker = m.group(1)
    buf = first[m.end() :].strip()
    j = i + 1
    close = _find_close(buf, marker)
    while close is None and j < len(lines) and j - i < _TITLE_LINES and lines[j].strip():
        nxt = lines[j].strip()
        if nxt.startswith("\x00") or _QUOTE_RE.match(nxt) or is_tag_line(nxt) or is_url_line(nxt) or len(nxt) > _MAX_TITLE_LINE:
            break
        buf = f"{buf} {nxt}"
        j += 1
        close = _find_close(buf, marker)
    if close is None and lenient:
        j = i + 1  # "*Title*: remark" on one line: the remark is commentary
        buf = first[m.end() :].strip()
        close = _find_close(buf, marker, lenient=True)
        if close is not None and has_hangul(buf[close:]):
            return None  # "*강조*할 점" style emphasis in commentary
    if close is None:
        return None
    title = buf[:close].strip()
    rest = buf[close + len(marker) :].strip()
    if not title or has_hangul(title) or len(re.findall(r"[A-Za-z]", title)) < 2:
        return None  # emphasis inside Korean commentary, not a paper title
    if not rest:
        # Authors on the next line, or after one blank line: "*Title*\n(A, B)".
        k = j + 1 if j + 1 < len(lines) and not lines[j].strip() else j
        nxt = lines[k].strip() if k < len(lines) else ""
        if nxt.startswith("(") and len(nxt) <= _MAX_TITLE_LINE and not has_hangul(nxt):
            if k == j or (nxt.endswith(")") and _leading_group(nxt)[1] == ""):
                rest = nxt
                j = k + 1
    authors: list[str] = []
    links: list[str] = []
    tail = rest
    if rest.startswith("("):
        inner, after, closed = _leading_group(rest)
        taken = 0
        while not closed and j < len(lines) and lines[j].strip() and taken < _AUTHOR_LINES:
            nxt = lines[j].strip()
            if nxt.startswith("\x00") or _QUOTE_RE.match(nxt) or is_tag_line(nxt) or is_url_line(nxt) or has_hangul(nxt):
                break
            rest = f"{rest} {nxt}"
            j += 1
            taken += 1
            inner, after, closed = _leading_group(rest)
        inner = inner.strip()
        if _LINKISH_RE.match(inner):
            links, tail = [inner], after.strip()
        elif has_hangul(inner) and "," not in inner:
            tail = rest  # "(논문 요약)": a Korean remark, not authors
        else:
            authors, tail = split_authors(inner), after.strip()
    elif not rest:
        # "*Title (A, B)*": the author list inside the emphasis.
        split = trailing_parenthetical(title)
        if split is not None and ", " in split[1] and not has_hangul(split[1]) and not _LINKISH_RE.match(split[1]):
            title, authors = split[0], split_authors(split[1])
    if not re.search(r"\w", tail):
        tail = ""  # "*Title*." : the stray punctuation is markup
    return _Title(title=title, authors=authors, links=links, tail=tail, end=j)


@dataclass
class _Draft:
    """One paper of a note while it is being read."""

    own_urls: list[str] = field(default_factory=list)
    title: _Title | None = None
    abstract: list[str] = field(default_factory=list)
    commentary: list[str] = field(default_factory=list)
    english: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)

    def has_body(self) -> bool:
        # Lazily, list by list: unpacking every body line into one tuple per call (once per line of the
        # note) made a long note's parse quadratic.
        return any(s.strip() for part in (self.abstract, self.commentary, self.english) for s in part)

    def started(self) -> bool:
        return self.title is not None or self.has_body()


def _logical_lines(text: str) -> list[str]:
    """The note's lines, with <english> tags split onto lines of their own (as sentinels)."""
    out: list[str] = []
    for raw in text.split("\n"):
        line = raw.rstrip()
        if "english" not in line.lower() or not _ENGLISH_TAG_RE.search(line):
            out.append(line)
            continue
        for piece in _ENGLISH_TAG_RE.split(line):
            if _ENGLISH_TAG_RE.fullmatch(piece):
                out.append(_CLOSE if "/" in piece else _OPEN)
            elif piece.strip():
                out.append(piece.strip())
    return out


def _plain_title(lines: list[str], i: int, need_authors: bool) -> _Title | None:
    """An old-style 'Title (Authors)' block (possibly wrapped) at line i."""
    from .notes import _MAX_TITLE_LINES, _title_block  # the older reader's title finder, shared

    # Only the lines a title block can span are looked at: a view of the whole note per candidate line
    # made a note's parse quadratic in its lines (211 KB took 64 s).
    view = ["" if ln in (_OPEN, _CLOSE) or _QUOTE_RE.match(ln[:MAX_MATCH_LINE]) else ln
            for ln in lines[i : i + _MAX_TITLE_LINES]]
    block = _title_block(view, 0)
    if block is None:
        return None
    title, authors, end = block[0], block[1], block[2] + i
    if need_authors and not authors:
        return None
    return _Title(title=title, authors=authors, links=[], tail="", end=end)


def _title_at(lines: list[str], i: int, first: bool, after_url: bool = False) -> _Title | None:
    """A title block at line i, or None.

    Where a paper starts (``first``) any italic line or plain 'Title (Authors)' block is its
    title. Further down a note, a new paper needs a stronger sign: an italic title with its
    author list, or a title block right under a bare URL line.
    """
    found = _italic_title(lines, i, lenient=first or after_url)
    if found is not None:
        if first or after_url or found.authors:
            return found
        return None
    return _plain_title(lines, i, need_authors=not first)


def _next_content(lines: list[str], i: int) -> int:
    while i < len(lines) and (not lines[i].strip() or is_url_line(lines[i])):
        i += 1
    return i


def _read(lines: list[str]) -> list[_Draft]:
    drafts = [_Draft()]
    in_english = False
    last: list[str] | None = None  # where a blank line keeps the paragraph break
    i = 0
    while i < len(lines):
        line = lines[i]
        cur = drafts[-1]
        if line == _OPEN:
            in_english, last = True, cur.english
            if cur.english:
                cur.english.append("")
            i += 1
            continue
        if line == _CLOSE:
            in_english, last = False, None
            i += 1
            continue
        s = line.strip()
        if in_english:
            if not (is_tag_line(s) or _is_links_heading(s)):
                cur.english.append(line)
                i += 1
                continue
            in_english = False  # an unclosed <english> block ends where the tags or links start
        if not s:
            if last is not None and last and last[-1] != "":
                last.append("")
            i += 1
            continue
        if _QUOTE_RE.match(line):
            if last is not cur.abstract and cur.abstract:
                cur.abstract.append("")
            cur.abstract.append(_unquote(line))
            last = cur.abstract
            i += 1
            continue
        if is_tag_line(s):
            cur.tags.extend(tags_of(s))
            last = None
            i += 1
            continue
        if _is_links_heading(s):
            last = None
            i += 1
            continue
        if _is_wikilink_line(s):
            cur.links.extend(m.group(0) for m in _WIKILINK_RE.finditer(s))
            last = None
            i += 1
            continue
        if is_url_line(s):
            url = s.strip("<>")
            if not cur.started():
                cur.own_urls.append(url)
            else:
                j = _next_content(lines, i + 1)
                if j < len(lines) and _title_at(lines, j, first=False, after_url=True) is not None:
                    drafts.append(_Draft(own_urls=[url]))
                else:
                    cur.links.append(url)  # a related paper's link: urls, not text
            last = None
            i += 1
            continue
        title = _title_at(lines, i, first=not cur.started()) if len(s) <= _MAX_TITLE_LINE else None
        if title is not None and (not cur.started() or _italic_title(lines, i) is not None):
            if cur.started():
                drafts.append(_Draft())
                cur = drafts[-1]
            cur.title = title
            cur.own_urls.extend(title.links)
            if title.tail:
                cur.commentary.append(title.tail)
            last = cur.commentary if title.tail else None
            i = title.end
            continue
        if not cur.started() and not cur.own_urls:
            # "https://arxiv.org/abs/... 코멘트": a link opening the note is the paper's own.
            lead = _LEADING_URL_RE.match(line[:MAX_MATCH_LINE])
            if lead:
                cur.own_urls.append(lead.group("u"))
                line = line[lead.end() :]
        cur.commentary.append(line)
        last = cur.commentary
        i += 1
    return drafts


def _paragraphs(lines: list[str]) -> list[str]:
    text = "\n".join(lines).strip()
    return [p for p in re.split(r"\n[ \t]*\n", text) if p.strip()] if text else []


def _unquoted_abstract(d: _Draft) -> None:
    """A titled paper with no quote: leading long English paragraphs are its abstract."""
    if d.title is None or d.abstract:
        return
    paras = _paragraphs(d.commentary)
    lead: list[str] = []
    for p in paras:
        if has_hangul(p) or len(p) < _UNQUOTED_ABSTRACT_CHARS or detect_language(p) != "en":
            break
        lead.append(p)
    if lead and len(lead) < len(paras):  # keep it commentary when it is all there is
        d.abstract = "\n\n".join(lead).split("\n")
        d.commentary = "\n\n".join(paras[len(lead) :]).split("\n")


def _sections(d: _Draft) -> list[Section]:
    """abstract/en, abstract in other languages, commentary, commentary/en, in that order.

    A quote may hold a Korean translation beside the English abstract: its Korean paragraphs
    get their own abstract section, so the English one stays English.
    """
    paras = _paragraphs(d.abstract)
    english = [p for p in paras if detect_language(p) == "en"]
    other = [p for p in paras if detect_language(p) != "en"]
    if not english or not other:
        english, other = ["\n".join(d.abstract)], []  # one language: the quote exactly as written
    out: list[Section] = []
    for sec in (
        section("abstract", "\n\n".join(english)),
        section("abstract", "\n\n".join(other)),
        section("commentary", "\n".join(d.commentary)),
        section("commentary", "\n".join(d.english), "en"),
    ):
        if sec is not None:
            out.append(sec)
    return out


def parse_newer(text: str, source: str, name_title: str, date: _dt.date | None) -> list[Paper]:
    """The papers of a newer-style note (see the module docstring)."""
    drafts = [d for d in _read(_logical_lines(text)) if d.started() or d.own_urls or d.tags or d.links]
    if not drafts:
        raise ParseError(f"{source}: note has only markup, no text")
    # Text before the first titled paper, without links of its own, is that paper's preamble.
    if len(drafts) > 1 and drafts[0].title is None and not drafts[0].own_urls:
        pre, nxt = drafts[0], drafts[1]
        nxt.commentary = pre.commentary + ([""] if pre.commentary else []) + nxt.commentary
        nxt.abstract = pre.abstract + nxt.abstract
        nxt.english = pre.english + nxt.english
        nxt.tags = pre.tags + nxt.tags
        nxt.links = pre.links + nxt.links
        drafts = drafts[1:]
    # Tags and trailing links written once at the end of the note belong to all its papers.
    shared_tags = drafts[-1].tags
    papers: list[Paper] = []
    seen: set[str] = set()
    for n, d in enumerate(drafts):
        _unquoted_abstract(d)
        from_name = d.title is None
        if d.title is not None:
            title, authors = d.title.title, d.title.authors
        elif n == 0 and name_title and not name_title.isdigit():
            title, authors = name_title, []
        else:
            raise ParseError(f"{source}: paper {n + 1} has no title line and the file name holds only a date")
        ids = arxiv_ids(" ".join(d.own_urls))
        pid = make_paper_id(title, date, ids[0] if ids else None)
        if pid in seen:
            pid = f"{pid}-{n + 1}"
        seen.add(pid)
        body = "\n".join([*d.abstract, *d.commentary, *d.english])
        papers.append(
            Paper(
                id=pid,
                title=title,
                authors=authors,
                date=date,
                tags=list(dict.fromkeys(d.tags or shared_tags)),
                urls=merge_unique(d.own_urls, find_urls(body), d.links),
                format="notes",
                source=source,
                sections=_sections(d),
                title_from_filename=from_name,
            )
        )
    return papers
