"""Whether an index is up to date: the inputs' fingerprint (files, options, model) and the check against the manifest's."""

from __future__ import annotations

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from digest_rag.dense.encoder import UNAVAILABLE, Encoder, model_identity, resolve_model_name, requested_model
from digest_rag.errors import (
    IncompatibleModelError,
    IndexCorruptedError,
    ParseError,
)
from digest_rag.storage.generation import (
    collect_garbage,
    open_generation,
)
from digest_rag.storage.layout import (
    FORMAT_VERSION,
    MANIFEST,
    read_manifest,
)
from digest_rag.lexical.builder import analysis_cache_key
from digest_rag.models import (
    BuildOptions,
)
from digest_rag.parsing import Skip, corpus_files
from digest_rag.text import read_bytes
from digest_rag.version import __version__
from digest_rag.build.report import BuildOutcome, BuildReport


# ------------------------------------------------------------------ up-to-date check
def previous_options(index_dir: Path) -> BuildOptions | None:
    """The options saved by the index being replaced, or None (no index, or one too damaged to say)."""
    if not (index_dir / MANIFEST).is_file():
        return None
    try:
        return BuildOptions.from_manifest(read_manifest(index_dir))
    except IndexCorruptedError:
        return None  # the build repairs it; previous_index decides whether that is allowed


def default_model_unavailable(options: BuildOptions, encoder: Encoder | None) -> bool:
    """Whether this build wants the default model (no model asked for, none in $DIGEST_RAG_MODEL) and the
    local cache lacks it: then the build falls back to lexical-only (`load_encoder`). A files-only check."""
    if options.lexical_only or encoder is not None or requested_model(options.model):
        return False
    return model_identity(None) is None


def inputs_fingerprint(
    paths: Sequence[str | Path], index_dir: Path, options: BuildOptions, encoder: Encoder | None, *,
    listing: tuple[list[Path], list[Skip]] | None = None, digests: dict[str, bytes] | None = None,
    unavailable: bool = False,
) -> str | None:
    """A hash of everything a build's output depends on, or None when the model can't be pinned down cheaply.

    With ``unavailable`` (`default_model_unavailable`) the model's identity is "the default model, not in
    the local cache": the lexical-only index that such a build falls back to is up to date on the next
    build for as long as the model stays out of the cache, and rebuilt with vectors once it is there.

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
        identity = model_identity(requested_model(options.model))
        if identity is None and unavailable:
            identity = (resolve_model_name(None), UNAVAILABLE)
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
            data = read_bytes(f)  # as the build reads it: a link swapped in since the listing is not followed
            # Path.resolve walks every component of every file; a directory's is the same for its files.
            if f.is_symlink():
                real = f.resolve()
            else:
                parent = real_dirs.get(f.parent)
                if parent is None:
                    parent = real_dirs[f.parent] = f.parent.resolve()
                real = parent / f.name
        except (OSError, ParseError):
            return None  # let the real build report the unreadable file
        digest = hashlib.sha256(data).digest()
        if digests is not None:
            digests[str(f)] = digest
        # fsencode: a file name that is not UTF-8 is hashed as the bytes it is (str.encode raised on it).
        h.update(b"\x00" + os.fsencode(real) + b"\x00" + digest)
    return h.hexdigest()


def if_up_to_date(index_dir: Path, inputs: str, *, dry_run: bool = False) -> BuildOutcome | None:
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
