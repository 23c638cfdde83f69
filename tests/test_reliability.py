"""Issue 5, "never lose an index, never crash on bad input": crashes, concurrency, corruption, bad input.

Builds are killed with SIGKILL at fixed stages through the test-only hook
DIGEST_RAG_TEST_PAUSE_AT (see digest_rag/generation.py: the build prints one line and
stops itself with SIGSTOP, so the kill lands at a deterministic point).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from digest_rag import (
    CorpusError,
    DamagedIndexWarning,
    DigestIndex,
    EmptyQueryError,
    IndexCorruptedError,
    IndexLockedError,
    IndexVersionError,
    QueryTruncatedWarning,
    UnsafeIndexPathError,
)
from digest_rag.frontends.cli import app
from digest_rag.storage.layout import CACHE_DIR
from digest_rag.storage.locking import WriterLock, lock_path
from digest_rag.parsing import parse_paths
from digest_rag.testing import wait_paused

QUERIES = ["긴 컨텍스트를 악용하는 탈옥 공격", "Gemma 2 지식 증류", "scaling laws for language models", "LoRA 파인튜닝"]
DAILY = "2024-06-28-daily-digest.txt"


# ------------------------------------------------------------------------------------------ helpers


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", **extra}
    env.pop("DIGEST_RAG_TEST_PAUSE_AT", None)
    env.update(extra)
    return env


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "digest_rag.frontends.cli", *args]


def _answers(index_dir: Path, encoder: object | None = None) -> list[tuple[str, list[tuple[str, float]]]]:
    """Everything a user would see from the index, for exact before/after comparisons."""
    idx = DigestIndex.load(index_dir, encoder=encoder, verify=True)
    try:
        modes = ("hybrid", "dense", "lexical") if idx.faiss_index is not None else ("lexical",)
        return [
            (f"{mode}:{q}", [(h.paper.id, round(h.score, 6)) for h in idx.search(q, k=5, mode=mode)])
            for q in QUERIES for mode in modes
        ]
    finally:
        idx.close()


def _copy_index(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _rehash(index_dir: Path, name: str) -> None:
    """Forge the manifest's checksum of one file, so that only the deeper checks can catch damage."""
    mpath = index_dir / "manifest.json"
    m = json.loads(mpath.read_text())
    m["files"][name] = hashlib.sha256((index_dir / m["data_dir"] / name).read_bytes()).hexdigest()
    mpath.write_text(json.dumps(m))


def _gen(index_dir: Path) -> Path:
    return index_dir / json.loads((index_dir / "manifest.json").read_text())["data_dir"]


@pytest.fixture()
def dense_copy(tmp_path: Path, seed_index_dir: Path) -> Path:
    return _copy_index(seed_index_dir, tmp_path / "idx" / "ix")


@pytest.fixture()
def smaller_corpus(tmp_path: Path, seed_corpus: Path) -> Path:
    """The seed corpus less one digest, one text edited: a rebuild changes answers (23 papers) and encodes."""
    out = tmp_path / "corpus-small"
    shutil.copytree(seed_corpus, out)
    (out / DAILY).unlink()
    edited = out / "2024-02-13-daily-digest.txt"
    edited.chmod(0o644)
    edited.write_text(edited.read_text(encoding="utf-8").rstrip() + " 신뢰성 테스트를 위한 문장.\n", encoding="utf-8")
    return out


# ------------------------------------------------------------------------------------ killed builds


