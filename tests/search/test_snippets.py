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


def test_only_the_words_that_may_hold_a_term_are_read_and_each_once_per_word_table(seed_index) -> None:
    """Highlighting reads from the index's table only the words where a question's Korean term may stand
    (a chunk has a hundred words, a question's terms touch a few), each word once per table however many
    questions follow, and finds the same spans as reading the whole text."""
    from digest_rag.lexical.terms import analyse_query
    from digest_rag.lexical.word_table import WORD
    from digest_rag.search.snippets import Highlighter, match_spans

    texts = [c.text for c in seed_index.store.chunks().values() if c.language == "ko"][:20]
    questions = ["긴 컨텍스트를 악용하는 탈옥 공격", "모델의 안전장치를 무력화하는 방법", "모델을 바꾸는 방법"]
    expected = [[match_spans(t, analyse_query(q).highlight) for t in texts] for q in questions]  # Kiwi, no table
    assert any(any(row) for row in expected)
    table = seed_index.lexical.eojeols
    read: list[str] = []

    class Counting:  # the index's table, counting the words it is asked for
        reads_words_alone = table.reads_words_alone

        def analyse(self, text: str) -> object:
            read.append(text)
            return table.analyse(text)

    counting = Counting()
    for q, want in zip(questions, expected, strict=True):
        highlighter = Highlighter(analyse_query(q).highlight, counting)
        assert [highlighter.spans(t) for t in texts] == want
    words = {w.group() for t in texts for w in WORD.finditer(t)}
    assert read and set(read) <= words
    assert len(read) == len(set(read))  # each word once, whichever question asked first
    assert len(read) < len(words) / 2


@pytest.mark.parametrize(("lemma", "written"), [
    ("바꾸다", ["바꾸는", "바꿔", "바꾼"]), ("돕다", ["도와", "도운"]), ("듣다", ["들어"]), ("모르다", ["몰라"]),
    ("쓰다", ["써서", "쓴"]), ("되다", ["돼", "됐다"]), ("주다", ["줘"]), ("푸다", ["퍼"]), ("하다", ["해서", "했다"]),
    ("만들다", ["만드는", "만들어"]), ("빠르다", ["빨라", "빠른"]), ("짓다", ["지어"]), ("보다", ["봐", "봤다"]),
])
def test_a_verbs_lemma_finds_the_words_its_conjugations_are_written_in(lemma: str, written: list[str]) -> None:
    # Only these words are read for highlighting: a conjugated verb the finder missed would go unmarked.
    from digest_rag.search.snippets import _term_places

    places = _term_places(frozenset({lemma}))
    assert all(places.find(w) for w in written), [w for w in written if not places.find(w)]
    assert not any(places.find(w) for w in ["을", "는", "에서", "모델"] if not w.startswith(lemma[0]))


def test_latin_words_found_from_their_places_are_those_a_full_scan_finds() -> None:
    """`_latin_spans` reads only the words where a term's letters are written: the same spans as reading
    every word, on texts of words, joiners, Hangul and Latin-1 letters; and one pass over a hostile text."""
    import random

    from digest_rag.lexical.analysis import LATIN_WORD
    from digest_rag.search import snippets

    def every_word(text: str, terms: frozenset[str]) -> list[tuple[int, int]]:
        return [m.span() for m in LATIN_WORD.finditer(text)
                if not terms.isdisjoint(snippets._latin_word_tokens(m.group(0)))]  # noqa: SLF001

    rng = random.Random(7)
    alphabet = list("abcdeLMN0123-.'\u2019 ,한국é")
    pool = ["abc", "ab", "a", "lm", "n0", "gpt-3.5", "c-d", "e.f", "0", "12", "b'c", "é"]
    found = 0
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        terms = frozenset(rng.sample(pool, rng.randint(1, 4)))
        spans = snippets._latin_spans(text, terms)  # noqa: SLF001
        assert spans == every_word(text, terms), (text, terms)
        found += bool(spans)
    assert found > 100  # the texts do hold terms
    # 30,000 words in one run of word characters: read once (scanning back to the run's start from each place
    # would read 10^9 characters).
    assert len(snippets._latin_spans("gan.." * 30_000, frozenset({"gan"}))) == 30_000  # noqa: SLF001
