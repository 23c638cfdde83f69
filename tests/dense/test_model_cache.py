"""`model fetch` / `model list` in the library: the hub call, its offline failure, the cache and local listings."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from digest_rag.dense import model_cache
from digest_rag.dense.model_cache import cached_models, fetch_model
from digest_rag.errors import ModelUnavailableError, UsageError

REVISION = "0123456789abcdef0123456789abcdef01234567"


def _fake_hub_cache(cache: Path, tiny_model: Path, repo: str) -> Path:
    """The layout huggingface_hub writes: models--org--name/{refs/main, snapshots/<rev>/...}."""
    repo_dir = cache / ("models--" + repo.replace("/", "--"))
    shutil.copytree(tiny_model, repo_dir / "snapshots" / REVISION)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(REVISION, encoding="utf-8")
    return repo_dir / "snapshots" / REVISION


def test_cached_models_lists_the_hub_cache_and_local_dirs(tmp_path: Path, tiny_model: Path) -> None:
    snapshot = _fake_hub_cache(tmp_path / "hub", tiny_model, "intfloat/multilingual-e5-small")
    (tmp_path / "hub" / "models--half--done" / "blobs").mkdir(parents=True)  # no snapshot yet: not a model
    local = tmp_path / "models"
    shutil.copytree(tiny_model, local / "e5-tiny")
    (local / "notes").mkdir()  # not a model directory
    found = cached_models([local, tmp_path / "missing"], hf_cache=tmp_path / "hub")
    assert [(m.name, m.where) for m in found] == [("intfloat/multilingual-e5-small", "hf-cache"),
                                                  (str(local / "e5-tiny"), "local")]
    hub, own = found
    assert hub.path == str(snapshot) and hub.revision == REVISION and hub.sentence_transformers
    assert hub.dimension == own.dimension and hub.dimension and hub.size_bytes > 0
    assert cached_models([local / "e5-tiny"], hf_cache=tmp_path / "nothing") == [own]  # a model dir itself


def test_fetch_downloads_through_huggingface_hub(tmp_path: Path, tiny_model: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    snapshot = tmp_path / "hub" / "models--intfloat--multilingual-e5-base" / "snapshots" / REVISION
    calls: list[dict[str, object]] = []

    def snapshot_download(**kwargs: object) -> str:
        calls.append(kwargs)
        if not snapshot.exists():
            shutil.copytree(tiny_model, snapshot)
        return str(snapshot)

    monkeypatch.setattr("huggingface_hub.snapshot_download", snapshot_download)
    monkeypatch.setattr(model_cache, "_hub_offline", lambda: False)
    monkeypatch.setattr(model_cache, "_weights_to_skip", lambda repo, revision: ["pytorch_model.bin"])
    got = fetch_model("base")  # an alias
    assert got.name == "intfloat/multilingual-e5-base" and got.path == str(snapshot) and got.revision == REVISION
    assert calls[0]["repo_id"] == "intfloat/multilingual-e5-base" and calls[0]["local_files_only"] is False
    assert {"onnx/*", "pytorch_model.bin"} <= set(calls[0]["ignore_patterns"])  # type: ignore[arg-type]
    copy = fetch_model("base", to=tmp_path / "models" / "e5-base")
    assert copy.where == "local" and (tmp_path / "models" / "e5-base" / "modules.json").is_file()
    assert not (tmp_path / "models" / "e5-base").is_symlink() and copy.dimension == got.dimension
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(UsageError, match="not a model directory"):
        fetch_model("base", to=tmp_path / "busy")


def test_fetch_failures_are_one_line_model_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(**_kwargs: object) -> str:
        raise OSError("We couldn't connect to 'https://huggingface.co' to load the files,\nand couldn't find them")

    monkeypatch.setattr("huggingface_hub.snapshot_download", refuse)
    monkeypatch.setattr(model_cache, "_hub_offline", lambda: False)
    monkeypatch.setattr(model_cache, "_weights_to_skip", lambda repo, revision: [])
    with pytest.raises(ModelUnavailableError) as err:
        fetch_model("small")
    message = str(err.value)
    assert "\n" not in message and "intfloat/multilingual-e5-small" in message and "couldn't connect" in message
    assert err.value.exit_code == 3
