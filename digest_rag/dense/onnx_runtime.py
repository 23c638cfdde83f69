"""ONNX Runtime backend: export a sentence-transformers model once, then encode without torch.

Why not ``SentenceTransformer(..., backend="onnx")``: that path needs
``optimum``, whose only release for ONNX (optimum-onnx 0.1) requires
transformers < 4.58 and fails to import against the transformers 5 that
sentence-transformers 6 needs. The export here uses only torch's own ONNX
exporter and ONNX Runtime, both already pinned compatibly:

1. the Hugging Face encoder plus the model's pooling (mean or CLS) is traced
   to ``model.onnx`` with dynamic batch and sequence axes (opset 17), with
   transformers' *eager* attention: the SDPA path traces to a graph of
   Where/IsNaN/Softmax nodes that ORT cannot fuse;
2. ORT's transformer optimizer fuses attention / layer norm / GELU when it
   recognises the architecture (BERT, XLM-R: E5 is XLM-R) — skipped quietly
   otherwise. On the e5-small shape the fused graph encodes ~10% faster in
   fp32 and ~20% faster in int8 than the unfused one;
3. for ``onnx-int8`` the optimised graph's MatMul weights are dynamically
   quantised (int8 weights, activations quantised per batch at run time).
   The fused Attention op stays fp32: quantising it too (QAttention) was no
   faster here and agreed less with torch (mean cosine 0.99989 vs 0.99994).

Exports are cached, keyed by model name, revision, weight files and the
export recipe, so they happen once per model: next to a writable local model
directory (``<model>/onnx/digest_rag-<key>*.onnx``), else (hub cache, read-only
directories) under ``$DIGEST_RAG_CACHE`` (default ``~/.cache/digest_rag``).
Files are written to a temporary name and renamed, so concurrent processes
never read a half-written export.

Beside each export lie ``digest_rag-<key>.tokenizer.json`` (the model's
`tokenizers` tokenizer) and ``digest_rag-<key>.json`` (pooling, maximum
length, dimension, padding): with them `load_exported` opens the export with
ONNX Runtime and `tokenizers` alone, so a query process on an onnx index
never imports torch, transformers or sentence-transformers (seconds of
start-up). Tokenisation goes through the same `tokenizers` object on both
paths, so the vectors are the same whichever path loaded the model.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from digest_rag.storage.cachedir import cache_root
from digest_rag.errors import ModelUnavailableError
from digest_rag.threads import ort_session_options

log = logging.getLogger(__name__)

EXPORT_VERSION = 2  # 2: eager attention traced (fusable), int8 quantises MatMul only
OPSET = 17


def _require_ort() -> Any:
    try:
        import onnxruntime

        return onnxruntime
    except ImportError as exc:
        raise ModelUnavailableError(
            "the onnx backends need ONNX Runtime, which is not installed. "
            "Fix: pip install 'digest-rag[onnx]' (or onnxruntime onnx), or use --backend torch."
        ) from exc


def default_device() -> str:
    """"cuda" when ONNX Runtime can run on a GPU here, else "cpu" (asked of ORT, not torch)."""
    return "cuda" if "CUDAExecutionProvider" in _require_ort().get_available_providers() else "cpu"


def _pooling_mode(st: Any) -> str:
    for module in list(st)[1:]:
        get = getattr(module, "get_config_dict", None)
        if get is None:
            continue
        cfg = get()
        mode = cfg.get("pooling_mode")
        if mode is None:  # older sentence-transformers spell it as booleans
            mode = "cls" if cfg.get("pooling_mode_cls_token") else "mean" if cfg.get("pooling_mode_mean_tokens") else None
        if mode is not None:
            return str(mode)
    return "mean"


def pooling_from_files(model_dir: Path) -> str | None:
    """The pooling mode a saved sentence-transformers directory declares (as `_pooling_mode` reads it loaded).

    None when the directory does not say (no modules.json, unreadable configs).
    """
    try:
        modules = json.loads((model_dir / "modules.json").read_text(encoding="utf-8"))
        for module in modules[1:]:
            cfg_file = model_dir / str(module.get("path", "")) / "config.json"
            if not module.get("path") or not cfg_file.is_file():
                continue
            cfg = json.loads(cfg_file.read_text(encoding="utf-8"))
            mode = cfg.get("pooling_mode")
            if mode is None:
                mode = "cls" if cfg.get("pooling_mode_cls_token") else "mean" if cfg.get("pooling_mode_mean_tokens") else None
            if mode is not None:
                return str(mode)
    except (OSError, ValueError, TypeError, AttributeError):
        return None
    return None


def _weights_stamp(model_dir: Path | None) -> str:
    """Cheap identity of the weight files (name, size, mtime): a rewritten checkpoint gets a new export."""
    if model_dir is None or not model_dir.is_dir():
        return ""
    parts = []
    for f in sorted(model_dir.glob("*.safetensors")) + sorted(model_dir.glob("*.bin")):
        st = f.stat()
        parts.append(f"{f.name}:{st.st_size}:{st.st_mtime_ns}")
    return ";".join(parts)


def _torch_version() -> str:
    """torch's version from its package metadata: the key must be computable without importing torch."""
    from importlib import metadata

    try:
        return metadata.version("torch").split("+")[0]
    except metadata.PackageNotFoundError:
        return "none"


