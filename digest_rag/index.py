"""`DigestIndex`: build, update, load and search an index directory.

Layout of an index directory::

    indexes/default/
        manifest.json          the commit point: names the current generation
        gen-20260101T120000-1a2b/
            store.sqlite       papers, chunks, embedding cache
            vectors.faiss      FAISS index over chunk ids (absent when lexical-only)
            lexical/           BM25 index (bm25s arrays + json)

A build writes a new generation in a hidden temporary directory, fsyncs it,
renames it into place, then atomically replaces manifest.json. Until that last
rename, readers (and a crash) see the previous index, whole.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field, ValidationError

from . import __version__
from .chunking import approx_token_count, chunk_papers, passage_text
from .encoder import Encoder, model_identity, resolve_model_name
from .errors import (
    CorpusError,
    DigestRagError,
    EmptyQueryError,
    IncompatibleModelError,
    IndexCorruptedError,
    IndexNotFoundError,
    IndexVersionError,
    ModelUnavailableError,
    UnsafeIndexPathError,
    UsageError,
)
from .lexical import LEXICAL_FILES, LexicalIndex, analysis_cache_key
from .locking import WriterLock
from .models import SEARCH_MODES, Chunk, ChunkerSettings, IndexManifest, Paper, SearchHit, SearchResults
from .parsing import ParseResult, Skip, corpus_files, parse_paths
from .search import aggregate, fuse_papers, make_snippet
from .store import Store, write_store
from .text import fingerprint, sha256_text
from .vectors import build_faiss, load_faiss, save_faiss, search_faiss, search_param_of, set_search_param

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
DEFAULT_INDEX_DIR = Path("indexes/default")
MANIFEST = "manifest.json"
STORE_FILE = "store.sqlite"
FAISS_FILE = "vectors.faiss"
LEXICAL_DIR = "lexical"
_GEN_NAME = re.compile(r"gen-[0-9A-Za-z-]{1,64}")
# Names a build itself creates inside an index directory; anything else there is someone else's.
_OWN_NAMES = re.compile(r"(manifest\.json|\.manifest\.json\.tmp|gen-[0-9A-Za-z-]{1,64}|\.tmp-gen-[0-9A-Za-z-]{1,64})")
MAX_QUERY_CHARS = 2_000
CANDIDATES = 200

ProgressCallback = Callable[[str, int, int], None]


class ModelFallbackWarning(UserWarning):
    """Hybrid search answered from the lexical side because the encoder is unavailable."""


class QueryTruncatedWarning(UserWarning):
    """A query longer than MAX_QUERY_CHARS was cut."""


class DamagedIndexWarning(UserWarning):
    """A build found the previous index damaged and rebuilt from scratch (no embedding reuse)."""


# Test-only hook: with DIGEST_RAG_TEST_PAUSE_AT=<stage> a build stops itself (SIGSTOP) at that
# stage after printing one line, so tests can SIGKILL or SIGCONT it at a deterministic point.
# Stages: "locked" (lock held, nothing parsed), "encoding" (after the first batch), "writing"
# (new generation half written), "swap" (generation renamed, manifest not yet replaced),
# "committed" (manifest replaced, old generation not yet collected).
PAUSE_ENV = "DIGEST_RAG_TEST_PAUSE_AT"


def _test_pause(stage: str) -> None:
    if os.environ.get(PAUSE_ENV) == stage:
        import signal
        import sys

        sys.stderr.write(f"digest_rag: paused at {stage} (pid {os.getpid()})\n")
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGSTOP)


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


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            fd = os.open(os.path.join(dirpath, f), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(dirpath))


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_manifest(index_dir: Path) -> IndexManifest:
    """Parse and check manifest.json of an index directory."""
    mpath = index_dir / MANIFEST
    if not index_dir.exists():
        raise IndexNotFoundError(f"{index_dir}: no such index directory; build one with: digest-rag build --index {index_dir}")
    if not mpath.is_file():
        raise IndexNotFoundError(f"{mpath}: no manifest; this is not a digest_rag index (build one with: digest-rag build --index {index_dir})")
    try:
        raw = json.loads(mpath.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IndexCorruptedError(f"{mpath}: manifest is not valid JSON ({exc})") from exc
    if not isinstance(raw, dict) or raw.get("format_version") != FORMAT_VERSION:
        got = raw.get("format_version") if isinstance(raw, dict) else None
        raise IndexVersionError(f"{mpath}: unknown index format version {got!r} (this digest_rag reads {FORMAT_VERSION}); rebuild the index")
    try:
        manifest = IndexManifest.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise IndexCorruptedError(f"{mpath}: manifest field {'.'.join(map(str, first['loc']))}: {first['msg']}") from exc
    # The manifest names paths we open (and a build later deletes): never let it point outside.
    if not _GEN_NAME.fullmatch(manifest.data_dir):
        raise IndexCorruptedError(f"{mpath}: data_dir {manifest.data_dir!r} is not a generation directory name")
    for name in manifest.files:
        parts = name.split("/")
        if name.startswith("/") or "\\" in name or any(part in ("", ".", "..") for part in parts):
            raise IndexCorruptedError(f"{mpath}: file name {name!r} is not a plain relative path")
    return manifest


def _required_files(manifest: IndexManifest) -> list[str]:
    """Files every generation of this kind holds; the manifest must list (and checksum) each."""
    names = [STORE_FILE]
    if manifest.model_name is not None:
        names.append(FAISS_FILE)
    if manifest.lexical:
        names += [f"{LEXICAL_DIR}/{f}" for f in LEXICAL_FILES]
    return names


def _verify_files(index_dir: Path, manifest: IndexManifest, names: Iterable[str]) -> None:
    """Check that each named file exists and matches its manifest sha256."""
    gen = index_dir / manifest.data_dir
    for name in names:
        f = gen / name
        digest = manifest.files.get(name)
        if digest is None:
            raise IndexCorruptedError(f"{index_dir / MANIFEST}: does not list {name}; manifest and files disagree")
        if not f.is_file():
            raise IndexCorruptedError(f"{f}: file listed in the manifest is missing")
        try:
            actual = _sha256_file(f)
        except OSError as exc:
            raise IndexCorruptedError(f"{f}: cannot read ({exc.strerror or exc})") from exc
        if actual != digest:
            raise IndexCorruptedError(f"{f}: checksum mismatch (file altered or truncated); rebuild the index")


def _check_target(index_dir: Path) -> None:
    """Refuse to take over a directory that holds anything but a digest_rag index."""
    if not index_dir.exists():
        return
    if not index_dir.is_dir():
        raise UnsafeIndexPathError(f"{index_dir}: exists and is not a directory; refusing to overwrite it")
    if (index_dir / MANIFEST).is_file():
        return  # whether it is really ours is checked under the lock (DigestIndex._previous)
    foreign = [p.name for p in index_dir.iterdir() if not _OWN_NAMES.fullmatch(p.name)]
    if foreign:
        raise UnsafeIndexPathError(
            f"{index_dir}: not empty and not a digest_rag index (found {', '.join(sorted(foreign)[:3])}); "
            "refusing to write there; choose another --index directory"
        )


def _manifest_moved(index_dir: Path, seen: IndexManifest) -> bool:
    """True when manifest.json now names another generation than ``seen`` did."""
    try:
        return read_manifest(index_dir).data_dir != seen.data_dir
    except DigestRagError:
        return False


def _check_recoverable(index_dir: Path, why: Exception) -> None:
    """Allow rebuilding over an unreadable manifest only when the directory is plainly an index.

    A foreign ``manifest.json`` (a web app's, say) must never be overwritten:
    the directory has to hold nothing but names a build creates, and at least
    one generation directory.
    """
    names = [p.name for p in index_dir.iterdir()]
    foreign = [n for n in names if not _OWN_NAMES.fullmatch(n)]
    has_gen = any((index_dir / n).is_dir() and n != MANIFEST for n in names if _OWN_NAMES.fullmatch(n))
    if foreign or not has_gen:
        found = f" (found {', '.join(sorted(foreign)[:3])})" if foreign else ""
        raise UnsafeIndexPathError(
            f"{index_dir}: {' '.join(str(why).split())}; the directory does not look like a digest_rag index{found}, "
            "refusing to overwrite it; move it away or choose another --index directory"
        )


def _compatible_cache(old: IndexManifest | None, new_model: str | None, revision: str | None, dim: int | None,
                      passage_prefix: str, chunker: ChunkerSettings) -> tuple[bool, str | None]:
    if old is None:
        return False, None
    if new_model is None:
        return False, None
    if old.model_name is None:
        return False, "previous index was lexical-only"
    if old.model_name != new_model:
        return False, f"model changed from {old.model_name} to {new_model}"
    if old.model_revision != revision:
        return False, f"model revision changed from {old.model_revision} to {revision}"
    if old.dimension != dim:
        return False, f"dimension changed from {old.dimension} to {dim}"
    if old.passage_prefix != passage_prefix:
        return False, "passage prefix changed"
    if old.chunker != chunker:
        return False, "chunker settings changed"
    return True, None


class DigestIndex:
    """A loaded index: papers, chunks, FAISS vectors and BM25, ready to search.

    Example:
        >>> from digest_rag import DigestIndex
        >>> index = DigestIndex.build(["corpus"], index_dir="indexes/default")  # doctest: +SKIP
        >>> for hit in index.search("긴 컨텍스트를 악용하는 탈옥 공격", k=3):  # doctest: +SKIP
        ...     print(hit.paper.title, round(hit.score, 3))
    """

    def __init__(
        self,
        index_dir: Path,
        manifest: IndexManifest,
        store: Store,
        faiss_index: object | None,
        lexical: LexicalIndex | None,
        encoder: Encoder | None = None,
        model: str | None = None,
        device: str | None = None,
        backend: str = "torch",
    ) -> None:
        self.index_dir = index_dir
        self.manifest = manifest
        self.store = store
        self.faiss_index = faiss_index
        self.lexical = lexical
        self._encoder = encoder
        self._model_request = model
        self._device = device
        self._backend = backend
        self._encoder_error: ModelUnavailableError | None = None
        self._papers: dict[str, Paper] | None = None
        self.last_build: BuildReport | None = None

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(
        cls,
        index_dir: str | Path = DEFAULT_INDEX_DIR,
        *,
        model: str | None = None,
        encoder: Encoder | None = None,
        device: str | None = None,
        backend: str = "torch",
        verify: bool = True,
        search_param: int | None = None,
    ) -> DigestIndex:
        """Open an index directory. The query encoder loads lazily on the first dense search.

        ``model`` (or $DIGEST_RAG_MODEL) may name the query model explicitly; it
        must be the model the index was built with. ``verify`` checks every
        file's sha256 against the manifest; even without it the FAISS file's
        checksum is checked, because FAISS must never be handed a damaged file.
        Any damage raises IndexCorruptedError (or IndexVersionError) naming the file.
        """
        index_dir = Path(index_dir)
        for attempt in range(3):
            manifest = read_manifest(index_dir)
            try:
                store, faiss_index, lexical = cls._open_generation(index_dir, manifest, verify, search_param)
                break
            except IndexCorruptedError:
                # A build may have committed a newer generation and deleted this one between our
                # reading the manifest and opening its files: if the manifest moved on, open that.
                if attempt < 2 and _manifest_moved(index_dir, manifest):
                    continue
                raise
        idx = cls(index_dir, manifest, store, faiss_index, lexical, encoder=None, model=model, device=device, backend=backend)
        if encoder is not None:
            idx._check_encoder(encoder)
            idx._encoder = encoder
        return idx

    @staticmethod
    def _open_generation(
        index_dir: Path, manifest: IndexManifest, verify: bool, search_param: int | None
    ) -> tuple[Store, object | None, LexicalIndex | None]:
        """Check and open the files of the generation the manifest names."""
        gen = index_dir / manifest.data_dir
        if not gen.is_dir():
            raise IndexCorruptedError(f"{gen}: data directory named by the manifest is missing")
        required = _required_files(manifest)
        _verify_files(index_dir, manifest, sorted(set(manifest.files) | set(required)) if verify else
                      [n for n in required if n == FAISS_FILE])
        if not verify:
            missing = [n for n in required if not (gen / n).is_file()]
            if missing:
                raise IndexCorruptedError(f"{gen / missing[0]}: file listed in the manifest is missing")
        store = Store(gen / STORE_FILE)
        try:
            papers, chunks, text_chunks = store.counts()
            if (papers, chunks) != (manifest.paper_count, manifest.chunk_count):
                raise IndexCorruptedError(
                    f"{gen / STORE_FILE}: holds {papers} papers and {chunks} chunks, "
                    f"manifest says {manifest.paper_count} and {manifest.chunk_count}"
                )
            faiss_index = None
            if manifest.model_name is not None:
                try:
                    faiss_index = load_faiss(gen / FAISS_FILE, mmap=manifest.chunk_count >= 1_000_000)
                except MemoryError as exc:  # a forged header can ask for absurd allocations
                    raise IndexCorruptedError(f"{gen / FAISS_FILE}: FAISS index is unreadable (absurd sizes)") from exc
                if int(faiss_index.ntotal) != manifest.chunk_count or int(faiss_index.d) != manifest.dimension:
                    raise IndexCorruptedError(
                        f"{gen / FAISS_FILE}: holds {faiss_index.ntotal} vectors of dimension {faiss_index.d}, "
                        f"manifest says {manifest.chunk_count} of {manifest.dimension}"
                    )
                set_search_param(faiss_index, search_param)
            lexical = None
            if manifest.lexical:
                lexical = LexicalIndex.load(gen / LEXICAL_DIR)
                if len(lexical) != text_chunks:
                    raise IndexCorruptedError(
                        f"{gen / LEXICAL_DIR}: holds {len(lexical)} chunks, the store {text_chunks}; files disagree"
                    )
        except BaseException:
            store.close()
            raise
        return store, faiss_index, lexical

    def _check_encoder(self, encoder: Encoder) -> None:
        m = self.manifest
        if m.model_name is None:
            return
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
        """The query encoder (loaded on first use); raises ModelUnavailableError or IncompatibleModelError."""
        if self._encoder is None:
            if self.manifest.model_name is None:
                raise UsageError(
                    f"index {self.index_dir} was built lexical-only and has no vectors; "
                    "use --mode lexical, or rebuild with a model"
                )
            if self._encoder_error is not None:
                raise self._encoder_error
            requested = self._model_request or os.environ.get("DIGEST_RAG_MODEL") or self.manifest.model_name
            try:
                enc = Encoder.load(requested, device=self._device, backend=self._backend)
            except ModelUnavailableError as exc:
                self._encoder_error = exc
                raise
            self._check_encoder(enc)
            self._encoder = enc
        return self._encoder

    def close(self) -> None:
        """Release the SQLite connection."""
        self.store.close()

    def __enter__(self) -> DigestIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------- building
    @classmethod
    def build(
        cls,
        paths: Iterable[str | Path] = ("corpus",),
        index_dir: str | Path = DEFAULT_INDEX_DIR,
        *,
        model: str | None = None,
        encoder: Encoder | None = None,
        lexical_only: bool = False,
        chunker: ChunkerSettings | None = None,
        factory: str | None = None,
        device: str | None = None,
        batch_size: int = 32,
        backend: str = "torch",
        strict: bool = False,
        wait: float = 0.0,
        progress: ProgressCallback | None = None,
        force: bool = False,
    ) -> DigestIndex:
        """Parse ``paths``, chunk, embed and write an index to ``index_dir``; return it loaded.

        Rebuilding over an existing index re-encodes only passages whose text
        changed (embeddings are cached by passage hash) unless the model or the
        chunker settings changed. When no input file changed (same paths, same
        bytes) and the model, backend and options are those of the last build,
        nothing is parsed, loaded or written: the index is returned as it is,
        with ``last_build.up_to_date`` set; ``force=True`` rebuilds anyway.
        When no model is given and the default one cannot be loaded, the index
        is built lexical-only with a warning; an explicitly requested model
        that is unavailable raises ModelUnavailableError.
        """
        index_dir = Path(index_dir)
        _check_target(index_dir)
        path_list = list(paths)
        # Lock before parsing: a second writer must fail fast, not after reading the whole corpus.
        with WriterLock(index_dir, wait=wait):
            _test_pause("locked")
            t0 = time.perf_counter()
            inputs = cls._inputs_fingerprint(
                path_list, index_dir, model=model, encoder=encoder, lexical_only=lexical_only, chunker=chunker,
                factory=factory, backend=backend, strict=strict,
            )
            if inputs is not None and not force:
                current = cls._if_up_to_date(index_dir, inputs, encoder=encoder, device=device, backend=backend)
                if current is not None:
                    current.last_build.seconds = round(time.perf_counter() - t0, 3)
                    return current
            parsed = parse_paths(path_list, strict=strict, progress=progress)
            return cls._write(
                parsed, index_dir, model=model, encoder=encoder, lexical_only=lexical_only, chunker=chunker,
                factory=factory, device=device, batch_size=batch_size, backend=backend, progress=progress,
                keep_old=False, inputs_fingerprint=inputs,
            )

    @classmethod
    def _inputs_fingerprint(
        cls, paths: Sequence[str | Path], index_dir: Path, *, model: str | None, encoder: Encoder | None,
        lexical_only: bool, chunker: ChunkerSettings | None, factory: str | None, backend: str, strict: bool,
    ) -> str | None:
        """A hash of everything a build's output depends on, or None when the model can't be pinned down cheaply.

        Reading every input file costs a fraction of a second for thousands of
        notes; parsing them, loading the model and re-tokenising for BM25 cost
        tens of seconds, which is what an unchanged corpus saves.
        """
        if lexical_only:
            identity: tuple[str, str] | None = ("", "")
        elif encoder is not None:
            identity = (encoder.name, encoder.revision)
            backend = encoder.backend
        else:
            old_model = None
            if model is None and not os.environ.get("DIGEST_RAG_MODEL"):
                try:
                    old_model = read_manifest(index_dir).model_name if (index_dir / MANIFEST).is_file() else None
                except IndexCorruptedError:
                    return None
            identity = model_identity(model or old_model)
        if identity is None:
            return None
        files, skips = corpus_files(paths)
        h = hashlib.sha256()
        options = {
            "format": FORMAT_VERSION, "library": __version__, "analysis": analysis_cache_key(),
            "model": list(identity), "backend": backend, "lexical_only": lexical_only, "factory": factory,
            "chunker": chunker.model_dump() if chunker else None, "strict": strict,
            "missing": [s.source for s in skips],
        }
        h.update(json.dumps(options, sort_keys=True).encode())
        for f in files:
            try:
                data = f.read_bytes()
            except OSError:
                return None  # let the real build report the unreadable file
            h.update(b"\x00" + str(f.resolve()).encode() + b"\x00" + hashlib.sha256(data).digest())
        return h.hexdigest()

    @classmethod
    def _if_up_to_date(
        cls, index_dir: Path, inputs: str, *, encoder: Encoder | None, device: str | None, backend: str
    ) -> DigestIndex | None:
        """The existing index, checked, when it was built from exactly these inputs; else None."""
        if not (index_dir / MANIFEST).is_file():
            return None
        try:
            if read_manifest(index_dir).inputs_fingerprint != inputs:
                return None
            # verify=True: a damaged index is never "up to date"; the rebuild below repairs it.
            current = cls.load(index_dir, encoder=encoder, device=device, backend=backend, verify=True)
        except (IndexCorruptedError, IncompatibleModelError, ValidationError):
            return None
        m = current.manifest
        # A builder killed between its commit and its clean-up leaves the old generation behind; we hold the lock.
        cls._collect_garbage(index_dir, keep=m.data_dir)
        current.last_build = BuildReport(
            papers=m.paper_count, chunks=m.chunk_count, reused=m.chunk_count if m.model_name else 0,
            lexical_only=m.model_name is None, up_to_date=True,
        )
        return current

    @classmethod
    def update(
        cls,
        paths: Iterable[str | Path],
        index_dir: str | Path = DEFAULT_INDEX_DIR,
        **kwargs: Any,
    ) -> DigestIndex:
        """Add or replace the papers of ``paths`` in an existing index, keeping every other paper."""
        index_dir = Path(index_dir)
        read_manifest(index_dir)
        strict = kwargs.pop("strict", False)
        with WriterLock(index_dir, wait=kwargs.pop("wait", 0.0)):
            _test_pause("locked")
            parsed = parse_paths(list(paths), strict=strict, progress=kwargs.get("progress"))
            return cls._write(parsed, index_dir, keep_old=True, **kwargs)

    @classmethod
    def _write(
        cls,
        parsed: ParseResult,
        index_dir: Path,
        *,
        model: str | None = None,
        encoder: Encoder | None = None,
        lexical_only: bool = False,
        chunker: ChunkerSettings | None = None,
        factory: str | None = None,
        device: str | None = None,
        batch_size: int = 32,
        backend: str = "torch",
        progress: ProgressCallback | None = None,
        keep_old: bool,
        inputs_fingerprint: str | None = None,
    ) -> DigestIndex:
        """Write a new generation from ``parsed``; the caller holds the writer lock."""
        t0 = time.perf_counter()
        report = BuildReport(skipped=[s.model_dump() for s in parsed.skipped], merged=list(parsed.merged))
        old_manifest, old_store, old_papers = cls._previous(index_dir, keep_old)
        try:
            papers = cls._merge_papers(parsed, old_papers, keep_old)
            if not papers:
                raise CorpusError("no papers found in the given paths" + (
                    f" ({len(parsed.skipped)} files skipped: {parsed.skipped[0].source}: {parsed.skipped[0].reason})"
                    if parsed.skipped else ""))
            report.added = sorted(set(papers) - set(old_papers))
            report.removed = sorted(set(old_papers) - set(papers))
            report.changed = sorted(
                pid for pid in set(papers) & set(old_papers) if papers[pid] != old_papers[pid]
            )

            if encoder is None and not lexical_only:
                encoder = cls._build_encoder(model, old_manifest, device, batch_size, backend)
            settings = chunker or ChunkerSettings(max_tokens=encoder.max_seq_length if encoder else 512)
            if encoder is not None and settings.max_tokens > encoder.max_seq_length:
                settings = settings.model_copy(update={"max_tokens": encoder.max_seq_length})
            passage_prefix = encoder.passage_prefix if encoder else "passage: "
            count = encoder.count_tokens if encoder else approx_token_count
            paper_list = [papers[pid] for pid in sorted(papers)]
            if progress:
                progress("chunking", 0, len(paper_list))
            chunks = chunk_papers(paper_list, settings, count, passage_prefix)
            if progress:
                progress("chunking", len(paper_list), len(paper_list))
            ids = [c.id for c in chunks]
            if len(set(ids)) != len(ids):
                raise CorpusError("chunk id collision; two papers share an id and position")
            passages = [passage_text(papers[c.paper_id], c.text, settings, c.section_kind) for c in chunks]
            hashes = [sha256_text(passage_prefix + p) for p in passages]

            vectors: np.ndarray | None = None
            if encoder is not None:
                ok, why = _compatible_cache(old_manifest, encoder.name, encoder.revision, encoder.dimension,
                                            passage_prefix, settings)
                cache = old_store.embeddings(encoder.dimension) if (ok and old_store) else {}
                report.full_rebuild_reason = why
                vectors = cls._embed(encoder, passages, hashes, cache, report, progress)
            else:
                report.lexical_only = True
            report.papers = len(paper_list)
            report.chunks = len(chunks)
            token_cache = old_store.doc_tokens(analysis_cache_key()) if old_store else {}
        finally:
            if old_store:
                old_store.close()

        manifest, report.analysed = cls._write_generation(
            index_dir, paper_list, chunks, hashes, vectors, encoder, settings, factory, parsed, papers, progress,
            token_cache,
            # A lexical-only fallback (model requested but unavailable) must not be taken for the requested build.
            inputs_fingerprint if (encoder is not None or lexical_only) else None,
        )
        cls._collect_garbage(index_dir, keep=manifest.data_dir)
        report.seconds = round(time.perf_counter() - t0, 3)
        idx = cls.load(index_dir, encoder=encoder, device=device, backend=backend, verify=False)
        idx.last_build = report
        return idx

    @staticmethod
    def _previous(index_dir: Path, keep_old: bool) -> tuple[IndexManifest | None, Store | None, dict[str, Paper]]:
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
            _verify_files(index_dir, manifest, [STORE_FILE])
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
                _check_recoverable(index_dir, why)
            warnings.warn(
                f"the previous index is damaged ({' '.join(str(exc).split())}); rebuilding from scratch",
                DamagedIndexWarning,
                stacklevel=4,
            )
            return None, None, {}

    @staticmethod
    def _merge_papers(parsed: ParseResult, old: dict[str, Paper], keep_old: bool) -> dict[str, Paper]:
        new = {p.id: p for p in parsed.papers}
        if not keep_old:
            return new
        reread = set(parsed.files)
        merged = {pid: p for pid, p in old.items() if p.source not in reread}
        merged.update(new)
        return merged

    @staticmethod
    def _build_encoder(model: str | None, old: IndexManifest | None, device: str | None, batch_size: int,
                       backend: str) -> Encoder | None:
        explicit = model or os.environ.get("DIGEST_RAG_MODEL") or (old.model_name if old else None)
        try:
            return Encoder.load(explicit, device=device, batch_size=batch_size, backend=backend)
        except ModelUnavailableError as exc:
            if explicit:
                raise
            warnings.warn(
                f"building a lexical-only index: {exc}", ModelFallbackWarning, stacklevel=3
            )
            return None

    @staticmethod
    def _embed(encoder: Encoder, passages: Sequence[str], hashes: Sequence[str], cache: dict[str, np.ndarray],
               report: BuildReport, progress: ProgressCallback | None) -> np.ndarray:
        dim = encoder.dimension
        out = np.zeros((len(passages), dim), dtype=np.float32)
        todo: dict[str, int] = {}
        for i, h in enumerate(hashes):
            if h in cache:
                out[i] = cache[h]
            elif h not in todo:
                todo[h] = i
        report.reused = len(passages) - sum(1 for h in hashes if h in todo)
        if todo:
            order = list(todo.values())
            step = max(encoder.batch_size * 8, 256)
            for start in range(0, len(order), step):
                part = order[start : start + step]
                if progress:
                    progress("encoding", start, len(order))
                vecs = encoder.encode_passages([passages[i] for i in part])
                for i, v in zip(part, vecs, strict=True):
                    out[i] = v
                if start == 0:
                    _test_pause("encoding")
            if progress:
                progress("encoding", len(order), len(order))
            fresh = {hashes[i]: out[i] for i in order}
            for i, h in enumerate(hashes):
                if h in fresh:
                    out[i] = fresh[h]
        report.encoded = len(todo)
        return out

    @classmethod
    def _write_generation(
        cls,
        index_dir: Path,
        papers: list[Paper],
        chunks: list[Chunk],
        hashes: list[str],
        vectors: np.ndarray | None,
        encoder: Encoder | None,
        settings: ChunkerSettings,
        factory: str | None,
        parsed: ParseResult,
        paper_map: dict[str, Paper],
        progress: ProgressCallback | None,
        token_cache: dict[str, list[str]],
        inputs_fingerprint: str | None = None,
    ) -> tuple[IndexManifest, int]:
        import faiss

        index_dir.mkdir(parents=True, exist_ok=True)
        stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
        gen_name = f"gen-{stamp}-{secrets.token_hex(3)}"
        tmp = index_dir / f".tmp-{gen_name}"
        tmp.mkdir()
        try:
            if progress:
                progress("indexing", 0, 3)
            # BM25 first, in memory: the store keeps its tokens as the next build's cache.
            lex = LexicalIndex.build([c for c in chunks if c.section_kind != "title"], paper_map, token_cache=token_cache)
            write_store(tmp / STORE_FILE, papers, chunks, hashes, vectors, lex.token_entries, analysis_cache_key())
            used_factory = None
            if vectors is not None:
                ids = np.array([c.id for c in chunks], dtype=np.int64)
                fidx, used_factory = build_faiss(ids, vectors, factory)
                save_faiss(fidx, tmp / FAISS_FILE)
            _test_pause("writing")
            if progress:
                progress("indexing", 1, 3)
            lex.save(tmp / LEXICAL_DIR)
            if progress:
                progress("indexing", 2, 3)
            files = {
                str(p.relative_to(tmp)): _sha256_file(p) for p in sorted(tmp.rglob("*")) if p.is_file()
            }
            manifest = IndexManifest(
                format_version=FORMAT_VERSION,
                library_version=__version__,
                created_at=_dt.datetime.now().astimezone().isoformat(timespec="seconds"),
                data_dir=gen_name,
                model_name=encoder.name if encoder else None,
                model_revision=encoder.revision if encoder else None,
                dimension=encoder.dimension if encoder else None,
                query_prefix=encoder.query_prefix if encoder else "query: ",
                passage_prefix=encoder.passage_prefix if encoder else "passage: ",
                normalized=True,
                chunker=settings,
                corpus_fingerprint=fingerprint(p.model_dump_json() for p in papers),
                inputs_fingerprint=inputs_fingerprint,
                paper_count=len(papers),
                chunk_count=len(chunks),
                faiss_version=faiss.__version__ if vectors is not None else None,
                index_type=used_factory,
                search_param=search_param_of(fidx) if vectors is not None else None,
                backend=encoder.backend if encoder else None,
                lexical=True,
                sources=sorted({p.source for p in papers}),
                files=files,
            )
            _fsync_tree(tmp)
            os.rename(tmp, index_dir / gen_name)
            _fsync_dir(index_dir)
            mtmp = index_dir / f".{MANIFEST}.tmp"
            with open(mtmp, "w", encoding="utf-8") as fh:
                fh.write(manifest.model_dump_json(indent=2))
                fh.flush()
                os.fsync(fh.fileno())
            _test_pause("swap")
            # The commit point: after this rename every reader sees the new generation.
            os.replace(mtmp, index_dir / MANIFEST)
            _fsync_dir(index_dir)
            _test_pause("committed")
            if progress:
                progress("indexing", 3, 3)
            return manifest, lex.analysed_texts
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    @staticmethod
    def _collect_garbage(index_dir: Path, keep: str) -> None:
        """Delete generations other than ``keep`` (and leftovers of killed builds).

        Only real directories named like our generations, inside the index
        directory whose manifest was just committed, are ever deleted. A reader
        that read the old manifest just before the commit reopens the new one
        (see `load`).
        """
        for p in index_dir.iterdir():
            if (
                p.name != keep
                and (p.name.startswith("gen-") or p.name.startswith(".tmp-gen-"))
                and _OWN_NAMES.fullmatch(p.name)
                and p.is_dir()
                and not p.is_symlink()
            ):
                shutil.rmtree(p, ignore_errors=True)

    # ---------------------------------------------------------------- searching
    @property
    def papers(self) -> dict[str, Paper]:
        """All papers in the index, by id."""
        if self._papers is None:
            self._papers = self.store.papers()
        return self._papers

    def search(
        self,
        query: str,
        k: int = 10,
        *,
        mode: str = "hybrid",
        date_from: _dt.date | str | None = None,
        date_to: _dt.date | str | None = None,
        tags: Sequence[str] | None = None,
        language: str | Sequence[str] | None = None,
        section: str | Sequence[str] | None = None,
    ) -> SearchResults:
        """Papers that answer ``query``, best first, each once with its best chunk as snippet.

        ``mode`` is "hybrid" (default: dense and BM25 fused by reciprocal rank),
        "dense" or "lexical". Filters: ``date_from``/``date_to`` (inclusive,
        date or ISO string), ``tags`` (any of), ``language`` of the matched text
        ("ko", "en", "mixed"), ``section`` kind. When the encoder cannot be
        loaded, hybrid search warns (ModelFallbackWarning) and answers from BM25.
        """
        if mode not in SEARCH_MODES:
            raise UsageError(f"unknown mode '{mode}'; choose one of {', '.join(SEARCH_MODES)}")
        if not isinstance(query, str) or not query.strip():
            raise EmptyQueryError("the query is empty; ask a question, e.g. \"스케일링 법칙에 대한 논문\"")
        if k < 1:
            raise UsageError(f"k must be at least 1 (got {k})")
        query = "".join(ch if ch.isprintable() or ch in "\n\t" else " " for ch in query).strip()
        if len(query) > MAX_QUERY_CHARS:
            warnings.warn(
                f"query of {len(query)} characters truncated to {MAX_QUERY_CHARS}", QueryTruncatedWarning, stacklevel=2
            )
            query = query[:MAX_QUERY_CHARS]
        if not query:
            raise EmptyQueryError("the query has no printable characters")
        allowed = self._allowed(date_from, date_to, tags, language, section)
        n_cand = max(CANDIDATES, k * 20)
        rankings: dict[str, list[tuple[int, float]]] = {}
        use_dense = mode in ("dense", "hybrid") and self.faiss_index is not None
        if mode == "dense" and self.faiss_index is None:
            self.encoder  # raises the lexical-only UsageError
        if use_dense:
            try:
                qv = self.encoder.encode_queries([query])[0]
                rankings["dense"] = search_faiss(self.faiss_index, qv, n_cand, allowed)
            except ModelUnavailableError as exc:
                if mode == "dense":
                    raise
                warnings.warn(
                    f"dense retrieval unavailable, answering from the lexical side: {exc}",
                    ModelFallbackWarning,
                    stacklevel=2,
                )
        if mode in ("lexical", "hybrid") and self.lexical is not None:
            rankings["lexical"] = self.lexical.search(query, n_cand, allowed)
        if len(rankings) == 1:
            name, ranking = next(iter(rankings.items()))
            ranked = [(cid, score, [name]) for cid, score in ranking]
            chunks = self.store.chunks(cid for cid, _s in ranking)
        else:
            chunks = self.store.chunks({cid for r in rankings.values() for cid, _s in r})
            ranked = fuse_papers(rankings, {cid: c.paper_id for cid, c in chunks.items()})
        from .display import query_terms

        terms = query_terms(query)  # once per search, not once per snippet
        hits = aggregate(ranked, chunks, self.papers, k, query=terms)
        return SearchResults((self._text_snippet(h, terms) if h.section == "title" else h for h in hits),
                             query=query, mode=mode)

    def _text_snippet(self, hit: SearchHit, terms: frozenset[str]) -> SearchHit:
        """A hit found by its title passage alone shows the paper's opening text as snippet."""
        chunk = self.store.first_text_chunk(hit.paper.id)
        if chunk is None:
            return hit
        return hit.model_copy(update={
            "snippet": make_snippet(chunk.text, query=terms), "section": chunk.section_kind, "language": chunk.language,
            "chunk_id": chunk.id,
        })

    def _allowed(self, date_from: Any, date_to: Any, tags: Sequence[str] | None, language: Any, section: Any) -> set[int] | None:
        def as_date(v: Any, name: str) -> _dt.date | None:
            if v is None or isinstance(v, _dt.date):
                return v
            try:
                return _dt.date.fromisoformat(str(v))
            except ValueError as exc:
                raise UsageError(f"{name} must be a date like 2024-06-28 (got {v!r})") from exc

        langs = [language] if isinstance(language, str) else list(language or [])
        secs = [section] if isinstance(section, str) else list(section or [])
        for lang in langs:
            if lang not in ("ko", "en", "mixed"):
                raise UsageError(f"unknown language '{lang}'; choose ko, en or mixed")
        df, dt = as_date(date_from, "date_from"), as_date(date_to, "date_to")
        if df is None and dt is None and not tags and not langs and not secs:
            return None
        return self.store.chunk_ids_where(df, dt, list(tags or []), langs, secs)

    # --------------------------------------------------------------------- info
    def info(self) -> dict[str, Any]:
        """A JSON-ready summary of the index: manifest, counts, languages, sections, papers."""
        m = self.manifest
        stats = self.store.stats()
        gen = self.index_dir / m.data_dir
        size = sum(p.stat().st_size for p in gen.rglob("*") if p.is_file())
        chunk_rows = self.store.chunks()
        sections: dict[str, list[dict[str, Any]]] = {}
        for p in self.papers.values():
            sections[p.id] = [{"kind": s.kind, "language": s.language, "chars": len(s.text)} for s in p.sections]
        return {
            "index_dir": str(self.index_dir),
            "format_version": m.format_version,
            "library_version": m.library_version,
            "created_at": m.created_at,
            "model": m.model_name,
            "model_revision": m.model_revision,
            "dimension": m.dimension,
            "index_type": m.index_type or "lexical-only",
            "search_param": m.search_param,
            "backend": m.backend,
            "papers": m.paper_count,
            "chunks": m.chunk_count,
            "size_bytes": size,
            "chunker": m.chunker.model_dump(),
            "corpus_fingerprint": m.corpus_fingerprint,
            **stats,
            "paper_list": [
                {
                    "paper_id": p.id,
                    "title": p.title,
                    "title_ko": p.title_ko,
                    "date": p.date.isoformat() if p.date else None,
                    "tags": p.tags,
                    "source": p.source,
                    "sections": sections[p.id],
                    "chunks": sum(1 for c in chunk_rows.values() if c.paper_id == p.id),
                }
                for p in sorted(self.papers.values(), key=lambda p: (p.source, p.id))
            ],
        }