def test_build_killed_at_every_stage_leaves_the_old_index(
    tmp_path: Path, seed_index_dir: Path, smaller_corpus: Path, tiny_model: Path, tiny_encoder: object
) -> None:
    before = _answers(seed_index_dir, tiny_encoder)
    stages = ("encoding", "writing", "swap", "committed")
    procs: dict[str, tuple[Path, subprocess.Popen[str]]] = {}
    # One index copy per stage, all builds at once: each pays the model import, so run them in parallel.
    for stage in stages:
        ix = _copy_index(seed_index_dir, tmp_path / stage / "ix")
        proc = subprocess.Popen(
            _cli("build", str(smaller_corpus), "--index", str(ix), "--model", str(tiny_model), "-q"),
            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
            env=_env(DIGEST_RAG_TEST_PAUSE_AT=stage),
        )
        procs[stage] = (ix, proc)
    try:
        for stage, (_ix, proc) in procs.items():
            wait_paused(proc, stage)
            proc.send_signal(signal.SIGKILL)
            assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        for _ix, proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if proc.stderr:
                proc.stderr.close()

    for stage, (ix, proc) in procs.items():
        leftovers = sorted(p.name for p in ix.iterdir())
        if stage == "committed":
            # Killed after the commit point: the new index is whole, the old generation is garbage.
            assert DigestIndex.load(ix, encoder=tiny_encoder).manifest.paper_count == 23
            assert sum(n.startswith("gen-") for n in leftovers) == 2
        else:
            assert _answers(ix, tiny_encoder) == before, stage
        if stage == "writing":
            assert any(n.startswith(".tmp-gen-") for n in leftovers)
        if stage == "swap":
            # Each writer's manifest temp file has a name of its own (.manifest.json.<token>.tmp).
            assert any(n.startswith(".manifest.json.") and n.endswith(".tmp") for n in leftovers)
            assert sum(n.startswith("gen-") for n in leftovers) == 2
        # The dead builder's lock is gone with it (its pid is still written in the lock file).
        assert str(proc.pid) in lock_path(ix).read_text()
        again = DigestIndex.build([smaller_corpus], index_dir=ix, encoder=tiny_encoder, wait=0)
        assert again.manifest.paper_count == 23
        again.close()
        # Besides the embedding cache (which a build keeps), only the one generation is left.
        names = [p.name for p in ix.iterdir() if p.is_dir() and p.name != CACHE_DIR]
        assert len(names) == 1 and names[0].startswith("gen-"), (stage, names)


def test_first_build_killed_then_rebuilt(tmp_path: Path, seed_corpus: Path) -> None:
    ix = tmp_path / "fresh"
    proc = subprocess.Popen(
        _cli("build", str(seed_corpus), "--index", str(ix), "--lexical-only", "-q"),
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=_env(DIGEST_RAG_TEST_PAUSE_AT="swap"),
    )
    try:
        wait_paused(proc, "swap")
    finally:
        proc.kill()
        proc.wait()
        proc.stderr.close()  # type: ignore[union-attr]
    # No manifest yet: there is no index to load, and the leftovers do not make the directory "foreign".
    with pytest.raises(Exception) as err:
        DigestIndex.load(ix)
    assert "no manifest" in str(err.value)
    idx = DigestIndex.build([seed_corpus], index_dir=ix, lexical_only=True)
    assert idx.manifest.paper_count == 29 and len([p for p in ix.iterdir() if p.is_dir()]) == 1


# -------------------------------------------------------------------------------------- concurrency


def test_two_builders_one_fails_fast_naming_the_holder_one_waits(
    dense_copy: Path, seed_corpus: Path, smaller_corpus: Path, tiny_encoder: object
) -> None:
    holder = subprocess.Popen(
        _cli("build", str(smaller_corpus), "--index", str(dense_copy), "--lexical-only", "-q"),
        stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=_env(DIGEST_RAG_TEST_PAUSE_AT="locked"),
    )
    try:
        wait_paused(holder, "locked")
        t0 = time.monotonic()
        second = subprocess.run(
            _cli("build", str(seed_corpus), "--index", str(dense_copy), "--lexical-only", "-q"),
            capture_output=True, text=True, env=_env(), timeout=120,
        )
        fail_fast = time.monotonic() - t0
        assert second.returncode == 2, second.stderr
        assert second.stderr.count("\n") == 1 and second.stderr.startswith("error: ")
        assert f"process {holder.pid} (started " in second.stderr and "--wait" in second.stderr
        assert "Traceback" not in second.stderr

        waited: dict[str, object] = {}

        def third() -> None:
            try:
                waited["index"] = DigestIndex.build([seed_corpus], index_dir=dense_copy, encoder=tiny_encoder, wait=120)
            except BaseException as exc:  # noqa: BLE001 - reported by the main thread
                waited["error"] = exc

        t = threading.Thread(target=third)
        t.start()
        time.sleep(0.5)
        assert t.is_alive()  # blocked on the lock, not failed
        holder.send_signal(signal.SIGCONT)
        out, err = holder.communicate(timeout=120)
        assert holder.returncode == 0, err
        t.join(timeout=120)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    assert "error" not in waited, waited.get("error")
    final = waited["index"]
    assert final.manifest.paper_count == 29 and final.manifest.model_name is not None  # type: ignore[attr-defined]
    final.close()  # type: ignore[attr-defined]
    assert DigestIndex.load(dense_copy, encoder=tiny_encoder).manifest.paper_count == 29
    # Starting a process that fails on the lock costs the import only, never a parse of the corpus.
    print(f"second builder failed in {fail_fast:.2f}s")


