"""Retrieval quality on the seed corpus: the numbers docs/EVAL.md reports, as asserts.

Targets (GitHub issue 3): lexical Recall@1 >= 0.80 and MRR@10 >= 0.87 on
eval/dev_queries.jsonl, beating the naive whitespace-BM25 baseline. They are
checked on both chunkings the index can have: the lexical-only build (chunks
sized by the character estimate) and the tiny-model build (chunks sized by its
tokenizer). The tiny model has random weights, so its dense and hybrid rows
only prove the plumbing works; no quality is asserted for them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from digest_rag.evaluation.evaluate import EvalReport, evaluate_index, load_queries

R_AT_1_TARGET = 0.80
MRR_AT_10_TARGET = 0.87


@pytest.fixture(scope="module")
def dev_queries(repo_root: Path) -> Path:
    return repo_root / "eval" / "dev_queries.jsonl"


@pytest.fixture(scope="module")
def lexical_index_dir(tmp_path_factory: pytest.TempPathFactory, seed_corpus: Path) -> Path:
    from digest_rag import DigestIndex

    out = tmp_path_factory.mktemp("quality-lexical") / "index"
    DigestIndex.build([seed_corpus], index_dir=out, lexical_only=True).close()
    return out


@pytest.fixture(scope="module")
def lexical_report(lexical_index_dir: Path, dev_queries: Path) -> EvalReport:
    from digest_rag import DigestIndex

    with DigestIndex.load(lexical_index_dir) as idx:
        return evaluate_index(idx, dev_queries, ["lexical"])


@pytest.fixture(scope="module")
def tiny_report(seed_index_dir: Path, dev_queries: Path) -> EvalReport:
    from digest_rag import DigestIndex

    with DigestIndex.load(seed_index_dir) as idx:
        return evaluate_index(idx, dev_queries, ["lexical", "hybrid"])


def _row(report: EvalReport, mode: str):  # noqa: ANN202 - EvalRow
    return next(r for r in report.rows if r.mode == mode)


@pytest.mark.slow
@pytest.mark.parametrize("which", ["lexical_report", "tiny_report"])
def test_lexical_meets_targets_and_beats_baseline(which: str, request: pytest.FixtureRequest, dev_queries: Path) -> None:
    report: EvalReport = request.getfixturevalue(which)
    lex, naive = _row(report, "lexical"), _row(report, "naive-bm25")
    n = len(load_queries(dev_queries))
    assert lex.n_queries == naive.n_queries == n
    failures = [(d.query, d.first_rank) for d in lex.failures()]
    assert lex.recall_at_1 >= R_AT_1_TARGET, (lex.recall_at_1, failures)
    assert lex.mrr_at_10 >= MRR_AT_10_TARGET, (lex.mrr_at_10, failures)
    assert lex.recall_at_1 > naive.recall_at_1
    assert lex.mrr_at_10 > naive.mrr_at_10
    assert lex.recall_at_10 >= naive.recall_at_10


@pytest.mark.slow
def test_hybrid_with_tiny_model_runs(tiny_report: EvalReport, dev_queries: Path) -> None:
    hybrid = _row(tiny_report, "hybrid")
    assert hybrid.n_queries == len(load_queries(dev_queries))
    assert len(hybrid.details) == hybrid.n_queries
    assert all(d.ranked for d in hybrid.details)  # every query returned papers
    assert 0.0 <= hybrid.recall_at_1 <= 1.0 and 0.0 <= hybrid.mrr_at_10 <= 1.0


def _relevant_titles(dev_queries: Path, query: str) -> set[str]:
    q = next(q for q in load_queries(dev_queries) if q.query == query)
    return {t.casefold() for t in q.relevant}


@pytest.mark.slow
@pytest.mark.parametrize("index_fixture", ["lexical_index_dir", "seed_index_dir"])
@pytest.mark.parametrize("query", ["긴 컨텍스트를 악용하는 탈옥 공격", "스케일링 법칙에 대한 논문을 찾아줘"])
def test_acceptance_queries_rank_a_relevant_paper_first(
    index_fixture: str, query: str, request: pytest.FixtureRequest, dev_queries: Path
) -> None:
    from digest_rag import DigestIndex

    wanted = _relevant_titles(dev_queries, query)
    with DigestIndex.load(request.getfixturevalue(index_fixture)) as idx:
        hits = idx.search(query, k=5, mode="lexical")
    assert hits, query
    assert hits[0].paper.title.casefold() in wanted, [h.paper.title for h in hits]
