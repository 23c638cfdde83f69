"""Pydantic models for everything that crosses a module boundary.

Papers come out of the parsers, chunks out of the chunker, hits out of search,
and the manifest describes an index directory on disk. All of them serialise to
plain JSON (never pickle), so they can be stored in SQLite and printed by the
CLI as they are.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:  # pragma: no cover - pandas is optional, for to_frame() only
    import pandas as pd

SectionKind = Literal["summary", "abstract", "commentary", "key_points", "body"]
# Chunks add "title": one short passage per paper holding only its titles (see chunking.py).
ChunkKind = Literal["title", "summary", "abstract", "commentary", "key_points", "body"]
Language = Literal["ko", "en", "mixed"]
SearchMode = Literal["hybrid", "dense", "lexical"]
SourceFormat = Literal["weekly", "daily", "blog", "notes", "jsonl"]

SECTION_KINDS: tuple[str, ...] = ("summary", "abstract", "commentary", "key_points", "body")
LANGUAGES: tuple[str, ...] = ("ko", "en", "mixed")
SEARCH_MODES: tuple[str, ...] = ("hybrid", "dense", "lexical")


class Section(BaseModel):
    """One piece of a paper's text, in one language, with one role."""

    model_config = ConfigDict(frozen=True)

    kind: SectionKind
    language: Language
    text: str


class Paper(BaseModel):
    """A paper as read from a digest, with its bilingual sections."""

    id: str = Field(description="arXiv id when known (e.g. '2404.02151'), else a slug of title and date")
    title: str = Field(description="English title (or the only title given)")
    title_ko: str | None = None
    authors: list[str] = Field(default_factory=list)
    date: _dt.date | None = None
    tags: list[str] = Field(default_factory=list)
    urls: list[str] = Field(default_factory=list)
    source: str = Field(default="", description="file the paper was read from")
    format: SourceFormat | None = None
    sections: list[Section] = Field(default_factory=list)

    @property
    def display_title(self) -> str:
        """English title, followed by the Korean title where one is known."""
        if self.title_ko and self.title_ko != self.title:
            return f"{self.title} / {self.title_ko}"
        return self.title


class Chunk(BaseModel):
    """A token-bounded, sentence-aligned piece of one section of one paper."""

    model_config = ConfigDict(frozen=True)

    id: int = Field(description="stable non-negative int64, derived from paper id and position")
    paper_id: str
    section_index: int = Field(description="index into Paper.sections; -1 for the title chunk")
    section_kind: ChunkKind
    language: Language
    text: str
    start: int = Field(description="character offset of the chunk in its section's text")
    end: int = Field(description="end offset (exclusive) in the section's text")


class SearchHit(BaseModel):
    """One paper in a result list, with the chunk that matched it best."""

    paper: Paper
    score: float
    snippet: str
    section: ChunkKind
    language: Language
    chunk_id: int
    modes: list[SearchMode] = Field(default_factory=list, description="which retrievers found this paper")

    def to_record(self) -> dict[str, object]:
        """A flat JSON-ready dict: what `digest-rag search --json` prints per hit."""
        p = self.paper
        return {
            "paper_id": p.id,
            "title": p.title,
            "title_ko": p.title_ko,
            "date": p.date.isoformat() if p.date else None,
            "authors": p.authors,
            "tags": p.tags,
            "urls": p.urls,
            "score": round(float(self.score), 6),
            "snippet": self.snippet,
            "section": self.section,
            "language": self.language,
            "modes": list(self.modes),
            "source": p.source,
        }


class SearchResults(list[SearchHit]):
    """What `DigestIndex.search` returns: a plain list of SearchHit, best first, plus conversions.

    Example:
        >>> hits = index.search("스케일링 법칙", k=5)  # doctest: +SKIP
        >>> hits.to_frame()[["title", "title_ko", "date", "score"]]  # doctest: +SKIP
    """

    def __init__(self, hits: Iterable[SearchHit] = (), *, query: str = "", mode: str = "") -> None:
        super().__init__(hits)
        self.query = query
        self.mode = mode

    def to_records(self) -> list[dict[str, object]]:
        """One flat JSON-ready dict per hit (`SearchHit.to_record`), with its 1-based ``rank``."""
        return [{"rank": i, **h.to_record()} for i, h in enumerate(self, 1)]

    def to_frame(self) -> pd.DataFrame:
        """The hits as a pandas DataFrame, one row per paper (needs pandas: pip install 'digest-rag[pandas]')."""
        try:
            import pandas as pd
        except ImportError as exc:  # optional dependency: the library itself never needs pandas
            raise ImportError("SearchResults.to_frame needs pandas: pip install 'digest-rag[pandas]'") from exc
        columns = ["rank", "paper_id", "title", "title_ko", "date", "authors", "tags", "urls", "score", "snippet",
                   "section", "language", "modes", "source"]
        frame = pd.DataFrame.from_records(self.to_records(), columns=columns)
        frame["date"] = pd.to_datetime(frame["date"])  # real dates sort, filter and plot; missing ones are NaT
        return frame


class ChunkerSettings(BaseModel):
    """How sections are cut into chunks. Part of the manifest: changing it forces a rebuild."""

    model_config = ConfigDict(frozen=True)

    target_tokens: int = Field(default=200, ge=16, description="aim for chunks of about this many tokens")
    overlap_tokens: int = Field(default=40, ge=0, description="tokens of trailing context repeated in the next chunk")
    max_tokens: int = Field(default=512, ge=16, description="hard cap for prefix + title + chunk (model max length)")
    title_in_passage: bool = Field(default=True, description="prepend the paper title to every passage embedded")
    title_chunk: bool = Field(default=True, description="also embed one passage of the titles alone per paper")


class IndexManifest(BaseModel):
    """manifest.json: what an index directory holds and how it was made."""

    format_version: int
    library_version: str
    created_at: str
    data_dir: str = Field(description="sub-directory holding this generation's files")
    model_name: str | None = Field(description="None for a lexical-only index")
    model_revision: str | None = None
    dimension: int | None = None
    query_prefix: str = "query: "
    passage_prefix: str = "passage: "
    normalized: bool = True
    chunker: ChunkerSettings = Field(default_factory=ChunkerSettings)
    corpus_fingerprint: str
    inputs_fingerprint: str | None = Field(
        default=None,
        description="hash of the input files' bytes and the build options; a build with the same one has nothing to do "
        "(None after `update`, whose inputs are not one build's)",
    )
    paper_count: int
    chunk_count: int
    faiss_version: str | None = None
    index_type: str | None = Field(default=None, description="FAISS factory string, None when lexical-only")
    search_param: int | None = Field(
        default=None, description="nprobe (IVF) or efSearch (HNSW) saved with the FAISS index; None for exact search"
    )
    backend: str | None = Field(
        default=None, description="encoder backend that embedded the passages (torch, onnx, onnx-int8); informational"
    )
    lexical: bool = True
    sources: list[str] = Field(default_factory=list)
    files: dict[str, str] = Field(default_factory=dict, description="file name -> sha256, for integrity checks")
