"""Does Kiwi's BM25 analysis overlap with encoding? Sequential vs a thread beside the encoder, in one process.

Encodes 600 passages of an index's chunks with the e5-small-shaped model (sentence-transformers, torch) and
analyses every chunk text for BM25 (`digest_rag.lexical.analysis.tokenize_many`, Kiwi), first one after the other, then
with the analysis in a thread while the encoder runs. A build could hide its analysis behind the encode only if
the second total were lower than the first.

Usage: python benchmarks/bench_analysis_overlap.py --index /tmp/digest_rag_bench/cli-current/lexical
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import e5_shaped_model, machine  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--index", type=Path, required=True, help="any built index (its chunk texts are read)")
    ap.add_argument("--passages", type=int, default=600)
    args = ap.parse_args()
    from sentence_transformers import SentenceTransformer

    from digest_rag.lexical.analysis import tokenize_many
    from digest_rag.lexical.kiwi import get_kiwi

    store = next(args.index.glob("gen-*/store.sqlite"))
    con = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    texts = [r[0] for r in con.execute("SELECT text FROM chunks")]
    model = SentenceTransformer(str(e5_shaped_model()), device="cpu")
    get_kiwi()
    tokenize_many(texts[:10])  # Kiwi started and warm in both cases
    part = ["passage: " + t for t in texts[: args.passages]]

    def encode() -> float:
        t = time.perf_counter()
        model.encode(part, batch_size=32)
        return time.perf_counter() - t

    def analyse() -> float:
        t = time.perf_counter()
        tokenize_many(texts)
        return time.perf_counter() - t

    print(f"# machine: {machine()}; {len(part)} passages encoded, {len(texts)} texts analysed")
    t = time.perf_counter()
    e, a = encode(), analyse()
    print(f"sequential: encode {e:.1f} s, analysis {a:.1f} s, total {time.perf_counter() - t:.1f} s")
    out: dict[str, float] = {}
    t = time.perf_counter()
    th = threading.Thread(target=lambda: out.__setitem__("a", analyse()))
    th.start()
    e = encode()
    th.join()
    print(f"overlapped: encode {e:.1f} s, analysis {out['a']:.1f} s, total {time.perf_counter() - t:.1f} s")


if __name__ == "__main__":
    main()
