"""What a build needs to know about an embedding model, read from its files without loading it.

A rebuild whose passages are all in the embedding cache must not pay for
importing torch and sentence-transformers and loading the weights (about 8 s
of a 1%-changed rebuild on two cores): it only needs the model's identity
(name, revision), its embedding dimension, its maximum sequence length and
its tokenizer, to cut chunks exactly as a loaded model would. All four come
from small files of a sentence-transformers directory (local, or a snapshot
in the Hugging Face cache); the tokenizer is run by the `tokenizers` library
from ``tokenizer.json``, which is what the model's fast tokenizer wraps, so
token counts are the same.

Anything unusual (a module this reader does not know, several pooling modes,
no tokenizer.json) makes `inspect_model` return None, and the build loads
the model as before. Facts read here are checked against the encoder whenever
one does load (see digest_rag.build.pipeline).
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from digest_rag.build.chunking import TokenCounter
from digest_rag.dense.encoder import _hub_revision, _looks_like_path, _revision_of, resolve_model_name
from digest_rag.models import PASSAGE_PREFIX, QUERY_PREFIX

__all__ = ["ModelFacts", "inspect_model", "model_dir", "token_counter"]

# Module types of a plain text-embedding pipeline (their class names across sentence-transformers 2.x-6.x).
_TRANSFORMER = "Transformer"
_POOLING = "Pooling"
_DENSE = "Dense"
_HARMLESS = ("Normalize",)
_POOLING_MODES = ("pooling_mode_cls_token", "pooling_mode_mean_tokens", "pooling_mode_max_tokens",
                  "pooling_mode_mean_sqrt_len_tokens", "pooling_mode_weightedmean_tokens", "pooling_mode_lasttoken")


class ModelFacts(BaseModel):
    """A model as `Encoder.load` would report it: identity, width, input limit, prefixes."""

    model_config = ConfigDict(frozen=True)

    name: str
    revision: str
    path: str
    dimension: int
    max_seq_length: int
    query_prefix: str = QUERY_PREFIX
    passage_prefix: str = PASSAGE_PREFIX


def model_dir(model: str | os.PathLike[str] | None = None) -> Path | None:
    """The directory holding the model's files: a local directory, or its Hugging Face cache snapshot."""
    name = resolve_model_name(model)
    path = Path(name)
    if path.is_dir():
        return path
    if path.exists() or _looks_like_path(name):
        return None
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(name, "modules.json")
    except Exception:  # noqa: BLE001 - any failure means "not cheaply known": load the model instead
        return None
    return Path(found).parent if isinstance(found, str) else None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _dimension(root: Path, modules: list[dict[str, Any]], hidden: int | None) -> int | None:
    """The output width of the module pipeline, or None when it cannot be told from the files."""
    dim = hidden
    for mod in modules:
        kind = str(mod.get("type", "")).rsplit(".", 1)[-1]
        sub = root / str(mod.get("path", ""))
        if kind == _TRANSFORMER:
            continue
        if kind in _HARMLESS:
            continue
        cfg = _read_json(sub / "config.json")
        if not isinstance(cfg, dict):
            return None
        if kind == _POOLING:
            modes = [m for m in _POOLING_MODES if cfg.get(m)]
            if len(modes) > 1 or (modes and modes[0] not in ("pooling_mode_cls_token", "pooling_mode_mean_tokens",
                                                                "pooling_mode_max_tokens", "pooling_mode_lasttoken")):
                return None  # concatenated modes change the width; weighted modes need weights
            width = cfg.get("embedding_dimension", cfg.get("word_embedding_dimension"))
            if not isinstance(width, int):
                return None
            dim = width
        elif kind == _DENSE:
            width = cfg.get("out_features")
            if not isinstance(width, int):
                return None
            dim = width
        else:
            return None
    return dim


def inspect_model(model: str | os.PathLike[str] | None = None) -> ModelFacts | None:
    """The model's facts from its files, or None when they cannot be read with confidence."""
    name = resolve_model_name(model)
    root = model_dir(name)
    if root is None:
        return None
    static = _static_facts(name, root)
    if static is not None:
        return static
    modules = _read_json(root / "modules.json")
    config = _read_json(root / "config.json")
    if not isinstance(modules, list) or not modules or not isinstance(config, dict):
        return None
    if str(modules[0].get("type", "")).rsplit(".", 1)[-1] != _TRANSFORMER or modules[0].get("path", "") not in ("", "."):
        return None  # the transformer in a sub-directory: an older layout this reader does not follow
    if not (root / "tokenizer.json").is_file():
        return None
    hidden = config.get("hidden_size")
    dim = _dimension(root, modules, hidden if isinstance(hidden, int) else None)
    if dim is None:
        return None
    # sentence-transformers: an explicit max_seq_length, else the tokenizer's model_max_length capped
    # at the model's position embeddings.
    st_cfg = _read_json(root / "sentence_bert_config.json") or {}
    tok_cfg = _read_json(root / "tokenizer_config.json") or {}
    max_len = st_cfg.get("max_seq_length") if isinstance(st_cfg, dict) else None
    if not isinstance(max_len, int):
        max_len = tok_cfg.get("model_max_length") if isinstance(tok_cfg, dict) else None
        positions = config.get("max_position_embeddings")
        if not isinstance(max_len, int) or max_len > 1_000_000:
            max_len = positions if isinstance(positions, int) else None
        elif isinstance(positions, int):
            max_len = min(max_len, positions)
    if not isinstance(max_len, int) or max_len < 16:
        return None
    # Prompts configured in the model would change what the encoder sends; this reader assumes E5's.
    st_prompts = _read_json(root / "config_sentence_transformers.json") or {}
    if isinstance(st_prompts, dict):
        prompts = st_prompts.get("prompts") or {}
        if st_prompts.get("default_prompt_name") or (isinstance(prompts, dict) and any(prompts.values())):
            return None
    revision = _revision_of(root) if Path(name).is_dir() else (_hub_revision(name) or None)
    if revision is None:
        return None
    return ModelFacts(name=name, revision=revision, path=str(root), dimension=dim, max_seq_length=max_len)


def _static_facts(name: str, root: Path) -> ModelFacts | None:
    """A StaticEmbedding model's facts (static_runtime.py): the table's width, the fixed length, no prefixes."""
    from digest_rag.dense.static_runtime import STATIC_MAX_TOKENS, STATIC_PREFIX, static_layout

    layout = static_layout(root)
    if layout is None:
        return None
    revision = _revision_of(root) if Path(name).is_dir() else (_hub_revision(name) or None)
    if revision is None:
        return None
    return ModelFacts(name=name, revision=revision, path=str(root), dimension=int(layout["dimension"]),
                      max_seq_length=STATIC_MAX_TOKENS, query_prefix=STATIC_PREFIX, passage_prefix=STATIC_PREFIX)


@functools.lru_cache(maxsize=4)
def _tokenizer(path: str) -> Any:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(path)
    # The model's tokenizer.json may carry truncation/padding for batching; counting wants neither.
    tok.no_truncation()
    tok.no_padding()
    return tok


def token_counter(facts: ModelFacts) -> TokenCounter:
    """Tokens of a text without special tokens, as `Encoder.count_tokens` counts them, through `tokenizers` alone."""
    tok = _tokenizer(str(Path(facts.path) / "tokenizer.json"))

    def count(text: str) -> int:
        return len(tok.encode(text, add_special_tokens=False).ids)

    return count
