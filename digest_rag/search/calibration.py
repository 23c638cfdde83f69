"""Fusion calibration: each index picks its own fusion (rank or score fusion, and its weights) at build time.

A dense model helps some corpora and drags others: with a random model hybrid
search falls far below lexical, and even a trained one loses to lexical on
questions that share the paper's words. So fusion is measured per index, on
**pseudo-queries drawn from the index's own corpus** (never a test set):

* ``note``: a Korean sentence of one of a paper's Korean (or mixed) chunks,
  answered by the rest of the paper: its other chunks, and a stand-in for the
  sentence's own chunk, that chunk's text without the sentence (the query is
  held out from the text that answers it);
* ``english``: the same sentence answered by the paper as an English-only paper
  is indexed: every chunk of it taken out, and a stand-in holding its English
  title (and English text, where it has some), with no Korean at all: a Korean
  question about a paper indexed by its English text, the strictly
  cross-lingual case.

A stand-in is scored as if it were indexed: BM25 with the index's statistics
(`LexicalIndex.score_document`, the paper's fields included as a build adds
them) and the passage vector of the model, each inserted into its ranking.
Most notes are one Korean chunk and a title, so without stand-ins a sentence
would leave its paper nothing to be found by.

The two kinds are weighed by the index's own make-up: ``english`` queries
carry the share of its papers that have no Korean text (``english_share``),
``note`` queries the rest; bootstraps resample within each kind.

Papers are drawn by a hash of their id (the same papers on every build of
the same corpus). A model trained on this corpus (`digest-rag train`) has
learnt its papers' own pairs, so a sentence of a paper it trained on says
nothing about questions it has never seen: when the model directory holds the
training report (`digest_rag_train.json`), only the papers that training held
out are drawn (`trained_heldout`). Each pseudo-query is searched once per retriever, exactly as
`DigestIndex.search` does (the index's saved BM25 files and word table, the
FAISS index, the query encoder); every (dense weight, k) of the grid is then
scored from those two rankings, which costs milliseconds.

Two shapes of fusion are tried: weighted reciprocal ranks (dense weight, rank
constant k: `fusion.fuse_papers`) and weighted z-scores of each side's scores
(dense weight, and a dense weight of its own for the papers with no Korean
text, which a Korean question reaches lexically only through translations:
`fusion.fuse_scores`, `Z_GRID`). Ranks cannot tell a dense top that stands far
out from one that barely leads; z-scores can, and so can lean on the dense side
where lexical is blind without following its guesses elsewhere.

The choice: the fusion with the best MRR@10. The dense side keeps a
weight only when it is better than chance (the 2.5% quantile of its MRR over
a bootstrap of the pseudo-queries above a random ranking's) **and** the
chosen fusion beats lexical (mean MRR gain at least `MIN_GAIN`, and positive in
at least 97.5% of paired bootstrap resamples). Otherwise the dense weight is 0:
hybrid search is then lexical search and never loads the encoder.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from digest_rag.models import FusionCalibration
from digest_rag.search.pseudo_queries import (
    PseudoQuery,
    StandIns,
    stand_in_scorer,
)

__all__ = [
    "METHOD",
    "calibrate",
    "calibrate_generation",
    "chance_mrr",
    "describe",
    "fusion_ranks",
    "paired_bootstrap",
    "reusable",
]

METHOD = ("pseudo-queries-v3 (ko note sentence -> rest of the paper | the paper as English-only; stand-ins scored "
          "as indexed; kinds weighed by the index's English-only share; grid of rank fusions and of z-score fusions "
          "with a dense weight of their own for papers with no Korean text; bootstrap gate)")
#: Fewer pseudo-queries than this and the dense side is not trusted with a weight.
MIN_QUERIES = 20
#: The dense weights (lexical weighs 1) and rank constants tried.
DENSE_WEIGHTS = (0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0, 3.0)
RRF_KS = (5, 10, 20, 30, 60, 100)
#: Score fusion (`fusion.fuse_scores`): (dense weight, dense weight of a paper with no Korean text) pairs tried.
#: A Korean question reaches a paper with no Korean text lexically only through translations, so its dense
#: weight may be larger; the dense weight of the others may be 0 while theirs is not.
Z_DENSE_WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0)
Z_ENGLISH_WEIGHTS = (0.5, 1.0, 1.5, 2.0)
Z_GRID = tuple(dict.fromkeys((d, e) for d in Z_DENSE_WEIGHTS for e in (d, *Z_ENGLISH_WEIGHTS) if e >= d and e > 0))
#: The smallest mean MRR@10 gain over lexical that earns the dense side a weight.
MIN_GAIN = 0.005
#: The gain must be above 0 in all but this share of the paired bootstrap's resamples (two-sided 95%). A
#: one-sided 95% test (0.05) was tried (docs/EVAL.md, issue 24): it turned the dense side on for a model whose
#: training left the questions' papers out, and hybrid fell below lexical on them (R@1 -0.067).
GAIN_TAIL = 0.025
#: How many chunks each retriever hands to fusion (search.request.CANDIDATES).
CANDIDATES = 200
BOOTSTRAP = 1000



























def chance_mrr(n_papers: int, k: int = 10) -> float:
    """MRR@k of a uniformly random ranking of ``n_papers`` with one relevant paper."""
    if n_papers <= 0:
        return 0.0
    return sum(1.0 / r for r in range(1, min(k, n_papers) + 1)) / n_papers


def paper_ranks(ranking: Sequence[tuple[int, float]], chunk_paper: Mapping[int, str],
                excluded: frozenset[int]) -> dict[str, int]:
    """Each paper's 1-based rank where its best chunk ranks (chunks in ``excluded`` left out)."""
    return {pid: rank for rank, pid in enumerate(paper_scores(ranking, chunk_paper, excluded), start=1)}


