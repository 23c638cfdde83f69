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
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field, ValidationError

from digest_rag.build.chunking import approx_token_count, passage_text
from digest_rag.dense.embedding_cache import EmbeddingCache, ModelIdentity, precision_of
from digest_rag.dense.encoder import MODEL_ENV, Encoder, model_identity
from digest_rag.build.engines import BuildEngine, LocalEngine, open_engine
from digest_rag.errors import (
    CorpusError,
    DamagedIndexWarning,
    IncompatibleModelError,
    IndexCorruptedError,
    IndexVersionError,
    ModelFallbackWarning,
    ModelUnavailableError,
    index_write_errors,
)
from digest_rag.storage.generation import (
    OpenGeneration,
    PendingGeneration,
    collect_garbage,
    open_generation,
    pause_at_progress,
    pause_point,
)
from digest_rag.storage.layout import (
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
from digest_rag.lexical.word_table import EOJEOL_FILE, EojeolRecorder
from digest_rag.lexical.index import LexicalBuilder, LexicalIndex, TokenCache, analysis_cache_key, lexical_chunks
from digest_rag.lexical.lexicon import LEXICON_FILE, MinedLexicon
from digest_rag.storage.locking import WriterLock, real_index_dir
from digest_rag.dense.model_files import ModelFacts, inspect_model, token_counter
from digest_rag.models import (
    PASSAGE_PREFIX,
    QUERY_PREFIX,
    BuildOptions,
    Chunk,
    ChunkerSettings,
    IndexManifest,
)
from digest_rag.build.parse_cache import ParseCache
from digest_rag.parsing import ParseResult, Skip, check_strict, corpus_files
from digest_rag.build.spool import PaperSpool
from digest_rag.storage.store import Store, StoreWriter
from digest_rag.text import fingerprint, sha256_text
from digest_rag.dense.faiss_index import save_faiss, search_param_of
from digest_rag.version import __version__

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
    dry_run: bool = Field(default=False, description="a plan (build --dry-run): nothing was encoded or written")
    model_loaded: bool = Field(
        default=False, description="the encoder was loaded (in a dry run: would be), because some passage was not cached"
    )
    rechunked: int = Field(default=0, description="papers cut into chunks; the others' chunks came from the previous index")
    timings: dict[str, float] = Field(
        default_factory=dict, description="seconds per stage: parse, chunk, lookup, load (the model), encode, write"
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
        options = _options(_previous_options(index_dir), overrides)
        # The files are listed and hashed once: for the up-to-date check, then as the parse cache's keys.
        listing = corpus_files(path_list)
        digests: dict[str, bytes] = {}
        inputs = inputs_fingerprint(path_list, index_dir, options, encoder, listing=listing, digests=digests)
        if inputs is not None and not force:
            current = _if_up_to_date(index_dir, inputs, dry_run=dry_run)
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
                _parse_into(parsed, engine, path_list, options.strict, progress, cache, listing, digests)
                if cache is not None:
                    # A full build: entries of files it no longer reads go (not when an engine parsed elsewhere).
                    cache.close(collect=isinstance(engine, LocalEngine))
            parse_s = time.perf_counter() - t_parse
            outcome = _index_papers(parsed, index_dir, options, encoder=encoder, lexical_only=options.lexical_only,
                                    progress=progress, keep_old=False, inputs=inputs, engine=engine, dry_run=dry_run)
        outcome.report.timings = {"parse": round(parse_s, 3), **outcome.report.timings}
        return outcome


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
        with index_write_errors(index_dir), open_engine(options) as engine, PaperSpool(_spool_home(index_dir)) as parsed, \
                _parse_cache(index_dir) as cache:
            _parse_into(parsed, engine, list(paths), options.strict, progress, cache)
            if cache is not None:
                cache.close()
            return _index_papers(parsed, index_dir, options, encoder=encoder, lexical_only=lexical_only,
                                 progress=progress, keep_old=True, inputs=None, engine=engine)


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


def _parse_into(spool: PaperSpool, engine: BuildEngine, paths: list[str | Path], strict: bool,
                progress: ProgressCallback | None, cache: ParseCache | None = None,
                listing: tuple[list[Path], list[Skip]] | None = None, digests: Mapping[str, bytes] | None = None,
                ) -> None:
    """Parse ``paths`` into ``spool``: streamed here (through ``cache``; ``listing`` and ``digests`` as
    `PaperSpool.parse_paths` takes them), or as the engine's merged result when it parses elsewhere."""
    if isinstance(engine, LocalEngine):
        spool.parse_paths(paths, progress, cache, listing=listing, digests=digests)
        check_strict(ParseResult(skipped=spool.skipped), strict)
    else:
        spool.add_result(engine.parse(paths, strict, progress))


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
    paths: Sequence[str | Path], index_dir: Path, options: BuildOptions, encoder: Encoder | None, *,
    listing: tuple[list[Path], list[Skip]] | None = None, digests: dict[str, bytes] | None = None,
) -> str | None:
    """A hash of everything a build's output depends on, or None when the model can't be pinned down cheaply.

    Reading every input file costs a fraction of a second for thousands of
    notes; parsing them, loading the model and re-tokenising for BM25 cost
    tens of seconds, which is what an unchanged corpus saves. ``listing`` is
    `corpus_files` of ``paths`` when the caller has it; ``digests`` receives
    each file's sha256 (the parse cache's key).
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
    files, skips = listing if listing is not None else corpus_files(paths)
    h = hashlib.sha256()
    payload = {
        "format": FORMAT_VERSION, "library": __version__, "analysis": analysis_cache_key(),
        "model": list(identity), "backend": backend, "lexical_only": options.lexical_only, "factory": options.factory,
        "chunker": options.chunker.model_dump() if options.chunker else None, "strict": options.strict,
        "missing": [s.source for s in skips],
    }
    h.update(json.dumps(payload, sort_keys=True).encode())
    real_dirs: dict[Path, Path] = {}
    for f in files:
        try:
            data = f.read_bytes()
            # Path.resolve walks every component of every file; a directory's is the same for its files.
            if f.is_symlink():
                real = f.resolve()
            else:
                parent = real_dirs.get(f.parent)
                if parent is None:
                    parent = real_dirs[f.parent] = f.parent.resolve()
                real = parent / f.name
        except OSError:
            return None  # let the real build report the unreadable file
        digest = hashlib.sha256(data).digest()
        if digests is not None:
            digests[str(f)] = digest
        h.update(b"\x00" + str(real).encode() + b"\x00" + digest)
    return h.hexdigest()


def _if_up_to_date(index_dir: Path, inputs: str, *, dry_run: bool = False) -> BuildOutcome | None:
    """The existing index, opened and fully verified, when it was built from exactly these inputs; else None."""
    if not (index_dir / MANIFEST).is_file():
        return None
    try:
        manifest = read_manifest(index_dir)
        if manifest.inputs_fingerprint != inputs:
            return None
        if dry_run:
            report = BuildReport(papers=manifest.paper_count, chunks=manifest.chunk_count,
                                 reused=manifest.chunk_count if manifest.model_name else 0,
                                 lexical_only=manifest.model_name is None, up_to_date=True, dry_run=True)
            return BuildOutcome(report=report, encoder=None)
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
class _ModelFactsDiffer(Exception):
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
                raise _ModelFactsDiffer(enc)
            self._encoder = enc
        return self._encoder


def _passage_model(options: BuildOptions, old: IndexManifest | None, encoder: Encoder | None,
                   lexical_only: bool) -> PassageModel | None:
    """The build's model: the given encoder, else facts from the model's files, else the loaded model."""
    if encoder is not None:
        return PassageModel(options=options, encoder=encoder)
    if lexical_only:
        return None
    explicit = options.model or os.environ.get(MODEL_ENV) or (old.model_name if old else None)
    facts = inspect_model(explicit)
    if facts is not None:
        return PassageModel(options=options, facts=facts)
    loaded = _load_encoder(options, old)
    return PassageModel(options=options, encoder=loaded) if loaded is not None else None


def _index_papers(parsed: PaperSpool, index_dir: Path, options: BuildOptions, **kwargs: Any) -> BuildOutcome:
    """Chunk, embed and write a new generation from ``parsed``, then commit it; the caller holds the lock.

    Keyword arguments are `_index_papers_once`'s.
    """
    try:
        return _index_papers_once(parsed, index_dir, options, **kwargs)
    except _ModelFactsDiffer as differ:
        # The files said one thing, the model another (an unusual layout): redo the plan with the real model.
        parsed.clear_chunks()
        return _index_papers_once(parsed, index_dir, options, **{**kwargs, "encoder": differ.encoder})


def _index_papers_once(
    parsed: PaperSpool,
    index_dir: Path,
    options: BuildOptions,
    *,
    encoder: Encoder | None,
    lexical_only: bool,
    progress: ProgressCallback | None,
    keep_old: bool,
    inputs: str | None,
    engine: BuildEngine,
    dry_run: bool = False,
) -> BuildOutcome:
    """Chunk, embed and write a new generation from ``parsed``, then commit it; the caller holds the lock.

    ``engine`` runs the chunking, the encoding of cache misses and the FAISS
    build (here, or on a Ray cluster); everything else happens here. Papers
    and chunks stay in the spool and pass through memory a batch at a time;
    only a build with a model holds its passages (the encoder needs them).
    """
    t0 = time.perf_counter()
    report = BuildReport(skipped=[s.model_dump() for s in parsed.skipped], merged=list(parsed.merged), dry_run=dry_run)
    old = _previous_index(index_dir, keep_old)
    old_manifest, old_store = old.manifest, old.store
    model: PassageModel | None = None
    try:
        if keep_old and old_store is not None:
            parsed.keep_old(old_store.path, parsed.files)
        n_papers = len(parsed)
        if not n_papers:
            raise CorpusError("no papers found in the given paths" + (
                f" ({len(parsed.skipped)} files skipped: {parsed.skipped[0].source}: {parsed.skipped[0].reason})"
                if parsed.skipped else ""))
        if old_store is not None:
            report.added, report.removed, report.changed = parsed.diff(old_store.path)
        else:
            report.added = list(parsed.ids())

        model = _passage_model(options, old_manifest, encoder, lexical_only)
        settings = options.chunker or ChunkerSettings(max_tokens=model.max_seq_length if model else 512)
        if model is not None and settings.max_tokens > model.max_seq_length:
            settings = settings.model_copy(update={"max_tokens": model.max_seq_length})
        passage_prefix = model.passage_prefix if model else PASSAGE_PREFIX
        t = time.perf_counter()
        reuse_from = old_store if _chunks_reusable(old_manifest, model, settings) else None
        passages, hashes, report.rechunked = _chunk(parsed, settings, model, passage_prefix, reuse_from,
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
        lexical_base = _lexical_base(index_dir, old_manifest) if eojeol_rows is not None else _LexicalBase()
        loaded = model.loaded if model is not None else None
        if dry_run:
            report.seconds = round(time.perf_counter() - t0, 3)
            return BuildOutcome(report=report, encoder=loaded)

        # A lexical-only fallback (a model was wanted but is unavailable) must not pass for the requested build.
        fingerprint_ok = model is not None or options.lexical_only
        saved = options if model is None else options.model_copy(update={"model": model.name, "backend": model.backend})
        t = time.perf_counter()
        manifest, report.analysed = write_generation(
            index_dir, parsed, hashes, vectors, model, settings, saved, progress,
            old_store if eojeol_rows is not None else None, inputs if fingerprint_ok else None, engine, eojeol_rows,
            lexical_base,
        )
    finally:
        if old_store:
            old_store.close()
    collect_garbage(index_dir, keep=manifest.data_dir)
    report.timings["write"] = round(time.perf_counter() - t, 3)
    report.seconds = round(time.perf_counter() - t0, 3)
    return BuildOutcome(report=report, encoder=loaded)


@dataclass
class _LexicalBase:
    """What a build may start its word table and lexicon from: the previous generation's files, verified."""

    eojeols: Path | None = None
    lexicon: MinedLexicon | None = None


def _lexical_base(index_dir: Path, old: IndexManifest | None) -> _LexicalBase:
    """The previous generation's word table file and lexicon when their checksums match its manifest.

    The table is copied and patched (`eojeols.EojeolRecorder`), the lexicon's co-occurrence pairs reused
    when their inputs are unchanged (`lexicon.mine_lexicon`): a file that fails its checksum is not used,
    and the build derives both from scratch as it always could.
    """
    if old is None:
        return _LexicalBase()
    out = _LexicalBase()
    for name in (EOJEOL_FILE, LEXICON_FILE):
        try:
            verify_files(index_dir, old, [f"{LEXICAL_DIR}/{name}"])
            if name == EOJEOL_FILE:
                out.eojeols = index_dir / old.data_dir / LEXICAL_DIR / name
            else:
                out.lexicon = MinedLexicon.load(index_dir / old.data_dir / LEXICAL_DIR)
        except (IndexCorruptedError, IndexVersionError):
            continue
    return out


@dataclass
class _Previous:
    manifest: IndexManifest | None = None
    store: Store | None = None
    damaged: bool = False


def _previous_index(index_dir: Path, keep_old: bool) -> _Previous:
    """The index being replaced: its manifest and its store (papers, chunk, embedding and token caches).

    A damaged previous index must not block the build that repairs it: build
    then starts from scratch with a DamagedIndexWarning (never reusing an
    embedding from a store that fails its checksum, nor from the embedding
    cache beside it). ``update`` needs the old papers, so it fails instead.
    """
    if not (index_dir / MANIFEST).is_file():
        return _Previous()
    store: Store | None = None
    try:
        manifest = read_manifest(index_dir)
        verify_files(index_dir, manifest, [STORE_FILE])
        store = Store(index_dir / manifest.data_dir / STORE_FILE)
        store.counts()  # an unreadable store is damaged now, not half-way through the build
        return _Previous(manifest, store)
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
            stacklevel=6,
        )
        return _Previous(damaged=True)


