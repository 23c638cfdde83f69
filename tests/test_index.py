"""DigestIndex: build-save-load-search round trip, manifest, filters, model checks, incremental builds."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import pytest

from digest_rag import (
    DigestIndex,
    EmptyQueryError,
    IncompatibleModelError,
    IndexNotFoundError,
    ModelFallbackWarning,
    ModelUnavailableError,
    UnsafeIndexPathError,
    UsageError,
)
from digest_rag.dense.encoder import Encoder
from digest_rag.parsing import parse_paths
from digest_rag.testing import build_tiny_model, corpus_texts


def test_manifest_fields(seed_index_dir: Path, tiny_model: Path) -> None:
    m = json.loads((seed_index_dir / "manifest.json").read_text())
    for key in ("format_version", "library_version", "model_name", "model_revision", "dimension", "query_prefix",
                "passage_prefix", "normalized", "chunker", "corpus_fingerprint", "paper_count", "chunk_count",
                "faiss_version", "created_at", "files"):
        assert key in m, key
    assert m["model_name"] == str(tiny_model.resolve())
    assert m["paper_count"] == 29 and m["dimension"] == 128 and m["normalized"] is True
    assert m["query_prefix"] == "query: " and m["passage_prefix"] == "passage: "
    gen = seed_index_dir / m["data_dir"]
    assert (gen / "vectors.faiss").is_file() and (gen / "store.sqlite").is_file()
    assert not list(seed_index_dir.glob("*.pkl")) and not list(seed_index_dir.rglob("*.pickle"))


def test_every_seed_title_finds_its_paper_first(seed_index: DigestIndex) -> None:
    papers = seed_index.papers
    assert len(papers) == 29
    for mode in ("hybrid", "lexical"):
        for p in papers.values():
            hits = seed_index.search(p.title, k=3, mode=mode)
            assert hits and hits[0].paper.id == p.id, (mode, p.title, [h.paper.title for h in hits])


def test_dense_mode_with_tiny_model_finds_exact_titles(seed_index: DigestIndex) -> None:
    # Random weights still map identical token sequences close together: a sanity check of the dense path.
    found = sum(seed_index.search(p.title, k=5, mode="dense")[0].paper.id == p.id for p in seed_index.papers.values())
    assert found >= 10


def test_hits_are_unique_papers_with_snippets(seed_index: DigestIndex) -> None:
    hits = seed_index.search("긴 컨텍스트를 악용하는 탈옥 공격", k=10)
    ids = [h.paper.id for h in hits]
    assert len(ids) == len(set(ids)) and len(hits) == 10
    # Which paper wins in hybrid mode depends on the (random) tiny model; lexical mode is deterministic.
    lexical = seed_index.search("긴 컨텍스트를 악용하는 탈옥 공격", k=3, mode="lexical")
    assert lexical[0].paper.title == "Many-shot Jailbreaking" and lexical[0].modes == ["lexical"]
    for h in hits:
        assert h.snippet and h.section in ("summary", "abstract", "commentary", "key_points", "body")
        assert h.language in ("ko", "en", "mixed") and h.modes
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_filters(seed_index: DigestIndex) -> None:
    hits = seed_index.search("language models", k=30, date_from="2024-06-01")
    assert hits and all(h.paper.date and h.paper.date.isoformat() >= "2024-06-01" for h in hits)
    hits = seed_index.search("language models", k=30, tags=["scaling-law"])
    assert hits and all("scaling-law" in h.paper.tags for h in hits)
    hits = seed_index.search("언어 모델", k=30, language="ko", mode="lexical")
    assert hits and all(h.language == "ko" for h in hits)
    assert seed_index.search("language", k=5, date_to="2000-01-01") == []
    with pytest.raises(UsageError):
        seed_index.search("x", date_from="yesterday")


def test_bad_queries(seed_index: DigestIndex) -> None:
    for q in ("", "   ", "\n\t"):
        with pytest.raises(EmptyQueryError):
            seed_index.search(q)
    with pytest.raises(UsageError):
        seed_index.search("x", mode="fuzzy")
    assert seed_index.search("'; DROP TABLE papers; --", k=3, mode="lexical") is not None
    assert len(seed_index.papers) == 29


def test_reload_gives_identical_results(seed_index_dir: Path) -> None:
    a = DigestIndex.load(seed_index_dir)
    b = DigestIndex.load(seed_index_dir)
    q = "Gemma 2 지식 증류"
    assert [h.model_dump() for h in a.search(q)] == [h.model_dump() for h in b.search(q)]


def test_other_model_refused(seed_index_dir: Path, tmp_path: Path, seed_corpus: Path) -> None:
    other = build_tiny_model(tmp_path / "other", corpus_texts([seed_corpus]), seed=1)
    with pytest.raises(IncompatibleModelError) as err:
        DigestIndex.load(seed_index_dir, model=str(other)).search("x", mode="dense")
    assert "differs from the index's model" in str(err.value)
    enc = Encoder.load(str(other))
    with pytest.raises(IncompatibleModelError):
        DigestIndex.load(seed_index_dir, encoder=enc)


def test_missing_model_hybrid_falls_back_dense_fails(seed_index_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGEST_RAG_MODEL", "unreachable-org/unreachable-model")
    idx = DigestIndex.load(seed_index_dir)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # The tiny random model's index calibrated its dense weight to 0 (hybrid is lexical there and needs no
        # encoder): weights that fuse the dense side make hybrid reach for the missing model.
        hits = idx.search("긴 컨텍스트를 악용하는 탈옥 공격", k=3, fusion_weights={"dense": 1.0, "lexical": 1.0})
        calibrated = idx.search("긴 컨텍스트를 악용하는 탈옥 공격", k=3)
    assert hits[0].paper.title == "Many-shot Jailbreaking" and hits[0].modes == ["lexical"]
    assert [h.paper.id for h in calibrated] == [h.paper.id for h in hits]
    fallbacks = [w for w in caught if issubclass(w.category, ModelFallbackWarning)]
    assert len(fallbacks) == 1 and "unreachable-org/unreachable-model" in str(fallbacks[0].message)
    with pytest.raises(ModelUnavailableError):
        idx.search("x", mode="dense")


def test_lexical_only_build(tmp_path: Path, seed_corpus: Path) -> None:
    idx = DigestIndex.build([seed_corpus], index_dir=tmp_path / "lex", lexical_only=True)
    assert idx.manifest.model_name is None and idx.faiss_index is None
    assert idx.search("긴 컨텍스트를 악용하는 탈옥 공격", mode="lexical")[0].paper.title == "Many-shot Jailbreaking"
    assert idx.search("Gemma 2", mode="hybrid")[0].paper.title.startswith("Gemma 2")
    with pytest.raises(UsageError):
        idx.search("x", mode="dense")


def test_default_model_unavailable_builds_lexical_with_warning(tmp_path: Path, seed_corpus: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.warns(ModelFallbackWarning):
        idx = DigestIndex.build([seed_corpus], index_dir=tmp_path / "ix")
    assert idx.manifest.model_name is None and idx.manifest.paper_count == 29


def test_explicit_missing_model_fails_build_and_writes_nothing(tmp_path: Path, seed_corpus: Path) -> None:
    with pytest.raises(ModelUnavailableError):
        DigestIndex.build([seed_corpus], index_dir=tmp_path / "ix", model=str(tmp_path / "nope"))
    assert not (tmp_path / "ix" / "manifest.json").exists()


def test_incremental_rebuild_reuses_embeddings(tmp_path: Path, seed_corpus: Path, tiny_model: Path) -> None:
    corpus = tmp_path / "corpus"
    shutil.copytree(seed_corpus, corpus)
    first = DigestIndex.build([corpus], index_dir=tmp_path / "ix", model=str(tiny_model))
    n = first.last_build.chunks
    assert first.last_build.encoded == n and first.last_build.reused == 0
    ids_before = {c for c in first.store.chunks()}
    again = DigestIndex.build([corpus], index_dir=tmp_path / "ix", model=str(tiny_model))
    assert again.last_build.encoded == 0 and again.last_build.reused == n
    assert {c for c in again.store.chunks()} == ids_before
    # Remove one digest: its papers leave the index; nothing is re-encoded.
    (corpus / "2024-06-28-daily-digest.txt").unlink()
    third = DigestIndex.build([corpus], index_dir=tmp_path / "ix", model=str(tiny_model))
    assert third.manifest.paper_count == 23 and len(third.last_build.removed) == 6 and third.last_build.encoded == 0
    # Update with the file again: added back, the rest untouched.
    upd = DigestIndex.update([seed_corpus / "2024-06-28-daily-digest.txt"], index_dir=tmp_path / "ix")
    assert upd.manifest.paper_count == 29 and len(upd.last_build.added) == 6
    readded = {pid for pid in upd.last_build.added}
    n_readded = sum(1 for c in upd.store.chunks().values() if c.paper_id in readded)
    # Nothing is encoded: the re-added papers' passages are still in the persistent embedding cache
    # (written by the first build), every other chunk's too.
    assert n_readded > 0 and upd.last_build.encoded == 0 and upd.last_build.reused == n
    assert len(list((tmp_path / "ix").glob("gen-*"))) == 1


def test_model_change_forces_full_reencode(tmp_path: Path, seed_corpus: Path, tiny_model: Path) -> None:
    DigestIndex.build([seed_corpus], index_dir=tmp_path / "ix", model=str(tiny_model))
    other = build_tiny_model(tmp_path / "other", corpus_texts([seed_corpus]), seed=3)
    idx = DigestIndex.build([seed_corpus], index_dir=tmp_path / "ix", model=str(other))
    assert idx.last_build.reused == 0 and "model changed" in (idx.last_build.full_rebuild_reason or "")


def test_refuses_foreign_directory(tmp_path: Path, seed_corpus: Path) -> None:
    target = tmp_path / "docs"
    target.mkdir()
    (target / "thesis.tex").write_text("precious")
    with pytest.raises(UnsafeIndexPathError):
        DigestIndex.build([seed_corpus], index_dir=target, lexical_only=True)
    assert (target / "thesis.tex").read_text() == "precious"


def test_load_missing_index(tmp_path: Path) -> None:
    with pytest.raises(IndexNotFoundError):
        DigestIndex.load(tmp_path / "nothing")


def test_info(seed_index: DigestIndex) -> None:
    info = seed_index.info()
    assert info["papers"] == 29 and len(info["paper_list"]) == 29
    assert set(info["chunks_by_language"]) <= {"ko", "en", "mixed"}
    assert all(p["sections"] for p in info["paper_list"])
    assert info["backend"] == "torch" and info["search_param"] is None and info["index_type"] == "IDMap2,Flat"


def test_seed_corpus_parses_to_29(seed_corpus: Path) -> None:
    assert len(parse_paths([seed_corpus]).papers) == 29


def test_search_after_close_says_closed(seed_index_dir: Path) -> None:
    """Issue 16 item 7: a search after close() said the index was corrupted."""
    from digest_rag import IndexClosedError, IndexCorruptedError

    idx = DigestIndex.load(seed_index_dir)
    assert idx.search("Gemma 2", k=1, mode="lexical")
    idx.close()
    idx.close()  # twice is fine
    for use in (lambda: idx.search("Gemma 2", k=1, mode="lexical"), idx.info, lambda: idx.papers):
        with pytest.raises(IndexClosedError, match="was closed; open it again") as err:
            use()
        assert not isinstance(err.value, IndexCorruptedError)
    with DigestIndex.load(seed_index_dir) as again:
        pass
    with pytest.raises(IndexClosedError):
        again.search("Gemma 2", mode="lexical")


def test_paper_generation_and_loaded_encoder(seed_index_dir: Path, tiny_encoder: Encoder) -> None:
    """The facade's small reader API (used by serve/shell/mcp): one paper by id, the generation, the loaded encoder."""
    with DigestIndex.load(seed_index_dir) as idx:
        assert idx.generation == json.loads((seed_index_dir / "manifest.json").read_text())["data_dir"]
        pid = idx.search("Many-shot Jailbreaking", k=1, mode="lexical")[0].paper.id
        paper = idx.paper(pid)
        assert paper is not None and paper.title == "Many-shot Jailbreaking" and paper.sections
        assert idx.paper("no-such-paper") is None
        assert idx.loaded_encoder is None  # lazy: nothing loaded before a dense search
        idx.search("Many-shot Jailbreaking", k=1, mode="dense")
        encoder = idx.loaded_encoder
        assert encoder is not None
    with DigestIndex.load(seed_index_dir, encoder=encoder) as again:
        assert again.loaded_encoder is encoder


