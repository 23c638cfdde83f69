"""Fusion calibration: each index picks its own dense/lexical weights and RRF constant at build time.

A dense model helps some corpora and drags others: with a random model hybrid
search falls far below lexical, and even a trained one loses to lexical on
questions that share the paper's words. So fusion is measured per index, on
**pseudo-queries drawn from the index's own corpus** (never a test set):

* ``note``: a Korean sentence of one of a paper's Korean (or mixed) chunks,
  answered by the paper's *other* chunks (the sentence's own chunk is taken out
  of both rankings, so the query is held out from the text that answers it);
* ``cross``: the same sentence answered by the paper's English chunks alone
  (all its Korean and mixed chunks taken out): a Korean question about a paper
  indexed by its English text, the strictly cross-lingual case.

Papers are drawn by a hash of their id (the same papers on every build of
the same corpus). A model trained on this corpus (`digest-rag train`) has
learnt its papers' own pairs, so a sentence of a paper it trained on says
nothing about questions it has never seen: when the model directory holds the
training report (`digest_rag_train.json`), only the papers that training held
out are drawn (`trained_heldout`). Each pseudo-query is searched once per retriever, exactly as
`DigestIndex.search` does (the index's saved BM25 files and word table, the
FAISS index, the query encoder); every (dense weight, k) of the grid is then
scored from those two rankings, which costs milliseconds.

The choice: the (weight, k) with the best MRR@10. The dense side keeps a
weight only when it is better than chance (the 2.5% quantile of its MRR over
a bootstrap of the pseudo-queries above a random ranking's) **and** the
chosen fusion beats lexical (mean MRR gain at least `MIN_GAIN`, and positive in
at least 97.5% of paired bootstrap resamples). Otherwise the dense weight is 0:
hybrid search is then lexical search and never loads the encoder.
"""

from __future__ import annotations

import hashlib
import heapq
import math
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from digest_rag.models import Chunk, FusionCalibration

__all__ = [
    "METHOD",
    "PseudoQuery",
    "PseudoQuerySampler",
    "calibrate",
    "chance_mrr",
    "fusion_ranks",
    "paired_bootstrap",
]

METHOD = "pseudo-queries-v1 (ko note sentence -> other chunks | english chunks; grid; bootstrap gate)"
#: Papers drawn for pseudo-queries (each gives up to two: note and cross).
MAX_PAPERS = 200
#: Fewer pseudo-queries than this and the dense side is not trusted with a weight.
MIN_QUERIES = 20
#: The dense weights (lexical weighs 1) and rank constants tried.
DENSE_WEIGHTS = (0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0, 3.0)
RRF_KS = (5, 10, 20, 30, 60, 100)
#: The smallest mean MRR@10 gain over lexical that earns the dense side a weight.
MIN_GAIN = 0.005
#: How many chunks each retriever hands to fusion (search.request.CANDIDATES).
CANDIDATES = 200
BOOTSTRAP = 1000

_SENTENCE_END = re.compile(r"(?<=[.!?。])\s+|\n+")
_HANGUL = re.compile(r"[\uac00-\ud7a3]")
_LETTER = re.compile(r"[^\W\d_]")


@dataclass(frozen=True)
class PseudoQuery:
    """One pseudo-query: its text, the paper that answers it, and the chunks taken out of the rankings."""

    text: str
    paper_id: str
    kind: str  # "note" or "cross"
    excluded: frozenset[int] = field(default_factory=frozenset)


def _key(paper_id: str) -> int:
    return int.from_bytes(hashlib.sha256(f"fusion-calibration:{paper_id}".encode()).digest()[:8], "big")


def korean_sentence(text: str, paper_id: str) -> str | None:
    """A sentence of ``text`` fit to be a question (25-250 characters, mostly Hangul), chosen by the paper's
    hash; None when there is none."""
    candidates = []
    for sent in _SENTENCE_END.split(text):
        sent = " ".join(sent.split())
        if not 25 <= len(sent) <= 250:
            continue
        letters = len(_LETTER.findall(sent))
        if letters and len(_HANGUL.findall(sent)) >= 0.5 * letters:
            candidates.append(sent)
    if not candidates:
        return None
    return candidates[_key(paper_id) % len(candidates)]


