"""Fusion of retrievers' chunk rankings, and aggregation of chunks into papers."""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import TYPE_CHECKING

from digest_rag.errors import IndexCorruptedError, UsageError
from digest_rag.models import Chunk, Paper, SearchHit, SearchMode
from digest_rag.search.snippets import Highlighter, make_snippet

if TYPE_CHECKING:  # pragma: no cover
    from digest_rag.storage.store import ChunkHead

RRF_K = 60

#: Weight of each retriever's paper ranking in hybrid fusion (weighted
#: reciprocal rank fusion) for an index that calibrated none (built before
#: calibration). A build measures its own weights and rank constant on
#: pseudo-queries from its corpus (search/calibration.py, `IndexManifest.fusion`).
#: Override per search (`DigestIndex.search(fusion_weights=...)`) and sweep with
#: ``digest-rag eval --fusion-weights``.
DEFAULT_FUSION_WEIGHTS: dict[str, float] = {"dense": 1.0, "lexical": 1.0}


def parse_fusion_weights(text: str) -> dict[str, float]:
    """``"dense=0.5,lexical=1"`` (or ``"0.5:1"``, dense first) as retriever -> weight; UsageError when malformed."""
    names = tuple(DEFAULT_FUSION_WEIGHTS)
    raw = text.strip()
    try:
        if "=" in raw:
            pairs = [part.split("=", 1) for part in raw.split(",") if part.strip()]
            weights = {name.strip(): float(value) for name, value in pairs}
        else:
            values = [float(v) for v in raw.split(":")]
            if len(values) != len(names):
                raise ValueError(f"expected {len(names)} numbers")
            weights = dict(zip(names, values, strict=True))
    except ValueError as exc:
        raise UsageError(f"bad fusion weights {text!r} ({exc}); write e.g. dense=0.5,lexical=1 or 0.5:1") from exc
    unknown = set(weights) - set(names)
    if unknown:
        raise UsageError(f"unknown retriever in fusion weights: {', '.join(sorted(unknown))} (use {', '.join(names)})")
    if any(w < 0 or w != w for w in weights.values()) or not any(w > 0 for w in weights.values()):
        raise UsageError(f"fusion weights must be non-negative and not all zero: {text!r}")
    return {**DEFAULT_FUSION_WEIGHTS, **weights}


def fusion_label(weights: Mapping[str, float], rrf_k: int, shape: str = "rrf", english_weight: float | None = None) -> str:
    """A fusion in a few words: ``dense=0.2,lexical=1 k=10`` (rank fusion) or ``zscore dense=0.3 (no Korean
    text: 1),lexical=1`` (score fusion)."""
    dense, lexical = weights.get("dense", 0.0), weights.get("lexical", 1.0)
    if shape != "zscore":
        return f"dense={dense:g},lexical={lexical:g} k={rrf_k}"
    english = f" (no Korean text: {english_weight:g})" if english_weight is not None else ""
    return f"zscore dense={dense:g}{english},lexical={lexical:g}"


def rrf_fuse(rankings: Mapping[str, Sequence[tuple[int, float]]], k: int = RRF_K) -> list[tuple[int, float, list[str]]]:
    """Reciprocal rank fusion of several (id, score) rankings.

    Returns (id, fused score, names of the rankings that contained the id),
    best first. RRF ignores the raw scores, which live on incomparable scales
    (cosine vs BM25), and rewards ids that several retrievers agree on.
    """
    fused: dict[int, float] = {}
    found: dict[int, list[str]] = {}
    for name, ranking in rankings.items():
        for rank, (cid, _score) in enumerate(ranking, start=1):
            fused[cid] = fused.get(cid, 0.0) + 1.0 / (k + rank)
            found.setdefault(cid, []).append(name)
    order = sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))
    return [(cid, score, found[cid]) for cid, score in order]


def fuse_papers(
    rankings: Mapping[str, Sequence[tuple[int, float]]],
    chunk_paper: Mapping[int, str],
    k: int = RRF_K,
    weights: Mapping[str, float] | None = None,
) -> list[tuple[int, float, list[str]]]:
    """Reciprocal rank fusion at the paper level; returns (snippet chunk id, score, retrievers).

    Each retriever's chunk ranking is first collapsed to a paper ranking (a
    paper ranks where its best chunk does), then the paper rankings are fused.
    Fusing chunks directly favours papers with many chunks: one of their
    chunks is likely to rank well in both lists by chance. The snippet is the
    paper's chunk with the best chunk-level fused score. ``weights`` scales
    each retriever's 1/(k + rank) (default `DEFAULT_FUSION_WEIGHTS`).
    """
    weights = DEFAULT_FUSION_WEIGHTS if weights is None else weights
    paper_rrf: dict[str, float] = {}
    for name, ranking in rankings.items():
        for rank, pid in enumerate(_best_scores(ranking, chunk_paper), start=1):
            paper_rrf[pid] = paper_rrf.get(pid, 0.0) + weights.get(name, 1.0) / (k + rank)
    return _paper_rows(rankings, chunk_paper, paper_rrf, k)