def _load_encoder(options: BuildOptions, old: IndexManifest | None) -> Encoder | None:
    """The passage encoder; None (lexical-only, with a warning) when the default model cannot be had."""
    explicit = options.model or os.environ.get(MODEL_ENV) or (old.model_name if old else None)
    try:
        return Encoder.load(explicit, device=options.device, batch_size=options.batch_size, backend=options.backend)
    except ModelUnavailableError as exc:
        if explicit:
            raise
        warnings.warn(f"building a lexical-only index: {exc}", ModelFallbackWarning, stacklevel=6)
        return None


def _chunks_reusable(old: IndexManifest | None, model: PassageModel | None, settings: ChunkerSettings) -> bool:
    """Whether the previous index cut its chunks as this build would (then unchanged papers keep theirs).

    A paper's chunks depend on its content, the chunker settings, the token
    counter (the model's tokenizer, or the approximate one without a model)
    and the passage prefix; when all are as before they are read back instead
    of cut again.
    """
    if old is None or old.chunker != settings:
        return False
    if (old.model_name, old.model_revision) != ((model.name, model.revision) if model else (None, None)):
        return False
    return model is None or old.passage_prefix == model.passage_prefix


def _chunk(
    spool: PaperSpool, settings: ChunkerSettings, model: PassageModel | None, passage_prefix: str,
    reuse_from: Store | None, changed: set[str], progress: ProgressCallback | None, engine: BuildEngine,
) -> tuple[list[str], list[str], int]:
    """Chunk every paper of ``spool`` into it, a batch of papers at a time, in paper-id order.

    Papers the previous index (``reuse_from``) holds unchanged keep its chunks;
    the others are cut by ``engine``. Returns the passage each chunk embeds and
    that passage's hash (the embedding cache key), both empty without a model
    (the hashes then go only to the store), and how many papers were cut.
    """
    count = model.count_tokens if model else approx_token_count
    passages: list[str] = []
    hashes: list[str] = []
    cut = done = 0
    total = len(spool)
    if progress:
        progress("chunking", 0, total)
    for batch in spool.batches():
        papers = [p for p, _js in batch]
        reusable: dict[str, list[Chunk]] = {}
        if reuse_from is not None:
            same = reuse_from.paper_ids(p.id for p in papers if p.id not in changed)
            for c in reuse_from.chunks_of(sorted(same)):
                reusable.setdefault(c.paper_id, []).append(c)
        to_cut = [p for p in papers if p.id not in reusable]
        fresh: dict[str, list[Chunk]] = {}
        for c in engine.chunk(to_cut, settings, count, passage_prefix, model.name if model else None, None):
            fresh.setdefault(c.paper_id, []).append(c)
        chunks: list[Chunk] = []
        for paper in papers:
            chunks.extend(reusable.get(paper.id) or fresh.get(paper.id, []))
        by_id = {p.id: p for p in papers}
        texts = [passage_text(by_id[c.paper_id], c.text, settings, c.section_kind) for c in chunks]
        keys = [sha256_text(passage_prefix + p) for p in texts]
        spool.add_chunks(chunks, keys)
        if model is not None:
            passages.extend(texts)
            hashes.extend(keys)
        cut += len(to_cut)
        done += len(papers)
        if progress:
            progress("chunking", done, total)
    return passages, hashes, cut


