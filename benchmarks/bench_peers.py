"""digest_rag against txtai (the peer users would pick instead), same passages, same model, one run.

Query rows (issue 14), each system in its own processes, interleaved round by round:

* in-process hybrid p50: `DigestIndex.search(q, k=10, mode="hybrid")` (E5 + BM25 fused, papers aggregated,
  snippets cut and highlighted) against txtai `Embeddings(hybrid=True).search(q, 10)` (dense + BM25);
* in-process lexical p50: `mode="lexical"` (Kiwi analysis, glossary expansion, snippets) against txtai's
  keyword-only BM25 index;
* one CLI hybrid search process: `python -m digest_rag.cli search Q --index DIR -k 5` against a minimal txtai
  script (`Embeddings().load(DIR); print(search(Q, 5))`), wall time and peak RSS (/usr/bin/time).

Passages: the text chunks of the torch index of seeds + ml-papers that benchmarks/bench_cli.py
prepares (cut by digest_rag's chunker); model: the e5-shaped random model (`_common.e5_shaped_model`), with
E5's "query: " / "passage: " prefixes on both sides. txtai's indexes are built once under
/tmp/digest_rag_bench/peers and reused. txtai is in the `bench` extra only (`pip install 'digest-rag[bench]'`).

Usage: python benchmarks/bench_peers.py [--rounds 5] [--repeat 5] [--lexical-only]   (run python benchmarks/bench_cli.py --prepare-only first)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from importlib import metadata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import BASELINE_COMMIT, IN_PROCESS_SEARCH, ROOT, WORK, code_env, e5_shaped_model, machine, timed_process  # noqa: E402
from bench_query import QUERIES  # noqa: E402

QUERY = QUERIES[0]
PEERS = WORK / "peers"

_BUILD_TXTAI = """
import json, sys
from digest_rag import DigestIndex
from txtai import Embeddings
index, model, out_hybrid, out_bm25 = sys.argv[1:5]
idx = DigestIndex.load(index)
rows = [(cid, c.text, None) for cid, c in idx.store.chunks().items() if c.section_kind != "title"]
if out_hybrid != "-":
    emb = Embeddings(path=model, hybrid=True, backend="faiss", instructions={"query": "query: ", "data": "passage: "})
    emb.index(rows)
    emb.save(out_hybrid)
bm25 = Embeddings(keyword=True)
bm25.index(rows)
bm25.save(out_bm25)
print(len(rows))
"""


_TXTAI = """
import json, sys, time
from txtai import Embeddings
path, repeat, queries = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
emb = Embeddings()
emb.load(path)
for q in queries:
    emb.search(q, 10)
ms = []
for _ in range(repeat):
    for q in queries:
        t = time.perf_counter()
        emb.search(q, 10)
        ms.append((time.perf_counter() - t) * 1000)
print(json.dumps(ms))
"""

_TXTAI_CLI = """
import sys
from txtai import Embeddings
emb = Embeddings()
emb.load(sys.argv[1])
for hit in emb.search(sys.argv[2], 5):
    print(hit)
