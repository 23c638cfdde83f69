"""Pseudo-queries for fusion calibration, drawn from an index's own corpus (`search.calibration` scores them).

A pseudo-query is a Korean sentence of a paper (`korean_sentence`) with the paper that answers it; its
stand-in is the document that answers it as a build would have indexed it (`stand_in_scorer`). A model
trained on the corpus (`digest-rag train`) says in its report which papers and sentences it never saw
(`trained_heldout`, `trained_sentences`): those are the ones asked.
"""

from __future__ import annotations

import hashlib
import heapq
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from digest_rag.models import Chunk
from digest_rag.text import SENTENCE_END

__all__ = [
    "MAX_PAPERS",
    "STAND_IN_CHARS",
    "TRAIN_HELDOUT_SALT",
    "TRAIN_REPORT",
    "PseudoQuery",
    "PseudoQuerySampler",
    "StandIns",
    "korean_sentence",
    "sentences_of",
    "stand_in_scorer",
    "trained_heldout",
    "trained_sentences",
    "without_sentence",
]

#: Papers drawn for pseudo-queries (each gives up to two: note and english).
MAX_PAPERS = 300


_HANGUL = re.compile(r"[\uac00-\ud7a3]")
_LETTER = re.compile(r"[^\W\d_]")


@dataclass(frozen=True)
class PseudoQuery:
    """One pseudo-query: its text, the paper that answers it, and the chunks taken out of the rankings."""

    text: str
    paper_id: str
    kind: str  # "note" or "english"
    excluded: frozenset[int] = field(default_factory=frozenset)
    #: Text of the stand-in document for the excluded chunks: note: the source chunk without the sentence;
    #: english: the paper's English chunks' text (its English title is added from the paper). "" for none.
    doc: str = ""


def _key(paper_id: str) -> int:
    return int.from_bytes(hashlib.sha256(f"fusion-calibration:{paper_id}".encode()).digest()[:8], "big")


def korean_sentence(text: str, paper_id: str) -> str | None:
    """The first sentence of ``text`` fit to be a question (25-250 characters, mostly Hangul); None when there
    is none. A note's opening sentence says what the paper does, as a reader's question does; a sentence
    drawn at random was as often a remark ("레이턴시를 측정해볼 가치가 있을 것 같습니다."), which neither
    retriever can trace to its paper (tune figures: docs/EVAL.md, issue 24). ``paper_id`` is unused (kept
    for callers)."""
    candidates = []
    for sent in SENTENCE_END.split(text):
        sent = " ".join(sent.split())
        if not 25 <= len(sent) <= 250:
            continue
        letters = len(_LETTER.findall(sent))
        if letters and len(_HANGUL.findall(sent)) >= 0.5 * letters:
            candidates.append(sent)
    return candidates[0] if candidates else None


def sentences_of(text: str) -> list[str]:
    """The sentences of ``text`` as `korean_sentence` splits them, whitespace collapsed."""
    return [" ".join(s.split()) for s in SENTENCE_END.split(text)]


def without_sentence(text: str, sentence: str) -> str:
    """``text`` with every occurrence of ``sentence`` (as `korean_sentence` gave it) left out, whitespace
    collapsed; ``text`` itself when it does not hold the sentence."""
    kept = sentences_of(text)
    if sentence not in kept:
        return text
    return " ".join(k for k in kept if k and k != sentence)


#: Characters of a paper's English text a stand-in keeps (a passage's worth; the rest would be other chunks).
STAND_IN_CHARS = 1500


#: A note stand-in shorter than this is no document: the sentence was (nearly) all its chunk held.
MIN_STAND_IN = 20


