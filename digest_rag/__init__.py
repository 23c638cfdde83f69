"""digest_rag: find machine-learning papers across Korean and English digests.

Parse bilingual paper digests, chunk them, embed with multilingual E5, index
with FAISS and BM25 (Korean morphology by Kiwi), and search in Korean or English.

    >>> from digest_rag import DigestIndex
    >>> index = DigestIndex.build(["corpus"], index_dir="indexes/default")  # doctest: +SKIP
    >>> index.search("스케일링 법칙에 대한 논문", k=5)  # doctest: +SKIP
"""

from __future__ import annotations

from .build import BuildReport
from .chunking import chunk_paper, chunk_papers
from .corpus_report import CorpusReport, inspect_corpus
from .encoder import DEFAULT_MODEL, Encoder, resolve_model_name
from .errors import (
    CorpusError,
    DamagedIndexWarning,
    DigestRagError,
    EmptyQueryError,
    IncompatibleModelError,
    IndexCorruptedError,
    IndexLockedError,
    IndexNotFoundError,
    IndexVersionError,
    ModelFallbackWarning,
    ModelUnavailableError,
    ParseError,
    QueryTruncatedWarning,
    UnsafeIndexPathError,
    UsageError,
)
from .index import DigestIndex
from .models import (
    BuildOptions,
    Chunk,
    ChunkerSettings,
    IndexManifest,
    Paper,
    SearchHit,
    SearchResults,
    Section,
)
from .parsing import ParseResult, Skip, parse_file, parse_paths
from .version import __version__

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
    "IndexCorruptedError",
    "IndexLockedError",
    "IndexManifest",
    "IndexNotFoundError",
    "IndexVersionError",
    "ModelFallbackWarning",
    "ModelUnavailableError",
    "Paper",
    "ParseError",
    "ParseResult",
    "QueryTruncatedWarning",
    "SearchHit",
    "SearchResults",
    "Section",
    "Skip",
    "UnsafeIndexPathError",
    "UsageError",
    "__version__",
    "chunk_paper",
    "chunk_papers",
    "inspect_corpus",
    "parse_file",
    "parse_paths",
    "resolve_model_name",
]
