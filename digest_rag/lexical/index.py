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

import functools
import json
import math
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib import format as npy_format
from pydantic import BaseModel, ConfigDict, Field

from digest_rag.lexical.analysis import (
    ANALYSIS_VERSION,
    bundled_glossary_text,
    default_glossary,
    document_tokens,
    glossary_korean_forms,
    kiwi_morphs,
    query_term_weights,
)
from digest_rag.lexical.matrix import BM25Matrix
from digest_rag.lexical.word_table import EOJEOL_FILE, EOJEOL_FORMAT, EojeolRecorder, EojeolTable
from digest_rag.errors import IndexCorruptedError
from digest_rag.lexical.feedback import FeedbackSettings, feedback_terms
from digest_rag.lexical.lexicon import LEXICON_FILE, MinedLexicon, MinerParams, mine_lexicon
from digest_rag.models import Chunk, Paper
from digest_rag.text import sha256_text

__all__ = ["FieldWeights", "LexicalBuilder", "LexicalIndex", "TokenCache", "LEXICAL_FILES", "LEXICAL_REQUIRED",
           "lexical_chunks"]

# 2: lexicon.json (the mined bilingual lexicon) joined the files.
# 3: the vocabulary as sorted memory-mapped arrays instead of lexical.vocab.json (format 2 is still read).
_FORMAT = 3
_READABLE_FORMATS = (2, 3)
_META = "lexical.json"
_VOCAB = "lexical.vocab.json"
_PARAMS = "lexical.params.json"
_DATA = "lexical.data.npy"
_INDICES = "lexical.indices.npy"
_INDPTR = "lexical.indptr.npy"
_CHUNK_IDS = "lexical.chunk_ids.npy"

# Format 3 keeps the vocabulary sorted and memory-mapped (tokens' UTF-8 bytes, their offsets, their term ids):
# a search looks its few terms up by binary search instead of parsing a million-entry JSON object per process
# (about 2.5 s and 100+ MB at a million papers).
_VOCAB_BLOB = "lexical.vocab_bytes.npy"
_VOCAB_OFFSETS = "lexical.vocab_offsets.npy"
_VOCAB_IDS = "lexical.vocab_ids.npy"
_SORTED_VOCAB_FILES = (_VOCAB_BLOB, _VOCAB_OFFSETS, _VOCAB_IDS)

#: The files of every lexical index, format 2 or 3 (each format has its own vocabulary files besides).
LEXICAL_REQUIRED: tuple[str, ...] = (_META, _PARAMS, _DATA, _INDICES, _INDPTR, _CHUNK_IDS, LEXICON_FILE)
#: Every file `LexicalIndex.save` writes (format 3), in a fixed order.
LEXICAL_FILES: tuple[str, ...] = (_META, _PARAMS, *_SORTED_VOCAB_FILES, _DATA, _INDICES, _INDPTR, _CHUNK_IDS,
                                  LEXICON_FILE)


#: Feedback of a search unless set otherwise on the index (`LexicalIndex.feedback`); see docs/EVAL.md.
DEFAULT_FEEDBACK: FeedbackSettings | None = None


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
    return (f"{ANALYSIS_VERSION}|kiwipiepy-{kiwi}|glossary-{sha256_text(bundled_glossary_text())[:16]}"
            f"|eojeols-{EOJEOL_FORMAT}")


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


