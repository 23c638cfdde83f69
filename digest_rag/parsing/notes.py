"""Markdown paper notes: one file per paper (ml-papers corpus).

Typical note::

    https://arxiv.org/abs/2301.03728

    Scaling Laws for Generative Mixed-Modal Language Models (Armen Aghajanyan, ...)

    Korean commentary ...

    #multimodal

Variants handled: URL and commentary on one line, titles wrapped over two or
three lines, no title line (title from the file name, "190620 XLNet.md" ->
"XLNet"), several links, ATX/setext headings ("# ...", "===="), and review
files covering many papers (treated as one paper titled by their heading).
"""

from __future__ import annotations

import datetime as _dt
import re
from pathlib import PurePath

from ..errors import ParseError
from ..models import Paper
from ..text import arxiv_ids, detect_language, has_hangul, make_paper_id
from ._util import (
    MAX_MATCH_LINE,
    find_urls,
    guard,
    is_tag_line,
    is_url_line,
    make_date,
    safe_score,
    section,
    split_authors,
    tags_of,
    trailing_parenthetical,
)
from .notes_newer import english_block, is_newer_note, italic_title_line, parse_newer

_PREFIX_RE = re.compile(r"^(?P<d>\d{6})(?:\s+|$)")
# The heading text is trimmed of closing '#'s in Python (`_atx_heading`): the pattern that did it
# ("\S.*?\s*#*\s*$") backtracked cubically on a long first line of spaces.
_ATX_RE = re.compile(r"^#{1,6}\s+(?P<t>\S.*)$")
_SETEXT_RE = re.compile(r"^\s*(=+|-+)\s*$")
_LEADING_URL_RE = re.compile(r"^\s*<?https?://\S+>?\s+")
_MAX_TITLE_LINES = 3
_MD_LINK_RE = re.compile(r"^\[(?P<t>[^\]]+)\]\((?P<u>https?://[^)\s]+)\)$")
# "(https://...)" or "(huggingface.co)" after a title is a link, not an author list.
_LINKISH_RE = re.compile(r"^(?:https?://\S+|[\w-]+(?:\.[\w-]+)+/?)$")
# "English Title (https://arxiv.org/abs/...) 코멘트": the link right after the title is the paper's own.
# The title alternative starts at a non-space: "\s*" giving back spaces to "[^...]{3,200}" made
# a long run of spaces cost 200 steps per space.
_OWN_LINK_RE = re.compile(r"^\s*(?:<?https?://\S+|(?=\S)[^\uac00-\ud7a3()]{3,200}\(\s*https?://[^)\s]+\s*\))")


def _atx_heading(line: str) -> str | None:
    """'## Title ##' -> 'Title'; None when the line is not an ATX heading."""
    m = _ATX_RE.match(line[:MAX_MATCH_LINE])
    if not m:
        return None
    # As the old pattern did: drop trailing spaces and '#'s, keeping at least one character.
    text = m.group("t").rstrip()
    return text.rstrip("#").rstrip() or text[0]


def _yymmdd(digits: str) -> _dt.date | None:
    return make_date(2000 + int(digits[:2]), int(digits[2:4]), int(digits[4:6]))


def _name_parts(source: str) -> tuple[str, _dt.date | None]:
    """(title from the file name, date) from 'papers/2023/230207 Title.md'."""
    path = PurePath(source)
    stem = path.stem
    date: _dt.date | None = None
    m = _PREFIX_RE.match(stem)
    if m:
        date = _yymmdd(m.group("d"))
        stem = stem[m.end() :]
    if date is None and re.fullmatch(r"(19|20)\d{2}", path.parent.name):
        # A year folder is all we know: the first of January of that year.
        date = _dt.date(int(path.parent.name), 1, 1)
    return stem.strip(), date


