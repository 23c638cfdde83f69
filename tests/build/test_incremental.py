"""Incremental builds: the embedding cache skips encoding, papers are replaced and removed,
model/chunker changes force a full re-encode, factory strings and search parameters stick."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from digest_rag import DigestIndex
from digest_rag.dense.encoder import Encoder
from digest_rag.errors import UsageError
from digest_rag.models import ChunkerSettings

BLOG = "2024-04-22-blog-llama-introduction.txt"


def test_cache_hits_skip_the_encoder(tmp_path: Path, corpus: Path, tiny_encoder: Encoder) -> None:
    first = DigestIndex.build([corpus], index_dir=tmp_path / "ix", encoder=tiny_encoder)
    calls, texts = tiny_encoder.encode_calls, tiny_encoder.encoded_texts
    # force: go through parsing and chunking (the up-to-date shortcut is tested below).
    again = DigestIndex.build([corpus], index_dir=tmp_path / "ix", encoder=tiny_encoder, force=True)
    # The model was never called: every passage came from the cache.
    assert tiny_encoder.encode_calls == calls and tiny_encoder.encoded_texts == texts
    assert again.last_build.encoded == 0 and again.last_build.reused == first.last_build.chunks
    assert again.last_build.full_rebuild_reason is None
    assert not again.last_build.up_to_date and again.manifest.data_dir != first.manifest.data_dir


def test_replaced_paper_reencodes_only_its_changed_chunks(tmp_path: Path, corpus: Path, tiny_encoder: Encoder) -> None:
    first = DigestIndex.build([corpus], index_dir=tmp_path / "ix", encoder=tiny_encoder)
    total = first.last_build.chunks
    lines = (corpus / BLOG).read_text(encoding="utf-8").splitlines()
    # Extend the longest prose line: it sits inside a section the parser keeps.
    longest = max(range(len(lines)), key=lambda i: len(lines[i]))
    lines[longest] += " An added sentence about grouped-query attention and tokenizer efficiency."
    (corpus / BLOG).write_text("\n".join(lines) + "\n", encoding="utf-8")
    texts = tiny_encoder.encoded_texts
    upd = DigestIndex.update([corpus / BLOG], index_dir=tmp_path / "ix", encoder=tiny_encoder)
    report = upd.last_build
    assert len(report.changed) == 1 and not report.added and not report.removed
    assert 1 <= report.encoded < total / 4
    assert tiny_encoder.encoded_texts - texts == report.encoded
    assert upd.manifest.paper_count == first.manifest.paper_count
    hits = upd.search("added sentence grouped-query attention tokenizer efficiency", k=3, mode="lexical")
    assert hits and hits[0].paper.id == report.changed[0]


def test_removed_papers_leave_the_index(tmp_path: Path, corpus: Path, tiny_encoder: Encoder) -> None:
    first = DigestIndex.build([corpus], index_dir=tmp_path / "ix", encoder=tiny_encoder)
    (corpus / BLOG).unlink()
    texts = tiny_encoder.encoded_texts
    after = DigestIndex.build([corpus], index_dir=tmp_path / "ix", encoder=tiny_encoder)
    assert after.last_build.removed and tiny_encoder.encoded_texts == texts
    gone = set(after.last_build.removed)
    assert not gone & set(after.papers)
    assert after.manifest.chunk_count == int(after.faiss_index.ntotal) < first.manifest.chunk_count
    assert all(c.paper_id not in gone for c in after.store.chunks().values())


def test_chunker_change_forces_full_reencode(tmp_path: Path, corpus: Path, tiny_encoder: Encoder) -> None:
    DigestIndex.build([corpus], index_dir=tmp_path / "ix", encoder=tiny_encoder)
    idx = DigestIndex.build([corpus], index_dir=tmp_path / "ix", encoder=tiny_encoder,
                            chunker=ChunkerSettings(target_tokens=120, overlap_tokens=20))
    assert idx.last_build.reused == 0 and idx.last_build.encoded > 0
    assert "chunker" in (idx.last_build.full_rebuild_reason or "")


def test_factory_override_recorded_and_searchable(tmp_path: Path, corpus: Path, tiny_encoder: Encoder) -> None:
    idx = DigestIndex.build([corpus], index_dir=tmp_path / "ix", encoder=tiny_encoder, factory="IDMap2,HNSW16,Flat")
    assert idx.manifest.index_type == "IDMap2,HNSW16,Flat" and idx.manifest.search_param == 64
    title = next(iter(idx.papers.values())).title
    assert idx.search(title, k=3, mode="dense")
    # Rebuilding with a new factory re-uses every embedding. (Since BuildOptions are saved with the index,
    # a plain rebuild would keep HNSW16: the new factory is asked for explicitly.)
    flat = DigestIndex.build([corpus], index_dir=tmp_path / "ix", encoder=tiny_encoder, factory="IDMap2,Flat")
    assert flat.manifest.index_type == "IDMap2,Flat" and flat.manifest.search_param is None
    assert flat.last_build.encoded == 0


def test_invalid_factory_is_usage_error_and_keeps_old_index(tmp_path: Path, corpus: Path, tiny_encoder: Encoder) -> None:
    first = DigestIndex.build([corpus], index_dir=tmp_path / "ix", encoder=tiny_encoder)
    with pytest.raises(UsageError, match="factory"):
        DigestIndex.build([corpus], index_dir=tmp_path / "ix", encoder=tiny_encoder, factory="IVF12,Bogus")
    assert DigestIndex.load(tmp_path / "ix").manifest.data_dir == first.manifest.data_dir


def test_search_param_applied_at_load(tmp_path: Path, corpus: Path, tiny_encoder: Encoder) -> None:
    from digest_rag.dense.faiss_index import search_param_of

    built = DigestIndex.build([corpus], index_dir=tmp_path / "ix", encoder=tiny_encoder, factory="IVF4,Flat")
    assert built.manifest.index_type == "IVF4,Flat" and built.manifest.search_param == 4  # clamped to nlist
    low = DigestIndex.load(tmp_path / "ix", search_param=1)
    assert search_param_of(low.faiss_index) == 1
    default = DigestIndex.load(tmp_path / "ix")
    assert search_param_of(default.faiss_index) == built.manifest.search_param
    title = next(iter(default.papers.values())).title
    assert default.search(title, k=3, mode="dense")
    assert default.info()["search_param"] == 4


def test_unchanged_inputs_are_up_to_date_and_nothing_is_written(tmp_path: Path, corpus: Path, tiny_encoder: Encoder) -> None:
    first = DigestIndex.build([corpus], index_dir=tmp_path / "ix", encoder=tiny_encoder)
    assert first.manifest.inputs_fingerprint and not first.last_build.up_to_date
    calls = tiny_encoder.encode_calls
    (corpus / BLOG).touch()  # a new mtime with the same bytes is no change
    again = DigestIndex.build([corpus], index_dir=tmp_path / "ix", encoder=tiny_encoder)
    rep = again.last_build
    assert rep.up_to_date and rep.papers == first.last_build.papers and rep.chunks == first.last_build.chunks
    assert rep.encoded == 0 and rep.reused == rep.chunks and tiny_encoder.encode_calls == calls
    assert again.manifest == first.manifest
    assert [p.name for p in (tmp_path / "ix").glob("gen-*")] == [first.manifest.data_dir]
    assert again.search("LLaMA", k=1)


def test_up_to_date_check_does_not_load_the_model(tmp_path: Path, corpus: Path, tiny_model: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    DigestIndex.build([corpus], index_dir=tmp_path / "ix", model=str(tiny_model))

    def no_load(*_a: object, **_k: object) -> Encoder:
        raise AssertionError("model loaded for an unchanged corpus")

    monkeypatch.setattr(Encoder, "load", no_load)
    again = DigestIndex.build([corpus], index_dir=tmp_path / "ix", model=str(tiny_model))
    assert again.last_build.up_to_date
    # No model given: the index's own model is the one that counts.
    assert DigestIndex.build([corpus], index_dir=tmp_path / "ix").last_build.up_to_date


@pytest.mark.parametrize("change", ["file", "new file", "removed file", "chunker", "factory", "lexical-only", "paths"])
def test_any_input_or_option_change_rebuilds(tmp_path: Path, corpus: Path, tiny_encoder: Encoder, change: str) -> None:
    first = DigestIndex.build([corpus], index_dir=tmp_path / "ix", encoder=tiny_encoder)
    kwargs: dict[str, object] = {"encoder": tiny_encoder}
    paths: list[Path] = [corpus]
    if change == "file":
        with open(corpus / BLOG, "a", encoding="utf-8") as fh:
            fh.write("\nThe model is trained on public data only.\n")
    elif change == "new file":
        shutil.copy(corpus / BLOG, corpus / "copy-of-blog.txt")
    elif change == "removed file":
        (corpus / BLOG).unlink()
    elif change == "chunker":
        kwargs["chunker"] = ChunkerSettings(target_tokens=120, overlap_tokens=20)
    elif change == "factory":
        kwargs["factory"] = "IDMap2,HNSW16,Flat"
    elif change == "lexical-only":
        kwargs = {"lexical_only": True}
    else:
        paths = sorted(corpus.glob("*.txt"))[:2]
    again = DigestIndex.build(paths, index_dir=tmp_path / "ix", **kwargs)
    assert not again.last_build.up_to_date
    assert again.manifest.data_dir != first.manifest.data_dir


def test_update_then_build_is_not_mistaken_for_up_to_date(tmp_path: Path, corpus: Path, tiny_encoder: Encoder) -> None:
    DigestIndex.build([corpus], index_dir=tmp_path / "ix", encoder=tiny_encoder)
    extra = tmp_path / "extra"
    extra.mkdir()
    shutil.copy(corpus / BLOG, extra / "other.txt")
    updated = DigestIndex.update([extra / "other.txt"], index_dir=tmp_path / "ix", encoder=tiny_encoder)
    assert updated.manifest.inputs_fingerprint is None
    rebuilt = DigestIndex.build([corpus], index_dir=tmp_path / "ix", encoder=tiny_encoder)
    assert not rebuilt.last_build.up_to_date
    assert all(p.source != str(extra / "other.txt") for p in rebuilt.papers.values())


def test_bm25_tokens_come_from_the_previous_build(tmp_path: Path, corpus: Path, tiny_encoder: Encoder) -> None:
    first = DigestIndex.build([corpus], index_dir=tmp_path / "ix", encoder=tiny_encoder)
    assert first.last_build.analysed > first.last_build.papers  # chunk texts plus title/tag/author texts
    forced = DigestIndex.build([corpus], index_dir=tmp_path / "ix", encoder=tiny_encoder, force=True)
    assert forced.last_build.analysed == 0
    lines = (corpus / BLOG).read_text(encoding="utf-8").splitlines()
    i = max(range(len(lines)), key=lambda j: len(lines[j]))
    lines[i] += " 이 문장은 토큰 캐시 테스트를 위해 추가되었다."
    (corpus / BLOG).write_text("\n".join(lines) + "\n", encoding="utf-8")
    edited = DigestIndex.build([corpus], index_dir=tmp_path / "ix", encoder=tiny_encoder)
    # Only the chunks whose text changed (the same ones the encoder saw) are analysed again.
    assert 0 < edited.last_build.analysed <= edited.last_build.encoded < edited.last_build.chunks // 10
    for q in ("LLaMA", "토큰 캐시 테스트"):
        assert edited.search(q, k=1, mode="lexical")
    assert edited.search("토큰 캐시 테스트", k=1, mode="lexical")[0].paper.source.endswith(BLOG)


def _use_hub_cache(monkeypatch: pytest.MonkeyPatch, cache: Path) -> None:
    """Point the process at an empty hub cache: the environment (read by digest_rag's files-only check) and
    huggingface_hub's constant (read once at its import, which an earlier test may have done)."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))


def _hub_cache_with(cache: Path, name: str, model_dir: Path) -> None:
    """Lay ``model_dir`` out in a Hugging Face hub cache as hub model ``name`` (refs/main -> snapshot)."""
    repo = cache / ("models--" + name.replace("/", "--"))
    shutil.copytree(model_dir, repo / "snapshots" / "0123abcd")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd")


def test_fallback_index_is_up_to_date_until_the_model_is_cached(tmp_path: Path, corpus: Path, tiny_model: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Built without --lexical-only and without the model: the next build is up to date (no model load, no new
    generation, no warning) while the model stays out of the cache, and builds vectors once it is there."""
    import warnings

    from digest_rag.dense.encoder import DEFAULT_MODEL
    from digest_rag.errors import ModelFallbackWarning

    cache = tmp_path / "hub"
    _use_hub_cache(monkeypatch, cache)
    with pytest.warns(ModelFallbackWarning):
        first = DigestIndex.build([corpus], index_dir=tmp_path / "ix")
    assert first.manifest.model_name is None and first.manifest.inputs_fingerprint

    def no_load(*_a: object, **_k: object) -> Encoder:
        raise AssertionError("model load attempted for an unchanged fallback index")

    with monkeypatch.context() as m, warnings.catch_warnings():
        m.setattr(Encoder, "load", no_load)
        warnings.simplefilter("error", ModelFallbackWarning)
        again = DigestIndex.build([corpus], index_dir=tmp_path / "ix")
        assert again.last_build.up_to_date and again.manifest == first.manifest
        plan = DigestIndex.dry_run([corpus], index_dir=tmp_path / "ix")
        assert plan.up_to_date
    assert [p.name for p in (tmp_path / "ix").glob("gen-*")] == [first.manifest.data_dir]
    # A changed file is a real rebuild, still a fallback, and again up to date afterwards.
    (corpus / BLOG).write_text((corpus / BLOG).read_text() + "\n")
    with pytest.warns(ModelFallbackWarning):
        assert not DigestIndex.build([corpus], index_dir=tmp_path / "ix").last_build.up_to_date
    assert DigestIndex.build([corpus], index_dir=tmp_path / "ix").last_build.up_to_date
    # The model arrives in the local cache: the next build is not up to date and embeds.
    _hub_cache_with(cache, DEFAULT_MODEL, tiny_model)
    hybrid = DigestIndex.build([corpus], index_dir=tmp_path / "ix")
    assert not hybrid.last_build.up_to_date and hybrid.manifest.model_name == DEFAULT_MODEL
    assert hybrid.last_build.encoded == hybrid.last_build.chunks


def test_explicit_lexical_only_fingerprint_ignores_the_model_cache(tmp_path: Path, corpus: Path, tiny_model: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """--lexical-only means no model at all: a model appearing in the cache changes nothing."""
    from digest_rag.dense.encoder import DEFAULT_MODEL

    cache = tmp_path / "hub"
    _use_hub_cache(monkeypatch, cache)
    DigestIndex.build([corpus], index_dir=tmp_path / "ix", lexical_only=True).close()
    _hub_cache_with(cache, DEFAULT_MODEL, tiny_model)
    assert DigestIndex.build([corpus], index_dir=tmp_path / "ix").last_build.up_to_date
