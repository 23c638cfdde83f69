"""What `DigestIndex.info` (and `digest-rag info`) reports: a JSON-ready description of an index."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from digest_rag.lexical.confidence import Confidence
from digest_rag.lexical.lexicon import MinedLexicon
from digest_rag.models import IndexManifest, Paper
from digest_rag.storage.store import Store


def lexicon_summary(lexicon: MinedLexicon | None) -> dict[str, Any] | None:
    """The mined lexicon's format, miner version, parameters and pair counts (None: no lexical index)."""
    if lexicon is None:
        return None
    return {"format": lexicon.format, "miner": lexicon.miner, "pairs": len(lexicon.pairs),
            "by_source": lexicon.counts(), "papers": lexicon.papers, "params": lexicon.params.model_dump()}


def index_summary(
    index_dir: Path, manifest: IndexManifest, store: Store, papers: Mapping[str, Paper],
    lexicon: MinedLexicon | None = None,
    confidence: Confidence | None = None,
    words: int | None = None,
) -> dict[str, Any]:
    """Manifest, build options, counts by language and section, size on disk, the mined lexicon, the stored
    loanword candidates, the strong-match calibration (``confidence``), how many word forms the word table reads
    without Kiwi (``words``; None: no table), and every paper with its sections."""
    m = manifest
    gen = index_dir / m.data_dir
    chunk_counts: dict[str, int] = {}
    for c in store.chunks().values():
        chunk_counts[c.paper_id] = chunk_counts.get(c.paper_id, 0) + 1
    return {
        "index_dir": str(index_dir),
        "format_version": m.format_version,
        "library_version": m.library_version,
        "created_at": m.created_at,
        "model": m.model_name,
        "model_revision": m.model_revision,
        "dimension": m.dimension,
        "index_type": m.index_type or "lexical-only",
        "search_param": m.search_param,
        "backend": m.backend,
        "papers": m.paper_count,
        "chunks": m.chunk_count,
        "size_bytes": sum(p.stat().st_size for p in gen.rglob("*") if p.is_file()),
        "chunker": m.chunker.model_dump(),
        "build_options": m.build_options.model_dump() if m.build_options else None,
        "corpus_fingerprint": m.corpus_fingerprint,
        "lexicon": lexicon_summary(lexicon),
        "loanwords": store.loanword_summary(),
        "word_forms": words,
        "fusion": m.fusion.model_dump() if m.fusion is not None else None,
        "confidence": confidence.model_dump() if confidence is not None else None,
        **store.stats(),
        "paper_list": [
            {
                "paper_id": p.id,
                "title": p.title,
                "title_ko": p.title_ko,
                "date": p.date.isoformat() if p.date else None,
                "tags": p.tags,
                "source": p.source,
                "sections": [{"kind": s.kind, "language": s.language, "chars": len(s.text)} for s in p.sections],
                "chunks": chunk_counts.get(p.id, 0),
            }
            for p in sorted(papers.values(), key=lambda p: (p.source, p.id))
        ],
    }
