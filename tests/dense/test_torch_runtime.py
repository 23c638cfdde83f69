"""The torch backend's query path through `transformers` alone (digest_rag/transformers_runtime.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from digest_rag import DigestIndex
from digest_rag.dense.encoder import Encoder
from digest_rag.dense.torch_runtime import (
    PlainSentenceModel,
    load_plain_model,
    plain_layout,
)

QUERIES = ["query: 긴 컨텍스트를 악용하는 탈옥 공격", "query: knowledge distillation for small language models",
           "  query: padded question with spaces  ", "query: x"]


def test_plain_model_gives_sentence_transformers_vectors(tiny_model: Path) -> None:
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(tiny_model), device="cpu")
    plain = load_plain_model(tiny_model)
    assert isinstance(plain, PlainSentenceModel)
    assert plain.get_sentence_embedding_dimension() == st.get_sentence_embedding_dimension()
    assert plain.max_seq_length == st.max_seq_length
    long_text = "query: " + "attention " * 2000  # past max_seq_length: truncated alike
    want = st.encode([*QUERIES, long_text], batch_size=2, normalize_embeddings=True, convert_to_numpy=True)
    got = plain.encode([*QUERIES, long_text], batch_size=2, normalize_embeddings=True)
    np.testing.assert_allclose(got, want, atol=1e-5)
    # Token counts (used for chunking) agree with the Hugging Face tokenizer's too.
    text = "지식 증류(knowledge distillation)로 작은 모델을 학습한다."
    assert plain.tokenizer(text, add_special_tokens=False)["input_ids"] == \
        st.tokenizer(text, add_special_tokens=False)["input_ids"]


def test_query_encoder_uses_the_plain_path_only_for_queries(tiny_model: Path) -> None:
    query_side = Encoder.load(str(tiny_model), device="cpu", light=True)
    assert isinstance(query_side.model, PlainSentenceModel)
    build_side = Encoder.load(str(tiny_model), device="cpu")
    assert not isinstance(build_side.model, PlainSentenceModel)
    assert query_side.revision == build_side.revision
    np.testing.assert_allclose(query_side.encode_queries(QUERIES), build_side.encode_queries(QUERIES), atol=1e-5)


@pytest.mark.parametrize("change", ["dense_module", "lower_case", "no_fast_tokenizer", "remote_code", "no_max_len"])
def test_other_layouts_fall_back_to_sentence_transformers(tmp_path: Path, tiny_model: Path, change: str) -> None:
    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    assert plain_layout(model) is not None

    def edit(filename: str, /, **update: object) -> None:
        path = model / filename
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, list):
            data.append(update)
        else:
            data.update(update)
            data = {k: v for k, v in data.items() if v is not None}
        path.write_text(json.dumps(data), encoding="utf-8")

    if change == "dense_module":
        edit("modules.json", idx=2, name="2", path="2_Dense", type="sentence_transformers.models.Dense")
    elif change == "lower_case":
        edit("sentence_bert_config.json", do_lower_case=True)
    elif change == "no_fast_tokenizer":
        (model / "tokenizer.json").unlink()
    elif change == "remote_code":
        edit("config.json", auto_map={"AutoModel": "modeling_evil.EvilModel"})
    else:  # no length limit written anywhere
        edit("sentence_bert_config.json", max_seq_length=None)
        edit("tokenizer_config.json", model_max_length=None)
    assert plain_layout(model) is None
    assert load_plain_model(model) is None
    if change == "dense_module":  # handed to sentence-transformers, which tries to build the (fake) Dense layer
        from digest_rag.errors import ModelUnavailableError

        with pytest.raises(ModelUnavailableError, match="Dense"):
            Encoder.load(str(model), device="cpu", light=True)
    elif change in ("lower_case", "no_max_len"):
        enc = Encoder.load(str(model), device="cpu", light=True)
        assert not isinstance(enc.model, PlainSentenceModel)


def test_search_process_on_a_torch_index_skips_sentence_transformers(tmp_path: Path, seed_index_dir: Path) -> None:
    from digest_rag.testing import cli_heavy_imports

    idx = DigestIndex.load(seed_index_dir)
    assert idx.manifest.backend == "torch"
    title = next(iter(idx.papers.values())).title
    in_process = idx.search(title, k=3, mode="dense")
    idx.close()
    res, heavy = cli_heavy_imports(["search", title, "--index", str(seed_index_dir), "-k", "3", "--mode", "dense",
                                    "--json"], tmp_path)
    assert res.returncode == 0, res.stderr
    assert "sentence_transformers" not in heavy and "sklearn" not in heavy
    # A plain BERT encoder runs on torch alone (bert_encoder.py): not even transformers is imported.
    assert "torch" in heavy and "transformers" not in heavy
    hits = json.loads(res.stdout)
    assert [h["paper_id"] for h in hits] == [h.paper.id for h in in_process]
