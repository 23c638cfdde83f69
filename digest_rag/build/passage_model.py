"""The model a build embeds passages with: its facts read from files, the encoder loaded only when a passage must be encoded."""

from __future__ import annotations

import warnings
from typing import Any

from digest_rag.dense.embedding_cache import ModelIdentity
from digest_rag.dense.encoder import Encoder, requested_model
from digest_rag.dense.model_files import ModelFacts, inspect_model, token_counter
from digest_rag.errors import (
    ModelFallbackWarning,
    ModelUnavailableError,
)
from digest_rag.models import (
    BuildOptions,
    IndexManifest,
)


# ------------------------------------------------------------------ the pipeline
class ModelFactsDiffer(Exception):
    """The model read from its files is not the model that loaded: plan again with the loaded one."""

    def __init__(self, encoder: Encoder) -> None:
        super().__init__("model files and loaded model disagree")
        self.encoder = encoder


#: A build with at most this many passages to encode loads its encoder the light way (see `PassageModel.encoder`).
LIGHT_ENCODE_LIMIT = 256


class PassageModel:
    """A build's embedding model: what it is, and its encoder, loaded only when a passage must be encoded.

    A rebuild whose passages are all in the embedding cache needs the model's
    name, revision, dimension, input limit and tokenizer, which
    `model_files.inspect_model` reads from its files; it then never imports
    torch or sentence-transformers. Facts read that way are checked against
    the encoder whenever it does load.
    """

    def __init__(self, *, options: BuildOptions, encoder: Encoder | None = None, facts: ModelFacts | None = None) -> None:
        if encoder is None and facts is None:
            raise ValueError("a passage model needs an encoder or the model's facts")
        self._options = options
        self._encoder = encoder
        self._facts = facts
        self.loaded_here = False
        src: Any = encoder if encoder is not None else facts
        self.name: str = src.name
        self.revision: str = src.revision
        self.dimension: int = int(src.dimension)
        self.max_seq_length: int = int(src.max_seq_length)
        self.query_prefix: str = src.query_prefix
        self.passage_prefix: str = src.passage_prefix
        self.backend: str = encoder.backend if encoder is not None else options.backend
        self._count = encoder.count_tokens if encoder is not None else token_counter(facts)  # type: ignore[arg-type]

    @property
    def identity(self) -> ModelIdentity:
        """The embedding cache's key for this model."""
        return ModelIdentity.of(self, self.backend)

    @property
    def loaded(self) -> Encoder | None:
        """The encoder, if it has been loaded (or was given)."""
        return self._encoder

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` without special tokens (the chunker's budget unit)."""
        return self._count(text)

    def encoder(self, to_encode: int | None = None) -> Encoder:
        """The encoder, loaded on first call.

        With at most `LIGHT_ENCODE_LIMIT` passages ``to_encode`` it loads the
        light way (`Encoder.load(light=True)`: torch alone, no
        sentence-transformers or transformers imports), whose vectors are
        sentence-transformers' to the bit (tests/test_bert_encoder.py); a
        1%-changed rebuild then does not pay seconds of imports for a few dozen
        passages. Larger builds load sentence-transformers, whose load cost is
        small beside their encoding.
        """
        if self._encoder is None:
            opts = self._options
            light = to_encode is not None and to_encode <= LIGHT_ENCODE_LIMIT
            enc = Encoder.load(self.name, device=opts.device, batch_size=opts.batch_size, backend=opts.backend,
                               light=light)
            self.loaded_here = True
            seen = (enc.name, enc.revision, enc.dimension, enc.max_seq_length, enc.passage_prefix)
            if seen != (self.name, self.revision, self.dimension, self.max_seq_length, self.passage_prefix):
                raise ModelFactsDiffer(enc)
            self._encoder = enc
        return self._encoder


def passage_model(options: BuildOptions, old: IndexManifest | None, encoder: Encoder | None,
                   lexical_only: bool) -> PassageModel | None:
    """The build's model: the given encoder, else facts from the model's files, else the loaded model."""
    if encoder is not None:
        return PassageModel(options=options, encoder=encoder)
    if lexical_only:
        return None
    explicit = requested_model(options.model, old.model_name if old else None)
    facts = inspect_model(explicit)
    if facts is not None:
        return PassageModel(options=options, facts=facts)
    loaded = load_encoder(options, old)
    return PassageModel(options=options, encoder=loaded) if loaded is not None else None


def load_encoder(options: BuildOptions, old: IndexManifest | None) -> Encoder | None:
    """The passage encoder; None (lexical-only, with a warning) when the default model cannot be had."""
    explicit = requested_model(options.model, old.model_name if old else None)
    try:
        return Encoder.load(explicit, device=options.device, batch_size=options.batch_size, backend=options.backend)
    except ModelUnavailableError as exc:
        if explicit:
            raise
        warnings.warn(f"building a lexical-only index: {exc}", ModelFallbackWarning, stacklevel=6)
        return None
