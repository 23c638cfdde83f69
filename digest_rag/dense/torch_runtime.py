"""The torch backend without sentence-transformers: a saved model run on torch (and `transformers` if needed).

A search process on a torch index encodes one question. Loading the model through
sentence-transformers imports, besides torch and transformers, scikit-learn and
SciPy (sentence-transformers imports them at start): about 2 s of a CLI search's
start-up and a few hundred MiB, for code a query never runs. Most embedding models
saved by sentence-transformers, E5 among them, are a Transformer module followed by
a Pooling module (mean or CLS) and optionally a Normalize module: that pipeline is
small enough to run here, on the same weights, through `transformers.AutoModel`
and the model's `tokenizers` file, with sentence-transformers' truncation, padding
and pooling. The vectors equal sentence-transformers' (tests/test_transformers_runtime.py).

The Transformer itself runs on torch alone when it is a plain BERT/XLM-R
encoder (bert_encoder.py: no `transformers` import, about 1.3 s of a search
process, and only the question's word embedding rows read); other encoders go
through `transformers.AutoModel`. Batches are cut and normalised as
sentence-transformers cuts and normalises them, so on CPU the vectors are
sentence-transformers' to the bit, and builds with few passages to encode use
this path too (digest_rag.build.passage_model.LIGHT_ENCODE_LIMIT).

Any other layout (Dense layers, lower-casing, a missing fast tokenizer, remote
code) returns None from `load_plain_model`, and the caller loads the model
through sentence-transformers as before.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from digest_rag.dense.bert import BertEncoder, encoder_spec
from digest_rag.dense.onnx_runtime import FastTokenizer, SentenceModelSlice, pooling_from_files

log = logging.getLogger(__name__)

__all__ = ["PlainSentenceModel", "load_plain_model", "plain_layout"]

_TRANSFORMER = "Transformer"
_POOLING = "Pooling"
_NORMALIZE = "Normalize"


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _token_text(value: object) -> str | None:
    """A special token as tokenizer_config.json writes it: a string, or a dict with its "content"."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"]
    return None


def plain_layout(model_dir: Path) -> dict[str, Any] | None:
    """What `PlainSentenceModel` needs from a saved sentence-transformers directory, or None when it cannot run it.

    Runnable: modules.json lists a Transformer at the directory's root, a mean
    or CLS Pooling, and at most a Normalize after it; no lower-casing; a
    max_seq_length (sentence_bert_config.json) or model_max_length
    (tokenizer_config.json); tokenizer.json (a fast tokenizer); no remote code.
    """
    try:
        modules = _read_json(model_dir / "modules.json")
        kinds = [str(m.get("type", "")).rsplit(".", 1)[-1] for m in modules]
        if kinds not in ([_TRANSFORMER, _POOLING], [_TRANSFORMER, _POOLING, _NORMALIZE]) or modules[0].get("path"):
            return None
        pooling = pooling_from_files(model_dir)
        if pooling not in ("mean", "cls"):
            return None
        st_cfg = _read_json(model_dir / "sentence_bert_config.json")
        config = _read_json(model_dir / "config.json")
        if config.get("auto_map") or st_cfg.get("do_lower_case"):  # remote code is never run (nor trusted anywhere)
            return None
        tok_cfg_path = model_dir / "tokenizer_config.json"
        tok_cfg = _read_json(tok_cfg_path) if tok_cfg_path.is_file() else {}
        # sentence-transformers truncates at the tokenizer's model_max_length, which a max_seq_length in
        # sentence_bert_config.json (older saves, E5's among them) overrides.
        max_len = st_cfg.get("max_seq_length", tok_cfg.get("model_max_length"))
        if not isinstance(max_len, int) or not 0 < max_len <= 1_000_000:
            return None
        if not (model_dir / "tokenizer.json").is_file():
            return None
    except (OSError, ValueError, TypeError, AttributeError, IndexError):
        return None
    return {
        "pooling": pooling,
        "max_seq_length": max_len,
        "pad_token": _token_text(tok_cfg.get("pad_token")) or "[PAD]",
        "padding_side": str(tok_cfg.get("padding_side", "right")),
        "truncation_side": str(tok_cfg.get("truncation_side", "right")),
        "normalize": len(kinds) == 3,
    }