def _paper_field_tokens(
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


@dataclass
class _LoadedBM25:
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

    def __init__(self, retriever: _LoadedBM25 | None, chunk_ids: np.ndarray, weights: FieldWeights) -> None:
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
        #: Pseudo-relevance feedback of every search (feedback.py); None: off.
        self.feedback: FeedbackSettings | None = DEFAULT_FEEDBACK
        self._vocab_names: list[str] | None = None
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
        # A reused text's words are in the previous table (``eojeol_rows``); new texts add theirs.
        cache = TokenCache(token_cache, EojeolRecorder(eojeol_rows))
        builder = LexicalBuilder(weights, cache, mine=mine)
        builder.add(chunks, papers)
        index = builder.finish()
        index.token_entries = cache.used
        return index

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every indexed chunk (aligned with `chunk_ids`) for `query`.

        The query's own tokens count once each (a repeated word does not double
        its weight); glossary expansions into the other language count
        `EXPANSION_WEIGHT` (see `analysis.query_term_weights`).
        """
        terms = query_term_weights(query, stored=self.eojeols)
        terms = self.lexicon.expand(terms)
        scores = self.term_scores(terms)
        if self.feedback is not None:
            extra = feedback_terms(self, scores, terms, self.feedback)
            if extra:
                scores += self.term_scores(extra)
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
        sc = self._bm25.scores
        data, indices, indptr = sc["data"], sc["indices"], sc["indptr"]
        n_terms = len(indptr) - 1
        for tok, w in terms.items():
            tid = vocab.get(tok)
            if tid is None or not 0 <= tid < n_terms or w <= 0:
                continue
            lo, hi = int(indptr[tid]), int(indptr[tid + 1])
            docs = indices[lo:hi]
            # The arrays are memory-mapped and checked where they are read, not scanned whole at load:
            # a damaged posting list is an IndexCorruptedError, never an IndexError or a wrong answer.
            if not 0 <= lo <= hi <= data.shape[0] or (docs.size and (int(docs.min()) < 0 or int(docs.max()) >= n)):
                raise IndexCorruptedError(f"{self.directory or 'lexical index'}: posting list of {tok!r} out of range")
            # A term's postings name each document once, so plain fancy-index += is exact.
            out[docs] += np.float32(w) * data[lo:hi]
        return out

    def search(self, query: str, k: int = 100, allowed: set[int] | None = None) -> list[tuple[int, float]]:
        """Top `k` (chunk id, score) pairs, best first, positive scores only.

        `allowed` restricts the result to those chunk ids (filters by date, tag,
        language are applied before ranking, so k results are still returned).
        """
        if k <= 0:
            return []
        scores = self.scores(query)
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
        return [(int(self.chunk_ids[i]), float(scores[i])) for i in order]

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
                # The matrix is bm25s's layout and scoring, built by bm25_matrix (see there).
                "builder": "digest_rag.lexical.matrix",
            }
        else:
            data = np.zeros(0, dtype=np.float32)
            indices = np.zeros(0, dtype=np.int32)
            indptr = np.zeros(1, dtype=np.int64)
            vocab, params = {}, {"num_docs": 0}
        np.save(directory / _DATA, np.ascontiguousarray(data), allow_pickle=False)
        np.save(directory / _INDICES, np.ascontiguousarray(indices), allow_pickle=False)
        np.save(directory / _INDPTR, np.ascontiguousarray(indptr), allow_pickle=False)
        np.save(directory / _CHUNK_IDS, self.chunk_ids, allow_pickle=False)
        tokens = sorted((t.encode("utf-8"), i) for t, i in vocab.items())
        np.save(directory / _VOCAB_BLOB, np.frombuffer(b"".join(t for t, _i in tokens), dtype=np.uint8),
                allow_pickle=False)
        offsets = np.zeros(len(tokens) + 1, dtype=np.int64)
        np.cumsum([len(t) for t, _i in tokens], out=offsets[1:])
        np.save(directory / _VOCAB_OFFSETS, offsets, allow_pickle=False)
        np.save(directory / _VOCAB_IDS, np.array([i for _t, i in tokens], dtype=np.int64), allow_pickle=False)
        (directory / _PARAMS).write_text(json.dumps(params, indent=1), encoding="utf-8")
        self.lexicon.save(directory)
        meta = {
            "format": _FORMAT,
            "analysis": self.analysis_version,
            "weights": self.weights.model_dump(),
            "chunk_count": len(self),
            "files": list(LEXICAL_FILES),
        }
        (directory / _META).write_text(json.dumps(meta, indent=1), encoding="utf-8")
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
        meta = _read_json(directory / _META)
        try:
            if meta.get("format") not in _READABLE_FORMATS:
                raise ValueError(f"unknown lexical index format {meta.get('format')!r}; rebuild the index (digest-rag build)")
            weights = FieldWeights.model_validate(meta["weights"])
            analysis = str(meta["analysis"])
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            raise IndexCorruptedError(f"{directory / _META}: {exc}") from exc
        if analysis != ANALYSIS_VERSION:
            # Documents were tokenized differently from how queries are now:
            # searching would silently miss matches, so refuse and ask for a rebuild.
            raise IndexCorruptedError(
                f"{directory / _META}: lexical index was built with text analysis {analysis!r}, "
                f"this digest_rag uses {ANALYSIS_VERSION!r}; rebuild the index (digest-rag build)"
            )
        params = _read_json(directory / _PARAMS)
        vocab: Any = _SortedVocab.load(directory) if meta["format"] == 3 else _read_json(directory / _VOCAB)
        data = _read_npy(directory / _DATA)
        indices = _read_npy(directory / _INDICES)
        indptr = _read_npy(directory / _INDPTR)
        count = meta.get("chunk_count")
        chunk_ids = _read_npy(directory / _CHUNK_IDS, length=count if isinstance(count, int) else None)

        def bad(name: str, why: str) -> IndexCorruptedError:
            return IndexCorruptedError(f"{directory / name}: {why}")

        if chunk_ids.ndim != 1 or chunk_ids.dtype.kind not in "iu":
            raise bad(_CHUNK_IDS, "not a 1-d integer array")
        if meta.get("chunk_count") != chunk_ids.shape[0]:
            raise bad(_CHUNK_IDS, f"{chunk_ids.shape[0]} chunk ids, lexical.json says {meta.get('chunk_count')}")
        if not isinstance(vocab, (dict, _SortedVocab)) or (
                isinstance(vocab, dict) and not all(isinstance(v, int) for v in vocab.values())):
            raise bad(_VOCAB, "not a token -> id mapping")
        if not isinstance(params, dict):
            raise bad(_PARAMS, "not a JSON object")
        num_docs = params.get("num_docs")
        if num_docs != chunk_ids.shape[0]:
            raise bad(_PARAMS, f"num_docs {num_docs!r} differs from {chunk_ids.shape[0]} chunk ids")
        if indptr.ndim != 1 or indptr.dtype.kind not in "iu" or indptr.shape[0] < 1:
            raise bad(_INDPTR, "not a 1-d integer array")
        if data.ndim != 1 or data.dtype.kind != "f":
            raise bad(_DATA, "not a 1-d float array")
        if indices.ndim != 1 or indices.dtype.kind not in "iu" or indices.shape != data.shape:
            raise bad(_INDICES, "not an integer array matching the data array")
        if int(indptr[-1]) != data.shape[0] or (indptr.shape[0] > 1 and np.any(np.diff(indptr) < 0)):
            raise bad(_INDPTR, "pointers do not match the data array")
        # Document numbers inside the posting lists are checked per term when a query reads them
        # (term_scores): a scan here would read every posting of a million-document index per process.
        n_terms = indptr.shape[0] - 1
        if isinstance(vocab, _SortedVocab):
            if vocab.covered(n_terms) < n_terms:
                raise bad(_VOCAB_IDS, f"vocabulary does not cover the {n_terms} indexed terms")
        elif vocab and sum(1 for v in vocab.values() if 0 <= v < n_terms) < n_terms:
            raise bad(_VOCAB, f"vocabulary does not cover the {n_terms} indexed terms")

        retriever: _LoadedBM25 | None = None
        if num_docs:
            try:
                retriever = _LoadedBM25(
                    vocab_dict=vocab,
                    scores={"data": data, "indices": indices, "indptr": indptr, "num_docs": int(num_docs)},
                    k1=float(params["k1"]),
                    b=float(params["b"]),
                    delta=float(params["delta"]),
                    method=str(params["method"]),
                    idf_method=params.get("idf_method"),
                    dtype=str(params["dtype"]),
                    int_dtype=str(params["int_dtype"]),
                )
            except (KeyError, ValueError, TypeError, OverflowError) as exc:
                raise bad(_PARAMS, f"bad BM25 parameters ({exc})") from exc
            # BM25L/BM25+ need an extra array we never write; refuse them (bm25s's methods_requiring_nonoccurrence).
            if retriever.method in ("bm25l", "bm25+"):
                raise bad(_PARAMS, f"unsupported BM25 method {retriever.method!r}")
        index = cls(retriever, chunk_ids, weights)
        index.analysis_version = analysis
        index.directory = directory
        index.lexicon = MinedLexicon.load(directory)
        if eojeols:
            index.eojeols = EojeolTable(directory / EOJEOL_FILE)
        return index


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

    def add(self, chunks: Sequence[Chunk], papers: Mapping[str, Paper]) -> None:
        """Index ``chunks`` (already filtered by `lexical_chunks`), enriched with their papers' fields."""
        if not chunks:
            return
        w = self.weights
        fields = _paper_field_tokens(papers, (c.paper_id for c in chunks), self.tokens)
        corpus = self.tokens.tokens([c.text for c in chunks])
        if self._mine:
            self._for_miner(chunks, corpus, fields)
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
        retriever = _LoadedBM25(vocab_dict=m.vocab, scores=scores, k1=m.k1, b=m.b, delta=0.5, method="lucene",
                                idf_method="lucene", dtype="float32", int_dtype="int32")
        index = LexicalIndex(retriever, chunk_ids, self.weights)
        index.lexicon = lexicon
        index.analysed_texts = self.tokens.analysed
        recorder = self.tokens.recorder
        if recorder is not None:
            # Readers ask in the glossary's words ("증류", "강화학습") whether or not the corpus writes them in
            # Korean: their readings (alone, as a query reads them) join the table. Kiwi runs only for forms not there.
            forms = [f for f in glossary_korean_forms(bundled_glossary_text())
                     if f not in recorder.readings and not all(w in recorder.readings for w in f.split())]
            for form, morphs in zip(forms, kiwi_morphs(forms) if forms else [], strict=True):
                recorder.observe(form, morphs)
            index._recorder = recorder
        return index


