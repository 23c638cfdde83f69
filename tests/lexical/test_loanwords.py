"""Tests for digest_rag.lexical.loanwords: Hangul loanwords spelled as the English tokens of an index."""

from __future__ import annotations

import pytest

from digest_rag.lexical.loanwords import (
    INDEXED_LOANWORD_WEIGHT,
    LOANWORD_WEIGHT,
    Loanwords,
    distance,
    hangul_form,
    latin_form,
    loanword_rows,
    looks_borrowed,
    skeleton,
)
from digest_rag.lexical.terms import analyse_query

VOCABULARY = ["augmentation", "latent", "sparse", "modality", "transformer", "embedding", "prompt", "sequence",
              "context", "decoder", "channel", "local", "legal", "parameter", "pyramid", "scaling", "scale", "skill",
              "style", "spike", "spark", "privacy", "bridge", "replay", "library", "network", "cluster", "pipeline",
              "gaussian", "template", "interpreter", "sample", "simple", "kaplan", "music", "mask"]


def _table(names: tuple[str, ...] = ()) -> Loanwords:
    return Loanwords.from_tokens(lambda: VOCABULARY, lambda: names)


@pytest.mark.parametrize(("word", "token"), [
    ("어그멘테이션", "augmentation"), ("레이턴트", "latent"), ("스파스", "sparse"), ("모달리티", "modality"),
    ("트랜스포머", "transformer"), ("프롬프트", "prompt"), ("시퀀스", "sequence"),
    ("컨텍스트", "context"), ("디코더", "decoder"), ("로컬", "local"), ("파라미터", "parameter"),
    ("스케일링", "scaling"), ("스케일", "scale"), ("스타일", "style"), ("스파이크", "spike"), ("프라이버시", "privacy"),
    ("리플레이", "replay"), ("네트워크", "network"), ("클러스터", "cluster"), ("파이프라인", "pipeline"),
    ("템플릿", "template"), ("인터프리터", "interpreter"),
])
def test_a_loanword_spells_its_english_token_first(word: str, token: str) -> None:
    assert _table().spell(word)[:1] == (token,)


def test_korean_words_and_short_words_spell_nothing() -> None:
    table = _table()
    # Native and Sino-Korean words (no aspirated consonant, no added vowel) are never read as English.
    for word in ("학습", "모델", "생성", "사전", "성능", "문제", "결과", "방법", "데이터"):
        assert table.spell(word) == (), word
    assert not looks_borrowed("학습") and looks_borrowed("스파스") and looks_borrowed("토큰")
    # Fewer than three consonants say too little ("마스크" has M S K: three; "팁" one).
    assert table.spell("팁") == ()
    assert table.spell("hello") == () and table.spell("") == ()
    # A loanword without an aspirated consonant or an added vowel is left to the glossary (임베딩, 채널 are in it).
    assert table.spell("임베딩") == () and table.spell("가우시안") == ()


def test_equally_close_tokens_are_both_spelled() -> None:
    assert set(_table().spell("샘플")) == {"sample", "simple"}


def test_authors_names_are_never_spelled() -> None:
    assert _table().spell("캐플란") == ("kaplan",) and _table(names=("kaplan",)).spell("캐플란") == ()
    rows = list(loanword_rows(["madry", "data", "latent", "gpt4", "cat"], names=["madry"]))
    assert [t for _s, t, _f in rows] == ["latent"]  # a name, a one-consonant word, a non-letter token and a short one out


def test_phonetic_forms() -> None:
    assert latin_form("augmentation") == "axKMeNTaSxN" and hangul_form("어그멘테이션") == "xKMeNTeiSixN"
    assert skeleton(latin_form("augmentation")) == skeleton(hangul_form("어그멘테이션")) == "KMNTSN"
    assert latin_form("scale") == "SKeiL" and latin_form("channel") == "CaNeL" and latin_form("bridge") == "PLiC"
    assert hangul_form("hello") is None
    assert distance("SKeiL", "SKeiL") == 0.0 < distance("SKeiL", "SKiL") < distance("SKeiL", "SKeiT")


def test_analyse_query_adds_the_spelled_tokens_at_full_weight() -> None:
    terms = analyse_query("데이터 어그멘테이션이 왜 먹히는지 재본 논문", loanwords=_table())
    assert terms.weights["augmentation"] == LOANWORD_WEIGHT and terms.sources["augmentation"] == "loanword"
    assert "augmentation" in terms.highlight  # a snippet marks the English word the loanword found
    assert "augmentation" not in analyse_query("데이터 어그멘테이션이 왜 먹히는지 재본 논문").weights


def test_a_hangul_word_the_index_holds_spells_at_a_lower_weight() -> None:
    held = Loanwords.from_tokens(lambda: VOCABULARY, indexed=lambda word: word == "레이턴트")
    assert held.weight("레이턴트") == INDEXED_LOANWORD_WEIGHT < LOANWORD_WEIGHT == held.weight("스파스")
    terms = analyse_query("레이턴트 공간에서 스파스하게", loanwords=held)
    assert terms.weights["latent"] == INDEXED_LOANWORD_WEIGHT and terms.weights["sparse"] == LOANWORD_WEIGHT


