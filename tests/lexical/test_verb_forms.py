"""The question forms of the corpus's verbs and nouns that a build adds to the word table (verb_forms.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from digest_rag.lexical.kiwi import get_kiwi
from digest_rag.lexical.terms import query_term_weights
from digest_rag.lexical.verb_forms import (
    add_question_forms,
    corpus_nouns,
    corpus_predicates,
    question_forms,
    reads_as,
)
from digest_rag.lexical.word_lookup import EojeolTable
from digest_rag.lexical.word_table import EojeolRecorder

# Notes in the written style: verbs as "섞는다", "줄였다"; questions ask "섞은", "줄여서", "뭐였지".
NOTES = [
    "두 어텐션을 섞는다. 메모리 사용량을 크게 줄였다.",
    "이 방법은 학습이 빠르다. 모델을 학습하는 비용이 문제다.",
    "무엇이 달라졌는지 뭐가 중요한지 분석한다.",
]


def _recorder(texts: list[str]) -> EojeolRecorder:
    rec = EojeolRecorder()
    for text in texts:
        rec.observe(text, get_kiwi().tokenize(text))
    return rec


def test_predicates_and_nouns_come_from_the_readings() -> None:
    rec = _recorder(NOTES)
    predicates = corpus_predicates(rec.readings)
    assert ("섞", "VV") in predicates and ("줄이", "VV") in predicates
    assert any(tag.startswith("VA") and stem == "빠르" for stem, tag in predicates)
    nouns = corpus_nouns(rec.readings)
    assert ("뭐", "NP") in nouns  # every pronoun
    # one common noun ending in a consonant, one in a vowel
    assert sum(1 for _n, t in nouns if t == "NNG") == 2


def test_forms_are_kiwis_conjugations_and_adjectives_take_no_verb_endings() -> None:
    join = get_kiwi().join
    verb = {form for form, _start in question_forms([("섞", "VV")], join)}
    assert {"섞은", "섞어서", "섞었어", "섞으려고"} <= verb
    adjective = {form for form, _start in question_forms([("빠르", "VA")], join)}
    assert "빨라져" in adjective and "빠르는" not in adjective
    noun = dict(question_forms([("학습", "NNG"), ("뭐", "NP")], join))
    assert noun["학습했어"] == (("학습", "NNG"), ("하", "XSV"))
    assert noun["뭐였지"] == (("뭐", "NP"), ("이", "VCP"))


def test_a_form_is_kept_only_where_kiwi_reads_it_alone_as_made() -> None:
    kiwi = get_kiwi()
    assert reads_as(kiwi.tokenize("줄여서"), (("줄이", "VV"),))
    assert not reads_as(kiwi.tokenize("줄여서"), (("줄", "NNG"),))
    assert not reads_as([], (("줄이", "VV"),))


def test_a_question_in_the_spoken_style_is_read_from_the_table(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    rec = _recorder(NOTES)
    plain = tmp_path / "plain.sqlite"
    rec.save(plain)
    question = "어텐션을 섞은 방법이 뭐였지? 메모리 사용량을 줄여서 학습했어"
    assert EojeolTable(plain).analyse(question) is None  # without the forms: Kiwi's
    assert add_question_forms(rec) > 0
    rec.save(tmp_path / "words.sqlite")
    table = EojeolTable(tmp_path / "words.sqlite")
    assert table.analyse(question) is not None
    expected = query_term_weights(question)  # Kiwi's reading of the whole question
    monkeypatch.setattr("digest_rag.lexical.analysis.get_kiwi", lambda: pytest.fail("Kiwi started"))
    assert query_term_weights(question, stored=table) == expected


def test_nothing_new_starts_no_kiwi(monkeypatch: pytest.MonkeyPatch) -> None:
    rec = _recorder(NOTES)
    add_question_forms(rec)
    seeded = EojeolRecorder({key: (raw, n) for key, (raw, n) in
                             ((k, next(iter(v.items()))) for k, v in rec.readings.items())})
    monkeypatch.setattr("digest_rag.lexical.verb_forms.get_kiwi", lambda: pytest.fail("Kiwi started"))
    assert add_question_forms(seeded) == 0  # an update that analysed no text
    monkeypatch.undo()
    # An update's new words bring their verbs' forms; its known words' verbs were made by the build before.
    seeded.observe(NOTES[0], get_kiwi().tokenize(NOTES[0]))  # known words only
    assert add_question_forms(seeded) == 0
    before = dict(seeded.readings["섞어서"])
    text = "새 모델은 버그를 고친다."
    seeded.observe(text, get_kiwi().tokenize(text))
    assert add_question_forms(seeded) > 0 and "고쳐서" in seeded.readings
    assert seeded.readings["섞어서"] == before  # not made (nor counted) again


def test_an_index_built_without_these_forms_is_analysed_again() -> None:
    # Its token cache is keyed without them, so the next build reads every text (and makes every form) once.
    from digest_rag.lexical.builder import analysis_cache_key
    from digest_rag.lexical.verb_forms import QUESTION_FORMS_VERSION

    assert analysis_cache_key().endswith(f"|forms-{QUESTION_FORMS_VERSION}")


def test_a_process_makes_a_words_forms_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # A notebook (or a test suite) building the same corpus again: the same forms, and Kiwi is not asked again.
    first = _recorder(NOTES)
    n = add_question_forms(first)
    again = _recorder(NOTES)
    monkeypatch.setattr("digest_rag.lexical.verb_forms.get_kiwi", lambda: pytest.fail("Kiwi asked again"))
    monkeypatch.setattr("digest_rag.lexical.verb_forms.kiwi_morphs", lambda forms: pytest.fail("Kiwi asked again"))
    assert add_question_forms(again) == n and again.rows() == first.rows()