def _looks_like_title(line: str) -> bool:
    s = line.strip()
    return (
        bool(s)
        and not has_hangul(s)
        and not is_tag_line(s)
        and not is_url_line(s)
        and not s.startswith(("[[", "-", "*", ">", "|", "#", "!["))
        and not re.match(r"^\d+[.)]\s", s)
        # Long lines only when they open an author list early: "Title (A, B, ... 300 authors".
        and (len(s) < 400 or 0 < s.find(" (") < 300)
        and len(re.findall(r"[A-Za-z]", s)) >= 2
    )


def _unlink(line: str) -> str:
    """'[Text](https://...)' -> 'Text': a markdown link line names the note by its text."""
    m = _MD_LINK_RE.match(line.strip())
    return m.group("t").strip() if m else line


def _trailing_url(line: str) -> int | None:
    """Where a last word that is a URL starts ("Title https://..." -> 5); string scans, no regex to backtrack."""
    s = line.rstrip()
    cut = max(s.rfind(" "), s.rfind("\t"))
    if cut <= 0 or not s[cut + 1 :].lstrip("<").startswith(("http://", "https://")):
        return None
    return cut


def _title_block(lines: list[str], start: int) -> tuple[str, list[str], int] | None:
    """Find a 'Title (Author, ...)' block (possibly wrapped) at non-empty line `start`.

    Returns (title, authors, index after the block); a lone English title line
    counts as a title without authors, and a trailing '(https://...)' or
    '(domain.org)' group is a link, not authors.
    """
    if start >= len(lines) or not _looks_like_title(_unlink(lines[start])):
        return None
    first = _unlink(lines[start]).strip()
    url = _trailing_url(first)
    if url is not None:
        # "SpanBERT https://arxiv.org/abs/..." names a paper and its link; the link is not part of the title.
        following = next((ln.strip() for ln in lines[start + 1:] if ln.strip()), "")
        if "://" in following and not has_hangul(following):
            return None  # a list of links ("SpanBERT URL", "ALBERT URL", ...): the file name names the note
        title = first[:url].strip()
        split = trailing_parenthetical(title)
        if split is not None and not _LINKISH_RE.match(split[1]):
            return split[0], split_authors(split[1]), start + 1
        return title, [], start + 1
    parts: list[str] = []
    i = start
    while i < len(lines) and len(parts) < _MAX_TITLE_LINES:
        s = _unlink(lines[i]).strip()
        if not s or not (_looks_like_title(s) or (parts and not has_hangul(s) and not is_tag_line(s))):
            break
        parts.append(s)
        i += 1
        split = trailing_parenthetical(" ".join(parts))
        if split is not None:
            title, inner = split
            if _LINKISH_RE.match(inner):
                return title, [], i
            return title, split_authors(inner), i
    joined = " ".join(parts)
    pos = joined.find(" (")
    if 0 < pos < 300 and joined.count("(") > joined.count(")"):
        # An author list cut short ("..., Ellie Pav" then commentary): still title + authors.
        return joined[:pos].strip(), split_authors(joined[pos + 2 :]), i
    return _unlink(lines[start]).strip(), [], start + 1


def _is_review(source: str) -> bool:
    """Multi-paper review notes ("Thoughts on recent papers", reviews/ folder)."""
    path = PurePath(source)
    return path.parent.name.lower() == "reviews" or "thoughts on recent papers" in path.stem.lower()


