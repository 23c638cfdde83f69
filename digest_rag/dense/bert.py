"""A BERT / XLM-RoBERTa encoder run on torch alone, from the model's safetensors file.

Why this exists: a search process on a torch index encodes one question, and
loading the encoder through `transformers` costs about 1.3 s of imports on two
cores (its auto classes, `modeling_utils` pulling torch.distributed and dynamo,
SciPy through its loss module) before any weight is read, plus the whole word
embedding matrix (250,037 x 384 floats, 384 MB, for multilingual E5) that a
question of twenty tokens uses twenty rows of. Importing the model class
module directly was measured slower still (it imports the same machinery).

An absolute-position BERT encoder is a few dozen lines of torch: embeddings
(word + token type + position, LayerNorm), then per layer scaled dot-product
self-attention with the padding mask, a residual LayerNorm, a GELU
feed-forward and another residual LayerNorm. This module runs exactly that,
with the same torch operations `transformers` uses (``F.linear``,
``F.scaled_dot_product_attention``, ``F.layer_norm``, the exact erf GELU), on
the same float32 weights, so its hidden states equal `transformers`' to
float rounding (tests/test_bert_encoder.py compares against
sentence-transformers at 1e-5). Word embedding rows are read on demand from the
memory-mapped safetensors file (`safetensors.safe_open`), so only the rows a
batch uses are ever copied.

Only the plain case runs here: ``model_type`` ``bert``, ``xlm-roberta`` or
``roberta``, absolute positions, the ``gelu`` activation, an encoder (no
decoder, no cross-attention), one ``model.safetensors`` of float32 weights with
every tensor where it is expected. Anything else makes `encoder_spec` return
None and the caller loads the model through `transformers` as before.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

__all__ = ["BertEncoder", "BertSpec", "encoder_spec"]

WEIGHTS_FILE = "model.safetensors"
#: Architectures whose encoder is the BERT one; RoBERTa's differ only in how position ids are numbered.
_ROBERTA_TYPES = ("xlm-roberta", "roberta")
_MODEL_TYPES = ("bert", *_ROBERTA_TYPES)
_WORDS = "embeddings.word_embeddings.weight"
#: Up to this many distinct tokens in a batch, word embedding rows are read one by one from the mapped file
#: (a question: ~20 rows of E5's 250,037); past it the whole matrix is read once and kept.
ROWS_READ_ONE_BY_ONE = 512
_LAYER_TENSORS = (
    "attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
    "intermediate.dense", "output.dense",
)
_LAYER_NORMS = ("attention.output.LayerNorm", "output.LayerNorm")


class BertSpec(BaseModel):
    """The shape of a plain BERT-family encoder, read from its config.json."""

    model_config = ConfigDict(frozen=True)

    model_type: str
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    layer_norm_eps: float
    pad_token_id: int
    #: RoBERTa numbers positions from pad_token_id + 1 and skips padding; BERT counts from 0.
    roberta_positions: bool


def encoder_spec(model_dir: Path) -> BertSpec | None:
    """The encoder's spec when `BertEncoder` can run it exactly, else None (use `transformers`)."""
    try:
        config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
        if not (model_dir / WEIGHTS_FILE).is_file():
            return None
        model_type = config.get("model_type")
        plain = (
            model_type in _MODEL_TYPES
            and config.get("position_embedding_type", "absolute") == "absolute"
            and config.get("hidden_act", "gelu") == "gelu"
            and not config.get("is_decoder")
            and not config.get("add_cross_attention")
            and not config.get("auto_map")
            and config.get("dtype", config.get("torch_dtype", "float32")) in ("float32", None)
        )
        if not plain:
            return None
        hidden, heads = int(config["hidden_size"]), int(config["num_attention_heads"])
        if hidden % heads:
            return None
        return BertSpec(
            model_type=str(model_type),
            hidden_size=hidden,
            num_hidden_layers=int(config["num_hidden_layers"]),
            num_attention_heads=heads,
            layer_norm_eps=float(config.get("layer_norm_eps", 1e-12)),
            pad_token_id=int(config.get("pad_token_id", 0) or 0),
            roberta_positions=model_type in _ROBERTA_TYPES,
        )
    except (OSError, ValueError, TypeError, KeyError):
        return None


def _prefix(keys: list[str]) -> str | None:
    """The name prefix the weights are saved under ("" for a bare encoder, "bert." or "roberta." for a head model)."""
    found = [k[: -len(_WORDS)] for k in keys if k.endswith(_WORDS)]
    return found[0] if len(found) == 1 else None


