"""Cross-language pseudo-relevance feedback (RM3-style) for the BM25 index.

A Korean question often shares its Korean words with other papers' commentary
while the right paper says it in English. Feedback takes the best documents of
a first search, collects their English words and glossary concept tokens weighted by how much each word
scores in each document (its BM25 weight there, times the document's share of
the first search's score), and searches again with the strongest of those
words added at a low weight. It reads the index's own score arrays (no text,
no analysis), so it costs one pass over the postings per search.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:  # pragma: no cover
    from digest_rag.lexical.index import LexicalIndex

__all__ = ["FeedbackSettings", "feedback_terms"]

# English words, and the glossary's concept tokens (language-neutral by construction).
_FEEDBACK_TOKEN = re.compile(r"[a-z][a-z0-9]{2,}|ml:\d+")


class FeedbackSettings(BaseModel):
    """How many first-search documents and feedback words, and how much the words weigh."""

    model_config = ConfigDict(frozen=True)

    docs: int = Field(default=1, ge=1, le=50, description="top documents of the first search read for feedback")
    terms: int = Field(default=20, ge=1, le=100, description="feedback words added to the query")
    weight: float = Field(default=0.3, gt=0, le=1, description="query weight of the strongest feedback word")


def feedback_terms(index: LexicalIndex, scores: np.ndarray, terms: dict[str, float],
                   settings: FeedbackSettings) -> dict[str, float]:
    """English words of the top documents of ``scores`` (a first search's), weighted; none already in ``terms``."""
    bm25 = index._bm25  # noqa: SLF001 - the feedback reads the index's own arrays
    if bm25 is None or not scores.size:
        return {}
    positive = np.flatnonzero(scores > 0)
    if positive.size == 0:
        return {}
    top = positive[np.argsort(-scores[positive], kind="stable")[: settings.docs]]
    doc_weight = np.zeros(scores.shape[0], dtype=np.float32)
    doc_weight[top] = scores[top] / float(scores[top].sum())
    sc = bm25.scores
    data, indices, indptr = sc["data"], sc["indices"], sc["indptr"]
    hit = np.flatnonzero(np.isin(indices, top))
    if hit.size == 0:
        return {}
    term_ids = np.searchsorted(indptr, hit, side="right") - 1
    contrib = data[hit] * doc_weight[indices[hit]]
    totals: dict[int, float] = {}
    for tid, w in zip(term_ids.tolist(), contrib.tolist(), strict=True):
        totals[tid] = totals.get(tid, 0.0) + w
    names = index.vocab_names()
    ranked = sorted(
        ((w, names[tid]) for tid, w in totals.items()
         if 0 <= tid < len(names) and _FEEDBACK_TOKEN.fullmatch(names[tid]) and names[tid] not in terms),
        reverse=True,
    )[: settings.terms]
    if not ranked:
        return {}
    best = ranked[0][0]
    return {tok: settings.weight * w / best for w, tok in ranked if w > 0}
