"""Thread pools of torch, ONNX Runtime and FAISS (digest_rag.threads)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from digest_rag import threads
from digest_rag.dense.faiss_index import build_faiss, search_faiss


@pytest.fixture()
def two_threads() -> Iterator[int]:
    before = threads.configure_threads()
    yield threads.configure_threads(2, force=True)
    threads.configure_threads(before, force=True)


def test_thread_count_env_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(threads.THREADS_ENV, "3")
    assert threads.thread_count() == 3
    monkeypatch.setenv(threads.THREADS_ENV, "zero")
    assert threads.thread_count() == threads.physical_cores() >= 1


def test_faiss_search_runs_single_threaded_and_restores_the_count(two_threads: int) -> None:
    import faiss

    with threads.faiss_search_threads():
        assert faiss.omp_get_max_threads() == 1
    assert faiss.omp_get_max_threads() == two_threads


def test_faiss_search_leaves_torch_its_threads(two_threads: int) -> None:
    # The Linux wheels of torch and faiss-cpu share one OpenMP runtime: a FAISS
    # thread setting that leaks out of the search would halve encoding speed.
    import torch

    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    index, _ = build_faiss(np.arange(200, dtype=np.int64), x, "IDMap2,Flat")
    assert torch.get_num_threads() == two_threads
    assert search_faiss(index, x[3], 5)[0][0] == 3
    assert search_faiss(index, x[4], 5, allowed={4, 5})[0][0] == 4
    assert torch.get_num_threads() == two_threads


def test_ort_session_options_match_the_count(two_threads: int) -> None:
    pytest.importorskip("onnxruntime")
    opts = threads.ort_session_options()
    assert opts.intra_op_num_threads == two_threads and opts.inter_op_num_threads == 1


def test_torch_query_threads_is_scoped(two_threads: int) -> None:
    import torch

    with threads.torch_query_threads():
        assert torch.get_num_threads() == threads.QUERY_TORCH_THREADS == 1
    assert torch.get_num_threads() == two_threads
