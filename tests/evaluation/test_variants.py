"""Tests for digest_rag.evaluation.variants: the cross-lingual (english-half, mixed, english) corpus variants."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from digest_rag import DigestIndex, parse_paths
from digest_rag.errors import UsageError
from digest_rag.evaluation.evaluate import evaluate, naive_baseline
from digest_rag.models import Paper, Section
from digest_rag.evaluation.variants import (
    MIXED_MIN_ENGLISH,
    apply_variant,
    english_only,
    english_only_in,
    export_variant,
    has_english_prose,
    is_english_only,
    write_jsonl,
)


def _paper(pid: str, title: str, en: str, ko: str) -> Paper:
    return Paper(
        id=pid,
        title=title,
        title_ko=f"{title} (한국어 제목)",
        tags=["llm"],
        sections=[
            Section(kind="abstract", language="en", text=en),
            Section(kind="commentary", language="ko", text=ko),
            Section(kind="commentary", language="mixed", text=f"{ko} with English words"),
        ],
    )


def _ids(english: bool, n: int) -> list[str]:
    """The first n ids of the form 'p<i>' on the given side of the fixed split."""
    out = [f"p{i}" for i in range(200) if is_english_only(f"p{i}") == english]
    return out[:n]


def test_english_only_keeps_id_title_and_english_sections() -> None:
    p = _paper("2401.00001", "Knowledge Distillation Study", "We distill a teacher.", "지식 증류 연구입니다.")
    e = english_only(p)
    assert e.id == p.id and e.title == p.title and e.tags == p.tags
    assert e.title_ko is None
    assert [(s.kind, s.language) for s in e.sections] == [("abstract", "en")]
    assert p.title_ko and len(p.sections) == 3  # the input is not modified


def test_apply_variant_half_is_fixed_and_about_half() -> None:
    papers = [_paper(f"p{i}", f"Paper {i}", "English text.", "한국어 본문입니다.") for i in range(400)]
    out = apply_variant(papers, "english-half")
    assert [p.id for p in out] == [p.id for p in papers]
    stripped = [p.id for p in out if p.title_ko is None]
    assert stripped == [p.id for p in papers if is_english_only(p.id)]
    assert 150 < len(stripped) < 250
    assert apply_variant(papers, "english-half") == out  # same answer every time
    assert apply_variant(papers, "full") == papers
    with pytest.raises(UsageError):
        apply_variant(papers, "korean-half")  # type: ignore[arg-type]


def test_jsonl_round_trip_keeps_ids_and_sections(tmp_path: Path) -> None:
    papers = [_paper(pid, f"Title {pid}", "An English abstract.", "한국어 논평입니다.") for pid in ("2401.00001", "x-2020")]
    path = write_jsonl(apply_variant(papers, "full"), tmp_path / "v.jsonl")
    back = {p.id: p for p in parse_paths([path]).papers}
    assert set(back) == {"2401.00001", "x-2020"}
    for p in papers:
        b = back[p.id]
        assert b.title == p.title and b.title_ko == p.title_ko and b.tags == p.tags
        assert [(s.kind, s.language, s.text) for s in b.sections] == [(s.kind, s.language, s.text) for s in p.sections]
    assert not list(tmp_path.glob(".*.tmp"))  # the temp file was renamed, not left behind


def test_write_jsonl_refuses_directory_and_empty(tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        write_jsonl([_paper("a", "A", "x", "가")], tmp_path)
    with pytest.raises(UsageError):
        write_jsonl([], tmp_path / "empty.jsonl")
    assert not (tmp_path / "empty.jsonl").exists()


def test_english_half_decides_the_ranking(tmp_path: Path) -> None:
    """A Korean question whose words are only in the Korean commentary: found in full, not in english-half."""
    en_id = _ids(english=True, n=1)[0]
    bi_ids = _ids(english=False, n=3)
    papers = [_paper(en_id, "Layer Dropping in Pretrained Models", "We remove half of the layers.",
                     "층 가지치기로 깊은 층을 절반까지 제거해도 성능이 유지됩니다.")]
    papers += [_paper(pid, f"Other Paper {pid}", "Unrelated English abstract.", f"다른 주제의 논평 {pid}.") for pid in bi_ids]
    src = write_jsonl(papers, tmp_path / "src.jsonl")
    report = export_variant([src], "english-half", tmp_path / "half.jsonl")
    assert report.papers == 4 and report.english_only == 1
    half = parse_paths([tmp_path / "half.jsonl"]).papers
    assert {p.id for p in half} == {p.id for p in papers}
    from digest_rag.evaluation.evaluate import EvalQuery

    queries = [EvalQuery(query="층 가지치기로 깊은 층을 절반까지 제거", relevant=[en_id])]
    full_row = evaluate(queries, naive_baseline(papers), papers, "full")
    half_row = evaluate(queries, naive_baseline(half), half, "english-half")
    assert full_row.recall_at_1 == 1.0
    assert half_row.recall_at_10 == 0.0  # the Korean words are gone with the Korean text
    index = DigestIndex.build([str(tmp_path / "half.jsonl")], index_dir=tmp_path / "idx", lexical_only=True)
    try:
        assert set(index.papers) == {p.id for p in papers}  # same ids, so judgments still match
        hits = index.search("layer dropping pretrained", k=2, mode="lexical")
        assert hits and hits[0].paper.id == en_id
    finally:
        index.close()


def test_cli_export_variant(tmp_path: Path, seed_corpus: Path) -> None:
    from typer.testing import CliRunner

    from digest_rag.frontends.cli import app

    out = tmp_path / "seeds-half.jsonl"
    res = CliRunner().invoke(app, ["export-variant", str(seed_corpus), "-o", str(out), "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.output)
    seeds = parse_paths([seed_corpus]).papers
    assert report["papers"] == len(seeds)
    assert report["english_only"] == sum(is_english_only(p.id) for p in seeds)
    back = {p.id: p for p in parse_paths([out]).papers}
    assert set(back) == {p.id for p in seeds}
    for p in seeds:
        langs = {s.language for s in back[p.id].sections}
        if is_english_only(p.id):
            assert langs <= {"en"} and back[p.id].title_ko is None
        else:
            assert len(back[p.id].sections) >= 1
    bad = CliRunner().invoke(app, ["export-variant", str(seed_corpus), "-o", str(tmp_path / "x.jsonl"), "--variant", "nope"])
    assert bad.exit_code == 1


def _prose_paper(pid: str, english: bool) -> Paper:
    en = "A long English abstract about distilling a large teacher into a small student model. " * 4 if english else ""
    sections = [Section(kind="commentary", language="ko", text="지식 증류에 대한 한국어 노트입니다.")]
    if english:
        sections.insert(0, Section(kind="abstract", language="en", text=en))
    else:
        sections.insert(0, Section(kind="commentary", language="en", text="https://arxiv.org/abs/" + pid))
    return Paper(id=pid, title=f"Paper {pid}", title_ko="논문", sections=sections)


def test_mixed_makes_english_only_a_fixed_half_of_the_papers_with_english_prose() -> None:
    with_prose = [_prose_paper(f"e{i}", True) for i in range(200)]
    notes_only = [_prose_paper(f"k{i}", False) for i in range(200)]
    out = {p.id: p for p in apply_variant(with_prose + notes_only, "mixed")}
    stripped = [pid for pid, p in out.items() if p.title_ko is None]
    # Only papers with an English abstract can lose their Korean text, and about half of them do.
    assert all(pid.startswith("e") for pid in stripped)
    assert 70 < len(stripped) < 130
    assert stripped == [p.id for p in with_prose if english_only_in(p, "mixed")]
    for pid in stripped:
        assert [(s.kind, s.language) for s in out[pid].sections] == [("abstract", "en")]
    assert all(out[p.id] == p for p in notes_only)  # a Korean note with a link line keeps everything
    assert apply_variant(with_prose + notes_only, "mixed") == list(out.values())  # fixed
    # Its own half, not english-half's.
    assert stripped != [p.id for p in with_prose if is_english_only(p.id)]
    assert not any(english_only_in(p, "full") for p in with_prose)


def test_has_english_prose_needs_enough_english_abstract_text() -> None:
    assert has_english_prose(_prose_paper("a", True))
    assert not has_english_prose(_prose_paper("b", False))
    short = Paper(id="c", title="C", sections=[Section(kind="abstract", language="en", text="x" * (MIXED_MIN_ENGLISH - 1))])
    assert not has_english_prose(short)


def test_export_variant_mixed_counts_its_english_only_papers(tmp_path: Path) -> None:
    papers = [_prose_paper(f"e{i}", True) for i in range(20)] + [_prose_paper("k0", False)]
    src = write_jsonl(papers, tmp_path / "src.jsonl")
    report = export_variant([src], "mixed", tmp_path / "mixed.jsonl")
    assert report.variant == "mixed" and report.papers == 21
    assert report.english_only == sum(english_only_in(p, "mixed") for p in papers) > 0
    back = {p.id: p for p in parse_paths([tmp_path / "mixed.jsonl"]).papers}
    assert {pid for pid, p in back.items() if p.title_ko is None} == {p.id for p in papers if english_only_in(p, "mixed")}


def test_english_variant_keeps_only_every_papers_english_text() -> None:
    papers = [_prose_paper("e0", True), _prose_paper("k0", False)]
    out = apply_variant(papers, "english")
    assert [p.id for p in out] == ["e0", "k0"]
    assert all(p.title_ko is None and all(s.language == "en" for s in p.sections) for p in out)
    assert [(s.kind, s.language) for s in out[0].sections] == [("abstract", "en")]
    assert all(english_only_in(p, "english") for p in papers)
