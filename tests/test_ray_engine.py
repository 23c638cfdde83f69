"""The Ray engine on a local Ray instance: same parse, chunks, vectors and FAISS index as the local path."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from digest_rag.chunking import chunk_papers
from digest_rag.errors import UsageError
from digest_rag.models import ChunkerSettings
from digest_rag.parsing import parse_paths
from digest_rag.vectors import build_faiss, search_faiss


@pytest.fixture(scope="module")
def engine(ray_local: object):  # noqa: ANN201 - RayEngine, imported after the skip
    from digest_rag.ray_engine import RayEngine, RayOptions

    with RayEngine(RayOptions(workers=2)) as eng:
        yield eng


def test_missing_ray_gives_the_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    from digest_rag import ray_engine

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError, as when it is not installed
    with pytest.raises(UsageError, match=r'pip install "digest-rag\[ray\]"'):
        ray_engine.import_ray()


def test_parse_and_chunk_match_the_local_path(engine: object, seed_corpus: Path, tmp_path: Path, tiny_encoder: object,
                                              tiny_model: Path) -> None:
    from digest_rag.ray_engine import EncoderSpec

    # A duplicate paper in a second file: merged on the driver, re-chunked there; a bad file: skipped alike.
    corpus = tmp_path / "c"
    corpus.mkdir()
    for f in sorted(seed_corpus.iterdir())[:2]:
        (corpus / f.name).write_bytes(f.read_bytes())
    first = sorted(seed_corpus.iterdir())[0]
    (corpus / ("z-copy-" + first.name)).write_text(first.read_text(encoding="utf-8") + "\n추가 문장.\n", encoding="utf-8")
    (corpus / "empty.txt").write_text("   \n", encoding="utf-8")
    local = parse_paths([corpus])
    settings = ChunkerSettings(max_tokens=tiny_encoder.max_seq_length)
    out = engine.parse_and_chunk([corpus], settings, EncoderSpec(model=str(tiny_model)))
    assert out.parsed == local and local.merged and local.skipped
    papers = sorted(local.papers, key=lambda p: p.id)
    expected = chunk_papers(papers, settings, tiny_encoder.count_tokens, tiny_encoder.passage_prefix)
    assert out.chunks_for(papers, settings, tiny_encoder.count_tokens) == expected
    # Lexical-only: the approximate token count, no model on the workers.
    lex = engine.parse_and_chunk([corpus], settings, None)
    assert lex.chunks_for(papers, settings, None) == chunk_papers(papers, settings, None)


def test_embed_matches_the_local_encoder(engine: object, tiny_encoder: object, tiny_model: Path) -> None:
    from digest_rag.ray_engine import EncoderSpec, encode_step

    texts = [f"문장 {i} about scaling laws and LoRA {i % 7}" for i in range(300)]
    out = np.full((len(texts), tiny_encoder.dimension), np.nan, dtype=np.float32)
    calls: list[int] = []

    def on_batch(pos: np.ndarray, vecs: np.ndarray) -> None:
        calls.append(len(pos))
        out[pos] = vecs

    spec = EncoderSpec(model=str(tiny_model), device="cpu", batch_size=16)
    assert engine.embed(texts, spec, on_batch) == len(texts)
    assert sum(calls) == len(texts)
    # Batches of encode_step passages, as the local engine cuts them, so vectors agree to rounding.
    step = encode_step(16)
    expected = np.concatenate([tiny_encoder.encode_passages(texts[s : s + step]) for s in range(0, len(texts), step)])
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_ivf_through_ray_equals_single_process_add(engine: object) -> None:
    """20k synthetic vectors, small nlist, shards added by Ray tasks and merged: the single-process index."""
    import faiss

    rng = np.random.default_rng(11)
    centres = rng.standard_normal((50, 48)).astype(np.float32)
    x = centres[rng.integers(0, 50, 20_000)] + 0.5 * rng.standard_normal((20_000, 48)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    ids = rng.choice(10**15, size=len(x), replace=False).astype(np.int64)
    queries = x[rng.choice(len(x), 50, replace=False)] + 0.05 * rng.standard_normal((50, 48)).astype(np.float32)
    merged_shards: list[tuple[int, int]] = []
    merged, factory = engine.build_faiss(
        ids, x, "IVF32,SQ8", shard_rows=6_000,
        progress=lambda stage, done, total: merged_shards.append((done, total)) if stage == "merging" else None,
    )
    single, _ = build_faiss(ids, x, "IVF32,SQ8")
    assert factory == "IVF32,SQ8" and merged_shards[-1] == (4, 4)
    assert merged.ntotal == single.ntotal == 20_000
    assert [[i for i, _s in search_faiss(merged, q, 10)] for q in queries] == \
        [[i for i, _s in search_faiss(single, q, 10)] for q in queries]
    assert np.array_equal(faiss.serialize_index(merged), faiss.serialize_index(single))
