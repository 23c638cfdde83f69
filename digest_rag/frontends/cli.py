"""The `digest-rag` command: parses arguments, calls the library, prints.

Exit codes: 0 ok, 1 usage error, 2 data or index problem, 3 model unavailable.
Results go to stdout; progress bars, warnings and errors go to stderr, so
`--json` output can be piped as it is.
"""

from __future__ import annotations

import json
import shutil
import sys
from enum import Enum
from pathlib import Path
from typing import Any, NoReturn

import typer

from digest_rag.frontends.display import format_hits
from digest_rag.index import DEFAULT_INDEX_DIR, DigestIndex
from digest_rag.models import SEARCH_MODES, Backend, CorpusVariant, Engine, Language, SearchResults
from digest_rag.search.request import MAX_OFFSET, check_dates
from digest_rag.version import __version__
from digest_rag.frontends.cli_output import (
    build_summary,
    echo,
    err,
    format_info,
    plan_summary,
    progress_bars,
    use_color,
)
from digest_rag.frontends.cli_help import SynopsisGroup
from digest_rag.frontends.cli_errors import handled, quiet_libraries, require_paths
from digest_rag.frontends.cli_model import model_app


# Click needs an Enum to list choices in --help; it is made from the library's SEARCH_MODES, not redefined.
Mode = Enum("Mode", {m: m for m in SEARCH_MODES}, type=str)  # type: ignore[misc]


app = typer.Typer(
    cls=SynopsisGroup,
    add_completion=False,
    no_args_is_help=True,
    help=(
        "Find ML papers across Korean and English digests.\n\n"
        "Example: digest-rag build corpus/ && digest-rag search \"스케일링 법칙에 대한 논문을 찾아줘\" -k 5\n\n"
        "Exit codes: 0 ok, 1 usage, 2 data or index problem, 3 model unavailable."
    ),
    rich_markup_mode=None,
)

IndexOpt = typer.Option(DEFAULT_INDEX_DIR, "--index", "-i", help="Index directory.")


