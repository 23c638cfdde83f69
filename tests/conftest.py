"""Shared fixtures: the seed corpus, the shared ml-papers corpus, a tiny offline model, a built index."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# The slow tests: `pytest -m "not slow"` is the fast loop while working (CI runs everything). Whole modules of
# kill -9 runs, Ray clusters and notebook runs, and each test that took 5 s or more in
# `pytest --durations=80` on the 2-core machine.
SLOW_MODULES = frozenset({"tests/build/test_ray_engine.py", "tests/test_notebook.py", "tests/test_reliability.py"})
SLOW_TESTS = frozenset({
    "tests/build/test_chunking.py::test_seed_chunks_within_model_limit",
    "tests/build/test_incremental.py::test_any_input_or_option_change_rebuilds",
    "tests/build/test_incremental.py::test_cache_hits_skip_the_encoder",
    "tests/build/test_pipeline.py::test_a_build_with_no_cache_misses_never_imports_torch",
    "tests/build/test_pipeline.py::test_build_options_round_trip_through_the_manifest",
    "tests/build/test_pipeline.py::test_damaged_or_deleted_cache_only_costs_time",
    "tests/build/test_pipeline.py::test_explicit_override_wins_and_reencodes",
    "tests/build/test_pipeline.py::test_killed_build_resumes_and_matches_an_uninterrupted_one",
    "tests/build/test_pipeline.py::test_update_and_rebuild_keep_custom_chunker_and_factory",
    "tests/build/test_spool.py::test_build_holds_a_batch_of_papers_not_all",
    "tests/dense/test_static_runtime.py::test_cli_build_with_static_model_and_broken_model",
    "tests/evaluation/test_quality.py::test_lexical_meets_targets_and_beats_baseline",
    "tests/frontends/test_cli.py::test_eval_command",
    "tests/frontends/test_cli.py::test_eval_fusion_weight_sweep",
    "tests/frontends/test_cli.py::test_subprocess_build_search_and_missing_model",
    "tests/frontends/test_cli.py::test_subprocess_fallback_index_is_up_to_date_without_torch",
    "tests/frontends/test_server.py::test_idle_connections_beyond_the_open_file_limit",
    "tests/frontends/test_shell.py::test_shell_in_a_pseudo_terminal",
    "tests/parsing/test_notes_newer.py::test_every_non_markup_character_lands_exactly_once",
    "tests/parsing/test_parsing_limits.py::test_detection_and_parsing_are_fast_on_hostile_files",
    "tests/parsing/test_scaling.py::test_any_repeated_note_block_parses_in_linear_time",
    "tests/storage/test_hostile_index.py::test_fuzzed_index_files_only_raise_typed_errors",
    "tests/storage/test_hostile_store.py::test_cli_search_info_and_build_force_end_within_10_s",
    "tests/storage/test_locking.py::test_writers_through_alias_and_real_path_race_at_the_swap",
    "tests/test_index.py::test_dense_mode_with_tiny_model_finds_exact_titles",
    "tests/test_index.py::test_incremental_rebuild_reuses_embeddings",
    "tests/test_index.py::test_model_change_forces_full_reencode",
    "tests/test_properties.py::test_chunks_cover_sections_within_limit_approx",
    "tests/test_readme.py::test_readme_cli_commands_run",
})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        path = item.nodeid.split("::", 1)[0]
        if path in SLOW_MODULES or item.nodeid.split("[", 1)[0] in SLOW_TESTS:
            item.add_marker(pytest.mark.slow)


# Tests never reach the hub: a model that is not local must fail fast, not retry for a minute.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.pop("DIGEST_RAG_MODEL", None)


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """$DIGEST_RAG_CACHE is a temporary directory for the whole session (subprocesses inherit it): the suite
    never writes to the real ~/.cache/digest_rag (it had left ~3,000 verified markers there). A test that
    needs a cache of its own still sets one with monkeypatch."""
    before = os.environ.get("DIGEST_RAG_CACHE")
    path = tmp_path_factory.mktemp("digest-rag-cache")
    os.environ["DIGEST_RAG_CACHE"] = str(path)
    yield path
    if before is None:
        os.environ.pop("DIGEST_RAG_CACHE", None)
    else:
        os.environ["DIGEST_RAG_CACHE"] = before


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


ML_PAPERS_ENV = "DIGEST_RAG_ML_PAPERS"


def require_ml_papers() -> Path:
    """The ml-papers corpus (1,705 Korean paper notes), or a skip that says what is missing and how to provide it."""
    path = Path(os.environ.get(ML_PAPERS_ENV) or ROOT.parent / "shared" / "corpora" / "ml-papers" / "papers")
    if not path.is_dir():
        pytest.skip(f"needs the ml-papers corpus (1,705 Korean paper notes) at {path}: it is not in the repository; "
                    f"check out the shared corpora beside it (../shared/corpora/ml-papers/papers) or set "
                    f"{ML_PAPERS_ENV}=DIR")
    return path


@pytest.fixture(scope="session")
def ml_papers_dir() -> Path:
    return require_ml_papers()


#: What Hugging Face's progress bars print (transformers' "Loading weights" / "Writing model shards", tqdm's "42%|").
PROGRESS_BAR = r"Loading weights|Writing model shards|Computing widget examples|\d+%\|"


@pytest.fixture()
def hf_progress_bars_on() -> Iterator[None]:
    """Hugging Face's progress bars on, as in a notebook or a script (the suite may have turned them off), then
    as they were: tests of what the library prints without being asked."""
    import warnings

    from huggingface_hub import utils as hub
    from transformers.utils import logging as tf_logging

    transformers_on, hub_on = tf_logging.is_progress_bar_enabled(), not hub.are_progress_bars_disabled()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "HF_HUB_DISABLE_PROGRESS_BARS has priority": hub's own setting stays
        tf_logging.enable_progress_bar()
    yield
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if not transformers_on:
            tf_logging.disable_progress_bar()
        (hub.enable_progress_bars if hub_on else hub.disable_progress_bars)()


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
