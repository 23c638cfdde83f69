"""Corpus variants for evaluation: the same papers and ids, with some text withheld.

The ``english-half`` variant answers "can a paper with no Korean text still be
found by a Korean question?" (issue 12). A fixed half of the papers, chosen by
``stable_bucket(paper id, 2, "english-half") == 0``, keeps only its English
text: the English title, English sections (abstracts, summaries, English
notes), tags and authors; the Korean title and every Korean or mixed section
are dropped. The other half is left bilingual. Paper ids never change, so the
relevance judgments of a query file apply to both variants.

The ``mixed`` variant (issue 25) reproduces a real collection in which some
papers' only text is an English abstract while the others carry Korean notes.
In english-half most English-only papers are reduced to a title, because the
ml-papers notes have no English text besides a link; that measures title
matching. In mixed only papers with English prose of their own (an English
abstract, summary or body of at least ``MIXED_MIN_ENGLISH`` characters) can be
made English-only, and a fixed half of them, ``stable_bucket(id, 2, "mixed")
== 0``, is; every other paper keeps everything. A Korean question about an
English-only paper then has to find its English abstract among other papers'
Korean notes.

The ``english`` variant keeps only every paper's English text: the English-only index a mixed collection's
English-only papers are compared with (issue 25: a Korean question about a paper with only an English
abstract should find it nearly as often among other papers' Korean notes as among English text alone).

A variant is written as a JSON Lines corpus (:func:`write_jsonl`) that the
``jsonl`` parser reads back with the same ids, so it is indexed by the
ordinary ``digest-rag build`` path.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from digest_rag.errors import CorpusError, UsageError
from digest_rag.evaluation.evaluate import stable_bucket
from digest_rag.models import CORPUS_VARIANTS, CorpusVariant, Paper

__all__ = [
    "VariantReport",
    "is_english_only",
    "has_english_prose",
    "english_only_in",
    "english_only",
    "apply_variant",
    "paper_record",
    "write_jsonl",
    "export_variant",
]

_SALT = "english-half"
_MIXED_SALT = "mixed"
#: English characters (abstract, summary, body) a paper needs before the mixed variant may make it English-only.
MIXED_MIN_ENGLISH = 200
_PROSE_KINDS = ("abstract", "summary", "body")


def is_english_only(paper_id: str) -> bool:
    """True when `paper_id` is in the fixed half that keeps only English text in the english-half variant."""
    return stable_bucket(paper_id, 2, _SALT) == 0


def has_english_prose(paper: Paper) -> bool:
    """True when `paper` has at least `MIXED_MIN_ENGLISH` characters of English abstract, summary or body."""
    return sum(len(s.text) for s in paper.sections if s.language == "en" and s.kind in _PROSE_KINDS) >= MIXED_MIN_ENGLISH


def english_only_in(paper: Paper, variant: CorpusVariant) -> bool:
    """True when `variant` keeps only the English text of `paper` (never in "full")."""
    if variant == "english-half":
        return is_english_only(paper.id)
    if variant == "mixed":
        return has_english_prose(paper) and stable_bucket(paper.id, 2, _MIXED_SALT) == 0
    return variant == "english"


def english_only(paper: Paper) -> Paper:
    """`paper` with its Korean title and all non-English sections removed (id, title, tags kept)."""
    return paper.model_copy(
        update={"title_ko": None, "sections": [s for s in paper.sections if s.language == "en"]}
    )


def apply_variant(papers: Iterable[Paper], variant: CorpusVariant) -> list[Paper]:
    """The papers of `variant`: unchanged for "full"; for "english-half" and "mixed", the papers
    `english_only_in` picks made English-only; for "english", every paper."""
    if variant not in CORPUS_VARIANTS:
        raise UsageError(f"unknown corpus variant {variant!r} (choose from {', '.join(CORPUS_VARIANTS)})")
    return [english_only(p) if english_only_in(p, variant) else p for p in papers]


def paper_record(paper: Paper) -> dict[str, Any]:
    """One paper as a record of the JSON Lines corpus schema (see parsing/jsonl.py), id included.

    Sections of the same kind and language become a list under one
    ``<kind>_<lang>`` key (the parser joins it with newlines), in their order.
    """
    rec: dict[str, Any] = {"id": paper.id, "title": paper.title}
    if paper.title_ko:
        rec["title_ko"] = paper.title_ko
    if paper.authors:
        rec["authors"] = paper.authors
    if paper.date:
        rec["date"] = paper.date.isoformat()
    if paper.tags:
        rec["tags"] = paper.tags
    if paper.urls:
        rec["urls"] = paper.urls
    for s in paper.sections:
        rec.setdefault(f"{s.kind}_{s.language}", []).append(s.text)
    return rec


def write_jsonl(papers: Sequence[Paper], path: str | Path) -> Path:
    """Write `papers` as a JSON Lines corpus at `path`, atomically (temp file, fsync, rename).

    Refuses to write over a directory or a symlink; nothing is left behind on failure.
    """
    target = Path(path)
    if target.is_symlink() or target.is_dir():
        raise UsageError(f"{target}: not a regular file path; refusing to write there")
    if not papers:
        raise UsageError("no papers to write")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            for p in papers:
                fh.write(json.dumps(paper_record(p), ensure_ascii=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it owner-only; a corpus file is meant to be shared
        os.replace(tmp, target)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise CorpusError(f"{target}: cannot write corpus ({exc})") from exc
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


class VariantReport(BaseModel):
    """What :func:`export_variant` wrote."""

    path: str
    variant: CorpusVariant
    papers: int
    english_only: int = Field(description="papers whose Korean text was withheld")
    skipped: int = Field(default=0, description="input files the parser skipped")


def export_variant(paths: Iterable[str | Path], variant: CorpusVariant, output: str | Path) -> VariantReport:
    """Parse `paths` as a build would, apply `variant` and write the papers as a JSONL corpus at `output`.

    Example: ``export_variant(["corpus"], "mixed", "/tmp/mixed.jsonl")``; then
    ``digest-rag build /tmp/mixed.jsonl`` indexes it with the original paper ids.
    """
    from digest_rag.parsing import parse_paths

    if variant not in CORPUS_VARIANTS:  # before the (slow) parse
        raise UsageError(f"unknown corpus variant {variant!r} (choose from {', '.join(CORPUS_VARIANTS)})")
    parsed = parse_paths(paths)
    papers = apply_variant(parsed.papers, variant)
    target = write_jsonl(papers, output)
    n_en = sum(1 for p in parsed.papers if english_only_in(p, variant))
    return VariantReport(
        path=str(target), variant=variant, papers=len(papers), english_only=n_en, skipped=len(parsed.skipped)
    )
