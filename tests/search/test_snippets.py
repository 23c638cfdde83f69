"""Snippet windows and match spans (digest_rag.search.snippets)."""

from __future__ import annotations

import pytest

from digest_rag.search.snippets import SNIPPET_CHARS, make_snippet

FILLER_EN = "Transformers process tokens in parallel and scale well with data and compute. "
FILLER_KO = "이 논문은 대규모 모델의 학습 과정을 자세히 설명하고 여러 실험 결과를 보고한다. "


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


def test_index_word_table_highlights_the_same_spans_as_kiwi(seed_index, monkeypatch: pytest.MonkeyPatch) -> None:
    # Snippets are corpus text, so the index's table of Kiwi's readings knows their words (digest_rag.lexical.word_table).
    from digest_rag.lexical.terms import analyse_query
    from digest_rag.search.snippets import Highlighter, match_spans

    query = "긴 컨텍스트를 악용하는 탈옥 공격"
    terms = analyse_query(query).highlight
    texts = [c.text for c in seed_index.store.chunks().values() if c.language == "ko"]
    assert texts
    expected = [match_spans(t, terms) for t in texts]
    assert any(expected)
    monkeypatch.setattr("digest_rag.lexical.analysis.get_kiwi", lambda: pytest.fail("Kiwi started for corpus text"))
    table = Highlighter(terms, seed_index.lexical.eojeols)
    got = [table.spans(t) for t in texts]
    assert got == expected


def test_a_texts_morphemes_are_read_once_per_word_table(seed_index, monkeypatch: pytest.MonkeyPatch) -> None:
    """A snippet's text is analysed once per index: the next question's highlighter finds its own terms in the
    morphemes kept for that text, the same spans as reading the text afresh."""
    import digest_rag.search.snippets as snippets
    from digest_rag.lexical.terms import analyse_query
    from digest_rag.search.snippets import Highlighter, match_spans

    texts = [c.text for c in seed_index.store.chunks().values() if c.language == "ko"][:20]
    questions = ["긴 컨텍스트를 악용하는 탈옥 공격", "모델의 안전장치를 무력화하는 방법"]
    expected = [[match_spans(t, analyse_query(q).highlight) for t in texts] for q in questions]  # no table
    read: list[str] = []
    real = snippets.kiwi_morphs

    def counting(segments, stored=None):  # noqa: ANN001, ANN202
        read.extend(segments)
        return real(segments, stored)

    monkeypatch.setattr(snippets, "_CONTENT", __import__("weakref").WeakKeyDictionary())
    monkeypatch.setattr(snippets, "kiwi_morphs", counting)
    for q, want in zip(questions, expected, strict=True):
        highlighter = Highlighter(analyse_query(q).highlight, seed_index.lexical.eojeols)
        assert [highlighter.spans(t) for t in texts] == want
    assert sorted(read) == sorted(set(texts))  # each text read by the first question only
