"""How many questions an index's word table reads without Kiwi (every Hangul word known to `EojeolTable`).

A search starts Kiwi (about 1 s and 320 MB in a new process, ~0.5-0.9 ms a question after) only for a question
with a word the table cannot read; this counts them and lists the words most often missing.

Usage: python benchmarks/kiwi_free_questions.py --index IX [FILE ...] [--top 30]
       (default files: every eval/*.jsonl except the held-out ones)
"""

from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path

from digest_rag import DigestIndex
from digest_rag.lexical.word_table import WORD

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--index", required=True, type=Path)
    ap.add_argument("files", nargs="*", type=Path)
    ap.add_argument("--top", type=int, default=30)
    args = ap.parse_args()
    files = args.files or [f for f in sorted((ROOT / "eval").glob("*.jsonl")) if "heldout" not in f.name]
    index = DigestIndex.load(args.index)
    table = index.lexical.eojeols if index.lexical is not None else None
    if table is None:
        raise SystemExit(f"{args.index}: no word table (a lexical index built by digest_rag 0.2 or later has one)")
    questions = unknown = 0
    missing: collections.Counter[str] = collections.Counter()
    for path in files:
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            questions += 1
            words = [w for w in WORD.findall(json.loads(line)["query"]) if table.analyse(w) is None]
            if words:
                unknown += 1
                missing.update(words)
    print(f"{questions} questions in {len(files)} file(s): {unknown} start Kiwi, {questions - unknown} are read "
          f"from the word table")
    print("most often missing:", ", ".join(f"{w} ({n})" for w, n in missing.most_common(args.top)))


if __name__ == "__main__":
    main()