class PseudoQuerySampler:
    """Draws pseudo-queries from the chunks a build writes, a batch of whole papers at a time.

    Keeps the ``limit`` papers with the smallest hash of their id (a bounded heap), so memory stays
    small at a million papers and the same corpus always gives the same queries.
    """

    def __init__(self, limit: int = MAX_PAPERS, keep: Callable[[str], bool] | None = None) -> None:
        self.limit = limit
        self.keep = keep
        self._heap: list[tuple[int, str, tuple[PseudoQuery, ...]]] = []  # max-heap by key (negated)

    def add(self, chunks: Iterable[Chunk]) -> None:
        by_paper: dict[str, list[Chunk]] = {}
        for c in chunks:
            by_paper.setdefault(c.paper_id, []).append(c)
        for pid, cs in by_paper.items():
            if self.keep is not None and not self.keep(pid):
                continue
            key = _key(pid)
            if len(self._heap) >= self.limit and -self._heap[0][0] <= key:
                continue
            queries = self._queries(pid, cs)
            if not queries:
                continue
            item = (-key, pid, queries)
            if len(self._heap) < self.limit:
                heapq.heappush(self._heap, item)
            else:
                heapq.heapreplace(self._heap, item)

    @staticmethod
    def _queries(pid: str, chunks: Sequence[Chunk]) -> tuple[PseudoQuery, ...]:
        korean = [c for c in chunks if c.language in ("ko", "mixed") and c.section_kind != "title"]
        if not korean:
            return ()
        source = korean[_key(pid) % len(korean)]
        text = korean_sentence(source.text, pid)
        if text is None:
            return ()
        out = []
        # The paper must keep some text to be found by: BM25 indexes a title passage only for a paper with no
        # other text, so a paper whose one text chunk is the query's source could only be found by dense.
        if any(c.id != source.id and c.section_kind != "title" for c in chunks):
            out.append(PseudoQuery(text, pid, "note", frozenset({source.id})))
        if any(c.language == "en" and c.section_kind != "title" for c in chunks):
            not_english = frozenset(c.id for c in chunks if c.language != "en")
            out.append(PseudoQuery(text, pid, "cross", not_english))
        return tuple(out)

    def queries(self) -> list[PseudoQuery]:
        """The pseudo-queries drawn, in a fixed order."""
        return [q for _k, _pid, qs in sorted(self._heap, key=lambda t: (-t[0], t[1])) for q in qs]


#: The training report `digest-rag train` writes into a model directory, and the salt of its held-out split.
TRAIN_REPORT = "digest_rag_train.json"
TRAIN_HELDOUT_SALT = "train-heldout"


def trained_heldout(model: str | None) -> Callable[[str], bool] | None:
    """For a model trained on digests by `digest-rag train`: which paper ids its training held out (never
    trained on), read from its report (``heldout_paper_ids``, else the split rule of
    `digest_rag.evaluation.evaluate.stable_bucket` with the report's ``heldout_share``). None for any other
    model (or a report that cannot be read): every paper may give pseudo-queries."""
    import json

    from digest_rag.evaluation.evaluate import stable_bucket

    if not model:
        return None
    path = Path(model) / TRAIN_REPORT
    try:
        if not path.is_file() or path.stat().st_size > 50_000_000:
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    ids = data.get("heldout_paper_ids")
    if isinstance(ids, list) and all(isinstance(i, str) for i in ids):
        held = frozenset(ids)
        return held.__contains__
    options = data.get("options")
    share = options.get("heldout_share") if isinstance(options, dict) else None
    if not isinstance(share, (int, float)) or isinstance(share, bool) or not 0 < share < 0.5:
        return None
    buckets = max(2, round(1 / share))
    return lambda pid: stable_bucket(pid, buckets, TRAIN_HELDOUT_SALT) == 0


def chance_mrr(n_papers: int, k: int = 10) -> float:
    """MRR@k of a uniformly random ranking of ``n_papers`` with one relevant paper."""
    if n_papers <= 0:
        return 0.0
    return sum(1.0 / r for r in range(1, min(k, n_papers) + 1)) / n_papers


def paper_ranks(ranking: Sequence[tuple[int, float]], chunk_paper: Mapping[int, str],
                excluded: frozenset[int]) -> dict[str, int]:
    """Each paper's 1-based rank where its best chunk ranks (chunks in ``excluded`` left out)."""
    ranks: dict[str, int] = {}
    for cid, _score in ranking:
        if cid in excluded:
            continue
        pid = chunk_paper.get(cid)
        if pid is not None and pid not in ranks:
            ranks[pid] = len(ranks) + 1
    return ranks


