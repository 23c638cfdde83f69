"""Generations: writing one (a temporary directory, fsync, rename, the atomic manifest swap), opening one,
and removing old or abandoned ones.

A build writes its files into a hidden ``.tmp-gen-*`` directory, fsyncs them,
renames the directory to ``gen-*`` and then atomically replaces manifest.json.
Until that last rename, readers (and a crash) see the previous index, whole.
Old and abandoned generations are deleted afterwards, under the writer lock.
"""

from __future__ import annotations

import datetime as _dt
import os
import secrets
import shutil
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from digest_rag.lexical.word_table import EOJEOL_FILE
from digest_rag.errors import IndexCorruptedError
from digest_rag.storage.layout import (
    FAISS_FILE,
    GENERATION_PREFIX,
    LEXICAL_DIR,
    MANIFEST,
    STORE_FILE,
    TMP_GENERATION_PREFIX,
    is_own_name,
    mark_verified,
    required_files,
    sha256_file,
    verify_files,
)
from digest_rag.lexical.index import LexicalIndex
from digest_rag.models import IndexManifest
from digest_rag.storage.store import Store
from digest_rag.dense.faiss_index import load_faiss, set_search_param

# Test-only hook: with DIGEST_RAG_TEST_PAUSE_AT=<stage> a build stops itself (SIGSTOP) at that
# stage after printing one line, so tests can SIGKILL or SIGCONT it at a deterministic point.
# Stages: "locked" (lock held, nothing parsed), "encoding" (after the first batch), "writing"
# (new generation half written), "swap" (generation renamed, manifest not yet replaced),
# "committed" (manifest replaced, old generation not yet collected); "encoding@0.8" (encoding
# progress past 80%, after that batch was written to the embedding cache: resume tests).
PAUSE_ENV = "DIGEST_RAG_TEST_PAUSE_AT"


def pause_point(stage: str) -> None:
    """Stop this process at ``stage`` when the test hook asks for it; a no-op otherwise."""
    if os.environ.get(PAUSE_ENV) == stage:
        sys.stderr.write(f"digest_rag: paused at {stage} (pid {os.getpid()})\n")
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGSTOP)


def pause_at_progress(stage: str, done: int, total: int) -> None:
    """`pause_point` for "<stage>@<fraction>": stop once ``done / total`` reaches the fraction."""
    want = os.environ.get(PAUSE_ENV, "")
    if not want.startswith(stage + "@") or total <= 0:
        return
    try:
        fraction = float(want.split("@", 1)[1])
    except ValueError:
        return
    if done / total >= fraction:
        pause_point(want)


def fsync_dir(path: Path) -> None:
    """Make a directory's entries (renames, new files) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    """fsync every file and directory below ``root``."""
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            fd = os.open(os.path.join(dirpath, f), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(dirpath))


class PendingGeneration:
    """A generation being written: files go into ``path``; `commit` makes it the index's current one.

    Use as a context manager: leaving the block without a commit (an error, a
    KeyboardInterrupt) removes the temporary directory and leaves the index as
    it was. The caller holds the writer lock.
    """

    def __init__(self, index_dir: Path) -> None:
        self.index_dir = index_dir
        stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
        self.name = f"{GENERATION_PREFIX}{stamp}-{secrets.token_hex(3)}"
        self.path = index_dir / f".tmp-{self.name}"
        self.committed = False

    def __enter__(self) -> PendingGeneration:
        self.index_dir.mkdir(parents=True, exist_ok=True)
        self.path.mkdir()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        if not self.committed:
            shutil.rmtree(self.path, ignore_errors=True)

    def checksums(self) -> dict[str, str]:
        """sha256 of every file written so far, by its path relative to the generation."""
        return {str(p.relative_to(self.path)): sha256_file(p) for p in sorted(self.path.rglob("*")) if p.is_file()}

    def commit(self, manifest: IndexManifest) -> None:
        """Make the files durable, rename the generation into place and swap manifest.json atomically."""
        fsync_tree(self.path)
        final = self.index_dir / self.name
        os.rename(self.path, final)
        self.path = final
        fsync_dir(self.index_dir)
        # A temp name of this writer's own: two writers must never write (or rename) one another's file.
        mtmp = self.index_dir / f".{MANIFEST}.{secrets.token_hex(8)}.tmp"
        try:
            with open(mtmp, "x", encoding="utf-8") as fh:
                fh.write(manifest.model_dump_json(indent=2))
                fh.flush()
                os.fsync(fh.fileno())
            pause_point("swap")
            # The commit point: after this rename every reader sees the new generation.
            os.replace(mtmp, self.index_dir / MANIFEST)
        except BaseException:
            mtmp.unlink(missing_ok=True)
            shutil.rmtree(final, ignore_errors=True)
            raise
        self.committed = True
        fsync_dir(self.index_dir)
        mark_verified(self.index_dir, manifest)
        pause_point("committed")


def collect_garbage(index_dir: Path, keep: str) -> None:
    """Delete generations other than ``keep`` and leftovers of killed builds.

    Only real directories named like our generations, inside the index
    directory whose manifest was just committed, are ever deleted. A reader
    that read the old manifest just before the commit reopens the new one
    (see `DigestIndex.load`).
    """
    for p in index_dir.iterdir():
        if (
            p.name != keep
            and (p.name.startswith(GENERATION_PREFIX) or p.name.startswith(TMP_GENERATION_PREFIX))
            and is_own_name(p.name)
            and p.is_dir()
            and not p.is_symlink()
        ):
            shutil.rmtree(p, ignore_errors=True)
        elif p.name.startswith(f".{MANIFEST}.") and is_own_name(p.name) and p.is_file() and not p.is_symlink():
            p.unlink(missing_ok=True)  # a killed writer's manifest temp file; we hold the lock, so it is stale



@dataclass
class OpenGeneration:
    """The files of one committed generation, opened and cross-checked: store, FAISS (or None) and BM25."""

    store: Store
    faiss_index: object | None
    lexical: LexicalIndex | None

    def close(self) -> None:
        """Release the SQLite connections."""
        self.store.close()
        if self.lexical is not None:
            self.lexical.close()


def open_generation(
    index_dir: Path, manifest: IndexManifest, verify: bool, search_param: int | None = None
) -> OpenGeneration:
    """Check and open the files of the generation ``manifest`` names.

    With ``verify`` every file's sha256 is checked; without it only the FAISS
    file's, because FAISS must never be handed a damaged file. The files'
    counts must agree with each other and with the manifest.
    """
    gen = index_dir / manifest.data_dir
    if not gen.is_dir():
        raise IndexCorruptedError(f"{gen}: data directory named by the manifest is missing")
    required = required_files(manifest)
    verify_files(index_dir, manifest, sorted(set(manifest.files) | set(required)) if verify else
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
            lexical = LexicalIndex.load(gen / LEXICAL_DIR, eojeols=f"{LEXICAL_DIR}/{EOJEOL_FILE}" in manifest.files)
            if len(lexical) != text_chunks:
                raise IndexCorruptedError(
                    f"{gen / LEXICAL_DIR}: holds {len(lexical)} chunks, the store {text_chunks}; files disagree"
                )
    except BaseException:
        store.close()
        raise
    return OpenGeneration(store, faiss_index, lexical)
