"""`digest-rag train` / `train_encoder`: pair mining, a short training, reproducibility, loading, --base, atomic output."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from digest_rag.dense.training.pairs import english_text, korean_text, mine_pairs
from digest_rag.errors import UsageError

pytest.importorskip("datasets", reason="the 'train' extra is not installed")
pytest.importorskip("accelerate", reason="the 'train' extra is not installed")

#: A few seconds of training on the seeds: small table, small vocabulary, small batches. From a random start:
#: with 22 training papers the SVD start is already about as close to the 7 held-out ones as training gets
#: (measured: held-out loss 1.94 -> 1.96), so only a random start shows what the training itself does.
QUICK = {"steps": 30, "batch_size": 24, "dim": 32, "vocab_size": 2000, "heldout_share": 0.25, "learning_rate": 0.05,
         "svd": False}


@pytest.fixture(scope="module")
def seed_papers(seed_corpus: Path) -> list:
    from digest_rag.parsing import parse_paths

    return parse_paths([seed_corpus]).papers


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, seed_papers: list) -> tuple[Path, object]:
    from digest_rag import train_encoder

    out = tmp_path_factory.mktemp("trained") / "model"
    report = train_encoder([], out, papers=seed_papers, progress=False, **QUICK)
    return out, report


def test_pairs_on_the_seeds_counted_per_kind_and_never_across_papers(seed_papers: list) -> None:
    mined = mine_pairs(seed_papers)
    assert mined.counts["note_abstract"] == 23 and mined.counts["title_title"] == 7
    assert mined.counts["passage_title"] == 33 and mined.counts["passage_passage"] == 32
    assert mined.counts["glossary"] > 1000 and mined.counts["lexicon"] >= 1
    assert mined.heldout_counts == {"note_abstract": 5, "passage_passage": 5, "passage_title": 17, "title_title": 2}
    assert not set(mined.train_papers) & set(mined.heldout_papers)
    by_id = {p.id: p for p in seed_papers}
    for pair in mined.train + mined.heldout:
        if pair.kind in ("glossary", "lexicon"):
            assert pair.paper == ""
            continue
        paper = by_id[pair.paper]
        own_ko = korean_text(paper) + "\n" + (paper.title_ko or "")
        own_en = english_text(paper)
        assert " ".join(pair.anchor.split())[:40] in " ".join(own_ko.split()), pair
        assert all(" ".join(line.split())[:40] in " ".join(own_en.split()) for line in pair.positive.splitlines()), pair
        others = [p for p in seed_papers if p.id != paper.id]
        assert not any(pair.positive.splitlines()[0] == english_text(o).splitlines()[0] for o in others)
    keys = [(p.anchor, p.positive) for p in mined.train]
    assert len(keys) == len(set(keys))


def test_exclusion_leaves_the_questions_papers_out(seed_papers: list, tmp_path: Path) -> None:
    from digest_rag.dense.training.pairs import excluded_papers

    q = tmp_path / "q.jsonl"
    q.write_text(json.dumps({"query": "탈옥", "relevant": ["Many-shot Jailbreaking"]}) + "\n", encoding="utf-8")
    gone = excluded_papers(seed_papers, [(q, False)])
    assert len(gone) == 1
    mined = mine_pairs(seed_papers, exclude=gone)
    assert mined.excluded_papers == 1 and not {p.paper for p in mined.train + mined.heldout} & gone


def test_held_out_sentences_stay_out_of_training_and_are_reported(seed_papers: list,
                                                                  trained: tuple[Path, object]) -> None:
    """One Korean sentence of some training papers is left out of their text (and so of every pair), and the
    report names it: a build with the model asks it as that paper's pseudo-query (search/calibration.py)."""
    from digest_rag.dense.training.pairs import hold_out_sentences
    from digest_rag.search.pseudo_queries import trained_sentences

    papers, chosen = hold_out_sentences(seed_papers, set(), limit=5)
    assert len(chosen) == 5 and len(papers) == len(seed_papers)
    before = {p.id: " ".join(korean_text(p).split()) for p in seed_papers}
    after = {p.id: " ".join(korean_text(p).split()) for p in papers}
    mined = mine_pairs(papers, heldout_share=0)
    for pid, sentence in chosen.items():
        assert sentence in before[pid] and sentence not in after[pid]
        assert not any(sentence in " ".join(f"{p.anchor} {p.positive}".split()) for p in mined.train)
    assert all(before[p.id] == after[p.id] for p in papers if p.id not in chosen)
    assert hold_out_sentences(seed_papers, set(chosen), limit=5)[1].keys().isdisjoint(chosen)
    out, report = trained
    assert report.heldout_sentences and report.heldout_paper_ids  # type: ignore[attr-defined]
    assert not set(report.heldout_sentences) & set(report.heldout_paper_ids)  # type: ignore[attr-defined]
    assert trained_sentences(str(out)) == report.heldout_sentences  # type: ignore[attr-defined]


