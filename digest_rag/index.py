"""`DigestIndex`: the one object users hold. It opens an index directory and answers searches.

The work lives elsewhere: `build`/`update` delegate to the build pipeline
(build.py), opening a generation to generation.py, ranking to the retrievers
(retrievers.py), fusion and aggregation to fusion.py and snippets to
snippets.py. See docs/ARCHITECTURE.md for the path of a build and of a query.
"""

from __future__ import annotations

import datetime as _dt
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from digest_rag.lexical.terms import QueryTerms, analyse_query
from digest_rag.errors import IndexClosedError, IndexCorruptedError, PaperNotFoundError
from digest_rag.search.fusion import DEFAULT_FUSION_WEIGHTS, RRF_K, aggregate, lead_first, rank_chunks
from digest_rag.search.known_item import NAME_RULES, NameTable, promote, question_names, spelled_names
from digest_rag.search.languages import boost_english_only
from digest_rag.storage.generation import OpenGeneration, open_generation
from digest_rag.storage.layout import DEFAULT_INDEX_DIR, manifest_moved, read_manifest
from digest_rag.models import BuildOverrides, Chunk, ChunkerSettings, IndexManifest, Paper, SearchResults
from digest_rag.search.request import (
    CANDIDATES,
    Filters,
    check_k,
    check_min_score,
    check_mode,
    check_offset,
    clean_query,
    make_filters,
)
from digest_rag.search.retrievers import DenseRetriever, LexicalRetriever, lexical_only_error, retrievers_for, run_retrievers
from digest_rag.search.similar import similar_text
from digest_rag.search.snippets import Highlighter, opening_snippet
from digest_rag.storage.chunk_table import MAX_CHUNKS as MAX_TABLE_CHUNKS
from digest_rag.storage.chunk_table import ChunkTable
from digest_rag.storage.paper_lookup import PaperLookup
from digest_rag.storage.summary import index_summary

if TYPE_CHECKING:  # pragma: no cover - the build pipeline is imported by build() and update() only:
    # a search process need not load parsing, chunking, FAISS building and the embedding cache
    from digest_rag.build.report import BuildOutcome, BuildReport
    from digest_rag.models import ProgressCallback
    from digest_rag.dense.encoder import Encoder
    from digest_rag.lexical.feedback import FeedbackSettings

__all__ = ["ANALYSED_QUESTIONS", "DEFAULT_INDEX_DIR", "DigestIndex"]

