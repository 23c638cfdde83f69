"""What the CLI prints besides search hits: progress bars, the build and dry-run summaries, info's text, and its one-line messages on stderr."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from digest_rag.index import DigestIndex
from digest_rag.text import strip_controls

if TYPE_CHECKING:  # pragma: no cover - typing only
    from digest_rag.build.report import BuildReport


def echo(text: str, *, err: bool = False, color: bool | None = None) -> None:
    """Everything the CLI prints goes through here: control characters from corpus text or file names
    (an ESC starting a terminal command) are stripped; only the display's own colour codes stay, with color."""
    typer.echo(strip_controls(text, keep_colors=bool(color)), err=err, color=color)


def err(msg: str) -> None:
    echo(msg, err=True)


UNITS = {"parsing": "file", "chunking": "paper", "encoding": "passage", "merging": "shard", "indexing": "step"}


class ProgressBars:
    """A tqdm bar per stage (count, rate, ETA) fed by the library's ``progress(stage, done, total)`` calls."""

    def __init__(self) -> None:
        self._bars: dict[str, Any] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        from tqdm import tqdm

        bar = self._bars.get(stage)
        if bar is None:
            bar = self._bars[stage] = tqdm(
                total=total, desc=f"{stage:<9}", unit=UNITS.get(stage, "item"), file=sys.stderr,
                dynamic_ncols=True, leave=True,
            )
        if bar.disable:  # closed: the stage already finished
            return
        if bar.total != total:
            bar.total = total
        if done > bar.n:
            bar.update(done - bar.n)  # update() (not setting n) keeps tqdm's rate and ETA estimates right
        if done >= total:
            bar.close()

    def close(self) -> None:
        for bar in self._bars.values():
            bar.close()


@contextmanager
def progress_bars(quiet: bool) -> Iterator[ProgressBars | None]:
    """Progress bars on stderr, only when it is a terminal and not --quiet/--json."""
    if quiet or not sys.stderr.isatty():
        yield None
        return
    bars = ProgressBars()
    try:
        yield bars
    finally:
        bars.close()


def plan_summary(index_dir: Path, rep: BuildReport, as_json: bool) -> None:
    if as_json:
        echo(json.dumps({"index": str(index_dir), **rep.model_dump()}, ensure_ascii=False))
        return
    if rep.up_to_date:
        echo(f"dry run: up to date, nothing to do ({rep.papers} papers, {rep.chunks} chunks in {index_dir})")
        return
    echo(
        f"dry run: {rep.papers} papers (+{len(rep.added)} -{len(rep.removed)} ~{len(rep.changed)}), {rep.chunks} chunks "
        f"({rep.rechunked} papers to cut again); {rep.encoded} to encode, {rep.reused} from the embedding cache; "
        f"model {'must load' if rep.model_loaded else 'not needed'}{' (lexical-only)' if rep.lexical_only else ''}; "
        f"nothing written to {index_dir}"
    )
    if rep.full_rebuild_reason:
        echo(f"full re-encode: {rep.full_rebuild_reason}")


def build_summary(index: DigestIndex, as_json: bool, quiet: bool = False, verbose: bool = False) -> None:
    """The summary line; then (not with --quiet) re-encode reasons, merged duplicates as a count (each one
    with --verbose, on stderr) and skipped files."""
    rep = index.last_build
    assert rep is not None
    if as_json:
        echo(json.dumps({"index": str(index.index_dir), **rep.model_dump()}, ensure_ascii=False))
        return
    kind = "lexical-only" if rep.lexical_only else f"{index.manifest.model_name} ({index.manifest.index_type})"
    options = index.manifest.build_options
    if rep.up_to_date and rep.lexical_only and options is not None and not options.lexical_only:
        # A fallback: the model was wanted but not in the local cache; it stays up to date until it is there.
        kind = "lexical-only: no embedding model in the local cache; a build once it is there adds vectors"
    if rep.up_to_date:
        echo(
            f"up to date: {rep.papers} papers, {rep.chunks} chunks in {index.index_dir} [{kind}]; no input file or "
            f"option changed since {index.manifest.created_at}, nothing written ({rep.seconds:.1f}s; --force rebuilds)"
        )
        return
    echo(
        f"indexed {rep.papers} papers, {rep.chunks} chunks into {index.index_dir} [{kind}] in {rep.seconds:.1f}s; "
        f"encoded {rep.encoded}, reused {rep.reused}; +{len(rep.added)} -{len(rep.removed)} ~{len(rep.changed)} papers"
        + (f"; skipped {len(rep.skipped)} file(s)" if rep.skipped else "")
    )
    if quiet:
        return
    if rep.full_rebuild_reason:
        echo(f"full re-encode: {rep.full_rebuild_reason}")
    if rep.merged:
        echo(f"merged {len(rep.merged)} duplicate paper(s) found in more than one file"
                   + ("" if verbose else " (--verbose lists them)"))
        for m in rep.merged if verbose else ():
            err(f"merged: {m}")
    if rep.skipped:
        echo(f"skipped {len(rep.skipped)} file(s):")
        for s in rep.skipped:
            echo(f"  {s['source']}: {s['reason']}")