def paper_scores(ranking: Sequence[tuple[int, float]], chunk_paper: Mapping[int, str],
                 excluded: frozenset[int]) -> dict[str, float]:
    """Each paper's best chunk score, in ranking order (chunks in ``excluded`` left out)."""
    best: dict[str, float] = {}
    for cid, score in ranking:
        if cid in excluded:
            continue
        pid = chunk_paper.get(cid)
        if pid is not None and pid not in best:
            best[pid] = score
    return best


def zscore_ranks(lexical: Mapping[str, float], dense: Mapping[str, float], target: str, english: Collection[str],
                 grid: Sequence[tuple[float, float]]) -> np.ndarray:
    """The target paper's rank in the score fusion (`fusion.fuse_scores`, lexical weighing 1) of two paper
    rankings (paper -> best score, best first), for every (dense weight, dense weight of a paper in
    ``english``) of ``grid``; 0 where the target is in neither. Scores and ties as `fuse_scores`."""
    from digest_rag.search.fusion import zscores

    papers = list(dict.fromkeys([*lexical, *dense]))
    if target not in papers:
        return np.zeros(len(grid), dtype=np.int64)
    zl, fl = zscores(list(lexical.values()))
    zd, fd = zscores(list(dense.values()))
    lz, dz = dict(zip(lexical, zl, strict=True)), dict(zip(dense, zd, strict=True))
    lv = np.array([lz.get(p, fl) for p in papers])
    dv = np.array([dz.get(p, fd) for p in papers])
    en = np.array([p in english for p in papers])
    g = np.asarray(grid, dtype=np.float64)
    w = np.where(en[None, :], g[:, 1:2], g[:, 0:1])
    s = np.round(lv[None, :] + w * dv[None, :], 12)
    t = papers.index(target)
    # Ties: the lexical rank (papers it lacks after the rest), then the paper id.
    tie = np.arange(len(papers), dtype=np.float64)
    tie[len(lexical):] = len(papers) + 1
    ahead = (tie < tie[t]) | ((tie == tie[t]) & (np.array(papers) < target))
    better = (s > s[:, t:t + 1]) | ((s == s[:, t:t + 1]) & ahead[None, :])
    better[:, t] = False
    return 1 + better.sum(axis=1)


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


