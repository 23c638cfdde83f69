"""The Ray engine on one local Ray instance (tests/conftest.py: ray_local): same index as the local engine.

Kept small for CI time: one Ray instance and the tiny model for the whole session, the seed corpus,
one Ray-built index shared by the module (copied where a test writes).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from digest_rag import DigestIndex
from digest_rag.build.chunking import chunk_papers
from digest_rag.frontends.cli import app
from digest_rag.errors import UsageError
from digest_rag.models import ChunkerSettings
from digest_rag.parsing import parse_paths
from digest_rag.testing import clustered_vectors
from digest_rag.dense.faiss_index import build_faiss, search_faiss

QUERIES = [
    "긴 컨텍스트를 악용하는 탈옥 공격", "Gemma 2 지식 증류", "scaling laws for language models", "LoRA 파인튜닝",
    "강화학습 보상 모델", "mixture of experts routing", "멀티모달 비전 언어 모델", "retrieval augmented generation",
    "코드 생성 벤치마크", "state space models Mamba",
]


@pytest.fixture(scope="module")
def engine(ray_local: object):  # noqa: ANN201 - RayEngine, imported after the skip
    from digest_rag.build.ray_engine import RayEngine, RayOptions

    # One encoder actor: each actor is a process that imports torch and loads the model (CI time).
    with RayEngine(RayOptions(workers=1)) as eng:
        yield eng


@pytest.fixture(scope="module")
def ray_index_dir(ray_local: object, tmp_path_factory: pytest.TempPathFactory, seed_corpus: Path, tiny_model: Path) -> Path:
    """The seed corpus built by the Ray engine with the tiny model (read-only for tests: copy it to write)."""
    out = tmp_path_factory.mktemp("ray-index") / "index"
    stages: list[str] = []
    idx = DigestIndex.build([seed_corpus], index_dir=out, model=str(tiny_model), engine="ray", workers=2,
                            progress=lambda stage, done, total: stages.append(stage))
    assert idx.last_build.encoded > 0
    # The CLI's progress bars show the Ray stages.
    assert {"parsing", "chunking", "encoding", "merging"} <= set(stages)
    idx.close()
    return out


def _answers(index_dir: Path, encoder: object) -> list[tuple[str, list[tuple[str, float]]]]:
    idx = DigestIndex.load(index_dir, encoder=encoder, verify=True)
    try:
        return [(f"{mode}:{q}", [(h.paper.id, round(h.score, 5)) for h in idx.search(q, k=5, mode=mode)])
                for q in QUERIES for mode in ("hybrid", "dense", "lexical")]
    finally:
        idx.close()


# ------------------------------------------------------------------------------ stages


def test_missing_ray_gives_the_install_hint(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, seed_corpus: Path) -> None:
    from digest_rag.build import ray_engine

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError, as when it is not installed
    with pytest.raises(UsageError, match=r'pip install "digest-rag\[ray\]"'):
        ray_engine.import_ray()
    res = CliRunner().invoke(app, ["build", str(seed_corpus), "--index", str(tmp_path / "ix"), "--engine", "ray",
                                   "--lexical-only"])
    assert res.exit_code == 1
    assert 'pip install "digest-rag[ray]"' in res.output and len(res.output.strip().splitlines()) == 1
    assert not (tmp_path / "ix" / "manifest.json").exists()
    # A dry run plans the build it was asked for, the Ray one (which here says Ray is missing), not a local one.
    res = CliRunner().invoke(app, ["build", str(seed_corpus), "--index", str(tmp_path / "ix"), "--engine", "ray",
                                   "--lexical-only", "--dry-run"])
    assert res.exit_code == 1 and 'pip install "digest-rag[ray]"' in res.output, res.output
    # Ray options without the Ray engine are a mistake, not silently ignored.
    res = CliRunner().invoke(app, ["build", str(seed_corpus), "--index", str(tmp_path / "ix"), "--workers", "2"])
    assert res.exit_code == 1 and "--engine ray" in res.output


def test_parse_and_chunk_match_the_local_path(engine: object, seed_corpus: Path, tmp_path: Path, tiny_encoder: object,
                                              tiny_model: Path) -> None:
    # A paper repeated in a second file (merged), and an empty file (skipped): both handled as parse_paths does.
    corpus = tmp_path / "c"
    corpus.mkdir()
    files = sorted(seed_corpus.iterdir())
    for f in files[:2]:
        (corpus / f.name).write_bytes(f.read_bytes())
    (corpus / ("z-copy-" + files[0].name)).write_text(files[0].read_text(encoding="utf-8") + "\n추가 문장.\n",
                                                      encoding="utf-8")
    (corpus / "empty.txt").write_text("   \n", encoding="utf-8")
    local = parse_paths([corpus])
    parsed = engine.parse([corpus])
    assert parsed == local and local.merged and local.skipped
    papers = sorted(local.papers, key=lambda p: p.id)
    settings = ChunkerSettings(max_tokens=tiny_encoder.max_seq_length)
    assert engine.chunk(papers, settings, None, tiny_encoder.passage_prefix, str(tiny_model)) == \
        chunk_papers(papers, settings, tiny_encoder.count_tokens, tiny_encoder.passage_prefix)
    # Lexical-only: the approximate token count, no model on the workers.
    assert engine.chunk(papers, settings) == chunk_papers(papers, settings)


def test_encode_matches_the_local_encoder(engine: object, tiny_encoder: object) -> None:
    from digest_rag.build.engines import LocalEngine

    texts = [f"문장 {i} about scaling laws and LoRA {i % 7}" for i in range(300)]

    def run(eng: object) -> np.ndarray:
        out = np.full((len(texts), tiny_encoder.dimension), np.nan, dtype=np.float32)

        def on_batch(pos: np.ndarray, vecs: np.ndarray) -> None:
            out[pos] = vecs

        eng.encode(tiny_encoder, texts, on_batch, None)
        return out

    # Batches of encode_step passages on both engines, so the vectors agree to rounding.
    np.testing.assert_allclose(run(engine), run(LocalEngine()), atol=1e-5)


def test_ivf_through_ray_equals_single_process_add(engine: object) -> None:
    """20k synthetic vectors, small nlist, shards added by Ray tasks and merged: the single-process index."""
    import faiss

    ids, x, queries = clustered_vectors(20_000, 48, clusters=50, noise=0.5, query_noise=0.05, seed=11)
    merged_shards: list[tuple[int, int]] = []
    merged, factory = engine.build_faiss(
        ids, x, "IVF32,SQ8", lambda stage, done, total: merged_shards.append((done, total)), shard_rows=6_000,
    )
    single, _ = build_faiss(ids, x, "IVF32,SQ8")
    assert factory == "IVF32,SQ8" and merged_shards[-1] == (4, 4)
    assert merged.ntotal == single.ntotal == 20_000
    assert [[i for i, _s in search_faiss(merged, q, 10)] for q in queries] == \
        [[i for i, _s in search_faiss(single, q, 10)] for q in queries]
    assert np.array_equal(faiss.serialize_index(merged), faiss.serialize_index(single))


# ------------------------------------------------------------------------------ builds


def test_ray_build_equals_local_build(ray_index_dir: Path, seed_index_dir: Path, tiny_encoder: object) -> None:
    ray_idx, local_idx = DigestIndex.load(ray_index_dir), DigestIndex.load(seed_index_dir)
    try:
        assert ray_idx.papers == local_idx.papers
        assert list(ray_idx.store.chunks()) == list(local_idx.store.chunks())  # same chunk ids, same order
        assert ray_idx.store.chunks() == local_idx.store.chunks()
        rm, lm = ray_idx.manifest, local_idx.manifest
        for field in ("paper_count", "chunk_count", "model_name", "model_revision", "dimension", "index_type",
                      "chunker", "corpus_fingerprint", "sources"):
            assert getattr(rm, field) == getattr(lm, field), field
        assert rm.build_options.engine == "ray" and lm.build_options.engine == "local"
    finally:
        ray_idx.close()
        local_idx.close()
    assert _answers(ray_index_dir, tiny_encoder) == _answers(seed_index_dir, tiny_encoder)


def test_engines_reuse_each_others_embeddings(ray_index_dir: Path, seed_index_dir: Path, tmp_path: Path,
                                              seed_corpus: Path, tiny_model: Path) -> None:
    ray_then_local = shutil.copytree(ray_index_dir, tmp_path / "a")
    idx = DigestIndex.build([seed_corpus], index_dir=ray_then_local, model=str(tiny_model), force=True)
    assert idx.last_build.encoded == 0 and idx.last_build.reused == idx.last_build.chunks > 0
    assert idx.manifest.build_options.engine == "local"  # the engine is never inherited
    idx.close()
    local_then_ray = shutil.copytree(seed_index_dir, tmp_path / "b")
    idx = DigestIndex.build([seed_corpus], index_dir=local_then_ray, model=str(tiny_model), force=True, engine="ray")
    assert idx.last_build.encoded == 0 and idx.last_build.reused == idx.last_build.chunks > 0
    idx.close()


def _edited_digest(seed_corpus: Path, dst: Path) -> Path:
    """One seed digest with a sentence appended to it: an update changes its papers and encodes."""
    src = sorted(seed_corpus.glob("*daily*"))[0]
    out = dst / src.name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(src.read_text(encoding="utf-8").rstrip() + " 레이 엔진 테스트를 위한 문장.\n", encoding="utf-8")
    return out


def test_update_on_a_ray_built_index(ray_index_dir: Path, tmp_path: Path, seed_corpus: Path, tiny_encoder: object) -> None:
    ix = shutil.copytree(ray_index_dir, tmp_path / "ix")
    before = DigestIndex.load(ix)
    n_papers = before.manifest.paper_count
    before.close()
    new = _edited_digest(seed_corpus, tmp_path / "new")
    idx = DigestIndex.update([new], index_dir=ix, engine="ray", workers=1)
    rep = idx.last_build
    # The digest's papers are re-read from the new file (same ids): changed, only the edited passage encoded.
    assert rep.changed and 0 < rep.encoded < rep.chunks and rep.reused > 0
    assert idx.manifest.paper_count == n_papers and {p.source for p in idx.papers.values()} >= {str(new)}
    idx.close()
    # And a local update after it: the engines share the index as they share the cache.
    idx = DigestIndex.update([new], index_dir=ix)
    assert idx.last_build.encoded == 0
    idx.close()
    assert _answers(ix, tiny_encoder)


def test_killed_ray_driver_leaves_the_old_index(ray_local: object, ray_index_dir: Path, tmp_path: Path,
                                                seed_corpus: Path, tiny_model: Path, tiny_encoder: object) -> None:
    ix = shutil.copytree(ray_index_dir, tmp_path / "ix")
    before = _answers(ix, tiny_encoder)
    corpus = shutil.copytree(seed_corpus, tmp_path / "corpus")
    _edited_digest(seed_corpus, corpus)  # overwrites that digest with the edited one: something to encode
    address = ray_local.get_runtime_context().gcs_address
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "DIGEST_RAG_TEST_PAUSE_AT": "encoding"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "digest_rag.frontends.cli", "build", str(corpus), "--index", str(ix), "--model", str(tiny_model),
         "--engine", "ray", "--ray-address", address, "--workers", "1", "-q"],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env,
    )
    try:
        assert proc.stderr is not None
        seen = []
        deadline = time.monotonic() + 240
        for line in proc.stderr:
            seen.append(line)
            if "paused at encoding" in line:
                break
            assert time.monotonic() < deadline, "no pause at encoding"
        else:
            pytest.fail(f"build exited (rc={proc.wait()}) before encoding: {''.join(seen)[-2000:]}")
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()
    assert _answers(ix, tiny_encoder) == before
    # The next build (local here) finishes the job and clears the killed build's leftovers.
    idx = DigestIndex.build([corpus], index_dir=ix, model=str(tiny_model))
    # The killed build put the batch it had encoded into the embedding cache before it paused: the rerun
    # takes it from there (resume) and encodes only what was still missing, and the edit is in the index.
    assert idx.last_build.changed and idx.last_build.encoded + idx.last_build.reused == idx.last_build.chunks
    assert idx.last_build.encoded < idx.last_build.chunks
    idx.close()
    assert not [p.name for p in ix.iterdir() if p.name.startswith(".tmp-")]
