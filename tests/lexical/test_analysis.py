"""Tests for digest_rag.lexical.analysis: Korean morphology, Latin normalisation, robustness."""

from __future__ import annotations

import pytest

from importlib import resources

from digest_rag.lexical.analysis import ANALYSIS_VERSION, GLOSSARY_VERSION, tokenize, tokenize_many
from digest_rag.lexical.glossary import EXPANSION_WEIGHT, Glossary, default_glossary
from digest_rag.lexical.terms import document_tokens, query_term_weights


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


def test_analysis_version_names_what_the_tokens_depend_on() -> None:
    """A stored index's tokens are reused only under the same ANALYSIS_VERSION: it must say how Kiwi was built
    (its multi-word dictionary off: "nomulti") and which glossary expanded them, and key the token cache."""
    from digest_rag.lexical.builder import analysis_cache_key
    from digest_rag.lexical.kiwi import KIWI_OPTIONS

    assert ("nomulti" in ANALYSIS_VERSION) == (not KIWI_OPTIONS["load_multi_dict"])
    assert f"gloss-{GLOSSARY_VERSION}" in ANALYSIS_VERSION
    assert analysis_cache_key().startswith(ANALYSIS_VERSION + "|")


# ---------------------------------------------------------------- glossary


@pytest.fixture(scope="module")
def small_glossary() -> Glossary:
    lines = [
        "# version: 7",
        "스케일링 법칙 | 확장 법칙\tscaling law",
        "스케일링\tscaling | scale",
        "거듭제곱 법칙\tpower law",
        "미세 조정 | 파인튜닝\tfine-tuning | finetuning",
        "학습\ttraining",
        "학습률\tlearning rate",
    ]
    return Glossary.from_lines(lines)


def test_glossary_parses_version_and_concepts(small_glossary: Glossary) -> None:
    assert small_glossary.version == "7"
    assert len(small_glossary.concepts) == 6


def test_glossary_longest_match_wins(small_glossary: Glossary) -> None:
    # "스케일링 법칙" is the phrase concept, not "스케일링" + a loose "법칙".
    assert small_glossary.match(tokenize("스케일링 법칙에 대한 논문")) == [0]
    assert small_glossary.match(tokenize("스케일링이 중요하다")) == [1]
    assert small_glossary.match(tokenize("scaling laws of language models")) == [0]
    assert small_glossary.match(tokenize("a power law fit")) == [2]


def test_glossary_hyphen_and_spacing_variants(small_glossary: Glossary) -> None:
    for text in ("fine-tuning", "fine tuning", "finetuning", "미세 조정을", "파인튜닝한"):
        assert small_glossary.match(tokenize(text)) == [3], text


def test_glossary_lossy_key_goes_to_shortest_form(small_glossary: Glossary) -> None:
    # Kiwi drops the suffix of 학습률, so it analyses like 학습: the bare word keeps meaning training.
    assert small_glossary.match(tokenize("학습")) == [4]


def test_a_form_whose_analysis_leaves_one_of_its_words_names_nothing() -> None:
    # Kiwi reads 지시 (before 튜닝) and 외 as no noun: "지시 튜닝" would make every "튜닝" instruction tuning and
    # "분포 외" every "분포" out-of-distribution, in questions and in every note's concept tokens.
    g = Glossary.from_lines(["지시 튜닝 | 인스트럭션 튜닝\tinstruction tuning", "분포 외\tout-of-distribution",
                             "분포\tdistribution"])
    assert tokenize("지시 튜닝") == ["튜닝"]  # the premise: one word is left
    assert g.match(tokenize("LoRA 튜닝")) == [] and g.match(tokenize("인스트럭션 튜닝")) == [0]
    assert g.match(tokenize("데이터 분포가 바뀌면")) == [2]
    assert g.match(tokenize("out-of-distribution detection")) == [1]
    bundled = default_glossary()
    assert not bundled.match(tokenize("튜닝")) and bundled.match(tokenize("분포")) != bundled.match(
        tokenize("out-of-distribution"))


def test_expand_weights(small_glossary: Glossary) -> None:
    terms = small_glossary.expand(tokenize("스케일링 법칙"), 0.5)
    assert terms["스케일링"] == 1.0 and terms["법칙"] == 1.0
    assert terms["scaling"] == 0.5 and terms["law"] == 0.5
    assert "power" not in terms


