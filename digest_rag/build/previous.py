"""The index a build replaces: opened for its caches when it is sound, refused or repaired (the damaged-index policy) when not."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

from digest_rag.errors import (
    DamagedIndexWarning,
    IndexCorruptedError,
    IndexVersionError,
)
from digest_rag.lexical.lexicon import LEXICON_FILE, MinedLexicon
from digest_rag.lexical.word_table import EOJEOL_FILE
from digest_rag.models import (
    IndexManifest,
)
from digest_rag.storage.layout import (
    LEXICAL_DIR,
    MANIFEST,
    STORE_FILE,
    check_recoverable,
    read_manifest,
    verify_files,
)
from digest_rag.storage.store import Store


@dataclass
class LexicalBase:
    """What a build may start its word table and lexicon from: the previous generation's files, verified."""

    eojeols: Path | None = None
    lexicon: MinedLexicon | None = None


def previous_lexical_base(index_dir: Path, old: IndexManifest | None) -> LexicalBase:
    """The previous generation's word table file and lexicon when their checksums match its manifest.

    The table is copied and patched (`eojeols.EojeolRecorder`), the lexicon's co-occurrence pairs reused
    when their inputs are unchanged (`lexicon.mine_lexicon`): a file that fails its checksum is not used,
    and the build derives both from scratch as it always could.
    """
    if old is None:
        return LexicalBase()
    out = LexicalBase()
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
class PreviousIndex:
    manifest: IndexManifest | None = None
    store: Store | None = None
    damage: str | None = None  # why the index being replaced could not be read; the build repairs it

    @property
    def damaged(self) -> bool:
        return self.damage is not None


def previous_index(index_dir: Path, keep_old: bool) -> PreviousIndex:
    """The index being replaced: its manifest and its store (papers, chunk, embedding and token caches).

    A damaged previous index must not block the build that repairs it: build
    then starts from scratch with a DamagedIndexWarning (never reusing an
    embedding from a store that fails its checksum, nor from the embedding
    cache beside it). ``update`` needs the old papers, so it fails instead.
    """
    if not (index_dir / MANIFEST).is_file():
        return PreviousIndex()
    store: Store | None = None
    try:
        manifest = read_manifest(index_dir)
        verify_files(index_dir, manifest, [STORE_FILE])
        store = Store(index_dir / manifest.data_dir / STORE_FILE)
        store.counts()  # an unreadable store is damaged now, not half-way through the build
        return PreviousIndex(manifest, store)
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
        damage = " ".join(str(exc).split())
        warnings.warn(f"the previous index is damaged ({damage}); rebuilding from scratch", DamagedIndexWarning,
                      stacklevel=6)
        return PreviousIndex(damage=damage)
