"""The build pipeline: parse -> merge -> chunk -> embed (through the cache) -> write a generation -> commit.

Every option a build takes lives in one pydantic model, `BuildOptions`, which
is saved in manifest.json. ``update`` and a plain re-``build`` read it back,
so an index keeps its chunker settings, FAISS factory, backend and kind unless
the caller overrides one explicitly; an override that changes what the
vectors mean (model, chunker, int8 vs float weights) re-encodes, one that
does not (factory, batch size, device) reuses every embedding.

The caller (`DigestIndex.build` / `DigestIndex.update`) gets a `BuildOutcome`
and opens the committed generation from it; nothing here imports the facade.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field, ValidationError

from .chunking import approx_token_count, passage_text
from .encoder import MODEL_ENV, Encoder, model_identity
from .engines import BuildEngine, LocalEngine, open_engine
from .errors import (
    CorpusError,
    DamagedIndexWarning,
    IncompatibleModelError,
    IndexCorruptedError,
    ModelFallbackWarning,
    ModelUnavailableError,
    index_write_errors,
)
from .generation import OpenGeneration, PendingGeneration, collect_garbage, open_generation, pause_point
from .layout import (
    FAISS_FILE,
    FORMAT_VERSION,
    LEXICAL_DIR,
    MANIFEST,
    STORE_FILE,
    check_recoverable,
    check_target,
    read_manifest,
    verify_files,
)
from .lexical import LexicalIndex, analysis_cache_key, lexical_chunks
from .locking import WriterLock, real_index_dir
from .models import PASSAGE_PREFIX, QUERY_PREFIX, BuildOptions, Chunk, ChunkerSettings, IndexManifest, Paper
from .parsing import ParseResult, corpus_files
from .store import Store, write_store
from .text import fingerprint, sha256_text
from .vectors import save_faiss, search_param_of
from .version import __version__

__all__ = ["BuildOptions", "BuildOutcome", "BuildReport", "ProgressCallback", "build_index", "update_index"]

ProgressCallback = Callable[[str, int, int], None]


class BuildReport(BaseModel):
    """What a build or update did."""

    papers: int = 0
    chunks: int = 0
    encoded: int = 0
    reused: int = 0
    added: list[str] = Field(default_factory=list)
    removed: list[str] = Field(default_factory=list)
    changed: list[str] = Field(default_factory=list)
    skipped: list[dict[str, str]] = Field(default_factory=list)
    merged: list[str] = Field(default_factory=list)
    full_rebuild_reason: str | None = None
    lexical_only: bool = False
    analysed: int = Field(default=0, description="texts analysed with Kiwi for BM25; the rest came from the token cache")
    up_to_date: bool = Field(
        default=False, description="nothing to do: inputs and options as at the last build, nothing was written"
    )
    seconds: float = 0.0


@dataclass
class BuildOutcome:
    """A finished build: its report, the encoder it loaded (reused for queries) and, when the index was
    found up to date, the generation already opened and verified."""

    report: BuildReport
    encoder: Encoder | None
    opened: OpenGeneration | None = None


# ------------------------------------------------------------------ entry points
def build_index(
    paths: Iterable[str | Path],
    index_dir: Path,
    overrides: Mapping[str, Any],
    *,
    encoder: Encoder | None = None,
    wait: float = 0.0,
    progress: ProgressCallback | None = None,
    force: bool = False,
) -> BuildOutcome:
    """Build ``index_dir`` from ``paths`` (every paper not in them is dropped); options inherit the index's."""
    # Resolved once: every writer of one real directory takes one lock and writes there, however it was named.
    index_dir = real_index_dir(index_dir)
    check_target(index_dir)
    path_list = list(paths)
    # Lock before parsing: a second writer must fail fast, not after reading the whole corpus.
    with WriterLock(index_dir, wait=wait):
        pause_point("locked")
        t0 = time.perf_counter()
        options = _options(_previous_options(index_dir), overrides)
        inputs = inputs_fingerprint(path_list, index_dir, options, encoder)
        if inputs is not None and not force:
            current = _if_up_to_date(index_dir, inputs)
            if current is not None:
                current.report.seconds = round(time.perf_counter() - t0, 3)
                current.encoder = encoder
                return current
        with open_engine(options) as engine:
            parsed = engine.parse(path_list, options.strict, progress)
            return _index_papers(parsed, index_dir, options, encoder=encoder, lexical_only=options.lexical_only,
                                 progress=progress, keep_old=False, inputs=inputs, engine=engine)


