"""StaticEmbedding models (sentence-transformers' own, and `digest-rag train --static` ones) load everywhere."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from unittest import mock

import numpy as np
import pytest

from digest_rag.dense.encoder import Encoder
from digest_rag.dense.model_files import inspect_model, token_counter
from digest_rag.dense.static_runtime import STATIC_MAX_TOKENS, StaticSentenceModel

TEXTS = ["Scaling laws for neural language models", "스케일링 법칙을 다룬 논문", "", "attention 어텐션 heads"]


def make_st_static_model(out: Path, texts: list[str], dim: int = 32, seed: int = 0) -> Path:
    """A StaticEmbedding directory saved by sentence-transformers itself (random table, corpus WordPiece)."""
    import torch
    from sentence_transformers import SentenceTransformer
    try:
        from sentence_transformers.sentence_transformer.modules import StaticEmbedding
    except ImportError:  # sentence-transformers < 6
        from sentence_transformers.models import StaticEmbedding
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=2000, special_tokens=["[PAD]", "[UNK]"]))
    torch.manual_seed(seed)
    SentenceTransformer(modules=[StaticEmbedding(tok, embedding_dim=dim)], device="cpu").save(str(out))
    return out


@pytest.fixture(scope="module")
def st_static(tmp_path_factory: pytest.TempPathFactory, seed_corpus: Path) -> Path:
    from digest_rag.testing import corpus_texts

    return make_st_static_model(tmp_path_factory.mktemp("static") / "model", corpus_texts([seed_corpus]))


def test_inspect_model_reads_static_facts(st_static: Path) -> None:
    facts = inspect_model(str(st_static))
    assert facts is not None
    assert (facts.dimension, facts.max_seq_length, facts.query_prefix, facts.passage_prefix) == (32, STATIC_MAX_TOKENS, "", "")
    enc = Encoder.load(str(st_static))
    assert token_counter(facts)("스케일링 법칙 scaling") == enc.count_tokens("스케일링 법칙 scaling") > 0
    assert (enc.name, enc.revision, enc.dimension) == (facts.name, facts.revision, facts.dimension)


@pytest.mark.parametrize("light", [False, True])
def test_a_static_model_pads_no_batch(st_static: Path, light: bool) -> None:
    # A build then skips ordering its passages by token count (build.embedding.passage_order).
    assert not Encoder.load(str(st_static), light=light).pads_batches


@pytest.mark.parametrize("backend", ["torch", "onnx", "onnx-int8"])
@pytest.mark.parametrize("light", [False, True])
def test_every_backend_path_gives_sentence_transformers_vectors(st_static: Path, backend: str, light: bool,
                                                                tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sentence_transformers import SentenceTransformer

    monkeypatch.setenv("DIGEST_RAG_CACHE", str(tmp_path / "cache"))
    enc = Encoder.load(str(st_static), backend=backend, light=light, device="cpu")
    assert isinstance(enc.model, StaticSentenceModel)
    assert enc.max_seq_length == STATIC_MAX_TOKENS and enc.query_prefix == enc.passage_prefix == ""
    ref = SentenceTransformer(str(st_static), device="cpu").encode(TEXTS, normalize_embeddings=True)
    np.testing.assert_allclose(enc.encode_passages(TEXTS), ref, atol=1e-6)


def test_sentence_transformers_path_when_numpy_cannot_run_it(st_static: Path) -> None:
    """A layout the numpy runtime does not take goes through sentence-transformers: finite length, own tokenizer."""
    with mock.patch("digest_rag.dense.static_runtime.static_layout", return_value=None):
        enc = Encoder.load(str(st_static), device="cpu")
    assert type(enc.model).__name__ == "SentenceTransformer"
    assert enc.max_seq_length == STATIC_MAX_TOKENS  # not int(inf): OverflowError before
    assert enc.count_tokens("스케일링 법칙") == Encoder.load(str(st_static)).count_tokens("스케일링 법칙")
    assert enc.query_prefix == ""
    np.testing.assert_allclose(enc.encode_queries(TEXTS), Encoder.load(str(st_static)).encode_queries(TEXTS), atol=1e-6)


def test_sentence_transformers_static_dir_builds_and_searches(st_static: Path, seed_corpus: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from digest_rag import DigestIndex

    monkeypatch.setenv("DIGEST_RAG_CACHE", str(tmp_path / "cache"))
    with DigestIndex.build([seed_corpus], index_dir=tmp_path / "index", model=str(st_static)) as idx:
        hits = idx.search("Scaling laws", k=3, mode="dense")
        assert hits and idx.manifest.query_prefix == "" and idx.manifest.dimension == 32
        assert idx.search("스케일링 법칙", k=3, mode="hybrid")


def test_cli_build_with_static_model_and_broken_model(st_static: Path, seed_corpus: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from digest_rag.frontends.cli import app

    monkeypatch.setenv("DIGEST_RAG_CACHE", str(tmp_path / "cache"))
    runner = CliRunner()
    ok = runner.invoke(app, ["build", str(seed_corpus), "--index", str(tmp_path / "ok"), "--model", str(st_static)])
    assert ok.exit_code == 0, ok.output
    broken = tmp_path / "broken"
    shutil.copytree(st_static, broken)
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    res = subprocess.run([sys.executable, "-m", "digest_rag.frontends.cli", "build", str(seed_corpus), "--index",
                          str(tmp_path / "bad"), "--model", str(broken)], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert res.returncode == 3, res.stderr
    assert "Traceback" not in res.stderr and str(broken) in res.stderr
