"""What every format parser returns, and the record of what was skipped."""

from __future__ import annotations

from pydantic import BaseModel, Field

from ..models import Paper


class Skip(BaseModel):
    """A file (or a part of one) that yielded no paper, and why."""

    source: str
    reason: str


class ParseResult(BaseModel):
    """Papers read from one or more files, plus the skips and merges along the way."""

    papers: list[Paper] = Field(default_factory=list)
    skipped: list[Skip] = Field(default_factory=list)
    merged: list[str] = Field(default_factory=list, description="notes on duplicate papers merged by id")
    files: dict[str, str] = Field(default_factory=dict, description="source path -> detected format")
