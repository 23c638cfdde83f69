"""Fusion, aggregation to papers and snippets (digest_rag.search)."""

from __future__ import annotations

import pytest

from digest_rag.models import Chunk, Paper
from digest_rag.search import SNIPPET_CHARS, aggregate, fuse_papers, make_snippet, rrf_fuse

FILLER_EN = "Transformers process tokens in parallel and scale well with data and compute. "
FILLER_KO = "이 논문은 대규모 모델의 학습 과정을 자세히 설명하고 여러 실험 결과를 보고한다. "


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


def test_snippet_short_text_is_whole_and_flat() -> None:
    assert make_snippet("a  short\n\ntext", query="text") == "a short text"


def test_snippet_without_query_starts_at_the_beginning() -> None:
    text = FILLER_EN * 10
    snip = make_snippet(text)
    assert text.startswith(snip[:-2]) and snip.endswith(" …") and len(snip) <= SNIPPET_CHARS + 2
    assert not snip[:-2].endswith(" ")  # cut at a word boundary


def test_snippet_centres_on_a_late_match() -> None:
    text = FILLER_EN * 8 + "We introduce JetMoE, a sparse mixture of experts. " + FILLER_EN * 8
    assert text.index("JetMoE") > SNIPPET_CHARS
    snip = make_snippet(text, query="JetMoE")
    assert "JetMoE" in snip and snip.startswith("… ") and snip.endswith(" …")
    assert len(snip) <= SNIPPET_CHARS + 4
    # The window opens at a sentence start shortly before the match.
    assert snip[2:].startswith("Transformers") or snip[2:].startswith("We introduce")
    assert snip.index("JetMoE") < SNIPPET_CHARS // 2


def test_snippet_prefers_the_window_with_most_matches() -> None:
    text = FILLER_EN * 5 + "LoRA once. " + FILLER_EN * 8 + "LoRA adapters: LoRA ranks and LoRA scaling. " + FILLER_EN * 5
    snip = make_snippet(text, query="LoRA")
    assert snip.count("LoRA") == 3


def test_snippet_finds_korean_words_with_particles() -> None:
    text = FILLER_KO * 6 + "저자들은 탈옥을 막는 새로운 방어 기법을 제안한다. " + FILLER_KO * 6
    snip = make_snippet(text, query="탈옥 방어")
    assert "탈옥을" in snip and snip.startswith("… ")


def test_snippet_without_any_match_falls_back_to_the_start() -> None:
    text = FILLER_EN * 10
    assert make_snippet(text, query="diffusion") == make_snippet(text)


def test_snippet_match_at_the_very_end_keeps_a_full_window() -> None:
    text = FILLER_EN * 10 + "Finally, Gemma"
    snip = make_snippet(text, query="Gemma")
    assert snip.endswith("Gemma") and snip.startswith("… ") and len(snip) > SNIPPET_CHARS // 2


@pytest.mark.parametrize("words_per_sentence", [3, 9, 40, 120])
def test_snippet_always_shows_a_match_wherever_it_sits(words_per_sentence: int) -> None:
    sentence = " ".join(["word"] * words_per_sentence) + ". "
    for position in range(0, 30, 3):
        parts = [sentence] * 30
        parts[position] = sentence.replace("word", "RoPE", 1)
        text = "".join(parts)
        snip = make_snippet(text, query="RoPE")
        assert "RoPE" in snip, (words_per_sentence, position)
        assert len(snip) <= SNIPPET_CHARS + 4
