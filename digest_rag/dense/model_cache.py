"""`digest-rag model fetch` / `model list`: download an embedding model into the Hugging Face cache, and say
which models are there (and in local directories) for `build --model` to use offline.

`fetch_model` downloads what digest_rag loads from a hub model (the sentence-transformers configuration,
the tokenizer and the safetensors weights; not the ONNX, OpenVINO, TensorFlow or Flax copies a repository
may also hold) with huggingface_hub, into its cache (``$HF_HUB_CACHE``, ``~/.cache/huggingface/hub``) or
into ``to`` as a plain directory that ``--model DIR`` takes on a machine without a network. Whatever
goes wrong (no network, ``HF_HUB_OFFLINE=1``, an unknown or gated repository) is a one-line
`ModelUnavailableError`. `cached_models` lists the models in that cache and in local directories.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from digest_rag.dense.encoder import _hub_offline, _looks_like_path, resolve_model_name
from digest_rag.errors import ModelUnavailableError, UsageError

__all__ = ["CachedModel", "cached_models", "fetch_model"]

# Files a digest_rag encoder never reads: other runtimes' copies of the weights.
_IGNORE = ["onnx/*", "openvino/*", "*.onnx", "*.h5", "*.msgpack", "*.ot", "tf_model*", "flax_model*", "rust_model*",
           "coreml/*", "*.gguf"]


class CachedModel(BaseModel):
    """A model found on this machine: its name, where its files are and whether a build can load it."""

    model_config = ConfigDict(frozen=True)

    name: str
    path: str
    where: str  # "hf-cache" or "local"
    revision: str | None = None
    size_bytes: int = 0
    dimension: int | None = None
    sentence_transformers: bool = False  # has modules.json: loads with its own pooling, as digest_rag expects


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _dir_size(path: Path) -> int:
    total = 0
    for f in path.rglob("*"):
        try:
            if f.is_file():
                total += f.stat().st_size  # a cache snapshot's files are links: the size of their blobs
        except OSError:
            continue
    return total


def _describe(name: str, path: Path, where: str, revision: str | None = None) -> CachedModel:
    from digest_rag.dense.model_files import inspect_model

    try:
        facts = inspect_model(str(path))
    except Exception:  # noqa: BLE001 - an unreadable directory is listed without a dimension, not an error
        facts = None
    return CachedModel(name=name, path=str(path), where=where, revision=revision, size_bytes=_dir_size(path),
                       dimension=facts.dimension if facts else None,
                       sentence_transformers=(path / "modules.json").is_file())


def fetch_model(name: str | None = None, *, to: str | os.PathLike[str] | None = None,
                revision: str | None = None) -> CachedModel:
    """Download hub model ``name`` (an alias: small, base, large; default: $DIGEST_RAG_MODEL or E5 small).

    Into the Hugging Face cache, where `build --model NAME` then finds it offline; with ``to``, into that
    directory as well (``build --model DIR``). A model already cached is not downloaded again. Raises
    ModelUnavailableError in one line when it cannot be had (offline, unknown, gated), UsageError for a
    local path.
    """
    repo = resolve_model_name(name)
    if Path(repo).exists() or _looks_like_path(repo):
        raise UsageError(f"{repo!r} is a local path, not a hub model name; there is nothing to fetch "
                         "(use it as --model PATH)")
    try:
        from huggingface_hub import snapshot_download
    except ImportError as exc:  # pragma: no cover - a dependency of the package
        raise ModelUnavailableError(f"cannot fetch {repo}: huggingface_hub is not installed ({exc})") from None
    offline = _hub_offline()
    kwargs: dict[str, object] = {"repo_id": repo, "revision": revision, "ignore_patterns": _IGNORE}
    try:
        weights = None if offline else _weights_to_skip(repo, revision)
        if weights:
            kwargs["ignore_patterns"] = [*_IGNORE, *weights]
        path = Path(snapshot_download(**kwargs, local_files_only=offline))  # type: ignore[arg-type]
    except Exception as exc:  # noqa: BLE001 - every hub failure is "the model cannot be had", in one line
        why = ("HF_HUB_OFFLINE is set and it is not in the Hugging Face cache" if offline
               else f"{type(exc).__name__}: {_one_line(exc)}")
        raise ModelUnavailableError(
            f"cannot fetch model {repo}: {why}; run 'digest-rag model fetch {name or repo}' on a machine with a "
            "network, then copy the model's directory (model fetch --to DIR) and build with --model DIR"
        ) from None
    from digest_rag.dense.encoder import _revision_of

    revision = _revision_of(path)
    if to is None:
        return _describe(repo, path, "hf-cache", revision)
    dest = Path(to)
    if dest.exists() and any(dest.iterdir()) and not _is_model_dir(dest):
        raise UsageError(f"{dest} exists and is not a model directory; name a new or empty directory")
    # A plain copy of the cache snapshot (its links followed): a directory to carry to an offline machine.
    shutil.copytree(path, dest, dirs_exist_ok=True)
    return _describe(repo, dest, "local", revision)


def _weights_to_skip(repo: str, revision: str | None) -> list[str]:
    """The pickle weights when the repository also has safetensors (digest_rag reads safetensors first)."""
    from huggingface_hub import list_repo_files

    files = set(list_repo_files(repo, revision=revision))
    return ["pytorch_model.bin", "*.pt", "*.pth"] if "model.safetensors" in files else []


def _hf_cache_dir() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def cached_models(dirs: Iterable[str | os.PathLike[str]] = (), *, hf_cache: str | os.PathLike[str] | None = None,
                  ) -> list[CachedModel]:
    """Models on this machine: each model in the Hugging Face cache (``hf_cache``, default its usual place),
    then each model directory in ``dirs`` (a directory holding config.json or modules.json, or its
    subdirectories that do). Sorted by where, then name."""
    found: list[CachedModel] = []
    cache = Path(hf_cache) if hf_cache is not None else _hf_cache_dir()
    if cache.is_dir():
        for repo_dir in sorted(cache.glob("models--*")):
            snapshots = repo_dir / "snapshots"
            if not snapshots.is_dir():
                continue
            revision = _current_revision(repo_dir, snapshots)
            if revision is None:
                continue
            name = repo_dir.name.removeprefix("models--").replace("--", "/")
            found.append(_describe(name, snapshots / revision, "hf-cache", revision))
    for d in dirs:
        root = Path(d)
        if not root.is_dir():
            continue
        candidates = [root] if _is_model_dir(root) else sorted(p for p in root.iterdir() if _is_model_dir(p))
        found += [_describe(str(p), p, "local") for p in candidates]
    return found


def _current_revision(repo_dir: Path, snapshots: Path) -> str | None:
    """The snapshot ``refs/main`` points to, else the newest snapshot."""
    ref = repo_dir / "refs" / "main"
    try:
        revision = ref.read_text(encoding="utf-8").strip()
        if (snapshots / revision).is_dir():
            return revision
    except OSError:
        pass
    dirs = [p for p in snapshots.iterdir() if p.is_dir()]
    return max(dirs, key=lambda p: p.stat().st_mtime).name if dirs else None


def _is_model_dir(path: Path) -> bool:
    return path.is_dir() and ((path / "config.json").is_file() or (path / "modules.json").is_file())
