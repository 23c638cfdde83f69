"""Weekly round-up ("[2024/04/01 ~ 04/07] 이번 주의 주요 ML 논문").

Each paper is a title line "한국어 제목 / English Title", then headed blocks:
"논문 소개" (summary, Korean bullet then its English version), "논문 초록(Abstract)",
"주요 내용(Key Messages)", and link blocks whose URLs belong to the paper.
Text before the first title line (intro bullets) and after "원문" (site boilerplate)
is not part of any paper.
"""

from __future__ import annotations

import datetime as _dt
import re

from ..errors import ParseError
from ..models import Paper, Section, SectionKind
from ..text import arxiv_ids, detect_language, has_hangul, make_paper_id
from ._util import find_urls, guard, is_url_line, make_date, safe_score, section

_DATE_RE = re.compile(r"\[(\d{4})[/.-](\d{1,2})[/.-](\d{1,2})\s*~")
_SUMMARY = "논문 소개"
# Header line -> section kind; None marks a link block (URLs only, text ignored).
_HEADERS: dict[str, SectionKind | None] = {
    "논문 소개": "summary",
    "논문 초록(abstract)": "abstract",
    "논문 초록": "abstract",
    "abstract": "abstract",
    "주요 내용(key messages)": "key_points",
    "주요 내용": "key_points",
    "key messages": "key_points",
    "논문 링크": None,
    "github 링크": None,
    "더 읽어보기": None,
    "프로젝트 링크": None,
    "링크": None,
}
# Lines that open the closing boilerplate of the post.
_END_RE = re.compile(r"^(원문|이 글은 GPT 모델로|:fire:파이토치|:gift:)")
_BULLET_RE = re.compile(r"^\s*(?:[•·∙◦▪*\-]\s+)")


def _header_kind(line: str) -> tuple[bool, SectionKind | None]:
    """(is_header, kind) for a stripped line."""
    key = re.sub(r"\s+", " ", line.strip()).lower()
    key = key.replace(" (", "(")
    if key in _HEADERS:
        return True, _HEADERS[key]
    return False, None


def _is_title_line(lines: list[str], i: int) -> bool:
    """A non-indented, non-header line followed (after blanks) by '논문 소개'."""
    line = lines[i]
    if not line.strip() or line[:1].isspace() or is_url_line(line) or _header_kind(line)[0]:
        return False
    j = i + 1
    while j < len(lines) and not lines[j].strip():
        j += 1
    return j < len(lines) and lines[j].strip() == _SUMMARY


def _split_title(line: str) -> tuple[str, str | None]:
    """('English Title', 'Korean title' or None) from 'Korean / English'."""
    line = line.strip()
    if " / " in line:
        left, right = (p.strip() for p in line.split(" / ", 1))
        if left and right:
            if left == right:
                return right, None
            if has_hangul(left) and not has_hangul(right):
                return right, left
            if has_hangul(right) and not has_hangul(left):
                return left, right
            return right, left
    return line, None


def _paragraphs(lines: list[str]) -> list[str]:
    """Blank-line separated paragraphs, bullets stripped, lines joined with spaces."""
    paras: list[str] = []
    cur: list[str] = []
    for line in lines + [""]:
        if line.strip():
            cur.append(_BULLET_RE.sub("", line).strip())
        elif cur:
            paras.append(" ".join(cur))
            cur = []
    return paras


def _bilingual_sections(kind: SectionKind, lines: list[str]) -> list[Section]:
    """Korean part then English part of a block, as two sections.

    Summaries and abstracts come as paragraphs; key messages as numbered lines,
    so key points are split line by line and keep their line breaks.
    """
    if kind == "key_points":
        units = [ln.strip() for ln in lines if ln.strip()]
        sep = "\n"
    else:
        units = _paragraphs(lines)
        sep = "\n\n"
    ko = [u for u in units if detect_language(u) != "en"]
    en = [u for u in units if detect_language(u) == "en"]
    out: list[Section] = []
    for part in (ko, en):
        sec = section(kind, sep.join(part))
        if sec is not None:
            out.append(sec)
    return out


def _file_date(text: str) -> _dt.date | None:
    m = _DATE_RE.search(text[:2000])
    return make_date(int(m.group(1)), int(m.group(2)), int(m.group(3))) if m else None


@guard
def parse(text: str, source: str) -> list[Paper]:
    """Papers of a weekly round-up; raises ParseError when no paper title is found."""
    lines = text.split("\n")
    date = _file_date(text)
    starts = [i for i in range(len(lines)) if _is_title_line(lines, i)]
    if not starts:
        raise ParseError(f"{source}: no weekly paper entries (title line followed by '{_SUMMARY}')")
    papers: list[Paper] = []
    for n, start in enumerate(starts):
        end = starts[n + 1] if n + 1 < len(starts) else len(lines)
        title, title_ko = _split_title(lines[start])
        blocks: list[tuple[SectionKind | None, list[str]]] = []
        kind: SectionKind | None = None
        body: list[str] = []
        urls: list[str] = []
        in_block = False
        for line in lines[start + 1 : end]:
            stripped = line.strip()
            if not line[:1].isspace() and _END_RE.match(stripped):
                break  # closing boilerplate of the whole post
            is_header, hkind = _header_kind(stripped)
            if is_header:
                if in_block:
                    blocks.append((kind, body))
                kind, body, in_block = hkind, [], True
                continue
            if in_block and kind is None:
                urls.extend(find_urls(line))  # link blocks: keep the URLs, drop any prose
            elif in_block:
                body.append(line)
        if in_block:
            blocks.append((kind, body))
        sections: list[Section] = []
        for bkind, blines in blocks:
            if bkind is not None:
                sections.extend(_bilingual_sections(bkind, blines))
        ids = arxiv_ids(" ".join(urls))
        papers.append(
            Paper(
                id=make_paper_id(title, date, ids[0] if ids else None),
                title=title,
                title_ko=title_ko,
                date=date,
                urls=list(dict.fromkeys(urls)),
                format="weekly",
                source=source,
                sections=sections,
            )
        )
    return papers


@safe_score
def score(text: str) -> float:
    """How much the text looks like a weekly round-up (0..1)."""
    lines = text.split("\n")
    summaries = sum(1 for ln in lines if ln.strip() == _SUMMARY)
    value = 0.0
    if summaries:
        value += 0.5 + min(0.2, 0.05 * summaries)
    if _DATE_RE.search(text[:2000]):
        value += 0.15
    if "Top ML Papers of the Week" in text[:2000] or "주요 ML 논문" in text[:2000]:
        value += 0.15
    return value