def reusable_embeddings(old: IndexManifest | None, identity: ModelIdentity,
                        chunker: ChunkerSettings) -> tuple[bool, str | None]:
    """Whether the previous index's embeddings mean what this build's would; if not, why (for the report)."""
    if old is None:
        return False, None
    if old.model_name is None:
        return False, "previous index was lexical-only"
    if old.model_name != identity.name:
        return False, f"model changed from {old.model_name} to {identity.name}"
    if old.model_revision != identity.revision:
        return False, f"model revision changed from {old.model_revision} to {identity.revision}"
    if old.dimension != identity.dimension:
        return False, f"dimension changed from {old.dimension} to {identity.dimension}"
    if old.passage_prefix != identity.passage_prefix:
        return False, "passage prefix changed"
    if old.chunker != chunker:
        return False, "chunker settings changed"
    if precision_of(old.backend) != identity.variant:
        return False, f"backend changed from {old.backend} to {precision_of(old.backend)} precision"
    return True, None


def _store_lookup(store: Store, dimension: int) -> Callable[[Sequence[str]], Mapping[str, np.ndarray]]:
    """Embeddings kept in the previous generation's store (indexes built before the embedding cache)."""
    return lambda hashes: store.embeddings(dimension, hashes)


def embed_passages(
    model: PassageModel,
    passages: Sequence[str],
    hashes: Sequence[str],
    cache: EmbeddingCache,
    report: BuildReport,
    progress: ProgressCallback | None,
    *,
    use_cache: bool = True,
    fallback: Callable[[Sequence[str]], Mapping[str, np.ndarray]] | None = None,
    dry_run: bool = False,
    engine: BuildEngine | None = None,
) -> np.ndarray | None:
    """Vectors of ``passages``: from the embedding cache (by passage hash) where present, encoded otherwise.

    Identical passages are encoded once. The encoder loads only when some
    passage is missing. ``report.encoded`` / ``report.reused`` count what was
    encoded and what came from the cache; a dry run fills them (and
    ``report.model_loaded``) without loading or encoding, and returns None.
    """
    t = time.perf_counter()
    unique = list(dict.fromkeys(hashes))
    if not use_cache:
        found: dict[str, np.ndarray] = {}
    elif dry_run:
        found = dict.fromkeys(cache.contains(unique))  # type: ignore[arg-type]
    else:
        found = cache.lookup(unique)
    missing = [h for h in unique if h not in found]
    if missing and fallback is not None:
        old = {h: v for h, v in fallback(missing).items() if v.shape == (model.dimension,)}
        if old and not dry_run:
            # An index built before the embedding cache: move its vectors into the cache once.
            cache.put(list(old), np.stack([old[h] for h in old]))
        found.update(old)
        missing = [h for h in missing if h not in found]
    report.timings["lookup"] = round(time.perf_counter() - t, 3)
    report.reused = sum(1 for h in hashes if h in found)
    report.encoded = len(missing)
    if dry_run:
        report.model_loaded = bool(missing) or model.loaded_here
        return None
    if missing:
        first = {h: i for i, h in reversed(list(enumerate(hashes)))}
        t = time.perf_counter()
        encoder = model.encoder(len(missing))
        report.timings["load"] = round(time.perf_counter() - t, 3)
        t = time.perf_counter()
        found.update(encode_missing(encoder, [(h, passages[first[h]]) for h in missing], cache, progress,
                                    engine or LocalEngine()))
        report.timings["encode"] = round(time.perf_counter() - t, 3)
    report.model_loaded = model.loaded_here or bool(missing)
    out = np.empty((len(hashes), model.dimension), dtype=np.float32)
    for i, h in enumerate(hashes):
        out[i] = found[h]
    return out