class PlainSentenceModel(SentenceModelSlice):
    """The SentenceTransformer slice run by `transformers` + `tokenizers`.

    Inputs are truncated to ``max_seq_length``, pooled over the attention mask
    (mean) or from the first token (CLS), and normalised where the model's
    Normalize module says so.
    """

    def __init__(self, model_dir: Path, layout: dict[str, Any], device: str = "cpu") -> None:
        import torch
        from tokenizers import Tokenizer

        serialized = (model_dir / "tokenizer.json").read_text(encoding="utf-8")
        pad_id = Tokenizer.from_str(serialized).token_to_id(layout["pad_token"])
        meta = {**layout, "pad_id": 0 if pad_id is None else int(pad_id), "pad_type_id": 0}
        self.tokenizer = FastTokenizer(serialized, meta)
        self.max_seq_length = int(layout["max_seq_length"])
        self._pooling = str(layout["pooling"])
        self._normalize = bool(layout["normalize"])
        self._torch = torch
        self._device = device
        spec = encoder_spec(model_dir) if device == "cpu" else None
        self.encoder: BertEncoder | None = None
        if spec is not None:
            try:
                self.encoder = BertEncoder(model_dir, spec)
            except (ValueError, OSError) as exc:  # weights not as the config says: let transformers read them
                log.info("torch-only encoder of %s unusable (%s); loading it through transformers", model_dir, exc)
        if self.encoder is not None:
            self.model = None
            self._dimension = self.encoder.spec.hidden_size
        else:
            from transformers import AutoModel

            from digest_rag.dense.quiet import no_progress_bars

            with no_progress_bars():  # a local read: no "Loading weights" bar on stderr
                self.model = AutoModel.from_pretrained(str(model_dir), local_files_only=True, trust_remote_code=False)
            self.model.eval()
            self.model.to(device)
            self._dimension = int(self.model.config.hidden_size)

    def _encode_texts(self, texts: list[str], batch_size: int, normalize_embeddings: bool) -> np.ndarray:
        """`encode` as `SentenceTransformer.encode` does it: (n, dim) float32.

        Same batches (``np.argsort`` of the negated lengths, so ties fall as they do
        there) and the same torch normalisation, so that a batch's vectors come out
        as sentence-transformers' would, to the bit where the encoder's kernels agree.
        """
        torch = self._torch
        if not texts:
            return np.zeros((0, self._dimension), dtype=np.float32)
        order = np.argsort([-len(t) for t in texts])
        parts = []
        for start in range(0, len(texts), batch_size):
            emb = self._embed_tensor([texts[i] for i in order[start : start + batch_size]])
            if normalize_embeddings:
                emb = torch.nn.functional.normalize(emb, p=2, dim=1)
            parts.append(emb)
        ordered = torch.cat(parts)[torch.from_numpy(np.argsort(order))]
        return ordered.float().numpy()

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        return self._embed_tensor(texts).float().numpy()

    def _embed_tensor(self, texts: list[str]) -> Any:
        torch = self._torch
        ids, mask = self.tokenizer.encode_batch(texts)
        mask_t = torch.from_numpy(mask).to(self._device)
        with torch.inference_mode():
            if self.encoder is not None:
                hidden = self.encoder(torch.from_numpy(ids), mask_t)
            else:
                hidden = self.model(input_ids=torch.from_numpy(ids).to(self._device),
                                    attention_mask=mask_t).last_hidden_state
            if self._pooling == "cls":
                emb = hidden[:, 0]
            else:
                m = mask_t.unsqueeze(-1).to(hidden.dtype)
                emb = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
            if self._normalize:
                emb = torch.nn.functional.normalize(emb, p=2, dim=1)
            return emb.cpu()


def load_plain_model(model_dir: Path, device: str = "cpu") -> PlainSentenceModel | None:
    """The model in ``model_dir`` run without sentence-transformers, or None when its layout needs it."""
    layout = plain_layout(model_dir)
    if layout is None:
        return None
    try:
        return PlainSentenceModel(model_dir, layout, device=device)
    except Exception as exc:  # transformers raises many types on odd checkpoints; fall back, never fail here
        log.info("plain transformers load of %s failed (%s); loading through sentence-transformers", model_dir, exc)
        return None
