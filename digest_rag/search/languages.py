"""Fair scoring across languages: a paper whose only text is English competes with Korean commentary.

A Korean question reaches an English abstract only through the glossary's translations (expansions weigh
0.5, concept tokens 1.5), while another paper's Korean commentary matches its words at full weight. When
every paper keeps its Korean notes this hardly matters, but beside English-only papers it buries them:
on the mixed variant (docs/EVAL.md, "Issue 25") the seed questions about its English-only papers put the
right paper first 0.577 of the time against 0.808 on the full corpus.

So for a question that is not English, the BM25 scores of the chunks of candidate papers with no Korean
or mixed text are multiplied by `ENGLISH_ONLY_BOOST`. Measured alternatives (same table): boosting every
English chunk (costs the full corpus, whose bilingual papers' English abstracts then outrank their own
Korean notes' rivals), and larger factors (1.2 to 1.5 cost the tuning questions on the full corpus).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from operator import itemgetter

__all__ = ["ENGLISH_ONLY_BOOST", "boost_english_only"]

#: The factor on an English-only paper's BM25 scores for a Korean or mixed question.
ENGLISH_ONLY_BOOST = 1.1


def boost_english_only(
    ranking: Sequence[tuple[int, float]],
    chunk_paper: Mapping[int, str],
    english_only: Collection[str],
    factor: float = ENGLISH_ONLY_BOOST,
) -> list[tuple[int, float]]:
    """``ranking`` (chunk id, BM25 score) with the chunks of ``english_only`` papers scored ``factor`` times
    higher, re-sorted (stable)."""
    if not english_only or factor == 1.0:
        return list(ranking)
    out = [(cid, score * factor if chunk_paper.get(cid) in english_only else score) for cid, score in ranking]
    out.sort(key=itemgetter(1), reverse=True)  # (stable: ties keep their order)
    return out