def _version(value: bool) -> None:
    if value:
        echo(f"digest-rag {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """Find ML papers across Korean and English digests."""
    quiet_libraries()


# The options `search` and `similar` share (one definition, one help text).
TopKOpt = typer.Option(10, "-k", "--top-k", min=1, help="Number of papers.")
ModeOpt = typer.Option(Mode.hybrid, "--mode", help="hybrid (E5 + BM25), dense (E5 only) or lexical (BM25 only).")
FromOpt = typer.Option(None, "--from", help="Only papers dated on or after: YYYY-MM-DD, or YYYY-MM / YYYY from its first day.")
ToOpt = typer.Option(None, "--to", help="Only papers dated on or before: YYYY-MM-DD, or YYYY-MM / YYYY to its last day.")
TagOpt = typer.Option(None, "--tag", help="Only papers with this tag (repeatable).")
HitsJsonOpt = typer.Option(False, "--json", help="Machine-readable hits, one JSON array on stdout.")
OffsetOpt = typer.Option(0, "--offset", min=0, max=MAX_OFFSET,
                         help=f"Skip the best N papers: the next page (ranks N+1..N+k; at most {MAX_OFFSET}).")
EngineOpt = typer.Option("local", "--engine", help="Where to parse, chunk and embed: local, or ray (a Ray cluster; needs the 'ray' extra).")
RayAddressOpt = typer.Option(None, "--ray-address", help="Ray cluster to join, e.g. HEAD:6379 (default: start a local Ray instance).")
WorkersOpt = typer.Option(None, "--workers", min=1, help="Ray encoder actors (default: one per node, or per GPU share).")
QuietOpt = typer.Option(False, "--quiet", "-q", help="No progress bars; only the summary line.")
VerboseOpt = typer.Option(False, "--verbose", "-v", help="Also list each duplicate paper merged across files (on stderr).")
GpusOpt = typer.Option(None, "--gpus-per-worker", min=0.0, help="GPUs each Ray encoder actor holds (default 0: CPU).")


@app.command()
def build(
    paths: list[Path] = typer.Argument(None, help="Digest files or directories (default: corpus/)."),
    index: Path = IndexOpt,
    model: str = typer.Option(None, "--model", "-m", help="Model name or local path (default: $DIGEST_RAG_MODEL, else intfloat/multilingual-e5-small)."),
    lexical_only: bool = typer.Option(False, "--lexical-only", help="No embeddings: BM25 only, no model needed."),
    factory: str = typer.Option(None, "--factory", help="FAISS factory string, e.g. 'IDMap2,HNSW32,Flat' (default: the index's, else by size)."),
    device: str = typer.Option(None, "--device", help="cpu, cuda or mps (default: the index's, else auto)."),
    batch_size: int = typer.Option(None, "--batch-size", min=1, help="Encoding batch size (default: the index's, else 32)."),
    backend: Backend = typer.Option(None, "--backend", help="Encoder runtime: torch, onnx or onnx-int8 (default: the index's, else torch; onnx needs the 'onnx' extra)."),
    strict: bool = typer.Option(False, "--strict", help="Fail if any file is skipped."),
    wait: float = typer.Option(0.0, "--wait", min=0.0, help="Seconds to wait for another writer's lock."),
    force: bool = typer.Option(False, "--force", help="Rebuild even when no input file or option changed."),
    engine: Engine = EngineOpt,
    ray_address: str = RayAddressOpt,
    workers: int = WorkersOpt,
    gpus_per_worker: float = GpusOpt,
    dry_run: bool = typer.Option(False, "--dry-run", help="Say what the build would do (papers, chunks to encode, cache hits, model load); write nothing."),
    quiet: bool = QuietOpt,
    verbose: bool = VerboseOpt,
    as_json: bool = typer.Option(False, "--json", help="Print the build report as JSON."),
) -> None:
    """Build (or incrementally rebuild) an index from digest files.

    Example: digest-rag build corpus/ --index indexes/default
    """
    if dry_run:
        with handled():
            require_paths(paths or [Path("corpus")])
            rep = DigestIndex.dry_run(
                [str(p) for p in (paths or [Path("corpus")])], index_dir=index, model=model,
                lexical_only=lexical_only or None, factory=factory, device=device, batch_size=batch_size,
                backend=backend, strict=strict or None, wait=wait, force=force, engine=engine,
                ray_address=ray_address, workers=workers, gpus_per_worker=gpus_per_worker,
            )
        plan_summary(index, rep, as_json)
        return
    with handled(), progress_bars(quiet or as_json) as bars:
        require_paths(paths or [Path("corpus")])
        # An absent flag is None, so the index's saved option applies rather than the flag's default.
        idx = DigestIndex.build(
            [str(p) for p in (paths or [Path("corpus")])], index_dir=index, model=model,
            lexical_only=lexical_only or None, factory=factory, device=device, batch_size=batch_size, backend=backend,
            strict=strict or None, wait=wait, progress=bars, force=force, engine=engine, ray_address=ray_address,
            workers=workers, gpus_per_worker=gpus_per_worker,
        )
    build_summary(idx, as_json, quiet, verbose)
    if idx.last_build is not None and idx.last_build.repaired:
        # As fsck's "errors corrected": the index is sound again, but a damaged (perhaps tampered) one must not
        # pass unnoticed by the script that runs the build.
        err("error: the index was damaged and has been rebuilt from the corpus; it is sound now (exit 2 reports the damage)")
        raise typer.Exit(2)


@app.command()
def update(
    paths: list[Path] = typer.Argument(None, help="New or changed digest files (none with --prune alone)."),
    index: Path = IndexOpt,
    model: str = typer.Option(None, "--model", "-m", help="Model name or local path (default: the index's)."),
    prune: bool = typer.Option(False, "--prune", help="Also drop the papers of source files that no longer exist."),
    wait: float = typer.Option(0.0, "--wait", min=0.0, help="Seconds to wait for another writer's lock."),
    engine: Engine = EngineOpt,
    ray_address: str = RayAddressOpt,
    workers: int = WorkersOpt,
    gpus_per_worker: float = GpusOpt,
    quiet: bool = QuietOpt,
    verbose: bool = VerboseOpt,
    as_json: bool = typer.Option(False, "--json", help="Print the update report as JSON."),
) -> None:
    """Add or replace the papers of some files, keeping the rest of the index.

    Example: digest-rag update new-digest.txt --index indexes/default   (or: digest-rag update --prune)
    """
    if not paths and not prune:
        raise typer.BadParameter("give the files to read again, or --prune to drop papers whose files are gone",
                                 param_hint="PATHS")
    with handled(), progress_bars(quiet or as_json) as bars:
        require_paths(paths or [])
        idx = DigestIndex.update([str(p) for p in paths or ()], index_dir=index, model=model, wait=wait, progress=bars,
                                 prune=prune, engine=engine, ray_address=ray_address, workers=workers,
                                 gpus_per_worker=gpus_per_worker)
    build_summary(idx, as_json, quiet, verbose)


@app.command()
def remove(
    paths: list[Path] = typer.Argument(..., help="Source files (as 'info' lists them) or directories whose papers go."),
    index: Path = IndexOpt,
    prune: bool = typer.Option(False, "--prune", help="Also drop the papers of source files that no longer exist."),
    wait: float = typer.Option(0.0, "--wait", min=0.0, help="Seconds to wait for another writer's lock."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Drop the papers of some source files from the index, keeping every other paper (nothing is re-encoded).

    Example: digest-rag remove corpus/2024-06-28-daily-digest.txt --index indexes/default
    """
    with handled():
        idx = DigestIndex.remove([str(p) for p in paths], index_dir=index, prune=prune, wait=wait)
    rep = idx.last_build
    assert rep is not None
    if as_json:
        typer.echo(json.dumps({"index": str(idx.index_dir), **rep.model_dump()}, ensure_ascii=False))
        return
    typer.echo(f"removed {len(rep.removed)} papers from {idx.index_dir}; {rep.papers} papers, {rep.chunks} chunks "
               f"left ({rep.seconds:.1f}s)")
    for pid in rep.removed:
        typer.echo(f"  - {pid}")


@app.command()
def search(
    query: str = typer.Argument(..., help="The question, in Korean or English."),
    index: Path = IndexOpt,
    k: int = TopKOpt,
    mode: Mode = ModeOpt,
    model: str = typer.Option(None, "--model", "-m", help="Query model (must match the index's)."),
    date_from: str = FromOpt,
    date_to: str = ToOpt,
    tag: list[str] = TagOpt,
    language: Language = typer.Option(None, "--lang", help="Only matches in ko, en or mixed text."),
    author: list[str] = typer.Option(None, "--author", help="Only papers with an author whose name contains this (repeatable)."),
    min_score: float = typer.Option(None, "--min-score", help="Only hits scoring at least this (BM25 in lexical mode, fused ranks in hybrid)."),
    search_param: int = typer.Option(None, "--search-param", min=1,
                                     help="FAISS recall knob: efSearch for HNSW, nprobe for IVF (default: the index's)."),
    offset: int = OffsetOpt,
    color: bool = typer.Option(None, "--color/--no-color", help="Highlight matches with ANSI colour (default: on a terminal)."),
    as_json: bool = HitsJsonOpt,
    fusion_weights: str = typer.Option(
        None, "--fusion-weights",
        help="Hybrid fusion weights, fused by reciprocal rank (k 60), e.g. dense=0.5,lexical=1 (default: the fusion "
             "the index calibrated at build).",
    ),
) -> None:
    """Search the index: a ranked list with titles, date, tags, score and a highlighted snippet.

    Example: digest-rag search "긴 컨텍스트를 악용하는 탈옥 공격" --index indexes/default -k 5
    """
    from digest_rag.search.fusion import parse_fusion_weights

    with handled():
        # Checked before the index loads, and named as the options are spelt here (not date_from).
        check_dates(date_from, date_to, ("--from", "--to"))
        weights = parse_fusion_weights(fusion_weights) if fusion_weights else None
        idx = DigestIndex.load(index, model=model, search_param=search_param)
        hits = idx.search(query, k=k, mode=mode.value, date_from=date_from, date_to=date_to, tags=tag or None,
                          language=language, fusion_weights=weights, author=author or None, min_score=min_score,
                          offset=offset)
        _print_hits(hits, color, as_json)


def _print_hits(hits: SearchResults, color: bool | None, as_json: bool) -> None:
    if as_json:
        echo(json.dumps(hits.to_records(), ensure_ascii=False, indent=2))
        return
    width = min(shutil.get_terminal_size((100, 24)).columns, 120)
    colored = use_color(color)
    # color= tells click not to strip the codes when --color is forced onto a pipe.
    echo(format_hits(hits, color=colored, width=width, start=hits.offset + 1), color=colored)


@app.command()
def similar(
    paper_id: str = typer.Argument(..., help="A paper id, as search --json or show prints it."),
    index: Path = IndexOpt,
    k: int = TopKOpt,
    mode: Mode = ModeOpt,
    date_from: str = FromOpt,
    date_to: str = ToOpt,
    tag: list[str] = TagOpt,
    offset: int = OffsetOpt,
    color: bool = typer.Option(None, "--color/--no-color", help="ANSI colour (default: on a terminal)."),
    as_json: bool = HitsJsonOpt,
) -> None:
    """More like this: the papers nearest to one paper, asked with the paper's own text (itself left out).

    Example: digest-rag similar many-shot-jailbreaking-2024-04-01 -k 3
    """
    with handled():
        idx = DigestIndex.load(index)
        hits = idx.similar(paper_id, k=k, mode=mode.value, date_from=date_from, date_to=date_to, tags=tag or None,
                           offset=offset)
        _print_hits(hits, color, as_json)


@app.command()
def show(
    paper_id: str = typer.Argument(..., help="A paper id, as search --json prints it (exit 2 when unknown)."),
    index: Path = IndexOpt,
    as_json: bool = typer.Option(False, "--json", help="The paper as one JSON object (every section)."),
) -> None:
    """Print one paper whole: titles, date, id, tags, authors, links and every section.

    Example: digest-rag show many-shot-jailbreaking-2024-04-01 --index indexes/default
    """
    from digest_rag.frontends.display import format_paper
    from digest_rag.frontends.service import paper_record

    with handled():
        paper = DigestIndex.load(index).get(paper_id)
    if as_json:
        typer.echo(json.dumps(paper_record(paper), ensure_ascii=False, indent=2))
    else:
        typer.echo(format_paper(paper, width=min(shutil.get_terminal_size((100, 24)).columns, 120)))


@app.command()
def info(
    index: Path = IndexOpt,
    as_json: bool = typer.Option(False, "--json", help="Everything, as JSON (papers with sections and languages)."),
) -> None:
    """Describe an index: papers, chunks, languages, sections, model, size.

    Example: digest-rag info --index indexes/default --json
    """
    with handled():
        idx = DigestIndex.load(index)
        data = idx.info()
        if as_json:
            echo(json.dumps(data, ensure_ascii=False, indent=2))
            return
        echo(format_info(data))


@app.command()
def inspect(
    paths: list[Path] = typer.Argument(..., help="Digest files or directories, as `build` would read them."),
    as_json: bool = typer.Option(False, "--json", help="The whole report as one JSON document."),
) -> None:
    """Show how a corpus is read, without building: formats, sections, missing titles/authors, skips.

    Example: digest-rag inspect corpus/ corpus/2024-06-28-daily-digest.txt --json
    """
    from digest_rag.build.corpus_report import format_report, inspect_corpus

    with handled():
        require_paths(paths)
        report = inspect_corpus([str(p) for p in paths])
        echo(report.model_dump_json(indent=2) if as_json else format_report(report))


@app.command("eval")
def eval_cmd(
    queries: Path = typer.Argument(..., help="JSON Lines: {\"query\": ..., \"relevant\": [paper ids or English titles]}."),
    index: Path = IndexOpt,
    mode: list[Mode] = typer.Option(None, "--mode", help="Modes to evaluate (repeatable; default: all three)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    fusion_weights: list[str] = typer.Option(
        None, "--fusion-weights",
        help="Hybrid fused by reciprocal rank (k 60) with these weights instead of the index's calibrated fusion, "
             "e.g. dense=0.5,lexical=1 or 0.5:1; repeated: a sweep, one extra hybrid row per value.",
    ),
    variant_index: list[Path] = typer.Option(
        None, "--variant-index",
        help="Also evaluate on this index, e.g. one of the english-half variant (export-variant); repeatable.",
    ),
    split: str = typer.Option("all", "--split", help="all, or only the heldout (or tune) part of the queries."),
) -> None:
    """Recall@1/5/10, MRR@10 and nDCG@10 per mode, beside a naive BM25 baseline, with each mode's difference
    from lexical and its paired bootstrap 95% interval; R@1, MRR@10 and the "no strong match" flag rate per
    question kind when the file labels kinds (off-topic questions: flag rate only).

    Example: digest-rag eval eval/dev_queries.jsonl --index indexes/default
    """
    from digest_rag.evaluation.evaluate import evaluate_index, format_intervals
    from digest_rag.search.fusion import parse_fusion_weights

    with handled():
        parsed = [parse_fusion_weights(w) for w in fusion_weights or ()]
        given = parsed[0] if len(parsed) == 1 else None
        sweep = parsed if len(parsed) > 1 else []
        reports = []
        for where in [index, *(variant_index or ())]:
            with DigestIndex.load(where) as idx:
                reports.append(evaluate_index(idx, queries, modes=[m.value for m in mode] if mode else None,
                                              fusion_weights=sweep, split=split, hybrid_weights=given))
        if as_json:
            data = [r.model_dump(mode="json") for r in reports]
            echo(json.dumps(data[0] if len(data) == 1 else data, ensure_ascii=False, indent=2))
            return
        for n, report in enumerate(reports):
            if n:
                echo("")
            if len(reports) > 1:
                echo(f"index {report.index}")
            echo(report.table())
            echo(f"hybrid fusion: {report.fusion}")
            if report.intervals:
                echo(format_intervals(report.intervals))


@app.command("export-variant")
def export_variant_cmd(
    paths: list[Path] = typer.Argument(..., help="Digest files or directories, as for build."),
    output: Path = typer.Option(..., "--output", "-o", help="JSON Lines corpus to write."),
    variant: CorpusVariant = typer.Option("english-half", "--variant", help="english-half: a fixed half keeps only English text; mixed: a fixed half of the papers with an English abstract keeps only that; english: every paper keeps only its English text."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Write an evaluation variant of a corpus as JSON Lines with the same paper ids.

    Example: digest-rag export-variant corpus/ -o /tmp/en-half.jsonl && digest-rag build /tmp/en-half.jsonl
    """
    from digest_rag.evaluation.variants import export_variant

    with handled():
        report = export_variant([str(p) for p in paths], variant, output)
    if as_json:
        echo(report.model_dump_json(indent=2))
    else:
        echo(f"wrote {report.papers} papers ({report.english_only} English-only) to {report.path}")


def _need_extra(module: str, extra: str) -> None:
    """A missing optional extra is a one-line install hint and exit code 1."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        err(f"error: this command needs the '{extra}' extra: pip install \"digest-rag[{extra}]\"")
        raise typer.Exit(1)


@app.command()
def train(
    paths: list[Path] = typer.Argument(None, help="Digest files or directories to learn from (default: corpus/)."),
    out: Path = typer.Option(..., "--out", "-o", help="Model directory to write (a sentence-transformers directory)."),
    static: bool = typer.Option(False, "--static", help="Start from a StaticEmbedding over a tokenizer trained on the corpus (the default; no download)."),
    base: str = typer.Option(None, "--base", help="Fine-tune this sentence-transformers model (name or path), e.g. intfloat/multilingual-e5-small."),
    steps: int = typer.Option(300, "--steps", min=1, help="Training steps."),
    batch_size: int = typer.Option(1024, "--batch-size", min=2, help="Pairs per batch (distinct papers plus term pairs)."),
    seed: int = typer.Option(0, "--seed", help="Random seed: the same seed on the same corpus gives the same model."),
    dim: int = typer.Option(512, "--dim", min=8, help="--static: vector width."),
    learning_rate: float = typer.Option(None, "--lr", help="Learning rate (default: 0.5 static, 2e-5 --base)."),
    exclude_eval: list[Path] = typer.Option(None, "--exclude-eval", help="Leave out the papers of every question in this JSONL (repeatable)."),
    exclude_heldout_eval: list[Path] = typer.Option(None, "--exclude-heldout-eval", help="Leave out the papers of the held-out third of this JSONL's questions (repeatable)."),
    force: bool = typer.Option(False, "--force", help="Replace --out if it exists."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    as_json: bool = typer.Option(False, "--json", help="Print the training report as JSON."),
) -> None:
    """Train an embedding model on your digests' own Korean/English pairs.

    Example: digest-rag train corpus/ --out models/digests && digest-rag build corpus/ --model models/digests
    """
    if static and base:
        err("error: choose one starting point: --static or --base")
        raise typer.Exit(1)
    _need_extra("datasets", "train")
    _need_extra("accelerate", "train")
    from digest_rag.dense.training.trainer import report_json, train_encoder

    excluded = [(p, False) for p in exclude_eval or []] + [(p, True) for p in exclude_heldout_eval or []]
    settings: dict[str, Any] = {"static": base is None, "base": base, "steps": steps, "batch_size": batch_size,
                                "seed": seed, "dim": dim}
    if learning_rate is not None:
        settings["learning_rate"] = learning_rate
    with handled():
        report = train_encoder([str(p) for p in (paths or [Path("corpus")])], out, exclude_eval=excluded,
                               force=force, progress=not (quiet or as_json), **settings)
    if as_json:
        echo(report_json(report))
        return
    counts = ", ".join(f"{k} {v}" for k, v in report.pair_counts.items())
    echo(f"pairs: {counts}; papers: {report.train_papers} trained, {report.heldout_papers} held out, "
               f"{report.excluded_papers} left out")
    if report.heldout_loss_before is not None:
        echo(f"held-out loss: {report.heldout_loss_before} -> {report.heldout_loss_after}")
    for name, check in (("start", report.selfcheck_before), ("trained", report.selfcheck_after)):
        if check is not None:
            echo(f"self-check ({name}): {check.queries} held-out Korean notes vs {check.candidates} English "
                       f"texts: R@1 {check.recall_at_1:.3f}, MRR@10 {check.mrr_at_10:.3f}")
    echo(f"wrote {report.out} in {report.seconds:.0f}s; use it: digest-rag build ... --model {report.out}")


@app.command()
def shell(
    index: Path = IndexOpt,
    color: bool = typer.Option(None, "--color/--no-color", help="Highlight matches with ANSI colour (default: on a terminal)."),
) -> None:
    """Ask questions one after another on an index loaded once (:help inside lists the commands).

    Example: digest-rag shell --index indexes/default   (then: 탈옥 공격 / :mode lexical / :k 5 / :open 1 / :quit)
    """
    from digest_rag.frontends.shell import run_shell

    with handled():
        width = min(shutil.get_terminal_size((100, 24)).columns, 120)
        run_shell(index, width=width, color=use_color(color))


@app.command()
def serve(
    index: Path = IndexOpt,
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (anything but loopback needs --token)."),
    port: int = typer.Option(8000, "--port", min=0, max=65535, help="TCP port."),
    token: str = typer.Option(None, "--token", envvar="DIGEST_RAG_TOKEN", show_envvar=True,
                              help="Bearer token the API requires (required off loopback, 16+ characters)."),
    rate_limit: float = typer.Option(20.0, "--rate-limit", min=0.0,
                                     help="Requests per second per client on the API (0: no limit)."),
    trust_proxy: bool = typer.Option(False, "--trust-proxy",
                                     help="Behind a reverse proxy at loopback: rate-limit by its X-Forwarded-For."),
    allowed_host: list[str] = typer.Option([], "--allowed-host", metavar="NAME",
                                           help="Also answer requests for this Host name (repeatable; loopback "
                                                "names and the bound address always; '*': any)."),
    max_queue: int = typer.Option(16, "--max-queue", min=1,
                                  help="Requests waiting for the index at once; more get 503."),
    max_connections: int = typer.Option(None, "--max-connections", min=1,
                                        help="Open connections at most (default 1000, less under a low open-file "
                                             "limit)."),
    access_log: bool = typer.Option(True, "--access-log/--no-access-log",
                                    help="One line per request on stderr (client, path, status, time)."),
    log_queries: bool = typer.Option(False, "--log-queries",
                                     help="Put the query string (the question) in the access log too."),
) -> None:
    """Serve the index over HTTP: a JSON API (/search, /papers/{id}, /similar/{id}, /info, /healthz) and a page at /.

    Read-only; follows new generations written by build/update without a restart.

    Example: digest-rag serve --index indexes/default --port 8000   (then open http://127.0.0.1:8000/)
    """
    _need_extra("fastapi", "serve")
    _need_extra("uvicorn", "serve")
    from digest_rag.frontends.server import serve as run_server

    with handled():
        run_server(index, host=host, port=port, token=token, rate_limit=rate_limit, trust_proxy=trust_proxy,
                   allowed_hosts=allowed_host, max_queue=max_queue, max_connections=max_connections,
                   access_log=access_log, log_queries=log_queries)


app.add_typer(model_app, name="model")


@app.command()
def mcp(index: Path = IndexOpt) -> None:
    """Serve the index to LLM agents as MCP tools over stdio: search_papers, get_paper and similar_papers.

    Example (a client's configuration): {"command": "digest-rag", "args": ["mcp", "--index", "/path/to/index"]}
    """
    _need_extra("mcp", "mcp")
    from digest_rag.frontends.mcp_server import run_mcp

    with handled():
        run_mcp(index)


def run() -> NoReturn:
    """Console-script entry point; exits with the documented code (0 ok, 1 usage, 2 data/index, 3 model)."""
    app()
    sys.exit(0)  # pragma: no cover - app() always exits


if __name__ == "__main__":
    run()