def update_index(
    paths: Iterable[str | Path],
    index_dir: Path,
    overrides: Mapping[str, Any],
    *,
    encoder: Encoder | None = None,
    wait: float = 0.0,
    progress: ProgressCallback | None = None,
) -> BuildOutcome:
    """Add or replace the papers of ``paths`` in an existing index, keeping every other paper and its options."""
    index_dir = real_index_dir(index_dir)
    manifest = read_manifest(index_dir)
    options = _options(BuildOptions.from_manifest(manifest), overrides)
    with WriterLock(index_dir, wait=wait):
        pause_point("locked")
        # An update keeps the index's kind: a lexical-only index stays lexical unless a model is asked for.
        lexical_only = options.lexical_only or (
            manifest.model_name is None and "model" not in overrides and encoder is None
        )
        with open_engine(options) as engine:
            parsed = engine.parse(list(paths), options.strict, progress)
            return _index_papers(parsed, index_dir, options, encoder=encoder, lexical_only=lexical_only,
                                 progress=progress, keep_old=True, inputs=None, engine=engine)


def _options(previous: BuildOptions | None, overrides: Mapping[str, Any]) -> BuildOptions:
    """The previous options with the caller's explicit ones applied. Asking for a model means asking for
    vectors, so it also lifts a saved ``lexical_only`` unless that is given too."""
    if "model" in overrides and "lexical_only" not in overrides:
        overrides = {**overrides, "lexical_only": False}
    return (previous or BuildOptions()).overridden(overrides)


# ------------------------------------------------------------------ up-to-date check
def _previous_options(index_dir: Path) -> BuildOptions | None:
    """The options saved by the index being replaced, or None (no index, or one too damaged to say)."""
    if not (index_dir / MANIFEST).is_file():
        return None
    try:
        return BuildOptions.from_manifest(read_manifest(index_dir))
    except IndexCorruptedError:
        return None  # the build repairs it; _previous_index decides whether that is allowed


def inputs_fingerprint(
    paths: Sequence[str | Path], index_dir: Path, options: BuildOptions, encoder: Encoder | None
) -> str | None:
    """A hash of everything a build's output depends on, or None when the model can't be pinned down cheaply.

    Reading every input file costs a fraction of a second for thousands of
    notes; parsing them, loading the model and re-tokenising for BM25 cost
    tens of seconds, which is what an unchanged corpus saves.
    """
    backend = options.backend
    if options.lexical_only:
        identity: tuple[str, str] | None = ("", "")
    elif encoder is not None:
        identity = (encoder.name, encoder.revision)
        backend = encoder.backend  # type: ignore[assignment]
    else:
        identity = model_identity(options.model or os.environ.get(MODEL_ENV) or None)
    if identity is None:
        return None
    files, skips = corpus_files(paths)
    h = hashlib.sha256()
    payload = {
        "format": FORMAT_VERSION, "library": __version__, "analysis": analysis_cache_key(),
        "model": list(identity), "backend": backend, "lexical_only": options.lexical_only, "factory": options.factory,
        "chunker": options.chunker.model_dump() if options.chunker else None, "strict": options.strict,
        "missing": [s.source for s in skips],
    }
    h.update(json.dumps(payload, sort_keys=True).encode())
    for f in files:
        try:
            data = f.read_bytes()
        except OSError:
            return None  # let the real build report the unreadable file
        h.update(b"\x00" + str(f.resolve()).encode() + b"\x00" + hashlib.sha256(data).digest())
    return h.hexdigest()


