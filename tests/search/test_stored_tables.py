"""The known-item name table and the English-only papers are computed at build time and stored with the
generation (store.sqlite); searches read them instead of passing over every title or chunk, an index built
before that computes them as it did, and update / remove keep them right."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from digest_rag import DigestIndex
from digest_rag.search import known_item
from digest_rag.search.known_item import NameTable
from digest_rag.storage.layout import read_manifest, sha256_file
from digest_rag.storage.store import StoredNames

KO = "긴 컨텍스트를 악용하는 탈옥 공격은 모델의 안전장치를 무력화한다. " * 3


def _paper(pid: str, title: str, ko: bool = True) -> dict[str, str]:
    row = {"id": pid, "title": title, "abstract_en": f"{title} is a method we propose for long context models."}
    if ko:
        row["commentary_ko"] = KO
    return row


def _write(path: Path, rows: list[dict[str, str]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def _computed(idx: DigestIndex) -> tuple[dict[str, tuple[str, ...]], frozenset[str]]:
    return dict(NameTable(idx.store.titles()).owners), frozenset(idx.store.english_only_papers())


def test_search_reads_the_stored_tables_which_equal_the_computed_ones(
        seed_index_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    idx = DigestIndex.load(seed_index_dir)
    names, english = _computed(idx)
    assert names  # the seed titles own names (a table with nothing in it would prove nothing)

    def no_pass_over_titles(self: NameTable, titles: object) -> None:
        raise AssertionError("a search computed the name table although the build stored it")

    monkeypatch.setattr(NameTable, "__init__", no_pass_over_titles)
    monkeypatch.setattr(type(idx.store), "english_only_papers", lambda *a, **k: pytest.fail("computed"))
    idx.search("RoBERTa가 BERT 사전학습에서 바꾼 점", k=3, mode="lexical")
    assert isinstance(idx.names.owners, StoredNames)
    assert dict(idx.names.owners.items()) == names and len(idx.names) == len(names)
    assert idx.english_only == english
    idx.close()


def _as_before_part_2(index_dir: Path) -> None:
    """Make an index look built before builds stored the tables: drop them, keep the checksums right."""
    manifest = read_manifest(index_dir)
    path = index_dir / manifest.data_dir / "store.sqlite"
    con = sqlite3.connect(path)
    con.executescript("DROP TABLE name_owners; DROP TABLE english_only; "
                      "DELETE FROM meta WHERE key IN ('name_rules', 'english_only');")
    con.commit()
    con.close()
    files = {**manifest.files, "store.sqlite": sha256_file(path)}
    (index_dir / "manifest.json").write_text(manifest.model_copy(update={"files": files}).model_dump_json(),
                                             encoding="utf-8")


def test_an_index_without_the_tables_computes_them_and_answers_the_same(
        seed_index_dir: Path, tmp_path: Path) -> None:
    question = "RoBERTa가 BERT 사전학습에서 바꾼 점"
    with DigestIndex.load(seed_index_dir) as new:
        expected = [(h.paper.id, h.score) for h in new.search(question, k=5, mode="lexical")]
        names, english = _computed(new)
    old_dir = tmp_path / "old"
    shutil.copytree(seed_index_dir, old_dir)
    _as_before_part_2(old_dir)
    with DigestIndex.load(old_dir) as old:
        assert old.store.name_owners(known_item.NAME_RULES) is None and not old.store.has_stored_english_only()
        assert [(h.paper.id, h.score) for h in old.search(question, k=5, mode="lexical")] == expected
        assert not isinstance(old.names.owners, StoredNames) and dict(old.names.owners) == names
        assert old.english_only == english


def test_a_table_made_by_other_naming_rules_is_not_read(seed_index_dir: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("digest_rag.search.pipeline.NAME_RULES", "another")
    with DigestIndex.load(seed_index_dir) as idx:
        assert not isinstance(idx.names.owners, StoredNames)
        assert dict(idx.names.owners) == _computed(idx)[0]


def test_update_and_remove_keep_the_stored_tables_right(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    _write(corpus / "a.jsonl", [_paper("a1", "FooNet: Long Context Attacks"), _paper("a2", "Scaling Safety Tuning")])
    ix = tmp_path / "ix"
    DigestIndex.build([corpus], index_dir=ix, lexical_only=True).close()
    added = _write(corpus / "b.jsonl", [_paper("b1", "BarFormer: Jailbreak Defence", ko=False)])
    with DigestIndex.update([added], index_dir=ix) as idx:
        stored = idx.store.name_owners(known_item.NAME_RULES)
        assert stored is not None and stored["barformer"] == ("b1",) and stored["foonet"] == ("a1",)
        assert dict(stored.items()) == _computed(idx)[0]
        assert idx.store.stored_english_only() == {"b1"} == set(_computed(idx)[1])
        assert [h.paper.id for h in idx.search("BarFormer는 어떻게 막아?", k=1, mode="lexical")] == ["b1"]
    with DigestIndex.remove([added], index_dir=ix) as idx:
        stored = idx.store.name_owners(known_item.NAME_RULES)
        assert stored is not None and "barformer" not in stored and dict(stored.items()) == _computed(idx)[0]
        assert idx.store.stored_english_only() == set() == set(_computed(idx)[1])


def test_held_small_tables_answer_as_read_row_by_row(seed_index_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    idx = DigestIndex.load(seed_index_dir)
    store = idx.store
    names = dict(store.name_owners(known_item.NAME_RULES).items())
    skeletons = [str(r[0]) for r in store._query("SELECT DISTINCT skeleton FROM loanwords")]  # noqa: SLF001
    candidates = {sk: store.loanword_candidates(sk) for sk in skeletons}
    assert names and skeletons
    store.hold_small_tables(limit=0)  # bigger than the limit: nothing held
    assert store._held_names is None and store._held_loanwords is None  # noqa: SLF001
    store.hold_small_tables()
    fresh = StoredNames(store)
    monkeypatch.setattr(store, "_query", lambda *a, **k: pytest.fail("a held table went to SQLite"))
    assert {key: fresh[key] for key in names} == names and "no-such-name" not in fresh
    assert {sk: store.loanword_candidates(sk) for sk in skeletons} == candidates
    assert store.loanword_candidates("QQQQ") == []
    monkeypatch.undo()
    idx.close()


def test_a_damaged_held_name_row_is_reported_as_before(seed_index_dir: Path, tmp_path: Path) -> None:
    ix = tmp_path / "ix"
    shutil.copytree(seed_index_dir, ix)
    manifest = read_manifest(ix)
    path = ix / manifest.data_dir / "store.sqlite"
    con = sqlite3.connect(path)
    key = con.execute("SELECT key FROM name_owners LIMIT 1").fetchone()[0]
    con.execute("UPDATE name_owners SET owners = '{broken' WHERE key = ?", (key,))
    con.commit()
    con.close()
    from digest_rag.errors import IndexCorruptedError
    from digest_rag.storage.store import Store

    store = Store(path)
    store.hold_small_tables()
    with pytest.raises(IndexCorruptedError, match="damaged name table row"):
        StoredNames(store)[key]
    store.close()


def test_holding_a_store_that_cannot_be_read_raises_nothing(seed_index_dir: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from digest_rag.errors import IndexCorruptedError

    idx = DigestIndex.load(seed_index_dir)

    def damaged(*_a: object, **_k: object) -> list[tuple]:
        raise IndexCorruptedError("damaged store")

    monkeypatch.setattr(idx.store, "_query", damaged)
    idx.store.hold_small_tables()  # the read that meets the damage reports it, not the hold
    assert idx.store._held_names is None and idx.store._held_loanwords is None  # noqa: SLF001
    monkeypatch.undo()
    idx.close()