def _best_scores(ranking: Sequence[tuple[int, float]], chunk_paper: Mapping[int, str]) -> dict[str, float]:
    """Each paper of a chunk ranking (best first) with its best chunk's score, in ranking order."""
    best: dict[str, float] = {}
    for cid, score in ranking:
        pid = chunk_paper.get(cid)
        if pid is not None and pid not in best:
            best[pid] = score
    return best


def _paper_rows(rankings: Mapping[str, Sequence[tuple[int, float]]], chunk_paper: Mapping[int, str],
                scores: Mapping[str, float], k: int) -> list[tuple[int, float, list[str]]]:
    """Papers by fused ``scores``, each as (snippet chunk id, score, retrievers that found it); the snippet is the
    paper's chunk with the best chunk-level reciprocal rank fusion. Ties (rank 1 + rank 2 either way round) go to
    the lexical side: exact names are its strength."""
    best_chunk: dict[str, int] = {}
    found: dict[str, set[str]] = {}
    for cid, _score, names in rrf_fuse(rankings, k):
        pid = chunk_paper.get(cid)
        if pid is None:
            continue
        best_chunk.setdefault(pid, cid)
        found.setdefault(pid, set()).update(names)
    lexical_rank = {pid: r for r, pid in enumerate(_best_scores(rankings.get("lexical", ()), chunk_paper), start=1)}
    none = len(scores) + 1
    order = sorted(scores.items(), key=lambda kv: (-round(kv[1], 12), lexical_rank.get(kv[0], none), kv[0]))
    return [(best_chunk[pid], score, sorted(found[pid])) for pid, score in order]


#: Chunks of each ranking whose papers set the mean and spread of its z-scores (`request.CANDIDATES`: what a
#: first page's search hands to fusion, and what calibration measures).
Z_DEPTH = 200


def zscores(scores: Sequence[float], depth: int | None = None) -> tuple[list[float], float]:
    """``scores`` (best first) as z-scores over the first ``depth`` of them (all when None), and the floor: the
    lowest z-score, which a paper the ranking lacks is given. All zero when they do not vary."""
    head = [float(s) for s in scores[:depth]] if depth is not None else [float(s) for s in scores]
    if not head:
        return [], 0.0
    mean = sum(head) / len(head)
    spread = math.sqrt(sum((s - mean) ** 2 for s in head) / len(head))
    if spread <= 1e-12:
        return [0.0] * len(scores), 0.0
    z = [(float(s) - mean) / spread for s in scores]
    return z, min(z)


def fuse_scores(
    rankings: Mapping[str, Sequence[tuple[int, float]]],
    chunk_paper: Mapping[int, str],
    weights: Mapping[str, float] | None = None,
    *,
    english: Collection[str] = (),
    english_weight: float | None = None,
    k: int = RRF_K,
    depth: int = Z_DEPTH,
) -> list[tuple[int, float, list[str]]]:
    """Score fusion at the paper level (z-score normalisation, weighted sum); returns what `fuse_papers` does.

    Each retriever's paper scores (a paper's best chunk) become z-scores over the papers of its first ``depth``
    chunks; a paper one retriever did not return gets that retriever's lowest. A paper scores the weighted sum.
    Unlike reciprocal ranks this keeps how far a retriever's top stands out from the rest: a dense top that is
    plainly nearer than its neighbours counts for more than one that barely leads (docs/EVAL.md, issue 24).
    ``english``: papers with no Korean text, whose dense weight is ``english_weight`` (when given) instead of
    the dense one: a Korean question reaches them lexically only through translations. ``k`` only picks each
    paper's snippet chunk (`rrf_fuse`).
    """
    weights = DEFAULT_FUSION_WEIGHTS if weights is None else weights
    fused: dict[str, float] = {}
    sides: list[tuple[str, dict[str, float], float]] = []
    for name, ranking in rankings.items():
        best = _best_scores(ranking, chunk_paper)
        head = len(_best_scores(ranking[:depth], chunk_paper))
        z, floor = zscores(list(best.values()), head)
        sides.append((name, dict(zip(best, z, strict=True)), floor))
    papers = {pid for _name, z, _f in sides for pid in z}
    for name, z, floor in sides:
        w = weights.get(name, 1.0)
        w_en = english_weight if name == "dense" and english_weight is not None else w
        for pid in papers:
            fused[pid] = fused.get(pid, 0.0) + (w_en if pid in english else w) * z.get(pid, floor)
    return _paper_rows(rankings, chunk_paper, fused, k)


