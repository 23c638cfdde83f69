"""Which digest format a file is in: by extension first, then by content scores."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import PurePath
from types import ModuleType

from ..errors import ParseError
from ..models import SOURCE_FORMATS, SourceFormat
from . import blog, daily, jsonl, notes, weekly

# Below this no format is convincing enough to parse the file as it.
THRESHOLD = 0.35
# A .md file is a note unless another format is this sure of itself.
STRONG = 0.8

#: The parser module of each format (its ``parse`` and ``score``): the one table naming formats, in the order
#: of `models.SourceFormat`, the one enumeration of them.
FORMAT_MODULES: dict[SourceFormat, ModuleType] = dict(
    zip(SOURCE_FORMATS, (weekly, daily, blog, notes, jsonl), strict=True))  # type: ignore[arg-type]
assert all(m.__name__.endswith("." + name) for name, m in FORMAT_MODULES.items()), "formats out of order"

SCORERS: dict[SourceFormat, Callable[[str], float]] = {name: m.score for name, m in FORMAT_MODULES.items()}


# Scorers read a bounded sample (whole lines from the head, plus the tail where notes keep their
# tag line): a format shows in its first pages, and scoring a 50 MB file whole costs ~1 GB.
SAMPLE_HEAD = 256_000
SAMPLE_TAIL = 16_000


def _sample(text: str) -> str:
    if len(text) <= SAMPLE_HEAD + SAMPLE_TAIL:
        return text
    head = text[:SAMPLE_HEAD].rsplit("\n", 1)[0]
    tail = text[-SAMPLE_TAIL:].split("\n", 1)[-1]
    return f"{head}\n{tail}"


def scores(text: str) -> dict[SourceFormat, float]:
    """Every format's score for the text (for huge texts, for a sample of its head and tail)."""
    sample = _sample(text)
    return {fmt: fn(sample) for fmt, fn in SCORERS.items()}


def detect_format(text: str, path: str) -> SourceFormat:
    """The format of a file's text; raises ParseError('... unknown format') when none fits."""
    suffix = PurePath(path).suffix.lower()
    if suffix == ".jsonl":
        return "jsonl"
    table = scores(text)
    best: SourceFormat = max(table, key=lambda f: table[f])
    if suffix in (".md", ".markdown"):
        others = {f: s for f, s in table.items() if f != "notes"}
        strongest = max(others, key=lambda f: others[f])
        return strongest if others[strongest] >= STRONG else "notes"
    if table[best] < THRESHOLD:
        shown = ", ".join(f"{f}={s:.2f}" for f, s in sorted(table.items()))
        raise ParseError(f"{path}: unknown format (scores {shown})")
    return best
