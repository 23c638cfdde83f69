"""Building a lexical index: each chunk's tokens (cached by text hash) with its paper's fields, fed batch by batch into the BM25 matrix and the lexicon miner."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from digest_rag.lexical.analysis import ANALYSIS_VERSION, kiwi_morphs
from digest_rag.lexical.confidence import DocSample, calibrate
from digest_rag.lexical.glossary import bundled_glossary_text, default_glossary
from digest_rag.lexical.index import FieldWeights, LexicalIndex, LoadedBM25
from digest_rag.lexical.kiwi import glossary_korean_forms
from digest_rag.lexical.lexicon import MinedLexicon, MinerParams, mine_lexicon
from digest_rag.lexical.matrix import BM25Matrix
from digest_rag.lexical.terms import document_tokens
from digest_rag.lexical.verb_forms import QUESTION_FORMS_VERSION, add_question_forms
from digest_rag.lexical.word_table import EOJEOL_FORMAT, EojeolRecorder
from digest_rag.models import Chunk, Paper
from digest_rag.text import sha256_text


@functools.lru_cache(maxsize=1)
def analysis_cache_key() -> str:
    """What analysed tokens depend on besides the text: analysis version, glossary bytes, Kiwi version."""
    from importlib import metadata

    try:
        kiwi = metadata.version("kiwipiepy")
    except metadata.PackageNotFoundError:  # pragma: no cover - a dependency
        kiwi = "unknown"
    # The word table (eojeols.py) is filled only from texts Kiwi analyses: a token cache from before it
    # existed would leave the words of every reused text out of it.
    # Nor would one from before the table held the question forms of its words (verb_forms.py): their
    # texts are not analysed again, so their verbs would get no forms.
    return (f"{ANALYSIS_VERSION}|kiwipiepy-{kiwi}|glossary-{sha256_text(bundled_glossary_text())[:16]}"
            f"|eojeols-{EOJEOL_FORMAT}|forms-{QUESTION_FORMS_VERSION}")


class TokenCache:
    """BM25 documents' tokens by text hash: reuses a previous build's, records every text used.

    Kiwi analysis of a whole corpus costs seconds; a rebuild that changed 1% of
    the papers should pay for 1% of it. Keys are sha256 of the exact text, so
    a cached entry can only be the analysis of identical text; the caller
    passes a cache only when it was made with the same analysis (see
    `analysis_cache_key`). This one keeps everything in memory; a build at
    scale uses a subclass that looks up and records in SQLite (`lookup`, `record`).
    """

    def __init__(self, previous: Mapping[str, list[str]] | None = None, recorder: EojeolRecorder | None = None) -> None:
        self.previous = previous or {}
        self.used: dict[str, list[str]] = {}
        self.analysed = 0
        #: Collects the word table (eojeols.py) from the texts Kiwi analyses here.
        self.recorder = recorder

    def lookup(self, keys: Sequence[str]) -> dict[str, list[str]]:
        """Tokens already known for ``keys`` (distinct text hashes): used in this build, else previous."""
        out: dict[str, list[str]] = {}
        for k in keys:
            toks = self.used.get(k)
            if toks is None:
                toks = self.previous.get(k)
            if toks is not None:
                out[k] = toks
        return out

    def record(self, entries: Mapping[str, list[str]]) -> None:
        """Note the tokens of texts this build used (the next build's cache)."""
        self.used.update(entries)

    def tokens(self, texts: Sequence[str]) -> list[list[str]]:
        """Tokens of each text (copies: the caller extends them)."""
        keys = [sha256_text(t) for t in texts]
        unique = dict(zip(keys, texts, strict=True))
        found = self.lookup(list(unique))
        todo = {k: t for k, t in unique.items() if k not in found}
        if todo:
            fresh = document_tokens(list(todo.values()),
                                    observe=self.recorder.observe if self.recorder is not None else None)
            found.update(zip(todo, fresh, strict=True))
            self.analysed += len(todo)
        self.record({k: found[k] for k in unique})
        return [list(found[k]) for k in keys]


#: Tokens of one paper field (title, tags, authors) added to each of its chunks' BM25 documents. Every real
#: field is shorter (a 300-author list is ~900); without a bound, a paper merged from thousands of copies
#: (thousands of tags and of chunks) made the BM25 input grow as their product.
MAX_FIELD_TOKENS = 1024


def paper_field_tokens(
    papers: dict[str, Paper], needed: Iterable[str], cache: TokenCache
) -> dict[str, tuple[list[str], list[str], list[str]]]:
    """(title tokens, tag tokens, author tokens) per paper id, analysed in one batch."""
    ids = sorted(set(needed) & set(papers))
    texts: list[str] = []
    for pid in ids:
        p = papers[pid]
        texts.append(" \n ".join(t for t in (p.title, p.title_ko or "") if t))
        texts.append(" \n ".join(p.tags))
        texts.append(" \n ".join(p.authors))
    toks = [t[:MAX_FIELD_TOKENS] for t in cache.tokens(texts)]
    return {pid: (toks[3 * i], toks[3 * i + 1], toks[3 * i + 2]) for i, pid in enumerate(ids)}


def lexical_chunks(chunks: Iterable[Chunk]) -> list[Chunk]:
    """The chunks BM25 indexes: all but title passages, and the title passage of a paper with nothing else.

    Every chunk's BM25 document already carries its paper's title (`FieldWeights`),
    so a separate title document would only duplicate it, except for a paper
    that has no text besides its title (an English-only note of a title and a
    link): without its title passage such a paper could never be found by BM25.
    """
    chunks = list(chunks)
    has_text = {c.paper_id for c in chunks if c.section_kind != "title"}
    return [c for c in chunks if c.section_kind != "title" or c.paper_id not in has_text]


class LexicalBuilder:
    """Builds a `LexicalIndex` from chunks handed over a batch at a time (with their papers).

    Only compact arrays stay between batches (`bm25_matrix.BM25Matrix`), so a
    build of a million chunks never holds their token lists. A batch must
    hold all the chunks of its papers (see `lexical_chunks`). ``tokens`` is
    where tokens come from: a `TokenCache`, or a store-backed one that keeps
    them on disk. With ``mine`` the lexicon miner gets what it reads: the
    tokens of the first `MinerParams.max_papers` papers (it ignores the rest)
    and the chunk texts holding a parenthesis (it reads no others).
    ``previous_lexicon`` (the last generation's) lets the miner skip what did not change (`mine_lexicon`).
    """

    def __init__(self, weights: FieldWeights | None = None, tokens: TokenCache | None = None,
                 mine: bool = True, previous_lexicon: MinedLexicon | None = None) -> None:
        self.weights = weights or FieldWeights()
        self._previous_lexicon = previous_lexicon
        self.tokens = tokens or TokenCache(None)
        self._matrix = BM25Matrix(k1=self.weights.k1, b=self.weights.b)
        self._ids: list[np.ndarray] = []
        self._mine = mine
        self._mine_cap = MinerParams().max_papers
        self._mine_papers: set[str] = set()
        self._mine_tokens: list[tuple[str, list[str]]] = []
        self._mine_fields: list[tuple[str, list[str]]] = []
        self._mine_texts: list[tuple[str, str]] = []
        #: Documents the confidence threshold's pseudo-queries are drawn from (confidence.py).
        self._sample = DocSample()

    def add(self, chunks: Sequence[Chunk], papers: Mapping[str, Paper]) -> None:
        """Index ``chunks`` (already filtered by `lexical_chunks`), enriched with their papers' fields."""
        if not chunks:
            return
        w = self.weights
        fields = paper_field_tokens(papers, (c.paper_id for c in chunks), self.tokens)
        corpus = self.tokens.tokens([c.text for c in chunks])
        if self._mine:
            self._for_miner(chunks, corpus, fields)
        self._sample.add(corpus)
        for doc, c in zip(corpus, chunks, strict=True):
            title, tags, authors = fields.get(c.paper_id, ([], [], []))
            doc.extend(title * w.title)
            doc.extend(tags * w.tags)
            doc.extend(authors * w.authors)
        self._matrix.add(corpus)
        self._ids.append(np.fromiter((c.id for c in chunks), dtype=np.int64, count=len(chunks)))

    def _for_miner(self, chunks: Sequence[Chunk], corpus: list[list[str]],
                   fields: Mapping[str, tuple[list[str], list[str], list[str]]]) -> None:
        # The miner keeps the first max_papers papers it meets (chunks in index order, then titles): batches
        # come in index order, so keeping those papers' tokens here gives it the same input.
        for c, doc in zip(chunks, corpus, strict=True):
            if c.paper_id in self._mine_papers or len(self._mine_papers) < self._mine_cap:
                self._mine_papers.add(c.paper_id)
                self._mine_tokens.append((c.paper_id, list(doc)))
            if "(" in c.text:  # the only texts its parenthetical pairs come from
                self._mine_texts.append((c.paper_id, c.text))
        self._mine_fields += [(pid, f[0]) for pid, f in fields.items() if pid in self._mine_papers]

    def finish(self) -> LexicalIndex:
        """The index of every chunk added; ValueError when two share an id."""
        chunk_ids = np.concatenate(self._ids) if self._ids else np.zeros(0, dtype=np.int64)
        if np.unique(chunk_ids).size != chunk_ids.size:
            raise ValueError("chunk ids must be unique")
        if chunk_ids.size == 0:
            return LexicalIndex(None, chunk_ids, self.weights)
        lexicon = MinedLexicon()
        if self._mine:
            # From the tokens just made (or cached): only new parenthetical phrases cost Kiwi time.
            lexicon = mine_lexicon([*self._mine_tokens, *self._mine_fields], self._mine_texts, self.tokens.tokens,
                                   default_glossary().concepts, previous=self._previous_lexicon)
            self._mine_tokens, self._mine_fields, self._mine_texts = [], [], []
        m = self._matrix
        scores = m.build()
        retriever = LoadedBM25(vocab_dict=m.vocab, scores=scores, k1=m.k1, b=m.b, delta=0.5, method="lucene",
                                idf_method="lucene", dtype="float32", int_dtype="int32")
        index = LexicalIndex(retriever, chunk_ids, self.weights)
        index.lexicon = lexicon
        # A word a question uses that the index lacks counts as a rare word would (the 90th percentile of the
        # words' highest scores) in the coverage of the question's words (`confidence.coverage`).
        index.confidence = calibrate(lambda terms: float(index.term_scores(terms).max()), self._sample,
                                     bound=index.term_bound, unseen=index.bound_quantile(0.9))
        index.analysed_texts = self.tokens.analysed
        recorder = self.tokens.recorder
        if recorder is not None:
            # Readers ask in the glossary's words ("증류", "강화학습") whether or not the corpus writes them in
            # Korean: their readings (alone, as a query reads them) join the table. Kiwi runs only for forms not there.
            forms = [f for f in glossary_korean_forms(bundled_glossary_text())
                     if f not in recorder.readings and not all(w in recorder.readings for w in f.split())]
            for form, morphs in zip(forms, kiwi_morphs(forms) if forms else [], strict=True):
                recorder.observe(form, morphs)
            # ... and in the spoken forms of the corpus's verbs ("섞은", "줄여서"): most questions then never
            # start Kiwi (verb_forms.py).
            add_question_forms(recorder)
            index._recorder = recorder
        return index
