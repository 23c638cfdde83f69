"""Pydantic models for everything that crosses a module boundary.

Papers come out of the parsers, chunks out of the chunker, hits out of search,
and the manifest describes an index directory on disk. All of them serialise to
plain JSON (never pickle), so they can be stored in SQLite and printed by the
CLI as they are.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from digest_rag.errors import UsageError

if TYPE_CHECKING:  # pragma: no cover - pandas is optional, for to_frame() only
    import pandas as pd

    from digest_rag.search.snippets import Highlighter

# Every enumeration of the library, defined once. The tuples are derived from the Literal types so
# the two can never disagree; the CLI, the parsers and the query checks all take them from here.
SectionKind = Literal["summary", "abstract", "commentary", "key_points", "body"]
# Chunks add "title": one short passage per paper holding only its titles (see build/chunking.py).
ChunkKind = Literal["title", SectionKind]
Language = Literal["ko", "en", "mixed"]
SearchMode = Literal["hybrid", "dense", "lexical"]
SourceFormat = Literal["weekly", "daily", "blog", "notes", "jsonl"]
Backend = Literal["torch", "onnx", "onnx-int8"]
# Where a build parses, chunks and embeds: in this process, or on a Ray cluster (digest_rag.build.engines).
Engine = Literal["local", "ray"]
# Evaluation corpora: "full" as parsed; "english-half" keeps only English text for a fixed half; "mixed" does so
# for a fixed half of the papers that have an English abstract/summary/body (variants.py).
CorpusVariant = Literal["full", "english-half", "mixed", "english"]
# The stages a build reports through its progress callback, in the order they run ("merging": Ray's shards).
ProgressStage = Literal["parsing", "chunking", "encoding", "merging", "indexing"]

SECTION_KINDS: tuple[str, ...] = get_args(SectionKind)
CHUNK_KINDS: tuple[str, ...] = get_args(ChunkKind)
LANGUAGES: tuple[str, ...] = get_args(Language)
SEARCH_MODES: tuple[str, ...] = get_args(SearchMode)
SOURCE_FORMATS: tuple[str, ...] = get_args(SourceFormat)
BACKENDS: tuple[str, ...] = get_args(Backend)
ENGINES: tuple[str, ...] = get_args(Engine)
CORPUS_VARIANTS: tuple[str, ...] = get_args(CorpusVariant)
PROGRESS_STAGES: tuple[str, ...] = get_args(ProgressStage)

#: Called as ``progress(stage, done, total)`` while a build runs.
ProgressCallback = Callable[[ProgressStage, int, int], None]

# The E5 instruction prefixes: every query and passage is embedded with one of them.
QUERY_PREFIX = "query: "
PASSAGE_PREFIX = "passage: "


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
    title_from_filename: bool = Field(
        default=False, description="the note had no title line: the title was taken from its file name"
    )

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

    def __init__(
        self, hits: Iterable[SearchHit] = (), *, query: str = "", mode: str = "", strong_match: bool | None = None,
        highlighter: Highlighter | None = None, confidence: float | None = None, offset: int = 0,
    ) -> None:
        super().__init__(hits)
        self.query = query
        self.mode = mode
        #: Whether the top hit is a strong match (its BM25 score reaches the index's calibrated threshold, or it
        #: is the paper a name in the question belongs to; False: "no strong match"); None where no confidence
        #: signal was computed (an index built before calibration). `digest_rag.evaluation.evaluate` reports its
        #: rate per question kind.
        self.strong_match = strong_match
        #: Where the search's terms occur in a text (its snippets, a title), as the search analysed them.
        self.highlighter = highlighter
        #: The top hit's best BM25 score over that threshold (>= 1: strong); None without a calibration.
        self.confidence = confidence
        self.offset = offset  # how many better-ranked papers came before this page

    @property
    def no_strong_match(self) -> bool:
        """True when the index says no hit is a strong match (front ends then say "no strong match")."""
        return self.strong_match is False

    def to_records(self) -> list[dict[str, object]]:
        """One flat JSON-ready dict per hit (`SearchHit.to_record`), with its 1-based ``rank`` in the whole ranking
        (a page starting at ``offset`` 10 begins with rank 11) and the result set's ``strong_match`` (false when
        no hit matches the question well, null when unknown)."""
        return [{"rank": i, **h.to_record(), "strong_match": self.strong_match}
                for i, h in enumerate(self, self.offset + 1)]

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


class BuildOptions(BaseModel):
    """Every option that decides what a build writes. Saved in manifest.json and inherited by later builds.

    ``None`` means "the default": for ``model``, $DIGEST_RAG_MODEL or
    multilingual-e5-small (falling back to lexical-only with a warning when it
    cannot be loaded); for ``chunker``, the default settings sized to the
    model; for ``factory``, a FAISS index chosen by corpus size; for
    ``device``, the best one available.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str | None = Field(default=None, description="model name, alias or local path")
    backend: Backend = Field(default="torch", description="encoder runtime: torch, onnx or onnx-int8")
    device: str | None = Field(default=None, description="cpu, cuda or mps")
    batch_size: int = Field(default=32, ge=1, description="encoding batch size")
    factory: str | None = Field(default=None, description="FAISS factory string")
    chunker: ChunkerSettings | None = Field(default=None, description="how sections are cut into chunks")
    lexical_only: bool = Field(default=False, description="no embeddings: BM25 only")
    strict: bool = Field(default=False, description="fail when any input file is skipped")
    # Where the build ran. Saved for the record, never inherited (see ENGINE_OPTIONS): both engines
    # write the same index, and a cluster address is only good for the run that used it.
    engine: Engine = Field(default="local", description="where parse, chunk and embed run: local or ray")
    ray_address: str | None = Field(default=None, description="Ray cluster to join (ray engine; default: a local instance)")
    workers: int | None = Field(default=None, ge=1, description="Ray encoder actors (default: one per node or per GPU share)")
    gpus_per_worker: float = Field(default=0.0, ge=0.0, description="GPUs each Ray encoder actor holds")

    @classmethod
    def from_manifest(cls, manifest: IndexManifest) -> BuildOptions:
        """The options an index was built with; a format-1 index (which did not save them) gets them inferred."""
        if manifest.build_options is not None:
            return manifest.build_options.model_copy(update=ENGINE_DEFAULTS)
        return cls(model=manifest.model_name, backend=manifest.backend or "torch", chunker=manifest.chunker)

    def overridden(self, overrides: Mapping[str, Any]) -> BuildOptions:
        """These options with ``overrides`` applied; an unknown name or a bad value is a UsageError."""
        unknown = sorted(set(overrides) - set(type(self).model_fields))
        if unknown:
            raise UsageError(
                f"unknown build option(s) {', '.join(repr(u) for u in unknown)}; "
                f"known: {', '.join(type(self).model_fields)}"
            )
        try:
            return type(self).model_validate({**self.model_dump(), **overrides})
        except ValidationError as exc:
            first = exc.errors()[0]
            raise UsageError(f"build option {'.'.join(map(str, first['loc']))}: {first['msg']}") from exc


