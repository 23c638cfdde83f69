"""The build pipeline's options (digest_rag.build.pipeline / BuildOptions): saved with the index, inherited, overridden."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import pytest
from typer.testing import CliRunner

from digest_rag import BuildOptions, DigestIndex
from digest_rag.frontends.cli import app
from digest_rag.dense.encoder import Encoder
from digest_rag.errors import IndexVersionError, ModelFallbackWarning, UsageError
from digest_rag.storage.layout import MANIFEST, read_manifest
from digest_rag.models import ChunkerSettings

BLOG = "2024-04-22-blog-llama-introduction.txt"
CUSTOM = ChunkerSettings(target_tokens=48, overlap_tokens=8, max_tokens=128)
HNSW = "IDMap2,HNSW16,Flat"


def _touch_blog(corpus: Path) -> None:
    with open(corpus / BLOG, "a", encoding="utf-8") as fh:
        fh.write("\nAn added closing sentence about tokenizer efficiency and grouped-query attention.\n")


def test_update_and_rebuild_keep_custom_chunker_and_factory(tmp_path: Path, corpus: Path, tiny_model: Path) -> None:
    ix = tmp_path / "ix"
    first = DigestIndex.build([corpus], index_dir=ix, model=str(tiny_model), chunker=CUSTOM, factory=HNSW)
    default = DigestIndex.build([corpus], index_dir=tmp_path / "default", model=str(tiny_model))
    # The custom settings matter: the same corpus gives more, smaller chunks.
    assert first.manifest.chunk_count > default.manifest.chunk_count
    _touch_blog(corpus)
    upd = DigestIndex.update([corpus / BLOG], index_dir=ix)
    assert upd.manifest.chunker == CUSTOM and upd.manifest.index_type == HNSW
    assert upd.manifest.chunk_count >= first.manifest.chunk_count
    assert upd.last_build.full_rebuild_reason is None and upd.last_build.encoded < upd.manifest.chunk_count / 4
    again = DigestIndex.build([corpus], index_dir=ix, force=True)
    assert again.manifest.chunker == CUSTOM and again.manifest.index_type == HNSW
    assert again.manifest.model_name == str(tiny_model) and again.last_build.encoded == 0
    for idx in (first, default, upd, again):
        idx.close()


def test_update_and_rebuild_keep_the_backend(tmp_path: Path, corpus: Path, tiny_model: Path) -> None:
    pytest.importorskip("onnxruntime", reason="onnxruntime not installed (pip install 'digest-rag[onnx]')")
    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)  # the ONNX export is written beside the weights
    ix = tmp_path / "ix"
    DigestIndex.build([corpus], index_dir=ix, model=str(model), backend="onnx").close()
    _touch_blog(corpus)
    upd = DigestIndex.update([corpus / BLOG], index_dir=ix)
    assert upd.manifest.backend == "onnx" and upd.manifest.build_options.backend == "onnx"
    assert upd.last_build.encoded < upd.manifest.chunk_count / 4
    upd.close()
    again = DigestIndex.build([corpus], index_dir=ix, force=True)
    assert again.manifest.backend == "onnx" and again.last_build.encoded == 0
    again.close()


def test_explicit_override_wins_and_reencodes(tmp_path: Path, corpus: Path, tiny_encoder: Encoder) -> None:
    ix = tmp_path / "ix"
    DigestIndex.build([corpus], index_dir=ix, encoder=tiny_encoder, chunker=CUSTOM).close()
    over = DigestIndex.build([corpus], index_dir=ix, encoder=tiny_encoder, chunker=ChunkerSettings())
    assert over.manifest.chunker == ChunkerSettings() and over.manifest.build_options.chunker == ChunkerSettings()
    assert over.last_build.full_rebuild_reason == "chunker settings changed"
    assert over.last_build.encoded > 0 and over.last_build.reused == 0
    over.close()
    # A factory override needs no new vectors.
    flat = DigestIndex.build([corpus], index_dir=ix, encoder=tiny_encoder, factory="IDMap2,Flat")
    assert flat.manifest.index_type == "IDMap2,Flat" and flat.last_build.encoded == 0
    flat.close()


def test_unknown_or_bad_option_is_a_usage_error(tmp_path: Path, corpus: Path) -> None:
    ix = tmp_path / "ix"
    DigestIndex.build([corpus], index_dir=ix, lexical_only=True).close()
    with pytest.raises(UsageError, match="unknown build option.*'chunkr'"):
        DigestIndex.update([corpus / BLOG], index_dir=ix, chunkr=CUSTOM)
    with pytest.raises(UsageError, match="unknown build option.*'bogus'"):
        DigestIndex.build([corpus], index_dir=ix, bogus=1)
    with pytest.raises(UsageError, match="batch_size"):
        DigestIndex.build([corpus], index_dir=ix, batch_size=0)
    with pytest.raises(UsageError, match="backend"):
        DigestIndex.build([corpus], index_dir=ix, backend="tensorflow")
    res = CliRunner().invoke(app, ["update", str(corpus / BLOG), "--index", str(ix), "--chunker", "x"])
    assert res.exit_code == 1 and "No such option" in res.output and "Traceback" not in res.output


def test_build_options_round_trip_through_the_manifest(tmp_path: Path, corpus: Path, tiny_model: Path) -> None:
    ix = tmp_path / "ix"
    DigestIndex.build([corpus], index_dir=ix, model=str(tiny_model), chunker=CUSTOM, factory=HNSW,
                      batch_size=7, strict=False).close()
    saved = read_manifest(ix).build_options
    assert saved == BuildOptions(model=str(tiny_model), backend="torch", batch_size=7, factory=HNSW, chunker=CUSTOM)
    raw = json.loads((ix / MANIFEST).read_text(encoding="utf-8"))["build_options"]
    assert BuildOptions.model_validate(raw) == saved
    assert BuildOptions.model_validate_json(saved.model_dump_json()) == saved


def test_previous_format_version_loads_and_updates(tmp_path: Path, corpus: Path, tiny_encoder: Encoder) -> None:
    """Format 1 (digest_rag 0.1) saved no build options: it still loads, searches and updates, its
    options inferred from the manifest; an unknown future version is refused with the rebuild message."""
    ix = tmp_path / "ix"
    DigestIndex.build([corpus], index_dir=ix, encoder=tiny_encoder, chunker=CUSTOM).close()
    raw = json.loads((ix / MANIFEST).read_text(encoding="utf-8"))
    raw["format_version"] = 1
    del raw["build_options"]
    (ix / MANIFEST).write_text(json.dumps(raw), encoding="utf-8")
    old = DigestIndex.load(ix)
    assert old.manifest.format_version == 1 and old.manifest.build_options is None
    assert old.search("Many-shot jailbreaking", k=1, mode="lexical")[0].paper.title == "Many-shot Jailbreaking"
    old.close()
    _touch_blog(corpus)
    upd = DigestIndex.update([corpus / BLOG], index_dir=ix, encoder=tiny_encoder)
    assert upd.manifest.format_version == 2 and upd.manifest.chunker == CUSTOM
    assert upd.last_build.full_rebuild_reason is None
    upd.close()
    raw["format_version"] = 99
    (ix / MANIFEST).write_text(json.dumps(raw), encoding="utf-8")
    with pytest.raises(IndexVersionError, match="rebuild the index"):
        DigestIndex.load(ix)


def test_update_keeps_a_lexical_only_index_lexical(
    tmp_path: Path, corpus: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ix = tmp_path / "ix"
    DigestIndex.build([corpus], index_dir=ix, lexical_only=True).close()
    monkeypatch.setenv("DIGEST_RAG_MODEL", str(tiny_model))  # must not turn the index dense behind the user's back
    _touch_blog(corpus)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ModelFallbackWarning)
        upd = DigestIndex.update([corpus / BLOG], index_dir=ix)
    assert upd.manifest.model_name is None and upd.last_build.lexical_only and upd.last_build.encoded == 0
    upd.close()
    dense = DigestIndex.update([corpus / BLOG], index_dir=ix, model=str(tiny_model))  # asked for explicitly
    assert dense.manifest.model_name == str(tiny_model)
    dense.close()


# ----------------------------------------------------------------- a full disk (issue 16 item 6)


def _answers(ix: Path) -> list[list[str]]:
    with DigestIndex.load(ix) as idx:
        return [[h.paper.id for h in idx.search(q, k=5, mode="lexical")] for q in ("Gemma 2", "탈옥 공격", "LoRA")]


def _assert_disk_full_is_one_line_and_harmless(ix: Path, corpus: Path, before: list[list[str]]) -> None:
    from digest_rag import IndexWriteError

    with pytest.raises(IndexWriteError, match="previous index .*unchanged"):
        DigestIndex.build([corpus], index_dir=ix, lexical_only=True, force=True)
    res = CliRunner().invoke(app, ["build", str(corpus), "--index", str(ix), "--lexical-only", "--force"])
    assert res.exit_code == 2, (res.output, res.exception)
    assert res.stderr.startswith("error: ") and res.stderr.count("\n") == 1
    assert _answers(ix) == before
    assert not [p.name for p in ix.iterdir() if p.name.startswith(".")]  # no temporary leftovers


def test_sqlite_disk_full_is_a_typed_error(tmp_path: Path, corpus: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite's "database or disk is full" (here from a page cap, SQLite's own way to get it) was a traceback."""
    import sqlite3

    ix = tmp_path / "ix"
    DigestIndex.build([corpus], index_dir=ix, lexical_only=True).close()
    before = _answers(ix)
    real = sqlite3.connect

    def capped(*args: object, **kwargs: object) -> sqlite3.Connection:
        con = real(*args, **kwargs)  # type: ignore[arg-type]
        con.execute("PRAGMA max_page_count = 8")
        return con

    import digest_rag.storage.store as store_mod

    monkeypatch.setattr(store_mod.sqlite3, "connect", capped)
    _assert_disk_full_is_one_line_and_harmless(ix, corpus, before)