def paired_bootstrap(diff: np.ndarray, resamples: int = BOOTSTRAP, seed: int = 0,
                     weights: np.ndarray | None = None, tail: float = 0.025) -> tuple[float, float]:
    """The ``tail`` and 1 - ``tail`` quantiles (2.5% and 97.5%) of the mean of ``diff`` (per-query
    differences) over bootstrap resamples.

    ``weights`` (per query, from `stratum_weights`): a weighted mean, each stratum (queries of one weight)
    resampled within itself, so every resample keeps the strata's shares."""
    diff = np.asarray(diff, dtype=np.float64)
    if diff.size == 0:
        return 0.0, 0.0
    rng = np.random.default_rng(seed)
    if weights is None:
        means = diff[rng.integers(0, diff.size, size=(resamples, diff.size))].mean(axis=1)
    else:
        weights = np.asarray(weights, dtype=np.float64)
        means = np.zeros(resamples)
        for w in np.unique(weights):
            members = np.flatnonzero(weights == w)
            picks = members[rng.integers(0, members.size, size=(resamples, members.size))]
            means += diff[picks].sum(axis=1) * w
    return float(np.quantile(means, tail)), float(np.quantile(means, 1.0 - tail))


def stratum_weights(queries: Sequence[PseudoQuery], english_share: float | None) -> np.ndarray | None:
    """Per-query weights summing to 1: ``english`` queries share ``english_share``, the others the rest (a
    kind with no query gives its share to the other); None (plain mean) without a share."""
    if english_share is None or not queries:
        return None
    english = np.array([q.kind == "english" for q in queries])
    n_en, n_other = int(english.sum()), int((~english).sum())
    share = min(1.0, max(0.0, english_share))
    if n_en == 0 or n_other == 0:
        return None
    return np.where(english, share / n_en, (1.0 - share) / n_other)


def _insert(ranking: Sequence[tuple[int, float]], cid: int, score: float | None) -> list[tuple[int, float]]:
    """``ranking`` with (cid, score) placed by its score, after any equal one; left out below the last of
    a full ranking (it would not have been among the candidates)."""
    out = list(ranking)
    if score is None:
        return out
    pos = next((i for i, (_c, s) in enumerate(out) if s < score), len(out))
    if pos < CANDIDATES:
        out.insert(pos, (cid, score))
    return out[:CANDIDATES]