def test_short_training_lowers_the_heldout_loss_and_writes_a_card(trained: tuple[Path, object]) -> None:
    out, report = trained
    assert report.heldout_loss_after < report.heldout_loss_before  # type: ignore[attr-defined]
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "Seed:** 0" in card and "glossary" in card and "R@1" in card
    saved = json.loads((out / "digest_rag_train.json").read_text(encoding="utf-8"))
    assert saved["pair_counts"] == report.pair_counts and saved["selfcheck_after"]["queries"] > 0  # type: ignore[attr-defined]
    assert not list(out.parent.glob(".model.train-*"))


def test_same_seed_same_model(trained: tuple[Path, object], seed_papers: list, tmp_path: Path) -> None:
    from digest_rag import train_encoder

    first, _ = trained
    train_encoder([], tmp_path / "again", papers=seed_papers, progress=False, **QUICK)
    assert (tmp_path / "again" / "model.safetensors").read_bytes() == (first / "model.safetensors").read_bytes()
    assert (tmp_path / "again" / "tokenizer.json").read_bytes() == (first / "tokenizer.json").read_bytes()
    train_encoder([], tmp_path / "other", papers=seed_papers, progress=False, **{**QUICK, "seed": 1})
    assert (tmp_path / "other" / "model.safetensors").read_bytes() != (first / "model.safetensors").read_bytes()


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_trained_model_loads_through_every_path_and_builds(trained: tuple[Path, object], seed_corpus: Path,
                                                           tmp_path: Path, backend: str,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from sentence_transformers import SentenceTransformer

    from digest_rag import DigestIndex
    from digest_rag.dense.encoder import Encoder

    monkeypatch.setenv("DIGEST_RAG_CACHE", str(tmp_path / "cache"))
    out, _ = trained
    texts = ["스케일링 법칙", "Scaling laws for neural language models"]
    ref = SentenceTransformer(str(out), device="cpu").encode(texts, normalize_embeddings=True)
    for light in (True, False):
        enc = Encoder.load(str(out), backend=backend, light=light)
        np.testing.assert_allclose(enc.encode_queries(texts), ref, atol=1e-5)
    with DigestIndex.build([seed_corpus], index_dir=tmp_path / "ix", model=str(out), backend=backend) as idx:
        assert idx.search("긴 컨텍스트를 악용하는 탈옥 공격", k=3, mode="dense")


def test_killed_training_leaves_nothing(seed_papers: list, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import digest_rag.dense.training.trainer as trainer
    from digest_rag import train_encoder

    def killed(*_a: object, **_k: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "_fit", killed)
    with pytest.raises(KeyboardInterrupt):
        train_encoder([], tmp_path / "model", papers=seed_papers, progress=False, **{**QUICK, "steps": 1})
    assert list(tmp_path.iterdir()) == []


def test_existing_output_needs_force(trained: tuple[Path, object], seed_papers: list) -> None:
    from digest_rag import train_encoder

    out, _ = trained
    with pytest.raises(UsageError, match="--force"):
        train_encoder([], out, papers=seed_papers, progress=False, **QUICK)


def test_base_fine_tunes_the_tiny_bert(tiny_model: Path, seed_papers: list, tmp_path: Path) -> None:
    from digest_rag import train_encoder
    from digest_rag.dense.encoder import Encoder

    out = tmp_path / "tuned"
    report = train_encoder([], out, papers=seed_papers, progress=False, base=str(tiny_model), steps=3,
                           batch_size=8, heldout_share=0.25, learning_rate=1e-3)
    assert report.base.startswith(str(tiny_model)) and report.options.static is False
    before = Encoder.load(str(tiny_model)).encode_queries(["스케일링 법칙"])
    after = Encoder.load(str(out))
    assert after.query_prefix == "query: " and after.dimension == before.shape[1]
    assert not np.allclose(after.encode_queries(["스케일링 법칙"]), before)


@pytest.mark.parametrize("base", ["static", "tiny bert"])
def test_training_without_progress_prints_nothing(base: str, tiny_model: Path, seed_papers: list, tmp_path: Path,
                                                 hf_progress_bars_on: None, capfd: pytest.CaptureFixture[str]) -> None:
    """progress=False (the notebook's training cell, CLI -q): no bar on stderr, not even sentence-transformers'
    "Computing widget examples", nor transformers' "Loading weights" / "Writing model shards" (issue 22 item 10)."""
    import re

    from digest_rag import train_encoder
    from tests.conftest import PROGRESS_BAR

    start = {"static": True} if base == "static" else {"base": str(tiny_model)}
    train_encoder([], tmp_path / "model", papers=seed_papers, progress=False, **{**QUICK, "steps": 2, **start})
    out, err = capfd.readouterr()
    assert not re.search(PROGRESS_BAR, out + err) and not err.strip(), err


def test_cli_train_json_and_one_line_errors(seed_corpus: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from digest_rag.frontends.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["train", str(seed_corpus), "--out", str(tmp_path / "m"), "--json", "--steps", "2",
                              "--batch-size", "8", "--dim", "16"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["pair_counts"]["glossary"] > 0
    res = runner.invoke(app, ["train", str(seed_corpus), "--out", str(tmp_path / "m")])
    assert res.exit_code == 1 and "--force" in res.stderr and res.stderr.count("\n") == 1
    res = runner.invoke(app, ["train", str(seed_corpus), "--out", str(tmp_path / "b"), "--base", str(tmp_path / "none")])
    assert res.exit_code == 3 and "Traceback" not in res.stderr