def _if_up_to_date(index_dir: Path, inputs: str) -> BuildOutcome | None:
    """The existing index, opened and fully verified, when it was built from exactly these inputs; else None."""
    if not (index_dir / MANIFEST).is_file():
        return None
    try:
        manifest = read_manifest(index_dir)
        if manifest.inputs_fingerprint != inputs:
            return None
        # verify=True: a damaged index is never "up to date"; the rebuild repairs it.
        opened = open_generation(index_dir, manifest, verify=True)
    except (IndexCorruptedError, IncompatibleModelError, ValidationError):
        return None
    # A builder killed between its commit and its clean-up leaves the old generation behind; we hold the lock.
    collect_garbage(index_dir, keep=manifest.data_dir)
    report = BuildReport(
        papers=manifest.paper_count, chunks=manifest.chunk_count,
        reused=manifest.chunk_count if manifest.model_name else 0,
        lexical_only=manifest.model_name is None, up_to_date=True,
    )
    return BuildOutcome(report=report, encoder=None, opened=opened)


# ------------------------------------------------------------------ the pipeline
def _index_papers(
    parsed: ParseResult,
    index_dir: Path,
    options: BuildOptions,
    *,
    encoder: Encoder | None,
    lexical_only: bool,
    progress: ProgressCallback | None,
    keep_old: bool,
    inputs: str | None,
    engine: BuildEngine,
) -> BuildOutcome:
    """Chunk, embed and write a new generation from ``parsed``, then commit it; the caller holds the lock.

    ``engine`` runs the chunking, the encoding of cache misses and the FAISS
    build (here, or on a Ray cluster); everything else happens here.
    """
    t0 = time.perf_counter()
    report = BuildReport(skipped=[s.model_dump() for s in parsed.skipped], merged=list(parsed.merged))
    old_manifest, old_store, old_papers = _previous_index(index_dir, keep_old)
    try:
        papers = _merge_papers(parsed, old_papers, keep_old)
        if not papers:
            raise CorpusError("no papers found in the given paths" + (
                f" ({len(parsed.skipped)} files skipped: {parsed.skipped[0].source}: {parsed.skipped[0].reason})"
                if parsed.skipped else ""))
        report.added = sorted(set(papers) - set(old_papers))
        report.removed = sorted(set(old_papers) - set(papers))
        report.changed = sorted(pid for pid in set(papers) & set(old_papers) if papers[pid] != old_papers[pid])

        if encoder is None and not lexical_only:
            encoder = _load_encoder(options, old_manifest)
        settings = options.chunker or ChunkerSettings(max_tokens=encoder.max_seq_length if encoder else 512)
        if encoder is not None and settings.max_tokens > encoder.max_seq_length:
            settings = settings.model_copy(update={"max_tokens": encoder.max_seq_length})
        passage_prefix = encoder.passage_prefix if encoder else PASSAGE_PREFIX
        paper_list = [papers[pid] for pid in sorted(papers)]
        chunks, passages, hashes = _chunk(paper_list, papers, settings, encoder, passage_prefix, progress, engine)

        vectors: np.ndarray | None = None
        if encoder is not None:
            ok, why = reusable_embeddings(old_manifest, encoder, settings)
            cache = old_store.embeddings(encoder.dimension) if (ok and old_store) else {}
            report.full_rebuild_reason = why
            vectors = embed_passages(encoder, passages, hashes, cache, report, progress, engine)
        else:
            report.lexical_only = True
        report.papers = len(paper_list)
        report.chunks = len(chunks)
        token_cache = old_store.doc_tokens(analysis_cache_key()) if old_store else {}
    finally:
        if old_store:
            old_store.close()

    # A lexical-only fallback (a model was wanted but is unavailable) must not pass for the requested build.
    fingerprint_ok = encoder is not None or options.lexical_only
    saved = options if encoder is None else options.model_copy(update={"model": encoder.name, "backend": encoder.backend})
    manifest, report.analysed = write_generation(
        index_dir, paper_list, papers, chunks, hashes, vectors, encoder, settings, saved, progress, token_cache,
        inputs if fingerprint_ok else None, engine,
    )
    collect_garbage(index_dir, keep=manifest.data_dir)
    report.seconds = round(time.perf_counter() - t0, 3)
    return BuildOutcome(report=report, encoder=encoder)


