"""Lexical p50 of two source trees on the same index, two protocols (issue 25).

* first sight: warm up on 30 *other* dev questions (the next 15 known-item and 15 paraphrase of the same file), then
  time each of the 30 dev questions of `bench_peers.py` once, so only what questions share is remembered;
* repeat: then time them 3 times more (bench_peers' protocol, where everything a search remembers is warm).

Both from one run of bench_peers' in-process script (`_DIGEST_LEXICAL`) per tree and round.

Each tree runs in its own process per round (PYTHONPATH = the tree), the order alternating by round.

Usage: python benchmarks/bench_lexical_ab.py INDEX TREE_A TREE_B [--rounds 5] [--questions FILE]
       (trees from `git archive COMMIT | tar -x -C DIR`; the index built by either)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT  # noqa: E402
from bench_peers import _DIGEST_LEXICAL, dev_questions  # noqa: E402

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("index", type=Path)
    ap.add_argument("trees", type=Path, nargs=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--questions", type=Path, default=ROOT / "eval" / "ml_papers_kinds_tune.jsonl")
    args = ap.parse_args()
    questions = dev_questions(args.questions, 60)
    timed = json.dumps([q["query"] for q in questions[:30]], ensure_ascii=False)
    other = json.dumps([q["query"] for q in questions[30:]], ensure_ascii=False)
    res: dict[tuple[str, str], list[float]] = {}
    for r in range(args.rounds):
        for tree in args.trees if r % 2 == 0 else args.trees[::-1]:
            # bench_peers' in-process script: warmed up on the other questions, it times each question's first
            # search ("first sight"), then every question 3 times more ("repeat").
            env = {**os.environ, "PYTHONPATH": str(tree)}
            out = subprocess.run([sys.executable, "-c", _DIGEST_LEXICAL, str(args.index), "3", timed, other], env=env,
                                 cwd=tree, capture_output=True, text=True, check=True).stdout
            result = json.loads(out.strip().splitlines()[-1])
            for proto, key in (("repeat", "ms"), ("first sight", "first")):
                res.setdefault((str(tree), proto), []).append(statistics.median(result[key]))
    for (tree, proto), xs in res.items():
        print(f"{tree} {proto}: p50 {statistics.median(xs):.2f} ms (rounds {', '.join(f'{x:.2f}' for x in xs)})")


if __name__ == "__main__":
    main()