class _SortedVocab(Mapping[str, int]):
    """Token -> term id over the memory-mapped sorted vocabulary files: a lookup is a binary search
    over the tokens' UTF-8 bytes, so opening an index costs nothing per term."""

    def __init__(self, blob: np.ndarray, offsets: np.ndarray, ids: np.ndarray) -> None:
        # Plain ndarray views of the mapped files: indexing a np.memmap builds a memmap object per probe
        # (~20 per lookup), which was a fifth of a lexical search's time.
        self._blob, self._offsets, self._ids = (a.view(np.ndarray) for a in (blob, offsets, ids))

    @classmethod
    def load(cls, directory: Path) -> _SortedVocab:
        blob = _read_npy(directory / _VOCAB_BLOB)
        offsets = _read_npy(directory / _VOCAB_OFFSETS)
        ids = _read_npy(directory / _VOCAB_IDS)
        if blob.dtype != np.uint8:
            raise IndexCorruptedError(f"{directory / _VOCAB_BLOB}: not a byte array")
        if offsets.dtype.kind not in "iu" or offsets.shape[0] < 1 or int(offsets[0]) != 0 \
                or int(offsets[-1]) != blob.shape[0] or np.any(np.diff(offsets) < 0):
            raise IndexCorruptedError(f"{directory / _VOCAB_OFFSETS}: offsets do not match the token bytes")
        if ids.dtype.kind not in "iu" or ids.shape[0] != offsets.shape[0] - 1:
            raise IndexCorruptedError(f"{directory / _VOCAB_IDS}: not one term id per token")
        return cls(blob, offsets, ids)

    def covered(self, n_terms: int) -> int:
        """How many of the tokens name one of the ``n_terms`` indexed terms."""
        return int(np.count_nonzero((self._ids >= 0) & (self._ids < n_terms)))

    def _token(self, i: int) -> bytes:
        return self._blob[int(self._offsets[i]) : int(self._offsets[i + 1])].tobytes()

    def __getitem__(self, token: str) -> int:
        want = token.encode("utf-8", "surrogatepass")
        lo, hi = 0, len(self)
        while lo < hi:
            mid = (lo + hi) // 2
            if self._token(mid) < want:
                lo = mid + 1
            else:
                hi = mid
        if lo < len(self) and self._token(lo) == want:
            return int(self._ids[lo])
        raise KeyError(token)

    def __iter__(self) -> Iterator[str]:
        return (self._token(i).decode("utf-8") for i in range(len(self)))

    def items(self) -> Iterator[tuple[str, int]]:  # type: ignore[override]
        """(token, term id) pairs in token order, without a lookup per token (vocab_names, re-saving)."""
        ids = self._ids.tolist()
        return ((self._token(i).decode("utf-8"), ids[i]) for i in range(len(self)))

    def __len__(self) -> int:
        return int(self._ids.shape[0])


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise IndexCorruptedError(f"{path}: missing lexical index file") from exc
    except (OSError, ValueError) as exc:  # ValueError: not JSON, bad UTF-8, an integer of 5,000 digits
        raise IndexCorruptedError(f"{path}: unreadable or not JSON ({exc})") from exc
    except RecursionError as exc:  # "[[[[..." 200k deep
        raise IndexCorruptedError(f"{path}: not a lexical index file (JSON nested too deeply)") from exc


