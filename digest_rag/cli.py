"""The `digest-rag` command: parses arguments, calls the library, prints.

Exit codes: 0 ok, 1 usage error, 2 data or index problem, 3 model unavailable.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer

from . import __version__
from .errors import DigestRagError
from .index import DEFAULT_INDEX_DIR, DigestIndex
from .models import SearchHit

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Find ML papers across Korean and English digests.\n\nExit codes: 0 ok, 1 usage, 2 data or index problem, 3 model unavailable.",
    rich_markup_mode=None,
)

IndexOpt = typer.Option(DEFAULT_INDEX_DIR, "--index", "-i", help="Index directory.")


def _err(msg: str) -> None:
    typer.echo(msg, err=True)


@contextmanager
def _handled() -> Iterator[None]:
    """Typed errors become one line on stderr and their exit code; warnings one line each."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        except DigestRagError as exc:
            _flush_warnings(caught)
            _err(f"error: {' '.join(str(exc).split())}")
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            _err("interrupted; the index was left as it was before this command")
            raise typer.Exit(130) from None
        _flush_warnings(caught)


def _flush_warnings(caught: list[warnings.WarningMessage]) -> None:
    seen: set[str] = set()
    for w in caught:
        if issubclass(w.category, (DeprecationWarning, FutureWarning, PendingDeprecationWarning)):
            continue
        text = " ".join(str(w.message).split())
        if text not in seen:
            seen.add(text)
            _err(f"warning: {text}")


def _progress(quiet: bool) -> Callable[[str, int, int], None] | None:
    if quiet or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    bars: dict[str, Any] = {}

    def update(stage: str, done: int, total: int) -> None:
        bar = bars.get(stage)
        if bar is None:
            bar = bars[stage] = tqdm(total=total, desc=stage, unit="item", file=sys.stderr, leave=True)
        bar.total = total
        bar.n = done
        bar.refresh()
        if done >= total:
            bar.close()

    return update


def _quiet_libraries() -> None:
    # Library chatter (weights loading bars, HF warnings) would break one-line errors and clean JSON.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    for name in ("sentence_transformers", "transformers", "huggingface_hub", "faiss"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"digest-rag {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """Find ML papers across Korean and English digests."""
    _quiet_libraries()


def _build_summary(index: DigestIndex, as_json: bool) -> None:
    rep = index.last_build
    assert rep is not None
    if as_json:
        typer.echo(json.dumps({"index": str(index.index_dir), **rep.model_dump()}, ensure_ascii=False))
        return
    kind = "lexical-only" if rep.lexical_only else f"{index.manifest.model_name} ({index.manifest.index_type})"
    typer.echo(
        f"indexed {rep.papers} papers, {rep.chunks} chunks into {index.index_dir} [{kind}] in {rep.seconds:.1f}s; "
        f"encoded {rep.encoded}, reused {rep.reused}; +{len(rep.added)} -{len(rep.removed)} ~{len(rep.changed)} papers"
    )
    if rep.full_rebuild_reason:
        typer.echo(f"full re-encode: {rep.full_rebuild_reason}")
    for m in rep.merged:
        typer.echo(f"merged: {m}")
    if rep.skipped:
        typer.echo(f"skipped {len(rep.skipped)} file(s):")
        for s in rep.skipped:
            typer.echo(f"  {s['source']}: {s['reason']}")


