"""Is the top hit a strong match? A threshold on its BM25 score, calibrated at build time on the index's own text.

A question nothing in the index answers ("양자 컴퓨팅 블록체인" over ML papers) still gets hits: some
paper shares a word or two with it. What separates the two cases is how much of a question the best
paper matches, i.e. its BM25 score, but that score's scale depends on the corpus (its size, document
lengths, vocabulary). So every build measures the scale on pseudo-queries drawn from its own documents
(`calibrate`):

* **on-topic**: `PSEUDO_TERMS` distinct words of one sampled document (what a question about that
  document shares with it at best);
* **off-topic**: `PSEUDO_TERMS` words, each from a different sampled document (words of the corpus,
  but about nothing in particular).

The threshold lies between the off-topic 90th percentile and the on-topic median, four fifths of
the way to the median in log space (`ON_SHARE`, `Confidence.threshold`); a search's `SearchResults.strong_match` is whether its top paper's best BM25
score reaches it (or the paper owns a name the question uses: known-item matching). The rule and its
measured flag rates are in docs/EVAL.md ("Issue 25").

A short question ("스케일링 법칙", "지식 증류") cannot reach a score that six words reach, however well its
best paper matches it. So the score is also read against what the question's own words could score
(`coverage`: the best paper's score over the sum of each word's highest score in the index, a word the index
lacks counted at `Confidence.unseen`), with its own threshold drawn the same way from the same pseudo-queries
(`Confidence.coverage`); reaching either makes a strong match (method pseudo-bags-3).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["CONFIDENCE_METHOD", "Confidence", "DocSample", "calibrate", "coverage"]

CONFIDENCE_METHOD = "pseudo-bags-3"  # + the coverage threshold (pseudo-bags-2: the score alone; -1: ON_SHARE 0.75)
#: Words per pseudo-query.
PSEUDO_TERMS = 6
#: Pseudo-queries of each kind.
PSEUDO_QUERIES = 150
#: Documents kept for drawing them (a reservoir over the whole build, so a fixed cost at any size).
SAMPLE_DOCS = 2 * PSEUDO_QUERIES
#: The threshold sits this far from the off-topic 90th percentile towards the on-topic median, in log space
#: (0.5 would be their geometric mean). Chosen on the tuning questions (docs/EVAL.md, "Issue 25"): 0.8 flags
#: the loose matches of generic concepts ("양자 컴퓨팅 블록체인" -> compute and block papers) that 0.75 let through.
ON_SHARE = 0.8


class Confidence(BaseModel):
    """A build's calibration: the BM25 score a top hit needs to count as a strong match."""

    model_config = ConfigDict(frozen=True)

    method: str = CONFIDENCE_METHOD
    threshold: float = Field(gt=0, description="top paper's best BM25 score needed for a strong match")
    on_median: float = Field(ge=0, description="median top score of on-topic pseudo-queries")
    off_p90: float = Field(ge=0, description="90th percentile top score of off-topic pseudo-queries")
    queries: int = Field(ge=0, description="pseudo-queries of each kind")
    coverage: float | None = Field(default=None, gt=0, description="top paper's coverage of the question's words "
                                   "needed for a strong match (None: an index calibrated before pseudo-bags-3)")
    unseen: float | None = Field(default=None, gt=0, description="highest score counted for a word the index lacks")


class DocSample:
    """A fixed-size, seeded reservoir of documents' distinct words, fed batch by batch during a build."""

    def __init__(self, size: int = SAMPLE_DOCS, seed: int = 25) -> None:
        self.size = size
        self.seen = 0
        self.docs: list[list[str]] = []
        self._rng = random.Random(seed)

    def add(self, docs: Sequence[Sequence[str]]) -> None:
        """Offer each document's words (before the paper fields are appended)."""
        for doc in docs:
            words = sorted({w for w in doc if not w.startswith("ml:")})
            if len(words) < PSEUDO_TERMS:
                continue
            self.seen += 1
            if len(self.docs) < self.size:
                self.docs.append(words)
            else:
                j = self._rng.randrange(self.seen)
                if j < self.size:
                    self.docs[j] = words


def _quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(q * (len(ordered) - 1))))]


def coverage(best: float, tokens: Sequence[str], bound: Callable[[str], float | None], unseen: float) -> float | None:
    """How much of what the question's words could score its best paper scores: ``best`` over the sum of each
    token's highest score in the index (``bound``; ``unseen`` for a token it lacks). None without tokens."""
    total = sum(b if (b := bound(t)) is not None else unseen for t in dict.fromkeys(tokens))
    return best / total if total > 0 else None


def _between(on: float, off: float) -> float:
    return math.exp(ON_SHARE * math.log(on) + (1 - ON_SHARE) * math.log(max(off, 1e-6)))


def calibrate(top_score: Callable[[dict[str, float]], float], sample: DocSample, seed: int = 25,
              bound: Callable[[str], float | None] | None = None, unseen: float | None = None) -> Confidence | None:
    """The threshold of this index: ``top_score(terms)`` is its best BM25 score for a bag of words. With
    ``bound(token)`` (a token's highest score in the index) and ``unseen`` (the score counted for a token the
    index lacks), the coverage threshold too. None when the corpus is too small to draw pseudo-queries from
    (fewer than 2 x `PSEUDO_TERMS` documents)."""
    docs = sample.docs
    if len(docs) < 2 * PSEUDO_TERMS:
        return None
    rng = random.Random(seed)
    n = min(PSEUDO_QUERIES, len(docs))
    on_bags = [rng.sample(doc, PSEUDO_TERMS) for doc in rng.sample(docs, n)]
    off_bags = []
    for _ in range(n):
        picked = rng.sample(range(len(docs)), PSEUDO_TERMS)
        off_bags.append([rng.choice(docs[i]) for i in picked])
    on = [top_score(dict.fromkeys(bag, 1.0)) for bag in on_bags]
    off = [top_score(dict.fromkeys(bag, 1.0)) for bag in off_bags]
    on_median, off_p90 = _quantile(on, 0.5), _quantile(off, 0.9)
    if on_median <= 0:
        return None
    cover: float | None = None
    if bound is not None and unseen is not None and unseen > 0:
        on_cover = [c for s, bag in zip(on, on_bags, strict=True) if (c := coverage(s, bag, bound, unseen)) is not None]
        off_cover = [c for s, bag in zip(off, off_bags, strict=True)
                     if (c := coverage(s, bag, bound, unseen)) is not None]
        if on_cover and off_cover and _quantile(on_cover, 0.5) > 0:
            cover = round(_between(_quantile(on_cover, 0.5), _quantile(off_cover, 0.9)), 4)
    return Confidence(threshold=round(_between(on_median, off_p90), 4), on_median=round(on_median, 4),
                      off_p90=round(off_p90, 4), queries=n, coverage=cover,
                      unseen=round(unseen, 4) if cover is not None and unseen is not None else None)
