"""Multilingual E5 through sentence-transformers: model resolution, loading, encoding.

Resolution order for the model: an explicit name or local path, else the
``DIGEST_RAG_MODEL`` environment variable, else ``intfloat/multilingual-e5-small``.
Loading order for a hub name: the local Hugging Face cache first (works
offline), then the hub (unless ``HF_HUB_OFFLINE=1``). ``trust_remote_code`` is
never enabled.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from digest_rag.errors import ModelUnavailableError, UsageError
from digest_rag.dense.static_runtime import STATIC_MAX_TOKENS, STATIC_PREFIX, StaticSentenceModel, TokenizerCounter
from digest_rag.models import BACKENDS, PASSAGE_PREFIX, QUERY_PREFIX
from digest_rag.threads import configure_threads

log = logging.getLogger(__name__)

DEFAULT_MODEL = "intfloat/multilingual-e5-small"
MODEL_ENV = "DIGEST_RAG_MODEL"
MODEL_ALIASES: dict[str, str] = {
    "small": "intfloat/multilingual-e5-small",
    "base": "intfloat/multilingual-e5-base",
    "large": "intfloat/multilingual-e5-large",
    "e5-small": "intfloat/multilingual-e5-small",
    "e5-base": "intfloat/multilingual-e5-base",
    "e5-large": "intfloat/multilingual-e5-large",
}


def requested_model(explicit: str | os.PathLike[str] | None, saved: str | None = None) -> str | None:
    """The one rule for which model is asked for: ``explicit``, else $DIGEST_RAG_MODEL, else ``saved`` (the
    model an index was built with); None when none names one, so the caller's default applies."""
    for name in (explicit, os.environ.get(MODEL_ENV), saved):
        if name is not None and str(name).strip():
            return str(name).strip()
    return None


def resolve_model_name(model: str | os.PathLike[str] | None = None) -> str:
    """The model an operation should use: explicit > $DIGEST_RAG_MODEL > default.

    Aliases (small, base, large) expand to the multilingual E5 hub names; an
    existing local directory becomes its absolute path, so the same model
    compares equal however it was spelled.
    """
    name = requested_model(model) or DEFAULT_MODEL
    name = MODEL_ALIASES.get(name.lower(), name)
    p = Path(name).expanduser()
    if p.exists():
        return str(p.resolve())
    return name