@app.command()
def build(
    paths: list[Path] = typer.Argument(None, help="Digest files or directories (default: corpus/)."),
    index: Path = IndexOpt,
    model: str = typer.Option(None, "--model", "-m", help="Model name or local path (default: $DIGEST_RAG_MODEL, else intfloat/multilingual-e5-small)."),
    lexical_only: bool = typer.Option(False, "--lexical-only", help="No embeddings: BM25 only, no model needed."),
    factory: str = typer.Option(None, "--factory", help="FAISS factory string, e.g. 'IDMap2,HNSW32,Flat' (default: by size)."),
    device: str = typer.Option(None, "--device", help="cpu, cuda or mps (default: auto)."),
    batch_size: int = typer.Option(32, "--batch-size", min=1, help="Encoding batch size."),
    backend: str = typer.Option("torch", "--backend", help="torch, onnx or onnx-int8."),
    strict: bool = typer.Option(False, "--strict", help="Fail if any file is skipped."),
    wait: float = typer.Option(0.0, "--wait", min=0.0, help="Seconds to wait for another writer's lock."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
    as_json: bool = typer.Option(False, "--json", help="Print the build report as JSON."),
) -> None:
    """Build (or incrementally rebuild) an index from digest files.

    Example: digest-rag build corpus/ --index indexes/default
    """
    with _handled():
        idx = DigestIndex.build(
            [str(p) for p in (paths or [Path("corpus")])], index_dir=index, model=model, lexical_only=lexical_only,
            factory=factory, device=device, batch_size=batch_size, backend=backend, strict=strict, wait=wait,
            progress=_progress(quiet or as_json),
        )
        _build_summary(idx, as_json)


@app.command()
def update(
    paths: list[Path] = typer.Argument(..., help="New or changed digest files."),
    index: Path = IndexOpt,
    model: str = typer.Option(None, "--model", "-m", help="Model name or local path (default: the index's)."),
    wait: float = typer.Option(0.0, "--wait", min=0.0, help="Seconds to wait for another writer's lock."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
    as_json: bool = typer.Option(False, "--json", help="Print the update report as JSON."),
) -> None:
    """Add or replace the papers of some files, keeping the rest of the index.

    Example: digest-rag update new-digest.txt --index indexes/default
    """
    with _handled():
        idx = DigestIndex.update([str(p) for p in paths], index_dir=index, model=model, wait=wait,
                                 progress=_progress(quiet or as_json))
        _build_summary(idx, as_json)


def _print_hits(hits: list[SearchHit]) -> None:
    if not hits:
        typer.echo("no matching papers")
        return
    for rank, h in enumerate(hits, 1):
        p = h.paper
        typer.echo(f"{rank:>2}. {p.title}")
        if p.title_ko:
            typer.echo(f"    {p.title_ko}")
        meta = [p.date.isoformat() if p.date else "no date", f"score {h.score:.4f}", "+".join(h.modes)]
        if p.tags:
            meta.append(" ".join("#" + t for t in p.tags))
        typer.echo("    " + " | ".join(meta))
        typer.echo(f"    [{h.section}/{h.language}] {h.snippet}")


@app.command()
def search(
    query: str = typer.Argument(..., help="The question, in Korean or English."),
    index: Path = IndexOpt,
    k: int = typer.Option(10, "-k", "--top-k", min=1, help="Number of papers."),
    mode: str = typer.Option("hybrid", "--mode", help="hybrid, dense or lexical."),
    model: str = typer.Option(None, "--model", "-m", help="Query model (must match the index's)."),
    date_from: str = typer.Option(None, "--from", help="Only papers dated on or after (YYYY-MM-DD)."),
    date_to: str = typer.Option(None, "--to", help="Only papers dated on or before (YYYY-MM-DD)."),
    tag: list[str] = typer.Option(None, "--tag", help="Only papers with this tag (repeatable)."),
    language: str = typer.Option(None, "--lang", help="Only matches in ko, en or mixed text."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable hits, one JSON array on stdout."),
) -> None:
    """Search the index.

    Example: digest-rag search "긴 컨텍스트를 악용하는 탈옥 공격" --index indexes/default -k 5
    """
    with _handled():
        idx = DigestIndex.load(index, model=model)
        hits = idx.search(query, k=k, mode=mode, date_from=date_from, date_to=date_to, tags=tag or None, language=language)
        if as_json:
            typer.echo(json.dumps([h.to_record() for h in hits], ensure_ascii=False, indent=2))
        else:
            _print_hits(hits)


@app.command()
def info(
    index: Path = IndexOpt,
    as_json: bool = typer.Option(False, "--json", help="Everything, as JSON (papers with sections and languages)."),
) -> None:
    """Describe an index: papers, chunks, languages, sections, model, size.

    Example: digest-rag info --index indexes/default --json
    """
    with _handled():
        idx = DigestIndex.load(index)
        data = idx.info()
        if as_json:
            typer.echo(json.dumps(data, ensure_ascii=False, indent=2))
            return
        typer.echo(f"index       {data['index_dir']} (format {data['format_version']}, digest_rag {data['library_version']})")
        typer.echo(f"built       {data['created_at']}")
        typer.echo(f"model       {data['model'] or 'none (lexical-only)'}  dim {data['dimension']}  index {data['index_type']}")
        typer.echo(f"papers      {data['papers']}  chunks {data['chunks']}  size {data['size_bytes'] / 1e6:.1f} MB")
        typer.echo(f"dates       {data['date_from']} .. {data['date_to']}")
        typer.echo("languages   " + ", ".join(f"{k} {v}" for k, v in data["chunks_by_language"].items()))
        typer.echo("sections    " + ", ".join(f"{k} {v}" for k, v in data["chunks_by_section"].items()))
        typer.echo("top tags    " + ", ".join(f"#{k} {v}" for k, v in list(data["top_tags"].items())[:10]))
        typer.echo("sources     " + ", ".join(f"{k} ({v})" for k, v in data["sources"].items()))


@app.command("eval")
def eval_cmd(
    queries: Path = typer.Argument(..., help="JSON Lines: {\"query\": ..., \"relevant\": [paper ids or English titles]}."),
    index: Path = IndexOpt,
    mode: list[str] = typer.Option(None, "--mode", help="Modes to evaluate (repeatable; default: all three)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Recall@1/5/10, MRR@10 and nDCG@10 per mode, beside a naive BM25 baseline.

    Example: digest-rag eval eval/dev_queries.jsonl --index indexes/default
    """
    from .eval import evaluate_index, format_table

    with _handled():
        idx = DigestIndex.load(index)
        report = evaluate_index(idx, queries, modes=mode or None)
        if as_json:
            typer.echo(report.model_dump_json(indent=2))
        else:
            typer.echo(format_table(report.rows))


def run() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    run()
