"""Fair scoring across languages (issue 25 part 2): English-only papers beside Korean commentary."""

from __future__ import annotations

from pathlib import Path

from digest_rag import DigestIndex
from digest_rag.evaluation.variants import write_jsonl
from digest_rag.models import Paper, Section
from digest_rag.search.languages import ENGLISH_ONLY_BOOST, boost_english_only


def test_boost_english_only_rescales_and_resorts() -> None:
    ranking = [(1, 10.0), (2, 9.5), (3, 4.0)]
    paper = {1: "ko", 2: "en", 3: "en"}
    boosted = boost_english_only(ranking, paper, {"en"})
    assert [c for c, _s in boosted] == [2, 1, 3]
    assert boosted[0][1] == 9.5 * ENGLISH_ONLY_BOOST
    assert boost_english_only(ranking, paper, set()) == ranking


def test_english_only_papers_and_the_search_path(tmp_path: Path) -> None:
    papers = [
        Paper(id="en", title="Teacher Student Compression",
              sections=[Section(kind="abstract", language="en", text="We distill a large teacher into a small student.")]),
        Paper(id="ko", title="Another Paper", sections=[
            Section(kind="abstract", language="en", text="An English abstract about other things."),
            Section(kind="commentary", language="ko", text="지식 증류 이야기는 조금만 나온다. 교사 모델.")]),
    ]
    src = write_jsonl(papers, tmp_path / "src.jsonl")
    with DigestIndex.build([src], index_dir=tmp_path / "ix", lexical_only=True) as index:
        assert index.store.english_only_papers(["en", "ko", "missing"]) == {"en"} == index.store.english_only_papers()
        assert index.english_only == {"en"}
        import digest_rag.search.pipeline as dix

        seen: list[set[str]] = []
        original = dix.boost_english_only
        try:
            dix.boost_english_only = lambda ranking, chunk_paper, english: seen.append(set(english)) or list(ranking)
            index.search("지식 증류 교사 모델", k=2, mode="lexical")
            assert seen == [{"en"}]  # a Korean question: the English-only paper is boosted
            index.search("teacher student distillation", k=2, mode="lexical")
            assert seen == [{"en"}]  # an English question: nothing to make up for
        finally:
            dix.boost_english_only = original


def test_no_korean_papers_count_titles_too(tmp_path: Path) -> None:
    """Score fusion's set apart: papers with no Korean chunk at all, a paper of an English title alone included
    (the English-only set leaves it out: it has no text for BM25 to boost)."""
    papers = [
        Paper(id="en", title="Teacher Student Compression",
              sections=[Section(kind="abstract", language="en", text="We distill a large teacher into a small student.")]),
        Paper(id="title", title="Only A Title Here"),
        Paper(id="ko", title="Another Paper", sections=[
            Section(kind="commentary", language="ko", text="지식 증류 이야기는 조금만 나온다. 교사 모델.")]),
    ]
    src = write_jsonl(papers, tmp_path / "src.jsonl")
    with DigestIndex.build([src], index_dir=tmp_path / "ix", lexical_only=True) as index:
        assert index.store.no_korean_papers() == {"en", "title"}
        assert index.store.no_korean_papers(["title", "ko", "missing"]) == {"title"}
        assert index.store.english_only_papers() == {"en"}