def calibrate(
    queries: Sequence[PseudoQuery],
    lexical_search: Callable[[str], Sequence[tuple[int, float]]],
    dense_search: Callable[[Sequence[str]], list[Sequence[tuple[int, float]]]],
    chunk_paper: Callable[[Iterable[int]], Mapping[int, str]],
    n_papers: int,
    *,
    stand_ins: StandIns | None = None,
    english_share: float | None = None,
    english_only: Collection[str] = (),
    no_korean: Collection[str] = (),
    model_name: str | None = None,
) -> FusionCalibration:
    """Measure lexical, dense and every fused (weight, k) on ``queries`` and choose (see the module doc).

    ``lexical_search(text)`` and ``dense_search(texts)`` give (chunk id, score) rankings of `CANDIDATES`
    chunks; ``chunk_paper(ids)`` maps chunk ids to paper ids. ``stand_ins`` scores each query's stand-in
    document (it joins both rankings as chunk id ``-1 - i`` of the query's paper); ``english_share``
    weighs the two kinds of query (`stratum_weights`). ``english_only``: the index's papers with no Korean
    text, whose BM25 scores a Korean question boosts as a search does (`search.languages.boost_english_only`;
    so is an english query's stand-in). ``no_korean``: the papers with no Korean text at all (titles too), whose
    dense weight a score fusion may set apart (`Z_GRID`); an english query's own paper is one of them.
    """
    from digest_rag.search.languages import boost_english_only

    t0 = time.perf_counter()
    chance = chance_mrr(n_papers)
    lex_ranks: list[dict[str, int]] = []
    dense_ranks: list[dict[str, int]] = []
    lex_scores: list[dict[str, float]] = []
    dense_scores: list[dict[str, float]] = []
    if queries:
        lexical = [lexical_search(q.text) for q in queries]
        dense = dense_search([q.text for q in queries])
        heads = dict(chunk_paper({cid for r in (*lexical, *dense) for cid, _s in r}))
        if stand_ins is not None:
            lex_stand, dense_stand = stand_ins(queries)
            for i, q in enumerate(queries):
                heads[-1 - i] = q.paper_id
                lexical[i] = _insert(lexical[i], -1 - i, lex_stand[i] if lex_stand[i] else None)
                dense[i] = _insert(dense[i], -1 - i, dense_stand[i])
        english = frozenset(english_only)
        for i, q in enumerate(queries):  # (a paper of a title alone is not boosted: Store.english_only_papers)
            own = english | {q.paper_id} if q.kind == "english" and q.doc else english
            lexical[i] = boost_english_only(lexical[i], heads, own)
        for q, lr, dr in zip(queries, lexical, dense, strict=True):
            lex_scores.append(paper_scores(lr, heads, q.excluded))
            dense_scores.append(paper_scores(dr, heads, q.excluded))
            lex_ranks.append({p: r for r, p in enumerate(lex_scores[-1], start=1)})
            dense_ranks.append({p: r for r, p in enumerate(dense_scores[-1], start=1)})
    no_ko = frozenset(no_korean)

    def english_of(q: PseudoQuery) -> frozenset[str]:
        return no_ko | {q.paper_id} if q.kind == "english" else no_ko - {q.paper_id}
    n = len(queries)
    weights = stratum_weights(queries, english_share)
    w = weights if weights is not None else (np.full(n, 1.0 / n) if n else np.zeros(0))

    def mean(values: np.ndarray) -> float:
        return float(np.dot(w, values)) if n else 0.0

    lex_rr = _rr([r.get(q.paper_id, 0) for q, r in zip(queries, lex_ranks, strict=True)])
    dense_rr = _rr([r.get(q.paper_id, 0) for q, r in zip(queries, dense_ranks, strict=True)])
    # Every fusion tried: ("rrf", dense weight, k, None) and ("zscore", dense weight, -, English weight).
    fusions = [("rrf", dw, k, None) for dw in DENSE_WEIGHTS for k in RRF_KS] + \
        [("zscore", dw, 60, ew) for dw, ew in Z_GRID]
    grid = np.stack([np.concatenate([_rr(fusion_ranks(lr, dr, q.paper_id, DENSE_WEIGHTS, RRF_KS)).ravel(),
                                     _rr(zscore_ranks(ls, ds, q.paper_id, english_of(q), Z_GRID))])
                     for q, lr, dr, ls, ds in zip(queries, lex_ranks, dense_ranks, lex_scores, dense_scores,
                                                  strict=True)]) if n else np.zeros((0, len(fusions)))
    lexical_mrr = mean(lex_rr)
    dense_mrr = mean(dense_rr)
    means = np.tensordot(w, grid, axes=(0, 0)) if n else np.zeros(len(fusions))
    # Best MRR; among equals the smaller dense weights, rank fusion before score fusion, then k nearest 60.
    order = sorted((-round(float(means[i]), 9), f[1], f[3] if f[3] is not None else f[1], f[0] != "rrf",
                    abs(f[2] - 60), i) for i, f in enumerate(fusions))
    bi = order[0][-1]
    shape, best_dense, best_k, best_english = fusions[bi]
    best_rr = grid[:, bi] if n else np.zeros(0)
    gain_low, _high = paired_bootstrap(best_rr - lex_rr, weights=weights, tail=GAIN_TAIL)
    dense_low, _dh = paired_bootstrap(dense_rr - chance, weights=weights)
    gain = mean(best_rr) - lexical_mrr
    if n < MIN_QUERIES:
        decision = f"dense off: {n} pseudo-queries are too few to trust a dense weight (need {MIN_QUERIES})"
    elif dense_low <= 0.0:
        decision = (f"dense off: the dense side is no better than chance on {n} pseudo-queries "
                    f"(MRR@10 {dense_mrr:.3f}, chance {chance:.3f})")
    elif gain < MIN_GAIN or gain_low <= 0.0:
        decision = (f"dense off: fusing the dense side does not beat lexical on {n} pseudo-queries "
                    f"(best MRR@10 {mean(best_rr):.3f} vs lexical {lexical_mrr:.3f}, "
                    f"95% interval of the gain from {gain_low:+.3f})")
    else:
        decision = (f"dense on ({'score fusion' if shape == 'zscore' else 'rank fusion'}): MRR@10 "
                    f"{lexical_mrr:.3f} -> {mean(best_rr):.3f} on {n} pseudo-queries "
                    f"(95% interval of the gain from {gain_low:+.3f})")
    on = decision.startswith("dense on")
    hybrid_rr = best_rr if on else lex_rr
    return FusionCalibration(
        weights={"dense": best_dense if on else 0.0, "lexical": 1.0},
        rrf_k=best_k if on else 60,
        shape=shape if on else "rrf",
        english_weight=best_english if on else None,
        method=METHOD,
        model_name=model_name,
        papers=n_papers,
        queries=n,
        lexical_mrr=round(lexical_mrr, 4),
        dense_mrr=round(dense_mrr, 4),
        hybrid_mrr=round(mean(hybrid_rr), 4),
        chance_mrr=round(chance, 6),
        gain_low=round(gain_low if on else 0.0, 4),
        lexical_r1=round(mean((lex_rr == 1.0).astype(float)), 4),
        dense_r1=round(mean((dense_rr == 1.0).astype(float)), 4),
        hybrid_r1=round(mean((hybrid_rr == 1.0).astype(float)), 4),
        english_share=round(english_share, 4) if weights is not None and english_share is not None else None,
        decision=decision,
        seconds=round(time.perf_counter() - t0, 3),
    )


