"""Encoder: model resolution, prefixes actually sent, normalisation, offline errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from digest_rag.dense.encoder import DEFAULT_MODEL, Encoder, resolve_model_name
from digest_rag.errors import ModelUnavailableError, UsageError


def test_resolution_order(monkeypatch: pytest.MonkeyPatch, tiny_model: Path) -> None:
    monkeypatch.delenv("DIGEST_RAG_MODEL", raising=False)
    assert resolve_model_name(None) == DEFAULT_MODEL
    assert resolve_model_name("base") == "intfloat/multilingual-e5-base"
    assert resolve_model_name("large") == "intfloat/multilingual-e5-large"
    monkeypatch.setenv("DIGEST_RAG_MODEL", "small")
    assert resolve_model_name(None) == "intfloat/multilingual-e5-small"
    assert resolve_model_name(str(tiny_model)) == str(tiny_model.resolve())


def test_prefixes_reach_the_model(tiny_encoder: Encoder, monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[list[str]] = []
    real = tiny_encoder.model.encode

    def spy(texts, **kw):  # noqa: ANN001, ANN003, ANN202
        sent.append(list(texts))
        return real(texts, **kw)

    monkeypatch.setattr(tiny_encoder.model, "encode", spy)
    tiny_encoder.encode_queries(["스케일링 법칙"])
    tiny_encoder.encode_passages(["Scaling laws for neural language models"])
    assert sent == [["query: 스케일링 법칙"], ["passage: Scaling laws for neural language models"]]


def test_embeddings_normalised(tiny_encoder: Encoder) -> None:
    v = tiny_encoder.encode_passages(["하나", "two", "세 번째 문장 third"])
    assert v.dtype == np.float32 and v.shape == (3, tiny_encoder.dimension)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)


def test_missing_local_path_message(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailableError) as err:
        Encoder.load(str(tmp_path / "no-such-model"))
    msg = str(err.value)
    assert "no-such-model" in msg and "DIGEST_RAG_MODEL" in msg and "--model" in msg
    assert "\n" not in msg


def test_offline_hub_name_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", "/nonexistent-cache-dir")
    with pytest.raises(ModelUnavailableError) as err:
        Encoder.load("intfloat/multilingual-e5-small")
    msg = str(err.value)
    assert "intfloat/multilingual-e5-small" in msg
    assert "cache" in msg.lower() and "HF_HUB_OFFLINE" in msg
    assert "download it once while online" in msg


def test_unknown_backend() -> None:
    with pytest.raises(UsageError):
        Encoder.load("whatever", backend="tensorrt")


def test_revision_is_recorded(tiny_encoder: Encoder) -> None:
    assert tiny_encoder.revision.startswith("local-")
    assert tiny_encoder.max_seq_length == 512


def test_batches_in_order_keeps_the_callers_batches(tiny_encoder: Encoder, monkeypatch: pytest.MonkeyPatch) -> None:
    texts = ["짧은 문장", "a much longer English passage about scaling laws " * 4, "긴 컨텍스트를 악용하는 탈옥 공격", "x"]
    plain = tiny_encoder.encode_passages(texts)
    seen: list[list[str]] = []
    run = tiny_encoder._run

    def spy(batch, show_progress):  # noqa: ANN001, ANN202 - test double around the real call
        seen.append(list(batch))
        return run(batch, show_progress)

    monkeypatch.setattr(tiny_encoder, "_run", spy)
    monkeypatch.setattr(tiny_encoder, "batch_size", 2)
    ordered = tiny_encoder.encode_passages(texts, batches_in_order=True)
    prefix = tiny_encoder.passage_prefix
    assert seen == [[prefix + t for t in texts[:2]], [prefix + t for t in texts[2:]]]
    np.testing.assert_allclose(ordered, plain, atol=1e-5)
