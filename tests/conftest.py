"""Shared fixtures: the seed corpus, the shared ml-papers corpus, a tiny offline model, a built index."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Tests never reach the hub: a model that is not local must fail fast, not retry for a minute.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.pop("DIGEST_RAG_MODEL", None)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def seed_corpus() -> Path:
    return ROOT / "corpus"


@pytest.fixture()
def corpus(tmp_path: Path, seed_corpus: Path) -> Path:
    """A writable copy of the seed corpus, for tests that edit files between builds."""
    out = tmp_path / "corpus"
    shutil.copytree(seed_corpus, out)
    return out


@pytest.fixture(scope="session")
def ml_papers_dir() -> Path:
    path = ROOT.parent / "shared" / "corpora" / "ml-papers" / "papers"
    if not path.is_dir():
        pytest.skip(f"shared ml-papers corpus not found at {path}")
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory, seed_corpus: Path) -> Path:
    """A random-weight sentence-transformers model with a tokenizer trained on the seeds, built once."""
    from digest_rag.testing import build_tiny_model, corpus_texts

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"), corpus_texts([seed_corpus]))


@pytest.fixture(scope="session")
def tiny_encoder(tiny_model: Path):  # noqa: ANN201 - Encoder, imported lazily
    from digest_rag.dense.encoder import Encoder

    return Encoder.load(str(tiny_model), device="cpu")


@pytest.fixture(scope="session")
def seed_index_dir(tmp_path_factory: pytest.TempPathFactory, seed_corpus: Path, tiny_model: Path) -> Path:
    """An index over the seed corpus built with the tiny model (read-only for tests)."""
    from digest_rag import DigestIndex

    out = tmp_path_factory.mktemp("seed-index") / "index"
    DigestIndex.build([seed_corpus], index_dir=out, model=str(tiny_model)).close()
    return out


@pytest.fixture()
def seed_index(seed_index_dir: Path) -> Iterator[object]:
    from digest_rag import DigestIndex

    idx = DigestIndex.load(seed_index_dir)
    yield idx
    idx.close()


@pytest.fixture(scope="session")
def ray_local() -> Iterator[object]:
    """One local Ray instance (2 CPUs) for every Ray test of the session; skips when ray is not installed."""
    import logging

    ray = pytest.importorskip("ray", reason='ray is not installed (pip install "digest-rag[ray]")')
    pytest.importorskip("ray.data", reason='Ray Data is not installed (pip install "digest-rag[ray]")')
    # Workers are separate processes: they must import this checkout's digest_rag, offline like the tests.
    env = {"PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
           "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False,
             runtime_env={"env_vars": env})
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def seed_lexical_index_dir(tmp_path_factory: pytest.TempPathFactory, seed_corpus: Path) -> Path:
    """A lexical-only index over the seed corpus (no model: quick to open in a subprocess); read-only for tests."""
    from digest_rag import DigestIndex

    out = tmp_path_factory.mktemp("seed-lexical-index") / "index"
    DigestIndex.build([seed_corpus], index_dir=out, lexical_only=True).close()
    return out
