"""Static embedding models (sentence-transformers' ``StaticEmbedding``) run on numpy alone.

A StaticEmbedding model is a token table: a text's vector is the mean of the
rows of its tokens (``torch.nn.EmbeddingBag(mode="mean")`` over the ids of the
model's own `tokenizers` tokenizer, without special tokens). Saved by
sentence-transformers it is a directory holding ``modules.json`` (one
StaticEmbedding module at the root, optionally a Normalize after it),
``tokenizer.json`` and ``model.safetensors`` (one tensor, ``embedding.weight``).

Such a model has no input limit (sentence-transformers reports
``max_seq_length = inf``); an index still cuts passages, so the encoder
reports `STATIC_MAX_TOKENS` as its length, the chunker's default cap.
It reads no instruction prefix either: the E5 "query: " / "passage: " words
would only add the same vector to every query and every passage, so static
models are encoded with empty prefixes (`STATIC_PREFIX`).

Every backend runs it here: the table lookup is what torch would do, no ONNX
graph would be faster, and neither torch nor sentence-transformers is imported
(a query is encoded in microseconds after a load of tens of milliseconds).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from digest_rag.dense.onnx_runtime import SentenceModelSlice

__all__ = ["STATIC_MAX_TOKENS", "STATIC_PREFIX", "StaticLayout", "StaticSentenceModel", "TokenizerCounter",
           "is_static_model", "static_layout"]

#: The input length a static model reports: the chunker's default cap (static models have none of their own).
STATIC_MAX_TOKENS = 512
#: The prefix queries and passages get with a static model.
STATIC_PREFIX = ""
WEIGHTS_FILE = "model.safetensors"
WEIGHTS_KEY = "embedding.weight"
_STATIC = "StaticEmbedding"
_NORMALIZE = "Normalize"


def _module_kinds(model_dir: Path) -> list[tuple[str, str]] | None:
    try:
        modules = json.loads((model_dir / "modules.json").read_text(encoding="utf-8"))
        return [(str(m.get("type", "")).rsplit(".", 1)[-1], str(m.get("path", ""))) for m in modules]
    except (OSError, ValueError, TypeError, AttributeError):
        return None


def is_static_model(model_dir: Path) -> bool:
    """True when the directory's first module is a StaticEmbedding (whatever follows it)."""
    kinds = _module_kinds(model_dir)
    return bool(kinds) and kinds[0][0] == _STATIC  # type: ignore[index]


class StaticLayout(dict):  # type: ignore[type-arg]
    """What `static_layout` read: ``vocab``, ``dimension``, ``normalize``."""


def static_layout(model_dir: Path) -> StaticLayout | None:
    """The table's shape when numpy can run the directory's model exactly, else None.

    Runnable: modules.json is a StaticEmbedding at the root and at most a
    Normalize after it; tokenizer.json; model.safetensors with one float32
    ``embedding.weight`` matrix whose rows match the tokenizer's vocabulary.
    """
    kinds = _module_kinds(model_dir)
    if not kinds or kinds[0] != (_STATIC, "") or [k for k, _ in kinds[1:]] not in ([], [_NORMALIZE]):
        return None
    if not (model_dir / "tokenizer.json").is_file() or not (model_dir / WEIGHTS_FILE).is_file():
        return None
    try:
        from safetensors import safe_open

        with safe_open(str(model_dir / WEIGHTS_FILE), framework="numpy") as f:
            if WEIGHTS_KEY not in f.keys():
                return None
            table = f.get_slice(WEIGHTS_KEY)
            shape = table.get_shape()
            if table.get_dtype() != "F32" or len(shape) != 2:
                return None
    except Exception:  # noqa: BLE001 - safetensors raises its own error types on a bad header
        return None
    return StaticLayout(vocab=int(shape[0]), dimension=int(shape[1]), normalize=len(kinds) == 2)


class TokenizerCounter:
    """A `tokenizers.Tokenizer` called like a Hugging Face tokenizer (``tok(text, add_special_tokens=False)``)."""

    def __init__(self, tokenizer: Any) -> None:
        self._tok = tokenizer

    def __call__(self, text: str, add_special_tokens: bool = True, **_: Any) -> dict[str, list[int]]:
        return {"input_ids": self._tok.encode(text, add_special_tokens=add_special_tokens).ids}

    def encode_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text, no special tokens (what StaticEmbedding averages)."""
        return [e.ids for e in self._tok.encode_batch(list(texts), add_special_tokens=False)]


class StaticSentenceModel(SentenceModelSlice):
    """The SentenceTransformer slice of a StaticEmbedding model: mean of token rows, on numpy."""

    def __init__(self, model_dir: Path, layout: StaticLayout) -> None:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        tok.no_truncation()
        tok.no_padding()
        self.tokenizer = TokenizerCounter(tok)
        self.table = np.ascontiguousarray(load_file(str(model_dir / WEIGHTS_FILE))[WEIGHTS_KEY], dtype=np.float32)
        if self.table.shape != (layout["vocab"], layout["dimension"]):
            raise ValueError(f"embedding table is {self.table.shape}, expected {layout['vocab']}x{layout['dimension']}")
        self.max_seq_length = STATIC_MAX_TOKENS
        self._dimension = int(layout["dimension"])
        self._normalize = bool(layout["normalize"])

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        ids = self.tokenizer.encode_ids(texts)
        out = np.zeros((len(texts), self._dimension), dtype=np.float32)
        for i, row in enumerate(ids):
            if row:  # an empty bag is the zero vector, as EmbeddingBag gives it
                out[i] = self.table[row].mean(axis=0)
        if self._normalize:
            norms = np.linalg.norm(out, axis=1, keepdims=True)
            norms[norms == 0] = 1.0
            out = out / norms
        return out


def load_static_model(model_dir: Path) -> StaticSentenceModel | None:
    """The StaticEmbedding model in ``model_dir`` on numpy, or None when its layout needs sentence-transformers."""
    layout = static_layout(model_dir)
    if layout is None:
        return None
    try:
        return StaticSentenceModel(model_dir, layout)
    except Exception:  # noqa: BLE001 - a table that does not match its header: let sentence-transformers try
        return None
