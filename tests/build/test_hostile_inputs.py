"""Issue 23, items 7, 11 and 12: hostile corpus directories and full disks during a build.

- a file swapped for a link to outside the corpus after the listing is not read (O_NOFOLLOW, and the
  real path of what was opened is checked, which also catches a directory swapped for a link);
- a file name that is not UTF-8 does not abort `build` or `build --dry-run`;
- numpy's writes of the BM25 arrays report a full disk with its errno and the file's name;
- a copy that fills the disk names the file it was writing, not its source;
- an unreadable subdirectory is a skip with its reason, and --strict fails on it.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import digest_rag.build.pipeline as pipeline
from digest_rag import DigestIndex
from digest_rag.errors import CorpusError, IndexWriteError, index_write_errors
from digest_rag.frontends.cli import app
from digest_rag.parsing import corpus_files, parse_paths

ROOT = Path(__file__).resolve().parents[2]
DAILY = "2024-02-13-daily-digest.txt"
SECRET = "Outside Secret Paper"


def _outside(tmp_path: Path) -> Path:
    """A digest outside the corpus whose one paper must never be indexed."""
    out = tmp_path / "outside"
    out.mkdir()
    text = (ROOT / "corpus" / DAILY).read_text(encoding="utf-8")
    (out / DAILY).write_text(text.replace("Gemma", SECRET), encoding="utf-8")
    return out


def _titles(ix: Path) -> list[str]:
    with DigestIndex.load(ix) as idx:
        return [p.title for p in idx.papers.values()]


@pytest.mark.parametrize("swap", ["file", "directory"])
def test_a_link_swapped_in_after_the_listing_is_not_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          swap: str) -> None:
    outside = _outside(tmp_path)
    corpus = tmp_path / "corpus"
    (corpus / "sub").mkdir(parents=True)
    shutil.copy(ROOT / "corpus" / DAILY, corpus / "sub" / DAILY)
    listed = pipeline.corpus_files

    def list_then_swap(paths: object) -> object:
        listing = listed(paths)  # the listing's link check sees a plain file ...
        if swap == "file":  # ... then the file becomes a link to a file outside
            (corpus / "sub" / DAILY).unlink()
            (corpus / "sub" / DAILY).symlink_to(outside / DAILY)
        else:  # ... or its directory becomes a link to a directory outside
            (corpus / "sub").rename(tmp_path / "moved")
            (corpus / "sub").symlink_to(outside, target_is_directory=True)
        return listing

    monkeypatch.setattr(pipeline, "corpus_files", list_then_swap)
    ix = tmp_path / "ix"
    with pytest.raises(CorpusError):  # the one file was not read: no papers at all
        DigestIndex.build([corpus], index_dir=ix, lexical_only=True)
    assert not ix.exists() or not (ix / "manifest.json").exists()
    (corpus / "other").mkdir()
    shutil.copy(ROOT / "corpus" / "2024-06-28-daily-digest.txt", corpus / "other" / "b.txt")
    if swap == "directory":
        (corpus / "sub").unlink()
        (tmp_path / "moved").rename(corpus / "sub")
    else:
        (corpus / "sub" / DAILY).unlink()
        shutil.copy(ROOT / "corpus" / DAILY, corpus / "sub" / DAILY)
    idx = DigestIndex.build([corpus], index_dir=ix, lexical_only=True)  # swaps again, with another file beside
    try:
        skipped = idx.last_build.skipped
        assert [s["reason"] for s in skipped if DAILY in s["source"]], skipped
        assert "outside the corpus" in str(skipped) or "symbolic link" in str(skipped)
    finally:
        idx.close()
    assert not [t for t in _titles(ix) if SECRET in t]


def test_links_inside_the_corpus_still_read(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    shutil.copy(ROOT / "corpus" / DAILY, corpus / "real.txt")
    (corpus / "link.txt").symlink_to(corpus / "real.txt")
    outside = _outside(tmp_path)
    (corpus / "out.txt").symlink_to(outside / DAILY)
    res = parse_paths([corpus])
    assert set(res.files) == {str(corpus / "real.txt"), str(corpus / "link.txt")}
    assert [s.reason for s in res.skipped] == ["symbolic link to a file outside the corpus directory"]


def test_a_file_name_that_is_not_utf8(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    shutil.copy(ROOT / "corpus" / DAILY, corpus / DAILY)
    try:
        shutil.copy(ROOT / "corpus" / DAILY, corpus / os.fsdecode(b"bad\xff\xfename.txt"))
    except (OSError, UnicodeError):
        pytest.skip("this file system refuses file names that are not UTF-8")
    ix = str(tmp_path / "ix")
    for extra in (["--dry-run"], [], ["--dry-run"]):
        res = CliRunner().invoke(app, ["build", str(corpus), "--index", ix, "--lexical-only", *extra])
        assert res.exit_code == 0, (res.output, res.exception)
        assert "Traceback" not in res.output
    res = CliRunner().invoke(app, ["build", str(corpus), "--index", ix, "--lexical-only", "--force"])
    assert res.exit_code == 0 and "file name is not valid UTF-8" in res.output


_SAVE_UNDER_LIMIT = """
import errno, resource, signal, sys
import numpy as np
from digest_rag.lexical.files import save_npy
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
try:
    save_npy(sys.argv[1], np.zeros(100_000, dtype=np.float32))
