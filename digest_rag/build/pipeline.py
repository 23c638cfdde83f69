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

import dataclasses
from dataclasses import dataclass
import time
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import numpy as np

from digest_rag.dense.embedding_cache import EmbeddingCache
from digest_rag.dense.encoder import Encoder
from digest_rag.build.engines import BuildEngine, open_engine
from digest_rag.errors import (
    CorpusError,
    IndexCorruptedError,
    index_write_errors,
)
from digest_rag.storage.generation import (
    collect_garbage,
    pause_point,
)
from digest_rag.storage.layout import (
    LEXICAL_DIR,
    MANIFEST,
    check_target,
    read_manifest,
)
from digest_rag.lexical.builder import analysis_cache_key
from digest_rag.lexical.index import LexicalIndex
from digest_rag.storage.locking import WriterLock, real_index_dir
from digest_rag.models import (
    BuildOverrides,
    PASSAGE_PREFIX,
    BuildOptions,
    ChunkerSettings,
)
from digest_rag.build.parse_cache import ParseCache
from digest_rag.parsing import corpus_files
from digest_rag.build.spool import PaperSpool
from digest_rag.build.chunk_reuse import chunk_papers_reusing, chunks_reusable
from digest_rag.build.embedding import _store_lookup, embed_passages, reusable_embeddings
from digest_rag.build.freshness import default_model_unavailable, if_up_to_date, inputs_fingerprint, previous_options
from digest_rag.build.passage_model import ModelFactsDiffer, PassageModel, passage_model
from digest_rag.build.previous import LexicalBase, previous_lexical_base, previous_index
from digest_rag.build.removal import dropped_sources
from digest_rag.build.report import BuildOutcome, BuildReport
from digest_rag.build.writer import GenerationContent, Inherited, write_generation
from digest_rag.models import ProgressCallback

__all__ = ["build_index", "update_index"]







# ------------------------------------------------------------------ entry points
def build_index(
    paths: Iterable[str | Path],
    index_dir: Path,
    overrides: BuildOverrides,
    *,
    encoder: Encoder | None = None,
    wait: float = 0.0,
    progress: ProgressCallback | None = None,
    force: bool = False,
    dry_run: bool = False,
) -> BuildOutcome:
    """Build ``index_dir`` from ``paths`` (every paper not in them is dropped); options inherit the index's.

    With ``dry_run`` the outcome's report says what the build would do (papers added, changed and removed,
    chunks to encode, cache hits, whether the model must load) and nothing is encoded or written.
    """
    # Resolved once: every writer of one real directory takes one lock and writes there, however it was named.
    index_dir = real_index_dir(index_dir)
    check_target(index_dir)
    path_list = list(paths)
    # Lock before parsing: a second writer must fail fast, not after reading the whole corpus.
    with WriterLock(index_dir, wait=wait):
        pause_point("locked")
        t0 = time.perf_counter()
        options = _options(previous_options(index_dir), overrides)
        # The files are listed and hashed once: for the up-to-date check, then as the parse cache's keys.
        listing = corpus_files(path_list)
        digests: dict[str, bytes] = {}
        unavailable = default_model_unavailable(options, encoder)
        inputs = inputs_fingerprint(path_list, index_dir, options, encoder, listing=listing, digests=digests,
                                    unavailable=unavailable)
        if inputs is not None and not force:
            current = if_up_to_date(index_dir, inputs, dry_run=dry_run)
            if current is not None:
                current.report.seconds = round(time.perf_counter() - t0, 3)
                current.encoder = encoder
                return current
        # The spool is written too: a full temporary disk is the same typed error as a full index disk.
        home = _spool_home(index_dir)
        with index_write_errors(index_dir), open_engine(options) as engine, PaperSpool(home) as parsed:
            t_parse = time.perf_counter()
            # Parsed papers of unchanged files come from the parse cache (--force too: it is a cache).
            with _parse_cache(home, writable=not dry_run) as cache:
                engine.parse_into(parsed, path_list, options.strict, progress, cache, listing, digests)
                if cache is not None:
                    # A full build: entries of files it no longer reads go (not when an engine parsed elsewhere).
                    cache.close(collect=engine.parses_here)
            parse_s = time.perf_counter() - t_parse
            outcome = _index_papers(parsed, index_dir, BuildRun(
                options, engine, encoder=encoder, lexical_only=options.lexical_only, progress=progress, keep_old=False,
                inputs=inputs, dry_run=dry_run, inputs_assume_fallback=unavailable))
        outcome.report.timings = {"parse": round(parse_s, 3), **outcome.report.timings}
        return outcome


