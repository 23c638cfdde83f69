"""The BERT/XLM-R encoder on torch alone (digest_rag/bert_encoder.py) against sentence-transformers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from digest_rag.dense.bert import BertEncoder, encoder_spec
from digest_rag.dense.torch_runtime import PlainSentenceModel, load_plain_model

TEXTS = ["query: 긴 컨텍스트를 악용하는 탈옥 공격", "query: knowledge distillation for small language models",
         "passage: 지식 증류(knowledge distillation)로 작은 모델을 학습한다. " * 30, "query: x",
         "passage: " + "attention 스케일링 " * 400]  # past max_seq_length: truncated alike


def _same_as_sentence_transformers(model: Path) -> None:
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(model), device="cpu")
    plain = load_plain_model(model)
    assert isinstance(plain, PlainSentenceModel) and isinstance(plain.encoder, BertEncoder)
    for batch_size in (1, 2, 32):  # unpadded, padded, several lengths in one batch
        want = st.encode(TEXTS, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True)
        got = plain.encode(TEXTS, batch_size=batch_size, normalize_embeddings=True)
        # To the bit: builds encode a few passages this way and the rest through sentence-transformers.
        np.testing.assert_array_equal(got, want)


def test_bert_encoder_gives_sentence_transformers_vectors_to_the_bit(tiny_model: Path) -> None:
    spec = encoder_spec(tiny_model)
    assert spec is not None and spec.model_type == "bert" and not spec.roberta_positions
    _same_as_sentence_transformers(tiny_model)


def test_xlm_roberta_positions(tmp_path: Path, tiny_model: Path) -> None:
    """E5 is XLM-R: positions count from pad_token_id + 1 and padding keeps pad_token_id."""
    import torch
    from transformers import XLMRobertaConfig, XLMRobertaModel

    model = tmp_path / "xlmr"
    shutil.copytree(tiny_model, model)
    old = json.loads((model / "config.json").read_text(encoding="utf-8"))
    pad = json.loads((model / "tokenizer.json").read_text(encoding="utf-8"))["padding"]
    pad_id = pad["pad_id"] if pad else 0
    torch.manual_seed(1)
    config = XLMRobertaConfig(vocab_size=old["vocab_size"], hidden_size=old["hidden_size"], num_hidden_layers=2,
                              num_attention_heads=old["num_attention_heads"], intermediate_size=old["intermediate_size"],
                              max_position_embeddings=old["max_position_embeddings"] + pad_id + 2, pad_token_id=pad_id)
    (model / "model.safetensors").unlink()
    XLMRobertaModel(config, add_pooling_layer=False).save_pretrained(str(model))
    spec = encoder_spec(model)
    assert spec is not None and spec.roberta_positions and spec.pad_token_id == pad_id
    _same_as_sentence_transformers(model)


@pytest.mark.parametrize("change", [{"position_embedding_type": "relative_key"}, {"hidden_act": "gelu_new"},
                                    {"dtype": "float16"}, {"model_type": "distilbert"}, {"is_decoder": True}])
def test_other_encoders_go_through_transformers(tmp_path: Path, tiny_model: Path, change: dict[str, object]) -> None:
    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    config = json.loads((model / "config.json").read_text(encoding="utf-8"))
    (model / "config.json").write_text(json.dumps({**config, **change}), encoding="utf-8")
    assert encoder_spec(model) is None


def test_damaged_weights_fall_back_to_transformers(tmp_path: Path, tiny_model: Path) -> None:
    """Weights that do not match the config are not run here (transformers then says what is wrong)."""
    from safetensors.torch import load_file, save_file

    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    weights = load_file(str(model / "model.safetensors"))
    del weights["encoder.layer.1.output.dense.weight"]
    save_file(weights, str(model / "model.safetensors"), metadata={"format": "pt"})
    spec = encoder_spec(model)
    assert spec is not None
    with pytest.raises(ValueError, match="encoder.layer.1.output.dense.weight"):
        BertEncoder(model, spec)


def test_a_question_reads_only_its_word_rows(tiny_model: Path) -> None:
    plain = load_plain_model(tiny_model)
    assert plain is not None and plain.encoder is not None
    plain.encode(["query: 긴 컨텍스트를 악용하는 탈옥 공격"], normalize_embeddings=True)
    assert plain.encoder._all_words is None  # the embedding matrix was never read whole

