"""What a build tells its caller: the `BuildReport` and the `BuildOutcome` the facade opens."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, Field

from digest_rag.dense.encoder import Encoder
from digest_rag.storage.generation import (
    OpenGeneration,
)


class BuildReport(BaseModel):
    """What a build or update did."""

    papers: int = 0
    chunks: int = 0
    encoded: int = 0
    reused: int = 0
    added: list[str] = Field(default_factory=list)
    removed: list[str] = Field(default_factory=list)
    changed: list[str] = Field(default_factory=list)
    skipped: list[dict[str, str]] = Field(default_factory=list)
    merged: list[str] = Field(default_factory=list)
    full_rebuild_reason: str | None = None
    repaired: str | None = Field(
        default=None, description="the index being replaced was damaged (why): this build rebuilt it from scratch"
    )
    lexical_only: bool = False
    analysed: int = Field(default=0, description="texts analysed with Kiwi for BM25; the rest came from the token cache")
    up_to_date: bool = Field(
        default=False, description="nothing to do: inputs and options as at the last build, nothing was written"
    )
    dry_run: bool = Field(default=False, description="a plan (build --dry-run): nothing was encoded or written")
    model_loaded: bool = Field(
        default=False, description="the encoder was loaded (in a dry run: would be), because some passage was not cached"
    )
    rechunked: int = Field(default=0, description="papers cut into chunks; the others' chunks came from the previous index")
    timings: dict[str, float] = Field(
        default_factory=dict, description="seconds per stage: parse, chunk, lookup, load (the model), encode, write"
    )
    seconds: float = 0.0


@dataclass
class BuildOutcome:
    """A finished build: its report, the encoder it loaded (reused for queries) and, when the index was
    found up to date, the generation already opened and verified."""

    report: BuildReport
    encoder: Encoder | None
    opened: OpenGeneration | None = None
