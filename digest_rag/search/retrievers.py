"""Retrievers: each ranks chunk ids for a query, behind one small interface.

Hybrid search asks each retriever, then fuses (fusion.py). The dense
retriever holds the FAISS index and loads its query encoder lazily, on the
first dense search; the lexical retriever wraps the BM25 index.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Protocol

from digest_rag.dense.encoder import Encoder, requested_model
from digest_rag.errors import (
    IncompatibleModelError,
    ModelFallbackWarning,
    ModelUnavailableError,
    UsageError,
)
from digest_rag.lexical.index import LexicalIndex
from digest_rag.lexical.terms import QueryTerms
from digest_rag.models import IndexManifest
from digest_rag.dense.faiss_index import search_faiss

Ranking = list[tuple[int, float]]


class Retriever(Protocol):
    """Anything that ranks chunk ids for a query."""

    name: str

    def search(self, query: QueryTerms, k: int, allowed_ids: set[int] | None) -> Ranking:
        """Top ``k`` (chunk id, score), best first, restricted to ``allowed_ids`` when given."""
        ...


class LexicalRetriever:
    """BM25 over chunks, with Korean analysis and glossary expansion (lexical.py)."""

    name = "lexical"

    def __init__(self, index: LexicalIndex) -> None:
        self.index = index

    def search(self, query: QueryTerms, k: int, allowed_ids: set[int] | None) -> Ranking:
        return self.index.search(query, k, allowed_ids)


class DenseRetriever:
    """Multilingual E5 query vectors against the FAISS index of passage vectors.

    The encoder is the index's model unless ``model`` (or $DIGEST_RAG_MODEL)
    names another, which must then have the same name and dimension. A model
    that cannot be loaded raises ModelUnavailableError on every search (the
    failure is remembered, not retried per query).
    """

    name = "dense"

    def __init__(
        self,
        faiss_index: object,
        manifest: IndexManifest,
        *,
        model: str | None = None,
        device: str | None = None,
        backend: str = "torch",
        encoder: Encoder | None = None,
    ) -> None:
        self.faiss_index = faiss_index
        self.manifest = manifest
        self._model_request = model
        self._device = device
        self._backend = backend
        self._error: ModelUnavailableError | None = None
        self._encoder: Encoder | None = None
        if encoder is not None:
            self._check(encoder)
            self._encoder = encoder

    def _check(self, encoder: Encoder) -> None:
        m = self.manifest
        if encoder.name != m.model_name:
            raise IncompatibleModelError(
                f"query model '{encoder.name}' differs from the index's model '{m.model_name}'; "
                f"search with the index's model or rebuild the index with --model {encoder.name}"
            )
        if encoder.dimension != m.dimension:
            raise IncompatibleModelError(
                f"query model dimension {encoder.dimension} differs from the index's {m.dimension}; rebuild the index"
            )

    @property
    def encoder(self) -> Encoder:
        """The query encoder, loaded on first use; raises ModelUnavailableError or IncompatibleModelError."""
        if self._encoder is None:
            if self._error is not None:
                raise self._error
            requested = requested_model(self._model_request, self.manifest.model_name)
            try:
                enc = Encoder.load(requested, device=self._device, backend=self._backend, light=True)
            except ModelUnavailableError as exc:
                self._error = exc
                raise
            self._check(enc)
            # Queries get the prefix the index was built for, whatever this version's default is.
            enc.query_prefix = self.manifest.query_prefix
            self._encoder = enc
        return self._encoder

    @property
    def loaded_encoder(self) -> Encoder | None:
        """The encoder if it is loaded already, else None (never loads it)."""
        return self._encoder

    def search(self, query: QueryTerms, k: int, allowed_ids: set[int] | None) -> Ranking:
        vector = self.encoder.encode_queries([query.text])[0]
        return search_faiss(self.faiss_index, vector, k, allowed_ids)


def lexical_only_error(index_dir: Path) -> UsageError:
    """The error for a dense request on an index built without vectors."""
    return UsageError(
        f"index {index_dir} was built lexical-only and has no vectors; use --mode lexical, or rebuild with a model"
    )


def retrievers_for(
    mode: str, dense: DenseRetriever | None, lexical: LexicalRetriever | None, index_dir: Path
) -> list[Retriever]:
    """The retrievers a search ``mode`` asks: dense, lexical or both (hybrid); dense on a lexical-only index is a
    UsageError, while hybrid there quietly uses BM25 alone."""
    if mode == "dense" and dense is None:
        raise lexical_only_error(index_dir)
    chosen: list[Retriever] = []
    if mode in ("dense", "hybrid") and dense is not None:
        chosen.append(dense)
    if mode in ("lexical", "hybrid") and lexical is not None:
        chosen.append(lexical)
    return chosen


def run_retrievers(retrievers: list[Retriever], mode: str, query: QueryTerms, n: int,
                   allowed: set[int] | None) -> dict[str, Ranking]:
    """Each retriever's (chunk id, score) ranking of ``query`` by name. When the encoder cannot be loaded in a
    hybrid search, warn (ModelFallbackWarning, at the caller of `DigestIndex.search`) and leave dense out."""
    rankings: dict[str, Ranking] = {}
    for retriever in retrievers:
        try:
            rankings[retriever.name] = retriever.search(query, n, allowed)
        except ModelUnavailableError as exc:
            if mode == "dense":
                raise
            warnings.warn(f"dense retrieval unavailable, answering from the lexical side: {exc}",
                          ModelFallbackWarning, stacklevel=3)
    return rankings