def _previous_index(index_dir: Path, keep_old: bool) -> tuple[IndexManifest | None, Store | None, dict[str, Paper]]:
    """The index being replaced: its manifest, its store (the embedding cache) and its papers.

    A damaged previous index must not block the build that repairs it: build
    then starts from scratch with a DamagedIndexWarning (never reusing an
    embedding from a store that fails its checksum). ``update`` needs the old
    papers, so it fails instead.
    """
    if not (index_dir / MANIFEST).is_file():
        return None, None, {}
    store: Store | None = None
    try:
        manifest = read_manifest(index_dir)
        verify_files(index_dir, manifest, [STORE_FILE])
        store = Store(index_dir / manifest.data_dir / STORE_FILE)
        return manifest, store, store.papers()
    except IndexCorruptedError as exc:
        if store is not None:
            store.close()
        if keep_old:
            raise IndexCorruptedError(
                f"{exc}; cannot update a damaged index, rebuild it with: digest-rag build <paths> --index {index_dir}"
            ) from exc
        try:
            read_manifest(index_dir)
        except IndexCorruptedError as why:
            # Only the manifest vouches that the directory is ours; without one, insist on our layout.
            check_recoverable(index_dir, why)
        warnings.warn(
            f"the previous index is damaged ({' '.join(str(exc).split())}); rebuilding from scratch",
            DamagedIndexWarning,
            stacklevel=5,
        )
        return None, None, {}


def _merge_papers(parsed: ParseResult, old: dict[str, Paper], keep_old: bool) -> dict[str, Paper]:
    new = {p.id: p for p in parsed.papers}
    if not keep_old:
        return new
    reread = set(parsed.files)
    merged = {pid: p for pid, p in old.items() if p.source not in reread}
    merged.update(new)
    return merged


def _load_encoder(options: BuildOptions, old: IndexManifest | None) -> Encoder | None:
    """The passage encoder; None (lexical-only, with a warning) when the default model cannot be had."""
    explicit = options.model or os.environ.get(MODEL_ENV) or (old.model_name if old else None)
    try:
        return Encoder.load(explicit, device=options.device, batch_size=options.batch_size, backend=options.backend)
    except ModelUnavailableError as exc:
        if explicit:
            raise
        warnings.warn(f"building a lexical-only index: {exc}", ModelFallbackWarning, stacklevel=5)
        return None


def _chunk(
    paper_list: list[Paper], papers: Mapping[str, Paper], settings: ChunkerSettings, encoder: Encoder | None,
    passage_prefix: str, progress: ProgressCallback | None, engine: BuildEngine,
) -> tuple[list[Chunk], list[str], list[str]]:
    """Chunks of every paper, the passage each embeds, and that passage's hash (the embedding cache key)."""
    count = encoder.count_tokens if encoder else approx_token_count
    chunks = engine.chunk(paper_list, settings, count, passage_prefix, encoder.name if encoder else None, progress)
    ids = [c.id for c in chunks]
    if len(set(ids)) != len(ids):
        raise CorpusError("chunk id collision; two papers share an id and position")
    passages = [passage_text(papers[c.paper_id], c.text, settings, c.section_kind) for c in chunks]
    hashes = [sha256_text(passage_prefix + p) for p in passages]
    return chunks, passages, hashes


def _precision(backend: str | None) -> str:
    # torch and onnx fp32 give the same vectors to float precision; int8 weights do not.
    return "int8" if backend == "onnx-int8" else "float"


def reusable_embeddings(old: IndexManifest | None, encoder: Encoder, chunker: ChunkerSettings) -> tuple[bool, str | None]:
    """Whether the previous index's embeddings mean what this build's would; if not, why (for the report)."""
    if old is None:
        return False, None
    if old.model_name is None:
        return False, "previous index was lexical-only"
    if old.model_name != encoder.name:
        return False, f"model changed from {old.model_name} to {encoder.name}"
    if old.model_revision != encoder.revision:
        return False, f"model revision changed from {old.model_revision} to {encoder.revision}"
    if old.dimension != encoder.dimension:
        return False, f"dimension changed from {old.dimension} to {encoder.dimension}"
    if old.passage_prefix != encoder.passage_prefix:
        return False, "passage prefix changed"
    if old.chunker != chunker:
        return False, "chunker settings changed"
    if _precision(old.backend) != _precision(encoder.backend):
        return False, f"backend changed from {old.backend} to {encoder.backend}"
    return True, None


