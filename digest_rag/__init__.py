"""digest_rag: find machine-learning papers across Korean and English digests.

Parse bilingual paper digests, chunk them, embed with multilingual E5, index
with FAISS and BM25 (Korean morphology by Kiwi), and search in Korean or English.

    >>> from digest_rag import DigestIndex
    >>> index = DigestIndex.build(["corpus"], index_dir="indexes/default")  # doctest: +SKIP
    >>> index.search("스케일링 법칙에 대한 논문", k=5)  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from digest_rag.version import __version__

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs; at run time names load on first use
    from digest_rag.build.report import BuildReport
    from digest_rag.build.chunking import chunk_paper, chunk_papers
    from digest_rag.build.corpus_report import CorpusReport, inspect_corpus
    from digest_rag.dense.encoder import DEFAULT_MODEL, Encoder, resolve_model_name
    from digest_rag.errors import (
        CorpusError,
        DamagedIndexWarning,
        DigestRagError,
        EmptyQueryError,
        IncompatibleModelError,
        IndexClosedError,
        IndexCorruptedError,
        IndexLockedError,
        IndexNotFoundError,
        IndexVersionError,
        IndexWriteError,
        FusionCalibrationWarning,
        ModelFallbackWarning,
        ModelUnavailableError,
        PaperNotFoundError,
        ParseError,
        QueryTruncatedWarning,
        UnsafeIndexPathError,
        UsageError,
    )
    from digest_rag.index import DigestIndex
    from digest_rag.models import BuildOptions, Chunk, ChunkerSettings, FusionCalibration, IndexManifest, Paper, SearchHit, SearchResults, Section
    from digest_rag.parsing import ParseResult, Skip, parse_file, parse_paths
    from digest_rag.evaluation.variants import VariantReport, apply_variant, export_variant
    from digest_rag.dense.training.trainer import TrainOptions, TrainReport, train_encoder

# Public name -> the submodule defining it, imported on first access (PEP 562): `import digest_rag` or
# `from digest_rag.frontends.cli import ...` must not pay for the build pipeline, the encoder, FAISS wrappers or the
# parsers that a given command never touches (a lexical `digest-rag search` process starts much faster).
_LAZY: dict[str, str] = {
    "BuildReport": "build.report",
    **dict.fromkeys(("chunk_paper", "chunk_papers"), "build.chunking"),
    **dict.fromkeys(("CorpusReport", "inspect_corpus"), "build.corpus_report"),
    **dict.fromkeys(("DEFAULT_MODEL", "Encoder", "resolve_model_name"), "dense.encoder"),
    **dict.fromkeys(
        ("CorpusError", "DamagedIndexWarning", "DigestRagError", "EmptyQueryError", "IncompatibleModelError",
         "IndexClosedError", "IndexCorruptedError", "IndexLockedError", "IndexNotFoundError", "IndexVersionError",
         "IndexWriteError", "FusionCalibrationWarning", "ModelFallbackWarning",
         "ModelUnavailableError", "PaperNotFoundError", "ParseError", "QueryTruncatedWarning", "UnsafeIndexPathError", "UsageError"),
        "errors",
    ),
    "DigestIndex": "index",
    **dict.fromkeys(
        ("BuildOptions", "Chunk", "ChunkerSettings", "FusionCalibration", "IndexManifest", "Paper", "SearchHit", "SearchResults", "Section"),
        "models",
    ),
    **dict.fromkeys(("ParseResult", "Skip", "parse_file", "parse_paths"), "parsing"),
    **dict.fromkeys(("VariantReport", "apply_variant", "export_variant"), "evaluation.variants"),
    **dict.fromkeys(("TrainOptions", "TrainReport", "train_encoder"), "dense.training.trainer"),
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "DEFAULT_MODEL",
    "BuildOptions",
    "BuildReport",
    "Chunk",
    "ChunkerSettings",
    "CorpusReport",
    "CorpusError",
    "DamagedIndexWarning",
    "DigestIndex",
    "DigestRagError",
    "EmptyQueryError",
    "Encoder",
    "IncompatibleModelError",
    "IndexClosedError",
    "IndexCorruptedError",
    "IndexLockedError",
    "FusionCalibration",
    "IndexManifest",
    "IndexNotFoundError",
    "IndexVersionError",
    "IndexWriteError",
    "FusionCalibrationWarning",
    "ModelFallbackWarning",
    "ModelUnavailableError",
    "Paper",
    "PaperNotFoundError",
    "ParseError",
    "ParseResult",
    "QueryTruncatedWarning",
    "SearchHit",
    "SearchResults",
    "Section",
    "Skip",
    "TrainOptions",
    "TrainReport",
    "UnsafeIndexPathError",
    "UsageError",
    "VariantReport",
    "__version__",
    "apply_variant",
    "chunk_paper",
    "chunk_papers",
    "export_variant",
    "inspect_corpus",
    "parse_file",
    "parse_paths",
    "resolve_model_name",
    "train_encoder",
]
