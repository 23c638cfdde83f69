"""Issue 16, items 1, 2 and 6 (lock and target paths): the writer lock cannot be bypassed or turned
against the files around the index.

Each test reproduces a defect a hostile tester found: a symlinked index path took a second lock, the
lock file followed symlinks and truncated their target, and odd lock or index paths escaped as tracebacks.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from digest_rag import DigestIndex, IndexLockedError, UnsafeIndexPathError
from digest_rag.frontends.cli import app
from digest_rag.testing import wait_paused
from digest_rag.storage.locking import WriterLock, lock_path

DAILY = "2024-06-28-daily-digest.txt"


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("DIGEST_RAG_TEST_PAUSE_AT", None)
    env.update(extra)
    return env


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "digest_rag.frontends.cli", *args]


def _one_line_exit_2(res: object, *needles: str) -> None:
    assert res.exit_code == 2, (res.exit_code, res.output, res.exception)  # type: ignore[attr-defined]
    err: str = res.stderr  # type: ignore[attr-defined]
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err


@pytest.fixture()
def small_corpus(tmp_path: Path, seed_corpus: Path) -> Path:
    out = tmp_path / "corpus-small"
    out.mkdir()
    shutil.copy(seed_corpus / DAILY, out / DAILY)
    return out


# ------------------------------------------------------------------- item 1: one lock per real index


def test_a_symlinked_index_path_takes_the_same_lock(tmp_path: Path, small_corpus: Path) -> None:
    idx = tmp_path / "idx"
    DigestIndex.build([small_corpus], index_dir=idx, lexical_only=True).close()
    alias = tmp_path / "alias"
    alias.symlink_to(idx)
    deeper = tmp_path / "links"
    deeper.mkdir()
    (deeper / "up").symlink_to(tmp_path)
    assert lock_path(alias) == lock_path(idx) == lock_path(deeper / "up" / "idx") == tmp_path / ".idx.lock"
    with WriterLock(idx):
        for path in (alias, deeper / "up" / "idx"):
            with pytest.raises(IndexLockedError, match=f"process {os.getpid()}"):
                DigestIndex.build([small_corpus], index_dir=path, lexical_only=True, force=True)
            with pytest.raises(IndexLockedError):
                DigestIndex.update([small_corpus / DAILY], index_dir=path)
    # Nothing was created beside the alias: the only lock is the real directory's.
    assert not (tmp_path / ".alias.lock").exists()


def test_writers_through_alias_and_real_path_race_at_the_swap(tmp_path: Path, seed_corpus: Path,
                                                             small_corpus: Path) -> None:
    """The reported race: one writer through `alias -> idx` paused at the swap, another through `idx`."""
    idx = tmp_path / "idx"
    DigestIndex.build([seed_corpus], index_dir=idx, lexical_only=True).close()
    alias = tmp_path / "alias"
    alias.symlink_to(idx)
    first = subprocess.Popen(
        _cli("build", str(small_corpus), "--index", str(alias), "--lexical-only", "-q"),
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=_env(DIGEST_RAG_TEST_PAUSE_AT="swap"),
    )
    queued: subprocess.Popen[str] | None = None
    try:
        wait_paused(first, "swap")
        # A second writer through the real path must see the first one's lock, not take its own.
        second = subprocess.run(
            _cli("build", str(seed_corpus), "--index", str(idx), "--lexical-only", "-q", "--force"),
            capture_output=True, text=True, env=_env(DIGEST_RAG_TEST_PAUSE_AT="swap"), timeout=120,
        )
        assert second.returncode == 2, second.stderr
        assert second.stderr.count("\n") == 1 and f"being written by process {first.pid}" in second.stderr
        # A queued writer waits for the first to commit, then commits after it.
        queued = subprocess.Popen(
            _cli("build", str(seed_corpus), "--index", str(idx), "--lexical-only", "-q", "--force", "--wait", "120"),
            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=_env(),
        )
        time.sleep(1.0)
        assert queued.poll() is None
        first.send_signal(signal.SIGCONT)
        _out, err = first.communicate(timeout=120)
        assert first.returncode == 0, err
        _out, err = queued.communicate(timeout=120)
        assert queued.returncode == 0, err
    finally:
        for proc in (first, queued):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
    with DigestIndex.load(idx) as loaded:
        assert loaded.manifest.paper_count == 29 and loaded.search("Gemma 2", k=3, mode="lexical")
    assert len([p for p in idx.iterdir() if p.is_dir()]) == 1
    res = CliRunner().invoke(app, ["search", "Gemma 2", "--index", str(alias), "--mode", "lexical", "-k", "1"])
    assert res.exit_code == 0, res.output


# --------------------------------------------------------------- item 2: the lock file is never a weapon


def test_lock_file_symlink_is_refused_and_its_target_kept(tmp_path: Path, small_corpus: Path) -> None:
    precious = tmp_path / "precious.txt"
    precious.write_text("data\n")
    (tmp_path / ".myidx.lock").symlink_to(precious)
    res = CliRunner().invoke(app, ["build", str(small_corpus), "--index", str(tmp_path / "myidx"), "--lexical-only"])
    _one_line_exit_2(res, ".myidx.lock", "symbolic link")
    assert precious.read_text() == "data\n"
    assert not (tmp_path / "myidx" / "manifest.json").exists()


def test_dangling_lock_symlink_creates_nothing(tmp_path: Path, small_corpus: Path) -> None:
    target = tmp_path / "elsewhere" / "created-by-lock"
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / ".myidx.lock").symlink_to(target)
    with pytest.raises(UnsafeIndexPathError, match="symbolic link"):
        DigestIndex.build([small_corpus], index_dir=tmp_path / "myidx", lexical_only=True)
    assert not os.path.lexists(target)


def test_lock_file_hard_link_or_foreign_content_is_refused(tmp_path: Path, small_corpus: Path) -> None:
    precious = tmp_path / "precious.txt"
    precious.write_text("data\n")
    os.link(precious, tmp_path / ".a.lock")
    with pytest.raises(UnsafeIndexPathError, match="2 names"):
        DigestIndex.build([small_corpus], index_dir=tmp_path / "a", lexical_only=True)
    (tmp_path / ".b.lock").write_text("my notes, not a lock\n")
    with pytest.raises(UnsafeIndexPathError, match="not a digest_rag lock"):
        DigestIndex.build([small_corpus], index_dir=tmp_path / "b", lexical_only=True)
    assert precious.read_text() == "data\n" and (tmp_path / ".b.lock").read_text() == "my notes, not a lock\n"
    # A lock file a previous build left (holder info, or emptied at release) is ours and reused.
    DigestIndex.build([small_corpus], index_dir=tmp_path / "c", lexical_only=True).close()
    assert (tmp_path / ".c.lock").read_text() == ""
    DigestIndex.build([small_corpus], index_dir=tmp_path / "c", lexical_only=True, force=True).close()


@pytest.mark.parametrize("kind", ["directory", "fifo"])
def test_lock_path_that_is_a_directory_or_fifo(tmp_path: Path, small_corpus: Path, kind: str) -> None:
    lock = tmp_path / ".myidx.lock"
    if kind == "directory":
        lock.mkdir()
    else:
        os.mkfifo(lock)
    res = CliRunner().invoke(app, ["build", str(small_corpus), "--index", str(tmp_path / "myidx"), "--lexical-only"])
    _one_line_exit_2(res, ".myidx.lock", kind if kind == "directory" else "FIFO")
    assert lock.is_dir() if kind == "directory" else lock.is_fifo()


# ------------------------------------------------------------- item 6: odd --index paths, one line each


def test_index_that_is_a_dangling_symlink(tmp_path: Path, small_corpus: Path) -> None:
    target = tmp_path / "nowhere" / "idx"
    (tmp_path / "ix").symlink_to(target)
    for cmd in (["build", str(small_corpus), "--lexical-only"], ["update", str(small_corpus / DAILY)]):
        _one_line_exit_2(CliRunner().invoke(app, [*cmd, "--index", str(tmp_path / "ix")]), "dangling symbolic link")
    for cmd in (["search", "Gemma"], ["info"]):
        _one_line_exit_2(CliRunner().invoke(app, [*cmd, "--index", str(tmp_path / "ix")]), "no such index directory")
    assert not (tmp_path / "nowhere").exists() and not (tmp_path / ".idx.lock").exists()


def test_index_under_a_regular_file(tmp_path: Path, small_corpus: Path) -> None:
    (tmp_path / "file.txt").write_text("x")
    for cmd in (["build", str(small_corpus), "--lexical-only"], ["update", str(small_corpus / DAILY)]):
        res = CliRunner().invoke(app, [*cmd, "--index", str(tmp_path / "file.txt" / "idx")])
        _one_line_exit_2(res, "file.txt is not a directory")
    for cmd in (["search", "Gemma"], ["info"]):
        res = CliRunner().invoke(app, [*cmd, "--index", str(tmp_path / "file.txt" / "idx")])
        _one_line_exit_2(res, "no such index directory")
    assert (tmp_path / "file.txt").read_text() == "x"


def test_symlink_loop_index(tmp_path: Path, small_corpus: Path) -> None:
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    res = CliRunner().invoke(app, ["build", str(small_corpus), "--index", str(tmp_path / "a"), "--lexical-only"])
    _one_line_exit_2(res)
