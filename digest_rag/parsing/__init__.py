"""Reading digest files into Papers: format detection, per-format parsers, corpus walking.

Public API: `parse_file`, `parse_paths`, `detect_format`, `ParseResult`, `Skip`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

from ..errors import CorpusError, ParseError
from ..models import Paper, Section, SourceFormat
from ..text import CorpusFile, decode_bytes, file_kind, read_text
from . import jsonl  # its record-by-record reader
from ._util import merge_unique
from .base import ParseResult, Skip
from .detect import FORMAT_MODULES, detect_format

__all__ = ["PaperMerger", "ParseResult", "Skip", "check_strict", "combine_parsed", "corpus_files", "detect_format", "file_name_error", "parse_bytes", "parse_file",
           "parse_paths", "parse_text", "iter_file", "iter_text", "PARSERS", "CORPUS_SUFFIXES"]

PARSERS: dict[SourceFormat, Callable[[str, str], list[Paper]]] = {
    name: module.parse for name, module in FORMAT_MODULES.items()}
CORPUS_SUFFIXES: tuple[str, ...] = (".txt", ".md", ".markdown", ".jsonl")
# Repository furniture that sits beside corpora and is never a digest.
_IGNORED_STEMS = {"readme", "license", "licence", "changelog", "contributing"}


def parse_file(path: str | Path, format: SourceFormat | None = None) -> ParseResult:
    """Parse one file (format detected unless given).

    Raises ParseError when the file cannot be read, decoded, recognised or
    yields no paper; `parse_paths` turns those into `Skip` entries instead.
    """
    return parse_text(read_text(path), str(path), format)


def parse_bytes(data: bytes, source: str, format: SourceFormat | None = None) -> ParseResult:
    """`parse_file` for a file's bytes already read (by a build's driver, for a worker elsewhere)."""
    return parse_text(decode_bytes(data, source), source, format)


def parse_text(text: str, source: str, format: SourceFormat | None = None) -> ParseResult:
    """Parse the decoded text of the file ``source``; raises ParseError like `parse_file`."""
    fmt, papers = iter_text(text, source, format)
    return ParseResult(papers=list(papers), files={source: fmt})


def iter_file(path: str | Path, format: SourceFormat | None = None) -> tuple[SourceFormat, Iterator[Paper]]:
    """`parse_file` with the papers handed over one at a time (`iter_text`)."""
    return iter_text(read_text(path), str(path), format)


def iter_text(text: str, source: str, format: SourceFormat | None = None) -> tuple[SourceFormat, Iterator[Paper]]:
    """The format of ``text`` and an iterator over its papers, for a build that streams them to disk.

    A JSONL file of a million records is read record by record, never held as a
    million Paper objects. The ParseError of a bad record comes from the
    iterator, after the papers before it: the caller drops what it took from
    this file, since a file with a bad record is skipped whole.
    """
    if not text.strip():
        raise ParseError(f"{source}: empty file")
    fmt: SourceFormat = format or detect_format(text, source)
    if fmt not in PARSERS:
        raise ParseError(f"{source}: unknown format {fmt!r}")
    raw: Iterator[Paper] = jsonl.iter_parse(text, source) if fmt == "jsonl" else iter(PARSERS[fmt](text, source))

    def stamped() -> Iterator[Paper]:
        found = False
        for paper in raw:
            # Parsers already set these; re-stamping keeps the contract when called with a forced format.
            paper = paper.model_copy(update={"source": source, "format": fmt})
            _check_unicode([paper], source)
            found = True
            yield paper
        if not found:
            raise ParseError(f"{source}: no papers found ({fmt} format)")

    return fmt, stamped()


def _check_unicode(papers: list[Paper], source: str) -> None:
    """Refuse papers holding text that cannot be written as UTF-8 (lone surrogates).

    Decoded files cannot hold any, but JSON escapes and undecodable file names can; SQLite,
    JSON output and terminals would fail on them far from their cause, so the file is skipped here.
    """
    for p in papers:
        try:
            p.model_dump_json()
        except ValueError as exc:  # pydantic's serialisation error on a lone surrogate
            if "surrogate" not in str(exc):
                raise
            raise ParseError(f"{_printable(source)}: paper {p.id[:60]!r} holds text that is not valid Unicode") from None


def _printable(text: str) -> str:
    """The text with anything that cannot be written as UTF-8 shown as an escape."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _not_a_file(p: Path) -> str:
    """Why a path named on the command line is neither a file nor a directory to read."""
    try:
        mode = p.stat().st_mode
    except FileNotFoundError:
        return "dangling symbolic link" if p.is_symlink() else "no such file or directory"
    except OSError as exc:
        return f"cannot read ({exc.strerror or exc})"
    return f"{file_kind(mode)}, not a regular file"


