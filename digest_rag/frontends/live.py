"""An index that follows its directory: long-running readers switch to each new generation.

`serve` and `mcp` stay up while `build` / `update` commit new generations
(they atomically replace ``manifest.json``). :class:`LiveIndex` watches that
file; when it changes, it loads the new generation *beside* the one in use
(requests keep being answered meanwhile), warms it up, swaps the reference in
one assignment under a lock, and closes the old generation once the last
request using it has finished. A generation that fails to load (damaged,
half-deleted) is reported in :attr:`LiveIndex.last_error` (``/healthz``'s
``reload_error``) and skipped: the old one keeps answering. Each load runs on a
loader thread of its own, so a load that never finishes (a store that stalls)
is reported after ``reload_timeout`` seconds and abandoned when the next
generation is committed, which is loaded beside it: the watcher never wedges.

Model work runs on one thread per LiveIndex (:meth:`LiveIndex.call`,
:meth:`LiveIndex.submit`): the warm-up of every generation and each request
of the front ends, with torch on one thread per request
(:func:`~digest_rag.threads.torch_query_threads`). torch's intra-op pool is
OpenMP (libgomp), which gives every calling thread a team of its own; once the
process holds more OpenMP threads than CPUs, libgomp cuts the time an idle team
member spins for work from ~3 ms to ~1,000 spins, so between the ~240 parallel
regions of one query encoding it sleeps and is woken by a futex each time.
`serve` encoded on the main thread (warm-up), on the reload watcher and on
anyio's pool: ~15 ms per hybrid query more than `shell` on 2 cores, with ~240
voluntary context switches per query against 4 (BENCHMARKS.md).

    >>> live = LiveIndex("indexes/default")  # doctest: +SKIP
    >>> live.call(lambda index: index.search("스케일링 법칙", k=3))  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from digest_rag.errors import IncompatibleModelError, ModelUnavailableError
from digest_rag.index import DigestIndex
from digest_rag.threads import torch_query_threads

__all__ = ["LiveIndex"]

log = logging.getLogger(__name__)

T = TypeVar("T")

MANIFEST = "manifest.json"

DEFAULT_RELOAD_TIMEOUT = 60.0
"""Seconds a new generation may take to load and warm up before :attr:`LiveIndex.last_error` reports it."""

MAX_STALLED_LOADS = 4
"""Abandoned loads that may still be running (each holds a thread) before no further load is started."""


def _stamp(index_dir: Path) -> tuple[int, int, int] | None:
    """What changes when a build commits: the manifest is replaced (new inode, mtime, size)."""
    try:
        st = (index_dir / MANIFEST).stat()
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


class _Generation:
    """One loaded generation, its users count, and the lock that serialises access to it."""

    def __init__(self, index: DigestIndex, stamp: tuple[int, int, int] | None) -> None:
        self.index = index
        self.stamp = stamp
        self.name = index.generation
        # One request at a time per generation: the SQLite connection, Kiwi and the encoder are
        # shared by all requests, and interleaving them gains nothing on a GIL-bound search. Reentrant:
        # a request on the index's thread may call LiveIndex.call again (it runs inline there).
        self.lock = threading.RLock()
        self.users = 0
        self.retired = False
        self.info: dict[str, Any] | None = None


class _Attempt:
    """One load of a committed generation (by its manifest stamp), on a loader thread of its own."""

    def __init__(self, stamp: tuple[int, int, int] | None) -> None:
        self.stamp = stamp
        self.started = time.monotonic()
        self.done = threading.Event()
        self.abandoned = False  # a newer generation was committed while this one loaded: discard the result
        self.switched = False


class LiveIndex:
    """A DigestIndex that reloads itself when its directory gets a new generation.

    ``use()`` lends the current generation for one request. A background thread
    checks ``manifest.json`` every ``interval`` seconds (``interval=0``: no thread;
    call :meth:`refresh` yourself). ``load_options`` go to :meth:`DigestIndex.load`.
    :meth:`call` / :meth:`submit` run a request on the index's one worker thread,
    where every generation is also warmed up (see the module's docstring for why).
    """

    def __init__(self, index_dir: str | Path, *, interval: float = 1.0, warm_up: bool = True,
                 reload_timeout: float = DEFAULT_RELOAD_TIMEOUT, **load_options: Any) -> None:
        self.index_dir = Path(index_dir)
        self.reload_timeout = reload_timeout
        self._attempt: _Attempt | None = None  # the newest load started, finished or not
        self._stalled: list[_Attempt] = []  # abandoned loads still running
        self._options = load_options
        self._warm_up = warm_up
        self._lock = threading.Lock()  # guards _current and the users counts
        self._reload_lock = threading.Lock()  # guards _attempt, _stalled and the switch to a loaded generation
        self._stop = threading.Event()
        # One thread for all model work (warm-ups and requests): one OpenMP team for torch in this process.
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="digest-rag-index")
        self._worker_ident = self._worker.submit(threading.get_ident).result()
        stamp = _stamp(self.index_dir)
        try:
            self._current = _Generation(self._load(None), stamp)
        except BaseException:
            self._worker.shutdown(wait=False)
            raise
        self.reloads = 0
        self.last_error: str | None = None
        self._thread: threading.Thread | None = None
        if interval > 0:
            self._thread = threading.Thread(target=self._watch, args=(interval,), name="digest-rag-reload", daemon=True)
            self._thread.start()

    # ----------------------------------------------------------------- loading
    def _load(self, previous: DigestIndex | None) -> DigestIndex:
        index = None
        encoder = previous.loaded_encoder if previous is not None else None
        if encoder is not None:
            try:  # the same model: share the loaded encoder instead of loading the weights again
                index = DigestIndex.load(self.index_dir, encoder=encoder, **self._options)
            except IncompatibleModelError:
                index = None
        if index is None:
            index = DigestIndex.load(self.index_dir, **self._options)
        if self._warm_up:
            try:
                # First a lexical question here, on the loader thread: a store that stalls (a tampered
                # generation) stalls this thread, reported by refresh(), and not the one thread requests use.
                if index.lexical is not None:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        index.search("warm-up", k=1, mode="lexical")
                # Then on the worker: the encoder's weights load lazily here, and torch's team belongs to that thread.
                self._on_worker(self._warm, index)
            except BaseException:
                index.close()
                raise
        return index

    def _on_worker(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on the worker thread (directly when already there), waiting for its result."""
        if threading.get_ident() == self._worker_ident:
            return fn(*args)
        return self._worker.submit(fn, *args).result()

    @staticmethod
    def _warm(index: DigestIndex) -> None:
        """Pay the first-query costs (model, Kiwi, glossary, papers) before the generation serves anyone."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if index.manifest.model_name is not None:
                try:
                    index.encoder.encode_queries(["warm-up"])
                except (ModelUnavailableError, IncompatibleModelError) as exc:
                    log.warning("dense search unavailable: %s", exc)
            index.search("warm-up", k=1, mode="lexical" if index.lexical is not None else "hybrid")

    def refresh(self, wait: float | None = None) -> bool:
        """Load the directory's generation if it is not the one in use; True when it switched.

        The load runs on a loader thread of its own and this waits for it at most ``wait`` seconds
        (default: ``reload_timeout``). A load that has run longer than ``reload_timeout`` is reported in
        :attr:`last_error`; it is abandoned (its result discarded) as soon as a newer generation is
        committed, which is loaded beside it: a load that hangs never keeps a later good generation out.
        """
        wait = self.reload_timeout if wait is None else wait
        stamp = _stamp(self.index_dir)
        with self._reload_lock:
            attempt = self._attempt
            if attempt is not None and attempt.stamp != stamp and not attempt.done.is_set():
                attempt.abandoned = True  # still loading a generation that is no longer the newest
                self._stalled.append(attempt)
                self._attempt = attempt = None
            self._stalled = [a for a in self._stalled if not a.done.is_set()]
            if stamp == self._current.stamp:
                return False
            if attempt is None or attempt.stamp != stamp:
                if len(self._stalled) >= MAX_STALLED_LOADS:
                    self.last_error = (f"ReloadStalled: {len(self._stalled)} loads of {self.index_dir} have not "
                                       f"finished; no other load starts until one does; still serving "
                                       f"{self.generation}")
                    return False
                attempt = self._attempt = _Attempt(stamp)
                threading.Thread(target=self._load_attempt, args=(attempt,), name="digest-rag-load",
                                 daemon=True).start()
        if not attempt.done.wait(max(wait, 0.0)):
            age = time.monotonic() - attempt.started
            if age >= self.reload_timeout:
                self.last_error = (f"ReloadTimeout: loading the new generation of {self.index_dir} has not "
                                   f"finished after {age:.0f}s; still serving {self.generation}")
            return False
        with self._reload_lock:
            switched, attempt.switched = attempt.switched, False  # reported once
        return switched

    def _load_attempt(self, attempt: _Attempt) -> None:
        """The loader thread: load ``attempt``'s generation and switch to it unless a newer one came meanwhile."""
        current = self._current
        try:
            fresh = self._load(current.index)
        except Exception as exc:  # noqa: BLE001 - any failure of a load is reported, never raised into the watcher
            # A generation mid-commit or damaged: keep answering from the one in use, retry on the next change.
            with self._reload_lock:
                if not attempt.abandoned:
                    self.last_error = f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:500]
            log.warning("index %s not reloaded, still serving %s: %s: %s", self.index_dir, current.name,
                        type(exc).__name__, exc)
            attempt.done.set()
            return
        with self._reload_lock:
            if attempt.abandoned or self._stop.is_set():
                stale = fresh
            elif fresh.generation == self._current.name:  # manifest rewritten, same generation
                stale = fresh
                self._current.stamp = attempt.stamp
                self.last_error = None
            else:
                stale = None
                new = _Generation(fresh, attempt.stamp)
                self.reloads += 1
                self.last_error = None
                attempt.switched = True
                with self._lock:
                    old, self._current = self._current, new
                    old.retired = True
                    idle = old.users == 0
            attempt.done.set()
        if stale is not None:
            stale.close()
            return
        if idle:
            old.index.close()
        log.info("index %s: now serving %s (was %s)", self.index_dir, new.name, old.name)

    def _watch(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.refresh(wait=interval)
            except Exception as exc:  # noqa: BLE001 - the watcher must outlive any one failure
                self.last_error = f"{type(exc).__name__}: {exc}"[:500]
                log.exception("index reload failed")

    # ---------------------------------------------------------------- serving
    @contextmanager
    def _lease(self) -> Iterator[_Generation]:
        with self._lock:
            gen = self._current
            gen.users += 1
        try:
            yield gen
        finally:
            with self._lock:
                gen.users -= 1
                close = gen.retired and gen.users == 0
            if close:  # the last request on a replaced generation closes it
                gen.index.close()

    @contextmanager
    def use(self) -> Iterator[DigestIndex]:
        """The current generation, for one request; it stays open until the request is done."""
        with self._lease() as gen, gen.lock:
            yield gen.index

    def _run(self, fn: Callable[..., T], *args: Any) -> T:
        with self.use() as index, torch_query_threads():
            return fn(index, *args)

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        """Run ``fn(index, *args)`` on the index's worker thread with the current generation; its Future.

        Requests queue in order on that one thread (a search holds the generation's lock anyway). For
        asyncio, ``await asyncio.wrap_future(live.submit(...))``; exceptions travel through the Future.
        """
        return self._worker.submit(self._run, fn, *args)

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """:meth:`submit` and wait: ``fn(index, *args)``'s result (or its exception)."""
        return self._on_worker(self._run, fn, *args)

    @property
    def generation(self) -> str:
        """The data directory of the generation now answering (changes on every committed build)."""
        return self._current.name

    def info(self) -> dict[str, Any]:
        """``DigestIndex.info()`` of the current generation without the per-paper list, computed once per generation."""
        with self._lease() as gen:
            if gen.info is None:
                with gen.lock:
                    data = gen.index.info()
                data.pop("paper_list", None)
                gen.info = {**data, "generation": gen.name}
            return gen.info

    def close(self) -> None:
        """Stop watching and close the generation in use."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._worker.shutdown(wait=True)  # requests already queued are answered before the generation closes
        with self._lock:
            gen = self._current
            gen.retired = True
            idle = gen.users == 0
        if idle:
            gen.index.close()

    def __enter__(self) -> LiveIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
