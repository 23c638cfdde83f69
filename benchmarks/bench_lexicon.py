"""Time of mining the bilingual lexicon (digest_rag.lexical.lexicon) from a built index's cached tokens.

Mining runs inside every build, after the BM25 documents are analysed; this
times it alone, on the token cache the index's store keeps (no Kiwi: the
parenthetical phrases of a built index are in that cache too), so the number
is what an update adds to a build.

Usage: python benchmarks/bench_lexicon.py --index INDEX [--repeat 3]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from digest_rag.lexical.glossary import default_glossary
from digest_rag.storage.layout import read_manifest
from digest_rag.lexical.builder import TokenCache, analysis_cache_key, lexical_chunks, paper_field_tokens
from digest_rag.lexical.lexicon import mine_lexicon
from digest_rag.storage.store import Store


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--index", required=True)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    ix = Path(args.index)
    store = Store(ix / read_manifest(ix).data_dir / "store.sqlite")
    papers, chunks = store.papers(), lexical_chunks(store.chunks().values())
    cache = TokenCache(store.doc_tokens(analysis_cache_key()))
    fields = paper_field_tokens(papers, (c.paper_id for c in chunks), cache)
    docs = cache.tokens([c.text for c in chunks])
    concepts = default_glossary().concepts
    times = []
    for _ in range(args.repeat):
        t = time.perf_counter()
        lex = mine_lexicon([*((c.paper_id, d) for c, d in zip(chunks, docs, strict=True)),
                            *((pid, f[0]) for pid, f in fields.items())],
                           ((c.paper_id, c.text) for c in chunks), cache.tokens, concepts)
        times.append(time.perf_counter() - t)
    print(f"{len(papers)} papers, {len(chunks)} chunks: {len(lex.pairs)} pairs {lex.counts()}; "
          f"texts analysed by Kiwi: {cache.analysed}; mining {min(times):.3f} s (best of {args.repeat})")


if __name__ == "__main__":
    main()