def corpus_files(paths: Iterable[str | Path]) -> tuple[list[Path], list[Skip]]:
    """The files :func:`parse_paths` reads for ``paths`` (sorted, de-duplicated) and skips for missing paths."""
    return _expand(paths)


def _expand(paths: Iterable[str | Path]) -> tuple[list[Path], list[Skip]]:
    """Files to parse (sorted, de-duplicated) and skips for paths that cannot be read.

    Directories are walked without following links to directories, and links
    to files outside them are skipped; a subdirectory that cannot be read is a
    skip too (``--strict`` fails on it). Files found in a directory are
    `CorpusFile`s: `read_bytes` opens them without following a link swapped in
    after this listing and checks where the opened file really is. A file named
    explicitly is read wherever it is.
    """
    files: list[Path] = []
    skips: list[Skip] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            root = p.resolve()

            def unreadable(exc: OSError) -> None:
                where = exc.filename if exc.filename is not None else str(p)
                skips.append(Skip(source=_printable(str(where)),
                                  reason=f"cannot read directory ({exc.strerror or exc}); its files are not indexed"))

            for dirpath, dirnames, filenames in os.walk(p, onerror=unreadable):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))  # hidden folders are not read
                for name in filenames:
                    f = Path(dirpath, name)
                    if (
                        name.startswith(".")
                        or f.suffix.lower() not in CORPUS_SUFFIXES
                        or f.stem.lower() in _IGNORED_STEMS
                        or not f.is_file()
                    ):
                        continue
                    # A corpus directory is untrusted: a link in it must not pull in a file from elsewhere.
                    if f.is_symlink() and not f.resolve().is_relative_to(root):
                        skips.append(Skip(source=_printable(str(f)),
                                          reason="symbolic link to a file outside the corpus directory"))
                        continue
                    files.append(CorpusFile(f, root=root))
        elif p.is_file():
            files.append(p)  # named explicitly: parsed whatever its name
        else:
            skips.append(Skip(source=_printable(str(p)), reason=_not_a_file(p)))
    unique = sorted(set(files), key=lambda f: str(f))
    return unique, skips


class PaperMerger:
    """Papers sharing one id merged into the first: it keeps its metadata; each later copy adds its new
    sections, tags and urls and fills blanks.

    Each `add` costs the size of the copy added, not of the paper merged so far: re-merging the growing
    paper per copy made 8,000 records sharing an id take minutes.
    """

    def __init__(self, first: Paper) -> None:
        self.first = first
        self._sections: list[Section] = list(first.sections)
        self._texts = {s.text for s in first.sections}
        self._tags = _Unique(first.tags)
        self._urls = _Unique(first.urls)
        self._fill = {"authors": first.authors, "title_ko": first.title_ko, "date": first.date}

    def add(self, later: Paper) -> str:
        """Merge one later copy; returns the note `ParseResult.merged` keeps for it."""
        for s in later.sections:
            if s.text not in self._texts:
                self._texts.add(s.text)
                self._sections.append(s)
        self._tags.extend(later.tags)
        self._urls.extend(later.urls)
        for key, value in self._fill.items():
            if not value:
                self._fill[key] = getattr(later, key)
        return f"{later.id}: {later.source} merged into {self.first.source}"

    def mark(self) -> tuple[int, int, int, dict[str, object]]:
        """Where the merge stands now, for `rollback` (a file whose later record fails is dropped whole)."""
        return len(self._sections), len(self._tags.items), len(self._urls.items), dict(self._fill)

    def rollback(self, mark: tuple[int, int, int, dict[str, object]]) -> None:
        """Forget the copies added since `mark`."""
        sections, tags, urls, fill = mark
        for s in self._sections[sections:]:
            self._texts.discard(s.text)
        del self._sections[sections:]
        self._tags.truncate(tags)
        self._urls.truncate(urls)
        self._fill = fill

    def paper(self) -> Paper:
        """The merged paper."""
        return self.first.model_copy(update={"sections": list(self._sections), "tags": list(self._tags.items),
                                             "urls": list(self._urls.items), **self._fill})