def passage_order(todo: Sequence[tuple[str, str]], count: Callable[[str], int]) -> list[tuple[str, str]]:
    """``todo`` ((passage hash, passage) pairs) most tokens first, then by hash: a fixed order.

    The model's cost is a batch's size times its longest passage, so batches
    of equal token counts waste least on padding: 21% fewer token positions
    than sorting by characters on seeds + ml-papers, where a Korean passage
    has several times the characters of an English one of the same tokens.
    """
    return sorted(todo, key=lambda ht: (-count(ht[1]), ht[0]))


def encode_missing(
    encoder: Encoder, todo: Sequence[tuple[str, str]], cache: EmbeddingCache, progress: ProgressCallback | None,
    engine: BuildEngine,
) -> dict[str, np.ndarray]:
    """Encode ``todo`` ((passage hash, passage) pairs the cache lacks) with ``engine``; each batch the engine
    hands back goes into the cache at once, so a build killed at 80% keeps 80%.

    Passages go in `passage_order`: each batch pads little, and a resumed build
    cuts the remaining passages into the same batches as an uninterrupted one
    and gets the same vectors.
    """
    order = passage_order(todo, encoder.count_tokens)
    hashes = [h for h, _p in order]
    out: dict[str, np.ndarray] = {}
    total = len(order)
    batches = 0

    def on_batch(positions: np.ndarray, vecs: np.ndarray) -> None:
        nonlocal batches
        part = [hashes[int(p)] for p in positions]
        cache.put(part, vecs)
        out.update(zip(part, np.asarray(vecs, dtype=np.float32), strict=True))
        batches += 1
        if batches == 1:
            pause_point("encoding")
        pause_at_progress("encoding", len(out), total)

    engine.encode(encoder, [p for _h, p in order], on_batch, progress)
    return out