def export_key(name: str, revision: str, model_dir: Path | None, pooling: str) -> str:
    """The cache key of an export: what was exported and how."""
    payload = json.dumps(
        {"v": EXPORT_VERSION, "name": name, "revision": revision, "weights": _weights_stamp(model_dir),
         "pooling": pooling, "opset": OPSET, "torch": _torch_version()},
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def export_dir(name: str, model_dir: Path | None, key: str) -> Path:
    """``<model_dir>/onnx`` when that is writable, else the per-key cache directory."""
    if model_dir is not None and model_dir.is_dir() and os.access(model_dir, os.W_OK) and "snapshots" not in model_dir.parts:
        target = model_dir / "onnx"
        try:
            target.mkdir(exist_ok=True)
            if os.access(target, os.W_OK):
                return target
        except OSError:
            pass
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name.strip("/"))[-80:]
    target = cache_root() / "onnx" / f"{safe}-{key}"
    target.mkdir(parents=True, exist_ok=True)
    return target


def _atomic_target(final: Path) -> Path:
    fd, tmp = tempfile.mkstemp(prefix=f".{final.stem}-", suffix=".onnx", dir=final.parent)
    os.close(fd)
    os.chmod(tmp, 0o644)  # mkstemp makes 0600; an export is shared like the model it sits beside
    return Path(tmp)


def _export_fp32(st: Any, pooling: str, out: Path) -> None:
    import torch

    hf = st[0].auto_model
    hf.eval()
    accepts_tt = "token_type_ids" in hf.forward.__code__.co_varnames

    class _Pooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.hf = hf

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            kwargs: dict[str, torch.Tensor] = {"input_ids": input_ids, "attention_mask": attention_mask}
            if accepts_tt:
                kwargs["token_type_ids"] = torch.zeros_like(input_ids)
            hidden = self.hf(**kwargs).last_hidden_state
            if pooling == "cls":
                return hidden[:, 0]
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)

    # Eager attention for the trace only (see the module docstring); the caller's model is left as it was.
    previous = getattr(hf.config, "_attn_implementation", None)
    _set_attn(hf, "eager")
    ids = torch.ones((2, 8), dtype=torch.long)
    # A padded second row: with an all-ones mask transformers may skip building the attention mask,
    # and the tracer would bake that shortcut into the graph, ignoring padding forever after.
    mask = torch.tensor([[1] * 8, [1] * 5 + [0] * 3], dtype=torch.long)
    tmp = _atomic_target(out)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # Tracer warnings about Python-side branches: those branches depend on shapes only.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                _Pooled(), (ids, mask), str(tmp), dynamo=False, opset_version=OPSET,
                input_names=["input_ids", "attention_mask"], output_names=["sentence_embedding"],
                dynamic_axes={"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"},
                              "sentence_embedding": {0: "batch"}},
                do_constant_folding=True,
            )
        _optimise_in_place(tmp, hf.config)
        os.replace(tmp, out)
    finally:
        if previous is not None:
            _set_attn(hf, previous)
        tmp.unlink(missing_ok=True)