def _npy_header(fh: Any) -> tuple[tuple[int, ...], np.dtype[Any]]:
    """(shape, dtype) from an open .npy file's header, leaving the file at the first data byte.

    numpy parses the header as a Python literal: a hostile one raises
    SyntaxError, tokenize.TokenError, RecursionError or MemoryError as well as
    ValueError. Each is a damaged header here.
    """
    try:
        version = npy_format.read_magic(fh)
        if version == (1, 0):
            shape, _fortran, dtype = npy_format.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, _fortran, dtype = npy_format.read_array_header_2_0(fh)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except OSError:
        raise
    except Exception as exc:  # noqa: BLE001 - see the docstring
        raise ValueError(f"bad header ({type(exc).__name__}: {' '.join(str(exc).split())[:100]})") from exc
    return tuple(shape), dtype


def _read_npy(path: Path, length: int | None = None) -> np.ndarray:
    """One 1-d array from a .npy file, its header checked against the file size before anything is allocated.

    A forged header can announce 1e10 elements in a 100-byte file; numpy would
    try to allocate them first. The data that follows the header must be
    exactly shape x itemsize bytes (and ``length`` elements when given).
    """
    try:
        with open(path, "rb") as fh:
            shape, dtype = _npy_header(fh)
            if dtype.hasobject:
                raise ValueError("object arrays are not allowed")
            items = math.prod(shape)
            data_bytes = os.fstat(fh.fileno()).st_size - fh.tell()
            if len(shape) != 1 or items * dtype.itemsize != data_bytes:
                raise ValueError(f"header announces shape {shape} of {dtype}, the file holds {data_bytes} data bytes")
            if length is not None and items != length:
                raise ValueError(f"{items} elements, expected {length}")
        # Memory-mapped: a search reads the pages of the terms it asks for, not the whole file.
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError as exc:
        raise IndexCorruptedError(f"{path}: missing lexical index file") from exc
    except (OSError, ValueError, EOFError, TypeError, MemoryError) as exc:
        # ValueError covers truncated data, bad headers and pickled object arrays.
        raise IndexCorruptedError(f"{path}: damaged .npy array ({exc})") from exc
    if not isinstance(arr, np.ndarray):
        raise IndexCorruptedError(f"{path}: not a single .npy array")
    return arr