def test_enospc_writing_arrays_is_a_typed_error(tmp_path: Path, corpus: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno
    import os

    ix = tmp_path / "ix"
    DigestIndex.build([corpus], index_dir=ix, lexical_only=True).close()
    before = _answers(ix)

    import digest_rag.lexical.files as lexical_files

    class Full:
        def __init__(self, _fh: object) -> None:
            pass

        def write(self, _data: bytes) -> None:  # what Python's write raises on a full disk: no file name
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(lexical_files, "_Stream", Full)
    _assert_disk_full_is_one_line_and_harmless(ix, corpus, before)
    with pytest.raises(Exception, match=r"lexical\.data\.npy: cannot write the index"):  # the file being written
        DigestIndex.build([corpus], index_dir=ix, lexical_only=True, force=True)


def test_a_really_full_file_system(tmp_path: Path, corpus: Path) -> None:
    """The same on a real 2 MiB tmpfs, when this process may mount one (root on Linux)."""
    import os
    import subprocess

    mnt = tmp_path / "small"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here")
    try:
        small = tmp_path / "small-corpus"
        small.mkdir()
        shutil.copy(corpus / BLOG, small / BLOG)
        ix = mnt / "ix"
        DigestIndex.build([small], index_dir=ix, lexical_only=True).close()
        before = _answers(ix)
        st = os.statvfs(mnt)
        with open(mnt / "filler", "wb") as fh:  # leave ~64 KiB: the whole seed corpus needs more
            fh.write(b"\0" * max(0, st.f_bavail * st.f_frsize - 64 * 1024))
        _assert_disk_full_is_one_line_and_harmless(ix, corpus, before)
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


# ------------------------------------------------------------------ embedding cache, lazy model, dry run, resume
_SUBPROCESS_BUILD = """
import json, sys
import digest_rag.build.engines as e
e.encode_step = lambda batch_size: int(sys.argv[4])
from digest_rag import DigestIndex
idx = DigestIndex.build([sys.argv[1]], index_dir=sys.argv[2], model=sys.argv[3], batch_size=1, force=True)
print(json.dumps({"report": idx.last_build.model_dump(),
                  "heavy": sorted(m for m in ("torch", "transformers", "sentence_transformers") if m in sys.modules)}))
"""


def _edit_one_paper(corpus: Path) -> None:
    """Append a sentence to the last paper of one daily digest (the blog's trailing text is not part of a paper)."""
    daily = corpus / "2024-02-13-daily-digest.txt"
    daily.write_text(daily.read_text(encoding="utf-8").rstrip() + " 캐시 테스트를 위한 문장.\n", encoding="utf-8")


def _subprocess_build(corpus: Path, ix: Path, model: Path, group: int = 256, **env: str) -> dict:
    import os
    import subprocess
    import sys

    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", **env}
    out = subprocess.run([sys.executable, "-c", _SUBPROCESS_BUILD, str(corpus), str(ix), str(model), str(group)],
                         capture_output=True, text=True, env=full_env, timeout=600, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _vectors(ix: Path) -> dict[int, bytes]:
    """Chunk id -> the exact bytes of its vector, from the committed generation."""
    idx = DigestIndex.load(ix)
    try:
        emb = idx.store.embeddings(idx.manifest.dimension)
        hashes = dict(idx.store.con.execute("SELECT id, passage_hash FROM chunks").fetchall())
        return {cid: emb[h].tobytes() for cid, h in hashes.items()}
    finally:
        idx.close()


def _cache_answers(ix: Path) -> list[list[tuple[str, float]]]:
    idx = DigestIndex.load(ix)
    try:
        return [[(h.paper.id, round(h.score, 6)) for h in idx.search(q, k=5, mode=mode)]
                for q in ("scaling laws", "긴 컨텍스트 탈옥 공격", "mixture of experts") for mode in ("dense", "hybrid")]
    finally:
        idx.close()


def test_a_build_with_no_cache_misses_never_imports_torch(tmp_path: Path, corpus: Path, tiny_model: Path) -> None:
    ix = tmp_path / "ix"
    DigestIndex.build([corpus], index_dir=ix, model=str(tiny_model)).close()
    # --force: the whole pipeline (parse, chunk with the tokenizer, look every passage up, write), no model.
    res = _subprocess_build(corpus, ix, tiny_model)
    assert res["heavy"] == [], res["heavy"]
    rep = res["report"]
    assert rep["encoded"] == 0 and rep["reused"] == rep["chunks"] and not rep["model_loaded"]
    assert rep["rechunked"] == 0  # every paper's chunks came from the previous index
    # One changed paper: only then does the model load, and only its new passages are encoded.
    _edit_one_paper(corpus)
    res = _subprocess_build(corpus, ix, tiny_model)
    rep = res["report"]
    assert rep["model_loaded"] and 1 <= rep["encoded"] <= 3 and rep["rechunked"] == 1, rep
    # So few passages are encoded the light way (build.passage_model.LIGHT_ENCODE_LIMIT): torch alone, no sentence-transformers.
    assert res["heavy"] == ["torch"], res["heavy"]


def test_light_and_sentence_transformers_builds_write_the_same_vectors(
        tmp_path: Path, seed_corpus: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A build encodes few passages on torch alone and many through sentence-transformers: same bytes either way."""
    import digest_rag.build.passage_model as build_module
    from digest_rag.dense.torch_runtime import PlainSentenceModel

    light = DigestIndex.build([seed_corpus], index_dir=tmp_path / "light", model=str(tiny_model))
    assert light.last_build.encoded <= build_module.LIGHT_ENCODE_LIMIT
    assert isinstance(light.loaded_encoder.model, PlainSentenceModel)
    light.close()
    monkeypatch.setattr(build_module, "LIGHT_ENCODE_LIMIT", 0)
    full = DigestIndex.build([seed_corpus], index_dir=tmp_path / "st", model=str(tiny_model))
    assert type(full.loaded_encoder.model).__name__ == "SentenceTransformer"
    full.close()
    assert _vectors(tmp_path / "light") == _vectors(tmp_path / "st")


def test_dry_run_matches_the_build_that_follows(tmp_path: Path, corpus: Path, tiny_model: Path) -> None:
    ix = tmp_path / "ix"
    plan = DigestIndex.dry_run([corpus], index_dir=ix, model=str(tiny_model))
    assert not ix.exists() or not any(ix.iterdir()), "a dry run writes nothing"
    first = DigestIndex.build([corpus], index_dir=ix, model=str(tiny_model))
    fields = ("papers", "chunks", "encoded", "reused", "added", "removed", "changed", "model_loaded", "rechunked",
              "lexical_only", "up_to_date")
    assert plan.dry_run and {f: getattr(plan, f) for f in fields} == {f: getattr(first.last_build, f) for f in fields}
    assert plan.encoded > 0 and plan.model_loaded
    first.close()
    # Change one paper, remove a digest: the plan names the same papers and counts as the real rebuild.
    _edit_one_paper(corpus)
    (corpus / "2024-06-28-daily-digest.txt").unlink()
    before = sorted(p.name for p in ix.iterdir()), read_manifest(ix).data_dir
    plan = DigestIndex.dry_run([corpus], index_dir=ix)
    assert (sorted(p.name for p in ix.iterdir()), read_manifest(ix).data_dir) == before
    res = CliRunner().invoke(app, ["build", str(corpus), "--index", str(ix), "--dry-run", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["encoded"] == plan.encoded
    real = DigestIndex.build([corpus], index_dir=ix)
    assert {f: getattr(plan, f) for f in fields} == {f: getattr(real.last_build, f) for f in fields}
    assert plan.removed and plan.changed and plan.model_loaded and 0 < plan.encoded < plan.chunks
    real.close()
    assert DigestIndex.dry_run([corpus], index_dir=ix).up_to_date


def test_killed_build_resumes_and_matches_an_uninterrupted_one(tmp_path: Path, corpus: Path, tiny_model: Path) -> None:
    """SIGKILL once encoding passes 80%: the rerun encodes <= 25% and yields the same ids, vectors and answers."""
    import signal
    import subprocess
    import sys

    group = 8  # small groups, so that the seed corpus (133 chunks) spans many cache writes
    whole = tmp_path / "whole"
    _subprocess_build(corpus, whole, tiny_model, group)
    killed = tmp_path / "killed"
    env = {**__import__("os").environ, "HF_HUB_OFFLINE": "1", "DIGEST_RAG_TEST_PAUSE_AT": "encoding@0.8"}
    proc = subprocess.Popen([sys.executable, "-c", _SUBPROCESS_BUILD, str(corpus), str(killed), str(tiny_model),
                             str(group)], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            if "paused at encoding@0.8" in line:
                break
        else:
            pytest.fail(f"the build ended (rc={proc.wait()}) without pausing")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()  # type: ignore[union-attr]
    assert not (killed / MANIFEST).exists(), "killed before the commit: no index yet"
    resumed = _subprocess_build(corpus, killed, tiny_model, group)["report"]
    assert resumed["reused"] > 0 and resumed["encoded"] <= 0.25 * resumed["chunks"], resumed
    assert _vectors(killed) == _vectors(whole)
    assert _cache_answers(killed) == _cache_answers(whole)


def test_damaged_or_deleted_cache_only_costs_time(tmp_path: Path, corpus: Path, tiny_model: Path) -> None:
    import sqlite3

    from digest_rag.storage.layout import CACHE_DIR

    ix, ref = tmp_path / "ix", tmp_path / "ref"
    DigestIndex.build([corpus], index_dir=ref, model=str(tiny_model)).close()
    first = DigestIndex.build([corpus], index_dir=ix, model=str(tiny_model))
    n = first.last_build.encoded
    first.close()
    # Damage one cached vector, and leave only the cache behind (as a first build killed before its commit).
    (db,) = (ix / CACHE_DIR).glob("m-*.sqlite")
    con = sqlite3.connect(db)
    h, vec = con.execute("SELECT hash, vector FROM vectors LIMIT 1").fetchone()
    con.execute("UPDATE vectors SET vector = ? WHERE hash = ?", (bytes(reversed(vec)), h))
    con.commit()
    con.close()
    for p in ix.iterdir():
        if p.name != CACHE_DIR:
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    again = DigestIndex.build([corpus], index_dir=ix, model=str(tiny_model))
    # The damaged vector was detected, dropped and encoded again; never served.
    assert again.last_build.encoded == 1 and again.last_build.reused == again.last_build.chunks - 1
    again.close()
    assert _vectors(ix) == _vectors(ref) and _cache_answers(ix) == _cache_answers(ref)
    # The whole cache deleted, the previous generation still there: its vectors refill the cache.
    shutil.rmtree(ix / CACHE_DIR)
    refill = DigestIndex.build([corpus], index_dir=ix, force=True)
    assert refill.last_build.encoded == 0
    refill.close()
    assert len(list((ix / CACHE_DIR).glob("m-*.sqlite"))) == 1
    # Cache and index both gone: everything is encoded again, with the same result.
    shutil.rmtree(ix)
    cold = DigestIndex.build([corpus], index_dir=ix, model=str(tiny_model))
    assert cold.last_build.encoded == n
    cold.close()
    assert _vectors(ix) == _vectors(ref) and _cache_answers(ix) == _cache_answers(ref)


def test_passages_are_encoded_most_tokens_first_in_a_fixed_order(tiny_encoder: Encoder) -> None:
    from digest_rag.build.embedding import passage_order

    todo = [("h3", "짧다"), ("h1", "a long English passage about attention and transformers"), ("h2", "짧다"),
            ("h0", "긴 컨텍스트를 악용하는 탈옥 공격 " * 3)]
    order = passage_order(todo, tiny_encoder.count_tokens)
    counts = [tiny_encoder.count_tokens(p) for _h, p in order]
    assert counts == sorted(counts, reverse=True)
    assert sorted(order) == sorted(todo)
    # equal counts: by hash, so a resumed build cuts the same batches
    assert [h for h, p in order if p == "짧다"] == ["h2", "h3"]
    assert passage_order(list(reversed(todo)), tiny_encoder.count_tokens) == order
    # a model that pads nothing (static) is not counted: the order is the hashes'
    assert tiny_encoder.pads_batches
    assert passage_order(todo, None) == sorted(todo)


def test_bad_build_options_fail_before_the_writer_lock(tmp_path: Path, seed_corpus: Path) -> None:
    """Options are checked when given (BuildOverrides), not after waiting for another writer's lock."""
    from digest_rag.errors import UsageError
    from digest_rag.storage.locking import WriterLock

    index_dir = tmp_path / "ix"
    index_dir.mkdir()
    with WriterLock(index_dir):
        for bad in ({"batch_size": 0}, {"backend": "tpu"}, {"colour": "blue"}):
            with pytest.raises(UsageError):
                DigestIndex.build([seed_corpus], index_dir=index_dir, lexical_only=True, wait=30.0, **bad)
            with pytest.raises(UsageError):
                DigestIndex.dry_run([seed_corpus], index_dir=index_dir, lexical_only=True, wait=30.0, **bad)