def describe(cal: FusionCalibration) -> str:
    """One line for `info` and the build's message."""
    from digest_rag.search.fusion import fusion_label

    return (f"{fusion_label(cal.weights, cal.rrf_k, cal.shape, cal.english_weight)}; {cal.decision}; "
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
    encode_passages: Callable[[Sequence[str]], np.ndarray] | None = None,
    english_share: float | None = None,
    model_name: str | None = None,
) -> FusionCalibration:
    """`calibrate` on a generation a build has just written (before its commit): the BM25 files and word
    table as a search loads them, its store for the chunks' papers, its FAISS index and the query encoder;
    with ``encode_passages``, each query's stand-in (`stand_in_scorer`) joins the rankings."""
    from digest_rag.lexical.index import LexicalIndex
    from digest_rag.lexical.word_table import EOJEOL_FILE
    from digest_rag.storage.layout import LEXICAL_DIR, STORE_FILE
    from digest_rag.storage.store import Store

    lexical = LexicalIndex.load(generation / LEXICAL_DIR, eojeols=(generation / LEXICAL_DIR / EOJEOL_FILE).is_file())
    store = Store(generation / STORE_FILE)
    try:
        papers = store.papers({q.paper_id for q in queries})
        # An english query needs the paper's English title: a title made from a file name is no English text.
        queries = [q for q in queries if q.kind != "english" or (
            q.paper_id in papers and papers[q.paper_id].title.strip() and not papers[q.paper_id].title_from_filename)]

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

        stand_ins = None
        if encode_passages is not None and lexical.score_document({}, []) is not None:
            stand_ins = stand_in_scorer(lexical, papers, encode_queries, encode_passages)
        # Korean words are read from the generation's word table (`LexicalIndex.analyse`), as a search does.
        return calibrate(queries, lexical_search, dense_search, chunk_paper, n_papers, stand_ins=stand_ins,
                         english_share=english_share if stand_ins is not None else None,
                         english_only=store.english_only_papers(), no_korean=store.no_korean_papers(),
                         model_name=model_name)
    finally:
        store.close()
        lexical.close()


