"""Tests for digest_rag.lexical.word_table: the stored table of Kiwi's analysis per Korean word."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

from digest_rag.lexical.analysis import needs_kiwi
from digest_rag.lexical.kiwi import get_kiwi
from digest_rag.lexical.terms import query_term_weights
from digest_rag.lexical.word_lookup import EojeolTable
from digest_rag.lexical.word_table import EOJEOL_FORMAT, EojeolRecorder, Morph
from digest_rag.errors import IndexVersionError

TEXTS = [
    "긴 컨텍스트를 악용하는 탈옥 공격을 분석했다.",
    "수백 개의 가짜 대화를 넣어 모델의 안전장치를 무력화한다. (탈옥) 공격은 LLM의 취약점이다.",
    "준지도학습과 강화 학습을 결합한 GPT-4 기반 에이전트.",
]


def _kiwi(text: str) -> list[tuple[str, str, int, int, str]]:
    return [(t.form, str(t.tag), int(t.start), int(t.len), t.lemma or t.form) for t in get_kiwi().tokenize(text)]


def _table(tmp_path: Path, texts: list[str]) -> EojeolTable:
    rec = EojeolRecorder()
    for t in texts:
        rec.observe(t, get_kiwi().tokenize(t))
    rec.save(tmp_path / "words.sqlite")
    return EojeolTable(tmp_path / "words.sqlite")


def test_table_round_trips_kiwi_analysis(tmp_path: Path) -> None:
    table = _table(tmp_path, TEXTS)
    assert len(table) > 10
    for text in TEXTS:
        # Korean and mixed words come back as Kiwi gave them; Latin-only words ("GPT-4") are never Korean tokens.
        words = [w for w in re.finditer(r"\S+", text) if needs_kiwi(w.group())]
        kiwi = [m for m in _kiwi(text) if any(w.start() <= m[2] < w.end() for w in words)]
        assert [tuple(m) for m in table.analyse(text)] == kiwi
        assert query_term_weights(text, stored=table) == query_term_weights(text)


def test_unknown_word_gives_none_and_query_falls_back_to_kiwi(tmp_path: Path) -> None:
    table = _table(tmp_path, TEXTS)
    query = "긴 컨텍스트를 노리는 탈옥"  # 노리는 is in no text (nor 노리 as a stem)
    assert table.analyse(query) is None
    assert query_term_weights(query, stored=table) == query_term_weights(query)
    assert "노리다" in query_term_weights(query, stored=table)


def test_punctuation_around_a_known_word_is_peeled(tmp_path: Path) -> None:
    table = _table(tmp_path, TEXTS)
    morphs = table.analyse("탈옥 공격을?")
    assert morphs is not None and ("공격", "NNG", 3, 2) in [m[:4] for m in morphs]


def test_multi_word_morpheme_is_one_key_matched_first(tmp_path: Path) -> None:
    rec = EojeolRecorder()
    # Kiwi's multi-word dictionary draws one noun across a space; the words it covers become one key.
    rec.observe("자연어 처리를 한다", [Morph("자연어 처리", "NNP", 0, 6, "자연어 처리"), Morph("를", "JKO", 6, 1, "를"),
                                    Morph("하", "VV", 8, 1, "하다"), Morph("ㄴ다", "EF", 8, 2, "ㄴ다")])
    rec.observe("처리 속도", [Morph("처리", "NNG", 0, 2, "처리"), Morph("속도", "NNG", 3, 2, "속도")])
    rec.save(tmp_path / "w.sqlite")
    table = EojeolTable(tmp_path / "w.sqlite")
    assert set(table.rows()) == {"자연어 처리를", "한다", "처리", "속도"}
    # Any spacing between the words: positions land on the query's own characters.
    text = "속도  자연어   처리를 처리"
    morphs = table.analyse(text)
    assert morphs is not None
    first, noun, particle, single = morphs
    assert (first.form, first.start) == ("속도", 0)
    assert (noun.form, noun.tag, text[noun.start: noun.start + noun.len]) == ("자연어 처리", "NNP", "자연어   처리")
    assert text[particle.start: particle.start + particle.len] == "를" and single.start == len(text) - 2
    assert table.analyse("자연어 처리") is None  # the key is the words as written, particle included


def test_most_frequent_reading_wins_and_ties_are_deterministic(tmp_path: Path) -> None:
    a = [Morph("감기", "NNG", 0, 2, "감기")]
    b = [Morph("감", "VV", 0, 1, "감다"), Morph("기", "ETN", 1, 1, "기")]
    rec = EojeolRecorder()
    for morphs in (b, a, a):
        rec.observe("감기", morphs)
    (key, best, seen), = rec.rows()
    assert key == "감기" and seen == 3 and '"NNG"' in best
    one, two = EojeolRecorder(), EojeolRecorder()
    one.observe("감기", a)
    one.observe("감기", b)
    two.observe("감기", b)
    two.observe("감기", a)
    assert one.rows() == two.rows()
    # Counts carry over to the next build, which adds what it sees.
    again = EojeolRecorder({"감기": (rec.rows()[0][1], 3)})
    again.observe("감기", b)
    assert again.rows()[0][2] == 4


def test_other_format_is_a_version_error(tmp_path: Path) -> None:
    _table(tmp_path, TEXTS[:1]).close()
    con = sqlite3.connect(tmp_path / "words.sqlite")
    con.execute("UPDATE meta SET value = ? WHERE name = 'format'", (str(EOJEOL_FORMAT + 1),))
    con.commit()
    con.close()
    with pytest.raises(IndexVersionError, match="rebuild"):
        EojeolTable(tmp_path / "words.sqlite")


def _dump(path: Path) -> dict[str, list[tuple]]:
    con = sqlite3.connect(path)
    try:
        return {t: sorted(con.execute(f"SELECT * FROM {t}").fetchall())  # noqa: S608 - our table names
                for t in ("meta", "eojeols", "multiword", "stems", "suffixes", "part_counts")}
    finally:
        con.close()


def _rows(path: Path) -> dict[str, tuple[str, int]]:
    table = EojeolTable(path)
    try:
        return table.rows()
    finally:
        table.close()


def test_a_patched_table_equals_one_written_whole(tmp_path: Path) -> None:
    first = EojeolRecorder()
    for t in TEXTS[:2]:
        first.observe(t, get_kiwi().tokenize(t))
    # A word whose best reading the next build changes: its old stem reading must leave the counts.
    first.observe("모델을", [Morph("모델", "NNG", 0, 2, "모델"), Morph("을", "JKO", 2, 1, "을")])
    base = tmp_path / "base.sqlite"
    first.save(base)
    rows = _rows(base)
    patched, whole = EojeolRecorder(rows, base=base), EojeolRecorder(rows)
    for rec in (patched, whole):
        for t in (TEXTS[2], TEXTS[0]):  # a new text, and one seen again (its words' counts grow)
            rec.observe(t, get_kiwi().tokenize(t))
        for _ in range(2):
            rec.observe("모델을", [Morph("모", "NNG", 0, 1, "모"), Morph("델", "NNG", 1, 1, "델"),
                                   Morph("을", "JKO", 2, 1, "을")])
    patched.save(tmp_path / "patched.sqlite")
    whole.save(tmp_path / "whole.sqlite")
    assert patched.touched and _dump(tmp_path / "patched.sqlite") == _dump(tmp_path / "whole.sqlite")
    assert _dump(tmp_path / "patched.sqlite") != _dump(base)
    # Nothing observed: the copy is the base; a base without reading counts (an older table) is written whole.
    EojeolRecorder(rows, base=base).save(tmp_path / "same.sqlite")
    assert _dump(tmp_path / "same.sqlite") == _dump(base)
    con = sqlite3.connect(base)
    con.execute("DROP TABLE part_counts")
    con.commit()
    con.close()
    again = EojeolRecorder(rows, base=base)
    again.observe(TEXTS[2], get_kiwi().tokenize(TEXTS[2]))
    again.save(tmp_path / "again.sqlite")
    ref = EojeolRecorder(rows)
    ref.observe(TEXTS[2], get_kiwi().tokenize(TEXTS[2]))
    ref.save(tmp_path / "ref.sqlite")
    assert _dump(tmp_path / "again.sqlite") == _dump(tmp_path / "ref.sqlite")


def test_latin_name_with_a_particle_is_read_without_kiwi(tmp_path: Path) -> None:
    # "GPT-4를" is in no text; "를" is a known suffix (컨텍스트를), and GPT-4 makes no Korean morpheme.
    table = _table(tmp_path, TEXTS)
    query = "GPT-4를 악용하는 공격"
    morphs = table.analyse(query)
    assert morphs is not None and ("를", "JKO", 5, 1) in [m[:4] for m in morphs]
    assert query_term_weights(query, stored=table) == query_term_weights(query)


def test_two_known_words_run_together_are_read_without_kiwi(tmp_path: Path) -> None:
    table = _table(tmp_path, TEXTS + ["사전 모델과 결합한 방법"])
    query = "사전학습을 결합한 에이전트"  # 사전 and 학습을 are known words, 사전학습을 is not
    morphs = table.analyse(query)
    assert morphs is not None and [m[:2] for m in morphs[:3]] == [("사전", "NNG"), ("학습", "NNG"), ("을", "JKO")]
    assert query_term_weights(query, stored=table) == query_term_weights(query)
    assert table.analyse("노리는학습") is None  # no known first word: still Kiwi's


def test_known_words_joined_by_a_hyphen_are_read_without_kiwi(tmp_path: Path) -> None:
    table = _table(tmp_path, TEXTS + ["텍스트 이미지 모델"])
    query = "텍스트-이미지 탈옥-공격을 분석했다"  # each piece is a known word; the joined words are not
    morphs = table.analyse(query)
    assert morphs is not None and [m[:4] for m in morphs[:2]] == [("텍스트", "NNG", 0, 3), ("이미지", "NNG", 4, 3)]
    assert query_term_weights(query, stored=table) == query_term_weights(query)
    assert table.analyse("텍스트-노리는") is None  # one piece unknown: Kiwi's


def test_lookups_are_cached_and_close_forgets_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    table = _table(tmp_path, TEXTS)
    first = table.lookup(["공격을", "없는말"])
    assert set(first) == {"공격을"}
    monkeypatch.setattr(table, "_query", lambda *_a: pytest.fail("a cached key went to SQLite"))
    assert table.lookup(["공격을", "없는말"]) == first  # hits and misses both answered from memory
    monkeypatch.undo()
    table.close()
    assert table.lookup(["공격을"]) == {}  # closed: nothing found, nothing remembered


def test_kiwi_reads_only_the_words_the_table_lacks_each_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import digest_rag.lexical.analysis as analysis
    from digest_rag.lexical.terms import analyse_query

    table = _table(tmp_path, TEXTS)
    query = "긴 컨텍스트를 노리는 공격을 막아냈을까"  # words the table lacks among words it knows
    lacking = [w for w in query.split() if table.analyse(w) is None]
    assert lacking and len(lacking) < len(query.split())
    monkeypatch.setattr(analysis, "_KIWI_CACHE", {})
    calls: list[object] = []
    kiwi = get_kiwi()

    class Counting:
        def tokenize(self, text: object) -> object:
            calls.append(text)
            return kiwi.tokenize(text)

    monkeypatch.setattr(analysis, "get_kiwi", lambda: Counting())
    first = query_term_weights(query, stored=table)
    assert sorted(calls) == sorted(lacking)  # each lacking word alone, never the question nor a known word
    again = query_term_weights(query, stored=table)
    assert first == again and len(calls) == len(lacking)  # read once per process
    # The question reads as its words, each alone: its tokens are its words' tokens.
    words = set().union(*(analyse_query(w, stored=table).tokens for w in query.split()))
    assert set(analyse_query(query, stored=table).tokens) == words
    assert {"컨텍스트", "공격"} <= words


def test_kept_word_readings_give_what_reading_the_whole_text_gives(tmp_path: Path) -> None:
    table = _table(tmp_path, TEXTS)
    texts = [*TEXTS, "탈옥 공격을? (탈옥) LLM의 취약점", "긴 컨텍스트를 노리는 탈옥", "GPT-4 기반 에이전트를 분석했다."]
    whole = [table._analyse_text(t) for t in texts]  # noqa: SLF001 - the path that reads every word afresh
    assert [table.analyse(t) for t in texts] == whole  # words read for the first time
    assert [table.analyse(t) for t in texts] == whole  # and from the kept readings
    assert whole[-2] is None and whole[0]
    table.close()
    assert table.analyse(TEXTS[0]) is None  # a closed table forgets its readings too


def test_a_held_table_answers_as_sqlite_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import digest_rag.lexical.word_lookup as word_lookup

    texts = [*TEXTS, "탈옥 공격을? (탈옥) LLM의 취약점", "긴 컨텍스트를 노리는 탈옥", "준지도학습으로 모델을 학습했다"]
    for name in "abc":
        (tmp_path / name).mkdir()
    expected = [_table(tmp_path / "a", TEXTS).analyse(t) for t in texts]
    monkeypatch.setattr(word_lookup, "HELD_WORDS", 1)
    big = _table(tmp_path / "b", TEXTS)
    assert not big.hold()  # more rows than the limit: lookups keep asking SQLite
    monkeypatch.undo()
    table = _table(tmp_path / "c", TEXTS)
    assert table.hold() and table.hold()
    monkeypatch.setattr(table, "_query", lambda *_a: pytest.fail("a held table went to SQLite"))
    assert [table.analyse(t) for t in texts] == expected
    assert any(e is not None for e in expected) and any(e is None for e in expected)
    monkeypatch.undo()
    table.close()
    assert table.lookup(["공격을"]) == {}  # closed: the held rows are gone too


def test_read_words_reads_each_word_as_analyse_does_and_keeps_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    table = _table(tmp_path, TEXTS)
    words = ["공격을", "탈옥", "없는말이다", "컨텍스트를", "탈옥"]
    read = table.read_words(words)
    assert list(read) == ["공격을", "탈옥", "없는말이다", "컨텍스트를"]  # each once, in order
    assert read == {w: table.analyse(w) for w in read} and read["없는말이다"] is None and read["공격을"]
    monkeypatch.setattr(table, "_query", lambda *_a: pytest.fail("a word read before went to SQLite"))
    assert table.read_words(words) == read


def test_a_table_that_cannot_be_read_whole_is_not_held_and_holding_raises_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from digest_rag.errors import IndexCorruptedError

    table = _table(tmp_path, TEXTS)

    def damaged(*_a: object) -> list[tuple]:
        raise IndexCorruptedError("unreadable word analysis table")

    monkeypatch.setattr(table, "_query", damaged)
    assert table.hold() is False and table._held is None  # noqa: SLF001
    monkeypatch.undo()
    assert table.hold() and table.analyse(TEXTS[0])