#: Distinct questions whose analyses a loaded index keeps (`DigestIndex.analyse`); cleared when full.
ANALYSED_QUESTIONS = 1024
#: Chunks a loaded index keeps once a page showed them (about 1.5 KB each).
CHUNK_CACHE_SIZE = 2048

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
        self.lexical_retriever = LexicalRetriever(generation.lexical) if generation.lexical is not None else None
        self._papers: dict[str, Paper] | None = None
        self._paper_cache: OrderedDict[str, Paper] = OrderedDict()
        self._paper_lock = threading.Lock()
        self._names: NameTable | None = None
        self._english_only: frozenset[str] | None = None
        self._chunk_table: ChunkTable | None = None
        self._stored_english: bool | None = None  # whether the build stored its English-only papers
        self._no_korean: frozenset[str] | None = None  # papers with no Korean text (score fusion), read once
        self._searched = 0  # searches before the chunk table was read (`_search_table`)
        self._analysed: dict[str, QueryTerms] = {}
        self._chunk_cache: OrderedDict[int, Chunk] = OrderedDict()
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
        if self._papers is None:
            self._papers = self.store.papers()
        return self._papers

    def paper(self, paper_id: str) -> Paper | None:
        """One paper by id, or None; read from the store without loading every paper."""
        self._check_open()
        if self._papers is not None:
            return self._papers.get(paper_id)
        return self.store.papers([paper_id]).get(paper_id)

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
        return self._ranked(query, k, mode, filters, fusion_weights, offset=offset, minimum=minimum)

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
        return self._ranked(similar_text(paper), k, mode, filters, None, offset=offset, exclude=frozenset({paper.id}),
                            asked=False)

    def _ranked(self, query: str | QueryTerms, k: int, mode: str, filters: Filters,
                fusion_weights: Mapping[str, float] | None, *, offset: int, exclude: frozenset[str] = frozenset(),
                asked: bool = True, minimum: float | None = None) -> SearchResults:
        """The checked search: retrievers, fusion, one hit per paper for ranks ``offset`` .. ``offset + k - 1``.

        ``asked``: the query is a person's question (its terms are highlighted and the names it uses promote
        the papers that introduce them), not a paper's text (`similar`)."""
        allowed = None if filters.empty else self.store.chunk_ids_where(
            filters.date_from, filters.date_to, list(filters.tags), list(filters.languages), list(filters.sections),
            list(filters.authors))
        # A question the caller analysed already (`analyse`: to check its size first, as serve does) is not
        # analysed again.
        terms = query if isinstance(query, QueryTerms) else self.analyse(query)
        query = terms.text
        # The question is analysed once (`QueryTerms`) and handed to the retrievers, ranking and snippets;
        # its Korean words are read from the index's table of Kiwi's readings, so Kiwi rarely starts.
        # A paper's own text (`similar`) marks nothing in the snippets and names the paper itself: no promotion.
        highlighter = self.highlighter(terms) if asked else Highlighter(())
        weights, rrf_k = self.fusion_settings(fusion_weights)
        shape, english_weight = self.fusion_shape(fusion_weights)
        dense = self.dense
        if mode == "hybrid" and max(weights.get("dense", 1.0), english_weight or 0.0) <= 0.0 \
                and self.lexical_retriever is not None:
            dense = None  # calibrated (or asked) to weigh nothing: hybrid is lexical, and the encoder never loads
        rankings = run_retrievers(retrievers_for(mode, dense, self.lexical_retriever, self.index_dir), mode,
                                  terms, max(CANDIDATES, (offset + k + len(exclude)) * 20), allowed)
        bonuses = self._owners(terms, rankings, allowed) if asked else {}
        # Ranking needs each candidate's paper and section; only the k shown chunks are read whole.
        table = self._search_table()
        candidates = {cid for r in rankings.values() for cid, _s in r}
        heads = table.heads(candidates) if table is not None else self.store.chunk_heads(candidates)
        chunk_paper = {cid: h.paper_id for cid, h in heads.items()}
        bm25 = rankings.get("lexical")
        if bm25 is not None and terms.language != "en":  # English-only papers compete with Korean notes
            english = self._english_only_among({chunk_paper[cid] for cid, _s in bm25 if cid in chunk_paper})
            if english:
                rankings = {**rankings, "lexical": boost_english_only(bm25, chunk_paper, english)}
        if bm25 is not None and bonuses:  # the papers the question names move up the lexical side
            rankings = {**rankings, "lexical": promote(rankings["lexical"], chunk_paper, bonuses)}
        # Score fusion weighs the dense side of the candidates with no Korean text apart (`fusion.fuse_scores`).
        english = self._no_korean_among(set(chunk_paper.values())) \
            if english_weight is not None and len(rankings) > 1 else ()
        ranked = rank_chunks(rankings, chunk_paper, weights, rrf_k, shape=shape, english=english,
                             english_weight=english_weight)
        if bonuses and len(rankings) > 1 and rankings.get("lexical"):  # the named paper leads hybrid too
            lead = chunk_paper.get(rankings["lexical"][0][0])
            if lead in bonuses:
                ranked = lead_first(ranked, chunk_paper, lead)
        papers: Mapping[str, Paper] = self._papers if self._papers is not None else PaperLookup(
            self.store, {h.paper_id for h in heads.values()}, self._paper_cache, self._paper_lock,
            known=table is not None)
        hits = aggregate(ranked, heads, papers, k, query=highlighter, fetch=self._chunks, offset=offset,
                         exclude=exclude)
        # How well a question matched; a paper's own text always matches its neighbours somehow: no verdict.
        strong, confidence = self._strength(terms, hits[0].paper.id if hits else None, bm25, chunk_paper,
                                            set(bonuses), allowed) if asked else (None, None)
        return SearchResults(
            (opening_snippet(h, self.store.first_text_chunk(h.paper.id), highlighter) if h.section == "title" else h
             for h in hits if minimum is None or h.score >= minimum),
            query=query if asked else "", mode=mode, highlighter=highlighter, strong_match=strong,
            confidence=confidence, offset=offset,
        )

    def _chunks(self, ids: list[int]) -> dict[int, Chunk]:
        """The chunks a page shows, from the last `CHUNK_CACHE_SIZE` read (a generation never changes) or
        the store."""
        cache = self._chunk_cache
        with self._paper_lock:
            out = {cid: cache[cid] for cid in ids if cid in cache}
            for cid in out:
                cache.move_to_end(cid)
        missing = [cid for cid in ids if cid not in out]
        if missing:
            fresh = self.store.chunks(missing)
            out.update(fresh)
            with self._paper_lock:
                cache.update(fresh)
                while len(cache) > CHUNK_CACHE_SIZE:
                    cache.popitem(last=False)
        return out

    def analyse(self, query: str) -> QueryTerms:
        """``query`` analysed as a search analyses it, once: its BM25 terms with their glossary and lexicon
        expansions (Korean words read from the index's word table) and the paper names it uses.

        A loaded index keeps the analyses of the last `ANALYSED_QUESTIONS` distinct questions (a page of
        results, a filter changed, a shell or server asked again: the question is not analysed twice)."""
        self._check_open()
        query = clean_query(query)
        cached = self._analysed.get(query)
        if cached is not None:
            return cached
        terms = self._analyse(query)
        if len(self._analysed) >= ANALYSED_QUESTIONS:
            self._analysed.clear()
        self._analysed[query] = terms
        return terms

    def _analyse(self, query: str) -> QueryTerms:
        # The name table (every title's names) costs a pass over all titles on a process's first use: a
        # question with no name-like word at all (no Latin word, no known Hangul spelling) never needs it.
        names = tuple(self.names.owned(query)) if question_names(query) else ()
        # A model named in Hangul ("로버타가") is searched by its Latin name too, when a paper owns that name.
        spelled = spelled_names(query, names) if names else []
        asked = " ".join([query, *spelled])
        terms = self.lexical.analyse(asked) if self.lexical is not None else analyse_query(asked)
        return terms.model_copy(update={"names": names, "text": query}) if names else terms

    def highlighter(self, query: str | QueryTerms) -> Highlighter:
        """Where the words of ``query`` (or of its analysis) occur in a text, as a search's snippets mark them."""
        terms = self.analyse(query) if isinstance(query, str) else query
        return Highlighter.of(terms, self.lexical.eojeols if self.lexical is not None else None)

    @property
    def english_only(self) -> frozenset[str]:
        """Ids of the papers whose only text is English, read on first use: the set the build stored
        (`Store.stored_english_only`), or, for an index built before builds stored it, computed from every
        chunk (`Store.english_only_papers`)."""
        if self._english_only is None:
            with self._paper_lock:
                if self._english_only is None:
                    store = self.store
                    self._english_only = frozenset(store.stored_english_only() if store.has_stored_english_only()
                                                   else store.english_only_papers())
        return self._english_only

    def _english_only_among(self, paper_ids: set[str]) -> set[str] | frozenset[str]:
        """Which of ``paper_ids`` are English-only: from the whole set held in memory once the chunk table is
        (`_search_table`); before that, and for an index too big for the table (`chunk_table.MAX_CHUNKS`),
        the stored set is asked about the candidates only (not every English-only paper of a million). An
        index built before builds stored the set computes it whole."""
        if self._english_only is None and self._chunk_table is None:
            if self._stored_english is None:
                self._stored_english = self.store.has_stored_english_only()
            if self._stored_english:
                return self.store.stored_english_only(paper_ids)
        return self.english_only & paper_ids

    def _no_korean_among(self, paper_ids: set[str]) -> set[str] | frozenset[str]:
        """Which of ``paper_ids`` have no Korean text (`Store.no_korean_papers`): asked of the store about the
        candidates until the chunk table is loaded (a process's first search), then from the whole set, read
        once."""
        if self._chunk_table is None:
            return self.store.no_korean_papers(paper_ids)
        if self._no_korean is None:
            with self._paper_lock:
                if self._no_korean is None:
                    self._no_korean = frozenset(self.store.no_korean_papers())
        return self._no_korean & paper_ids

    @property
    def chunk_table(self) -> ChunkTable | None:
        """Every chunk's paper and section kind in memory (`storage.chunk_table`), read on first use; None
        for an index of more than `chunk_table.MAX_CHUNKS` chunks (its searches ask SQLite)."""
        if self._chunk_table is None and self.manifest.chunk_count <= MAX_TABLE_CHUNKS:
            with self._paper_lock:
                if self._chunk_table is None:
                    self._chunk_table = ChunkTable.read(self.store)
        return self._chunk_table

    def _search_table(self) -> ChunkTable | None:
        """The chunk table a search uses: none for a process's first search (a one-question CLI process
        would read every chunk's row to rank a few hundred: ~0.5 s at the size limit), the table from the
        second on (a shell, a server, a notebook)."""
        if self._chunk_table is not None:
            return self._chunk_table
        self._searched += 1
        return self.chunk_table if self._searched > 1 else None

    @property
    def names(self) -> NameTable:
        """The names papers' titles introduce (`search.known_item.NameTable`): the table the build stored,
        read key by key (`Store.name_owners`), else computed from every title on first use."""
        if self._names is None:
            with self._paper_lock:
                if self._names is None:
                    stored = self.store.name_owners(NAME_RULES)
                    # An index built before builds stored the table (or by other naming rules) computes it.
                    self._names = NameTable.stored(stored) if stored is not None else NameTable(self.store.titles())
        return self._names

    def _owners(self, query: QueryTerms, rankings: dict[str, list[tuple[int, float]]],
                allowed: set[int] | None) -> dict[str, float]:
        """Papers whose titles introduce a name the query uses, with their bonuses (known-item matching,
        `search.known_item`). An owner the lexical ranking missed joins it with its own BM25 score."""
        owners = self.names.bonuses(query.text, query.names) if query.names else {}
        lexical = rankings.get("lexical")
        if not owners or lexical is None or self.lexical is None:
            return owners
        owner_chunks = self.store.chunk_ids_of(owners)
        ranked_ids = {cid for cid, _s in lexical}
        found = {pid for cid, pid in owner_chunks.items() if cid in ranked_ids}
        ids = {cid for cid, pid in owner_chunks.items() if pid not in found and (allowed is None or cid in allowed)}
        if ids:
            lexical.extend(self.lexical.search(query, len(ids), ids))
        return owners

    def fusion_settings(self, fusion_weights: Mapping[str, float] | None = None) -> tuple[dict[str, float], int]:
        """The weights and rank constant hybrid search fuses with: ``fusion_weights`` when given (with the
        default constant), else those the build calibrated (`IndexManifest.fusion`), else the defaults."""
        if fusion_weights is not None:
            return {**DEFAULT_FUSION_WEIGHTS, **fusion_weights}, RRF_K
        cal = self.manifest.fusion
        if cal is not None:
            return {**DEFAULT_FUSION_WEIGHTS, **cal.weights}, cal.rrf_k
        return dict(DEFAULT_FUSION_WEIGHTS), RRF_K

    def fusion_shape(self, fusion_weights: Mapping[str, float] | None = None) -> tuple[str, float | None]:
        """How hybrid search fuses (`FusionCalibration.shape`) and the dense weight of papers with no Korean
        text (None: the dense weight): the build's calibration, else rank fusion; given ``fusion_weights``
        fuse by ranks, as they always have."""
        cal = self.manifest.fusion
        if fusion_weights is not None or cal is None:
            return "rrf", None
        return cal.shape, cal.english_weight if cal.shape == "zscore" else None

    def _strength(self, query: QueryTerms, top: str | None, lexical: list[tuple[int, float]] | None,
                  chunk_paper: Mapping[int, str], owners: set[str],
                  allowed: set[int] | None) -> tuple[bool | None, float | None]:
        """(strong, confidence) of a result set whose top paper is ``top``: its best BM25 score (in ``lexical``,
        the ranking before promotion) over the index's calibrated threshold (`lexical.confidence`); a paper a
        name in the question belongs to is strong."""
        calibration = self.lexical.confidence if self.lexical is not None else None
        if calibration is None:
            return None, None
        if top is None:
            return False, 0.0
        if lexical is not None:
            best = max((s for cid, s in lexical if chunk_paper.get(cid) == top), default=0.0)
        else:  # dense mode: score the top paper's own chunks
            ids = set(self.store.chunk_ids_of([top]))
            found = self.lexical.search(query, len(ids), ids if allowed is None else ids & allowed) if ids else []
            best = max((s for _cid, s in found), default=0.0)
        confidence = round(best / calibration.threshold, 4)
        return confidence >= 1.0 or top in owners, confidence

    def info(self) -> dict[str, Any]:
        """A JSON-ready summary of the index: manifest, build options, counts, languages, sections, papers."""
        self._check_open()
        return index_summary(self.index_dir, self.manifest, self.store, self.papers,
                             self.lexical.lexicon if self.lexical is not None else None)
