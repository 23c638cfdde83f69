"""Fusion of rankings and aggregation of chunks into papers (digest_rag.search.fusion)."""

from __future__ import annotations

import pytest

from digest_rag.search.fusion import aggregate, fuse_papers, fuse_scores, rank_chunks, rrf_fuse, zscores
from digest_rag.models import Chunk, Paper


def chunk(cid: int, pid: str, text: str = "text", kind: str = "summary") -> Chunk:
    return Chunk(id=cid, paper_id=pid, section_index=-1 if kind == "title" else 0, section_kind=kind,
                 language="en", text=text, start=0, end=len(text))


def test_rrf_rewards_agreement_and_reports_retrievers() -> None:
    fused = rrf_fuse({"dense": [(1, 0.9), (2, 0.8)], "lexical": [(2, 7.0), (3, 5.0)]})
    assert [cid for cid, _s, _n in fused] == [2, 1, 3]
    assert fused[0][2] == ["dense", "lexical"] and fused[1][2] == ["dense"]
    assert fused[0][1] == pytest.approx(1 / 62 + 1 / 61)


def test_fuse_papers_counts_each_paper_once_per_retriever() -> None:
    # Paper "a" has three chunks high in the dense list; "b" is first in both lists.
    owner = {1: "a", 2: "a", 3: "a", 4: "b", 5: "c"}
    fused = fuse_papers({"dense": [(4, 1.0), (1, 0.9), (2, 0.8), (3, 0.7)], "lexical": [(4, 9.0), (5, 8.0), (1, 1.0)]}, owner)
    assert [owner[cid] for cid, _s, _n in fused] == ["b", "a", "c"]
    assert fused[0][1] == pytest.approx(2 / 61)  # rank 1 in both, not more for extra chunks


def test_aggregate_one_hit_per_paper_and_no_title_snippet() -> None:
    papers = {p: Paper(id=p, title=f"Paper {p}") for p in "ab"}
    chunks = {1: chunk(1, "a", "Paper a", kind="title"), 2: chunk(2, "a", "body of a"), 3: chunk(3, "b", "body of b"),
              4: chunk(4, "a", "more of a")}
    hits = aggregate([(1, 0.9, ["dense"]), (3, 0.8, ["lexical"]), (2, 0.7, ["dense"]), (4, 0.6, ["lexical"])], chunks, papers, k=5)
    assert [h.paper.id for h in hits] == ["a", "b"]
    assert hits[0].score == 0.9 and hits[0].snippet == "body of a" and hits[0].chunk_id == 2
    assert hits[0].modes == ["dense", "lexical"]
    assert len(aggregate([(3, 0.8, ["lexical"]), (2, 0.7, ["dense"])], chunks, papers, k=1)) == 1


def test_aggregate_on_heads_fetches_only_the_shown_chunks() -> None:
    from digest_rag.errors import IndexCorruptedError
    from digest_rag.storage.store import ChunkHead

    papers = {p: Paper(id=p, title=f"Paper {p}") for p in "abc"}
    chunks = {1: chunk(1, "a", "Paper a", kind="title"), 2: chunk(2, "a", "body of a"), 3: chunk(3, "b", "body of b"),
              4: chunk(4, "a", "more of a"), 5: chunk(5, "c", "body of c")}
    heads = {cid: ChunkHead(c.paper_id, c.section_kind) for cid, c in chunks.items()}
    ranked = [(1, 0.9, ["dense"]), (3, 0.8, ["lexical"]), (2, 0.7, ["dense"]), (4, 0.6, ["lexical"]), (5, 0.5, ["dense"])]
    asked: list[list[int]] = []

    def fetch(ids: list[int]) -> dict[int, Chunk]:
        asked.append(list(ids))
        return {i: chunks[i] for i in ids}

    hits = aggregate(ranked, heads, papers, k=2, fetch=fetch)
    assert hits == aggregate(ranked, chunks, papers, k=2)
    assert asked == [[2, 3]]  # the snippet chunks of the two papers shown, nothing else
    with pytest.raises(IndexCorruptedError):
        aggregate(ranked, heads, papers, k=2, fetch=lambda ids: {})

def test_fusion_weights_scale_each_retriever() -> None:
    from digest_rag.search.fusion import fuse_papers

    rankings = {"dense": [(1, 0.9), (2, 0.8)], "lexical": [(2, 9.0), (1, 3.0)]}
    chunk_paper = {1: "a", 2: "b"}
    # Equal weights: a tie (rank 1 + rank 2 both ways) goes to the lexical side.
    assert [c for c, _s, _n in fuse_papers(rankings, chunk_paper)] == [2, 1]
    # Lexical switched off: dense order wins; lexical dominant: lexical order.
    assert [c for c, _s, _n in fuse_papers(rankings, chunk_paper, weights={"dense": 1, "lexical": 0})] == [1, 2]
    assert [c for c, _s, _n in fuse_papers(rankings, chunk_paper, weights={"dense": 0.2, "lexical": 1})] == [2, 1]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("dense=0.5,lexical=1", {"dense": 0.5, "lexical": 1.0}), ("0.25:1", {"dense": 0.25, "lexical": 1.0}),
     ("lexical=2", {"dense": 1.0, "lexical": 2.0})],
)
def test_parse_fusion_weights(text: str, expected: dict[str, float]) -> None:
    from digest_rag.search.fusion import parse_fusion_weights

    assert parse_fusion_weights(text) == expected


@pytest.mark.parametrize("text", ["sparse=1", "1:2:3", "dense=x", "0:0", "dense=-1"])
def test_parse_fusion_weights_rejects(text: str) -> None:
    from digest_rag.errors import UsageError
    from digest_rag.search.fusion import parse_fusion_weights

    with pytest.raises(UsageError):
        parse_fusion_weights(text)