def test_locked_index_fails_fast_or_waits_in_process(dense_copy: Path, seed_corpus: Path) -> None:
    lock = WriterLock(dense_copy)
    lock.acquire()
    try:
        t0 = time.monotonic()
        with pytest.raises(IndexLockedError) as err:
            DigestIndex.build([seed_corpus], index_dir=dense_copy, lexical_only=True)
        assert time.monotonic() - t0 < 2.0
        assert f"process {os.getpid()} (started " in str(err.value) and str(dense_copy) in str(err.value)
        with pytest.raises(IndexLockedError):
            DigestIndex.update([seed_corpus / DAILY], index_dir=dense_copy)
        t0 = time.monotonic()
        with pytest.raises(IndexLockedError) as err:
            DigestIndex.build([seed_corpus], index_dir=dense_copy, lexical_only=True, wait=0.5)
        assert time.monotonic() - t0 >= 0.5 and "after waiting 0.5s" in str(err.value)
        res = CliRunner().invoke(app, ["build", str(seed_corpus), "--index", str(dense_copy), "--lexical-only"])
        assert res.exit_code == 2 and res.stderr.count("\n") == 1 and f"process {os.getpid()}" in res.stderr
        threading.Timer(0.5, lock.release).start()
        t0 = time.monotonic()
        idx = DigestIndex.build([seed_corpus], index_dir=dense_copy, lexical_only=True, wait=30)
        assert time.monotonic() - t0 >= 0.4 and idx.manifest.paper_count == 29
        idx.close()
    finally:
        lock.release()