class PseudoQuerySampler:
    """Draws pseudo-queries from the chunks a build writes, a batch of whole papers at a time.

    Keeps the ``limit`` papers with the smallest hash of their id (a bounded heap), so memory stays
    small at a million papers and the same corpus always gives the same queries.
    """

    def __init__(self, limit: int = MAX_PAPERS, keep: Callable[[str], bool] | None = None,
                 sentences: Mapping[str, str] | None = None) -> None:
        self.limit = limit
        self.keep = keep
        #: Paper id -> the sentence to ask (one its model's training never saw: `trained_sentences`).
        self.sentences = sentences or {}
        self._heap: list[tuple[int, str, tuple[PseudoQuery, ...]]] = []  # max-heap by key (negated)
        #: Papers seen, and those with no Korean text (nothing but English chunks): `english_share`.
        self.papers = 0
        self.english_only = 0

    def add(self, chunks: Iterable[Chunk]) -> None:
        by_paper: dict[str, list[Chunk]] = {}
        for c in chunks:
            by_paper.setdefault(c.paper_id, []).append(c)
        for pid, cs in by_paper.items():
            self.papers += 1
            self.english_only += not any(c.language in ("ko", "mixed") for c in cs)
            if self.keep is not None and not self.keep(pid):
                continue
            key = _key(pid)
            if len(self._heap) >= self.limit and -self._heap[0][0] <= key:
                continue
            queries = self._queries(pid, cs, self.sentences.get(pid))
            if not queries:
                continue
            item = (-key, pid, queries)
            if len(self._heap) < self.limit:
                heapq.heappush(self._heap, item)
            else:
                heapq.heapreplace(self._heap, item)

    @staticmethod
    def _queries(pid: str, chunks: Sequence[Chunk], sentence: str | None = None) -> tuple[PseudoQuery, ...]:
        korean = [c for c in chunks if c.language in ("ko", "mixed") and c.section_kind != "title"]
        if not korean:
            return ()
        if sentence is not None:  # the one its model's training left out, asked from the chunk that holds it
            source = next((c for c in korean if sentence in sentences_of(c.text)), None)
            if source is None:
                return ()
            text: str | None = sentence
        else:
            source = korean[_key(pid) % len(korean)]
            text = korean_sentence(source.text, pid)
        if text is None:
            return ()
        out = []
        rest = without_sentence(source.text, text)
        rest = rest if len(rest) >= MIN_STAND_IN else ""
        # The paper must keep some text to be found by: BM25 indexes a title passage only for a paper with no
        # other text, so a paper whose one text chunk is the query's source is found by the stand-in alone.
        if rest or any(c.id != source.id and c.section_kind != "title" for c in chunks):
            out.append(PseudoQuery(text, pid, "note", frozenset({source.id}), rest))
        english = "\n".join(c.text for c in chunks if c.language == "en" and c.section_kind != "title")
        out.append(PseudoQuery(text, pid, "english", frozenset(c.id for c in chunks), english[:STAND_IN_CHARS]))
        return tuple(out)

    def queries(self) -> list[PseudoQuery]:
        """The pseudo-queries drawn, in a fixed order."""
        return [q for _k, _pid, qs in sorted(self._heap, key=lambda t: (-t[0], t[1])) for q in qs]

    @property
    def english_share(self) -> float:
        """Share of the papers seen that have no Korean text: the weight of ``english`` pseudo-queries."""
        return self.english_only / self.papers if self.papers else 0.0


#: The training report `digest-rag train` writes into a model directory, and the salt of its held-out split.
TRAIN_REPORT = "digest_rag_train.json"


TRAIN_HELDOUT_SALT = "train-heldout"


def trained_heldout(model: str | None) -> Callable[[str], bool] | None:
    """For a model trained on digests by `digest-rag train`: which paper ids its training held out (never
    trained on), read from its report (``heldout_paper_ids``, else the split rule of
    `digest_rag.evaluation.evaluate.stable_bucket` with the report's ``heldout_share``). None for any other
    model (or a report that cannot be read): every paper may give pseudo-queries. Papers one sentence of
    which the training left out (`trained_sentences`) are kept too."""
    from digest_rag.evaluation.evaluate import stable_bucket

    data = _read_report(model)
    if data is None:
        return None
    sentences = _report_sentences(data)
    ids = data.get("heldout_paper_ids")
    if isinstance(ids, list) and ids and all(isinstance(i, str) for i in ids):
        held = frozenset(ids) | frozenset(sentences)
        return held.__contains__
    options = data.get("options")
    share = options.get("heldout_share") if isinstance(options, dict) else None
    if not isinstance(share, (int, float)) or isinstance(share, bool) or not 0 < share < 0.5:
        return None
    buckets = max(2, round(1 / share))
    return lambda pid: pid in sentences or stable_bucket(pid, buckets, TRAIN_HELDOUT_SALT) == 0


