"""Index directory layout: checksum verification is done once per file version."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import digest_rag.storage.layout as layout
from digest_rag import DigestIndex
from digest_rag.errors import IndexCorruptedError


def test_checksums_are_hashed_once_per_file_version(seed_index_dir: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGEST_RAG_CACHE", str(tmp_path / "cache"))
    ix = tmp_path / "ix"
    shutil.copytree(seed_index_dir, ix)
    DigestIndex.load(ix, verify=True).close()
    assert list((tmp_path / "cache" / "verified").iterdir())
    hashed: list[Path] = []
    real = layout.sha256_file
    monkeypatch.setattr(layout, "sha256_file", lambda p: hashed.append(p) or real(p))
    DigestIndex.load(ix, verify=True).close()
    assert hashed == []  # unchanged files: their markers stand for the hash
    # Any write changes the file's ctime, so an altered file is hashed again and caught.
    store = next(ix.glob("gen-*/store.sqlite"))
    data = bytearray(store.read_bytes())
    data[len(data) // 2] ^= 0xFF
    store.write_bytes(bytes(data))
    with pytest.raises(IndexCorruptedError, match="checksum mismatch"):
        DigestIndex.load(ix, verify=True)
    assert store in hashed


def test_a_build_vouches_for_the_files_it_wrote(seed_corpus: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The first search after a build does not hash the files the build just hashed (GBs at 1M papers)."""
    monkeypatch.setenv("DIGEST_RAG_CACHE", str(tmp_path / "cache"))
    ix = tmp_path / "ix"
    DigestIndex.build([seed_corpus / "2024-06-28-daily-digest.txt"], index_dir=ix, lexical_only=True).close()
    hashed: list[Path] = []
    real = layout.sha256_file
    monkeypatch.setattr(layout, "sha256_file", lambda p: hashed.append(p) or real(p))
    DigestIndex.load(ix, verify=True).close()
    assert hashed == []


def test_the_suite_uses_a_temporary_cache() -> None:
    """Issue 22 item 7: the tests wrote their markers, histories and exports to the real ~/.cache/digest_rag."""
    from digest_rag.storage.cachedir import cache_root

    assert not cache_root().resolve().is_relative_to((Path.home() / ".cache").resolve())


def test_builds_replace_their_verified_markers(seed_corpus: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 22 item 7: every build left ~12 more markers in verified/, none ever deleted."""
    import os

    monkeypatch.setenv("DIGEST_RAG_CACHE", str(tmp_path / "cache"))
    verified = tmp_path / "cache" / "verified"
    verified.mkdir(parents=True)
    flat = verified / ("0" * 40)  # a marker of the old flat layout
    flat.touch()
    stale = verified / ("f" * 24)  # the markers of an index nobody has built or opened for months
    stale.mkdir()
    (stale / ("1" * 40)).touch()
    os.utime(stale, (0, 0))
    counts = []
    for _ in range(3):
        DigestIndex.build([seed_corpus], index_dir=tmp_path / "ix", lexical_only=True, force=True).close()
        counts.append(sum(1 for p in verified.rglob("*") if p.is_file()))
    with DigestIndex.load(tmp_path / "ix") as idx:
        files = len(idx.manifest.files)
    assert counts == [files] * 3
    assert not flat.exists() and not stale.exists()
    hashed: list[Path] = []
    real = layout.sha256_file
    monkeypatch.setattr(layout, "sha256_file", lambda p: hashed.append(p) or real(p))
    DigestIndex.load(tmp_path / "ix", verify=True).close()
    assert hashed == []  # the build's markers still vouch for its files
