"""Tests for digest_rag.evaluation.evaluate: query files, metrics (hand-computed), baseline, table, dev set."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from digest_rag.errors import ParseError, UsageError
from digest_rag.evaluation.evaluate import (
    OFF_TOPIC,
    EvalQuery,
    EvalReport,
    SearchOutcome,
    evaluate,
    first_relevant_rank,
    format_kind_table,
    format_table,
    is_heldout,
    load_queries,
    mrr_at,
    naive_baseline,
    ndcg_at,
    recall_at,
    resolve_relevant,
    stable_bucket,
)
from digest_rag.models import Paper, Section

ROOT = Path(__file__).resolve().parents[2]


def _paper(pid: str, title: str, text: str) -> Paper:
    return Paper(id=pid, title=title, sections=[Section(kind="summary", language="en", text=text)])


@pytest.fixture()
def papers() -> list[Paper]:
    return [
        _paper("a", "Many-shot Jailbreaking", "long context jailbreak attack with many faux dialogues"),
        _paper("b", "SWE-Agent", "agent that solves github issues on swe-bench"),
        _paper("c", "Scaling Laws for Fine-Grained Mixture of Experts", "scaling laws for moe granularity"),
        _paper("d", "A Tale of Tails", "model collapse changes scaling laws with synthetic data"),
    ]


# ---------------------------------------------------------------- metrics


def test_recall_exact() -> None:
    ranked = ["x", "a", "y", "b", "z"]
    assert recall_at(ranked, {"a", "b"}, 1) == 0.0
    assert recall_at(ranked, {"a", "b"}, 2) == 0.5
    assert recall_at(ranked, {"a", "b"}, 5) == 1.0
    assert recall_at(ranked, {"a", "b", "c"}, 10) == pytest.approx(2 / 3)
    assert recall_at(ranked, set(), 5) == 0.0


def test_mrr_exact() -> None:
    assert mrr_at(["a", "b"], {"a"}, 10) == 1.0
    assert mrr_at(["x", "y", "a"], {"a", "y"}, 10) == 0.5
    assert mrr_at(["x"] * 3 + ["a"], {"a"}, 3) == 0.5  # duplicates collapse; "a" is rank 2
    assert mrr_at([f"x{i}" for i in range(10)] + ["a"], {"a"}, 10) == 0.0


def test_first_rank_dedupes() -> None:
    assert first_relevant_rank(["x", "x", "a"], {"a"}) == 2
    assert first_relevant_rank(["x"], {"a"}) is None


def test_ndcg_exact() -> None:
    # relevant at ranks 1 and 3 of {a, b}: (1 + 1/log2 4) / (1 + 1/log2 3)
    expected = (1 + 0.5) / (1 + 1 / math.log2(3))
    assert ndcg_at(["a", "x", "b"], {"a", "b"}, 10) == pytest.approx(expected)
    assert ndcg_at(["a", "b"], {"a", "b"}, 10) == pytest.approx(1.0)
    assert ndcg_at(["x", "a"], {"a"}, 10) == pytest.approx(1 / math.log2(3))
    assert ndcg_at(["x", "a"], {"a"}, 1) == 0.0
    assert ndcg_at(["a"], set(), 10) == 0.0


def test_evaluate_hand_computed(papers: list[Paper]) -> None:
    queries = [
        EvalQuery(query="q1", relevant=["a"]),
        EvalQuery(query="q2", relevant=["SWE-Agent"]),
        EvalQuery(query="q3", relevant=["c", "d"]),
    ]
    canned = {"q1": ["a", "b"], "q2": ["a", "c", "b"], "q3": ["x", "d"]}
    row = evaluate(queries, lambda q, k: canned[q][:k], papers, "canned")
    assert row.mode == "canned" and row.n_queries == 3
    assert row.recall_at_1 == pytest.approx((1 + 0 + 0) / 3)
    assert row.recall_at_5 == pytest.approx((1 + 1 + 0.5) / 3)
    assert row.recall_at_10 == pytest.approx((1 + 1 + 0.5) / 3)
    assert row.mrr_at_10 == pytest.approx((1 + 1 / 3 + 1 / 2) / 3)
    ndcg_q2 = (1 / math.log2(4)) / 1
    ndcg_q3 = (1 / math.log2(3)) / (1 + 1 / math.log2(3))
    assert row.ndcg_at_10 == pytest.approx((1 + ndcg_q2 + ndcg_q3) / 3)
    assert [d.first_rank for d in row.details] == [1, 3, 2]
    assert [d.query for d in row.failures()] == ["q2", "q3"]


def test_evaluate_requires_queries(papers: list[Paper]) -> None:
    with pytest.raises(UsageError):
        evaluate([], lambda q, k: [], papers, "none")


# ---------------------------------------------------------------- relevance


def test_resolve_relevant(papers: list[Paper]) -> None:
    q = EvalQuery(query="q", relevant=["many-shot jailbreaking", "b", "  SWE-Agent "])
    assert resolve_relevant(q, papers) == {"a", "b"}


def test_resolve_unknown_raises(papers: list[Paper]) -> None:
    with pytest.raises(UsageError, match="No Such Paper"):
        resolve_relevant(EvalQuery(query="q", relevant=["No Such Paper"]), papers)


# ---------------------------------------------------------------- query files


def test_load_queries_ok(tmp_path: Path) -> None:
    f = tmp_path / "q.jsonl"
    f.write_text('{"query": "탈옥", "relevant": ["a"]}\n\n   \n{"query": "x", "relevant": ["b", "c"]}\n', encoding="utf-8")
    qs = load_queries(f)
    assert [q.query for q in qs] == ["탈옥", "x"]
    assert qs[1].relevant == ["b", "c"]


@pytest.mark.parametrize(
    "bad",
    ["{not json", '{"query": "x"}', '{"query": "", "relevant": ["a"]}', '{"query": "x", "relevant": []}', "[1, 2]"],
)
def test_load_queries_bad_line(tmp_path: Path, bad: str) -> None:
    f = tmp_path / "q.jsonl"
    f.write_text('{"query": "ok", "relevant": ["a"]}\n\n' + bad + "\n", encoding="utf-8")
    with pytest.raises(ParseError, match=r"q\.jsonl:3"):
        load_queries(f)


@pytest.mark.parametrize("bad", ["[" * 200_000, '{"query": "x", "relevant": ["a"], "n": 1' + "0" * 5000 + "}"])
def test_load_queries_hostile_line(tmp_path: Path, bad: str) -> None:
    """Issue 16 item 6: a deeply nested query file was a RecursionError traceback."""
    f = tmp_path / "q.jsonl"
    f.write_text('{"query": "ok", "relevant": ["a"]}\n' + bad + "\n", encoding="utf-8")
    with pytest.raises(ParseError, match=r"q\.jsonl:2"):
        load_queries(f)


def test_eval_cli_hostile_query_file_is_one_line(tmp_path: Path, seed_index_dir: Path) -> None:
    from typer.testing import CliRunner

    from digest_rag.frontends.cli import app

    f = tmp_path / "q.jsonl"
    f.write_text("[" * 200_000 + "\n", encoding="utf-8")
    res = CliRunner().invoke(app, ["eval", str(f), "--index", str(seed_index_dir), "--mode", "lexical"])
    assert res.exit_code == 2, (res.output, res.exception)
    assert res.stderr.startswith("error: ") and res.stderr.count("\n") == 1 and "q.jsonl:1" in res.stderr


def test_load_queries_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ParseError):
        load_queries(tmp_path / "nope.jsonl")


# ---------------------------------------------------------------- baseline + table


def test_naive_baseline(papers: list[Paper]) -> None:
    search = naive_baseline(papers)
    assert search("github issues", 10)[0] == "b"
    assert set(search("scaling laws", 10)[:2]) == {"c", "d"}
    assert search("scaling laws", 1) == search("scaling laws", 10)[:1]
    assert search("", 10) == []
    assert search("zzz", 10) == []
    assert naive_baseline([])("anything", 10) == []


def test_format_table(papers: list[Paper]) -> None:
    row = evaluate([EvalQuery(query="github issues", relevant=["b"])], naive_baseline(papers), papers, "naive")
    table = format_table([row])
    lines = table.splitlines()
    assert "R@1" in lines[0] and "nDCG@10" in lines[0]
    assert lines[2].startswith("naive") and "1.000" in lines[2]
    assert len({len(line) for line in lines}) == 1  # fixed width
    assert EvalReport(rows=[row]).table() == table


# ---------------------------------------------------------------- question kinds and the confidence signal


def test_off_topic_questions_have_no_answer_and_others_need_one() -> None:
    q = EvalQuery(query="김치찌개 끓이는 법", relevant=[], kind=OFF_TOPIC)
    assert q.off_topic and q.relevant == []
    assert EvalQuery(query="x", relevant=["a"], kind="known-item").kind == "known-item"
    with pytest.raises(ValueError, match="off-topic"):
        EvalQuery(query="x", relevant=[])
    with pytest.raises(ValueError, match="off-topic"):
        EvalQuery(query="x", relevant=[], kind="paraphrase")
    with pytest.raises(ValueError, match="no relevant"):
        EvalQuery(query="x", relevant=["a"], kind=OFF_TOPIC)


def test_off_topic_split_keys_on_the_question_text() -> None:
    for text in ("김치찌개 끓이는 법", "축구 규칙", "태양광 효율", "고양이 사료"):
        q = EvalQuery(query=text, relevant=[], kind=OFF_TOPIC)
        assert is_heldout(q) == (stable_bucket(text, 3, "heldout") == 0)


def _kinds_queries() -> list[EvalQuery]:
    return [
        EvalQuery(query="github issues", relevant=["b"], kind="known-item"),
        EvalQuery(query="jailbreak", relevant=["a"], kind="known-item"),
        EvalQuery(query="moe granularity", relevant=["c"], kind="paraphrase"),
        EvalQuery(query="김치찌개", relevant=[], kind=OFF_TOPIC),
        EvalQuery(query="축구", relevant=[], kind=OFF_TOPIC),
    ]


def test_evaluate_reports_r1_and_mrr_per_kind_and_leaves_off_topic_out_of_the_averages(papers: list[Paper]) -> None:
    answers = {"github issues": ["b", "a"], "jailbreak": ["d", "a"], "moe granularity": ["c"],
               "김치찌개": ["a"], "축구": []}
    row = evaluate(_kinds_queries(), lambda q, k: answers[q][:k], papers, "fake")
    assert row.n_queries == 3  # the two off-topic questions have nothing to find
    assert row.recall_at_1 == pytest.approx(2 / 3)
    assert row.mrr_at_10 == pytest.approx((1 + 0.5 + 1) / 3)
    kinds = {k.kind: k for k in row.by_kind}
    assert [k.kind for k in row.by_kind] == ["known-item", "paraphrase", OFF_TOPIC]  # off-topic last
    assert (kinds["known-item"].n_queries, kinds["known-item"].recall_at_1) == (2, 0.5)
    assert kinds["known-item"].mrr_at_10 == pytest.approx(0.75)
    assert (kinds["paraphrase"].recall_at_1, kinds["paraphrase"].mrr_at_10) == (1.0, 1.0)
    assert kinds[OFF_TOPIC].recall_at_1 is None and kinds[OFF_TOPIC].mrr_at_10 is None
    # A plain id list carries no confidence signal: no flag rate is invented from it.
    assert all(k.flag_rate is None for k in row.by_kind)
    assert all(d.flagged is None for d in row.details)
    assert [d.query for d in row.failures()] == ["jailbreak"]


def test_evaluate_reports_the_no_strong_match_rate_when_the_search_gives_one(papers: list[Paper]) -> None:
    strong = {"github issues": True, "jailbreak": False, "moe granularity": True, "김치찌개": False, "축구": None}
    answers = {"github issues": ["b"], "jailbreak": ["a"], "moe granularity": ["c"], "김치찌개": ["a"], "축구": []}

    def search(q: str, k: int) -> SearchOutcome:
        return SearchOutcome(ids=answers[q][:k], strong_match=strong[q])

    row = evaluate(_kinds_queries(), search, papers, "fake")
    kinds = {k.kind: k for k in row.by_kind}
    assert kinds[OFF_TOPIC].flag_rate == 1.0  # one flagged by the signal, one by returning nothing
    assert kinds["known-item"].flag_rate == 0.5
    assert kinds["paraphrase"].flag_rate == 0.0
    assert row.recall_at_1 == 1.0


def test_evaluate_reads_strong_match_off_search_results(papers: list[Paper]) -> None:
    from digest_rag.models import SearchResults

    assert SearchResults().strong_match is None
    row = evaluate([EvalQuery(query="축구", relevant=[], kind=OFF_TOPIC)],
                   lambda q, k: SearchResults([], strong_match=False), papers, "fake")
    assert row.by_kind[0].flag_rate == 1.0


def test_kind_table(papers: list[Paper]) -> None:
    row = evaluate(_kinds_queries(), lambda q, k: SearchOutcome(ids=["b"], strong_match=q != "축구"), papers, "lexical")
    table = format_kind_table([row])
    lines = table.splitlines()
    assert lines[0].split() == ["mode", "kind", "queries", "R@1", "MRR@10", "flagged"]
    assert lines[2].split() == ["lexical", "known-item", "2", "0.500", "0.500", "0.000"]
    assert lines[4].split() == ["lexical", OFF_TOPIC, "2", "-", "-", "0.500"]
    assert len({len(line) for line in lines}) == 1  # fixed width
    assert EvalReport(rows=[row]).table() == format_table([row]) + "\n\n" + table
    plain = evaluate([EvalQuery(query="github issues", relevant=["b"])], naive_baseline(papers), papers, "naive")
    assert format_kind_table([plain]) == "" and plain.by_kind == []


def test_load_queries_reads_kinds(tmp_path: Path) -> None:
    f = tmp_path / "q.jsonl"
    f.write_text('{"query": "a", "relevant": ["x"], "kind": "known-item"}\n'
                 '{"query": "b", "relevant": [], "kind": "off-topic"}\n', encoding="utf-8")
    assert [(q.kind, q.relevant) for q in load_queries(f)] == [("known-item", ["x"]), (OFF_TOPIC, [])]
    f.write_text('{"query": "b", "relevant": []}\n', encoding="utf-8")
    with pytest.raises(ParseError, match="off-topic"):
        load_queries(f)


# ---------------------------------------------------------------- dev query set


def _corpus_papers() -> list[Paper] | None:
    """Papers from the real parser when it is importable and working, else None."""
    try:
        from digest_rag.parsing import parse_paths  # type: ignore[attr-defined]

        return list(parse_paths([ROOT / "corpus"]).papers)
    except Exception:
        return None


def test_dev_queries_file() -> None:
    path = ROOT / "eval" / "dev_queries.jsonl"
    queries = load_queries(path)
    assert len(queries) >= 40
    titles = {t for q in queries for t in q.relevant}
    assert len(titles) >= 29  # every seed paper is asked about at least once
    corpus = "\n".join(p.read_text(encoding="utf-8") for p in sorted((ROOT / "corpus").glob("*.txt")))
    for t in titles:
        assert t in corpus, t
    papers = _corpus_papers()
    if papers:
        for q in queries:
            resolve_relevant(q, papers)  # raises on an unknown title
    assert any(q.query == "긴 컨텍스트를 악용하는 탈옥 공격" and q.relevant == ["Many-shot Jailbreaking"] for q in queries)
    scaling = next(q for q in queries if q.query == "스케일링 법칙에 대한 논문을 찾아줘")
    assert len(scaling.relevant) >= 2
    raw = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    mixed = [r for r in raw if any("a" <= ch.lower() <= "z" for ch in r["query"])]
    assert len(mixed) >= len(raw) // 5


# ---------------------------------------------------------------- ml-papers development set (issue 12)


def test_stable_bucket_is_fixed_and_spread() -> None:
    # Pinned values: the split and the corpus variant must never drift between runs or machines.
    assert stable_bucket("2305.18290", 3, "heldout") == stable_bucket("2305.18290", 3, "heldout")
    assert [stable_bucket(k, 3, "heldout") for k in ("a", "b", "c", "d")] == [
        int.from_bytes(__import__("hashlib").sha256(f"heldout:{k}".encode()).digest()[:8], "big") % 3
        for k in ("a", "b", "c", "d")
    ]
    counts = [0, 0, 0]
    for i in range(3000):
        counts[stable_bucket(f"p{i}", 3, "x")] += 1
    assert all(900 < c < 1100 for c in counts)
    assert stable_bucket("k", 2, "a") != stable_bucket("k", 2, "b") or stable_bucket("j", 2, "a") != stable_bucket(
        "j", 2, "b"
    )  # the salt matters
    with pytest.raises(UsageError):
        stable_bucket("k", 0, "x")


def test_is_heldout_keys_on_smallest_relevant_id() -> None:
    a = EvalQuery(query="q1", relevant=["2104.14294", "thoughts-on-recent-papers"])
    b = EvalQuery(query="something else", relevant=["2104.14294"])
    assert is_heldout(a) == is_heldout(b) == (stable_bucket("2104.14294", 3, "heldout") == 0)


def _ml_raw(name: str) -> list[dict]:
    path = ROOT / "eval" / name
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_ml_papers_split_files_follow_the_rule() -> None:
    tune = load_queries(ROOT / "eval" / "ml_papers_tune.jsonl")
    held = load_queries(ROOT / "eval" / "ml_papers_heldout.jsonl")
    assert len(tune) + len(held) >= 180
    assert len(held) >= 50
    assert not any(is_heldout(q) for q in tune)
    assert all(is_heldout(q) for q in held)
    assert not {q.query for q in tune} & {q.query for q in held}
    # A paper asked about is on one side only (round-ups covering many papers may be a second answer on both).
    assert not {q.relevant[0] for q in tune} & {q.relevant[0] for q in held}
    raw = _ml_raw("ml_papers_tune.jsonl") + _ml_raw("ml_papers_heldout.jsonl")
    mixed = [r for r in raw if any("a" <= ch.lower() <= "z" for ch in r["query"])]
    assert len(raw) - len(mixed) >= len(raw) // 2  # at least half with Korean words only
    assert len(mixed) >= len(raw) // 4


def test_ml_papers_relevant_ids_exist(ml_papers_dir: Path) -> None:
    from digest_rag import parse_paths

    papers = parse_paths([ROOT / "corpus", ml_papers_dir]).papers
    ids = {p.id for p in papers}
    for name in ("ml_papers_tune.jsonl", "ml_papers_heldout.jsonl"):
        for q in load_queries(ROOT / "eval" / name):
            assert set(q.relevant) <= ids, (name, q.query)


# ---------------------------------------------------------------- question kinds development set (issue 25)

_KINDS_FILES = ("ml_papers_kinds_tune.jsonl", "ml_papers_kinds_heldout.jsonl")


def test_kinds_split_files_follow_the_rule_and_hold_enough_of_each_kind() -> None:
    tune = load_queries(ROOT / "eval" / _KINDS_FILES[0])
    held = load_queries(ROOT / "eval" / _KINDS_FILES[1])
    assert not any(is_heldout(q) for q in tune)
    assert all(is_heldout(q) for q in held)
    everything = tune + held
    assert len({q.query for q in everything}) == len(everything)
    counts = {k: sum(q.kind == k for q in everything) for k in ("known-item", "paraphrase", OFF_TOPIC)}
    assert counts["known-item"] >= 60 and counts["paraphrase"] >= 60 and counts[OFF_TOPIC] >= 30, counts
    assert all(q.kind for q in everything)
    # A paper asked about is on one side only, also against the older ml-papers split.
    old_tune = load_queries(ROOT / "eval" / "ml_papers_tune.jsonl")
    old_held = load_queries(ROOT / "eval" / "ml_papers_heldout.jsonl")
    tune_ids = {min(q.relevant) for q in tune + old_tune if q.relevant}
    held_ids = {min(q.relevant) for q in held + old_held if q.relevant}
    assert not tune_ids & held_ids
    # Readers' forms of a name: Latin script with a particle, and Hangul transliterations.
    known = [q.query for q in everything if q.kind == "known-item"]
    assert sum(any("a" <= ch.lower() <= "z" for ch in q) for q in known) >= 30
    assert sum(not any("a" <= ch.lower() <= "z" for ch in q) for q in known) >= 15


def test_kinds_relevant_ids_exist(ml_papers_dir: Path) -> None:
    from digest_rag import parse_paths

    ids = {p.id for p in parse_paths([ROOT / "corpus", ml_papers_dir]).papers}
    for name in _KINDS_FILES:
        for q in load_queries(ROOT / "eval" / name):
            assert set(q.relevant) <= ids, (name, q.query)


# ---------------------------------------------------------------- reader-style questions: colloquial and detail

_READER_FILES = ("ml_papers_reader_tune.jsonl", "ml_papers_reader_heldout.jsonl")


def _reader_sample() -> list[dict[str, str]]:
    import csv

    with (ROOT / "eval" / "ml_papers_reader_sample.tsv").open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def test_reader_files_follow_the_sample_order_and_hold_both_kinds_on_each_side() -> None:
    rows = _reader_sample()
    tune = load_queries(ROOT / "eval" / _READER_FILES[0])
    held = load_queries(ROOT / "eval" / _READER_FILES[1])
    assert len(rows) == len(tune) + len(held) == 110
    # Odd sample rows are the tune file, even rows the held-out file, in order; each question's first relevant id
    # is its sampled paper and its kind the one the sample assigned.
    assert [(q.relevant[0], q.kind) for q in tune] == [(r["paper_id"], r["kind"]) for r in rows[0::2]]
    assert [(q.relevant[0], q.kind) for q in held] == [(r["paper_id"], r["kind"]) for r in rows[1::2]]
    for side in (tune, held):
        counts = {k: sum(q.kind == k for q in side) for k in ("colloquial", "detail")}
        assert min(counts.values()) >= 27 and sum(counts.values()) == len(side), counts
    everything = tune + held
    assert len({q.query for q in everything}) == len(everything)
    assert not {q.relevant[0] for q in tune} & {q.relevant[0] for q in held}


def test_reader_set_avoids_papers_of_the_older_files() -> None:
    older = set()
    for path in (ROOT / "eval").glob("*.jsonl"):
        if not path.name.startswith("ml_papers_reader_"):
            older |= {r for q in load_queries(path) for r in q.relevant}
    assert not {r["paper_id"] for r in _reader_sample()} & older


def test_reader_relevant_ids_exist(ml_papers_dir: Path) -> None:
    from digest_rag import parse_paths

    ids = {p.id for p in parse_paths([ROOT / "corpus", ml_papers_dir]).papers}
    for name in _READER_FILES:
        for q in load_queries(ROOT / "eval" / name):
            assert set(q.relevant) <= ids, (name, q.query)


def test_reader_sample_is_reproducible(ml_papers_dir: Path) -> None:
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, str(ROOT / "eval" / "sample_reader_set.py")], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert out == (ROOT / "eval" / "ml_papers_reader_sample.tsv").read_text(encoding="utf-8")
