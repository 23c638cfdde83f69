"""One `digest-rag search` process, and in-process query latency: today's code (e0e9ee5) against the current tree.

Both codes run in the same invocation, interleaved round by round (baseline, current, current, baseline, ...),
each from its own source tree (the baseline from a `git worktree` of e0e9ee5 under /tmp/digest_rag_bench),
each on indexes it built itself over the same inputs (seeds + ml-papers) with the same model (random weights,
multilingual-e5-small's exact shape: `_common.e5_shaped_model`). The current code's text analysis changed
(issue 12), so it refuses the baseline's lexical index and rebuilds; its indexes are brought up to date with
`build --force` on every run (embeddings come from the embedding cache, so only the first run encodes):

* lexical: `build --lexical-only`;
* torch: a hybrid index;
* onnx-int8: a copy of the torch index rebuilt with `--backend onnx-int8` (vectors reused from the store).
  The baseline encodes queries with torch whatever the index's backend (as it did); the current code with
  the index's backend (ONNX Runtime + tokenizers, no torch).

Rows: wall time and peak RSS of one `python -m digest_rag.frontends.cli search QUERY --index DIR -k 5` process
(one warm-up run per row and code, not counted; median over --rounds), then in-process `DigestIndex.search`
p50 / p95 over 10 queries x --repeat after a warm-up pass (hybrid on the torch index, lexical on the
lexical index).

Usage: python benchmarks/bench_cli.py [--rounds 5] [--repeat 5] [--prepare-only]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    BASELINE_COMMIT,
    IN_PROCESS_SEARCH,
    ROOT,
    WORK,
    baseline_tree,
    code_env,
    corpora,
    e5_shaped_model,
    machine,
    timed_process,
)
from bench_query import QUERIES  # noqa: E402

QUERY = "긴 컨텍스트를 악용하는 탈옥 공격"
TARGETS = {"lexical": 1.0, "onnx-int8": 2.5, "torch": 5.0}  # seconds per CLI search process (issue 14)
P50_TARGETS = {"hybrid": 50.0, "lexical": 15.0}  # ms in-process p50 at ml-papers size (issue 14)



def cli(tree: Path, *args: str, timeout: float = 3600) -> None:
    timed_process([sys.executable, "-m", "digest_rag.frontends.cli", *args], code_env(tree), timeout=timeout)


def prepare(tree: Path, model: Path, base: Path, *, force: bool) -> dict[str, Path]:
    """The three indexes of one code under ``base``: built when missing, or always rebuilt with ``force``."""
    paths = {"lexical": base / "lexical", "torch": base / "torch", "onnx-int8": base / "onnx-int8"}
    inputs = [str(p) for p in corpora()]
    again = ["--force"] if force else []
    if force or not (paths["lexical"] / "manifest.json").is_file():
        print(f"# building {paths['lexical']}", file=sys.stderr)
        cli(tree, "build", *inputs, "--index", str(paths["lexical"]), "--lexical-only", "-q", *again)
    if force or not (paths["torch"] / "manifest.json").is_file():
        print(f"# building {paths['torch']}", file=sys.stderr)
        cli(tree, "build", *inputs, "--index", str(paths["torch"]), "--model", str(model), "--force", "-q")
    missing = not (paths["onnx-int8"] / "manifest.json").is_file()
    if missing:
        shutil.copytree(paths["torch"], paths["onnx-int8"])  # its embedding cache comes along
    if force or missing:
        print(f"# building {paths['onnx-int8']}", file=sys.stderr)
        cli(tree, "build", *inputs, "--index", str(paths["onnx-int8"]), "--model", str(model),
            "--backend", "onnx-int8", "--force", "-q")
    return paths


def search_cmd(index: Path, kind: str) -> list[str]:
    cmd = [sys.executable, "-m", "digest_rag.frontends.cli", "search", QUERY, "--index", str(index), "-k", "5"]
    return cmd + (["--mode", "lexical"] if kind == "lexical" else [])


def spread(xs: list[float], fmt: str = "{:.2f}") -> str:
    return f"{fmt.format(statistics.median(xs))} ({fmt.format(min(xs))}-{fmt.format(max(xs))})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5, help="CLI processes per row and code")
    ap.add_argument("--repeat", type=int, default=5, help="passes over the 10 queries in-process")
    ap.add_argument("--prepare-only", action="store_true", help="only build the indexes")
    ap.add_argument("--skip-in-process", action="store_true")
    args = ap.parse_args()

    model = e5_shaped_model()
    codes = {f"baseline-{BASELINE_COMMIT}": baseline_tree(), "current": ROOT}
    indexes = {
        f"baseline-{BASELINE_COMMIT}": prepare(codes[f"baseline-{BASELINE_COMMIT}"], model,
                                               WORK / f"cli-baseline-{BASELINE_COMMIT}", force=False),
        "current": prepare(ROOT, model, WORK / "cli-current", force=True),
    }
    if args.prepare_only:
        return
    kinds = ["lexical", "onnx-int8", "torch"]
    wall: dict[tuple[str, str], list[float]] = {}
    rss: dict[tuple[str, str], list[float]] = {}
    for kind in kinds:  # warm-up: page cache, ONNX export and compiled-glossary caches
        for tag, tree in codes.items():
            timed_process(search_cmd(indexes[tag][kind], kind), code_env(tree))
    for r in range(args.rounds):
        for kind in kinds:
            order = list(codes.items()) if r % 2 == 0 else list(reversed(codes.items()))
            for tag, tree in order:
                w, m, _ = timed_process(search_cmd(indexes[tag][kind], kind), code_env(tree))
                wall.setdefault((kind, tag), []).append(w)
                rss.setdefault((kind, tag), []).append(m)
        print(f"# round {r + 1}/{args.rounds} done", file=sys.stderr)

    base, cur = list(codes)
    print(f"# machine: {machine()}")
    print(f"# query: {QUERY!r}, -k 5; {args.rounds} rounds, interleaved; median (min-max)")
    print(f"| one CLI search process | {base} wall s | current wall s | current / baseline | target | met? "
          f"| {base} peak RSS MiB | current peak RSS MiB |")
    print("|---|---|---|---|---|---|---|---|")
    for kind in kinds:
        b, c = wall[(kind, base)], wall[(kind, cur)]
        ok = "yes" if statistics.median(c) <= TARGETS[kind] else "**no**"
        print(f"| {kind} index | {spread(b)} | {spread(c)} | {statistics.median(c) / statistics.median(b):.2f}x "
              f"| <= {TARGETS[kind]} s | {ok} | {spread(rss[(kind, base)], '{:.0f}')} | {spread(rss[(kind, cur)], '{:.0f}')} |")
    if args.skip_in_process:
        return
    print()
    print(f"# in-process DigestIndex.search, {len(QUERIES)} queries x {args.repeat} after a warm-up pass, k=10; ms")
    print(f"| in-process query | {base} p50 / p95 | current p50 / p95 | p50 current / baseline | target | met? |")
    print("|---|---|---|---|---|---|")
    for mode, kind in (("hybrid", "torch"), ("lexical", "lexical"), ("hybrid", "onnx-int8")):
        res = {}
        for tag, tree in codes.items():
            _, _, out = timed_process([sys.executable, "-c", IN_PROCESS_SEARCH, str(indexes[tag][kind]), mode,
                                       str(args.repeat), json.dumps(QUERIES, ensure_ascii=False)], code_env(tree))
            ms = sorted(json.loads(out.strip().splitlines()[-1]))
            res[tag] = (statistics.median(ms), ms[int(0.95 * (len(ms) - 1))])
        target = P50_TARGETS.get(mode) if kind != "onnx-int8" else None
        ok = "-" if target is None else ("yes" if res[cur][0] <= target else "**no**")
        print(f"| {mode} ({kind} index) | {res[base][0]:.1f} / {res[base][1]:.1f} | {res[cur][0]:.1f} / {res[cur][1]:.1f} "
              f"| {res[cur][0] / res[base][0]:.2f}x | {'<= ' + str(target) + ' ms' if target else '-'} | {ok} |")


if __name__ == "__main__":
    main()
