"""storage.generation: a generation appears whole at its commit or not at all; garbage collection is confined."""

from __future__ import annotations

from pathlib import Path

import pytest

from digest_rag.storage.generation import PendingGeneration, collect_garbage
from digest_rag.storage.layout import MANIFEST, read_manifest


def test_an_uncommitted_generation_leaves_nothing(tmp_path: Path) -> None:
    index_dir = tmp_path / "ix"
    with pytest.raises(KeyboardInterrupt):
        with PendingGeneration(index_dir) as gen:
            (gen.path / "store.sqlite").write_bytes(b"half written")
            raise KeyboardInterrupt
    assert list(index_dir.iterdir()) == []


def test_commit_renames_into_place_and_swaps_the_manifest(tmp_path: Path, seed_index_dir: Path) -> None:
    manifest = read_manifest(seed_index_dir)
    index_dir = tmp_path / "ix"
    with PendingGeneration(index_dir) as gen:
        (gen.path / "a.txt").write_text("a", encoding="utf-8")
        assert set(gen.checksums()) == {"a.txt"}
        assert not (index_dir / MANIFEST).exists()  # nothing is visible before the commit
        gen.commit(manifest.model_copy(update={"data_dir": gen.name}))
    assert (index_dir / gen.name / "a.txt").read_text(encoding="utf-8") == "a"
    assert read_manifest(index_dir).data_dir == gen.name
    assert not [p for p in index_dir.iterdir() if p.name.startswith(".tmp-")]


def test_garbage_collection_deletes_only_our_old_generations(tmp_path: Path) -> None:
    index_dir = tmp_path / "ix"
    index_dir.mkdir()
    names = [PendingGeneration(index_dir).name for _ in range(2)]
    keep, old = names[0], names[1] + "0"
    for name in (keep, old, ".tmp-" + old):
        (index_dir / name).mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").write_text("x", encoding="utf-8")
    (index_dir / (names[1] + "1")).symlink_to(outside, target_is_directory=True)  # our name, but a link out
    (index_dir / "notes").mkdir()  # not our name
    collect_garbage(index_dir, keep)
    assert sorted(p.name for p in index_dir.iterdir()) == sorted([keep, names[1] + "1", "notes"])
    assert (outside / "precious").exists()