def test_a_word_the_glossary_translates_is_not_spelled() -> None:
    # "샘플" spells both "sample" and "simple"; the glossary says sample, and its entry decides.
    table = _table()
    assert {"sample", "simple"} <= set(table.spell("샘플"))
    terms = analyse_query("샘플 생성을 몇 번 돌려야", loanwords=table)
    assert "simple" not in terms.weights and terms.sources["sample"] == "glossary"


def test_distance_is_the_weighted_edit_distance() -> None:
    """`distance` against the textbook recurrence, on random phonetic forms (consonants upper case)."""
    import random

    from digest_rag.lexical.loanwords import _NEAR_VOWELS

    def reference(a: str, b: str) -> float:
        def gap(ch: str) -> float:
            return 0.5 if ch.islower() else 1.0

        def sub(x: str, y: str) -> float:
            if x == y:
                return 0.0
            if x.islower() and y.islower():
                return 0.25 if frozenset((x, y)) in _NEAR_VOWELS else 0.75
            return 2.0

        d = [[0.0] * (len(b) + 1) for _ in range(len(a) + 1)]
        for i in range(1, len(a) + 1):
            d[i][0] = d[i - 1][0] + gap(a[i - 1])
        for j in range(1, len(b) + 1):
            d[0][j] = d[0][j - 1] + gap(b[j - 1])
        for i in range(1, len(a) + 1):
            for j in range(1, len(b) + 1):
                d[i][j] = min(d[i - 1][j] + gap(a[i - 1]), d[i][j - 1] + gap(b[j - 1]),
                              d[i - 1][j - 1] + sub(a[i - 1], b[j - 1]))
        return d[-1][-1]

    rng = random.Random(3)
    letters = "aeiouxTKPSLMN"
    for _ in range(2000):
        a = "".join(rng.choice(letters) for _ in range(rng.randint(0, 9)))
        b = "".join(rng.choice(letters) for _ in range(rng.randint(0, 9)))
        assert distance(a, b) == reference(a, b), (a, b)


def test_listed_spellings_are_read_where_the_speller_cannot_tell() -> None:
    """Short and irregular loanwords (`curated_spellings`): the index's English word, only where it holds it."""
    from digest_rag.lexical.loanwords import curated_spellings

    held = {"weight", "loss", "search", "map", "cross", "close", "cloth"}
    table = Loanwords.from_tokens(lambda: sorted(held), indexed=held.__contains__)
    assert curated_spellings()["웨이트"] == ("weight",) and table.spell("웨이트") == ("weight",)
    assert table.spell("크로스") == ("cross",)  # the speller alone: close and cloth
    assert Loanwords.from_tokens(lambda: ["close", "cloth"], indexed={"close", "cloth"}.__contains__).spell(
        "크로스") == ("close", "cloth")  # an index without "cross": the speller's answer
    assert table.curated("로스") == ("loss",) and table.curated("헬로") == ()
    assert Loanwords.from_tokens(lambda: [], indexed=lambda t: False).curated("웨이트") == ()


@pytest.mark.parametrize(("question", "spelled"), [
    ("디퓨전 모델 웨이트를 svd 하는 방법", {"weight"}),
    ("어텐션 맵이 의미 분할처럼 보인다는", {"map"}),  # 맵 alone reads as the adjective 맵다
    ("아키텍처를 서치해서 찾은 정규화", {"search"}),  # a 하다 ending cut off
    ("웨이트들을 줄이는 로스", {"weight", "loss"}),
])
def test_a_question_asks_for_its_listed_loanwords(question: str, spelled: set[str]) -> None:
    held = {"weight", "loss", "search", "map", "batch"}
    table = Loanwords.from_tokens(lambda: sorted(held), indexed=held.__contains__)
    terms = analyse_query(question, loanwords=table)
    found = {t for t, source in terms.sources.items() if source == "loanword"}
    assert found == spelled, terms.sources
    assert all(terms.weights[t] == LOANWORD_WEIGHT for t in found)
    assert not {t for t, s in analyse_query(question).sources.items() if s == "loanword"}  # no table: none


def test_the_loanword_list_is_well_formed_and_leaves_glossary_words_to_the_glossary() -> None:
    from digest_rag.lexical.glossary import default_glossary
    from digest_rag.lexical.loanwords import curated_spellings, curated_stem

    listed = curated_spellings()
    assert len(listed) >= 80
    assert all(word and all("\uac00" <= ch <= "\ud7a3" for ch in word) for word in listed)
    assert all(english and all(w.isascii() and w == w.lower() for w in english) for english in listed.values())
    glossary = default_glossary()
    assert not [word for word in listed if glossary.names(word)]  # "배치" (batch) is the glossary's, in context
    assert curated_stem("키가") == "키" and curated_stem("블로그") is None and curated_stem("해") is None
