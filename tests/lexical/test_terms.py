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


def test_an_unindexed_compound_is_asked_for_as_its_indexed_parts() -> None:
    from digest_rag.lexical.terms import compound_parts

    held = {"랜덤", "시드", "인코더", "디코더", "자기", "지도", "학습", "언어모델"}
    indexed = held.__contains__
    assert compound_parts("랜덤시드", indexed) == ["랜덤", "시드"]
    assert compound_parts("자기지도학습", indexed) == ["자기", "지도", "학습"]  # up to three parts
    assert compound_parts("언어모델", indexed) == []  # the index holds the compound itself
    assert compound_parts("랜덤값", indexed) == []  # a part the index lacks ("값"; one syllable is no part)
    assert compound_parts("encoder", indexed) == []  # Hangul compounds only
    terms = analyse_query("랜덤시드 바꾸기", indexed=indexed)
    # The parts join the question's words (1.0, expanded by the glossary like any), the compound stays.
    assert terms.tokens[-2:] == ("랜덤", "시드") and "랜덤시드" in terms.tokens
    assert terms.weights["랜덤"] == 1.0 and terms.weights["시드"] == 1.0 and terms.sources["시드"] == "question"
    assert "시드" not in analyse_query("랜덤시드 바꾸기").weights  # without an index: as before
