"""`DigestIndex.remove` / `update(prune=True)`: papers of named or vanished source files leave the index, the rest stay."""

from __future__ import annotations

from pathlib import Path

import pytest

from digest_rag import DigestIndex
from digest_rag.build.removal import sources_to_drop
from digest_rag.dense.encoder import Encoder
from digest_rag.errors import CorpusError

DAILY = "2024-06-28-daily-digest.txt"


def _by_source(index: DigestIndex) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for p in index.papers.values():
        out.setdefault(p.source, set()).add(p.id)
    return out


def test_sources_to_drop_matches_by_path_and_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "corpus" / "sub").mkdir(parents=True)
    for name in ("corpus/a.txt", "corpus/sub/b.txt", "corpus/sub/c.txt"):
        (tmp_path / name).write_text("x", encoding="utf-8")
    sources = ["corpus/a.txt", "corpus/sub/b.txt", "corpus/sub/c.txt", "corpus/gone.txt"]
    assert sources_to_drop(sources, ["corpus/a.txt"]) == ["corpus/a.txt"]
    assert sources_to_drop(sources, [str(tmp_path / "corpus" / "a.txt")]) == ["corpus/a.txt"]  # the same file
    assert sources_to_drop(sources, ["corpus/sub"]) == ["corpus/sub/b.txt", "corpus/sub/c.txt"]
    assert sources_to_drop(sources, ["./corpus/sub/"]) == ["corpus/sub/b.txt", "corpus/sub/c.txt"]
    assert sources_to_drop(sources, prune=True) == ["corpus/gone.txt"]
    assert sources_to_drop(sources, ["corpus/a.txt"], prune=True) == ["corpus/a.txt", "corpus/gone.txt"]
    with pytest.raises(CorpusError, match="corpus/nope.txt"):
        sources_to_drop(sources, ["corpus/nope.txt"])  # a typo is an error, not a silent no-op
    with pytest.raises(CorpusError, match="corpus/su"):
        sources_to_drop(sources, ["corpus/su"])  # a prefix of a name is not a directory


def test_prune_from_another_directory_refuses_to_empty_the_index(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CorpusError, match="directory the index was built in"):
        sources_to_drop(["corpus/a.txt", "corpus/b.txt"], prune=True)


def test_remove_drops_one_files_papers_and_keeps_the_rest(tmp_path: Path, corpus: Path) -> None:
    ix = tmp_path / "ix"
    with DigestIndex.build([corpus], index_dir=ix, lexical_only=True) as before:
        sources = _by_source(before)
        generation = before.generation
    daily = str(corpus / DAILY)
    with DigestIndex.remove([daily], index_dir=ix) as after:
        assert after.last_build is not None
        assert sorted(after.last_build.removed) == sorted(sources[daily])
        assert after.last_build.added == [] and after.last_build.changed == []
        assert _by_source(after) == {s: ids for s, ids in sources.items() if s != daily}
        assert after.generation != generation
        assert not {h.paper.id for h in after.search("Gemma 2", k=50, mode="lexical")} & sources[daily]
        assert after.manifest.model_name is None  # still lexical-only


def test_remove_of_an_unknown_path_changes_nothing(tmp_path: Path, corpus: Path) -> None:
    ix = tmp_path / "ix"
    with DigestIndex.build([corpus], index_dir=ix, lexical_only=True) as before:
        generation, count = before.generation, len(before.papers)
    with pytest.raises(CorpusError, match="nope.txt"):
        DigestIndex.remove([corpus / "nope.txt"], index_dir=ix)
    with DigestIndex.load(ix) as same:
        assert same.generation == generation and len(same.papers) == count


def test_update_prune_drops_papers_of_deleted_files(tmp_path: Path, corpus: Path) -> None:
    ix = tmp_path / "ix"
    with DigestIndex.build([corpus], index_dir=ix, lexical_only=True) as before:
        sources = _by_source(before)
    (corpus / DAILY).unlink()
    with DigestIndex.update([], index_dir=ix, prune=True) as after:
        assert after.last_build is not None
        assert sorted(after.last_build.removed) == sorted(sources[str(corpus / DAILY)])
        assert set(_by_source(after)) == set(sources) - {str(corpus / DAILY)}


def test_remove_from_a_dense_index_encodes_nothing(tmp_path: Path, corpus: Path, tiny_encoder: Encoder) -> None:
    ix = tmp_path / "ix"
    DigestIndex.build([corpus], index_dir=ix, encoder=tiny_encoder).close()
    with DigestIndex.remove([corpus / DAILY], index_dir=ix) as after:
        assert after.last_build is not None and after.last_build.encoded == 0
        assert after.manifest.model_name is not None
        assert all(h.paper.source != str(corpus / DAILY) for h in after.search("Gemma 2", k=20, mode="dense"))