"""


def p50(out: str) -> float:
    return statistics.median(json.loads(out.strip().splitlines()[-1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--index", type=Path, default=WORK / f"cli-baseline-{BASELINE_COMMIT}" / "torch",
                    help="digest_rag hybrid (torch) index over seeds + ml-papers (bench_cli.py builds it)")
    ap.add_argument("--lexical-index", type=Path, default=WORK / f"cli-baseline-{BASELINE_COMMIT}" / "lexical")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--lexical-only", action="store_true",
                    help="only the BM25 row (no model: txtai's hybrid index takes a full encoding to build)")
    args = ap.parse_args()
    try:
        import txtai  # noqa: F401
    except ImportError:
        sys.exit("txtai is not installed: pip install 'digest-rag[bench]'")
    if not (args.index / "manifest.json").is_file():
        sys.exit(f"no index at {args.index}: run python benchmarks/bench_cli.py --prepare-only first")
    env = code_env(ROOT)
    model = e5_shaped_model()
    hybrid_dir, bm25_dir = PEERS / "txtai-hybrid", PEERS / "txtai-bm25"
    if not bm25_dir.is_dir() or not (args.lexical_only or hybrid_dir.is_dir()):
        PEERS.mkdir(parents=True, exist_ok=True)
        print("# building txtai's indexes (once)", file=sys.stderr)
        timed_process([sys.executable, "-c", _BUILD_TXTAI, str(args.index), str(model),
                       "-" if args.lexical_only else str(hybrid_dir), str(bm25_dir)], env, timeout=7200)
    queries = json.dumps(QUERIES, ensure_ascii=False)
    rows: dict[str, dict[str, list[float]]] = {}
    for r in range(args.rounds):
        runs = {
            "in-process hybrid p50 ms": {
                "digest_rag": [sys.executable, "-c", IN_PROCESS_SEARCH, str(args.index), "hybrid", str(args.repeat), queries],
                "txtai": [sys.executable, "-c", _TXTAI, str(hybrid_dir), str(args.repeat), queries],
            },
            "in-process lexical p50 ms": {
                "digest_rag": [sys.executable, "-c", IN_PROCESS_SEARCH, str(args.lexical_index), "lexical", str(args.repeat), queries],
                "txtai": [sys.executable, "-c", _TXTAI, str(bm25_dir), str(args.repeat), queries],
            },
            "one CLI hybrid search process": {
                "digest_rag": [sys.executable, "-m", "digest_rag.cli", "search", QUERY, "--index", str(args.index), "-k", "5"],
                "txtai": [sys.executable, "-c", _TXTAI_CLI, str(hybrid_dir), QUERY],
            },
        }
        if args.lexical_only:
            runs = {row: v for row, v in runs.items() if "lexical" in row}
        for row, systems in runs.items():
            for name in (systems if r % 2 == 0 else reversed(list(systems))):
                wall, rss, out = timed_process(systems[name], env)
                cell = rows.setdefault(row, {})
                if row.startswith("in-process"):
                    cell.setdefault(name, []).append(p50(out))
                else:
                    cell.setdefault(name + " wall", []).append(wall)
                    cell.setdefault(name + " rss", []).append(rss)
        print(f"# round {r + 1}/{args.rounds} done", file=sys.stderr)

    print(f"# machine: {machine()}; txtai {metadata.version('txtai')}; {args.rounds} rounds interleaved; median (min-max)")
    print("| query row | digest_rag | txtai | digest_rag / txtai | target | met? |")
    print("|---|---|---|---|---|---|")

    def cell(xs: list[float], fmt: str) -> str:
        return f"{fmt.format(statistics.median(xs))} ({fmt.format(min(xs))}-{fmt.format(max(xs))})"

    for row, target in (("in-process hybrid p50 ms", 1.0), ("in-process lexical p50 ms", 1.5)):
        if row not in rows:
            continue
        ours, theirs = rows[row]["digest_rag"], rows[row]["txtai"]
        ratio = statistics.median(ours) / statistics.median(theirs)
        print(f"| {row} | {cell(ours, '{:.1f}')} | {cell(theirs, '{:.1f}')} | {ratio:.2f}x | <= {target}x "
              f"| {'yes' if ratio <= target else '**no**'} |")
    cli_row = rows.get("one CLI hybrid search process")
    for what, unit, fmt in (("wall", "s", "{:.2f}"), ("rss", "MiB", "{:.0f}")) if cli_row else ():
        ours, theirs = cli_row["digest_rag " + what], cli_row["txtai " + what]
        ratio = statistics.median(ours) / statistics.median(theirs)
        print(f"| one CLI hybrid search process, {'wall' if what == 'wall' else 'peak RSS'} {unit} | {cell(ours, fmt)} "
              f"| {cell(theirs, fmt)} | {ratio:.2f}x | <= 1.0x | {'yes' if ratio <= 1.0 else '**no**'} |")


if __name__ == "__main__":
    main()