def test_aggregate_of_one_ranking_stops_only_when_the_page_has_its_snippets() -> None:
    """One retriever's ranking is read only as far as the page needs, and the page is what reading all of it
    gives: a paper found by its title passage still gets its text chunk ranked far below."""

    class Counting(dict):
        def __init__(self, *a: object) -> None:
            super().__init__(*a)
            self.read: list[int] = []

        def get(self, key: object, default: object = None) -> object:
            self.read.append(key)  # type: ignore[arg-type]
            return super().get(key, default)

    papers = {p: Paper(id=p, title=f"Paper {p}") for p in "abcdef"}
    chunks = {1: chunk(1, "a", "Paper a", kind="title"), 2: chunk(2, "b", "body of b"), 3: chunk(3, "c", "body of c"),
              4: chunk(4, "d", "body of d"), 5: chunk(5, "a", "body of a"), 6: chunk(6, "e", "body of e"),
              7: chunk(7, "f", "body of f")}
    ranked = [(cid, 1.0 - cid / 10, ["lexical"]) for cid in range(1, 8)]
    counting = Counting(chunks)
    hits = aggregate(ranked, counting, papers, k=2)
    assert [(h.paper.id, h.chunk_id) for h in hits] == [("a", 5), ("b", 2)]  # a's text chunk, 4 places down
    assert counting.read[:5] == [1, 2, 3, 4, 5] and not {6, 7} & set(counting.read)  # (then 5 and 2 to show)
    paged = aggregate(ranked, chunks, papers, k=2, offset=2)
    assert [(h.paper.id, h.chunk_id, h.modes) for h in paged] == [("c", 3, ["lexical"]), ("d", 4, ["lexical"])]
    # Several retrievers: every chunk counts towards a paper's modes, so the whole ranking is read.
    mixed = [(1, 0.9, ["lexical"]), (2, 0.8, ["lexical"]), (5, 0.5, ["dense"])]
    counting = Counting(chunks)
    assert aggregate(mixed, counting, papers, k=1)[0].modes == ["dense", "lexical"]
    assert counting.read[:3] == [1, 2, 5]


def test_zscores_and_their_floor() -> None:
    z, floor = zscores([3.0, 2.0, 1.0])
    assert z == pytest.approx([1.2247449, 0.0, -1.2247449]) and floor == min(z)
    z, floor = zscores([5.0, 1.0, 1.0, 1.0], depth=2)  # mean and spread of the first two only
    assert z == pytest.approx([1.0, -1.0, -1.0, -1.0])
    assert zscores([2.0, 2.0]) == ([0.0, 0.0], 0.0) and zscores([]) == ([], 0.0)


def test_fuse_scores_keeps_how_far_a_top_stands_out() -> None:
    """Rank fusion sees two rankings of the same order alike; score fusion lets a dense top that stands out
    overturn a lexical lead that is narrow, and not one that is wide."""
    owner = dict(enumerate("abcdef", start=1))
    dense = [(2, 0.9), (1, 0.4), (3, 0.38), (4, 0.36), (5, 0.34), (6, 0.32)]  # b stands far out
    narrow = [(1, 10.0), (2, 9.9), (3, 3.0), (4, 2.5), (5, 2.0), (6, 1.5)]  # a leads b by a hair
    wide = [(1, 10.0), (2, 4.0), (3, 3.8), (4, 3.6), (5, 3.4), (6, 3.2)]  # a leads everything by far
    weights = {"dense": 0.5, "lexical": 1.0}
    assert [owner[c] for c, _s, _n in fuse_scores({"dense": dense, "lexical": narrow}, owner, weights)][0] == "b"
    assert [owner[c] for c, _s, _n in fuse_scores({"dense": dense, "lexical": wide}, owner, weights)][0] == "a"
    # Reciprocal ranks cannot tell the two apart.
    assert [c for c, _s, _n in fuse_papers({"dense": dense, "lexical": narrow}, owner, weights=weights)] == \
        [c for c, _s, _n in fuse_papers({"dense": dense, "lexical": wide}, owner, weights=weights)]


def test_fuse_scores_weighs_papers_without_korean_text_apart() -> None:
    owner = {1: "ko", 2: "en", 3: "x"}
    dense = [(2, 0.8), (1, 0.5), (3, 0.2)]
    lexical = [(1, 12.0), (2, 8.0), (3, 4.0)]
    low = {"dense": 0.2, "lexical": 1.0}
    assert [owner[c] for c, _s, _n in fuse_scores({"dense": dense, "lexical": lexical}, owner, low)][0] == "ko"
    fused = fuse_scores({"dense": dense, "lexical": lexical}, owner, low, english={"en"}, english_weight=2.0)
    assert [owner[c] for c, _s, _n in fused] == ["en", "ko", "x"] and fused[0][2] == ["dense", "lexical"]
    # A paper one side lacks gets that side's lowest z-score; rank_chunks picks the shape.
    only_dense = fuse_scores({"dense": [(1, 0.9), (3, 0.1)], "lexical": [(2, 5.0), (3, 1.0)]}, owner, low)
    assert {owner[c] for c, _s, _n in only_dense} == {"ko", "en", "x"}
    assert rank_chunks({"dense": dense, "lexical": lexical}, owner, low, shape="zscore", english={"en"},
                       english_weight=2.0) == fused
    assert rank_chunks({"dense": dense, "lexical": lexical}, owner, low) == \
        fuse_papers({"dense": dense, "lexical": lexical}, owner, weights=low)
