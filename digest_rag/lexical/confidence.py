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
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["CONFIDENCE_METHOD", "Confidence", "DocSample", "calibrate"]

CONFIDENCE_METHOD = "pseudo-bags-2"  # with ON_SHARE in the threshold (pseudo-bags-1: 0.75)
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


def calibrate(top_score: Callable[[dict[str, float]], float], sample: DocSample, seed: int = 25) -> Confidence | None:
    """The threshold of this index: ``top_score(terms)`` is its best BM25 score for a bag of words.
    None when the corpus is too small to draw pseudo-queries from (fewer than 2 x `PSEUDO_TERMS` documents)."""
    docs = sample.docs
    if len(docs) < 2 * PSEUDO_TERMS:
        return None
    rng = random.Random(seed)
    n = min(PSEUDO_QUERIES, len(docs))
    on = [top_score(dict.fromkeys(rng.sample(doc, PSEUDO_TERMS), 1.0)) for doc in rng.sample(docs, n)]
    off = []
    for _ in range(n):
        picked = rng.sample(range(len(docs)), PSEUDO_TERMS)
        off.append(top_score(dict.fromkeys((rng.choice(docs[i]) for i in picked), 1.0)))
    on_median, off_p90 = _quantile(on, 0.5), _quantile(off, 0.9)
    if on_median <= 0:
        return None
    threshold = math.exp(ON_SHARE * math.log(on_median) + (1 - ON_SHARE) * math.log(max(off_p90, 1e-6)))
    return Confidence(threshold=round(threshold, 4), on_median=round(on_median, 4), off_p90=round(off_p90, 4),
                      queries=n)