def test_expand_english_to_korean(small_glossary: Glossary) -> None:
    terms = small_glossary.expand(tokenize("fine-tuning recipe"), 0.5)
    assert terms["파인튜닝"] == 0.5 and terms["recipe"] == 1.0


def test_glossary_rejects_bad_lines() -> None:
    with pytest.raises(ValueError, match="two tab-separated"):
        Glossary.from_lines(["only one column"])


def test_bundled_glossary_is_versioned_and_sizeable() -> None:
    text = resources.files("digest_rag").joinpath("data", "ml_glossary_ko_en.tsv").read_text(encoding="utf-8")
    g = default_glossary()
    # Editing the data file must come with a version bump, which changes ANALYSIS_VERSION.
    assert g.version == GLOSSARY_VERSION
    assert f"gloss-{GLOSSARY_VERSION}" in ANALYSIS_VERSION
    assert f"# version: {GLOSSARY_VERSION}" in text
    assert len(g.concepts) >= 300
    # every concept has a Hangul and a Latin form
    for c in g.concepts:
        assert any("\uac00" <= ch <= "\ud7a3" for t in c for ch in t), sorted(c)
        assert any("a" <= ch <= "z" for t in c for ch in t), sorted(c)


@pytest.mark.parametrize(
    ("query", "english"),
    [
        ("스케일링 법칙", {"scaling", "law"}),
        ("지식 증류", {"distillation"}),
        ("탈옥 공격", {"jailbreak", "attack"}),
        ("트랜스포머 프루닝", {"transformer", "pruning"}),
        ("가지치기", {"pruning"}),
        ("에이전트 벤치마크", {"agent", "benchmark"}),
        ("추론", {"reasoning", "inference"}),
    ],
)
def test_bundled_glossary_expands_transliterations(query: str, english: set[str]) -> None:
    terms = query_term_weights(query)
    assert english <= set(terms)
    assert all(terms[e] == EXPANSION_WEIGHT for e in english)


def test_query_terms_without_expansion_keeps_tokens() -> None:
    terms = query_term_weights("스케일링 법칙", weight=0)
    assert terms["스케일링"] == 1.0 and "scaling" not in terms
    assert any(t.startswith("ml:") for t in terms)  # concept tokens are analysis, always on


def test_document_and_query_share_concept_tokens() -> None:
    doc = set(document_tokens(["We fit scaling laws for MoE."])[0])
    query = {t for t in query_term_weights("스케일링 법칙에 대한 논문") if t.startswith("ml:")}
    assert query and query <= doc
    other = set(document_tokens(["This attack follows a power law."])[0])
    assert not query & other


