"""QueryTerms: a question analysed once, with where each term came from."""

from __future__ import annotations

from digest_rag.lexical.lexicon import MinedLexicon, MinedPair
from digest_rag.lexical.terms import analyse_query, query_term_weights
from digest_rag.search.snippets import Highlighter


def test_terms_name_their_sources_and_keep_the_weights_bm25_used() -> None:
    q = "스케일링 법칙에 대한 논문을 찾아줘"
    terms = analyse_query(q)
    assert dict(terms.weights) == query_term_weights(q)
    assert terms.sources["스케일링"] == "question" and terms.sources["scaling"] == "glossary"
    assert any(s == "concept" for s in terms.sources.values())
    # Concept tokens stand for phrases and never occur in text; every other term can be highlighted.
    assert terms.highlight == {t for t, s in terms.sources.items() if s != "concept"}
    assert terms.language == "ko"


def test_mined_lexicon_expansions_are_terms_and_highlighted() -> None:
    lexicon = MinedLexicon(papers=2, pairs=[MinedPair(ko=("벌집",), en=("hexagonal",), source="paren", support=2,
                                                       score=1.0)])
    terms = analyse_query("벌집 경로 계획", lexicon=lexicon)
    assert terms.sources["hexagonal"] == "lexicon" and terms.weights["hexagonal"] > 0
    assert Highlighter.of(terms).spans("Routing over a hexagonal lattice") == [(15, 24)]
    assert "hexagonal" not in analyse_query("벌집 경로 계획").weights