def _read_report(model: str | None) -> dict[str, object] | None:
    """The training report of a model directory `digest-rag train` wrote; None when there is none or it
    cannot be read."""
    import json

    if not model:
        return None
    path = Path(model) / TRAIN_REPORT
    try:
        if not path.is_file() or path.stat().st_size > 50_000_000:
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def _report_sentences(data: Mapping[str, object]) -> dict[str, str]:
    sentences = data.get("heldout_sentences")
    if not isinstance(sentences, dict):
        return {}
    return {k: v for k, v in sentences.items() if isinstance(k, str) and isinstance(v, str)}


def trained_sentences(model: str | None) -> dict[str, str]:
    """For a model `digest-rag train` made: paper id -> the Korean sentence its training left out of that
    paper's text (the report's ``heldout_sentences``), to be asked as that paper's pseudo-query: the
    model knows the paper, never the question, as with a reader's question about a paper it trained on.
    Empty for any other model."""
    data = _read_report(model)
    return _report_sentences(data) if data is not None else {}


#: Scores of each pseudo-query's stand-in document: (lexical, dense), None where it has none.
StandIns = Callable[[Sequence[PseudoQuery]], tuple[list[float | None], list[float | None]]]


def stand_in_scorer(lexical: object, papers: Mapping[str, object], encode_queries: Callable[[Sequence[str]], np.ndarray],
                    encode_passages: Callable[[Sequence[str]], np.ndarray]) -> StandIns:
    """Scores of each query's stand-in document as a build would have indexed it.

    Lexical: its tokens and the paper's title, tag and author tokens (the English-only paper's, for an
    english query) as `LexicalBuilder` adds them, scored by `LexicalIndex.score_document`. Dense: its
    passage as the chunker writes it (the paper's title line, then the text) and, for an english query, the
    paper's title passage too; the better inner product with the query vector.
    """
    from digest_rag.build.chunking import title_line
    from digest_rag.evaluation.variants import english_only
    from digest_rag.lexical.builder import TokenCache, paper_field_tokens

    def score(queries: Sequence[PseudoQuery]) -> tuple[list[float | None], list[float | None]]:
        index = lexical  # a LexicalIndex (typed loosely: this module loads it lazily)
        cache = TokenCache(None)
        docs: list[tuple[object, str] | None] = []
        for q in queries:
            paper = papers.get(q.paper_id)
            if paper is None:
                docs.append(None)
                continue
            if q.kind == "english":
                paper = english_only(paper)  # type: ignore[arg-type]
                docs.append((paper, q.doc))
            else:
                docs.append((paper, q.doc) if q.doc else None)
        weights = index.weights  # type: ignore[attr-defined]
        fields = paper_field_tokens({f"{i}": d[0] for i, d in enumerate(docs) if d is not None},  # type: ignore[misc]
                                    [f"{i}" for i, d in enumerate(docs) if d is not None], cache)
        texts = [(d[1] or d[0].title) if d is not None else "" for d in docs]  # type: ignore[union-attr]
        tokens = cache.tokens(texts)
        lex: list[float | None] = []
        passages: list[str] = []
        owners: list[int] = []
        for i, (q, d) in enumerate(zip(queries, docs, strict=True)):
            if d is None:
                lex.append(None)
                continue
            paper, text = d
            title, tags, authors = fields.get(f"{i}", ([], [], []))
            doc = [*tokens[i], *title * weights.title, *tags * weights.tags, *authors * weights.authors]
            lex.append(index.score_document(dict(index.analyse(q.text).weights), doc))  # type: ignore[attr-defined]
            if text:
                passages.append(f"{title_line(paper)}\n{text}")  # type: ignore[arg-type]
                owners.append(i)
            if q.kind == "english":
                passages.append(title_line(paper))  # type: ignore[arg-type]
                owners.append(i)
        dense: list[float | None] = [None] * len(queries)
        if passages:
            qv = np.asarray(encode_queries([q.text for q in queries]), dtype=np.float32)
            pv = np.asarray(encode_passages(passages), dtype=np.float32)
            for i, v in zip(owners, pv, strict=True):
                value = float(qv[i] @ v)
                dense[i] = value if dense[i] is None else max(dense[i], value)  # type: ignore[type-var]
        return lex, dense

    return score