def test_compiled_glossary_is_cached_and_loaded_without_kiwi(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    import digest_rag.lexical.glossary as glossary_module

    monkeypatch.setenv("DIGEST_RAG_CACHE", str(tmp_path))
    src = tmp_path / "g.tsv"
    src.write_text("# version: 3\n스케일링 법칙 | 확장 법칙\tscaling law\n탈옥\tjailbreak\n", encoding="utf-8")
    fresh = Glossary.load(src)
    cached = list((tmp_path / "analysis").glob("glossary-*.json"))
    assert len(cached) == 1
    # Loading again reads the compiled state: no analysis (hence no Kiwi) at all.
    monkeypatch.setattr(glossary_module, "_analyse_many", lambda _texts: pytest.fail("glossary analysed again"))
    assert Glossary.load(src) == fresh and fresh.version == "3"
    # A damaged cache file only costs a recompile; a changed file gets its own entry.
    monkeypatch.undo()
    monkeypatch.setenv("DIGEST_RAG_CACHE", str(tmp_path))
    cached[0].write_text("{not json", encoding="utf-8")
    assert Glossary.load(src) == fresh
    src.write_text("# version: 4\n탈옥\tjailbreak\n", encoding="utf-8")
    assert Glossary.load(src).version == "4" and len(list((tmp_path / "analysis").glob("glossary-*.json"))) == 2


# ------------------------------------------------------------ issue 12: analysis fixes
# Each ranking test is a corpus where the fix decides the order: with the
# analysis before it (particles glued to loanwords, prefixes dropped, numbers
# with Korean units unread) the other document comes first.


def _rank(texts: list[str], query: str) -> list[int]:
    from digest_rag.lexical.index import FieldWeights, LexicalIndex
    from digest_rag.models import Chunk

    chunks = [
        Chunk(id=i, paper_id=f"p{i}", section_index=0, section_kind="body", language="mixed",
              text=t, start=0, end=len(t))
        for i, t in enumerate(texts)
    ]
    index = LexicalIndex.build(chunks, {}, FieldWeights(title=0, tags=0, authors=0))
    return [cid for cid, _s in index.search(query, 10)]


def test_particle_after_loanword_is_removed() -> None:
    assert "미스트랄" in tokenize("미스트랄이")  # Kiwi alone reads 미스트 + 이 + 랄
    assert "제미나이" in tokenize("제미나이를")
    assert "딥마인드" in tokenize("딥마인드가")
    assert "lora" in tokenize("LoRA를") and "트랜스포머" in tokenize("트랜스포머의")
    # The particle check follows the stem's sound: 전문가 is a word, not 전문 + 가.
    assert "전문" not in tokenize("전문가")
    assert tokenize("미스트랄이") == tokenize("미스트랄")


def test_particle_after_loanword_decides_ranking() -> None:
    texts = ["Mistral 7B shows strong performance.", "이 모델의 성능은 벤치마크에서 좋았다."]
    assert _rank(texts, "미스트랄의 성능")[0] == 0


def test_latin_and_korean_keep_text_order_for_phrases() -> None:
    # "오픈AI": 오픈 + ai in that order spells the glossary form.
    assert "openai" in query_term_weights("오픈AI가 만든 모델")


def test_compound_keeps_whole_word_and_parts() -> None:
    toks = tokenize("강화학습에서 다발성 탈옥")
    assert {"강화", "학습", "강화학습", "다발", "다발성", "탈옥"} <= set(toks)
    # A prefix stays on its noun: 준지도 never degrades to 지도 (supervision / map).
    assert "지도" not in tokenize("준지도 학습") and "준지도" in tokenize("준지도학습으로")
    assert "semi-supervised" in query_term_weights("준지도 학습")
    assert "semi-supervised" in query_term_weights("준지도학습으로")


def test_compound_prefix_decides_ranking() -> None:
    texts = ["Supervised learning of image classifiers on labeled data.",
             "We study semi-supervised learning with pseudo-labels on unlabeled data."]
    assert _rank(texts, "준지도 학습")[0] == 1


@pytest.mark.parametrize(
    ("text", "token"),
    [("70억 파라미터", "7b"), ("2조 토큰", "2t"), ("1.5만 개", "15k"), ("천억 개", "100b"), ("3천억", "300b"),
     ("5천 개", "5k"), ("7 billion parameters", "7b"), ("1.5 trillion tokens", "1.5t"), ("175B", "175b")],
)
def test_numbers_with_units_get_english_forms(text: str, token: str) -> None:
    assert token in tokenize(text)


def test_number_token() -> None:
    from digest_rag.lexical.analysis import number_token

    assert number_token(7e9) == "7b" and number_token(1.5e4) == "15k" and number_token(999) is None


def test_korean_number_decides_ranking() -> None:
    texts = ["A model with 70 layers, 2 heads and many parameters per token.", "A 7 billion parameter model on 2T tokens."]
    assert _rank(texts, "70억 파라미터 모델")[0] == 1
    assert _rank(texts, "2조 토큰으로 학습한 모델")[0] == 1


def test_sense_needs_supporting_context() -> None:
    g = Glossary.from_lines(["정렬\talignment\t선호 | 모델 | preference", "선호\tpreference"])
    assert g.match(tokenize("모델 정렬")) == [0]
    assert g.match(tokenize("배열 정렬 알고리즘")) == []
    assert g.match(tokenize("alignment")) == [0]  # English forms are unambiguous
    assert "alignment" not in query_term_weights("배열 정렬 알고리즘")
    assert "alignment" in query_term_weights("선호 정렬")


def test_glossary_rejects_four_columns() -> None:
    with pytest.raises(ValueError, match="two tab-separated"):
        Glossary.from_lines(["a\tb\tc\td"])


def test_stored_kiwi_user_words_match_the_glossary() -> None:
    from kiwipiepy import Kiwi

    from digest_rag.lexical.glossary import bundled_glossary_text
    from digest_rag.lexical.kiwi import KIWI_OPTIONS, bundled_user_words, glossary_user_words

    # Regenerate data/kiwi_user_words.txt with the command in its header when this fails.
    assert list(bundled_user_words()) == glossary_user_words(bundled_glossary_text(), Kiwi(**KIWI_OPTIONS))