class BertEncoder:
    """The hidden states of a BERT-family encoder, computed by torch from the weights in ``model_dir``.

    Raises ValueError when the weights are not what `spec` describes (a missing
    tensor, another dtype or shape); callers then fall back to `transformers`.
    """

    def __init__(self, model_dir: Path, spec: BertSpec) -> None:
        import torch
        from safetensors import safe_open

        self.spec = spec
        self._torch = torch
        # The file stays open (memory-mapped) for the word embedding rows read per batch.
        self._file = safe_open(str(model_dir / WEIGHTS_FILE), framework="pt", device="cpu")
        keys = list(self._file.keys())
        prefix = _prefix(keys)
        if prefix is None:
            raise ValueError("no single word embedding matrix in the weights")
        self._prefix = prefix
        self._words = self._file.get_slice(prefix + _WORDS)
        vocab, width = self._words.get_shape()
        if width != spec.hidden_size or self._words.get_dtype() != "F32":
            raise ValueError(f"word embeddings are {self._words.get_dtype()} {vocab}x{width}")
        self.vocab_size = int(vocab)
        self._all_words: Any = None
        self._w: dict[str, Any] = {}
        names = ["embeddings.position_embeddings.weight", "embeddings.token_type_embeddings.weight",
                 "embeddings.LayerNorm.weight", "embeddings.LayerNorm.bias"]
        for i in range(spec.num_hidden_layers):
            for t in (*_LAYER_TENSORS, *_LAYER_NORMS):
                names += [f"encoder.layer.{i}.{t}.weight", f"encoder.layer.{i}.{t}.bias"]
        for name in names:
            if prefix + name not in keys:
                raise ValueError(f"weights lack {name}")
            tensor = self._file.get_tensor(prefix + name)
            if tensor.dtype != torch.float32:
                raise ValueError(f"{name} is {tensor.dtype}, not float32")
            self._w[name] = tensor
        if self._w["embeddings.LayerNorm.weight"].shape != (spec.hidden_size,):
            raise ValueError("embedding LayerNorm does not match hidden_size")
        self.max_positions = int(self._w["embeddings.position_embeddings.weight"].shape[0])

    def _word_rows(self, input_ids: Any) -> Any:
        """Word embeddings of ``input_ids`` (B, S), reading only the distinct rows from the mapped file."""
        torch = self._torch
        unique, inverse = torch.unique(input_ids, return_inverse=True)
        ids = unique.tolist()
        if ids and (ids[0] < 0 or ids[-1] >= self.vocab_size):
            raise ValueError(f"token id outside the vocabulary of {self.vocab_size}")
        if self._all_words is None and len(ids) > ROWS_READ_ONE_BY_ONE:
            # Many distinct tokens (a build's batch of passages): one read of the matrix beats row reads.
            self._all_words = self._file.get_tensor(self._prefix + _WORDS)
        if self._all_words is not None:
            return torch.nn.functional.embedding(input_ids, self._all_words)
        rows = torch.cat([self._words[i : i + 1] for i in ids]) if ids else \
            torch.zeros((0, self.spec.hidden_size), dtype=torch.float32)
        return rows[inverse]

    def _positions(self, input_ids: Any) -> Any:
        torch = self._torch
        seq = input_ids.shape[1]
        if not self.spec.roberta_positions:
            return torch.arange(seq, dtype=torch.long).unsqueeze(0)
        # transformers' create_position_ids_from_input_ids: padding keeps pad_token_id, tokens count from it + 1.
        pad = self.spec.pad_token_id
        not_pad = input_ids.ne(pad).int()
        return (torch.cumsum(not_pad, dim=1).type_as(not_pad) * not_pad).long() + pad

    def __call__(self, input_ids: Any, attention_mask: Any) -> Any:
        """Last hidden states (B, S, hidden) for int64 ``input_ids`` and ``attention_mask`` of shape (B, S)."""
        torch = self._torch
        F = torch.nn.functional
        spec, w = self.spec, self._w
        batch, seq = input_ids.shape
        positions = self._positions(input_ids)
        if int(positions.max()) >= self.max_positions:
            raise ValueError(f"input of {seq} tokens is longer than the model's {self.max_positions} positions")
        eps = spec.layer_norm_eps
        width = spec.hidden_size
        heads = spec.num_attention_heads
        head_dim = width // heads
        with torch.inference_mode():
            # Same order of additions as transformers' embeddings: words + token type, then + positions.
            x = self._word_rows(input_ids) + w["embeddings.token_type_embeddings.weight"][0]
            x = x + F.embedding(positions, w["embeddings.position_embeddings.weight"])
            x = F.layer_norm(x, (width,), w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
            # As transformers builds it for SDPA: none without padding, else a boolean (B, 1, S, S) mask of the keys.
            mask = None if bool(attention_mask.all()) else \
                attention_mask.bool()[:, None, None, :].expand(batch, 1, seq, seq)
            for i in range(spec.num_hidden_layers):
                p = f"encoder.layer.{i}."

                def lin(x: Any, name: str, p: str = p) -> Any:
                    return F.linear(x, w[p + name + ".weight"], w[p + name + ".bias"])

                def norm(x: Any, name: str, p: str = p) -> Any:
                    return F.layer_norm(x, (width,), w[p + name + ".weight"], w[p + name + ".bias"], eps)

                q, k, v = (lin(x, f"attention.self.{n}").view(batch, seq, heads, head_dim).transpose(1, 2)
                           for n in ("query", "key", "value"))
                att = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=head_dim**-0.5)
                att = att.transpose(1, 2).reshape(batch, seq, width)
                x = norm(lin(att, "attention.output.dense") + x, "attention.output.LayerNorm")
                x = norm(lin(F.gelu(lin(x, "intermediate.dense")), "output.dense") + x, "output.LayerNorm")
            return x
