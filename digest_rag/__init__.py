"""digest_rag: find machine-learning papers across Korean and English digests.

Parse bilingual paper digests, chunk them, embed with multilingual E5, index
with FAISS and BM25 (Korean morphology by Kiwi), and search in Korean or English.

    >>> from digest_rag import DigestIndex
    >>> index = DigestIndex.build(["corpus"], index_dir="indexes/default")  # doctest: +SKIP
    >>> index.search("스케일링 법칙에 대한 논문", k=5)  # doctest: +SKIP
"""

from __future__ import annotations

__version__ = "0.1.0"

from .chunking import chunk_paper, chunk_papers  # noqa: E402
from .encoder import DEFAULT_MODEL, Encoder, resolve_model_name  # noqa: E402
from .errors import (  # noqa: E402
    CorpusError,
    DigestRagError,
    EmptyQueryError,
    IncompatibleModelError,
    IndexCorruptedError,
    IndexLockedError,
    IndexNotFoundError,
    IndexVersionError,
    ModelUnavailableError,
    ParseError,
    UnsafeIndexPathError,
    UsageError,
)
from .index import (  # noqa: E402
    BuildReport,
    DamagedIndexWarning,
    DigestIndex,
    ModelFallbackWarning,
    QueryTruncatedWarning,
)
from .models import Chunk, ChunkerSettings, IndexManifest, Paper, SearchHit, SearchResults, Section  # noqa: E402
from .parsing import ParseResult, Skip, parse_file, parse_paths  # noqa: E402

__all__ = [
    "DEFAULT_MODEL",
    "BuildReport",
    "Chunk",
    "ChunkerSettings",
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
    "parse_file",
    "parse_paths",
    "resolve_model_name",
]
