"""Kiwi's start-up in a fresh process: construction, then the first analysis, per set of Kiwi options.

What a CLI question or a small rebuild pays once when a Korean word is not in the index's word table
(eojeols.py): `Kiwi(**options)`, the bundled user words, and the first `tokenize` (Kiwi prepares its model
lazily, on the first analysis after the last `add_user_word`). Each option set runs in its own process,
interleaved over the rounds; median (min-max) seconds.

Usage: python benchmarks/bench_kiwi_start.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine  # noqa: E402

OPTION_SETS: dict[str, dict[str, bool]] = {
    "Kiwi() (before)": {},
    "load_typo_dict=False": {"load_typo_dict": False},
    "load_multi_dict=False (analysis.KIWI_OPTIONS)": {"load_multi_dict": False},
    "both off": {"load_typo_dict": False, "load_multi_dict": False},
}

_CHILD = """
import json, sys, time
t0 = time.perf_counter()
from kiwipiepy import Kiwi
from digest_rag.lexical.analysis import bundled_user_words
kiwi = Kiwi(**json.loads(sys.argv[1]))
for word in bundled_user_words():
    kiwi.add_user_word(word, "NNP")
t1 = time.perf_counter()
kiwi.tokenize("긴 컨텍스트를 악용하는 탈옥 공격")
t2 = time.perf_counter()
print(json.dumps([t1 - t0, t2 - t1]))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in OPTION_SETS}
    for _ in range(args.rounds):
        for name, options in OPTION_SETS.items():
            out = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(options)], check=True,
                                 capture_output=True, text=True).stdout
            runs[name].append(tuple(json.loads(out.strip().splitlines()[-1])))

    def cell(values: list[float]) -> str:
        return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"

    print(f"# machine: {machine()}; {args.rounds} rounds interleaved; median (min-max) s")
    print("| Kiwi options | construct + user words | first analysis | total |")
    print("|---|---|---|---|")
    for name, rows in runs.items():
        print(f"| {name} | {cell([a for a, _ in rows])} | {cell([b for _, b in rows])} | {cell([a + b for a, b in rows])} |")


if __name__ == "__main__":
    main()
