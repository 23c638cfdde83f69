"""`DigestIndex`: the one object users hold. It opens an index directory and answers searches.

The work lives elsewhere: `build`/`update` delegate to the build pipeline
(build/), opening a generation to storage/generation.py, and every search to
the query pipeline (search/pipeline.py: retrievers, fusion, aggregation and
snippets). See docs/ARCHITECTURE.md for the path of a build and of a query.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from digest_rag.errors import IndexClosedError, IndexCorruptedError, PaperNotFoundError
from digest_rag.lexical.terms import QueryTerms
from digest_rag.models import (
    BuildOverrides,
    ChunkerSettings,
    IndexManifest,
    Paper,
    SearchResults,
)
from digest_rag.search.known_item import NameTable
from digest_rag.search.pipeline import ANALYSED_QUESTIONS, QueryPipeline
from digest_rag.search.request import (
    check_k,
    check_min_score,
    check_mode,
    check_offset,
    clean_query,
    make_filters,
)
from digest_rag.search.retrievers import DenseRetriever, lexical_only_error
from digest_rag.search.similar import similar_text
from digest_rag.search.snippets import Highlighter
from digest_rag.storage.chunk_table import ChunkTable
from digest_rag.storage.generation import OpenGeneration, open_generation
from digest_rag.storage.layout import DEFAULT_INDEX_DIR, manifest_moved, read_manifest
from digest_rag.storage.summary import index_summary

if TYPE_CHECKING:  # pragma: no cover - the build pipeline is imported by build() and update() only:
    # a search process need not load parsing, chunking, FAISS building and the embedding cache
    from digest_rag.build.report import BuildOutcome, BuildReport
    from digest_rag.dense.encoder import Encoder
    from digest_rag.lexical.feedback import FeedbackSettings
    from digest_rag.models import ProgressCallback

__all__ = ["ANALYSED_QUESTIONS", "DEFAULT_INDEX_DIR", "DigestIndex"]


class DigestIndex:
    """A loaded index: papers, chunks, FAISS vectors and BM25, ready to search.

    Example:
        >>> from digest_rag import DigestIndex
        >>> index = DigestIndex.build(["corpus"], index_dir="indexes/default")  # doctest: +SKIP
        >>> for hit in index.search("긴 컨텍스트를 악용하는 탈옥 공격", k=3):  # doctest: +SKIP
        ...     print(hit.paper.title, round(hit.score, 3))
    """

    def __init__(
        self,
        index_dir: Path,
        manifest: IndexManifest,
        generation: OpenGeneration,
        *,
        model: str | None = None,
        encoder: Encoder | None = None,
        device: str | None = None,
        backend: str | None = None,
    ) -> None:
        self.index_dir = index_dir
        # Queries are encoded by the runtime that embedded the passages unless told otherwise: an onnx-int8
        # index answers through ONNX Runtime alone, without importing torch.
        backend = backend or manifest.backend or "torch"
        self.manifest = manifest
        self.store = generation.store
        self.faiss_index = generation.faiss_index
        self.lexical = generation.lexical
        self._generation = generation
        self.dense: DenseRetriever | None = None
        if generation.faiss_index is not None:
            self.dense = DenseRetriever(generation.faiss_index, manifest, model=model, device=device, backend=backend,
                                        encoder=encoder)
        self._query = QueryPipeline(index_dir, manifest, generation.store, generation.lexical, self.dense)
        self.lexical_retriever = self._query.lexical_retriever
        self.last_build: BuildReport | None = None
        self._closed = False

    # ------------------------------------------------------------------ opening
    @classmethod
    def load(
        cls,
        index_dir: str | Path = DEFAULT_INDEX_DIR,
        *,
        model: str | None = None,
        encoder: Encoder | None = None,
        device: str | None = None,
        backend: str | None = None,
        verify: bool = True,
        search_param: int | None = None,
        feedback: FeedbackSettings | None = None,
    ) -> DigestIndex:
        """Open an index directory. The query encoder loads lazily on the first dense search.

        ``backend`` (torch, onnx, onnx-int8) defaults to the one the index was built with.

        ``model`` (or $DIGEST_RAG_MODEL) may name the query model explicitly; it
        must be the model the index was built with. ``verify`` checks every
        file's sha256 against the manifest; even without it the FAISS file's
        checksum is checked, because FAISS must never be handed a damaged file.
        Any damage raises IndexCorruptedError (or IndexVersionError) naming the file.
        ``feedback`` switches on cross-language pseudo-relevance feedback for lexical ranking
        (`digest_rag.lexical.feedback`; off by default, see docs/EVAL.md).
        """
        index_dir = Path(index_dir)
        for attempt in range(3):
            manifest = read_manifest(index_dir)
            try:
                generation = open_generation(index_dir, manifest, verify, search_param)
                break
            except IndexCorruptedError:
                # A build may have committed a newer generation and deleted this one between our
                # reading the manifest and opening its files: if the manifest moved on, open that.
                if attempt < 2 and manifest_moved(index_dir, manifest):
                    continue
                raise
        try:
            idx = cls(index_dir, manifest, generation, model=model, encoder=encoder, device=device, backend=backend)
        except BaseException:
            generation.close()
            raise
        if idx.lexical is not None:
            idx.lexical.feedback = feedback
        return idx

    @property
    def encoder(self) -> Encoder:
        """The query encoder (loaded on first use); raises ModelUnavailableError or IncompatibleModelError."""
        if self.dense is None:
            raise lexical_only_error(self.index_dir)
        return self.dense.encoder

    @property
    def loaded_encoder(self) -> Encoder | None:
        """The query encoder if one is loaded already, else None: a reload of this index can reuse it."""
        return self.dense.loaded_encoder if self.dense is not None else None

    @property
    def generation(self) -> str:
        """The generation this object reads (its data directory); each committed build makes a new one."""
        return self.manifest.data_dir

    def close(self) -> None:
        """Release the SQLite connection. Searching afterwards raises IndexClosedError; closing twice is fine."""
        self._closed = True
        self._generation.close()

    def _check_open(self) -> None:
        if self._closed:
            raise IndexClosedError(
                f"the index {self.index_dir} was closed; open it again with DigestIndex.load({str(self.index_dir)!r})"
            )

    def __enter__(self) -> DigestIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------- building
    @classmethod
    def build(
        cls,
        paths: Iterable[str | Path] = ("corpus",),
        index_dir: str | Path = DEFAULT_INDEX_DIR,
        *,
        model: str | None = None,
        encoder: Encoder | None = None,
        lexical_only: bool | None = None,
        chunker: ChunkerSettings | None = None,
        factory: str | None = None,
        device: str | None = None,
        batch_size: int | None = None,
        backend: str | None = None,
        strict: bool | None = None,
        wait: float = 0.0,
        progress: ProgressCallback | None = None,
        force: bool = False,
        engine: str | None = None,
        ray_address: str | None = None,
        workers: int | None = None,
        gpus_per_worker: float | None = None,
        **unknown: Any,
    ) -> DigestIndex:
        """Parse ``paths``, chunk, embed and write an index to ``index_dir``; return it loaded.

        Options left out (None) are those the index was built with (saved in
        its manifest as `BuildOptions`), else the defaults; an option given
        explicitly wins, and re-encodes when it changes what the vectors mean
        (model, chunker settings, int8 weights). Rebuilding over an existing
        index re-encodes only passages whose text changed. When no input file
        changed and the options are those of the last build, nothing is
        parsed, loaded or written (``last_build.up_to_date``); ``force=True``
        rebuilds anyway. Without a model and with the default one unavailable,
        the index is built lexical-only with a warning; an explicitly requested
        model that is unavailable raises ModelUnavailableError. An unknown
        option raises UsageError.

        ``engine="ray"`` parses, chunks and embeds on a Ray cluster (extra ``ray``; ``ray_address``,
        ``workers``, ``gpus_per_worker``); the index is the one the local engine writes.
        """
        overrides = BuildOverrides.of(model=model, lexical_only=lexical_only, chunker=chunker, factory=factory,
                                      device=device, batch_size=batch_size, backend=backend, strict=strict,
                                      engine=engine, ray_address=ray_address, workers=workers,
                                      gpus_per_worker=gpus_per_worker, **unknown)
        from digest_rag.build.pipeline import build_index

        outcome = build_index(paths, Path(index_dir), overrides, encoder=encoder, wait=wait, progress=progress,
                              force=force)
        return cls._from_outcome(Path(index_dir), outcome, device=device, backend=backend)

    @staticmethod
    def dry_run(
        paths: Iterable[str | Path] = ("corpus",),
        index_dir: str | Path = DEFAULT_INDEX_DIR,
        *,
        encoder: Encoder | None = None,
        wait: float = 0.0,
        force: bool = False,
        **options: Any,
    ) -> BuildReport:
        """What `build` with the same arguments would do, without encoding or writing anything.

        The report lists the papers added, changed and removed, the chunks to
        encode (``encoded``) and those found in the embedding cache
        (``reused``), how many papers would be cut into chunks again
        (``rechunked``) and whether the model must load (``model_loaded``);
        ``up_to_date`` when nothing would be done. Parsing and chunking do run.
        ``options`` are `build`'s (model, lexical_only, chunker, factory, ...).
        """
        from digest_rag.build.pipeline import build_index

        outcome = build_index(paths, Path(index_dir), BuildOverrides.of(**options), encoder=encoder, wait=wait,
                              force=force, dry_run=True)
        return outcome.report

    @classmethod
    def update(
        cls,
        paths: Iterable[str | Path],
        index_dir: str | Path = DEFAULT_INDEX_DIR,
        *,
        encoder: Encoder | None = None,
        wait: float = 0.0,
        progress: ProgressCallback | None = None,
        prune: bool = False,
        **options: Any,
    ) -> DigestIndex:
        """Add or replace the papers of ``paths`` in an existing index, keeping every other paper.

        ``prune=True`` also drops the papers of source files that no longer exist (paths as the build was
        given them, so run it from the directory the index was built in); ``paths`` may then be empty.
        ``options`` are `build`'s (model, lexical_only, chunker, factory, device, batch_size, backend,
        strict, engine, ray_address, workers, gpus_per_worker). The index keeps its saved options and
        its kind (a lexical-only index stays lexical-only unless ``model`` is given); the engine
        options are never inherited. An unknown option raises UsageError.
        """
        from digest_rag.build.pipeline import update_index

        overrides = BuildOverrides.of(**options)
        outcome = update_index(paths, Path(index_dir), overrides, encoder=encoder, wait=wait, progress=progress,
                               prune=prune)
        return cls._from_outcome(Path(index_dir), outcome, device=overrides.device, backend=overrides.backend)

    @classmethod
    def remove(
        cls,
        paths: Iterable[str | Path],
        index_dir: str | Path = DEFAULT_INDEX_DIR,
        *,
        prune: bool = False,
        wait: float = 0.0,
    ) -> DigestIndex:
        """Drop the papers of source files from an index, keeping every other paper as it is.

        Each path names a source file as ``info --json`` lists it (or the same file by another path), or a
        directory: every source under it. A path that matches no source raises CorpusError; ``prune=True``
        also drops the papers of source files that no longer exist. Nothing is parsed or encoded: the new
        generation reuses the kept papers' chunks and embeddings. ``last_build.removed`` lists the paper ids.
        """
        from digest_rag.build.pipeline import update_index

        outcome = update_index([], Path(index_dir), BuildOverrides(), wait=wait, remove=[str(p) for p in paths],
                               prune=prune)
        return cls._from_outcome(Path(index_dir), outcome, device=None, backend=None)

    @classmethod
    def _from_outcome(cls, index_dir: Path, outcome: BuildOutcome, *, device: str | None,
                      backend: str | None) -> DigestIndex:
        """The index a build just committed (or found up to date), with the build's encoder for queries."""
        backend = outcome.encoder.backend if outcome.encoder else backend
        if outcome.opened is not None:
            manifest = read_manifest(index_dir)
            try:
                idx = cls(index_dir, manifest, outcome.opened, encoder=outcome.encoder, device=device, backend=backend)
            except BaseException:
                outcome.opened.close()
                raise
        else:
            idx = cls.load(index_dir, encoder=outcome.encoder, device=device, backend=backend, verify=False)
        idx.last_build = outcome.report
        return idx

    # ---------------------------------------------------------------- searching
    @property
    def papers(self) -> dict[str, Paper]:
        """All papers in the index, by id."""
        self._check_open()
        return self._query.papers()

    def paper(self, paper_id: str) -> Paper | None:
        """One paper by id, or None; read from the store without loading every paper."""
        self._check_open()
        return self._query.paper(paper_id)

    def get(self, paper_id: str) -> Paper:
        """The paper with id ``paper_id``, whole (titles, date, authors, tags, urls, every section).

        Raises PaperNotFoundError (CLI exit 2) when the index has no such paper; `paper` returns None instead.
        """
        self._check_open()
        paper = self.paper(paper_id) if isinstance(paper_id, str) and paper_id else None
        if paper is None:
            shown = paper_id[:200] if isinstance(paper_id, str) else paper_id
            raise PaperNotFoundError(f"no paper with id {shown!r} in the index")
        return paper

    def search(
        self,
        query: str | QueryTerms,
        k: int = 10,
        *,
        mode: str = "hybrid",
        date_from: _dt.date | str | None = None,
        date_to: _dt.date | str | None = None,
        tags: str | Sequence[str] | None = None,
        language: str | Sequence[str] | None = None,
        section: str | Sequence[str] | None = None,
        fusion_weights: Mapping[str, float] | None = None,
        author: str | Sequence[str] | None = None,
        min_score: float | None = None,
        offset: int = 0,
    ) -> SearchResults:
        """Papers that answer ``query``, best first, each once with its best chunk as snippet.

        ``mode`` is "hybrid" (default: dense and BM25 fused by reciprocal rank),
        "dense" or "lexical". Filters: ``date_from``/``date_to`` (inclusive,
        date or ISO string), ``tags`` (any of; one string is one tag),
        ``language`` of the matched text ("ko", "en", "mixed"), ``section``
        kind. When the encoder cannot be loaded, hybrid search warns
        (ModelFallbackWarning) and answers from BM25. ``fusion_weights``
        (retriever -> weight) overrides the weights the index calibrated when it was built
        (`IndexManifest.fusion`, see `search.calibration`; `fusion.DEFAULT_FUSION_WEIGHTS` for an index without
        them) in hybrid mode. A dense weight of 0 makes hybrid search lexical search.
        ``author``: only papers with an author whose name contains this (any of several; case ignored).
        ``min_score``: only hits scoring at least this (the mode's own scale: BM25 in lexical mode, fused
        reciprocal ranks in hybrid, or the weighted sum of z-scores where the build calibrated a score fusion;
        cosine in dense).

        The results say whether the top hit is a strong match (``strong_match``, ``confidence``; see
        `digest_rag.lexical.confidence`): False when the question matches nothing in the index well.
        ``offset`` skips the best ``offset`` papers (paging: ``offset=10, k=10`` is the second page;
        at most `request.MAX_OFFSET`); the hits' ``rank`` in ``to_records()`` counts from ``offset + 1``.
        """
        self._check_open()
        mode = check_mode(mode)
        if isinstance(query, str):
            query = clean_query(query)
        k = check_k(k)
        offset = check_offset(offset)
        filters = make_filters(date_from, date_to, tags, language, section, author)
        minimum = check_min_score(min_score)
        return self._query.ranked(query, k, mode, filters, fusion_weights, offset=offset, minimum=minimum)

    def similar(
        self,
        paper_id: str,
        k: int = 10,
        *,
        mode: str = "hybrid",
        date_from: _dt.date | str | None = None,
        date_to: _dt.date | str | None = None,
        tags: str | Sequence[str] | None = None,
        language: str | Sequence[str] | None = None,
        offset: int = 0,
    ) -> SearchResults:
        """"More like this": the papers nearest to paper ``paper_id``, best first, without the paper itself.

        The question is the paper's own text (titles and opening, `search.similar.similar_text`), asked in
        ``mode`` with `search`'s filters and paging; snippets are not highlighted (the results' ``query`` is
        empty). Raises PaperNotFoundError for an unknown id.
        """
        mode = check_mode(mode)
        k = check_k(k)
        offset = check_offset(offset)
        filters = make_filters(date_from, date_to, tags, language, None)
        paper = self.get(paper_id)
        return self._query.ranked(similar_text(paper), k, mode, filters, None, offset=offset,
                                  exclude=frozenset({paper.id}), asked=False)

    def analyse(self, query: str) -> QueryTerms:
        """``query`` analysed as a search analyses it, once: its BM25 terms with their glossary and lexicon
        expansions (Korean words read from the index's word table) and the paper names it uses.

        A loaded index keeps the analyses of the last `search.pipeline.ANALYSED_QUESTIONS` distinct questions
        (a page of results, a filter changed, a shell or server asked again: the question is not analysed
        twice)."""
        self._check_open()
        return self._query.analyse(query)

    def highlighter(self, query: str | QueryTerms) -> Highlighter:
        """Where the words of ``query`` (or of its analysis) occur in a text, as a search's snippets mark them."""
        return self._query.highlighter(query)

    @property
    def english_only(self) -> frozenset[str]:
        """Ids of the papers whose only text is English (`QueryPipeline.english_only`)."""
        return self._query.english_only

    @property
    def chunk_table(self) -> ChunkTable | None:
        """Every chunk's paper and section kind in memory (`storage.chunk_table`), read on first use; None
        for an index of more than `chunk_table.MAX_CHUNKS` chunks (its searches ask SQLite)."""
        return self._query.chunk_table

    @property
    def names(self) -> NameTable:
        """The names papers' titles introduce (`search.known_item.NameTable`)."""
        return self._query.names

    def fusion_settings(self, fusion_weights: Mapping[str, float] | None = None) -> tuple[dict[str, float], int]:
        """The weights and rank constant hybrid search fuses with (`QueryPipeline.fusion_settings`)."""
        return self._query.fusion_settings(fusion_weights)

    def fusion_shape(self, fusion_weights: Mapping[str, float] | None = None) -> tuple[str, float | None]:
        """How hybrid search fuses and the dense weight of papers with no Korean text
        (`QueryPipeline.fusion_shape`)."""
        return self._query.fusion_shape(fusion_weights)

    def info(self) -> dict[str, Any]:
        """A JSON-ready summary of the index: manifest, build options, counts, languages, sections, papers."""
        self._check_open()
        lexical = self.lexical
        return index_summary(self.index_dir, self.manifest, self.store, self.papers,
                             lexical.lexicon if lexical is not None else None,
                             lexical.confidence if lexical is not None else None,
                             len(lexical.eojeols) if lexical is not None and lexical.eojeols is not None else None)
