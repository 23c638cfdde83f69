"""The query path of a loaded index (`QueryPipeline`): a question analysed once, the retrievers, the boosts
for English-only papers and named papers, fusion, one hit per paper with its snippet, and how well it matched.

`DigestIndex.search` and `DigestIndex.similar` check their arguments and call `QueryPipeline.ranked`; the
pipeline keeps what does not change between searches of one generation (analysed questions, the chunk table,
the name table, pages' chunks and papers), each bounded. See docs/ARCHITECTURE.md, "The path of a query".
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from operator import itemgetter
from pathlib import Path

from digest_rag.errors import IndexCorruptedError
from digest_rag.lexical.confidence import coverage
from digest_rag.lexical.index import LexicalIndex
from digest_rag.lexical.loanwords import LOANWORD_RULES, Loanwords
from digest_rag.lexical.terms import QueryTerms, analyse_query
from digest_rag.models import Chunk, IndexManifest, Paper, SearchResults
from digest_rag.search.fusion import (
    DEFAULT_FUSION_WEIGHTS,
    RRF_K,
    aggregate,
    lead_first,
    rank_chunks,
)
from digest_rag.search.known_item import (
    NAME_RULES,
    NameTable,
    promote,
    question_names,
    spelled_names,
)
from digest_rag.search.languages import boost_english_only
from digest_rag.search.request import CANDIDATES, Filters, clean_query
from digest_rag.search.retrievers import (
    DenseRetriever,
    LexicalRetriever,
    retrievers_for,
    run_retrievers,
)
from digest_rag.search.snippets import Highlighter, opening_snippet
from digest_rag.storage.bounded_cache import BoundedCache
from digest_rag.storage.chunk_table import MAX_CHUNKS as MAX_TABLE_CHUNKS
from digest_rag.storage.chunk_table import ChunkTable
from digest_rag.storage.paper_lookup import PAPER_CACHE_SIZE, PaperLookup
from digest_rag.storage.store import Store

__all__ = ["ANALYSED_QUESTIONS", "CHUNK_CACHE_SIZE", "HELD_CHUNKS", "HELD_PAPERS", "QueryPipeline"]

#: Distinct questions whose analyses a loaded index keeps (`QueryPipeline.analyse`); cleared when full.
ANALYSED_QUESTIONS = 1024
#: Chunks a loaded index keeps once a page showed them (about 1.5 KB each).
CHUNK_CACHE_SIZE = 2048
#: Most papers and chunks of an index held in memory from its second search (`QueryPipeline._hold_small_index`):
#: the paper cache's size, and ~16,000 chunks (~75 MiB of texts and records and ~0.4 s to read at the limit).
HELD_PAPERS = PAPER_CACHE_SIZE
HELD_CHUNKS = 16_384


class QueryPipeline:
    """The searches of one open generation: `ranked` runs one, the rest is what it reads and keeps."""

    def __init__(self, index_dir: Path, manifest: IndexManifest, store: Store, lexical: LexicalIndex | None,
                 dense: DenseRetriever | None) -> None:
        self.index_dir = index_dir
        self.manifest = manifest
        self.store = store
        self.lexical = lexical
        self.dense = dense
        self.lexical_retriever = LexicalRetriever(lexical) if lexical is not None else None
        self._papers: dict[str, Paper] | None = None
        self._paper_cache: BoundedCache[str, Paper] = BoundedCache(PAPER_CACHE_SIZE)
        self._paper_lock = threading.Lock()
        self._names: NameTable | None = None
        self._loanwords: Loanwords | None = None
        self._english_only: frozenset[str] | None = None
        self._chunk_table: ChunkTable | None = None
        self._stored_english: bool | None = None  # whether the build stored its English-only papers
        self._no_korean: frozenset[str] | None = None  # papers with no Korean text (score fusion), read once
        self._searched = 0  # searches before the chunk table was read (`_search_table`)
        self._held = False  # whether `_hold_small_index` ran
        self._hold_lock = threading.Lock()
        self._analysed: dict[str, QueryTerms] = {}
        self._chunk_cache: BoundedCache[int, Chunk] = BoundedCache(CHUNK_CACHE_SIZE)

    def papers(self) -> dict[str, Paper]:
        """Every paper of the index, by id, read whole once (`DigestIndex.papers`); searches then use it."""
        if self._papers is None:
            self._papers = self.store.papers()
        return self._papers

    def paper(self, paper_id: str) -> Paper | None:
        """One paper by id, or None, from the papers read whole if they are, else from the store."""
        if self._papers is not None:
            return self._papers.get(paper_id)
        return self.store.papers([paper_id]).get(paper_id)

    def ranked(self, query: str | QueryTerms, k: int, mode: str, filters: Filters,
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
        # (map/itemgetter keep the per-candidate work in C: a search has ~200 candidates.)
        candidates: set[int] = set().union(*(map(itemgetter(0), r) for r in rankings.values()))
        heads = table.heads(candidates) if table is not None else self.store.chunk_heads(candidates)
        chunk_paper = dict(zip(heads, map(itemgetter(0), heads.values()), strict=True))
        bm25 = rankings.get("lexical")
        if bm25 is not None and terms.language != "en":  # English-only papers compete with Korean notes
            # (Among every candidate's paper: only the lexical side's chunks are boosted.)
            english = self._english_only_among(set(chunk_paper.values()))
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
        papers = self._search_papers(chunk_paper.values(), known=table is not None)
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
        out = self._chunk_cache.found(ids)
        missing = [cid for cid in ids if cid not in out]
        if missing:
            fresh = self.store.chunks(missing)
            out.update(fresh)
            self._chunk_cache.keep(fresh)
        return out

    def analyse(self, query: str) -> QueryTerms:
        """``query`` analysed as a search analyses it, once: its BM25 terms with their glossary and lexicon
        expansions (Korean words read from the index's word table) and the paper names it uses.

        A loaded index keeps the analyses of the last `ANALYSED_QUESTIONS` distinct questions (a page of
        results, a filter changed, a shell or server asked again: the question is not analysed twice)."""
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
        # question with no name-like word at all (no Latin word, no known Hangul spelling) never needs it; once
        # read, the table's own reading of the question is the only one.
        names = tuple(self.names.owned(query)) if self._names is not None or question_names(query) else ()
        # A model named in Hangul ("로버타가") is searched by its Latin name too, when a paper owns that name.
        spelled = spelled_names(query, names) if names else []
        asked = " ".join([query, *spelled])
        terms = self.lexical.analyse(asked, self.loanwords) if self.lexical is not None else analyse_query(asked)
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

    def _search_papers(self, ids: Iterable[str], *, known: bool) -> Mapping[str, Paper]:
        """The papers a search's hits come from: all of them when they are held (`_hold_small_index`), else
        the candidates' (`PaperLookup`: a record is read when a page shows it, then kept). ``known``: the ids
        come from the chunk table."""
        if self._papers is not None:
            return self._papers
        return PaperLookup(self.store, set(ids), self._paper_cache, known=known)

    def _search_table(self) -> ChunkTable | None:
        """The chunk table a search uses: none for a process's first search (a one-question CLI process
        would read every chunk's row to rank a few hundred: ~0.5 s at the size limit), the table from the
        second on (a shell, a server, a notebook), when a small index is also held in memory."""
        if self._chunk_table is not None:
            return self._chunk_table
        self._searched += 1
        if self._searched < 2:
            return None
        if not self._held:
            with self._hold_lock:
                if not self._held:
                    self._hold_small_index()
                    self._held = True
        return self.chunk_table

    def _hold_small_index(self) -> None:
        """From its second search (more questions will come) a small index is held in memory, so that a
        question it never saw reads no paper, no chunk text and no vocabulary file: every paper of an index of at
        most `HELD_PAPERS`, every chunk of one of at most `HELD_CHUNKS` (the caches would fill with them
        anyway), the lexical index's vocabulary, posting checks and word table (`LexicalIndex.hold_small`),
        and the store's loanword and name tables (`Store.hold_small_tables`). ~0.15 s and ~40 MiB once for
        seeds + ml-papers (1,645 papers, 4,311 chunks); a new question's first search then costs ~0.5 ms less
        (BENCHMARKS.md). A one-question process never pays it."""
        try:
            papers = self.store.papers() if self._papers is None and self.manifest.paper_count <= HELD_PAPERS \
                else None
            chunks = self.store.chunks() if self.manifest.chunk_count <= HELD_CHUNKS else None
        except IndexCorruptedError:
            # A damaged record stays for the search that needs it to report; the others keep reading lazily.
            return
        if papers is not None:
            self._papers = papers
        if chunks is not None:
            held: BoundedCache[int, Chunk] = BoundedCache(max(len(chunks), CHUNK_CACHE_SIZE))
            held.keep(chunks)
            self._chunk_cache = held
        if self.lexical is not None:
            self.lexical.hold_small()
        self.store.hold_small_tables()

    @property
    def loanwords(self) -> Loanwords | None:
        """What a question's Hangul loanwords spell in this index (`lexical.loanwords`): the candidates the
        build stored, read by skeleton, else (an index built before) a table made once from the vocabulary."""
        if self._loanwords is None and self.lexical is not None:
            with self._paper_lock:
                if self._loanwords is None:
                    store, lexical = self.store, self.lexical
                    self._loanwords = Loanwords(store.loanword_candidates, lexical.holds) \
                        if store.has_loanwords(LOANWORD_RULES) \
                        else Loanwords.from_tokens(lexical.vocabulary, store.author_names, lexical.holds)
        return self._loanwords

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
        table = self._chunk_table
        owner_chunks = table.chunks_of(owners) if table is not None else self.store.chunk_ids_of(owners)
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
        name in the question belongs to is strong, and so is one that covers the question's words well enough
        (`confidence.coverage`, indexes calibrated by pseudo-bags-3)."""
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
        if confidence >= 1.0 or top in owners:
            return True, confidence
        # A short question cannot score what six words score: its best paper may still cover all its words.
        if calibration.coverage is not None and calibration.unseen is not None:
            covered = coverage(best, query.tokens, self.lexical.term_bound, calibration.unseen)
            if covered is not None and covered >= calibration.coverage:
                return True, confidence
        return False, confidence
