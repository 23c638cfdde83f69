"""Cutting papers into chunks, reusing the previous index's chunks of papers whose content and chunking are unchanged."""

from __future__ import annotations

from digest_rag.build.chunking import approx_token_count, passage_text
from digest_rag.build.engines import BuildEngine
from digest_rag.build.passage_model import PassageModel
from digest_rag.build.spool import PaperSpool
from digest_rag.models import (
    Chunk,
    ChunkerSettings,
    IndexManifest,
    ProgressCallback,
)
from digest_rag.storage.store import Store
from digest_rag.text import sha256_text


def chunks_reusable(old: IndexManifest | None, model: PassageModel | None, settings: ChunkerSettings) -> bool:
    """Whether the previous index cut its chunks as this build would (then unchanged papers keep theirs).

    A paper's chunks depend on its content, the chunker settings, the token
    counter (the model's tokenizer, or the approximate one without a model)
    and the passage prefix; when all are as before they are read back instead
    of cut again.
    """
    if old is None or old.chunker != settings:
        return False
    if (old.model_name, old.model_revision) != ((model.name, model.revision) if model else (None, None)):
        return False
    return model is None or old.passage_prefix == model.passage_prefix


def chunk_papers_reusing(
    spool: PaperSpool, settings: ChunkerSettings, model: PassageModel | None, passage_prefix: str,
    reuse_from: Store | None, changed: set[str], progress: ProgressCallback | None, engine: BuildEngine,
) -> tuple[list[str], list[str], int]:
    """Chunk every paper of ``spool`` into it, a batch of papers at a time, in paper-id order.

    Papers the previous index (``reuse_from``) holds unchanged keep its chunks;
    the others are cut by ``engine``. Returns the passage each chunk embeds and
    that passage's hash (the embedding cache key), both empty without a model
    (the hashes then go only to the store), and how many papers were cut.
    """
    count = model.count_tokens if model else approx_token_count
    passages: list[str] = []
    hashes: list[str] = []
    cut = done = 0
    total = len(spool)
    if progress:
        progress("chunking", 0, total)
    for batch in spool.batches():
        papers = [p for p, _js in batch]
        reusable: dict[str, list[Chunk]] = {}
        if reuse_from is not None:
            same = reuse_from.paper_ids(p.id for p in papers if p.id not in changed)
            for c in reuse_from.chunks_of(sorted(same)):
                reusable.setdefault(c.paper_id, []).append(c)
        to_cut = [p for p in papers if p.id not in reusable]
        fresh: dict[str, list[Chunk]] = {}
        for c in engine.chunk(to_cut, settings, count, passage_prefix, model.name if model else None, None):
            fresh.setdefault(c.paper_id, []).append(c)
        chunks: list[Chunk] = []
        for paper in papers:
            chunks.extend(reusable.get(paper.id) or fresh.get(paper.id, []))
        by_id = {p.id: p for p in papers}
        texts = [passage_text(by_id[c.paper_id], c.text, settings, c.section_kind) for c in chunks]
        keys = [sha256_text(passage_prefix + p) for p in texts]
        spool.add_chunks(chunks, keys)
        if model is not None:
            passages.extend(texts)
            hashes.extend(keys)
        cut += len(to_cut)
        done += len(papers)
        if progress:
            progress("chunking", done, total)
    return passages, hashes, cut
