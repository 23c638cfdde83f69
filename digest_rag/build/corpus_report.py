"""How digest_rag reads a corpus, before anything is built: `inspect_corpus` and its report.

Users run it (``digest-rag inspect PATHS``) to see why a paper is missing or looks wrong before
spending an hour encoding: formats detected, papers per section kind and language, papers
without an English abstract, titles taken from file names, missing authors, merged duplicates,
skipped files with their reasons, the largest papers, and for a file argument its papers and
sections. Only parsing runs: no model, no index.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from pydantic import BaseModel, Field

from digest_rag.errors import ParseError
from digest_rag.models import LANGUAGES, SECTION_KINDS, Paper
from digest_rag.parsing import Skip, parse_file, parse_paths

# Lists in the human table stop after this many entries; --json always lists everything.
SHOWN = 10
PREVIEW_CHARS = 80


class PaperRef(BaseModel):
    """A paper named in a report list."""

    id: str
    title: str
    source: str


class PaperSize(PaperRef):
    """A paper with the size of its text."""

    chars: int = Field(description="characters in all its sections")


class SectionPreview(BaseModel):
    """One section of a paper: its kind, language, size and first characters."""

    kind: str
    language: str
    chars: int
    preview: str = Field(description=f"the first {PREVIEW_CHARS} characters, on one line")


class PaperDetail(PaperRef):
    """A paper of a file named on the command line, with its sections."""

    authors: list[str]
    date: str | None
    tags: list[str]
    urls: list[str]
    title_from_filename: bool
    sections: list[SectionPreview]


class FileDetail(BaseModel):
    """A file named on the command line: its format and papers, or why it was skipped."""

    source: str
    format: str | None
    skipped: str | None = None
    papers: list[PaperDetail] = Field(default_factory=list)


class CorpusReport(BaseModel):
    """What `inspect_corpus` found. Lists are complete; the human table shortens them."""

    paths: list[str]
    files: int = Field(description="files read as digests")
    files_per_format: dict[str, int]
    papers: int = Field(description="papers after duplicates were merged")
    sections: dict[str, dict[str, int]] = Field(description="section kind -> language -> papers having one")
    without_english_abstract: list[PaperRef]
    title_from_filename: list[PaperRef]
    missing_authors: list[PaperRef]
    merged: list[str] = Field(description="duplicate papers merged into an earlier copy")
    skipped: list[Skip]
    largest: list[PaperSize]
    file_details: list[FileDetail] = Field(description="for each file argument, its papers and sections")


def _ref(p: Paper) -> PaperRef:
    return PaperRef(id=p.id, title=p.title, source=p.source)


def _size(p: Paper) -> int:
    return sum(len(s.text) for s in p.sections)


def _detail(p: Paper) -> PaperDetail:
    return PaperDetail(
        **_ref(p).model_dump(),
        authors=p.authors,
        date=p.date.isoformat() if p.date else None,
        tags=p.tags,
        urls=p.urls,
        title_from_filename=p.title_from_filename,
        sections=[
            SectionPreview(kind=s.kind, language=s.language, chars=len(s.text), preview=" ".join(s.text.split())[:PREVIEW_CHARS])
            for s in p.sections
        ],
    )


def _file_detail(path: Path) -> FileDetail:
    try:
        one = parse_file(path)
    except ParseError as exc:
        reason = " ".join(str(exc).split())
        prefix = f"{path}:"
        return FileDetail(source=str(path), format=None, skipped=reason[len(prefix) :].strip() if reason.startswith(prefix) else reason)
    return FileDetail(source=str(path), format=one.files.get(str(path)), papers=[_detail(p) for p in one.papers])


def inspect_corpus(paths: Iterable[str | Path] | str | Path, largest: int = 10) -> CorpusReport:
    """Parse ``paths`` (files and directories, as `build` reads them) and report how they were read.

    Nothing is built or written. Missing paths and unreadable files appear in ``skipped``.

    Example:
        >>> report = inspect_corpus(["corpus"])  # doctest: +SKIP
        >>> report.papers, report.files_per_format  # doctest: +SKIP
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    paths = list(paths)
    parsed = parse_paths(paths)
    sections: dict[str, dict[str, int]] = {k: {lang: 0 for lang in LANGUAGES} for k in SECTION_KINDS}
    for p in parsed.papers:
        for kind, lang in {(s.kind, s.language) for s in p.sections}:
            sections[kind][lang] += 1
    return CorpusReport(
        paths=[str(p) for p in paths],
        files=len(parsed.files),
        files_per_format=dict(sorted(Counter(parsed.files.values()).items())),
        papers=len(parsed.papers),
        sections={k: v for k, v in sections.items() if any(v.values())},
        without_english_abstract=[
            _ref(p) for p in parsed.papers if not any(s.kind == "abstract" and s.language == "en" for s in p.sections)
        ],
        title_from_filename=[_ref(p) for p in parsed.papers if p.title_from_filename],
        missing_authors=[_ref(p) for p in parsed.papers if not p.authors],
        merged=list(parsed.merged),
        skipped=list(parsed.skipped),
        largest=[
            PaperSize(**_ref(p).model_dump(), chars=_size(p))
            for p in sorted(parsed.papers, key=lambda p: (-_size(p), p.id))[: max(0, largest)]
        ],
        file_details=[_file_detail(Path(p)) for p in paths if Path(p).is_file()],
    )