def fusion_ranks(lexical: Mapping[str, int], dense: Mapping[str, int], target: str,
                 weights: Sequence[float], ks: Sequence[int]) -> np.ndarray:
    """The target paper's rank in the fusion of two paper rankings, for every (dense weight, k): shape
    (len(weights), len(ks)); 0 where the target is in neither ranking.

    Scores and ties as `fusion.fuse_papers`: lexical weighs 1, a paper scores Σ w / (k + rank), and ties
    go to the better lexical rank, then the smaller paper id.
    """
    if target not in lexical and target not in dense:
        return np.zeros((len(weights), len(ks)), dtype=np.int64)
    papers = sorted(set(lexical) | set(dense))
    none = len(papers) + 1
    rl = np.array([lexical.get(p, 0) for p in papers], dtype=np.float64)
    rd = np.array([dense.get(p, 0) for p in papers], dtype=np.float64)
    t = papers.index(target)
    w = np.asarray(weights, dtype=np.float64)[:, None, None]
    k = np.asarray(ks, dtype=np.float64)[None, :, None]
    with np.errstate(divide="ignore"):
        s = np.where(rl > 0, 1.0 / (k + rl), 0.0) + w * np.where(rd > 0, 1.0 / (k + rd), 0.0)
    s = np.round(s, 12)
    st = s[:, :, t:t + 1]
    tie = np.where(rl > 0, rl, none) * (len(papers) + 1) + np.arange(len(papers))
    better = (s > st) | ((s == st) & (tie < tie[t]))
    return 1 + better.sum(axis=2)


def _rr(ranks: np.ndarray, k: int = 10) -> np.ndarray:
    ranks = np.asarray(ranks, dtype=np.float64)
    return np.where((ranks >= 1) & (ranks <= k), 1.0 / np.maximum(ranks, 1), 0.0)


def paired_bootstrap(diff: np.ndarray, resamples: int = BOOTSTRAP, seed: int = 0) -> tuple[float, float]:
    """The 2.5% and 97.5% quantiles of the mean of ``diff`` (per-query differences) over bootstrap resamples."""
    diff = np.asarray(diff, dtype=np.float64)
    if diff.size == 0:
        return 0.0, 0.0
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, diff.size, size=(resamples, diff.size))].mean(axis=1)
    return float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def calibrate(
    queries: Sequence[PseudoQuery],
    lexical_search: Callable[[str], Sequence[tuple[int, float]]],
    dense_search: Callable[[Sequence[str]], list[Sequence[tuple[int, float]]]],
    chunk_paper: Callable[[Iterable[int]], Mapping[int, str]],
    n_papers: int,
    *,
    model_name: str | None = None,
) -> FusionCalibration:
    """Measure lexical, dense and every fused (weight, k) on ``queries`` and choose (see the module doc).

    ``lexical_search(text)`` and ``dense_search(texts)`` give (chunk id, score) rankings of `CANDIDATES`
    chunks; ``chunk_paper(ids)`` maps chunk ids to paper ids.
    """
    t0 = time.perf_counter()
    chance = chance_mrr(n_papers)
    lex_ranks: list[dict[str, int]] = []
    dense_ranks: list[dict[str, int]] = []
    if queries:
        lexical = [lexical_search(q.text) for q in queries]
        dense = dense_search([q.text for q in queries])
        heads = chunk_paper({cid for r in (*lexical, *dense) for cid, _s in r})
        for q, lr, dr in zip(queries, lexical, dense, strict=True):
            lex_ranks.append(paper_ranks(lr, heads, q.excluded))
            dense_ranks.append(paper_ranks(dr, heads, q.excluded))
    n = len(queries)
    lex_rr = _rr([r.get(q.paper_id, 0) for q, r in zip(queries, lex_ranks, strict=True)])
    dense_rr = _rr([r.get(q.paper_id, 0) for q, r in zip(queries, dense_ranks, strict=True)])
    grid = np.stack([_rr(fusion_ranks(lr, dr, q.paper_id, DENSE_WEIGHTS, RRF_KS))
                     for q, lr, dr in zip(queries, lex_ranks, dense_ranks, strict=True)]) if n else \
        np.zeros((0, len(DENSE_WEIGHTS), len(RRF_KS)))
    lexical_mrr = float(lex_rr.mean()) if n else 0.0
    dense_mrr = float(dense_rr.mean()) if n else 0.0
    means = grid.mean(axis=0) if n else np.zeros((len(DENSE_WEIGHTS), len(RRF_KS)))
    # Best MRR; among equals the smaller dense weight, then k nearest 60 (the usual constant).
    order = sorted(((-round(float(means[i, j]), 9), DENSE_WEIGHTS[i], abs(RRF_KS[j] - 60), i, j)
                    for i in range(len(DENSE_WEIGHTS)) for j in range(len(RRF_KS))))
    _m, _w, _d, bi, bj = order[0]
    best_rr = grid[:, bi, bj] if n else np.zeros(0)
    gain_low, _high = paired_bootstrap(best_rr - lex_rr)
    dense_low, _dh = paired_bootstrap(dense_rr - chance)
    gain = float(best_rr.mean() - lex_rr.mean()) if n else 0.0
    if n < MIN_QUERIES:
        decision = f"dense off: {n} pseudo-queries are too few to trust a dense weight (need {MIN_QUERIES})"
    elif dense_low <= 0.0:
        decision = (f"dense off: the dense side is no better than chance on {n} pseudo-queries "
                    f"(MRR@10 {dense_mrr:.3f}, chance {chance:.3f})")
    elif gain < MIN_GAIN or gain_low <= 0.0:
        decision = (f"dense off: fusing the dense side does not beat lexical on {n} pseudo-queries "
                    f"(best MRR@10 {best_rr.mean():.3f} vs lexical {lexical_mrr:.3f}, "
                    f"95% interval of the gain from {gain_low:+.3f})")
    else:
        decision = (f"dense on: MRR@10 {lexical_mrr:.3f} -> {best_rr.mean():.3f} on {n} pseudo-queries "
                    f"(95% interval of the gain from {gain_low:+.3f})")
    on = decision.startswith("dense on")
    hybrid_rr = best_rr if on else lex_rr
    return FusionCalibration(
        weights={"dense": DENSE_WEIGHTS[bi] if on else 0.0, "lexical": 1.0},
        rrf_k=RRF_KS[bj] if on else 60,
        method=METHOD,
        model_name=model_name,
        papers=n_papers,
        queries=n,
        lexical_mrr=round(lexical_mrr, 4),
        dense_mrr=round(dense_mrr, 4),
        hybrid_mrr=round(float(hybrid_rr.mean()) if n else 0.0, 4),
        chance_mrr=round(chance, 6),
        gain_low=round(gain_low if on else 0.0, 4),
        lexical_r1=round(float((lex_rr == 1.0).mean()) if n else 0.0, 4),
        dense_r1=round(float((dense_rr == 1.0).mean()) if n else 0.0, 4),
        hybrid_r1=round(float((hybrid_rr == 1.0).mean()) if n else 0.0, 4),
        decision=decision,
        seconds=round(time.perf_counter() - t0, 3),
    )