def auto_device() -> str:
    """CUDA, then Apple MPS, then CPU."""
    import torch

    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def _looks_like_path(name: str) -> bool:
    """Hub ids are 'name' or 'owner/name'; anything else is meant as a filesystem path."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _cache_dir() -> str:
    try:
        from huggingface_hub import constants

        return str(constants.HF_HUB_CACHE)
    except Exception:  # pragma: no cover - huggingface_hub always ships with sentence-transformers
        return os.path.expanduser("~/.cache/huggingface/hub")


def model_unavailable_message(name: str, looked: list[str], cause: str) -> str:
    """One readable paragraph: which model, where we looked, how to fix it."""
    where = "; ".join(looked)
    return (
        f"embedding model '{name}' is not available ({cause}). Looked in: {where}. "
        f"Fix: pass a local sentence-transformers directory with --model PATH (or model=PATH), "
        f"or set {MODEL_ENV}=PATH, or download it once while online "
        f"(digest-rag model fetch {name}), "
        f"or use lexical search (--mode lexical / build --lexical-only)."
    )


# The revision an inputs fingerprint gives a default model that is not in the local cache (build/pipeline.py).
UNAVAILABLE = "unavailable"


def model_identity(model: str | os.PathLike[str] | None = None) -> tuple[str, str] | None:
    """(name, revision) that ``Encoder.load(model)`` would report, found without loading the weights.

    None when that cannot be known cheaply: a hub model not in the local
    cache, or a path that does not exist. Used to tell whether an index is
    already up to date before paying for a model load.
    """
    name = resolve_model_name(model)
    path = Path(name)
    if path.is_dir():
        return name, _revision_of(path)
    if path.exists() or _looks_like_path(name):
        return None
    revision = _hub_revision(name)
    return (name, revision) if revision else None


def _revision_of(path: Path) -> str:
    """A snapshot hash from the HF cache layout, else a fingerprint of the config files."""
    parts = path.resolve().parts
    if "snapshots" in parts:
        i = parts.index("snapshots")
        if i + 1 < len(parts):
            return parts[i + 1]
    h = hashlib.sha256()
    for fname in ("config.json", "modules.json", "tokenizer.json", "config_sentence_transformers.json"):
        f = path / fname
        if f.is_file():
            h.update(fname.encode())
            h.update(f.read_bytes())
    for weights in sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin")):
        h.update(f"{weights.name}:{weights.stat().st_size}".encode())
    return "local-" + h.hexdigest()[:16]


class Encoder:
    """A loaded E5-style embedding model.

    Queries are sent as ``"query: " + text`` and passages as ``"passage: " + text``;
    embeddings come back L2-normalised float32, so inner product is cosine.

    Example:
        >>> enc = Encoder.load("intfloat/multilingual-e5-small")  # doctest: +SKIP
        >>> enc.encode_queries(["스케일링 법칙"]).shape  # doctest: +SKIP
        (1, 384)
    """

    def __init__(
        self,
        model: Any,
        name: str,
        revision: str,
        device: str,
        batch_size: int = 32,
        query_prefix: str = QUERY_PREFIX,
        passage_prefix: str = PASSAGE_PREFIX,
        backend: str = "torch",
    ) -> None:
        self.model = model
        self.name = name
        self.revision = revision
        self.device = device
        self.batch_size = batch_size
        self.query_prefix = query_prefix
        self.passage_prefix = passage_prefix
        self.backend = backend
        self.encode_calls = 0
        self.encoded_texts = 0

    @classmethod
    def load(
        cls,
        model: str | os.PathLike[str] | None = None,
        *,
        device: str | None = None,
        batch_size: int = 32,
        backend: str = "torch",
        light: bool = False,
    ) -> Encoder:
        """Resolve and load a model; raise ModelUnavailableError with a fix when it cannot be had.

        ``backend`` is "torch" (sentence-transformers as is), "onnx" (the same
        weights exported once to ONNX and run by ONNX Runtime) or "onnx-int8"
        (that export with dynamically quantised int8 weights: 1.4x the
        chunks/s of torch on a 2-core AVX2 CPU, mean cosine to torch 0.9999;
        BENCHMARKS.md). See onnx_backend.py.

        ``light`` (a search process, or a build with few passages to encode):
        on CPU with the torch backend, a model of the common Transformer +
        Pooling layout runs without sentence-transformers' start-up imports
        (transformers_runtime.py), a plain BERT/XLM-R encoder on torch alone
        (bert_encoder.py); same weights, same batches, the same vectors.
        """
        if backend not in BACKENDS:
            raise UsageError(f"unknown backend '{backend}'; choose one of {', '.join(BACKENDS)}")
        name = resolve_model_name(model)
        path = Path(name)
        static = _load_static(name, path, backend)
        if static is not None:
            return cls(static.model, name, static.revision, static.device, batch_size=batch_size, backend=backend,
                       query_prefix=STATIC_PREFIX, passage_prefix=STATIC_PREFIX)
        if backend != "torch":
            fast = _load_onnx_export(name, path, device, backend)
            if fast is not None:
                return cls(fast.model, name, fast.revision, fast.device, batch_size=batch_size, backend=backend)
        elif light and (device or auto_device()) == "cpu":
            plain = _load_plain(name, path)
            if plain is not None:
                return cls(plain.model, name, plain.revision, plain.device, batch_size=batch_size, backend=backend)
        dev = device or auto_device()
        looked: list[str] = []
        if path.is_dir():
            looked.append(f"local directory {path}")
            st = _load_st(str(path), dev, backend, local_only=True, name=name, looked=looked)
            revision = _revision_of(path)
        elif path.exists():
            raise ModelUnavailableError(model_unavailable_message(name, [str(path)], "a file, not a model directory"))
        elif _looks_like_path(name):
            raise ModelUnavailableError(model_unavailable_message(name, [f"local path {name}"], "no such directory"))
        else:
            st = _load_from_hub_or_cache(name, dev, backend, looked)
            revision = _hub_revision(name) or "unknown"
        configure_threads()  # after the load: torch is imported by now, so its pool is sized too
        if backend != "torch" and _is_static(st):
            log.warning("%s is a static embedding model: the %s backend cannot export it; running it on torch",
                        name, backend)
        elif backend != "torch":
            from digest_rag.dense.onnx_runtime import onnx_model_from

            # Local directories get their export beside the weights; hub models (read-only cache) in our cache.
            model_dir = path if path.is_dir() else None
            st = onnx_model_from(st, name, revision, model_dir, int8=backend == "onnx-int8", device=dev)
        elif dev == "cuda" and not _is_static(st):
            # Half precision halves memory and roughly doubles throughput on GPUs; E5 is robust to it.
            st = st.half()
        if _is_static(st):  # a StaticEmbedding layout numpy does not run (extra modules): no prefixes either
            return cls(st, name, revision, dev, batch_size=batch_size, backend=backend,
                       query_prefix=STATIC_PREFIX, passage_prefix=STATIC_PREFIX)
        return cls(st, name, revision, dev, batch_size=batch_size, backend=backend)

    @property
    def dimension(self) -> int:
        """Embedding dimension (384 for e5-small)."""
        get = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        return int(get())

    @property
    def max_seq_length(self) -> int:
        """Tokens the model reads per input (512 for E5), special tokens included.

        A model without a limit (a StaticEmbedding reports infinity) reads
        `STATIC_MAX_TOKENS`: passages are still cut to a finite size.
        """
        length = self.model.max_seq_length
        if length is None or not math.isfinite(length) or length > 1_000_000:
            return STATIC_MAX_TOKENS
        return int(length)

    @property
    def tokenizer(self) -> Any:
        """The model's tokenizer, callable as a Hugging Face one (``tok(text, add_special_tokens=False)``)."""
        tok = self.model.tokenizer
        if not callable(tok) and hasattr(tok, "encode_batch"):  # a raw `tokenizers.Tokenizer` (StaticEmbedding)
            return TokenizerCounter(tok)
        return tok

    @property
    def pads_batches(self) -> bool:
        """Whether a batch costs its size times its longest passage (a Transformer pads to it); a static model's
        passage costs its own tokens, whatever it is batched with."""
        return not (isinstance(self.model, StaticSentenceModel) or _is_static(self.model))

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` without special tokens, through the model's own tokenizer."""
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _encode(self, texts: Sequence[str], show_progress: bool = False, batches_in_order: bool = False) -> np.ndarray:
        self.encode_calls += 1
        self.encoded_texts += len(texts)
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        if batches_in_order:
            # sentence-transformers re-sorts each call by character count, which puts a Korean and an English
            # passage of the same token count far apart; one call per batch keeps the caller's batches.
            emb = np.concatenate([self._run(texts[i : i + self.batch_size], False)
                                  for i in range(0, len(texts), self.batch_size)])
        else:
            emb = self._run(texts, show_progress)
        emb = np.asarray(emb, dtype=np.float32)
        # Re-normalise in float32: fp16 models return vectors whose norm drifts from 1.
        norms = np.linalg.norm(emb, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        return np.ascontiguousarray(emb / norms, dtype=np.float32)

    def _run(self, texts: Sequence[str], show_progress: bool) -> np.ndarray:
        return self.model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=show_progress,
        )

    def encode_queries(self, queries: Sequence[str]) -> np.ndarray:
        """Embed questions with the query prefix; returns (n, dim) normalised float32."""
        return self._encode([self.query_prefix + q for q in queries])

    def encode_passages(self, passages: Sequence[str], show_progress: bool = False, *,
                        batches_in_order: bool = False) -> np.ndarray:
        """Embed passages with the passage prefix; returns (n, dim) normalised float32.

        ``batches_in_order``: the passages are already in the order to batch them (a build sorts them by
        token count, `passage_order`), so every `batch_size` consecutive passages go through the model
        together instead of the model's own sort by character count.
        """
        return self._encode([self.passage_prefix + p for p in passages], show_progress=show_progress,
                            batches_in_order=batches_in_order)


class _Exported(NamedTuple):
    model: Any
    revision: str
    device: str


def _is_static(st: Any) -> bool:
    """True for a loaded SentenceTransformer whose first module is a StaticEmbedding."""
    try:
        return type(st[0]).__name__ == "StaticEmbedding"
    except Exception:  # noqa: BLE001 - not indexable: not a SentenceTransformer
        return False


def _load_static(name: str, path: Path, backend: str) -> _Exported | None:
    """A StaticEmbedding model on numpy (static_runtime.py), whatever the backend; None for other models.

    A static model is a table lookup: ONNX Runtime has nothing to speed up, so the onnx backends say so
    in one line and run it here.
    """
    from digest_rag.dense.model_files import model_dir as files_of
    from digest_rag.dense.static_runtime import is_static_model, load_static_model

    files_dir = files_of(name)
    if files_dir is None or not is_static_model(files_dir):
        return None
    revision = _revision_of(path) if path.is_dir() else _hub_revision(name)
    model = load_static_model(files_dir) if revision is not None else None
    if model is None:
        log.info("static model %s needs sentence-transformers (layout numpy does not run)", name)
        return None
    if backend != "torch":
        log.warning("%s is a static embedding model (a table lookup): the %s backend runs it on numpy, "
                    "without ONNX Runtime", name, backend)
    return _Exported(model, str(revision), "cpu")


def _load_plain(name: str, path: Path) -> _Exported | None:
    """The model run through `transformers` alone (see transformers_runtime.py); None when it needs the full path."""
    from digest_rag.dense.model_files import model_dir as files_of
    from digest_rag.dense.torch_runtime import load_plain_model

    files_dir = files_of(name)  # the local directory, or the hub-cache snapshot; never the network
    if files_dir is None:
        return None
    revision = _revision_of(path) if path.is_dir() else _hub_revision(name)
    if revision is None:
        return None
    model = load_plain_model(files_dir, device="cpu")
    if model is None:
        return None
    configure_threads()
    return _Exported(model, revision, "cpu")


def _load_onnx_export(name: str, path: Path, device: str | None, backend: str) -> _Exported | None:
    """An existing ONNX export opened without torch or sentence-transformers; None when there is none yet.

    Query processes on an onnx index take this path: loading the model through
    sentence-transformers costs seconds of imports for weights ONNX Runtime
    does not use. The first load of a model (no export yet) returns None and
    goes through sentence-transformers, which exports.
    """
    from digest_rag.dense.model_files import model_dir as files_of
    from digest_rag.dense.onnx_runtime import default_device, load_exported

    files_dir = files_of(name)  # the local directory, or the hub-cache snapshot
    if files_dir is None:
        return None
    revision = _revision_of(path) if path.is_dir() else _hub_revision(name)
    if revision is None:
        return None
    model_dir = path if path.is_dir() else None  # part of the export key, as in Encoder.load's export path
    dev = device or default_device()
    configure_threads()
    model = load_exported(name, revision, model_dir, files_dir, int8=backend == "onnx-int8", device=dev)
    return _Exported(model, revision, dev) if model is not None else None


def _load_st(path_or_name: str, device: str, backend: str, *, local_only: bool, name: str, looked: list[str]) -> Any:
    from sentence_transformers import SentenceTransformer

    from digest_rag.dense.quiet import no_progress_bars

    # Reading weights from disk draws a "Loading weights" bar on stderr; a download keeps its bars.
    quiet = no_progress_bars() if local_only else nullcontext()
    try:
        with quiet:
            return SentenceTransformer(
                path_or_name,
                device=device,
                trust_remote_code=False,
                local_files_only=local_only,
            )
    except Exception as exc:  # sentence-transformers raises many types (OSError, ValueError, HTTP errors)
        cause = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelUnavailableError(model_unavailable_message(name, looked, cause[:200])) from exc


def _load_from_hub_or_cache(name: str, device: str, backend: str, looked: list[str]) -> Any:
    looked.append(f"Hugging Face cache {_cache_dir()}")
    try:
        return _load_st(name, device, backend, local_only=True, name=name, looked=looked)
    except ModelUnavailableError as cached_err:
        if _hub_offline():
            raise ModelUnavailableError(
                model_unavailable_message(name, looked + ["hub skipped: HF_HUB_OFFLINE=1"], "not in the local cache")
            ) from cached_err
    looked.append("the Hugging Face hub")
    reachable, why = _hub_reachable()
    if not reachable:
        # huggingface_hub retries for over a minute when offline; a quick probe fails in seconds.
        raise ModelUnavailableError(model_unavailable_message(name, looked, f"not in the local cache and the hub is unreachable: {why}"))
    return _load_st(name, device, backend, local_only=False, name=name, looked=looked)


_HUB_PROBE: tuple[bool, str] | None = None


def _hub_reachable(timeout: float = 3.0) -> tuple[bool, str]:
    """One TCP connect to the hub endpoint, remembered for the process."""
    global _HUB_PROBE
    if _HUB_PROBE is None:
        import socket
        from urllib.parse import urlparse

        try:
            from huggingface_hub import constants

            endpoint = str(constants.ENDPOINT)
        except Exception:  # pragma: no cover
            endpoint = "https://huggingface.co"
        url = urlparse(endpoint)
        host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80)
        try:
            with socket.create_connection((host, port), timeout=timeout):
                _HUB_PROBE = (True, "")
        except OSError as exc:
            _HUB_PROBE = (False, f"{host}:{port} ({exc.strerror or exc})")
    return _HUB_PROBE


def _hf_hub_cache() -> Path:
    """The Hugging Face hub cache directory, found as huggingface_hub's constants find it, without importing
    it (about 0.5 s): $HF_HUB_CACHE, else $HUGGINGFACE_HUB_CACHE, else $HF_HOME/hub, else
    $XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.environ[var]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME") or "~/.cache", "huggingface")
    return Path(home).expanduser() / "hub"


def _cached_hub_file(name: str, filename: str) -> Path | None:
    """``filename`` of hub model ``name``'s cached "main" snapshot, read from the cache's layout
    (models--OWNER--NAME/refs/main names the snapshot), as ``huggingface_hub.try_to_load_from_cache`` does."""
    repo = _hf_hub_cache() / ("models--" + name.replace("/", "--"))
    try:
        commit = (repo / "refs" / "main").read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    found = repo / "snapshots" / commit / filename
    return found if commit and found.is_file() else None


def _hub_revision(name: str) -> str | None:
    # A StaticEmbedding model has no config.json.
    found = _cached_hub_file(name, "config.json") or _cached_hub_file(name, "modules.json")
    return _revision_of(found.parent) if found is not None else None