def _listing(title: str, refs: list[PaperRef], total: int, limit: int) -> list[str]:
    lines = [f"{title:<26}{len(refs)} of {total} papers"]
    lines += [f"  {r.id}  {r.title[:70]}  ({r.source})" for r in refs[:limit]]
    if len(refs) > limit:
        lines.append(f"  ... and {len(refs) - limit} more (--json lists all)")
    return lines


def format_report(report: CorpusReport, limit: int = SHOWN) -> str:
    """The report as a short table a person can read (what `digest-rag inspect` prints)."""
    fmts = ", ".join(f"{k} {v}" for k, v in report.files_per_format.items()) or "none"
    out = [
        f"{'paths':<26}{', '.join(report.paths)}",
        f"{'files':<26}{report.files} ({fmts})",
        f"{'papers':<26}{report.papers}",
        f"{'sections (papers)':<26}{'':<12}" + "".join(f"{lang:>8}" for lang in LANGUAGES),
    ]
    for kind, by_lang in report.sections.items():
        out.append(f"{'':<26}{kind:<12}" + "".join(f"{by_lang.get(lang, 0):>8}" for lang in LANGUAGES))
    out += _listing("no English abstract", report.without_english_abstract, report.papers, limit)
    out += _listing("title from file name", report.title_from_filename, report.papers, limit)
    out += _listing("authors missing", report.missing_authors, report.papers, limit)
    out.append(f"{'duplicates merged':<26}{len(report.merged)}")
    out += [f"  {m}" for m in report.merged[:limit]]
    if len(report.merged) > limit:
        out.append(f"  ... and {len(report.merged) - limit} more (--json lists all)")
    out.append(f"{'skipped files':<26}{len(report.skipped)}")
    out += [f"  {s.source}: {s.reason}" for s in report.skipped[:limit]]
    if len(report.skipped) > limit:
        out.append(f"  ... and {len(report.skipped) - limit} more (--json lists all)")
    out.append(f"{'largest papers':<26}chars in sections")
    out += [f"  {p.chars:>8}  {p.id}  {p.title[:70]}  ({p.source})" for p in report.largest]
    for f in report.file_details:
        out.append("")
        if f.skipped:
            out.append(f"{f.source}: skipped ({f.skipped})")
            continue
        out.append(f"{f.source}: {f.format}, {len(f.papers)} paper(s)")
        for p in f.papers:
            flag = "  [title from file name]" if p.title_from_filename else ""
            out.append(f"  {p.id}  {p.title}{flag}")
            out.append(f"    authors: {', '.join(p.authors) or '-'}   date: {p.date or '-'}   tags: {' '.join('#' + t for t in p.tags) or '-'}")
            for s in p.sections:
                out.append(f"    {s.kind:<11} {s.language:<6} {s.chars:>6}  {s.preview}")
    return "\n".join(out)
