"""Fusion calibration: pseudo-queries, the fused-rank arithmetic, the choice of weights, and builds that use it."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from digest_rag.search.calibration import (
    DENSE_WEIGHTS,
    RRF_KS,
    Z_GRID,
    calibrate,
    chance_mrr,
    fusion_ranks,
    paired_bootstrap,
    stratum_weights,
    zscore_ranks,
)
from digest_rag.search.fusion import fuse_papers, fuse_scores
from digest_rag.search.pseudo_queries import (
    PseudoQuery,
)


def test_fusion_ranks_agree_with_fuse_papers() -> None:
    """The calibration's vectorised ranks are the ranks search's own fusion gives, ties included."""
    rng = random.Random(7)
    for _ in range(40):
        papers = [f"p{i}" for i in range(rng.randint(2, 30))]
        lexical = rng.sample(papers, rng.randint(1, len(papers)))
        dense = rng.sample(papers, rng.randint(1, len(papers)))
        target = rng.choice(papers)
        ids = {p: n for n, p in enumerate(papers)}
        rankings = {"dense": [(ids[p], 0.0) for p in dense], "lexical": [(ids[p], 0.0) for p in lexical]}
        chunk_paper = {n: p for p, n in ids.items()}
        got = fusion_ranks({p: r for r, p in enumerate(lexical, 1)}, {p: r for r, p in enumerate(dense, 1)},
                           target, DENSE_WEIGHTS, RRF_KS)
        for i, w in enumerate(DENSE_WEIGHTS):
            for j, k in enumerate(RRF_KS):
                fused = [chunk_paper[cid] for cid, _s, _n in
                         fuse_papers(rankings, chunk_paper, k=k, weights={"dense": w, "lexical": 1.0})]
                want = fused.index(target) + 1 if target in fused else 0
                assert got[i, j] == want, (w, k, lexical, dense, target)


def test_zscore_ranks_agree_with_fuse_scores() -> None:
    """The calibration's score-fusion ranks are those search's `fuse_scores` gives, for every (dense weight,
    weight of papers with no Korean text), ties and papers one side lacks included."""
    rng = random.Random(11)
    for _ in range(40):
        papers = [f"p{i}" for i in range(rng.randint(2, 25))]
        ids = {p: n for n, p in enumerate(papers)}
        chunk_paper = {n: p for p, n in ids.items()}

        def ranking(scale: float) -> list[tuple[str, float]]:
            picked = rng.sample(papers, rng.randint(1, len(papers)))
            return sorted(((p, round(rng.uniform(0, scale), 1)) for p in picked), key=lambda t: -t[1])

        lexical, dense = ranking(20.0), ranking(1.0)
        english = set(rng.sample(papers, rng.randint(0, len(papers))))
        target = rng.choice(papers)
        got = zscore_ranks(dict(lexical), dict(dense), target, english, Z_GRID)
        rankings = {"dense": [(ids[p], s) for p, s in dense], "lexical": [(ids[p], s) for p, s in lexical]}
        for i, (dw, ew) in enumerate(Z_GRID):
            fused = [chunk_paper[cid] for cid, _s, _n in fuse_scores(
                rankings, chunk_paper, {"dense": dw, "lexical": 1.0}, english=english, english_weight=ew)]
            want = fused.index(target) + 1 if target in fused else 0
            assert got[i] == want, (dw, ew, lexical, dense, english, target)


def test_stand_ins_join_the_rankings_and_kinds_are_weighed_by_the_english_share() -> None:
    """A paper with no chunk left is found only through its stand-in, placed by its score in each ranking;
    english queries weigh the share of English-only papers, whatever their number."""
    queries = [PseudoQuery("q0", "p0", "note", frozenset({0})), PseudoQuery("q1", "p1", "english", frozenset({1})),
               PseudoQuery("q2", "p2", "english", frozenset({2}))]
    ranking = [(0, 3.0), (1, 2.0), (2, 1.0), (3, 0.5)]
    heads = {0: "p0", 1: "p1", 2: "p2", 3: "p3"}

    def stand_ins(qs):  # noqa: ANN001, ANN202
        return [2.5, 0.1, None], [0.9, 0.95, 0.2]

    cal = calibrate(queries, lambda _t: ranking, lambda ts: [ranking] * len(ts), lambda ids: heads, 4,
                    stand_ins=stand_ins, english_share=0.75)
    # lexical, the query's own chunk out: q0 [p0 (2.5), p1, p2, p3] -> 1; q1 [p0, p2, p3, p1 (0.1)] -> 4;
    # q2: no stand-in, not found.
    assert cal.english_share == 0.75
    assert cal.lexical_mrr == pytest.approx(0.25 * 1.0 + 0.75 * (1 / 4 + 0) / 2, abs=1e-4)
    # dense: q0 [p1, p2, p0 (0.9), p3] -> 3; q1 [p0, p2, p1 (0.95), p3] -> 3; q2 [p0, p1, p3, p2 (0.2)] -> 4.
    assert cal.dense_mrr == pytest.approx(0.25 * (1 / 3) + 0.75 * (1 / 3 + 1 / 4) / 2, abs=1e-4)
    w = stratum_weights(queries, 0.75)
    assert w is not None and w.sum() == pytest.approx(1.0) and w[0] == pytest.approx(0.25)
    assert stratum_weights(queries[1:], 0.75) is None  # one kind only: a plain mean
    low, high = paired_bootstrap(np.array([1.0, 0.0, 0.0]), weights=w)
    assert low == pytest.approx(0.25) and high == pytest.approx(0.25)  # the note stratum is one query: fixed


def _synthetic(n_papers: int, dense_quality: float, lexical_cross: bool, seed: int = 0):  # noqa: ANN202
    """Pseudo-queries over papers with one chunk each (chunk id = paper number): lexical finds the paper on
    note queries and misses on cross ones unless ``lexical_cross``; dense finds it with probability
    ``dense_quality``, else ranks at random."""
    rng = np.random.default_rng(seed)
    papers = [f"p{i}" for i in range(n_papers)]
    queries = [PseudoQuery(f"q{i} {kind}", papers[i], kind) for i in range(n_papers) for kind in ("note", "cross")]

    def lexical_search(text: str) -> list[tuple[int, float]]:
        i = int(text.split()[0][1:])
        others = [j for j in rng.permutation(n_papers)[:50].tolist() if j != i]
        if text.endswith("note") or lexical_cross:
            return [(i, 1.0)] + [(j, 0.5) for j in others]
        return [(j, 0.5) for j in others]

    def dense_search(texts: list[str]) -> list[list[tuple[int, float]]]:
        out = []
        for text in texts:
            i = int(text.split()[0][1:])
            order = [j for j in rng.permutation(n_papers).tolist() if j != i]
            if rng.random() < dense_quality:
                order = [i, *order]
            else:
                order.insert(int(rng.integers(0, len(order))), i)
            out.append([(j, 0.0) for j in order[:200]])
        return out

    return queries, lexical_search, dense_search, (lambda ids: {int(c): papers[int(c)] for c in ids})


def test_random_dense_model_gets_weight_zero() -> None:
    queries, lex, dense, heads = _synthetic(300, dense_quality=0.0, lexical_cross=False)
    cal = calibrate(queries, lex, dense, heads, 300)
    assert cal.weights["dense"] == 0.0 and cal.dense_off
    assert cal.hybrid_mrr == cal.lexical_mrr and "no better than chance" in cal.decision


def test_a_useful_dense_model_gets_a_weight() -> None:
    queries, lex, dense, heads = _synthetic(300, dense_quality=0.7, lexical_cross=False)
    cal = calibrate(queries, lex, dense, heads, 300)
    assert cal.weights["dense"] > 0 and cal.hybrid_mrr > cal.lexical_mrr + 0.1 and cal.gain_low > 0
    assert cal.decision.startswith("dense on")


def test_a_dense_model_that_adds_nothing_gets_weight_zero() -> None:
    """Better than chance, but lexical already answers everything: fusing can only drag."""
    queries, lex, dense, heads = _synthetic(300, dense_quality=0.3, lexical_cross=True)
    cal = calibrate(queries, lex, dense, heads, 300)
    assert cal.dense_mrr > 5 * cal.chance_mrr
    assert cal.dense_off and "does not beat lexical" in cal.decision


def test_a_dense_side_that_finds_papers_without_korean_text_gets_their_weight() -> None:
    """Lexical finds every note query's paper by a wide margin and misses the english ones; dense finds the
    english ones far ahead of the rest and guesses on note queries: score fusion with a dense weight of its own
    for papers with no Korean text is chosen, and it beats lexical."""
    rng = np.random.default_rng(3)
    n = 200
    papers = [f"p{i}" for i in range(n)]
    queries = [PseudoQuery(f"q{i} {kind}", papers[i], kind) for i in range(n) for kind in ("note", "english")]

    def lexical_search(text: str) -> list[tuple[int, float]]:
        i = int(text.split()[0][1:])
        others = [(int(j), float(rng.uniform(1, 5))) for j in rng.permutation(n)[:60] if j != i]
        hit = [(i, 12.0)] if text.endswith("note") else []
        return sorted(hit + others, key=lambda t: -t[1])

    def dense_search(texts: list[str]) -> list[list[tuple[int, float]]]:
        out = []
        for text in texts:
            i = int(text.split()[0][1:])
            scored = [(int(j), float(rng.uniform(0.2, 0.5))) for j in rng.permutation(n)[:100]]
            if text.endswith("english"):
                scored = [(c, s) for c, s in scored if c != i] + [(i, 0.9)]
            out.append(sorted(scored, key=lambda t: -t[1]))
        return out

    no_korean = {f"p{i}" for i in range(0, n, 2)}
    cal = calibrate(queries, lexical_search, dense_search, lambda ids: {c: papers[c] for c in ids}, n,
                    english_share=0.5, no_korean=no_korean)
    assert cal.decision.startswith("dense on (score fusion)") and cal.shape == "zscore"
    assert cal.english_weight is not None and cal.english_weight > cal.weights["dense"]
    assert cal.hybrid_mrr > cal.lexical_mrr + 0.2 and cal.gain_low > 0 and not cal.dense_off


def test_too_few_queries_keep_dense_off() -> None:
    queries, lex, dense, heads = _synthetic(5, dense_quality=1.0, lexical_cross=False)
    cal = calibrate(queries, lex, dense, heads, 5)
    assert cal.dense_off and "too few" in cal.decision


def test_chance_and_bootstrap() -> None:
    assert chance_mrr(1) == 1.0 and chance_mrr(0) == 0.0
    assert chance_mrr(1000) == pytest.approx(sum(1 / r for r in range(1, 11)) / 1000)
    low, high = paired_bootstrap(np.array([0.0, 1.0] * 50))
    assert 0.35 < low < 0.5 < high < 0.65
    assert paired_bootstrap(np.zeros(0)) == (0.0, 0.0)


# ------------------------------------------------------------------ builds


def test_build_with_a_random_model_calibrates_dense_off(seed_index_dir: Path) -> None:
    """The seed index of the tiny random test model: calibration drops the useless dense side."""
    manifest = json.loads((seed_index_dir / "manifest.json").read_text(encoding="utf-8"))
    fusion = manifest["fusion"]
    assert fusion["weights"]["dense"] == 0.0 and fusion["queries"] >= 20
    assert fusion["decision"].startswith("dense off")


def test_hybrid_never_drags_below_lexical_with_the_random_model(seed_index_dir: Path, repo_root: Path) -> None:
    """Acceptance: with the tiny random model, hybrid R@1 is never more than 0.01 below lexical."""
    from digest_rag import DigestIndex
    from digest_rag.evaluation.evaluate import evaluate_index

    with DigestIndex.load(seed_index_dir) as idx:
        report = evaluate_index(idx, repo_root / "eval" / "dev_queries.jsonl", baseline=False)
        rows = {r.mode: r for r in report.rows}
        assert rows["hybrid"].recall_at_1 >= rows["lexical"].recall_at_1 - 0.01
        assert rows["hybrid"].mrr_at_10 >= rows["lexical"].mrr_at_10 - 0.01
        # Given weights still fuse the dense side (and do drag with a random model).
        forced = evaluate_index(idx, repo_root / "eval" / "dev_queries.jsonl", modes=["hybrid"], baseline=False,
                                hybrid_weights={"dense": 1.0, "lexical": 1.0})
        assert forced.rows[0].recall_at_1 < rows["lexical"].recall_at_1
        assert "dense=1,lexical=1 k=60 (given)" == forced.fusion
        assert report.fusion is not None and report.fusion.startswith("dense=0,lexical=1 k=60 (calibrated")
        intervals = {(i.mode, i.metric): i for i in report.intervals}
        assert intervals[("hybrid", "R@1")].difference == 0.0
        assert intervals[("dense", "MRR@10")].high < 0  # the random model is plainly worse


def test_dense_off_hybrid_is_lexical_and_loads_no_encoder(seed_index_dir: Path) -> None:
    from digest_rag import DigestIndex

    with DigestIndex.load(seed_index_dir) as idx:
        for q in ("긴 컨텍스트를 악용하는 탈옥 공격", "scaling laws", "지식 증류"):
            hybrid = idx.search(q, k=5)
            lexical = idx.search(q, k=5, mode="lexical")
            assert [h.paper.id for h in hybrid] == [h.paper.id for h in lexical]
        assert idx.loaded_encoder is None
        fused = idx.search("지식 증류", k=5, fusion_weights={"dense": 1.0, "lexical": 1.0})
        assert any("dense" in h.modes for h in fused) and idx.loaded_encoder is not None


def test_manifest_without_fusion_reads_and_uses_defaults(seed_index_dir: Path, tmp_path: Path) -> None:
    """An index built before calibration (no `fusion` in its manifest) loads and fuses with the defaults;
    the field is optional and additive, so the format version stays."""
    import shutil

    from digest_rag import DigestIndex
    from digest_rag.storage.layout import FORMAT_VERSION

    old = tmp_path / "old"
    shutil.copytree(seed_index_dir, old)
    data = json.loads((old / "manifest.json").read_text(encoding="utf-8"))
    assert data["format_version"] == FORMAT_VERSION == 2
    del data["fusion"]
    (old / "manifest.json").write_text(json.dumps(data), encoding="utf-8")
    with DigestIndex.load(old) as idx:
        assert idx.manifest.fusion is None
        assert idx.fusion_settings() == ({"dense": 1.0, "lexical": 1.0}, 60)
        assert any("dense" in h.modes for h in idx.search("지식 증류", k=5))


def test_a_score_fusion_in_the_manifest_is_what_hybrid_search_uses(seed_index_dir: Path, tmp_path: Path) -> None:
    """A calibrated score fusion is read from the manifest (optional fields: a record without them is rank
    fusion), searched with (the dense side kept for papers with no Korean text even when the others' dense
    weight is 0), shown by `info` and `eval`; given weights fuse by ranks as before."""
    import shutil

    import digest_rag.search.pipeline as dix
    from digest_rag import DigestIndex
    from digest_rag.models import FusionCalibration
    from digest_rag.search.calibration import describe

    ix = tmp_path / "ix"
    shutil.copytree(seed_index_dir, ix)
    data = json.loads((ix / "manifest.json").read_text(encoding="utf-8"))
    old = FusionCalibration.model_validate(data["fusion"])
    assert old.shape == "rrf" and old.english_weight is None and old.dense_off
    data["fusion"].update(weights={"dense": 0.0, "lexical": 1.0}, shape="zscore", english_weight=1.5)
    (ix / "manifest.json").write_text(json.dumps(data), encoding="utf-8")
    cal = FusionCalibration.model_validate(data["fusion"])
    assert not cal.dense_off and describe(cal).startswith("zscore dense=0 (no Korean text: 1.5),lexical=1; ")
    calls: list[dict[str, object]] = []
    original = dix.rank_chunks

    def spy(rankings, chunk_paper, weights=None, k=60, **kw):  # noqa: ANN001, ANN202
        calls.append({"names": sorted(rankings), **kw})
        return original(rankings, chunk_paper, weights, k, **kw)

    with DigestIndex.load(ix) as idx:
        assert idx.fusion_shape() == ("zscore", 1.5) and idx.fusion_shape({"dense": 1.0}) == ("rrf", None)
        dix.rank_chunks = spy
        try:
            idx.search("지식 증류", k=5)
            idx.search("지식 증류", k=5, fusion_weights={"dense": 1.0, "lexical": 1.0})
        finally:
            dix.rank_chunks = original
        assert calls[0]["names"] == ["dense", "lexical"] and calls[0]["shape"] == "zscore"
        assert calls[0]["english_weight"] == 1.5
        assert calls[0]["english"] == idx.store.no_korean_papers(calls[0]["english"])  # type: ignore[arg-type]
        assert calls[1]["shape"] == "rrf" and calls[1]["english_weight"] is None
        info = json.dumps(idx.info(), ensure_ascii=False)
        assert '"shape": "zscore"' in info and '"english_weight": 1.5' in info


