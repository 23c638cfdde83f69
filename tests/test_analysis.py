"""Tests for digest_rag.analysis: Korean morphology, Latin normalisation, robustness."""

from __future__ import annotations

import pytest

from digest_rag.analysis import ANALYSIS_VERSION, tokenize, tokenize_many


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("컨텍스트를", "컨텍스트"),
        ("탈옥은", "탈옥"),
        ("긴 컨텍스트를 악용하는 탈옥 공격", "악용"),
        ("스케일링 법칙에 대한", "법칙"),
        ("어려움을 겪는 모델", "겪다"),  # verb stems become lemmas
    ],
)
def test_korean_content_morphemes(text: str, expected: str) -> None:
    assert expected in tokenize(text)


def test_particles_and_endings_dropped() -> None:
    toks = tokenize("탈옥은 컨텍스트를 공격에서")
    for particle in ("은", "를", "에서"):
        assert particle not in toks
    assert toks == ["탈옥", "컨텍스트", "공격"]


def test_mixed_korean_english() -> None:
    toks = tokenize("Gemma 2에서는 Post Norm을 쓴 것 같네요")
    assert {"gemma", "2", "post", "norm"} <= set(toks)
    assert "에서" not in toks and "Post" not in toks


def test_hyphenated_terms_kept_joined_and_split() -> None:
    toks = tokenize("SWE-bench에서 JetMoE-8B가")
    for t in ("swe-bench", "swe", "bench", "jetmoe-8b", "jetmoe", "8b"):
        assert t in toks


def test_english_light_normalisation() -> None:
    toks = tokenize("The model's LLMs studies laws class 7B")
    assert "model" in toks and "llm" in toks and "study" in toks and "law" in toks
    assert "class" in toks  # 'ss' endings are not plurals
    assert "7b" in toks
    assert "the" not in toks


def test_query_and_document_agree() -> None:
    # The same word in different inflections produces a shared token.
    assert set(tokenize("탈옥 공격")) <= set(tokenize("탈옥은 공격을 받았다"))


def test_fullwidth_is_folded() -> None:
    assert tokenize("ＬｏＲＡ") == ["lora"]


@pytest.mark.parametrize(
    "text",
    ["", "   ", "😀🔥", "\x00\x07\x1b[31m", "\ud800", "ㅋㅋㅋ", "漢字 學習", "!!!???", "a" * 5000],
)
def test_never_raises(text: str) -> None:
    assert isinstance(tokenize(text), list)


def test_long_input_is_chunked() -> None:
    text = "탈옥은 긴 컨텍스트를 악용한다. " * 4000  # ~80k characters
    toks = tokenize(text)
    assert toks.count("탈옥") == 4000


def test_long_input_without_spaces() -> None:
    assert isinstance(tokenize("가" * 20000), list)


def test_tokenize_many_matches_tokenize() -> None:
    texts = ["탈옥은 공격", "", "SWE-bench results", "컨텍스트를 Gemma 2에서는"]
    assert tokenize_many(texts) == [tokenize(t) for t in texts]


def test_version_string() -> None:
    assert isinstance(ANALYSIS_VERSION, str) and ANALYSIS_VERSION
