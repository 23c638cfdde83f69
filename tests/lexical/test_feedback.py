"""Tests for digest_rag.lexical.feedback: cross-language pseudo-relevance feedback over the BM25 index."""

from __future__ import annotations

from digest_rag.lexical.feedback import FeedbackSettings, feedback_terms
from digest_rag.lexical.index import LexicalIndex
from digest_rag.models import Chunk, Paper


def _chunk(cid: int, pid: str, text: str, lang: str) -> Chunk:
    return Chunk(id=cid, paper_id=pid, section_index=0, section_kind="commentary", language=lang,
                 text=text, start=0, end=len(text))


PAPERS = {p.id: p for p in [Paper(id="a", title="Honeycomb Planner"), Paper(id="t", title="Hexagonal Lattice Routing"),
                            Paper(id="z", title="Protein Folding")]}
CHUNKS = [
    # The Korean note names its method in Korean and its English words once.
    _chunk(1, "a", "벌집 순회로 경로를 계획한다. hexagonal lattice routing", "mixed"),
    # The English paper shares only those English words.
    _chunk(2, "t", "Routing agents over a hexagonal lattice.", "en"),
    _chunk(3, "z", "Predicting protein structures.", "en"),
]


def test_feedback_terms_are_the_top_documents_english_words() -> None:
    idx = LexicalIndex.build(CHUNKS, PAPERS, mine=False)
    terms = {"벌집": 1.0, "순회": 1.0}
    extra = feedback_terms(idx, idx.term_scores(terms), terms, FeedbackSettings(docs=1, terms=10, weight=0.3))
    # The title words weigh most (repeated in the BM25 document), the text's words follow.
    assert {"honeycomb", "planner", "hexagonal", "lattice", "routing"} <= set(extra)
    assert max(extra.values()) == 0.3 and all(0 < w <= 0.3 for w in extra.values())
    assert not set(extra) & set(terms) and all(t.isascii() for t in extra)


def test_feedback_reaches_an_english_paper_the_query_shares_no_word_with() -> None:
    idx = LexicalIndex.build(CHUNKS, PAPERS, mine=False)
    assert [c for c, _ in idx.search("벌집 순회")] == [1]
    idx.feedback = FeedbackSettings(docs=1, terms=5, weight=0.3)
    hits = [c for c, _ in idx.search("벌집 순회")]
    # The first search's answer stays first; the English paper follows through its words.
    assert hits[:2] == [1, 2] and 3 not in hits


def test_feedback_is_an_option_of_loading_an_index(seed_index_dir) -> None:  # noqa: ANN001 - fixture
    from digest_rag import DigestIndex

    plain = DigestIndex.load(seed_index_dir)
    with_feedback = DigestIndex.load(seed_index_dir, feedback=FeedbackSettings(docs=1, terms=5, weight=0.3))
    try:
        assert plain.lexical.feedback is None
        assert with_feedback.lexical.feedback == FeedbackSettings(docs=1, terms=5, weight=0.3)
        q = "긴 컨텍스트를 악용하는 탈옥 공격"
        assert (with_feedback.lexical.scores(q) >= plain.lexical.scores(q)).all()
    finally:
        plain.close()
        with_feedback.close()
