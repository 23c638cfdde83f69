"""LiveIndex's reloader: a load that fails in any way or never finishes is reported, and never keeps the next
good generation out (issue 23: a tampered store wedged the reload thread with ``reload_error: null``)."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from digest_rag import DigestIndex
from digest_rag.errors import DamagedIndexWarning
from digest_rag.frontends.live import LiveIndex

pytestmark = pytest.mark.filterwarnings("ignore::digest_rag.ModelFallbackWarning")  # updates of lexical-only indexes


def _until(condition: Callable[[], object], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition did not come true in time"
        time.sleep(0.02)


@pytest.fixture
def index_dir(tmp_path: Path, seed_corpus: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(seed_corpus / "2024-04-weekly-top-papers-roundup.txt", src)
    out = tmp_path / "index"
    DigestIndex.build([src], index_dir=out, lexical_only=True).close()
    return out


def _reloading() -> bool:
    """True on LiveIndex's loader thread (not in the `update` that commits the generation)."""
    return threading.current_thread().name == "digest-rag-load"


def _failing_reloads(monkeypatch: pytest.MonkeyPatch, message: str) -> None:
    """DigestIndex.load raises RuntimeError(message) on the loader thread (and works elsewhere)."""
    real_load = DigestIndex.load.__func__  # type: ignore[attr-defined]

    def broken(cls: type[DigestIndex], *args: object, **kwargs: object) -> DigestIndex:
        if _reloading():
            raise RuntimeError(message)
        return real_load(cls, *args, **kwargs)

    monkeypatch.setattr(DigestIndex, "load", classmethod(broken))


def _commit(index_dir: Path, seed_corpus: Path, name: str) -> None:
    """A new generation: one more corpus file, by `update`."""
    src = index_dir.parent / "src"
    shutil.copy(seed_corpus / name, src / name)
    DigestIndex.update([src / name], index_dir=index_dir).close()


def test_a_stalled_load_is_reported_and_the_next_generation_still_loads(
        index_dir: Path, seed_corpus: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_load = DigestIndex.load.__func__  # type: ignore[attr-defined]
    release = threading.Event()
    stalled: list[str] = []

    def load(cls: type[DigestIndex], *args: object, **kwargs: object) -> DigestIndex:
        if _reloading() and not stalled:  # the first reload never returns (a store whose reads never end)
            stalled.append("stalled")
            release.wait(30)
        return real_load(cls, *args, **kwargs)

    with LiveIndex(index_dir, interval=0.05, reload_timeout=0.3) as live:
        first = live.generation
        monkeypatch.setattr(DigestIndex, "load", classmethod(load))
        _commit(index_dir, seed_corpus, "2024-06-28-daily-digest.txt")
        _until(lambda: live.last_error is not None)
        assert live.last_error.startswith("ReloadTimeout") and live.generation == first
        with live.use() as index:  # the generation in use still answers
            assert index.search("many-shot", k=1, mode="lexical")
        _commit(index_dir, seed_corpus, "2024-02-13-daily-digest.txt")  # the next good generation
        _until(lambda: live.generation != first and live.last_error is None)
        newest = live.generation
        with live.use() as index:
            assert index.search("Gemma 2", k=1, mode="lexical")
        release.set()  # the stalled load ends late: its result is discarded, not swapped in
        time.sleep(0.3)
        assert live.generation == newest and live.reloads == 1 and live.last_error is None


def test_any_failure_of_a_load_is_reported(index_dir: Path, seed_corpus: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # Not only the library's typed errors: before, a RuntimeError went to the log and last_error stayed None.
    with LiveIndex(index_dir, interval=0.05) as live:
        first = live.generation

        _failing_reloads(monkeypatch, "disk on fire")
        _commit(index_dir, seed_corpus, "2024-06-28-daily-digest.txt")
        _until(lambda: live.last_error is not None)
        assert live.last_error == "RuntimeError: disk on fire" and live.generation == first
        monkeypatch.undo()
        _commit(index_dir, seed_corpus, "2024-02-13-daily-digest.txt")
        _until(lambda: live.generation != first)
        assert live.last_error is None and live.reloads == 1


def test_healthz_reports_the_reload_error(index_dir: Path, seed_corpus: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("fastapi", reason="the 'serve' extra is not installed")
    from fastapi.testclient import TestClient

    from digest_rag.frontends.server import create_app

    with LiveIndex(index_dir, interval=0.05) as live:
        client = TestClient(create_app(live, rate_limit=0), base_url="http://localhost")
        assert client.get("/healthz").json()["reload_error"] is None
        _failing_reloads(monkeypatch, "stalled")
        _commit(index_dir, seed_corpus, "2024-06-28-daily-digest.txt")
        _until(lambda: client.get("/healthz").json()["reload_error"] is not None)
        health = client.get("/healthz").json()
        assert health["status"] == "ok" and health["reload_error"] == "RuntimeError: stalled"


def test_a_tampered_generation_is_reported_and_the_repair_is_picked_up(
        index_dir: Path, seed_corpus: Path) -> None:
    # Issue 23 item 2, serve's side: a commit whose store is an endless VIEW behind a forged checksum. The store
    # refuses it (IndexCorruptedError); the reloader says so in /healthz and switches to the repaired generation.
    pytest.importorskip("fastapi", reason="the 'serve' extra is not installed")
    from fastapi.testclient import TestClient

    from digest_rag.frontends.server import create_app
    from tests.storage.test_hostile_store import _forge_store

    with LiveIndex(index_dir, interval=0, reload_timeout=10) as live:
        client = TestClient(create_app(live, rate_limit=0), base_url="http://localhost")
        first = live.generation
        _commit(index_dir, seed_corpus, "2024-06-28-daily-digest.txt")
        _forge_store(index_dir, "chunks")  # the new generation's store, before the server loads it
        t0 = time.monotonic()
        assert not live.refresh()
        assert time.monotonic() - t0 < 10
        health = client.get("/healthz").json()
        assert health["generation"] == first and health["reload_error"].startswith("IndexCorruptedError")
        assert client.get("/search", params={"q": "many-shot", "mode": "lexical"}).status_code == 200
        with pytest.warns(DamagedIndexWarning, match="view"):  # the documented repair: build --force
            DigestIndex.build([index_dir.parent / "src"], index_dir=index_dir, lexical_only=True, force=True).close()
        assert live.refresh()
        health = client.get("/healthz").json()
        assert health["generation"] != first and health["reload_error"] is None
        hits = client.get("/search", params={"q": "Gemma 2", "mode": "lexical", "k": 1}).json()
        assert hits[0]["title"].startswith("Gemma 2")