class _Unique:
    """A list keeping the first occurrence of each item, extended in linear time (`merge_unique`'s rule)."""

    def __init__(self, items: Iterable[str]) -> None:
        self.items = merge_unique(items)
        self._seen = set(self.items)

    def extend(self, items: Iterable[str]) -> None:
        for item in items:
            if item not in self._seen:
                self._seen.add(item)
                self.items.append(item)

    def truncate(self, n: int) -> None:
        self._seen.difference_update(self.items[n:])
        del self.items[n:]


def parse_paths(
    paths: Iterable[str | Path],
    strict: bool = False,
    progress: Callable[[str, int, int], None] | None = None,
) -> ParseResult:
    """Parse files and directories (recursively: *.txt, *.md, *.markdown, *.jsonl).

    Hidden files and README/LICENSE files are not read. Files that cannot be
    parsed become `Skip` entries with a one-line reason, or, with strict=True,
    a CorpusError listing them. Papers sharing an id are merged: the first by
    sorted path keeps its metadata, later copies add differing sections and
    their tags/urls; each merge is noted in `merged`. ``progress``, when
    given, is called as ``progress("parsing", files_done, files_total)``.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]  # a lone path is a common slip; a str would iterate by character
    files, skips = _expand(paths)

    def outcomes() -> Iterator[tuple[str, ParseResult | ParseError]]:
        for f, name, bad_name in walk_corpus(files, progress):
            if bad_name is not None:
                yield name, bad_name
                continue
            try:
                yield name, parse_file(f)
            except ParseError as exc:
                yield name, exc

    return check_strict(combine_parsed(outcomes(), skips), strict)


def walk_corpus(files: Sequence[Path], progress: Callable[[str, int, int], None] | None = None,
                ) -> Iterator[tuple[Path, str, ParseError | None]]:
    """The corpus walk every reader of files shares (`parse_paths`, a build's spool): each listed file in
    order as (path, its name as printable text, the ParseError its name alone earns or None), with
    ``progress("parsing", done, total)`` reported before each file and once at the end."""
    for done, f in enumerate(files):
        if progress:
            progress("parsing", done, len(files))
        bad_name = file_name_error(f)
        yield f, (_printable(str(f)) if bad_name is not None else str(f)), bad_name
    if progress:
        progress("parsing", len(files), len(files))


def file_name_error(path: str | Path) -> ParseError | None:
    """A ParseError when the file's name is not valid UTF-8 (it would carry surrogates into every record)."""
    source = str(path)
    if _printable(source) == source:
        return None
    return ParseError(f"{_printable(source)}: file name is not valid UTF-8; rename the file")


def combine_parsed(outcomes: Iterable[tuple[str, ParseResult | ParseError]], skips: Iterable[Skip] = ()) -> ParseResult:
    """One ParseResult from per-file outcomes, in the order given (sorted paths, as `parse_paths` reads them).

    Failed files become `Skip` entries with a one-line reason; papers sharing an
    id are merged into the first. Any engine that parses files elsewhere
    feeds its outcomes through here, so merging is the same everywhere.
    """
    result = ParseResult(skipped=list(skips))
    by_id: dict[str, int] = {}
    merging: dict[int, PaperMerger] = {}  # position in result.papers -> its merge, finished at the end
    for source, one in outcomes:
        if isinstance(one, ParseError):
            reason = " ".join(str(one).split()) or "cannot parse"
            # The source is already in Skip.source; keep the reason short.
            if reason.startswith(source + ":"):
                reason = reason[len(source) + 1 :].strip() or reason
            result.skipped.append(Skip(source=source, reason=reason))
            continue
        result.files.update(one.files)
        for paper in one.papers:
            if paper.id in by_id:
                idx = by_id[paper.id]
                merger = merging.get(idx)
                if merger is None:
                    merger = merging[idx] = PaperMerger(result.papers[idx])
                result.merged.append(merger.add(paper))
            else:
                by_id[paper.id] = len(result.papers)
                result.papers.append(paper)
    for idx, merger in merging.items():
        result.papers[idx] = merger.paper()
    return result


def check_strict(result: ParseResult, strict: bool) -> ParseResult:
    """``result``, or with strict=True a CorpusError listing its skipped files if any."""
    if strict and result.skipped:
        listing = "; ".join(f"{s.source}: {s.reason}" for s in result.skipped)
        raise CorpusError(f"{len(result.skipped)} file(s) skipped in strict mode: {listing}")
    return result
