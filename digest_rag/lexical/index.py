"""BM25 lexical index over chunks, with paper metadata folded into every chunk.

Each chunk is one BM25 document. Its tokens are the chunk text's tokens plus the
paper's title (English and Korean), tags and authors repeated a few times: a
chunk of the abstract rarely repeats the title words a reader types, and
repeating a field is the classic cheap way to give it more weight in BM25 (it
raises the term frequency without needing a multi-field scorer).

Persistence is JSON + `.npy` only (never pickle): the sparse score matrix in
bm25s's CSC layout (built by `bm25_matrix`) and, from format 3, the vocabulary
as sorted memory-mapped arrays (format 2 kept it as JSON, still read); we load
every file ourselves with ``allow_pickle=False`` so that a damaged or foreign
file surfaces as `IndexCorruptedError` naming that file.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from digest_rag.errors import IndexCorruptedError
from digest_rag.lexical.analysis import ANALYSIS_VERSION
from digest_rag.lexical.confidence import Confidence
from digest_rag.lexical.feedback import FeedbackSettings, feedback_terms
from digest_rag.lexical.files import (
    CHUNK_IDS_FILE,
    DATA_FILE,
    FORMAT,
    INDICES_FILE,
    INDPTR_FILE,
    LEXICAL_FILES,
    META_FILE,
    PARAMS_FILE,
    READABLE_FORMATS,
    VOCAB_BLOB_FILE,
    VOCAB_FILE,
    VOCAB_IDS_FILE,
    VOCAB_OFFSETS_FILE,
    SortedVocab,
    read_json,
    read_npy,
    save_npy,
)
from digest_rag.lexical.lexicon import MinedLexicon
from digest_rag.lexical.loanwords import Loanwords
from digest_rag.lexical.terms import QueryTerms, analyse_query
from digest_rag.lexical.word_lookup import EojeolTable
from digest_rag.lexical.word_table import EOJEOL_FILE, EojeolRecorder
from digest_rag.models import Chunk, Paper

__all__ = ["HELD_TERMS", "FieldWeights", "LexicalIndex"]

#: Most terms a lexical index may have for `LexicalIndex.hold_small` to hold its vocabulary (~70 ms and ~25 MB
#: at this size; ml-papers has 17,000).
HELD_TERMS = 262_144


class FieldWeights(BaseModel):
    """How many times each paper field is appended to every chunk's BM25 document.

    Measured on eval/dev_queries.jsonl with the glossary on (sweep table in
    docs/EVAL.md): title 1-3, tags 1-3, authors 0-2, k1 0.9-1.5 and b 0.5-0.9
    all give lexical R@1 0.927 / MRR@10 0.967 on lexical-only chunks; tags=0
    and title=5 are worse (0.907 / 0.957), title=0 slightly (MRR 0.963). The
    dev set cannot separate the rest, so the defaults stay at title=3 (titles
    are the words readers quote), tags=1, authors=1 (author-name queries need
    the field at all) and BM25's conventional k1=1.2, b=0.75.
    """

    model_config = ConfigDict(frozen=True)

    title: int = Field(default=3, ge=0, le=20, description="repeats of English + Korean title tokens")
    tags: int = Field(default=1, ge=0, le=20, description="repeats of tag tokens")
    authors: int = Field(default=1, ge=0, le=20, description="repeats of author-name tokens")
    k1: float = Field(default=1.2, gt=0, description="BM25 term-frequency saturation")
    b: float = Field(default=0.75, ge=0, le=1, description="BM25 length normalisation")










@dataclass
class LoadedBM25:
    """What searching and saving read of a `bm25s.BM25`, as loaded from disk.

    Loading builds this instead of a `bm25s.BM25`: importing bm25s pulls in
    scipy (a large share of a query process's start-up), and the search only
    needs the vocabulary and the CSR score matrix, which stay memory-mapped.
    """

    vocab_dict: Mapping[str, int]
    scores: dict[str, Any]
    k1: float
    b: float
    delta: float
    method: str
    idf_method: Any
    dtype: str
    int_dtype: str


class LexicalIndex:
    """A bm25s index whose documents are chunks; search returns chunk ids."""

    def __init__(self, retriever: LoadedBM25 | None, chunk_ids: np.ndarray, weights: FieldWeights) -> None:
        self._bm25 = retriever
        self.chunk_ids = np.asarray(chunk_ids, dtype=np.int64)
        self.weights = weights
        self.analysis_version = ANALYSIS_VERSION
        self._pos_map: dict[int, int] | None = None
        #: The directory the index was loaded from (None when built in memory), for error messages.
        self.directory: Path | None = None
        #: Tokens of every text this index was built from, by text hash (set by `build`): the next build's cache.
        self.token_entries: dict[str, list[str]] = {}
        #: How many distinct texts `build` had to analyse (the rest came from its token cache).
        self.analysed_texts = 0
        #: Korean <-> English pairs mined from the indexed corpus (lexicon.py), used to expand queries.
        self.lexicon = MinedLexicon()
        #: Pseudo-relevance feedback of every search, off unless asked for (`DigestIndex.load(feedback=...)`).
        self.feedback: FeedbackSettings | None = None
        # The last analysed question's scores (read-only), for `search` of the same `QueryTerms` again: the
        # chunks of a paper the question names are scored after its ranking (`QueryPipeline._owners`).
        self._last_scores: tuple[QueryTerms, FeedbackSettings | None, np.ndarray] | None = None
        #: The BM25 score a strong top hit needs, calibrated at build time (confidence.py); None: not calibrated.
        self.confidence: Confidence | None = None
        self._vocab_names: list[str] | None = None
        self._plain: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._checked_terms: set[int] = set()  # term ids whose posting lists were found in range
        self._all_checked = False  # every posting list was found in range at once (`hold_small`)
        #: Kiwi's analysis of every Korean word the index was built from (queries read it instead of Kiwi).
        self.eojeols: EojeolTable | None = None
        self._recorder: EojeolRecorder | None = None

    def __len__(self) -> int:
        return int(self.chunk_ids.shape[0])

    @property
    def _pos(self) -> dict[int, int]:
        """Chunk id -> row, built on first use (filtered searches only: a million-entry dict costs 100+ MB)."""
        if self._pos_map is None:
            self._pos_map = {int(cid): i for i, cid in enumerate(self.chunk_ids.tolist())}
        return self._pos_map

    @classmethod
    def build(
        cls,
        chunks: list[Chunk],
        papers: dict[str, Paper],
        weights: FieldWeights | None = None,
        token_cache: Mapping[str, list[str]] | None = None,
        mine: bool = True,
        eojeol_rows: Mapping[str, tuple[str, int]] | None = None,
    ) -> LexicalIndex:
        """Index `chunks`, each enriched with its paper's title/tags/authors per `weights`.

        Chunks whose paper is missing from `papers` are indexed on their text alone.
        ``token_cache`` (text hash -> tokens, e.g. the previous build's
        `token_entries`) skips analysing texts seen before; it must come from
        the same analysis (`analysis_cache_key`). With ``mine`` a bilingual
        lexicon is mined from the documents' tokens (`lexicon.mine_lexicon`).
        ``eojeol_rows`` (`previous_eojeols` of the index the token cache came
        from) holds the words of those texts for the word table `save` writes
        (`digest_rag.lexical.word_table`). A build of many papers feeds a `LexicalBuilder` batch by batch instead.
        """
        from digest_rag.lexical.builder import (  # the builder makes LexicalIndexes
            LexicalBuilder,
            TokenCache,
        )

        # A reused text's words are in the previous table (``eojeol_rows``); new texts add theirs.
        cache = TokenCache(token_cache, EojeolRecorder(eojeol_rows))
        builder = LexicalBuilder(weights, cache, mine=mine)
        builder.add(chunks, papers)
        index = builder.finish()
        index.token_entries = cache.used
        return index

    def analyse(self, query: str, loanwords: Loanwords | None = None) -> QueryTerms:
        """The question's `QueryTerms` for this index: Korean words read from its word table (Kiwi only for
        words it has never seen), glossary expansions, the partners of its mined lexicon and, with
        ``loanwords``, the English words its Hangul loanwords spell; a compound it does not hold is asked for as
        its indexed parts too (`terms.compound_parts`)."""
        return analyse_query(query, lexicon=self.lexicon, stored=self.eojeols, loanwords=loanwords,
                             indexed=self.holds)

    def holds(self, token: str) -> bool:
        """Whether ``token`` is an indexed term."""
        return self._bm25 is not None and token in self._bm25.vocab_dict

    def vocabulary(self) -> Iterator[str]:
        """Every indexed token (`loanwords.loanword_rows` picks the English ones a loanword may spell)."""
        return iter(self._bm25.vocab_dict) if self._bm25 is not None else iter(())

    def scores(self, query: str | QueryTerms) -> np.ndarray:
        """BM25 score of every indexed chunk (aligned with `chunk_ids`) for ``query`` (analysed by `analyse`
        unless it already is).

        The query's own tokens count once each (a repeated word does not double
        its weight); glossary expansions into the other language count
        `EXPANSION_WEIGHT` (see `digest_rag.lexical.terms.analyse_query`).
        """
        terms = dict((self.analyse(query) if isinstance(query, str) else query).weights)
        scores = self.term_scores(terms)
        if self.feedback is not None:
            extra = feedback_terms(self, scores, terms, self.feedback)
            if extra:
                scores += self.term_scores(extra)
        return scores

    def term_bound(self, token: str) -> float | None:
        """The highest score ``token`` gets in any passage (weight 1), None for a token the index lacks: what a
        question's word could contribute at best (`confidence.coverage`)."""
        if self._bm25 is None:
            return None
        tid = self._bm25.vocab_dict.get(token)
        data, _indices, indptr = self._arrays()
        if tid is None or not 0 <= tid < len(indptr) - 1:
            return None
        lo, hi = self._postings(token, tid)
        return float(data[lo:hi].max()) if hi > lo else None

    def _postings(self, token: str, tid: int) -> tuple[int, int]:
        """Where term ``tid``'s postings lie in the score arrays, checked: the arrays are memory-mapped and
        checked where they are read, not scanned whole at load, so a damaged posting list is an
        IndexCorruptedError, never an IndexError or a wrong answer (once per term and loaded index: the files
        never change under a loaded generation; all at once by `hold_small`)."""
        data, indices, indptr = self._arrays()
        lo, hi = int(indptr[tid]), int(indptr[tid + 1])
        if not self._all_checked and tid not in self._checked_terms:
            docs = indices[lo:hi] if 0 <= lo <= hi else indices[:0]
            n = len(self)
            if not 0 <= lo <= hi <= data.shape[0] or (docs.size and (int(docs.min()) < 0 or int(docs.max()) >= n)):
                raise IndexCorruptedError(f"{self.directory or 'lexical index'}: posting list of {token!r} out of range")
            self._checked_terms.add(tid)
        return lo, hi

    def bound_quantile(self, q: float) -> float | None:
        """The ``q`` quantile of every indexed token's highest score (`term_bound`), None for an empty index."""
        if self._bm25 is None:
            return None
        data, _indices, indptr = self._arrays()
        starts = indptr[:-1][np.diff(indptr) > 0]
        if data.size == 0 or starts.size == 0:
            return None
        return float(np.quantile(np.maximum.reduceat(data, starts), q))

    def _scores_once(self, query: str | QueryTerms) -> np.ndarray:
        """`scores`, worked out once for the same analysed question (and feedback setting) searched again."""
        if not isinstance(query, QueryTerms):
            return self.scores(query)
        last = self._last_scores  # one read: another thread may replace it meanwhile
        if last is not None and last[0] is query and last[1] is self.feedback:
            return last[2]
        scores = self.scores(query)
        scores.setflags(write=False)
        self._last_scores = (query, self.feedback, scores)
        return scores

    def vocab_names(self) -> list[str]:
        """Token of each term id (the vocabulary inverted), built on first use."""
        if self._vocab_names is None:
            names = [""] * (len(self._bm25.scores["indptr"]) - 1) if self._bm25 is not None else []
            if self._bm25 is not None:
                for tok, tid in self._bm25.vocab_dict.items():
                    if 0 <= tid < len(names):
                        names[tid] = tok
            self._vocab_names = names
        return self._vocab_names

    def term_scores(self, terms: dict[str, float]) -> np.ndarray:
        """Weighted sum of the per-term BM25 scores of `terms` (token -> weight)."""
        n = len(self)
        out = np.zeros(n, dtype=np.float32)
        if self._bm25 is None or n == 0:
            return out
        vocab = self._bm25.vocab_dict
        # The one place that reads bm25s's score arrays by hand, for two reasons: each query term has its
        # own weight (glossary expansions count EXPANSION_WEIGHT, concept tokens CONCEPT_WEIGHT), which
        # bm25s.BM25.retrieve cannot express (it weighs every query token 1), and a search process must not
        # import bm25s and scipy at all (a second of start-up per CLI question; see issue 14, BENCHMARKS.md).
        data, indices, indptr = self._arrays()
        n_terms = len(indptr) - 1
        lists: list[tuple[int, int, float]] = []
        for tok, w in terms.items():
            tid = vocab.get(tok)
            if tid is None or not 0 <= tid < n_terms or w <= 0:
                continue
            lo, hi = self._postings(tok, tid)
            if hi > lo:
                lists.append((lo, hi, w))
        if len(lists) == 1:  # a term's postings name each document once
            lo, hi, w = lists[0]
            out[indices[lo:hi]] = np.float32(w) * data[lo:hi]
        elif lists:
            # One pass over every posting of the question's ~20 terms (their own weights), not one
            # fancy-indexed add per term: half the scoring time of a question.
            docs = np.concatenate([indices[lo:hi] for lo, hi, _w in lists])
            weighted = np.concatenate([data[lo:hi] * np.float32(w) for lo, hi, w in lists])
            out = np.bincount(docs, weights=weighted, minlength=n).astype(np.float32, copy=False)
        return out

    def hold_small(self) -> None:
        """For an index of at most `HELD_TERMS` terms (a process's second search: more will come): its
        vocabulary as a dict and every posting list range-checked at once (~0.1 ms for ml-papers' 17,000 terms
        and 130,000 postings), so a question's new terms cost no binary search and no check each. A list out of
        range is left to the per-term check, which names it."""
        if self._bm25 is None or self._all_checked:
            return
        if self.eojeols is not None:
            self.eojeols.hold()
        vocab = self._bm25.vocab_dict
        if len(vocab) > HELD_TERMS:
            return
        if isinstance(vocab, SortedVocab):
            try:
                vocab.hold()
            except UnicodeDecodeError:  # damaged token bytes: lookups keep searching (and finding nothing there)
                pass
        data, indices, indptr = self._arrays()
        n = len(self)
        if indptr.size and int(indptr[0]) == 0 and int(indptr[-1]) == data.shape[0] == indices.shape[0] \
                and bool(np.all(indptr[1:] >= indptr[:-1])) \
                and (indices.size == 0 or (int(indices.min()) >= 0 and int(indices.max()) < n)):
            self._all_checked = True

    def _arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The score matrix's data, indices and indptr as plain ndarray views of the same memory (a
        numpy.memmap wraps every slice and reduction in Python-level bookkeeping: a third of scoring)."""
        if self._plain is None:
            sc = self._bm25.scores
            self._plain = tuple(a.view(np.ndarray) if isinstance(a, np.memmap) else np.asarray(a)
                                for a in (sc["data"], sc["indices"], sc["indptr"]))
        return self._plain

    def score_document(self, terms: Mapping[str, float], tokens: Sequence[str]) -> float | None:
        """BM25 score, for ``terms`` (token -> weight, as `term_scores` takes), of a document that is not in the
        index (``tokens``: its tokens, fields included), under the index's statistics (idf of each term, mean
        document length), as if it had been indexed too (which would have changed them by one document).
        None for an index saved without its mean document length (built before it was recorded).

        Fusion calibration (search/calibration.py) scores a paper's stand-in text this way."""
        if self._bm25 is None:
            return 0.0
        avg_len = self._bm25.scores.get("avg_len")
        if not avg_len:
            return None
        counts = Counter(tokens)
        n = float(self._bm25.scores["num_docs"])
        vocab = self._bm25.vocab_dict
        indptr = self._bm25.scores["indptr"]
        k1, b = self._bm25.k1, self._bm25.b
        norm = k1 * ((1 - b) + b * len(tokens) / float(avg_len))
        total = 0.0
        for tok, w in terms.items():
            tf = counts.get(tok, 0)
            if tf <= 0 or w <= 0:
                continue
            tid = vocab.get(tok)
            df = float(indptr[tid + 1] - indptr[tid]) if tid is not None and 0 <= tid < len(indptr) - 1 else 0.0
            idf = math.log(1.0 + (n - df + 0.5) / (df + 0.5))
            total += w * idf * tf / (norm + tf)
        return total

    def search(self, query: str | QueryTerms, k: int = 100, allowed: set[int] | None = None) -> list[tuple[int, float]]:
        """Top `k` (chunk id, score) pairs, best first, positive scores only.

        `allowed` restricts the result to those chunk ids (filters by date, tag,
        language are applied before ranking, so k results are still returned).
        """
        if k <= 0:
            return []
        scores = self._scores_once(query)
        if scores.size == 0:
            return []
        if allowed is not None:
            mask = np.zeros(scores.shape[0], dtype=bool)
            pos = [self._pos[c] for c in allowed if c in self._pos]
            if not pos:
                return []
            mask[pos] = True
            scores = np.where(mask, scores, 0.0)
        candidates = np.flatnonzero(scores > 0)
        if candidates.size == 0:
            return []
        if candidates.size > k:
            # Keep only scores >= the k-th largest (ties included) before sorting: at a million
            # documents most of them match a common word, and a full sort costs more than the scoring.
            cand_scores = scores[candidates]
            kth = np.partition(cand_scores, cand_scores.size - k)[cand_scores.size - k]
            candidates = candidates[cand_scores >= kth]
        # Stable order on ties (chunk order) keeps results reproducible.
        order = candidates[np.lexsort((candidates, -scores[candidates]))][:k]
        return list(zip(self.chunk_ids[order].tolist(), scores[order].tolist(), strict=True))

    # ------------------------------------------------------------------ persistence

    def save(self, directory: Path) -> list[str]:
        """Write the index into `directory` (created if needed); returns the file names written."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if self._bm25 is not None:
            sc = self._bm25.scores
            data, indices, indptr = sc["data"], sc["indices"], sc["indptr"]
            vocab: dict[str, int] = dict(self._bm25.vocab_dict.items())
            params: dict[str, Any] = {
                "k1": self._bm25.k1,
                "b": self._bm25.b,
                "delta": self._bm25.delta,
                "method": self._bm25.method,
                "idf_method": self._bm25.idf_method,
                "dtype": self._bm25.dtype,
                "int_dtype": self._bm25.int_dtype,
                "num_docs": int(sc["num_docs"]),
                # Mean document length: scoring a document outside the matrix needs it (score_document).
                **({"avg_len": float(sc["avg_len"])} if sc.get("avg_len") else {}),
                # The matrix is bm25s's layout and scoring, built by bm25_matrix (see there).
                "builder": "digest_rag.lexical.matrix",
            }
        else:
            data = np.zeros(0, dtype=np.float32)
            indices = np.zeros(0, dtype=np.int32)
            indptr = np.zeros(1, dtype=np.int64)
            vocab, params = {}, {"num_docs": 0}
        save_npy(directory / DATA_FILE, np.ascontiguousarray(data))
        save_npy(directory / INDICES_FILE, np.ascontiguousarray(indices))
        save_npy(directory / INDPTR_FILE, np.ascontiguousarray(indptr))
        save_npy(directory / CHUNK_IDS_FILE, self.chunk_ids)
        tokens = sorted((t.encode("utf-8"), i) for t, i in vocab.items())
        save_npy(directory / VOCAB_BLOB_FILE, np.frombuffer(b"".join(t for t, _i in tokens), dtype=np.uint8))
        offsets = np.zeros(len(tokens) + 1, dtype=np.int64)
        np.cumsum([len(t) for t, _i in tokens], out=offsets[1:])
        save_npy(directory / VOCAB_OFFSETS_FILE, offsets)
        save_npy(directory / VOCAB_IDS_FILE, np.array([i for _t, i in tokens], dtype=np.int64))
        (directory / PARAMS_FILE).write_text(json.dumps(params, indent=1), encoding="utf-8")
        self.lexicon.save(directory)
        meta = {
            "format": FORMAT,
            "analysis": self.analysis_version,
            "weights": self.weights.model_dump(),
            "chunk_count": len(self),
            "files": list(LEXICAL_FILES),
        }
        if self.confidence is not None:
            meta["confidence"] = self.confidence.model_dump()
        (directory / META_FILE).write_text(json.dumps(meta, indent=1), encoding="utf-8")
        if self._recorder is not None:
            self._recorder.save(directory / EOJEOL_FILE)
            return [*LEXICAL_FILES, EOJEOL_FILE]
        return list(LEXICAL_FILES)

    def close(self) -> None:
        """Release the word table's SQLite connection (searches then start Kiwi for Korean words)."""
        if self.eojeols is not None:
            self.eojeols.close()

    @staticmethod
    def previous_eojeols(directory: Path) -> dict[str, tuple[str, int]] | None:
        """The word table's entries of the index saved in ``directory`` (the next build's starting counts);
        None when it has none or it cannot be read (then the next build must analyse every text again)."""
        path = Path(directory) / EOJEOL_FILE
        if not path.is_file():
            return None
        table = None
        try:
            table = EojeolTable(path)
            return table.rows()
        except IndexCorruptedError:
            return None
        finally:
            if table is not None:
                table.close()

    @classmethod
    def load(cls, directory: Path, eojeols: bool = False) -> LexicalIndex:
        """Load an index written by `save`; any damaged file raises `IndexCorruptedError` naming it.

        ``eojeols``: open the word table too (the caller checked that the manifest lists it).
        """
        directory = Path(directory)
        meta = read_json(directory / META_FILE)
        try:
            if meta.get("format") not in READABLE_FORMATS:
                raise ValueError(f"unknown lexical index format {meta.get('format')!r}; rebuild the index (digest-rag build)")
            weights = FieldWeights.model_validate(meta["weights"])
            analysis = str(meta["analysis"])
            # Indexes built before issue 25 have no calibration: their searches say nothing about strength.
            confidence = Confidence.model_validate(meta["confidence"]) if meta.get("confidence") else None
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            raise IndexCorruptedError(f"{directory / META_FILE}: {exc}") from exc
        if analysis != ANALYSIS_VERSION:
            # Documents were tokenized differently from how queries are now:
            # searching would silently miss matches, so refuse and ask for a rebuild.
            raise IndexCorruptedError(
                f"{directory / META_FILE}: lexical index was built with text analysis {analysis!r}, "
                f"this digest_rag uses {ANALYSIS_VERSION!r}; rebuild the index (digest-rag build)"
            )
        params = read_json(directory / PARAMS_FILE)
        vocab: Any = SortedVocab.load(directory) if meta["format"] == 3 else read_json(directory / VOCAB_FILE)
        data = read_npy(directory / DATA_FILE)
        indices = read_npy(directory / INDICES_FILE)
        indptr = read_npy(directory / INDPTR_FILE)
        count = meta.get("chunk_count")
        chunk_ids = read_npy(directory / CHUNK_IDS_FILE, length=count if isinstance(count, int) else None)

        def bad(name: str, why: str) -> IndexCorruptedError:
            return IndexCorruptedError(f"{directory / name}: {why}")

        if chunk_ids.ndim != 1 or chunk_ids.dtype.kind not in "iu":
            raise bad(CHUNK_IDS_FILE, "not a 1-d integer array")
        if meta.get("chunk_count") != chunk_ids.shape[0]:
            raise bad(CHUNK_IDS_FILE, f"{chunk_ids.shape[0]} chunk ids, lexical.json says {meta.get('chunk_count')}")
        if not isinstance(vocab, (dict, SortedVocab)) or (
                isinstance(vocab, dict) and not all(isinstance(v, int) for v in vocab.values())):
            raise bad(VOCAB_FILE, "not a token -> id mapping")
        if not isinstance(params, dict):
            raise bad(PARAMS_FILE, "not a JSON object")
        num_docs = params.get("num_docs")
        if num_docs != chunk_ids.shape[0]:
            raise bad(PARAMS_FILE, f"num_docs {num_docs!r} differs from {chunk_ids.shape[0]} chunk ids")
        if indptr.ndim != 1 or indptr.dtype.kind not in "iu" or indptr.shape[0] < 1:
            raise bad(INDPTR_FILE, "not a 1-d integer array")
        if data.ndim != 1 or data.dtype.kind != "f":
            raise bad(DATA_FILE, "not a 1-d float array")
        if indices.ndim != 1 or indices.dtype.kind not in "iu" or indices.shape != data.shape:
            raise bad(INDICES_FILE, "not an integer array matching the data array")
        if int(indptr[-1]) != data.shape[0] or (indptr.shape[0] > 1 and np.any(np.diff(indptr) < 0)):
            raise bad(INDPTR_FILE, "pointers do not match the data array")
        # Document numbers inside the posting lists are checked per term when a query reads them
        # (term_scores): a scan here would read every posting of a million-document index per process.
        n_terms = indptr.shape[0] - 1
        if isinstance(vocab, SortedVocab):
            if vocab.covered(n_terms) < n_terms:
                raise bad(VOCAB_IDS_FILE, f"vocabulary does not cover the {n_terms} indexed terms")
        elif vocab and sum(1 for v in vocab.values() if 0 <= v < n_terms) < n_terms:
            raise bad(VOCAB_FILE, f"vocabulary does not cover the {n_terms} indexed terms")

        retriever: LoadedBM25 | None = None
        if num_docs:
            try:
                retriever = LoadedBM25(
                    vocab_dict=vocab,
                    scores={"data": data, "indices": indices, "indptr": indptr, "num_docs": int(num_docs),
                            **({"avg_len": float(params["avg_len"])} if params.get("avg_len") else {})},
                    k1=float(params["k1"]),
                    b=float(params["b"]),
                    delta=float(params["delta"]),
                    method=str(params["method"]),
                    idf_method=params.get("idf_method"),
                    dtype=str(params["dtype"]),
                    int_dtype=str(params["int_dtype"]),
                )
            except (KeyError, ValueError, TypeError, OverflowError) as exc:
                raise bad(PARAMS_FILE, f"bad BM25 parameters ({exc})") from exc
            # BM25L/BM25+ need an extra array we never write; refuse them (bm25s's methods_requiring_nonoccurrence).
            if retriever.method in ("bm25l", "bm25+"):
                raise bad(PARAMS_FILE, f"unsupported BM25 method {retriever.method!r}")
        index = cls(retriever, chunk_ids, weights)
        index.analysis_version = analysis
        index.directory = directory
        index.lexicon = MinedLexicon.load(directory)
        index.confidence = confidence
        if eojeols:
            index.eojeols = EojeolTable(directory / EOJEOL_FILE)
        return index