def describe(cal: FusionCalibration) -> str:
    """One line for `info` and the build's message."""
    w = cal.weights
    return (f"dense={w.get('dense', 0.0):g},lexical={w.get('lexical', 1.0):g} k={cal.rrf_k}; {cal.decision}; "
            f"MRR@10 lexical {cal.lexical_mrr:.3f}, dense {cal.dense_mrr:.3f}, hybrid {cal.hybrid_mrr:.3f}")


def reusable(previous: FusionCalibration | None, model_name: str | None, n_papers: int) -> bool:
    """True when a rebuild that encoded nothing may keep the previous calibration: same model, and the
    number of papers within 10% of the one calibrated on."""
    return (previous is not None and previous.model_name == model_name and previous.papers > 0
            and math.isclose(n_papers, previous.papers, rel_tol=0.1))


def calibrate_generation(
    generation: Path,
    faiss_index: object,
    encode_queries: Callable[[Sequence[str]], np.ndarray],
    queries: Sequence[PseudoQuery],
    n_papers: int,
    *,
    model_name: str | None = None,
) -> FusionCalibration:
    """`calibrate` on a generation a build has just written (before its commit): the BM25 files and word
    table as a search loads them, its store for the chunks' papers, its FAISS index and the query encoder."""
    from digest_rag.lexical.index import LexicalIndex
    from digest_rag.lexical.word_table import EOJEOL_FILE
    from digest_rag.storage.layout import LEXICAL_DIR, STORE_FILE
    from digest_rag.storage.store import Store

    lexical = LexicalIndex.load(generation / LEXICAL_DIR, eojeols=(generation / LEXICAL_DIR / EOJEOL_FILE).is_file())
    store = Store(generation / STORE_FILE)
    try:
        def lexical_search(text: str) -> Sequence[tuple[int, float]]:
            return lexical.search(text, CANDIDATES)

        def dense_search(texts: Sequence[str]) -> list[Sequence[tuple[int, float]]]:
            if not texts:
                return []
            vectors = np.ascontiguousarray(encode_queries(list(texts)), dtype=np.float32)
            ntotal = int(faiss_index.ntotal)  # type: ignore[attr-defined]
            scores, ids = faiss_index.search(vectors, min(CANDIDATES, ntotal))  # type: ignore[attr-defined]
            return [[(int(i), float(s)) for i, s in zip(row_i, row_s, strict=True) if i >= 0]
                    for row_i, row_s in zip(ids, scores, strict=True)]

        def chunk_paper(ids: Iterable[int]) -> Mapping[int, str]:
            return {cid: head.paper_id for cid, head in store.chunk_heads(ids).items()}

        # Korean words are read from the generation's word table (`LexicalIndex.analyse`), as a search does.
        return calibrate(queries, lexical_search, dense_search, chunk_paper, n_papers, model_name=model_name)
    finally:
        store.close()
        lexical.close()