def test_stale_lock_of_a_killed_process_does_not_block(dense_copy: Path, seed_corpus: Path) -> None:
    code = (
        "import sys, time; from pathlib import Path; from digest_rag.storage.locking import WriterLock; "
        "WriterLock(Path(sys.argv[1])).acquire(); print('held', flush=True); time.sleep(600)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(dense_copy)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        with pytest.raises(IndexLockedError) as err:
            DigestIndex.build([seed_corpus], index_dir=dense_copy, lexical_only=True)
        assert f"process {proc.pid}" in str(err.value) and "exited" not in str(err.value)
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()  # type: ignore[union-attr]
    assert f'"pid": {proc.pid}' in lock_path(dense_copy).read_text()  # stale content, no lock
    idx = DigestIndex.build([seed_corpus], index_dir=dense_copy, lexical_only=True)
    assert idx.manifest.paper_count == 29
    idx.close()


def test_reader_reopens_when_a_build_collects_its_generation(
    dense_copy: Path, smaller_corpus: Path, tiny_encoder: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    import digest_rag.index as index_mod

    stale = index_mod.read_manifest(dense_copy)
    DigestIndex.build([smaller_corpus], index_dir=dense_copy, encoder=tiny_encoder).close()
    assert not (dense_copy / stale.data_dir).exists()
    real = index_mod.read_manifest
    calls: list[int] = []

    def racy(index_dir: Path):  # noqa: ANN202 - the first read returns what a slow reader saw
        calls.append(1)
        return stale if len(calls) == 1 else real(index_dir)

    monkeypatch.setattr(index_mod, "read_manifest", racy)
    idx = DigestIndex.load(dense_copy, encoder=tiny_encoder)
    assert idx.manifest.paper_count == 23 and idx.manifest.data_dir != stale.data_dir
    idx.close()
    # Without a newer manifest the same missing directory is real damage: no retry loop.
    monkeypatch.setattr(index_mod, "read_manifest", lambda index_dir: stale)
    with pytest.raises(IndexCorruptedError, match="data directory named by the manifest is missing"):
        DigestIndex.load(dense_copy)


def test_readers_never_see_a_partial_index_during_rebuilds(tmp_path: Path, seed_corpus: Path,
                                                            smaller_corpus: Path) -> None:
    ix = tmp_path / "ix"
    DigestIndex.build([seed_corpus], index_dir=ix, lexical_only=True).close()
    stop = threading.Event()
    seen: list[int] = []
    errors: list[BaseException] = []

    def reader() -> None:
        while not stop.is_set():
            try:
                with DigestIndex.load(ix) as idx:
                    assert idx.search("Gemma 2", k=3, mode="lexical")
                    seen.append(idx.manifest.paper_count)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)
                return

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        for corpus in (smaller_corpus, seed_corpus, smaller_corpus, seed_corpus):
            DigestIndex.build([corpus], index_dir=ix, lexical_only=True).close()
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors[0]
    assert seen and set(seen) <= {23, 29}


# ----------------------------------------------------------------------------- unsafe target paths


def test_never_overwrites_a_foreign_directory(tmp_path: Path, seed_corpus: Path) -> None:
    parent = tmp_path / "home"
    parent.mkdir()
    (parent / "notes.txt").write_text("precious")
    (parent / "gen-photos").mkdir()  # named like a generation, but beside the index, not in it
    (parent / "gen-photos" / "a.jpg").write_text("x")
    (parent / ".tmp-gen-x").mkdir()
    runner = CliRunner()
    for extra in ([], ["--lexical-only"], ["--wait", "1"], ["--strict"]):
        res = runner.invoke(app, ["build", str(seed_corpus), "--index", str(parent), *extra])
        assert res.exit_code == 2 and "refusing" in res.stderr and res.stderr.count("\n") == 1, res.stderr
    with pytest.raises(UnsafeIndexPathError):
        DigestIndex.build([seed_corpus], index_dir=parent / "notes.txt", lexical_only=True)
    # A foreign manifest.json (a web app's) is not ours either, alone or with company.
    web = tmp_path / "web"
    web.mkdir()
    (web / "manifest.json").write_text('{"name": "my app"}')
    with pytest.raises(UnsafeIndexPathError):
        DigestIndex.build([seed_corpus], index_dir=web, lexical_only=True)
    (web / "index.html").write_text("<html>")
    with pytest.raises(UnsafeIndexPathError):
        DigestIndex.build([seed_corpus], index_dir=web, lexical_only=True)
    assert (web / "manifest.json").read_text() == '{"name": "my app"}'
    # An index inside a crowded parent (like /tmp) touches nothing beside it, even named gen-*.
    ix = parent / "ix"
    for _ in range(2):
        DigestIndex.build([seed_corpus], index_dir=ix, lexical_only=True).close()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep")
    (ix / "gen-link").symlink_to(outside)
    DigestIndex.build([seed_corpus], index_dir=ix, lexical_only=True).close()
    assert (parent / "notes.txt").read_text() == "precious" and (parent / "gen-photos" / "a.jpg").exists()
    assert (parent / ".tmp-gen-x").is_dir() and (outside / "keep.txt").read_text() == "keep"
    assert sorted(p.name for p in parent.iterdir()) == [".ix.lock", ".tmp-gen-x", "gen-photos", "ix", "notes.txt"]


# -------------------------------------------------------------------------------------- corruption


def _truncate_faiss(ix: Path) -> str:
    f = _gen(ix) / "vectors.faiss"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    return "vectors.faiss"


def _flip_faiss(ix: Path) -> str:
    f = _gen(ix) / "vectors.faiss"
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF
    f.write_bytes(bytes(data))
    return "vectors.faiss"


def _garbage_faiss_forged(ix: Path) -> str:
    (_gen(ix) / "vectors.faiss").write_bytes(b"IxM2" + os.urandom(5000))
    _rehash(ix, "vectors.faiss")
    return "vectors.faiss"


def _damage_sqlite(ix: Path) -> str:
    f = _gen(ix) / "store.sqlite"
    data = bytearray(f.read_bytes())
    data[0:100] = os.urandom(100)  # the header
    f.write_bytes(bytes(data))
    return "store.sqlite"


def _damage_sqlite_forged(ix: Path) -> str:
    _damage_sqlite(ix)
    _rehash(ix, "store.sqlite")
    return "store.sqlite"


def _drop_chunk_row_forged(ix: Path) -> str:
    f = _gen(ix) / "store.sqlite"
    con = sqlite3.connect(f)
    with con:
        con.execute("DELETE FROM chunks WHERE id = (SELECT MIN(id) FROM chunks)")
    con.close()
    _rehash(ix, "store.sqlite")
    return "holds"


def _delete_store(ix: Path) -> str:
    (_gen(ix) / "store.sqlite").unlink()
    return "store.sqlite"


def _delete_lexical_file(ix: Path) -> str:
    (_gen(ix) / "lexical" / "lexical.vocab_ids.npy").unlink()
    return "lexical.vocab_ids.npy"


def _alter_npy(ix: Path) -> str:
    f = _gen(ix) / "lexical" / "lexical.data.npy"
    f.write_bytes(f.read_bytes()[:-8])
    return "lexical.data.npy"


def _delete_generation(ix: Path) -> str:
    shutil.rmtree(_gen(ix))
    return "data directory"


def _edit_manifest(**changes: object) -> Callable[[Path], str]:
    def edit(ix: Path) -> str:
        m = json.loads((ix / "manifest.json").read_text())
        m.update(changes)
        (ix / "manifest.json").write_text(json.dumps(m))
        return "manifest.json" if "format_version" in changes or "data_dir" in changes else "holds"
    return edit


def _unlist_file(ix: Path) -> str:
    m = json.loads((ix / "manifest.json").read_text())
    del m["files"]["vectors.faiss"]
    (ix / "manifest.json").write_text(json.dumps(m))
    return "does not list vectors.faiss"


def _truncate_manifest(ix: Path) -> str:
    f = ix / "manifest.json"
    f.write_bytes(f.read_bytes()[:50])
    return "manifest.json"


CORRUPTIONS: dict[str, Callable[[Path], str]] = {
    "faiss-truncated": _truncate_faiss,
    "faiss-altered": _flip_faiss,
    "faiss-garbage-forged-checksum": _garbage_faiss_forged,
    "sqlite-damaged": _damage_sqlite,
    "sqlite-damaged-forged-checksum": _damage_sqlite_forged,
    "sqlite-row-deleted-forged-checksum": _drop_chunk_row_forged,
    "store-missing": _delete_store,
    "lexical-file-missing": _delete_lexical_file,
    "npy-truncated": _alter_npy,
    "generation-missing": _delete_generation,
    "format-version-unknown": _edit_manifest(format_version=99),
    "manifest-count-disagrees": _edit_manifest(chunk_count=7),
    "manifest-data-dir-escapes": _edit_manifest(data_dir="../../etc"),
    "manifest-unlists-a-file": _unlist_file,
    "manifest-truncated": _truncate_manifest,
}


@pytest.mark.parametrize("damage", sorted(CORRUPTIONS))
def test_corruption_raises_typed_error_and_one_line_cli_exit_2(dense_copy: Path, damage: str) -> None:
    needle = CORRUPTIONS[damage](dense_copy)
    for verify in (True, False):
        with pytest.raises(IndexCorruptedError) as err:
            DigestIndex.load(dense_copy, verify=verify).search("Gemma 2", mode="lexical")
        assert needle in str(err.value), (verify, str(err.value))
    if damage == "format-version-unknown":
        assert isinstance(err.value, IndexVersionError)
    for args in (["search", "Gemma 2", "--mode", "lexical"], ["info"]):
        res = CliRunner().invoke(app, [*args, "--index", str(dense_copy)])
        assert res.exit_code == 2, res.output
        assert res.stderr.startswith("error: ") and res.stderr.count("\n") == 1 and needle in res.stderr
        assert res.stdout == ""


def test_corrupted_index_cli_subprocess_one_line_no_traceback(dense_copy: Path) -> None:
    _garbage_faiss_forged(dense_copy)
    res = subprocess.run(_cli("info", "--index", str(dense_copy)), capture_output=True, text=True, env=_env(), timeout=120)
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "vectors.faiss" in res.stderr
    assert "Traceback" not in res.stderr and res.stdout == ""


def test_rebuild_repairs_a_damaged_index(dense_copy: Path, seed_corpus: Path, tiny_encoder: object) -> None:
    _damage_sqlite(dense_copy)
    with pytest.raises(IndexCorruptedError, match="cannot update a damaged index"):
        DigestIndex.update([seed_corpus / DAILY], index_dir=dense_copy, encoder=tiny_encoder)
    with pytest.warns(DamagedIndexWarning, match="store.sqlite"):
        idx = DigestIndex.build([seed_corpus], index_dir=dense_copy, encoder=tiny_encoder)
    # Nothing reused from a store that failed its checksum.
    assert idx.last_build.reused == 0 and idx.last_build.encoded == idx.manifest.chunk_count
    idx.close()
    _truncate_manifest(dense_copy)
    res = CliRunner().invoke(app, ["build", str(seed_corpus), "--index", str(dense_copy), "--lexical-only"])
    # Repaired, and exit 2 says the index had been damaged (issue 23: a script must notice).
    assert res.exit_code == 2, res.output
    assert "warning: the previous index is damaged" in res.stderr
    assert "error: the index was damaged and has been rebuilt" in res.stderr
    assert DigestIndex.load(dense_copy).manifest.paper_count == 29


def test_no_pickle_no_remote_code_sql_bound(repo_root: Path) -> None:
    """Audit: persisted formats never use pickle; models never run remote code; SQL takes parameters."""
    import re

    for f in sorted((repo_root / "digest_rag").rglob("*.py")):
        src = f.read_text(encoding="utf-8")
        assert not re.search(r"^\s*(import pickle|from pickle|import dill|import joblib)", src, re.M), f
        assert "allow_pickle=True" not in src and "trust_remote_code=True" not in src, f
        # SQL text is built only from constants and '?' placeholders, never from values.
        for m in re.finditer(r"execute(?:many|script)?\(\s*f\"([^\"]*)\"", src):
            assert re.fullmatch(r"[^{}]*(\{(cols|','\.join\('\?' \* len\(\w+\)\))\}[^{}]*)*", m.group(1)), (f, m.group(1))


# --------------------------------------------------------------------------------------- bad queries


def test_bad_queries(seed_index_dir: Path, tiny_encoder: object) -> None:
    idx = DigestIndex.load(seed_index_dir, encoder=tiny_encoder)
    try:
        for q in ("", "   ", "\n\t ", "\x00\x01\x7f"):
            with pytest.raises(EmptyQueryError):
                idx.search(q)
        for mode in ("lexical", "hybrid"):
            top = idx.search("Gemma 2 지식 증류", k=3, mode=mode)[0].paper.id
            with pytest.warns(QueryTruncatedWarning, match="100000 characters"):
                long_hits = idx.search("Gemma 2 " + "x" * 99_992, k=3, mode=mode)
            assert long_hits and long_hits[0].paper.title.startswith("Gemma 2")
            variants = [
                "Gemma\x00 2\x07 지식\x1b 증류",  # control characters
                "🤖 Gemma 2 지식 증류 🔥",  # emoji
                "Gemma 2 지식 증류'; DROP TABLE papers; --",  # SQL-looking
                "Gemma 2 知識 지식 증류 дистилляция",  # mixed scripts
            ]
            clean = [h.paper.id for h in idx.search("Gemma 2 지식 증류", k=5, mode=mode)]
            for q in variants:
                with warnings.catch_warnings():
                    warnings.simplefilter("error")  # no warning for ordinary queries
                    hits = idx.search(q, k=5, mode=mode)
                assert hits and len({h.paper.id for h in hits}) == len(hits)
                if mode == "lexical":
                    assert hits[0].paper.id == top, (mode, q)
            # Control characters become spaces: the same question as the clean one, in every mode. (Other
            # variants change the tiny random model's vector, so hybrid order is only checked here.)
            assert [h.paper.id for h in idx.search(variants[0], k=5, mode=mode)] == clean
        assert len(idx.store.papers()) == 29
    finally:
        idx.close()
    res = CliRunner().invoke(app, ["search", "Gemma 2 " + "x" * 99_992, "--index", str(seed_index_dir),
                                   "--mode", "lexical", "-k", "1"])
    assert res.exit_code == 0 and "warning: query of 100000 characters truncated" in res.stderr
    res = CliRunner().invoke(app, ["search", "  ", "--index", str(seed_index_dir)])
    assert res.exit_code == 1 and res.stderr.startswith("error: ") and res.stderr.count("\n") == 1


def test_ten_thousand_searches_flat_memory(seed_corpus: Path, tmp_path: Path) -> None:
    idx = DigestIndex.build([seed_corpus], index_dir=tmp_path / "ix", lexical_only=True)

    def rss_mb() -> float:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    queries = QUERIES + ["🤖 LoRA", "'; DROP TABLE papers; --", "x" * 3000]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", QueryTruncatedWarning)
        for i in range(300):  # warm caches (tokenizer, SQLite page cache)
            idx.search(f"{queries[i % len(queries)]} {i}", k=10, mode="lexical", tags=["llm"] if i % 2 else None)
        before = rss_mb()
        for i in range(10_000):
            idx.search(f"{queries[i % len(queries)]} {i}", k=10, mode="lexical", tags=["llm"] if i % 2 else None)
        growth = rss_mb() - before
    idx.close()
    print(f"RSS growth over 10,000 searches: {growth:.1f} MB")
    assert growth < 50


# ------------------------------------------------------------------------------------- bad corpora


@pytest.fixture()
def messy_corpus(tmp_path: Path, seed_corpus: Path) -> Path:
    out = tmp_path / "messy"
    out.mkdir()
    # The few characters CP949 lacks (accented Latin) become '?', in the legacy file and its UTF-8 twin.
    daily = (seed_corpus / DAILY).read_text(encoding="utf-8").encode("cp949", "replace").decode("cp949")
    (tmp_path / "daily-utf8.txt").write_text(daily, encoding="utf-8")
    (out / "a-daily-cp949.txt").write_bytes(daily.encode("cp949"))
    weekly = (seed_corpus / "2024-04-weekly-top-papers-roundup.txt").read_text(encoding="utf-8")
    (out / "b-weekly-euc-kr.txt").write_bytes(weekly.encode("euc-kr", "replace"))
    (out / "c-daily-again.txt").write_text(daily, encoding="utf-8")  # the same papers, again
    (out / "empty.txt").write_bytes(b"")
    (out / "blank.md").write_text(" \n\t\n")
    (out / "image.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + os.urandom(200))
    (out / "undecodable.txt").write_bytes(b"\x81\xff\xfe\x80 " * 50)
    (out / "recipe.txt").write_text("Boil water. Add pasta. Wait ten minutes.\n" * 3)
    return out


def test_bad_corpus_files_are_skipped_with_reasons(messy_corpus: Path, tmp_path: Path) -> None:
    res = parse_paths([messy_corpus])
    reasons = {Path(s.source).name: s.reason for s in res.skipped}
    assert set(reasons) == {"empty.txt", "blank.md", "image.txt", "undecodable.txt", "recipe.txt"}, reasons
    assert "empty" in reasons["empty.txt"] and "binary" in reasons["image.txt"]
    assert "not UTF-8, CP949 or EUC-KR" in reasons["undecodable.txt"] and "unknown format" in reasons["recipe.txt"]
    # Legacy Korean encodings decode to exactly the UTF-8 papers.
    utf8 = {p.id: p.model_dump(exclude={"source"}) for p in parse_paths([tmp_path / "daily-utf8.txt"]).papers}
    cp949 = {p.id: p.model_dump(exclude={"source"}) for p in parse_paths([messy_corpus / "a-daily-cp949.txt"]).papers}
    assert cp949 == utf8
    # Duplicates across files are merged by id, reported, and the outcome does not depend on argument order.
    assert len(res.merged) == len(utf8) and all("c-daily-again.txt merged into" in m for m in res.merged)
    files = sorted(messy_corpus.iterdir())
    shuffled = parse_paths(list(reversed(files)))
    assert [p.model_dump() for p in shuffled.papers] == [p.model_dump() for p in res.papers]
    with pytest.raises(CorpusError, match="5 file"):
        parse_paths([messy_corpus], strict=True)


def test_build_continues_past_bad_files_and_strict_fails(messy_corpus: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["build", str(messy_corpus), "--index", str(tmp_path / "ix"), "--lexical-only",
                              "--verbose"])
    assert res.exit_code == 0, res.output
    assert "skipped 5 file(s):" in res.stdout and "binary file" in res.stdout and "merged: " in res.stderr
    # --quiet: the summary line alone (issue 22 item 4: one "merged: ..." line per duplicate went to stdout).
    res = runner.invoke(app, ["build", str(messy_corpus), "--index", str(tmp_path / "ix3"), "--lexical-only", "-q"])
    assert res.exit_code == 0 and res.stdout.count("\n") == 1 and "skipped 5 file(s)" in res.stdout
    assert "merged" not in res.output
    res = runner.invoke(app, ["build", str(messy_corpus), "--index", str(tmp_path / "ix4"), "--lexical-only"])
    assert "merged: " not in res.output and "duplicate paper(s)" in res.stdout
    res = runner.invoke(app, ["build", str(messy_corpus), "--index", str(tmp_path / "ix2"), "--lexical-only",
                              "--strict"])
    assert res.exit_code == 2 and res.stderr.count("\n") == 1 and "strict mode" in res.stderr
    assert not (tmp_path / "ix2" / "manifest.json").exists()


def test_huge_corpus_file_parses_in_bounded_time_and_memory(tmp_path: Path, seed_corpus: Path) -> None:
    """A 50 MB digest (the same day repeated ~3,600 times) parses and merges in seconds, under 600 MB."""
    daily = (seed_corpus / DAILY).read_text(encoding="utf-8")
    head, body = daily.split("\n", 1)
    reps = 50_000_000 // len(body.encode("utf-8")) + 1
    huge = tmp_path / "huge.txt"
    with open(huge, "w", encoding="utf-8") as fh:
        fh.write(head + "\n")
        for _ in range(reps):
            fh.write(body if body.endswith("\n") else body + "\n")
    assert huge.stat().st_size >= 50_000_000
    # VmHWM, not ru_maxrss: on Linux the latter keeps the forking parent's peak across exec.
    code = (
        "import json, re, sys, time; from pathlib import Path; from digest_rag.parsing import parse_paths; "
        "t = time.perf_counter(); r = parse_paths([sys.argv[1]]); s = time.perf_counter() - t; "
        "hwm = int(re.search(r'VmHWM:\\s+(\\d+)', Path('/proc/self/status').read_text()).group(1)); "
        "print(json.dumps({'s': s, 'papers': len(r.papers), 'merged': len(r.merged), 'skipped': len(r.skipped), "
        "'rss_mb': hwm / 1024}))"
    )
    out = subprocess.run([sys.executable, "-c", code, str(huge)], capture_output=True, text=True, timeout=300,
                         env=_env())
    assert out.returncode == 0, out.stderr
    stats = json.loads(out.stdout)
    print(f"50 MB digest: {stats}")
    n = len(parse_paths([seed_corpus / DAILY]).papers)
    assert stats["papers"] == n and stats["skipped"] == 0 and stats["merged"] > 1000
    assert stats["s"] < 60 and stats["rss_mb"] < 600


def test_build_repairs_a_deeply_nested_manifest(tmp_path: Path, seed_corpus: Path) -> None:
    """Issue 16 item 6: a manifest of 200k '[' was a RecursionError traceback, and build could not repair it."""
    ix = tmp_path / "ix"
    DigestIndex.build([seed_corpus], index_dir=ix, lexical_only=True).close()
    (ix / "manifest.json").write_text("[" * 200_000)
    with pytest.raises(IndexCorruptedError, match="nested too deeply"):
        DigestIndex.load(ix)
    res = CliRunner().invoke(app, ["search", "Gemma 2", "--index", str(ix), "--mode", "lexical"])
    assert res.exit_code == 2 and res.stderr.count("\n") == 1 and "manifest.json" in res.stderr
    res = CliRunner().invoke(app, ["build", str(seed_corpus), "--index", str(ix), "--lexical-only"])
    assert res.exit_code == 2, (res.output, res.exception)  # repaired; exit 2 reports the damage
    assert "warning: the previous index is damaged" in res.stderr
    with DigestIndex.load(ix) as idx:
        assert idx.manifest.paper_count == 29


def test_foreign_files_inside_an_index_are_kept(tmp_path: Path, seed_corpus: Path, smaller_corpus: Path) -> None:
    """Issue 16 item 7: the README promised a refusal that never came; now it promises these are kept."""
    ix = tmp_path / "ix"
    DigestIndex.build([seed_corpus], index_dir=ix, lexical_only=True).close()
    (ix / "notes.txt").write_text("mine")
    (ix / "backup").mkdir()
    (ix / "backup" / "gen-old").mkdir()
    (ix / "gen-notes").write_text("named like ours, but a file")
    for corpus in (smaller_corpus, seed_corpus):
        res = CliRunner().invoke(app, ["build", str(corpus), "--index", str(ix), "--lexical-only"])
        assert res.exit_code == 0, res.output
    res = CliRunner().invoke(app, ["update", str(seed_corpus / DAILY), "--index", str(ix)])
    assert res.exit_code == 0, res.output
    assert (ix / "notes.txt").read_text() == "mine" and (ix / "backup" / "gen-old").is_dir()
    assert (ix / "gen-notes").read_text() == "named like ours, but a file"
    assert DigestIndex.load(ix).manifest.paper_count == 29
