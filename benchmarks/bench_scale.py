"""One `digest-rag search` process, and `serve`'s per-query p50, on a lexical index of N small synthetic papers.

    python benchmarks/synth_papers.py --papers 1000000 --out /tmp/digest_rag_bench/synth-1m.jsonl
    digest-rag build /tmp/digest_rag_bench/synth-1m.jsonl --index /tmp/digest_rag_bench/synth-1m-lex --lexical-only
    python benchmarks/bench_scale.py --index /tmp/digest_rag_bench/synth-1m-lex [--rounds 3] [--serve-queries 100]

The index is built once (minutes at 1M; in the background, e.g. nohup). Each round runs the baseline's
(e0e9ee5) and the current tree's CLI on the same index and queries (an English and a Korean one),
interleaved, and reports wall time and peak RSS (/usr/bin/time) of each process; one warm-up run each
first (page cache). The baseline reads lexical format 1 only: on an index the current code built (format 2,
sorted vocabulary) it fails, and the script then measures the current tree alone and says so.
Then `digest-rag serve` on 127.0.0.1 answers --serve-queries lexical questions one at a time after
warm-up: their p50 and p99 (issue 14: p50 <= 100 ms at 1M papers).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import BASELINE_COMMIT, ROOT, baseline_tree, code_env, machine, timed_process  # noqa: E402

QUERIES = ["scaling laws for language models", "긴 컨텍스트를 악용하는 탈옥 공격"]
TARGET_S, TARGET_MIB = 3.0, 1536.0  # issue 14, at 1M papers


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--index", type=Path, required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--serve-queries", type=int, default=100, help="0: skip the serve measurement")
    args = ap.parse_args()
    manifest = json.loads((args.index / "manifest.json").read_text())
    codes = {f"baseline-{BASELINE_COMMIT}": baseline_tree(), "current": ROOT}

    def cmd(query: str) -> list[str]:
        return [sys.executable, "-m", "digest_rag.frontends.cli", "search", query, "--index", str(args.index), "-k", "5",
                "--mode", "lexical", "--json"]

    results: dict[tuple[str, str], list[tuple[float, float]]] = {}
    notes = []
    for tag, tree in list(codes.items()):  # warm-up: page cache, compiled glossary
        try:
            timed_process(cmd(QUERIES[0]), code_env(tree), timeout=3600)
        except RuntimeError as exc:
            if tag == "current":
                raise
            del codes[tag]
            notes.append(f"# {tag} cannot read this index ({' '.join(str(exc).split())[-160:]}): current tree alone")
    for r in range(args.rounds):
        for q in QUERIES:
            for tag, tree in (list(codes.items()) if r % 2 == 0 else reversed(list(codes.items()))):
                wall, rss, out = timed_process(cmd(q), code_env(tree), timeout=3600)
                assert json.loads(out), f"{tag}: no hits for {q!r}"
                results.setdefault((q, tag), []).append((wall, rss))
        print(f"# round {r + 1}/{args.rounds} done", file=sys.stderr)
    print(f"# machine: {machine()}")
    print(f"# index: {args.index} ({manifest['paper_count']} papers, {manifest['chunk_count']} chunks); "
          f"{args.rounds} rounds interleaved; median (min-max)")
    for note in notes:
        print(note)

    def cell(xs: list[float], fmt: str) -> str:
        return f"{fmt.format(statistics.median(xs))} ({fmt.format(min(xs))}-{fmt.format(max(xs))})"

    if len(codes) == 2:
        base, cur = codes
        print(f"| query | {base} wall s | current wall s | ratio | {base} peak RSS MiB | current peak RSS MiB | ratio |")
        print("|---|---|---|---|---|---|---|")
        for q in QUERIES:
            b, c = results[(q, base)], results[(q, cur)]
            cells = []
            for i, fmt in ((0, "{:.2f}"), (1, "{:.0f}")):
                bs, cs = [x[i] for x in b], [x[i] for x in c]
                cells += [cell(bs, fmt), cell(cs, fmt), f"{statistics.median(cs) / statistics.median(bs):.2f}x"]
            print(f"| {q} | " + " | ".join(cells) + " |")
    else:
        print("| query | current wall s | current peak RSS MiB | target |")
        print("|---|---|---|---|")
        for q in QUERIES:
            c = results[(q, "current")]
            print(f"| {q} | {cell([x[0] for x in c], '{:.2f}')} | {cell([x[1] for x in c], '{:.0f}')} | "
                  f"<= {TARGET_S:.0f} s, <= {TARGET_MIB:.0f} MiB |")
    if args.serve_queries > 0:
        serve_p50(args.index, args.serve_queries)


def serve_p50(index: Path, n: int) -> None:
    """Per-query latency of `digest-rag serve` (current tree), one lexical question at a time after warm-up."""
    import http.client
    import time
    import urllib.parse

    from digest_rag.testing import running_server

    queries = [*QUERIES, "sparse attention for long documents", "보상 모델 정렬", "knowledge distillation agents",
               "mixture of experts", "speculative decoding latency", "양자화"]
    with running_server(index, args=["--rate-limit", "0"], env=code_env(ROOT), timeout=600) as url:
        port = int(url.rsplit(":", 1)[1])
        con = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

        def ask(q: str) -> float:
            t = time.perf_counter()
            con.request("GET", "/search?" + urllib.parse.urlencode({"q": q, "k": 10, "mode": "lexical"}))
            res = con.getresponse()
            body = res.read()
            assert res.status == 200 and json.loads(body), (res.status, body[:200])
            return (time.perf_counter() - t) * 1000

        for q in queries:  # warm-up: Kiwi, the compiled glossary, the pages the queries touch
            ask(q)
        ms = sorted(ask(queries[i % len(queries)]) for i in range(n))
        con.close()
    print(f"serve (one client, one question at a time, k=10, lexical): p50 {statistics.median(ms):.1f} ms, "
          f"p99 {ms[min(len(ms) - 1, int(len(ms) * 0.99))]:.1f} ms over {n} questions (target p50 <= 100 ms)")


if __name__ == "__main__":
    main()
