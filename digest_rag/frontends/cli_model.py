"""`digest-rag model fetch` and `digest-rag model list`: download an embedding model into the Hugging Face cache, list the models on this machine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperGroup

from digest_rag.frontends.cli_output import (
    human_size,
)
from digest_rag.frontends.cli_errors import handled


model_app = typer.Typer(cls=TyperGroup, no_args_is_help=True, rich_markup_mode=None,
                        help="Download embedding models and list those on this machine.")


@model_app.command("fetch")
def model_fetch(
    name: str = typer.Argument(None, help="Hub model or alias: small, base, large (default: $DIGEST_RAG_MODEL, else small)."),
    to: Path = typer.Option(None, "--to", help="Also copy it into this directory (for --model DIR on an offline machine)."),
    revision: str = typer.Option(None, "--revision", help="A branch, tag or commit of the hub repository."),
    as_json: bool = typer.Option(False, "--json", help="Print what was fetched as JSON."),
) -> None:
    """Download a model into the Hugging Face cache (needs a network; exit 3 in one line without one).

    Example: digest-rag model fetch small && digest-rag build corpus/ --model small
    """
    from digest_rag.dense.model_cache import fetch_model

    with handled():
        got = fetch_model(name, to=to, revision=revision)
    if as_json:
        typer.echo(got.model_dump_json())
        return
    typer.echo(f"fetched {got.name} ({_model_line(got)}) into {got.path}")


@model_app.command("list")
def model_list(
    dirs: list[Path] = typer.Argument(None, help="Local directories to look in as well (default: models/ when it exists)."),
    hf_cache: Path = typer.Option(None, "--hf-cache", help="Hugging Face cache directory (default: $HF_HUB_CACHE, ~/.cache/huggingface/hub)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON array."),
) -> None:
    """List the models in the Hugging Face cache and in local directories, with size and dimension.

    Example: digest-rag model list models/
    """
    from digest_rag.dense.model_cache import cached_models

    with handled():
        found = cached_models(dirs or ([Path("models")] if Path("models").is_dir() else []), hf_cache=hf_cache)
    if as_json:
        typer.echo(json.dumps([m.model_dump() for m in found], ensure_ascii=False, indent=2))
        return
    if not found:
        typer.echo("no models found (digest-rag model fetch small downloads the default one)")
        return
    for m in found:
        typer.echo(f"{m.name}  [{m.where}] {_model_line(m)}  {m.path}")


def _model_line(m: Any) -> str:
    dim = f"dimension {m.dimension}" if m.dimension else "dimension ?"
    kind = "sentence-transformers" if m.sentence_transformers else "plain transformers"
    return f"{dim}, {kind}, {human_size(m.size_bytes)}"
