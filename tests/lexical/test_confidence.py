"""The confidence signal (issue 25 part 3): calibrated at build time, "no strong match" for an off-topic question."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from digest_rag import DigestIndex
from digest_rag.lexical.confidence import PSEUDO_TERMS, DocSample, calibrate

ON_TOPIC = "긴 컨텍스트를 악용하는 탈옥 공격"
OFF_TOPIC = ["김치찌개 맛있게 끓이는 법", "서울 아파트 전세 시세 전망", "축구 오프사이드 규칙 설명"]


def test_doc_sample_is_a_fixed_size_seeded_reservoir() -> None:
    docs = [[f"w{i}-{j}" for j in range(PSEUDO_TERMS)] for i in range(1000)]
    a, b = DocSample(size=50), DocSample(size=50)
    for start in range(0, 1000, 100):
        a.add(docs[start:start + 100])
        b.add(docs[start:start + 100])
    assert len(a.docs) == 50 and a.docs == b.docs and a.seen == 1000
    assert any(d[0].startswith("w9") for d in a.docs)  # late documents get in too
    short = DocSample()
    short.add([["only", "three", "words"]])
    assert short.docs == []


def _own_words(terms: dict[str, float]) -> float:
    """A document matches its own words ("d3w7" is word 7 of document 3): the best score is how many words one
    document holds."""
    counts: dict[str, int] = {}
    for t in terms:
        doc = t.split("w")[0]
        counts[doc] = counts.get(doc, 0) + 1
    return float(max(counts.values()))


def test_calibrate_puts_the_threshold_between_the_two_kinds() -> None:
    sample = DocSample()
    sample.add([[f"d{i}w{j}" for j in range(10)] for i in range(100)])
    top_score = _own_words
    c = calibrate(top_score, sample)
    assert c is not None and c.on_median == PSEUDO_TERMS
    assert c.off_p90 < c.threshold < c.on_median
    assert calibrate(top_score, DocSample()) is None  # nothing to draw from


def test_calibrate_draws_the_coverage_threshold_from_the_same_pseudo_queries() -> None:
    from digest_rag.lexical.confidence import coverage

    sample = DocSample()
    sample.add([[f"d{i}w{j}" for j in range(10)] for i in range(100)])
    top_score = _own_words

    def bound(token: str) -> float | None:
        return 1.0 if "w" in token else None  # every indexed word scores at most 1

    c = calibrate(top_score, sample, bound=bound, unseen=2.0)
    # An on-topic bag is covered whole (6 of 6), an off-topic one by one word of six.
    assert c is not None and c.coverage is not None and c.unseen == 2.0
    assert 1 / PSEUDO_TERMS < c.coverage < 1.0
    assert calibrate(top_score, sample).coverage is None  # without bounds: the score alone (pseudo-bags-2)
    assert coverage(2.0, ["d0w1", "d0w2"], bound, 2.0) == 1.0
    assert coverage(1.0, ["d0w1", "김치찌개"], bound, 2.0) == pytest.approx(1 / 3)  # a word the index lacks
    assert coverage(1.0, [], bound, 2.0) is None


def test_a_short_question_its_best_paper_covers_is_a_strong_match(seed_lexical_index_dir: Path) -> None:
    """"스케일링 법칙에 대한 논문을 찾아줘" (two words) cannot reach the score six words reach; its best paper covers
    both words, which makes a strong match; an index calibrated before (no coverage threshold) says it is not."""
    question = "스케일링 법칙에 대한 논문을 찾아줘"
    with DigestIndex.load(seed_lexical_index_dir) as index:
        calibration = index.lexical.confidence
        assert calibration is not None and calibration.method == "pseudo-bags-3" and calibration.coverage
        hits = index.search(question, k=3, mode="lexical")
        assert hits.strong_match is True and hits.confidence < 1  # by coverage, not by the score
        for off_topic in OFF_TOPIC:
            assert index.search(off_topic, k=3, mode="lexical").strong_match is False, off_topic
    with DigestIndex.load(seed_lexical_index_dir) as before:
        before.lexical.confidence = calibration.model_copy(update={"coverage": None, "unseen": None,
                                                                   "method": "pseudo-bags-2"})
        assert before.search(question, k=3, mode="lexical").strong_match is False


def test_term_bounds_are_each_words_highest_score(seed_lexical_index_dir: Path) -> None:
    import numpy as np

    with DigestIndex.load(seed_lexical_index_dir) as index:
        lexical = index.lexical
        for token in list(lexical.vocab_names())[:200:7]:
            if token:
                assert lexical.term_bound(token) == pytest.approx(float(lexical.term_scores({token: 1.0}).max()))
        assert lexical.term_bound("없는토큰") is None
        maxima = [float(lexical.term_scores({t: 1.0}).max()) for t in lexical.vocab_names() if t]
        assert lexical.bound_quantile(0.9) == pytest.approx(float(np.quantile(maxima, 0.9)))


def test_on_and_off_topic_questions(seed_lexical_index_dir: Path) -> None:
    with DigestIndex.load(seed_lexical_index_dir) as index:
        assert index.lexical.confidence is not None
        hits = index.search(ON_TOPIC, k=3, mode="lexical")
        assert hits.strong_match is True and hits.confidence >= 1 and not hits.no_strong_match
        for question in OFF_TOPIC:
            res = index.search(question, k=3, mode="lexical")
            assert res.strong_match is False and res.no_strong_match, question
            assert all(r["strong_match"] is False for r in res.to_records())


def test_the_calibration_is_stored_with_the_index(tmp_path: Path, seed_corpus: Path) -> None:
    from digest_rag.lexical.index import LexicalIndex

    with DigestIndex.build([seed_corpus], index_dir=tmp_path / "ix", lexical_only=True) as index:
        directory = index.lexical.directory
        built = index.lexical.confidence
    assert built is not None and directory is not None
    meta = json.loads((directory / "lexical.json").read_text(encoding="utf-8"))
    assert meta["confidence"]["threshold"] == built.threshold
    assert LexicalIndex.load(directory).confidence == built
    # An index from before the calibration existed says nothing about strength.
    del meta["confidence"]
    (directory / "lexical.json").write_text(json.dumps(meta), encoding="utf-8")
    assert LexicalIndex.load(directory).confidence is None


@pytest.mark.parametrize("question", OFF_TOPIC)
def test_cli_says_no_strong_match(question: str, seed_lexical_index_dir: Path) -> None:
    from typer.testing import CliRunner

    from digest_rag.frontends.cli import app
    from digest_rag.frontends.display import NO_STRONG_MATCH

    res = CliRunner().invoke(app, ["search", question, "--index", str(seed_lexical_index_dir), "--mode", "lexical",
                                   "--no-color"])
    # Either nothing matches at all, or the loose matches come under the "no strong match" line.
    assert res.exit_code == 0 and (res.stdout.startswith(" 1. ") and res.stdout.endswith("\n\n" + NO_STRONG_MATCH + "\n")
                                   or res.stdout.strip() == "no matching papers")
    if question == "축구 오프사이드 규칙 설명":  # shares a word or two with the seeds: loose hits
        assert res.stdout.rstrip().endswith(NO_STRONG_MATCH)
    on = CliRunner().invoke(app, ["search", ON_TOPIC, "--index", str(seed_lexical_index_dir), "--mode", "lexical",
                                  "--no-color"])
    assert NO_STRONG_MATCH not in on.stdout


@pytest.mark.slow
def test_a_loose_match_of_generic_concepts_is_no_strong_match_on_ml_papers(tmp_path: Path, seed_corpus: Path,
                                                                            ml_papers_dir: Path) -> None:
    """Issue 25's example: over ML papers, "양자 컴퓨팅 블록체인" (quantum computing, blockchain) reaches a paper
    about compute and block-sparse kernels through the glossary's compute and block concepts alone; the
    threshold (`ON_SHARE`) leaves such a match below it, and questions about papers above it."""
    with DigestIndex.build([seed_corpus, ml_papers_dir], index_dir=tmp_path / "ix", lexical_only=True) as index:
        loose = index.search("양자 컴퓨팅 블록체인", k=5, mode="lexical")
        assert len(loose) and loose.strong_match is False
        for question in ("RoBERTa가 BERT 사전학습에서 바꾼 점", "긴 컨텍스트를 악용하는 탈옥 공격",
                         "확산 모델로 텍스트에서 이미지를 생성하는 방법"):
            assert index.search(question, k=5, mode="lexical").strong_match is True, question


def test_info_shows_the_calibration(seed_lexical_index_dir: Path) -> None:
    from typer.testing import CliRunner

    from digest_rag.frontends.cli import app

    with DigestIndex.load(seed_lexical_index_dir) as index:
        calibration = index.lexical.confidence
        assert calibration is not None and index.info()["confidence"] == calibration.model_dump()
    out = CliRunner().invoke(app, ["info", "--index", str(seed_lexical_index_dir)])
    assert out.exit_code == 0
    line = next(x for x in out.stdout.splitlines() if x.startswith("confidence  "))
    assert f"BM25 {calibration.threshold:g}" in line and calibration.method in line
    assert f"scores {calibration.coverage:g} of what the question's words could" in line