def update_index(
    paths: Iterable[str | Path],
    index_dir: Path,
    overrides: BuildOverrides,
    *,
    encoder: Encoder | None = None,
    wait: float = 0.0,
    progress: ProgressCallback | None = None,
    remove: Sequence[str | Path] = (),
    prune: bool = False,
) -> BuildOutcome:
    """Add or replace the papers of ``paths`` in an existing index, keeping every other paper and its options.

    The papers of the source files ``remove`` names (files, or directories: every file under them) are
    dropped, and with ``prune`` those of source files that no longer exist (`digest_rag.build.removal`).
    """
    index_dir = real_index_dir(index_dir)
    manifest = read_manifest(index_dir)
    options = _options(BuildOptions.from_manifest(manifest), overrides)
    with WriterLock(index_dir, wait=wait):
        pause_point("locked")
        # An update keeps the index's kind: a lexical-only index stays lexical unless a model is asked for.
        lexical_only = options.lexical_only or (
            manifest.model_name is None and overrides.model is None and encoder is None
        )
        dropped = dropped_sources(index_dir, remove, prune=prune) if (remove or prune) else []
        with index_write_errors(index_dir), open_engine(options) as engine, PaperSpool(_spool_home(index_dir)) as parsed, \
                _parse_cache(index_dir) as cache:
            engine.parse_into(parsed, list(paths), options.strict, progress, cache)
            if cache is not None:
                cache.close()
            return _index_papers(parsed, index_dir, BuildRun(
                options, engine, encoder=encoder, lexical_only=lexical_only, progress=progress, keep_old=True,
                dropped=tuple(dropped)))


def _spool_home(index_dir: Path) -> Path | None:
    """Where the build's spool goes: inside the index directory when that is plainly ours (a readable manifest,
    or no manifest: `check_target` let only our names through), so that a killed build's spool is collected
    with its abandoned generations; else (an unreadable or foreign manifest, judged later) TMPDIR, because a
    directory that might not be ours must not be written to before it is judged (`check_recoverable`)."""
    if not (index_dir / MANIFEST).is_file():
        return index_dir
    try:
        read_manifest(index_dir)
    except IndexCorruptedError:
        return None
    return index_dir


def _parse_cache(index_dir: Path | None, writable: bool = True) -> AbstractContextManager[ParseCache | None]:
    """The index directory's parse cache; none where the spool may not go either (`_spool_home`)."""
    return nullcontext() if index_dir is None else ParseCache(index_dir, writable=writable)


def _options(previous: BuildOptions | None, overrides: BuildOverrides) -> BuildOptions:
    """The previous options with the caller's explicit ones applied. Asking for a model means asking for
    vectors, so it also lifts a saved ``lexical_only`` unless that is given too."""
    given = overrides.given()
    if "model" in given and "lexical_only" not in given:
        given["lexical_only"] = False
    return (previous or BuildOptions()).overridden(given)
















@dataclass(frozen=True)
class BuildRun:
    """How one build runs besides its options: the engine, an encoder the caller gave, whether it is
    lexical-only, progress, whether the index's other papers stay (update), the inputs' fingerprint to save,
    and whether it is a dry run (see `_index_papers_once`)."""

    options: BuildOptions
    engine: BuildEngine
    encoder: Encoder | None = None
    lexical_only: bool = False
    progress: ProgressCallback | None = None
    keep_old: bool = False
    inputs: str | None = None
    dry_run: bool = False
    inputs_assume_fallback: bool = False
    dropped: tuple[str, ...] = ()  # an update's source files whose papers go (`removal`)


def _index_papers(parsed: PaperSpool, index_dir: Path, run: BuildRun) -> BuildOutcome:
    """Chunk, embed and write a new generation from ``parsed``, then commit it; the caller holds the lock."""
    try:
        return _index_papers_once(parsed, index_dir, run)
    except ModelFactsDiffer as differ:
        # The files said one thing, the model another (an unusual layout): redo the plan with the real model.
        parsed.clear_chunks()
        return _index_papers_once(parsed, index_dir, dataclasses.replace(run, encoder=differ.encoder))