def use_color(flag: bool | None) -> bool:
    """--color/--no-color win; otherwise colour only on a terminal, honouring NO_COLOR and TERM=dumb."""
    if flag is not None:
        return flag
    return sys.stdout.isatty() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


def human_size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"  # pragma: no cover - loop always returns


INFO_SOURCES = 10  # source files `info` lists (those with most papers); --json has them all


def format_fusion(data: dict[str, Any]) -> str:
    """The `info` line of the hybrid fusion: calibrated weights and their figures, or why there are none."""
    from digest_rag.models import FusionCalibration
    from digest_rag.search.calibration import describe

    if data.get("fusion"):
        return describe(FusionCalibration.model_validate(data["fusion"]))
    if not data["model"]:
        return "none: lexical-only"
    return "dense=1,lexical=1 k=60 (defaults: this index was built before fusion calibration)"


def format_confidence(data: dict[str, Any]) -> str:
    """The `info` line of the strong-match calibration (`lexical.confidence`), or why there is none."""
    c = data.get("confidence")
    if not c:
        return "none: no strong-match verdict (an index built before the calibration, or too small to draw from)"
    line = (f"a top hit is a strong match from BM25 {c['threshold']:g} ({c['method']}: {c['queries']} on-topic "
            f"pseudo-queries' median {c['on_median']:g}, as many off-topic ones' 90th percentile {c['off_p90']:g})")
    if c.get("coverage"):
        line += f", or when it scores {c['coverage']:g} of what the question's words could"
    return line


def format_loanwords(data: dict[str, Any]) -> str:
    """The `info` line on what a question's Hangul loanwords may spell (`lexical.loanwords`)."""
    stored = data.get("loanwords")
    if stored is None:
        return "not stored (an index built before): made from the vocabulary when a question first needs them"
    return f"{stored['candidates']} English words a Hangul loanword may spell (rules {stored['rules']})"


def format_words(data: dict[str, Any]) -> str:
    """The `info` line on the word table: the Korean word forms a question is read from without Kiwi."""
    words = data.get("word_forms")
    if words is None:
        return "no word table: every Korean question starts Kiwi"
    return (f"{words} Korean word forms read without Kiwi (the corpus's words and their question forms; "
            "a question with another word starts Kiwi)")


def format_info(data: dict[str, Any]) -> str:
    """The `info` text: one labelled line per fact, then the source files with most papers, one per line."""
    param = f", search param {data['search_param']}" if data.get("search_param") else ""
    backend = f", built with {data['backend']}" if data.get("backend") else ""
    model = (f"{data['model']}  (dimension {data['dimension']}, FAISS {data['index_type']}{param}{backend})" if data["model"]
             else "none: lexical-only (BM25); rebuild with a model for dense and hybrid search")
    sources = data["sources"]
    lex = data.get("lexicon")
    lexicon = (f"{lex['pairs']} mined pairs (" + ", ".join(f"{k} {v}" for k, v in lex["by_source"].items())
               + f"; miner {lex['miner']})" if lex else "none")
    lines = [
        f"index       {data['index_dir']}  ({human_size(data['size_bytes'])} on disk, format {data['format_version']}, "
        f"digest_rag {data['library_version']})",
        f"built       {data['created_at']}",
        f"model       {model}",
        f"papers      {data['papers']}, dated {data['date_from'] or '?'} .. {data['date_to'] or '?'}",
        f"chunks      {data['chunks']}: " + ", ".join(f"{k} {v}" for k, v in data["chunks_by_language"].items()),
        "sections    " + ", ".join(f"{k} {v}" for k, v in data["chunks_by_section"].items()),
        "top tags    " + (", ".join(f"#{k} {v}" for k, v in list(data["top_tags"].items())[:10]) or "none"),
        f"lexicon     {lexicon}",
        f"loanwords   {format_loanwords(data)}",
        f"words       {format_words(data)}",
        f"fusion      {format_fusion(data)}",
        f"confidence  {format_confidence(data)}",
        f"sources     {len(sources)} file(s)",
    ]
    shown = sorted(sources.items(), key=lambda kv: (-kv[1], kv[0]))[:INFO_SOURCES]
    lines += [f"            {n:>4} {'paper ' if n == 1 else 'papers'}  {src}" for src, n in shown]
    if len(sources) > len(shown):
        lines.append(f"            ... {len(sources) - len(shown)} more (the {len(shown)} with most papers shown; "
                     "--json lists all)")
    return "\n".join(lines)