class BuildOverrides(
    create_model(  # type: ignore[misc]  # BuildOptions' fields, each optional: defined once, there
        "_GivenBuildOptions",
        __config__=ConfigDict(frozen=True, extra="forbid"),
        **{name: (f.annotation | None, Field(default=None, description=f.description))
           for name, f in BuildOptions.model_fields.items()},
    )
):
    """The build options a caller gave explicitly; None (not given) leaves the index's saved option, else the
    default. Made with `of`, which checks every name and value, so a bad option fails before a build takes the
    writer lock or reads a file."""

    @classmethod
    def of(cls, **options: Any) -> BuildOverrides:
        """The options given (None values dropped); an unknown name or a bad value is a UsageError."""
        given = {k: v for k, v in options.items() if v is not None}
        BuildOptions().overridden(given)  # every name and value checked as a build will apply them
        return cls.model_validate(given)

    def given(self) -> dict[str, Any]:
        """The options set, by name."""
        return {name: getattr(self, name) for name in self.model_fields_set}


# The engine options a later build does not inherit from the manifest: where to run is the caller's choice.
ENGINE_DEFAULTS: dict[str, Any] = {"engine": "local", "ray_address": None, "workers": None, "gpus_per_worker": 0.0}


class FusionCalibration(BaseModel):
    """How an index fuses its dense and lexical rankings, chosen at build time (search/calibration.py).

    Measured on pseudo-queries drawn from the index's own corpus (a Korean sentence of a paper's note,
    answered by the rest of the paper, or by the paper as an English-only paper would be indexed), never on
    a test set.
    """

    weights: dict[str, float] = Field(description="retriever -> weight in reciprocal rank fusion")
    rrf_k: int = Field(ge=1, description="the rank constant k of 1 / (k + rank)")
    method: str = Field(description="how the pseudo-queries were drawn and the weights chosen")
    model_name: str | None = Field(default=None, description="the dense model the weights were measured with")
    papers: int = Field(default=0, description="papers in the index when calibrated")
    queries: int = Field(description="pseudo-queries measured")
    lexical_mrr: float = Field(description="MRR@10 of lexical search on the pseudo-queries")
    dense_mrr: float = Field(description="MRR@10 of dense search on them")
    hybrid_mrr: float = Field(description="MRR@10 of hybrid search with the chosen weights")
    chance_mrr: float = Field(description="MRR@10 of a random ranking of the papers")
    gain_low: float = Field(description="2.5% quantile of the paired bootstrap of hybrid minus lexical MRR@10")
    lexical_r1: float = 0.0
    dense_r1: float = 0.0
    hybrid_r1: float = 0.0
    english_share: float | None = Field(default=None, description="weight of the pseudo-queries about a paper "
                                        "indexed by its English text alone: the index's share of such papers")
    shape: Literal["rrf", "zscore"] = Field(
        default="rrf", description="how the two rankings are fused: weighted reciprocal ranks (rrf, with rrf_k) or "
        "each side's scores as z-scores over its candidates, weighted and summed (zscore; search.fusion.fuse_scores)")
    english_weight: float | None = Field(
        default=None, ge=0, description="zscore: the dense weight of a candidate paper with no Korean text (a Korean "
        "question reaches it lexically only through translations); None: the dense weight, as for every paper")
    decision: str = Field(description="why these weights, in words")
    seconds: float = 0.0

    @property
    def dense_off(self) -> bool:
        """True when the dense side gets no weight (for any paper): hybrid search is lexical search."""
        return max(self.weights.get("dense", 0.0), self.english_weight or 0.0) <= 0.0


class IndexManifest(BaseModel):
    """manifest.json: what an index directory holds and how it was made."""

    format_version: int
    library_version: str
    created_at: str
    data_dir: str = Field(description="sub-directory holding this generation's files")
    model_name: str | None = Field(description="None for a lexical-only index")
    model_revision: str | None = None
    dimension: int | None = None
    query_prefix: str = QUERY_PREFIX
    passage_prefix: str = PASSAGE_PREFIX
    normalized: bool = True
    chunker: ChunkerSettings = Field(default_factory=ChunkerSettings)
    build_options: BuildOptions | None = Field(
        default=None, description="the options of the build that wrote this index (None in format 1, which did not save them)"
    )
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
    # Optional and additive: format 2 readers that predate it ignore the field (extra fields are ignored).
    fusion: FusionCalibration | None = Field(
        default=None, description="the fusion weights calibrated at build time; None: the defaults (no dense side, "
        "or an index built before calibration)")
