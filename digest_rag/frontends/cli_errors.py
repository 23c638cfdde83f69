"""How every CLI command fails: a typed error becomes one line on stderr and its exit code, a warning one line, libraries' chatter silenced, and a path that does not exist refused before any work."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import typer

from digest_rag.errors import CorpusError, DigestRagError, IndexWriteError
from digest_rag.frontends.cli_output import (
    err,
)


def require_paths(paths: Sequence[Path]) -> None:
    """A path named on the command line that does not exist is a typo, not a file to skip: exit 2, one line."""
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise CorpusError(f"no such file or directory: {', '.join(missing)}")


@contextmanager
def handled() -> Iterator[None]:
    """Typed errors become one line on stderr and their exit code; warnings one line each."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        logged = WarningLines.collect()
        try:
            yield
        except DigestRagError as exc:
            flush_warnings(caught)
            # A cache that could not be written on a full disk is no news after the error saying so: one line.
            WarningLines.finish(logged, show=not isinstance(exc, IndexWriteError))
            err(f"error: {' '.join(str(exc).split())}")
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            WarningLines.finish(logged, show=True)
            err("interrupted; the index was left as it was before this command")
            raise typer.Exit(130) from None
        flush_warnings(caught)
        WarningLines.finish(logged, show=True)


def flush_warnings(caught: list[warnings.WarningMessage]) -> None:
    seen: set[str] = set()
    for w in caught:
        if issubclass(w.category, (DeprecationWarning, FutureWarning, PendingDeprecationWarning)):
            continue
        text = " ".join(str(w.message).split())
        if text not in seen:
            seen.add(text)
            err(f"warning: {text}")


def quiet_libraries() -> None:
    # Library chatter (weights loading bars, HF warnings) would break one-line errors and clean JSON.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    for name in ("sentence_transformers", "transformers", "huggingface_hub", "faiss"):
        logging.getLogger(name).setLevel(logging.ERROR)
    # digest_rag's own log records (a cache started afresh) are warning lines like the others, through _echo:
    # they name files, whose names may hold control characters.
    ours = logging.getLogger("digest_rag")
    if not any(isinstance(h, WarningLines) for h in ours.handlers):
        ours.addHandler(WarningLines(logging.WARNING))
        ours.propagate = False


class WarningLines(logging.Handler):
    """Log records of digest_rag as one ``warning: ...`` line each on stderr; inside a command (`handled`)
    they are kept and printed with its warnings when it ends."""

    _held: list[list[str]] = []

    @classmethod
    def collect(cls) -> list[str]:
        lines: list[str] = []
        cls._held.append(lines)
        return lines

    @classmethod
    def finish(cls, lines: list[str], *, show: bool) -> None:
        if lines in cls._held:
            cls._held.remove(lines)
        for line in dict.fromkeys(lines) if show else ():
            err(line)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = f"warning: {' '.join(record.getMessage().split())}"
            if self._held:
                self._held[-1].append(line)
            else:
                err(line)
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)
