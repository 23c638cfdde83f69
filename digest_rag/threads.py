"""One place that decides how many CPU threads torch, ONNX Runtime and FAISS use.

Each of the three ships its own thread pool (torch intra-op threads, ORT's
intra-op pool, FAISS's OpenMP). Left alone, each sizes itself to the logical
CPU count, and when they run back to back in one process (encode a query, then
search FAISS) their spinning pools fight for the same cores. We size all of
them to the number of *physical* cores this process may run on (SMT siblings
add little to dense matrix work), overridable with ``DIGEST_RAG_THREADS``.

FAISS is the exception at query time: it searches one query on one thread
whatever the pool size (it parallelises over queries), so a larger OpenMP team
only adds wake-up and barrier cost. On the 2-core benchmark machine a single
exact query over 10k vectors took 0.32 ms with 1 thread and 6.3 ms with 2
(BENCHMARKS.md). FAISS therefore searches inside :func:`faiss_search_threads`
(1 thread) and trains and adds inside :func:`faiss_build_threads` (all cores).

Both are scoped, never a global "FAISS = 1 thread": the Linux wheels of torch
and faiss-cpu share one OpenMP runtime, so ``faiss.omp_set_num_threads(1)``
also drops torch to one thread. Set once at start-up, that silently halved
torch encoding speed on 2 cores; the contexts restore the shared count on exit.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)

THREADS_ENV = "DIGEST_RAG_THREADS"

_configured: int | None = None
_torch_configured = False


def physical_cores() -> int:
    """Physical cores among the CPUs this process is allowed to use (at least 1)."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:  # macOS / Windows: no affinity API
        return max(1, (os.cpu_count() or 2) // 2)
    cores: set[tuple[str, str]] = set()
    for cpu in cpus:
        topo = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            cores.add(((topo / "physical_package_id").read_text().strip(), (topo / "core_id").read_text().strip()))
        except OSError:
            # No sysfs topology (containers, non-Linux): count every allowed CPU as a core.
            cores.add(("cpu", str(cpu)))
    return max(1, len(cores))


def thread_count() -> int:
    """The thread count every pool should use: $DIGEST_RAG_THREADS if set to a positive int, else physical cores."""
    raw = os.environ.get(THREADS_ENV, "").strip()
    if raw:
        try:
            n = int(raw)
            if n > 0:
                return n
        except ValueError:
            pass
        log.warning("ignoring %s=%r: not a positive integer", THREADS_ENV, raw)
    return physical_cores()


def configure_threads(n: int | None = None, *, force: bool = False) -> int:
    """Size the torch and FAISS pools (once per process, unless ``force``); return the count.

    torch is configured only once something else has imported it (the torch
    encoder backend): importing it here would cost a lexical or ONNX query
    process seconds of start-up for a pool it never uses. A later call after
    torch arrives configures it then.
    ONNX Runtime has no global pool: sessions take the count from
    :func:`ort_session_options`. FAISS searches narrow their pool to one
    thread only for their duration (:func:`faiss_search_threads`).
    """
    global _configured, _torch_configured
    if _configured is not None and not force and n is None:
        if not _torch_configured and "torch" in sys.modules:
            _torch_configured = _configure_torch(_configured)
        return _configured
    count = n if n is not None and n > 0 else thread_count()
    if "torch" in sys.modules:
        _torch_configured = _configure_torch(count)
    try:
        import faiss

        faiss.omp_set_num_threads(count)  # the same runtime as torch's where they share libgomp
    except ImportError:  # pragma: no cover
        pass
    _configured = count
    return count


def _configure_torch(count: int) -> bool:
    import torch

    if torch.get_num_threads() != count:
        torch.set_num_threads(count)
    # Inter-op parallelism only helps graphs with independent branches; a BERT encoder has none.
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass  # can only be set once, before any parallel work; harmless when already set
    return True


@contextmanager
def faiss_build_threads() -> Iterator[int]:
    """Let FAISS use every core for the duration (k-means training, adding vectors)."""
    import faiss

    count = configure_threads()
    faiss.omp_set_num_threads(count)
    try:
        yield count
    finally:
        faiss.omp_set_num_threads(count)


@contextmanager
def faiss_search_threads() -> Iterator[None]:
    """One OpenMP thread while FAISS answers a query, then the configured count again.

    Restoring matters beyond FAISS: where torch shares the OpenMP runtime, the
    count left behind is torch's too.
    """
    import faiss

    count = configure_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(count)


QUERY_TORCH_THREADS = 1
"""torch threads for the requests of `serve`, `shell` and `mcp` (one question each, see torch_query_threads)."""


@contextmanager
def torch_query_threads() -> Iterator[None]:
    """torch on QUERY_TORCH_THREADS thread(s) for one request, then its previous count again.

    A question is a few dozen tokens: splitting its ~240 small operations over
    an OpenMP team costs a barrier each, and the idle member spins or sleeps
    between them. On the 2-core benchmark machine (e5-small shape, hybrid
    search, interleaved in one process): 30.1 ms with 1 thread against 57.8 ms
    with 2 at best, and on a loaded machine 57.5 against 188.8 ms p50
    (BENCHMARKS.md, serving). Scoped like :func:`faiss_search_threads`: a build
    in the same process keeps every core. Nothing happens unless torch is
    already imported (a lexical or ONNX request never loads it).
    """
    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch is not None else None
    if torch is not None and before != QUERY_TORCH_THREADS:
        torch.set_num_threads(QUERY_TORCH_THREADS)
    try:
        yield
    finally:
        # torch may have arrived during the request (a lazily loaded encoder): it then gets the process's count.
        torch = sys.modules.get("torch")
        if torch is not None:
            count = before if before is not None else configure_threads()
            if torch.get_num_threads() != count:
                torch.set_num_threads(count)


def ort_session_options(threads: int | None = None) -> object:
    """ONNX Runtime session options matching :func:`configure_threads`.

    Spinning is turned off: ORT's idle workers otherwise busy-wait after each
    run and steal the cores FAISS needs right after a query is encoded.
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or configure_threads()
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return opts