def rank_chunks(
    rankings: Mapping[str, Sequence[tuple[int, float]]],
    chunk_paper: Mapping[int, str],
    weights: Mapping[str, float] | None = None,
    k: int = RRF_K,
    *,
    shape: str = "rrf",
    english: Collection[str] = (),
    english_weight: float | None = None,
) -> list[tuple[int, float, list[str]]]:
    """(chunk id, score, retrievers) best first: one retriever's ranking as it is, several fused by paper:
    ``shape`` "rrf" by weighted reciprocal ranks (``k``: the rank constant, `fuse_papers`), "zscore" by their
    weighted z-scores (``english``, ``english_weight``: `fuse_scores`)."""
    if len(rankings) == 1:
        name, ranking = next(iter(rankings.items()))
        return [(cid, score, [name]) for cid, score in ranking]
    if shape == "zscore":
        return fuse_scores(rankings, chunk_paper, weights, english=english, english_weight=english_weight, k=k)
    return fuse_papers(rankings, chunk_paper, k=k, weights=weights)


def lead_first(ranked: Sequence[tuple[int, float, list[str]]], chunk_paper: Mapping[int, str],
               lead: str) -> list[tuple[int, float, list[str]]]:
    """``ranked`` (`rank_chunks`' output) with the entries of paper ``lead`` moved to the front, scored as
    the best entry: known-item matching's top paper (the one a question names, first on the lexical side)
    keeps the top of a hybrid ranking, whatever rank the dense side gives it."""
    if not ranked:
        return list(ranked)
    top = ranked[0][1]
    ahead = [(cid, max(score, top), found) for cid, score, found in ranked if chunk_paper.get(cid) == lead]
    return ahead + [row for row in ranked if chunk_paper.get(row[0]) != lead]


def aggregate(
    ranked_chunks: Sequence[tuple[int, float, list[str]]],
    chunks: Mapping[int, Chunk] | Mapping[int, ChunkHead],
    papers: Mapping[str, Paper],
    k: int,
    query: Highlighter | None = None,
    fetch: Callable[[list[int]], Mapping[int, Chunk]] | None = None,
    *,
    offset: int = 0,
    exclude: frozenset[str] = frozenset(),
) -> list[SearchHit]:
    """Each paper once, scored by its best chunk, that chunk as the snippet.

    The papers ranked ``offset`` .. ``offset + k - 1`` (0-based) are returned: a page of the
    ranking. Papers in ``exclude`` are left out (a "more like this" search drops the paper itself).

    With ``query`` (the search's `Highlighter`), each snippet is centred on the query's matches (see
    :func:`make_snippet`). ``chunks`` may hold only each chunk's paper and
    section kind (`store.ChunkHead`); ``fetch`` then reads the snippet chunks
    of the ``k`` papers shown (`Store.chunks`).

    ``modes`` of a hit is the union of the retrievers that found any of the
    paper's chunks, so a reader can tell lexical-only matches from agreed ones.
    """
    best: dict[str, tuple[int, float]] = {}
    snippet_of: dict[str, int] = {}
    modes: dict[str, set[str]] = {}
    order: list[str] = []
    # One retriever's ranking names the same retriever for every chunk: once the page's papers are found
    # and each has its snippet chunk, the rest of the ranking (hundreds of candidates) changes nothing.
    first = ranked_chunks[0][2] if ranked_chunks else []
    single = len(first) <= 1 and all(found == first for _cid, _s, found in ranked_chunks)
    end = offset + k
    waiting: set[str] = set()  # papers of the page still without a text chunk
    for cid, score, found in ranked_chunks:
        chunk = chunks.get(cid)
        if chunk is None or chunk.paper_id in exclude or chunk.paper_id not in papers:
            continue
        pid = chunk.paper_id
        modes.setdefault(pid, set()).update(found)
        if pid not in best:
            best[pid] = (cid, score)
            order.append(pid)
            if offset < len(order) <= end:
                waiting.add(pid)
        # A title chunk scores the paper but makes a poor snippet: prefer the best text chunk.
        if chunk.section_kind != "title" and pid not in snippet_of:
            snippet_of[pid] = cid
            waiting.discard(pid)
        if single and len(order) >= end and not waiting:
            break
    shown = [(pid, snippet_of.get(pid, best[pid][0])) for pid in order[offset:offset + k]]
    full: Mapping[int, Chunk | ChunkHead] = fetch([cid for _pid, cid in shown]) if fetch is not None else chunks
    read = getattr(papers, "read", None)  # a `PaperLookup` reads the page's papers at once
    if read is not None:
        papers = read([pid for pid, _cid in shown])
    hits: list[SearchHit] = []
    for pid, cid in shown:
        score = best[pid][1]
        chunk = full.get(cid)
        if not isinstance(chunk, Chunk):  # a head whose chunk was not fetched: the store changed under us
            raise IndexCorruptedError(f"chunk {cid} vanished while searching")
        found_modes: list[SearchMode] = [m for m in ("dense", "lexical") if m in modes[pid]]  # type: ignore[misc]
        hits.append(
            SearchHit(
                paper=papers[pid],
                score=score,
                snippet=make_snippet(chunk.text, query=query),
                section=chunk.section_kind,
                language=chunk.language,
                chunk_id=cid,
                modes=found_modes,
            )
        )
    return hits