def _index_papers_once(parsed: PaperSpool, index_dir: Path, run: BuildRun) -> BuildOutcome:
    """Chunk, embed and write a new generation from ``parsed``, then commit it; the caller holds the lock.

    ``inputs_assume_fallback``: ``inputs`` was computed with the default model unavailable
    (`inputs_fingerprint`), so it is saved only if this build did fall back to lexical-only.
    ``engine`` runs the chunking, the encoding of cache misses and the FAISS
    build (here, or on a Ray cluster); everything else happens here. Papers
    and chunks stay in the spool and pass through memory a batch at a time;
    only a build with a model holds its passages (the encoder needs them).
    """
    options, encoder, lexical_only, progress = run.options, run.encoder, run.lexical_only, run.progress
    keep_old, inputs, engine, dry_run = run.keep_old, run.inputs, run.engine, run.dry_run
    inputs_assume_fallback = run.inputs_assume_fallback
    t0 = time.perf_counter()
    report = BuildReport(skipped=[s.model_dump() for s in parsed.skipped], merged=list(parsed.merged), dry_run=dry_run)
    old = previous_index(index_dir, keep_old)
    old_manifest, old_store = old.manifest, old.store
    report.repaired = old.damage
    model: PassageModel | None = None
    try:
        if keep_old and old_store is not None:
            # The files read again replace their papers; the papers of ``dropped`` files go.
            parsed.keep_old(old_store.path, [*parsed.files, *run.dropped])
        n_papers = len(parsed)
        if not n_papers:
            raise CorpusError("no papers found in the given paths" + (
                f" ({len(parsed.skipped)} files skipped: {parsed.skipped[0].source}: {parsed.skipped[0].reason})"
                if parsed.skipped else ""))
        if old_store is not None:
            report.added, report.removed, report.changed = parsed.diff(old_store.path)
        else:
            report.added = list(parsed.ids())

        model = passage_model(options, old_manifest, encoder, lexical_only)
        settings = options.chunker or ChunkerSettings(max_tokens=model.max_seq_length if model else 512)
        if model is not None and settings.max_tokens > model.max_seq_length:
            settings = settings.model_copy(update={"max_tokens": model.max_seq_length})
        passage_prefix = model.passage_prefix if model else PASSAGE_PREFIX
        t = time.perf_counter()
        reuse_from = old_store if chunks_reusable(old_manifest, model, settings) else None
        passages, hashes, report.rechunked = chunk_papers_reusing(parsed, settings, model, passage_prefix, reuse_from,
                                                    set(report.changed), progress, engine)
        report.timings["chunk"] = round(time.perf_counter() - t, 3)

        vectors: np.ndarray | None = None
        if model is not None:
            identity = model.identity
            ok, why = reusable_embeddings(old_manifest, identity, settings)
            report.full_rebuild_reason = why
            # The persistent cache serves a first build (a killed one resumes) and any build whose previous
            # index could reuse embeddings; not one replacing a damaged index or changing the chunker.
            use_cache = not old.damaged and (old_manifest is None or ok)
            fallback = _store_lookup(old_store, identity.dimension) if (ok and old_store) else None
            with EmbeddingCache.for_index(index_dir, identity) as cache:
                vectors = embed_passages(model, passages, hashes, cache, report, progress, use_cache=use_cache,
                                         fallback=fallback, dry_run=dry_run, engine=engine)
                if not dry_run:
                    cache.collect_garbage(keep=hashes)
        else:
            report.lexical_only = True
        report.papers = n_papers
        report.chunks = parsed.chunk_count
        # Reused tokens need the previous word table (their texts' words): without it, analyse all again.
        eojeol_rows = LexicalIndex.previous_eojeols(old_store.path.parent / LEXICAL_DIR) \
            if (old_store and not dry_run and old_store.has_tokens_of(analysis_cache_key())) else None
        lexical_base = previous_lexical_base(index_dir, old_manifest) if eojeol_rows is not None else LexicalBase()
        loaded = model.loaded if model is not None else None
        if dry_run:
            report.seconds = round(time.perf_counter() - t0, 3)
            return BuildOutcome(report=report, encoder=loaded)

        # A lexical-only fallback (a model was wanted but is unavailable) passes for the requested build only
        # while the model stays unavailable: its fingerprint says so (inputs_fingerprint), and a build whose
        # fingerprint assumed the fallback but that loaded a model (downloaded it) saves none.
        if options.lexical_only:
            fingerprint_ok = True
        elif model is None:
            fingerprint_ok = inputs_assume_fallback
        else:
            fingerprint_ok = not inputs_assume_fallback
        saved = options if model is None else options.model_copy(update={"model": model.name, "backend": model.backend})
        t = time.perf_counter()
        manifest, report.analysed = write_generation(
            index_dir, GenerationContent(parsed, hashes, vectors, model, settings, saved, report.encoded),
            Inherited(old_store if eojeol_rows is not None else None, eojeol_rows, lexical_base,
                      old_manifest.fusion if old_manifest is not None else None),
            progress, inputs if fingerprint_ok else None, engine,
        )
        if manifest.fusion is not None and (old_manifest is None or manifest.fusion is not old_manifest.fusion):
            report.timings["calibrate"] = manifest.fusion.seconds
    finally:
        if old_store:
            old_store.close()
    collect_garbage(index_dir, keep=manifest.data_dir)
    report.timings["write"] = round(time.perf_counter() - t, 3)
    report.seconds = round(time.perf_counter() - t0, 3)
    return BuildOutcome(report=report, encoder=loaded)




