class _StoreTokens(TokenCache):
    """BM25 tokens looked up and recorded in SQLite: the new store's doc_tokens (texts seen earlier in this
    build), then the previous store's (the last build's cache); nothing accumulates in memory."""

    def __init__(self, writer: StoreWriter, previous: Store | None, recorder: EojeolRecorder | None = None) -> None:
        super().__init__(None, recorder)
        self._writer = writer
        self._previous = previous
        self._key = analysis_cache_key()
        self._recorded: set[str] = set()
        self._raw: dict[str, str] = {}  # the previous store's JSON of the tokens just looked up there

    def lookup(self, keys: Sequence[str]) -> dict[str, list[str]]:
        found = self._writer.tokens(keys)
        self._recorded = set(found)
        rest = [k for k in keys if k not in found]
        self._raw = {}
        if rest and self._previous is not None:
            found.update(self._previous.tokens_for(self._key, rest, self._raw))
        return found

    def record(self, entries: Mapping[str, list[str]]) -> None:
        self._writer.record_tokens({k: v for k, v in entries.items() if k not in self._recorded}, self._raw)
        self._raw = {}


def write_generation(
    index_dir: Path,
    spool: PaperSpool,
    hashes: list[str],
    vectors: np.ndarray | None,
    encoder: PassageModel | None,
    settings: ChunkerSettings,
    options: BuildOptions,
    progress: ProgressCallback | None,
    previous: Store | None,
    inputs: str | None,
    engine: BuildEngine | None = None,
    eojeol_rows: dict[str, tuple[str, int]] | None = None,
    base: _LexicalBase | None = None,
) -> tuple[IndexManifest, int]:
    """Write store, FAISS and BM25 files into a new generation and commit it; returns its manifest and
    how many texts Kiwi analysed. Papers and chunks stream from ``spool`` a batch at a time; the BM25
    tokens of texts the ``previous`` store analysed are read back from it, not analysed again; the word
    table and lexicon start from ``base`` (the previous generation's, ``eojeol_rows`` read from its table)."""
    # A full disk (or quota, read-only mount) before the commit: one typed line, the old index untouched.
    with index_write_errors(index_dir), PendingGeneration(index_dir) as gen:
        if progress:
            progress("indexing", 0, 3)
        n_papers, n_chunks = len(spool), spool.chunk_count
        writer = StoreWriter(gen.path / STORE_FILE, analysis_cache_key())
        try:
            # The word table (eojeols.py) starts from the previous one: reused tokens' texts are not analysed.
            base = base or _LexicalBase()
            tokens = _StoreTokens(writer, previous, EojeolRecorder(eojeol_rows, base=base.eojeols))
            lexical = LexicalBuilder(None, tokens, previous_lexicon=base.lexicon)
            ids: list[np.ndarray] = []
            n_lexical = 0
            for batch in spool.batches():
                writer.add_papers(batch)
                rows = spool.chunks_of([p.id for p, _js in batch])
                chunks = [c for c, _h in rows]
                writer.add_chunks(chunks, [h for _c, h in rows])
                # The store keeps BM25's tokens as the next build's cache (see _StoreTokens).
                bm25_docs = lexical_chunks(chunks)
                lexical.add(bm25_docs, {p.id: p for p, _js in batch})
                n_lexical += len(bm25_docs)
                ids.append(np.fromiter((c.id for c in chunks), dtype=np.int64, count=len(chunks)))
            if vectors is not None:
                writer.add_embeddings(hashes, vectors)
            lex = lexical.finish()  # before the commit: mining the lexicon may analyse (and record) phrases
            writer.finish(n_lexical)
        finally:
            writer.close()
        used_factory = search_param = faiss_version = None
        if vectors is not None:
            import faiss

            fidx, used_factory = (engine or LocalEngine()).build_faiss(
                np.concatenate(ids), vectors, options.factory, progress)
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
            corpus_fingerprint=fingerprint(spool.sorted_json(), presorted=True),
            inputs_fingerprint=inputs,
            paper_count=n_papers,
            chunk_count=n_chunks,
            faiss_version=faiss_version,
            index_type=used_factory,
            search_param=search_param,
            backend=encoder.backend if encoder else None,
            lexical=True,
            sources=spool.sources(),
            files=gen.checksums(),
        )
        gen.commit(manifest)
        if progress:
            progress("indexing", 3, 3)
    return manifest, tokens.analysed