def _set_attn(hf: Any, implementation: str) -> None:
    setter = getattr(hf, "set_attn_implementation", None)
    try:
        if setter is not None:
            setter(implementation)
        else:  # older transformers: the config field is what the layers read
            hf.config._attn_implementation = implementation
    except Exception as exc:  # an architecture without eager attention: trace what it has
        log.info("could not switch attention to %s for export: %s", implementation, exc)


def _optimise_in_place(path: Path, config: Any) -> None:
    """Fuse attention/LayerNorm/GELU with ORT's transformer optimizer; keep the plain graph if it can't."""
    model_type = {"bert": "bert", "xlm-roberta": "bert", "roberta": "bert"}.get(getattr(config, "model_type", ""))
    if model_type is None:
        return
    try:
        from onnxruntime.transformers.optimizer import optimize_model

        opt = optimize_model(str(path), model_type=model_type, num_heads=int(config.num_attention_heads),
                             hidden_size=int(config.hidden_size), opt_level=1)
        opt.save_model_to_file(str(path))
    except Exception as exc:  # the optimizer is best effort; an unfused graph is still correct
        log.info("ONNX transformer optimisation skipped: %s", exc)


def _quantise(src: Path, out: Path) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    tmp = _atomic_target(out)
    root = logging.getLogger()
    level = root.level
    # The quantiser logs a pre-processing hint on the root logger at WARNING; it is advice, not a problem.
    root.setLevel(logging.ERROR)
    try:
        # Fused ops from the optimizer (com.microsoft domain) have no ONNX shape inference; their
        # outputs are float32, which is what the quantiser needs to know.
        quantize_dynamic(str(src), str(tmp), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"],
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
        os.replace(tmp, out)
    finally:
        root.setLevel(level)
        tmp.unlink(missing_ok=True)


SIDECAR_FORMAT = 1


def _export_files(where: Path, key: str, int8: bool) -> tuple[Path, Path, Path]:
    """(onnx file, sidecar metadata, tokenizer) of the export ``key`` in ``where``."""
    onnx = where / (f"digest_rag-{key}-qint8.onnx" if int8 else f"digest_rag-{key}.onnx")
    return onnx, where / f"digest_rag-{key}.json", where / f"digest_rag-{key}.tokenizer.json"


def _write_atomic(final: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{final.stem}-", suffix=".json", dir=final.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, final)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _tokenizer_settings(hf_tok: Any, max_seq_length: int) -> dict[str, Any]:
    """How sentence-transformers' calls truncate and pad with this Hugging Face tokenizer."""
    return {
        "max_seq_length": max_seq_length,
        "pad_id": int(hf_tok.pad_token_id if hf_tok.pad_token_id is not None else 0),
        "pad_type_id": int(getattr(hf_tok, "pad_token_type_id", 0) or 0),
        "pad_token": str(hf_tok.pad_token or "[PAD]"),
        "padding_side": str(getattr(hf_tok, "padding_side", "right")),
        "truncation_side": str(getattr(hf_tok, "truncation_side", "right")),
    }


def _write_sidecar(st: Any, where: Path, key: str, pooling: str) -> None:
    """Save what `load_exported` needs to run the export without sentence-transformers (best effort)."""
    hf_tok = st.tokenizer
    backend = getattr(hf_tok, "backend_tokenizer", None)
    if backend is None:  # a slow (Python) tokenizer: no `tokenizers` twin, the query path keeps loading the model
        return
    _, meta_path, tok_path = _export_files(where, key, False)
    get_dim = getattr(st, "get_embedding_dimension", None) or st.get_sentence_embedding_dimension
    meta = {"format": SIDECAR_FORMAT, "pooling": pooling, "dimension": int(get_dim()),
            **_tokenizer_settings(hf_tok, int(st.max_seq_length))}
    try:
        from tokenizers import Tokenizer

        plain = Tokenizer.from_str(backend.to_str())
        plain.no_truncation()
        plain.no_padding()
        _write_atomic(tok_path, plain.to_str())
        _write_atomic(meta_path, json.dumps(meta, indent=1))  # last: its presence means the pair is complete
    except (OSError, ImportError, ValueError) as exc:
        log.info("ONNX sidecar not written (%s); query processes will load the model", exc)


def _read_sidecar(meta_path: Path) -> dict[str, Any] | None:
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    need = {"pooling": str, "max_seq_length": int, "dimension": int, "pad_id": int, "pad_type_id": int, "pad_token": str}
    if not isinstance(meta, dict) or meta.get("format") != SIDECAR_FORMAT:
        return None
    if not all(isinstance(meta.get(k), t) for k, t in need.items()):
        return None
    return meta


class FastTokenizer:
    """A `tokenizers` tokenizer set up as sentence-transformers calls its Hugging Face twin.

    Batches are truncated to ``max_seq_length`` (longest first) and padded to
    their longest member; calling it like a Hugging Face tokenizer
    (``tok(text, add_special_tokens=False)["input_ids"]``) is enough for
    `Encoder.count_tokens`.
    """

    def __init__(self, serialized: str, meta: dict[str, Any]) -> None:
        from tokenizers import Tokenizer

        self._plain = Tokenizer.from_str(serialized)
        self._plain.no_truncation()
        self._plain.no_padding()
        self._batch = Tokenizer.from_str(serialized)
        self._batch.enable_truncation(max_length=int(meta["max_seq_length"]), strategy="longest_first",
                                      direction=str(meta.get("truncation_side", "right")))
        self._batch.enable_padding(direction=str(meta.get("padding_side", "right")), pad_id=int(meta["pad_id"]),
                                   pad_type_id=int(meta["pad_type_id"]), pad_token=str(meta["pad_token"]))

    def encode_batch(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(input_ids, attention_mask), int64 arrays of shape (len(texts), longest)."""
        encs = self._batch.encode_batch(list(texts))
        ids = np.array([e.ids for e in encs], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encs], dtype=np.int64)
        return ids, mask

    def __call__(self, text: str, add_special_tokens: bool = True, **_: Any) -> dict[str, list[int]]:
        return {"input_ids": self._plain.encode(text, add_special_tokens=add_special_tokens).ids}


def _fast_tokenizer_of(st: Any, max_seq_length: int) -> FastTokenizer | None:
    """The `tokenizers` twin of a loaded model's tokenizer (None for slow tokenizers)."""
    hf_tok = st.tokenizer
    backend = getattr(hf_tok, "backend_tokenizer", None)
    if backend is None:
        return None
    return FastTokenizer(backend.to_str(), _tokenizer_settings(hf_tok, max_seq_length))


def ensure_export(st: Any, name: str, revision: str, model_dir: Path | None, *, int8: bool) -> Path:
    """The cached ONNX file for this model (exporting it first if needed); returns its path."""
    _require_ort()
    pooling = _pooling_mode(st)
    if pooling not in ("mean", "cls"):
        raise ModelUnavailableError(f"the onnx backends support mean or CLS pooling, not '{pooling}'; use --backend torch")
    key = export_key(name, revision, model_dir, pooling)
    where = export_dir(name, model_dir, key)
    fp32 = where / f"digest_rag-{key}.onnx"
    int8_path = where / f"digest_rag-{key}-qint8.onnx"
    try:
        if not fp32.is_file():
            log.info("exporting %s to ONNX at %s (once)", name, fp32)
            _export_fp32(st, pooling, fp32)
        if int8 and not int8_path.is_file():
            log.info("quantising %s to int8 at %s (once)", name, int8_path)
            _quantise(fp32, int8_path)
    except ModelUnavailableError:
        raise
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ModelUnavailableError(f"could not export '{name}' to ONNX ({first}); use --backend torch") from exc
    if _read_sidecar(_export_files(where, key, int8)[1]) is None:
        _write_sidecar(st, where, key, pooling)
    return int8_path if int8 else fp32


def load_exported(name: str, revision: str, model_dir: Path | None, files_dir: Path | None, *, int8: bool,
                  device: str) -> OnnxSentenceModel | None:
    """Open an existing export with ONNX Runtime and `tokenizers` only; None when there is none to open.

    ``model_dir`` is the local model directory (part of the export key, None
    for hub models); ``files_dir`` is where the model's files can be read
    (that directory, or the hub cache snapshot). None means: load the model
    and export through `onnx_model_from`, which also writes what this needs.
    """
    if files_dir is None:
        return None
    pooling = pooling_from_files(files_dir)
    if pooling not in ("mean", "cls"):
        return None
    key = export_key(name, revision, model_dir, pooling)
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name.strip("/"))[-80:]
    places = ([model_dir / "onnx"] if model_dir is not None else []) + [cache_root() / "onnx" / f"{safe}-{key}"]
    for where in places:
        onnx_path, meta_path, tok_path = _export_files(where, key, int8)
        if not (onnx_path.is_file() and tok_path.is_file()):
            continue
        meta = _read_sidecar(meta_path)
        if meta is None or meta["pooling"] != pooling:
            continue
        try:
            tokenizer = FastTokenizer(tok_path.read_text(encoding="utf-8"), meta)
        except Exception as exc:  # tokenizers raises plain Exception on a bad file; a cache miss, not an error
            log.info("ONNX sidecar tokenizer %s unusable (%s); loading the model instead", tok_path, exc)
            continue
        return OnnxSentenceModel(onnx_path, tokenizer, int(meta["max_seq_length"]), int(meta["dimension"]), device=device)
    return None


class SentenceModelSlice:
    """The slice of the SentenceTransformer API that `Encoder` uses, for runtimes other than sentence-transformers.

    Subclasses embed one batch (`_embed_batch`); `encode` feeds it the inputs
    longest first, as sentence-transformers does, so each batch pads to about
    its own length, and returns the vectors in input order.
    """

    tokenizer: Any
    max_seq_length: int
    _dimension: int

    def get_sentence_embedding_dimension(self) -> int:
        """Embedding dimension."""
        return self._dimension

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError

    def encode(
        self,
        sentences: Sequence[str],
        batch_size: int = 32,
        normalize_embeddings: bool = False,
        convert_to_numpy: bool = True,
        show_progress_bar: bool = False,
        **_: Any,
    ) -> np.ndarray:
        """Embed ``sentences``; (n, dim) float32."""
        return self._encode_texts([str(t) for t in sentences], batch_size, normalize_embeddings)

    def _encode_texts(self, texts: list[str], batch_size: int, normalize_embeddings: bool) -> np.ndarray:
        """`encode`'s work: batches of `_embed_batch`, longest inputs first."""
        out = np.zeros((len(texts), self._dimension), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        for start in range(0, len(order), batch_size):
            part = order[start : start + batch_size]
            out[part] = self._embed_batch([texts[i] for i in part])
        if normalize_embeddings:
            norms = np.linalg.norm(out, axis=1, keepdims=True)
            norms[norms == 0] = 1.0
            out = out / norms
        return out


class OnnxSentenceModel(SentenceModelSlice):
    """The SentenceTransformer slice run by ONNX Runtime."""

    def __init__(self, onnx_path: Path, tokenizer: FastTokenizer, max_seq_length: int, dimension: int,
                 device: str = "cpu", hf_tokenizer: Any = None) -> None:
        ort = _require_ort()
        providers = ["CPUExecutionProvider"]
        if device == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        self.session = ort.InferenceSession(str(onnx_path), sess_options=ort_session_options(), providers=providers)
        self.onnx_path = onnx_path
        self._fast = tokenizer
        #: The Hugging Face tokenizer when the model was loaded, else the `tokenizers` one (same token counts).
        self.tokenizer: Any = hf_tokenizer if hf_tokenizer is not None else tokenizer
        self.max_seq_length = max_seq_length
        self._dimension = dimension

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        ids, mask = self._fast.encode_batch(texts)
        (emb,) = self.session.run(["sentence_embedding"], {"input_ids": ids, "attention_mask": mask})
        return np.asarray(emb)


def onnx_model_from(st: Any, name: str, revision: str, model_dir: Path | None, *, int8: bool, device: str) -> OnnxSentenceModel:
    """Export (once) and open the ONNX twin of a loaded SentenceTransformer."""
    path = ensure_export(st, name, revision, model_dir, int8=int8)
    get_dim = getattr(st, "get_embedding_dimension", None) or st.get_sentence_embedding_dimension
    fast = _fast_tokenizer_of(st, int(st.max_seq_length))
    if fast is None:
        raise ModelUnavailableError(f"the onnx backends need a fast (Rust) tokenizer; '{name}' has none: use --backend torch")
    return OnnxSentenceModel(path, fast, int(st.max_seq_length), int(get_dim()), device=device, hf_tokenizer=st.tokenizer)
