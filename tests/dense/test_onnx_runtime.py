"""dense.onnx_runtime: the model exported to ONNX Runtime (fp32, int8) agrees with torch, exports once, loads without torch."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime", reason="onnxruntime not installed (pip install 'digest-rag[onnx]')")
pytest.importorskip("onnx", reason="onnx not installed (pip install 'digest-rag[onnx]')")

from digest_rag import DigestIndex  # noqa: E402
from digest_rag.dense.encoder import Encoder  # noqa: E402
from digest_rag.dense.onnx_runtime import OnnxSentenceModel  # noqa: E402

TEXTS = ["스케일링 법칙에 대한 논문", "Scaling laws for neural language models", "짧은", "a " * 300, "mixed 한국어 and English"]


@pytest.fixture(scope="module")
def model_copy(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> Path:
    """A private copy of the tiny model, so its onnx/ folder belongs to these tests."""
    dst = tmp_path_factory.mktemp("onnx-model") / "tiny"
    shutil.copytree(tiny_model, dst)
    return dst


def _load(model: Path, backend: str) -> Encoder:
    try:
        return Encoder.load(str(model), device="cpu", backend=backend)
    except Exception as exc:  # an export that cannot run here is an environment limit, not a bug to hide
        if "export" in str(exc):
            pytest.skip(f"ONNX export impossible in this environment: {exc}")
        raise


@pytest.mark.parametrize(("backend", "min_cos"), [("onnx", 0.9999), ("onnx-int8", 0.99)])
def test_backend_agrees_with_torch(model_copy: Path, backend: str, min_cos: float) -> None:
    torch_enc = Encoder.load(str(model_copy), device="cpu")
    enc = _load(model_copy, backend)
    assert enc.backend == backend and isinstance(enc.model, OnnxSentenceModel)
    assert enc.name == torch_enc.name and enc.dimension == torch_enc.dimension
    a, b = torch_enc.encode_passages(TEXTS), enc.encode_passages(TEXTS)
    np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)
    assert float((a * b).sum(1).min()) >= min_cos
    # Padding must not leak: a text embeds the same alone and in a batch with a much longer one.
    alone = enc.encode_passages([TEXTS[2]])[0]
    assert float(alone @ b[2]) >= 0.9999


def test_export_lives_next_to_model_and_happens_once(model_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _load(model_copy, "onnx-int8")
    exported = sorted(p.name for p in (model_copy / "onnx").glob("digest_rag-*.onnx"))
    assert len(exported) == 2 and any(n.endswith("-qint8.onnx") for n in exported)
    import digest_rag.dense.onnx_runtime as ob

    def no_export(*_a: object, **_k: object) -> None:
        raise AssertionError("exported again")

    monkeypatch.setattr(ob, "_export_fp32", no_export)
    monkeypatch.setattr(ob, "_quantise", no_export)
    assert _load(model_copy, "onnx-int8").encode_queries(["again"]).shape[0] == 1


_FAST_LOAD = """
import json, sys
import numpy as np
from digest_rag.dense.encoder import Encoder
enc = Encoder.load(sys.argv[1], backend=sys.argv[2])
np.save(sys.argv[3], enc.encode_passages(json.loads(sys.argv[4])))
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "sentence_transformers", "transformers"))
print(json.dumps({"heavy": heavy, "model": type(enc.model).__name__, "tokens": enc.count_tokens(sys.argv[5])}))
"""


@pytest.mark.parametrize("backend", ["onnx", "onnx-int8"])
def test_existing_export_loads_without_torch_and_gives_the_same_vectors(model_copy: Path, tmp_path: Path,
                                                                        backend: str) -> None:
    # The first load exports through sentence-transformers; a later process opens the export with
    # ONNX Runtime and `tokenizers` alone (what a query process on an onnx index does).
    enc = _load(model_copy, backend)
    expected = enc.encode_passages(TEXTS)
    out = tmp_path / "v.npy"
    res = subprocess.run([sys.executable, "-c", _FAST_LOAD, str(model_copy), backend, str(out), json.dumps(TEXTS),
                          TEXTS[0]], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout.strip().splitlines()[-1])
    assert report == {"heavy": [], "model": "OnnxSentenceModel", "tokens": enc.count_tokens(TEXTS[0])}
    np.testing.assert_allclose(np.load(out), expected, atol=1e-6)


def test_hub_snapshot_exports_to_cache_dir(tmp_path: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    snap = tmp_path / "hub" / "models--x--y" / "snapshots" / "abc123"
    shutil.copytree(tiny_model, snap)
    monkeypatch.setenv("DIGEST_RAG_CACHE", str(tmp_path / "cache"))
    enc = _load(snap, "onnx")
    assert not (snap / "onnx").exists()
    assert Path(enc.model.onnx_path).is_relative_to(tmp_path / "cache")


def test_index_with_onnx_backend(tmp_path: Path, seed_corpus: Path, model_copy: Path) -> None:
    idx = DigestIndex.build([seed_corpus], index_dir=tmp_path / "ix", model=str(model_copy), backend="onnx")
    assert idx.manifest.backend == "onnx"
    title = next(iter(idx.papers.values())).title
    hits = DigestIndex.load(tmp_path / "ix", backend="onnx").search(title, k=3, mode="dense")
    assert hits and hits[0].paper.title == title
    # A query process on this index encodes through ONNX Runtime + tokenizers, never importing torch.
    from digest_rag.testing import cli_heavy_imports

    # (Fusion weights given: the tiny random model's calibration turns the dense side off.)
    res, heavy = cli_heavy_imports(["search", title, "--index", str(tmp_path / "ix"), "-k", "3", "--json",
                                    "--fusion-weights", "1:1"], tmp_path)
    assert res.returncode == 0, res.stderr
    hits = json.loads(res.stdout)
    assert heavy == [] and hits and any("dense" in h["modes"] for h in hits)
    # onnx fp32 embeddings equal torch's to float precision, so the cache stays valid across backends.
    again = DigestIndex.build([seed_corpus], index_dir=tmp_path / "ix", model=str(model_copy), backend="torch")
    assert again.last_build.encoded == 0 and again.manifest.backend == "torch"


def test_export_fuses_attention_and_leaves_torch_model_as_it_was(tmp_path: Path, tiny_model: Path) -> None:
    import onnx
    from sentence_transformers import SentenceTransformer

    import digest_rag.dense.onnx_runtime as ob

    st = SentenceTransformer(str(tiny_model), device="cpu")
    before = st[0].auto_model.config._attn_implementation
    out = tmp_path / "m.onnx"
    ob._export_fp32(st, "mean", out)
    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    # Eager attention traces to the pattern ORT's optimizer fuses; SDPA's trace (Where/IsNaN) is left unfused.
    assert "Attention" in ops and "Softmax" not in ops
    assert st[0].auto_model.config._attn_implementation == before
    q = tmp_path / "m-q.onnx"
    ob._quantise(out, q)
    qops = {n.op_type for n in onnx.load(str(q)).graph.node}
    assert "MatMulInteger" in qops and "Attention" in qops and "QAttention" not in qops