@guard
def parse(text: str, source: str) -> list[Paper]:
    """The one paper of a note; raises ParseError for empty notes or notes without a title."""
    raw = [ln.rstrip() for ln in text.split("\n")]
    if not any(ln.strip() for ln in raw):
        raise ParseError(f"{source}: empty note")
    name_title, date = _name_parts(source)
    if is_newer_note(text):
        return parse_newer(text, source, name_title, date)
    tags: list[str] = []
    lines: list[str] = []
    for ln in raw:
        if is_tag_line(ln):
            tags.extend(tags_of(ln))
        else:
            lines.append(ln)
    nonempty = [i for i, ln in enumerate(lines) if ln.strip()]
    if not nonempty:
        raise ParseError(f"{source}: note has only tags, no text")

    heading: str | None = None
    drop: set[int] = set()
    k = 0
    # A heading on the first line names the note (reviews, essays).
    first = nonempty[0]
    atx = _atx_heading(lines[first])
    if atx:
        heading, drop, k = atx, {first}, 1
    elif len(nonempty) > 1 and nonempty[1] == first + 1 and _SETEXT_RE.match(lines[first + 1][:MAX_MATCH_LINE]):
        heading, drop, k = lines[first].strip(), {first, first + 1}, 2
    if heading is not None:
        hm = _PREFIX_RE.match(heading)
        if hm and _yymmdd(hm.group("d")) and heading[hm.end() :].strip():
            date = date or _yymmdd(hm.group("d"))
            heading = heading[hm.end() :].strip()

    # Leading bare URL lines: the paper's own links.
    head_ids: list[str] = []
    while k < len(nonempty) and is_url_line(lines[nonempty[k]]):
        head_ids += arxiv_ids(lines[nonempty[k]])
        drop.add(nonempty[k])
        k += 1

    title: str | None = None
    title_ko: str | None = None
    authors: list[str] = []
    review = _is_review(source)
    if heading is None and not review and k < len(nonempty):
        idx = nonempty[k]
        block = _title_block(lines, idx)
        if block is not None:
            title, authors, after = block
            head_ids += arxiv_ids("\n".join(lines[idx:after]))
            drop.update(range(idx, after))
        else:
            # "https://arxiv.org/abs/... 코멘트" or "Title (https://arxiv...) 를 구현해봤다": a link
            # opening the first line is the paper's own; links deeper in commentary cite others.
            own = _OWN_LINK_RE.match(lines[idx][:MAX_MATCH_LINE])
            if own:
                head_ids += arxiv_ids(own.group(0))
            lines[idx] = _LEADING_URL_RE.sub("", lines[idx], count=1)
    if heading is not None or review:
        # Reviews cite many papers: the file's own name/heading is its identity, not a link.
        head_ids = []
    if heading is not None:
        if has_hangul(heading) and name_title and not name_title.isdigit():
            title, title_ko = name_title, heading
        else:
            title = heading
    from_name = title is None
    if title is None:
        if not name_title or name_title.isdigit():
            raise ParseError(f"{source}: no title line and the file name holds only a date")
        title = name_title

    body_lines = [ln for i, ln in enumerate(lines) if i not in drop]
    body = "\n".join(body_lines).strip()
    if not body:
        # Title-only or link-only notes: their title line and links are all the text there is.
        body = "\n".join(lines).strip()
    if not body:
        raise ParseError(f"{source}: note has a title but no text")
    sec = section("commentary", body)
    if sec is None:
        raise ParseError(f"{source}: note has a title but no text")
    return [
        Paper(
            id=make_paper_id(title, date, head_ids[0] if head_ids else None),
            title=title,
            title_ko=title_ko,
            authors=authors,
            date=date,
            tags=list(dict.fromkeys(tags)),
            urls=find_urls(text),
            format="notes",
            source=source,
            sections=[sec],
            title_from_filename=from_name,
        )
    ]


@safe_score
def score(text: str) -> float:
    """How much the text looks like a markdown paper note (0..1)."""
    lines = [ln for ln in text.split("\n") if ln.strip()]
    if not lines:
        return 0.0
    value = 0.0
    if is_url_line(lines[0]) or _LEADING_URL_RE.match(lines[0]):
        value += 0.35
    if any(_title_block(lines, i) and trailing_parenthetical(lines[i]) for i in range(min(4, len(lines)))):
        value += 0.15
    if any(italic_title_line(ln) for ln in lines[:4]):
        value += 0.15  # the newer notes' "*Title* (Authors)"
    if any(is_tag_line(ln) for ln in lines[-3:]):
        value += 0.2
    if english_block(text):
        value += 0.2
    if _atx_heading(lines[0]):
        value += 0.2
    if detect_language(text) != "en":
        value += 0.1
    return value