def embed_passages(
    encoder: Encoder, passages: Sequence[str], hashes: Sequence[str], cache: Mapping[str, np.ndarray],
    report: BuildReport, progress: ProgressCallback | None, engine: BuildEngine | None = None,
) -> np.ndarray:
    """Vectors of ``passages``: from ``cache`` (by passage hash) where present, encoded in batches otherwise.

    Identical passages are encoded once, by ``engine`` (default: here).
    ``report.encoded`` / ``report.reused`` count what was encoded and what
    came from the cache.
    """
    out = np.zeros((len(passages), encoder.dimension), dtype=np.float32)
    todo: dict[str, int] = {}
    for i, h in enumerate(hashes):
        if h in cache:
            out[i] = cache[h]
        elif h not in todo:
            todo[h] = i
    report.reused = len(passages) - sum(1 for h in hashes if h in todo)
    if todo:
        order = list(todo.values())
        batches = 0

        def on_batch(positions: np.ndarray, vecs: np.ndarray) -> None:
            nonlocal batches
            out[[order[p] for p in positions]] = vecs
            batches += 1
            if batches == 1:
                pause_point("encoding")

        (engine or LocalEngine()).encode(encoder, [passages[i] for i in order], on_batch, progress)
        fresh = {hashes[i]: out[i] for i in order}
        for i, h in enumerate(hashes):
            if h in fresh:
                out[i] = fresh[h]
    report.encoded = len(todo)
    return out


def write_generation(
    index_dir: Path,
    paper_list: list[Paper],
    paper_map: dict[str, Paper],
    chunks: list[Chunk],
    hashes: list[str],
    vectors: np.ndarray | None,
    encoder: Encoder | None,
    settings: ChunkerSettings,
    options: BuildOptions,
    progress: ProgressCallback | None,
    token_cache: dict[str, list[str]],
    inputs: str | None,
    engine: BuildEngine | None = None,
) -> tuple[IndexManifest, int]:
    """Write store, FAISS and BM25 files into a new generation and commit it; returns its manifest and
    how many texts Kiwi analysed."""
    # A full disk (or quota, read-only mount) before the commit: one typed line, the old index untouched.
    with index_write_errors(index_dir), PendingGeneration(index_dir) as gen:
        if progress:
            progress("indexing", 0, 3)
        # BM25 first, in memory: the store keeps its tokens as the next build's cache.
        lex = LexicalIndex.build(lexical_chunks(chunks), paper_map, token_cache=token_cache)
        write_store(gen.path / STORE_FILE, paper_list, chunks, hashes, vectors, lex.token_entries, analysis_cache_key())
        used_factory = search_param = faiss_version = None
        if vectors is not None:
            import faiss

            fidx, used_factory = (engine or LocalEngine()).build_faiss(
                np.array([c.id for c in chunks], dtype=np.int64), vectors, options.factory, progress)
            save_faiss(fidx, gen.path / FAISS_FILE)
            search_param, faiss_version = search_param_of(fidx), faiss.__version__
        pause_point("writing")
        if progress:
            progress("indexing", 1, 3)
        lex.save(gen.path / LEXICAL_DIR)
        if progress:
            progress("indexing", 2, 3)
        manifest = IndexManifest(
            format_version=FORMAT_VERSION,
            library_version=__version__,
            created_at=_dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            data_dir=gen.name,
            model_name=encoder.name if encoder else None,
            model_revision=encoder.revision if encoder else None,
            dimension=encoder.dimension if encoder else None,
            query_prefix=encoder.query_prefix if encoder else QUERY_PREFIX,
            passage_prefix=encoder.passage_prefix if encoder else PASSAGE_PREFIX,
            normalized=True,
            chunker=settings,
            build_options=options,
            corpus_fingerprint=fingerprint(p.model_dump_json() for p in paper_list),
            inputs_fingerprint=inputs,
            paper_count=len(paper_list),
            chunk_count=len(chunks),
            faiss_version=faiss_version,
            index_type=used_factory,
            search_param=search_param,
            backend=encoder.backend if encoder else None,
            lexical=True,
            sources=sorted({p.source for p in paper_list}),
            files=gen.checksums(),
        )
        gen.commit(manifest)
        if progress:
            progress("indexing", 3, 3)
    return manifest, lex.analysed_texts
