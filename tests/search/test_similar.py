""""More like this" and paging through `DigestIndex`: a paper's neighbours without itself, pages that continue."""

from __future__ import annotations

import pytest

from digest_rag import DigestIndex
from digest_rag.errors import PaperNotFoundError, UsageError
from digest_rag.models import Paper, Section
from digest_rag.search.request import MAX_OFFSET
from digest_rag.search.similar import similar_text

JAILBREAK_ID = "many-shot-jailbreaking-2024-04-01"


def test_similar_text_is_titles_then_sections_cut_on_a_space() -> None:
    paper = Paper(id="x", title="Gemma 2", title_ko="젬마 2", sections=[
        Section(kind="summary", language="ko", text="지식 증류로\n학습했네요."),
        Section(kind="abstract", language="en", text="We introduce Gemma 2. " * 100),
    ])
    text = similar_text(paper, limit=200)
    assert text.startswith("Gemma 2\n젬마 2\n지식 증류로 학습했네요.\nWe introduce Gemma 2.")
    assert len(text) <= 200 and not text.endswith(" ") and text.endswith(("Gemma", "2.", "introduce", "We"))


@pytest.mark.parametrize("mode", ["hybrid", "dense", "lexical"])
def test_similar_leaves_the_paper_out_and_finds_its_neighbours(seed_index: DigestIndex, mode: str) -> None:
    hits = seed_index.similar(JAILBREAK_ID, k=5, mode=mode)
    ids = [h.paper.id for h in hits]
    assert len(ids) == 5 and len(set(ids)) == 5 and JAILBREAK_ID not in ids
    assert hits.query == ""  # the paper's text is no question to highlight
    assert [r["rank"] for r in hits.to_records()] == [1, 2, 3, 4, 5]


def test_similar_lexical_ranks_the_papers_sharing_its_words_first(seed_index: DigestIndex) -> None:
    # The seeds hold other jailbreak and long-context papers: BM25 over the paper's own words finds them first.
    hits = seed_index.similar(JAILBREAK_ID, k=3, mode="lexical")
    text = " ".join(f"{h.paper.title} {h.paper.title_ko or ''} {h.snippet}" for h in hits).lower()
    assert any(word in text for word in ("jailbreak", "탈옥", "long-context", "긴 맥락", "context"))


def test_similar_pages_and_filters(seed_index: DigestIndex) -> None:
    whole = seed_index.similar(JAILBREAK_ID, k=6, mode="lexical")
    second = seed_index.similar(JAILBREAK_ID, k=3, mode="lexical", offset=3)
    assert [h.paper.id for h in second] == [h.paper.id for h in whole[3:]]
    assert [r["rank"] for r in second.to_records()] == [4, 5, 6]
    dated = seed_index.similar(JAILBREAK_ID, k=5, mode="lexical", date_from="2024-06-01")
    assert dated and all(h.paper.date and h.paper.date.isoformat() >= "2024-06-01" for h in dated)


def test_similar_unknown_paper_is_a_typed_error(seed_index: DigestIndex) -> None:
    with pytest.raises(PaperNotFoundError, match="no-such-paper"):
        seed_index.similar("no-such-paper")
    with pytest.raises(UsageError):
        seed_index.similar(JAILBREAK_ID, k=0)


def test_get_returns_the_whole_paper_or_a_typed_error(seed_index: DigestIndex) -> None:
    paper = seed_index.get(JAILBREAK_ID)
    assert paper.title == "Many-shot Jailbreaking" and paper.title_ko == "다발성 탈옥"
    assert {s.language for s in paper.sections} == {"ko", "en"}
    assert paper == seed_index.paper(JAILBREAK_ID)
    for bad in ("no-such-paper", "", "x" * 5000):
        with pytest.raises(PaperNotFoundError) as err:
            seed_index.get(bad)
        assert len(str(err.value)) < 300  # a hostile id is not echoed whole


@pytest.mark.parametrize("mode", ["hybrid", "lexical"])
def test_pages_continue_the_ranking(seed_index: DigestIndex, mode: str) -> None:
    query = "긴 컨텍스트를 악용하는 탈옥 공격"
    whole = seed_index.search(query, k=9, mode=mode)
    pages = [seed_index.search(query, k=3, mode=mode, offset=o) for o in (0, 3, 6)]
    assert [h.paper.id for page in pages for h in page] == [h.paper.id for h in whole]
    assert [h.score for page in pages for h in page] == pytest.approx([h.score for h in whole])
    assert [r["rank"] for r in pages[1].to_records()] == [4, 5, 6]
    assert pages[2].offset == 6


def test_offset_past_the_end_and_bad_offsets(seed_index: DigestIndex) -> None:
    assert seed_index.search("model", k=5, mode="lexical", offset=MAX_OFFSET) == []
    for bad in (-1, MAX_OFFSET + 1, "3", 1.5, True):
        with pytest.raises(UsageError, match="offset"):
            seed_index.search("model", offset=bad)
