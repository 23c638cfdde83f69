"""How often an index's stored word analyses (digest_rag.lexical.word_table) give a query the same BM25 terms as Kiwi.

    python benchmarks/eojeol_agreement.py --index /tmp/kf/ml eval/dev_queries.jsonl eval/ml_papers_tune.jsonl

For every query of the JSONL files ({"query": ...} per line) it prints whether the table knew every Korean word
(else the search starts Kiwi, as before: "fallback"), and, where it did, whether the weighted query terms equal
Kiwi's exactly; then the differing queries with the terms only one side has.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("queries", nargs="+", type=Path)
    parser.add_argument("--index", required=True, type=Path)
    args = parser.parse_args(argv)

    from digest_rag import DigestIndex
    from digest_rag.lexical.analysis import _normalize, _segments
    from digest_rag.lexical.terms import query_term_weights

    idx = DigestIndex.load(args.index)
    table = idx.lexical.eojeols if idx.lexical is not None else None
    if table is None:
        print(f"{args.index}: no word table (built before digest_rag.lexical.word_table?)", file=sys.stderr)
        return 1
    for path in args.queries:
        queries = [json.loads(line)["query"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        known = same = 0
        diffs: list[str] = []
        for q in queries:
            segs = _segments(_normalize(q))
            if any(table.analyse(s) is None for _o, s in segs):
                continue
            known += 1
            kiwi, stored = query_term_weights(q), query_term_weights(q, stored=table)
            if kiwi == stored:
                same += 1
            else:
                only_k = sorted(set(kiwi.items()) - set(stored.items()))
                only_s = sorted(set(stored.items()) - set(kiwi.items()))
                diffs.append(f"  {q!r}\n    kiwi only: {only_k}\n    table only: {only_s}")
        n = len(queries)
        print(f"{path}: {n} queries; table knew every word of {known} ({known / n:.1%}), the rest fall back to Kiwi; "
              f"of those {known}, {same} have identical weighted terms ({same / max(known, 1):.1%}); "
              f"identical overall (table or fallback): {(n - known + same) / n:.1%}")
        print("\n".join(diffs))
    idx.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
