"""Where digest_rag keeps per-user caches: ONNX exports of read-only models, compiled analysis state.

Everything under it is derived data, keyed by what it was made from, and safe to delete.
"""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "DIGEST_RAG_CACHE"


def cache_root() -> Path:
    """$DIGEST_RAG_CACHE, else $XDG_CACHE_HOME/digest_rag, else ~/.cache/digest_rag."""
    env = os.environ.get(CACHE_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "digest_rag"
