"""Which of an index's source files an update drops: those named for removal, and with ``prune`` those gone.

An index records each paper's source as the path its build was given (``corpus/2024-06-28-daily-digest.txt``,
relative to the directory the build ran in). ``digest-rag remove PATHS...`` drops the papers of files (or of
every file under a directory) by that path or by the file it names; ``update --prune`` drops the papers of
source files that no longer exist. The papers of the remaining files stay as they are (nothing is parsed or
encoded again); `digest_rag.build.pipeline.update_index` writes the new generation.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from digest_rag.build.previous import previous_index
from digest_rag.errors import CorpusError

__all__ = ["dropped_sources", "sources_to_drop"]


def _resolved(path: str | os.PathLike[str]) -> Path:
    return Path(os.path.abspath(os.fspath(path)))  # no symlink resolution: a removed file's link cannot be followed


def _matches(source: str, target: str | os.PathLike[str]) -> bool:
    if source == os.fspath(target):
        return True
    src, tgt = _resolved(source), _resolved(target)
    return src == tgt or src.is_relative_to(tgt)


def sources_to_drop(sources: Iterable[str], remove: Sequence[str | os.PathLike[str]] = (), *,
                    prune: bool = False) -> list[str]:
    """The sources (as recorded) whose papers go: matched by a path of ``remove``, or missing with ``prune``.

    A path of ``remove`` that matches no source raises CorpusError (a typo must not pass for a removal), and
    so does ``prune`` when not one source file exists: the index was built from another directory, and
    pruning from here would empty it.
    """
    known = sorted(sources)
    drop: set[str] = set()
    for target in remove:
        hit = [s for s in known if _matches(s, target)]
        if not hit:
            raise CorpusError(f"no paper in the index comes from {os.fspath(target)!r} "
                              "('digest-rag info --json' lists the index's source files)")
        drop.update(hit)
    if prune:
        gone = [s for s in known if not Path(s).exists()]
        if known and len(gone) == len(known):
            raise CorpusError(
                f"none of the index's {len(known)} source files exists from {os.getcwd()}; paths are recorded as the "
                f"build was given them (e.g. {known[0]!r}), so prune from the directory the index was built in")
        drop.update(gone)
    return sorted(drop)


def dropped_sources(index_dir: Path, remove: Sequence[str | os.PathLike[str]], *, prune: bool) -> list[str]:
    """`sources_to_drop` over the sources of the index at ``index_dir`` (its writer lock held by the caller)."""
    old = previous_index(index_dir, keep_old=True)
    assert old.store is not None  # keep_old: a missing or damaged store raised
    try:
        return sources_to_drop(old.store.sources(), remove, prune=prune)
    finally:
        old.store.close()
