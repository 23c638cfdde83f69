"""Where a build's heavy stages run: in this process (``local``) or on a Ray cluster (``ray``).

The build pipeline (digest_rag.build.pipeline) does everything that decides what an
index holds: merging papers, looking passages up in the embedding cache,
BM25, the store, the manifest and the atomic commit. It hands four stages to
an engine, which decides only where they run:

- ``parse(paths)``: files to a merged `ParseResult` (as `parse_paths`);
- ``chunk(papers)``: papers to chunks, in order (as `chunk_papers`);
- ``encode(encoder, passages, on_batch)``: embed the cache misses, calling
  ``on_batch(positions, vectors)`` as each batch is done, so the caller can
  write it through the cache at once;
- ``build_faiss(ids, vectors, factory)``: the FAISS index (as `build_faiss`).

Both engines give the same results; the local one is today's single-process
path, the Ray one is in digest_rag.build.ray_engine (optional extra ``[ray]``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from digest_rag.build.chunking import TokenCounter, chunk_papers
from digest_rag.errors import UsageError
from digest_rag.models import BuildOptions, Chunk, ChunkerSettings, Paper
from digest_rag.parsing import ParseResult, Skip, check_strict
from digest_rag.dense.faiss_index import build_faiss
from digest_rag.models import ProgressCallback

if TYPE_CHECKING:  # pragma: no cover
    from digest_rag.build.parse_cache import ParseCache
    from digest_rag.build.spool import PaperSpool
    from digest_rag.dense.encoder import Encoder

BatchCallback = Callable[[np.ndarray, np.ndarray], None]


def encode_step(batch_size: int) -> int:
    """Passages per encode call, the same for every engine so batches (and so vectors) match."""
    return max(batch_size * 8, 256)


class BuildEngine(Protocol):
    """The stages of a build an engine runs (see the module docstring)."""

    #: Whether `parse_into` reads the files in this process, through the index's parse cache: a full build then
    #: drops the cache entries it did not use, which an engine that parses elsewhere must leave alone.
    parses_here: bool

    def parse_into(self, spool: PaperSpool, paths: list[str | Path], strict: bool, progress: ProgressCallback | None,
                   cache: ParseCache | None = None, listing: tuple[list[Path], list[Skip]] | None = None,
                   digests: Mapping[str, bytes] | None = None) -> None:
        """Parse ``paths`` into ``spool`` (``cache``, ``listing`` and ``digests`` as `PaperSpool.parse_paths`
        takes them, where the engine reads files here); `parsing.check_strict` applies ``strict``."""

    def chunk(self, papers: Sequence[Paper], settings: ChunkerSettings, count: TokenCounter, passage_prefix: str,
              model: str | None, progress: ProgressCallback | None) -> list[Chunk]: ...

    def encode(self, encoder: Encoder, passages: Sequence[str], on_batch: BatchCallback,
               progress: ProgressCallback | None) -> None: ...

    def build_faiss(self, ids: np.ndarray, vectors: np.ndarray, factory: str | None,
                    progress: ProgressCallback | None) -> tuple[object, str]: ...


class LocalEngine:
    """Every stage in this process."""

    parses_here = True

    def parse_into(self, spool: PaperSpool, paths: list[str | Path], strict: bool, progress: ProgressCallback | None,
                   cache: ParseCache | None = None, listing: tuple[list[Path], list[Skip]] | None = None,
                   digests: Mapping[str, bytes] | None = None) -> None:
        """Streamed into the spool file by file, through the parse cache."""
        spool.parse_paths(paths, progress, cache, listing=listing, digests=digests)
        check_strict(ParseResult(skipped=spool.skipped), strict)

    def chunk(self, papers: Sequence[Paper], settings: ChunkerSettings, count: TokenCounter, passage_prefix: str,
              model: str | None, progress: ProgressCallback | None) -> list[Chunk]:
        """`chunk_papers` with the caller's token counter (``model`` is for engines that count elsewhere)."""
        if progress:
            progress("chunking", 0, len(papers))
        chunks = chunk_papers(papers, settings, count, passage_prefix)
        if progress:
            progress("chunking", len(papers), len(papers))
        return chunks

    def encode(self, encoder: Encoder, passages: Sequence[str], on_batch: BatchCallback,
               progress: ProgressCallback | None) -> None:
        """Encode in steps of `encode_step` passages, handing each step to ``on_batch``."""
        step = encode_step(encoder.batch_size)
        total = len(passages)
        for start in range(0, total, step):
            if progress:
                progress("encoding", start, total)
            part = passages[start : start + step]
            on_batch(np.arange(start, start + len(part)), encoder.encode_passages(part, batches_in_order=True))
        if progress:
            progress("encoding", total, total)

    def build_faiss(self, ids: np.ndarray, vectors: np.ndarray, factory: str | None,
                    progress: ProgressCallback | None) -> tuple[object, str]:
        """`vectors.build_faiss` as it is."""
        return build_faiss(ids, vectors, factory)


@contextmanager
def open_engine(options: BuildOptions) -> Iterator[BuildEngine]:
    """The engine ``options.engine`` names, connected for the duration (Ray: joined or started, then released)."""
    if options.engine != "ray" and (options.ray_address or options.workers or options.gpus_per_worker):
        raise UsageError("--ray-address, --workers and --gpus-per-worker need --engine ray (engine=\"ray\")")
    if options.engine == "ray":
        from digest_rag.build.ray_engine import RayEngine, RayOptions

        ray_options = RayOptions(address=options.ray_address, workers=options.workers,
                                 gpus_per_worker=options.gpus_per_worker, device=options.device)
        with RayEngine(ray_options) as engine:
            yield engine
    else:
        yield LocalEngine()