except OSError as exc:
    print(exc.errno == errno.EFBIG, exc.filename == sys.argv[1])
"""


def test_numpy_writes_report_a_full_file_with_its_errno_and_name(tmp_path: Path) -> None:
    """numpy's tofile said "N requested and 0 written" with no errno: no handler knew it for a full disk."""
    out = subprocess.run([sys.executable, "-c", _SAVE_UNDER_LIMIT, str(tmp_path / "a.npy")], capture_output=True,
                         text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.stdout.split() == ["True", "True"], out.stderr


def test_a_full_copy_names_the_file_written(tmp_path: Path) -> None:
    exc = OSError(errno.ENOSPC, "No space left on device", "/ix/gen-old/lexical.eojeols.sqlite")
    exc.filename2 = "/ix/.tmp-gen-new/lexical.eojeols.sqlite"  # how shutil's sendfile copy reports it
    with pytest.raises(IndexWriteError, match=r"^/ix/\.tmp-gen-new/lexical\.eojeols\.sqlite: cannot write"):
        with index_write_errors(tmp_path):
            raise exc


_BUILD_UNDER_LIMIT = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
from digest_rag.frontends.cli import app
sys.argv = ["digest-rag", "build", sys.argv[2], "--index", sys.argv[3], "--lexical-only", "--force", "-q"]
app()
"""


@pytest.mark.parametrize("limit_kb", [4, 24, 40, 96, 200, 300])
def test_every_full_file_stage_is_one_line(tmp_path: Path, limit_kb: int) -> None:
    """Builds whose files may not grow past a limit (RLIMIT_FSIZE: the kernel's EFBIG, as a full disk's
    ENOSPC) fail at different stages; each is exit 0 or exit 2 with one line, never a traceback."""
    out = subprocess.run([sys.executable, "-c", _BUILD_UNDER_LIMIT, str(limit_kb * 1024), str(ROOT / "corpus"),
                          str(tmp_path / "ix")], capture_output=True, text=True, timeout=180,
                         env={**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"})
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
    assert out.returncode in (0, 2), out.stderr[-3000:]
    if out.returncode == 2:
        assert out.stderr.startswith("error: ") and out.stderr.count("\n") == 1, out.stderr
        assert "cannot write the index" in out.stderr
    else:
        assert all(line.startswith("warning: ") for line in out.stderr.splitlines()), out.stderr


def _unreadable(monkeypatch: pytest.MonkeyPatch, path: Path) -> None:
    """``path`` cannot be listed (chmod 000 does not stop root, so os.scandir is told to refuse it)."""
    real = os.scandir

    def scandir(p: object = ".") -> object:
        if not isinstance(p, int) and Path(os.fsdecode(p)) == path:  # type: ignore[arg-type]
            raise PermissionError(errno.EACCES, "Permission denied", str(p))
        return real(p)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "scandir", scandir)


def test_an_unreadable_subdirectory_is_a_skip_and_strict_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    corpus = tmp_path / "corpus"
    (corpus / "locked").mkdir(parents=True)
    shutil.copy(ROOT / "corpus" / DAILY, corpus / DAILY)
    shutil.copy(ROOT / "corpus" / "2024-06-28-daily-digest.txt", corpus / "locked" / "b.txt")
    _unreadable(monkeypatch, corpus / "locked")
    files, skips = corpus_files([corpus])
    assert [f.name for f in files] == [DAILY]
    assert [(s.source, s.reason) for s in skips] == [
        (str(corpus / "locked"), "cannot read directory (Permission denied); its files are not indexed")]
    with pytest.raises(CorpusError, match="locked: cannot read directory"):
        parse_paths([corpus], strict=True)
    res = CliRunner().invoke(app, ["build", str(corpus), "--index", str(tmp_path / "ix"), "--lexical-only"])
    assert res.exit_code == 0 and "locked: cannot read directory" in res.output, res.output
    res = CliRunner().invoke(app, ["build", str(corpus), "--index", str(tmp_path / "ix2"), "--lexical-only",
                                   "--strict"])
    assert res.exit_code == 2 and "locked: cannot read directory" in res.stderr, res.output
