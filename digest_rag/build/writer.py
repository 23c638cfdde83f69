"""Writing a build's generation: store, BM25, word table, lexicon, FAISS and the manifest, committed atomically."""

from __future__ import annotations

import datetime as _dt
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from digest_rag.build.engines import BuildEngine, LocalEngine
from digest_rag.build.passage_model import PassageModel
from digest_rag.build.previous import LexicalBase
from digest_rag.build.spool import PaperSpool
from digest_rag.dense.faiss_index import save_faiss, search_param_of
from digest_rag.errors import (
    FusionCalibrationWarning,
    index_write_errors,
)
from digest_rag.lexical.builder import (
    LexicalBuilder,
    TokenCache,
    analysis_cache_key,
    lexical_chunks,
)
from digest_rag.lexical.loanwords import LOANWORD_RULES, loanword_rows
from digest_rag.lexical.word_table import EojeolRecorder
from digest_rag.models import (
    PASSAGE_PREFIX,
    QUERY_PREFIX,
    BuildOptions,
    ChunkerSettings,
    FusionCalibration,
    IndexManifest,
    ProgressCallback,
)
from digest_rag.search.calibration import calibrate_generation, reusable
from digest_rag.search.known_item import NAME_RULES, name_owners
from digest_rag.search.pseudo_queries import (
    PseudoQuerySampler,
    trained_heldout,
    trained_sentences,
)
from digest_rag.storage.generation import (
    PendingGeneration,
    pause_point,
)
from digest_rag.storage.layout import (
    FAISS_FILE,
    FORMAT_VERSION,
    LEXICAL_DIR,
    STORE_FILE,
)
from digest_rag.storage.store import Store, StoreWriter
from digest_rag.text import fingerprint
from digest_rag.version import __version__


class _StoreTokens(TokenCache):
    """BM25 tokens looked up and recorded in SQLite: the new store's doc_tokens (texts seen earlier in this
    build), then the previous store's (the last build's cache); nothing accumulates in memory."""

    def __init__(self, writer: StoreWriter, previous: Store | None, recorder: EojeolRecorder | None = None) -> None:
        super().__init__(None, recorder)
        self._writer = writer
        self._previous = previous
        self._key = analysis_cache_key()
        self._recorded: set[str] = set()
        self._raw: dict[str, str] = {}  # the previous store's JSON of the tokens just looked up there

    def lookup(self, keys: Sequence[str]) -> dict[str, list[str]]:
        found = self._writer.tokens(keys)
        self._recorded = set(found)
        rest = [k for k in keys if k not in found]
        self._raw = {}
        if rest and self._previous is not None:
            found.update(self._previous.tokens_for(self._key, rest, self._raw))
        return found

    def record(self, entries: Mapping[str, list[str]]) -> None:
        self._writer.record_tokens({k: v for k, v in entries.items() if k not in self._recorded}, self._raw)
        self._raw = {}


#: A rebuild that encoded at most this share of its chunks keeps the previous calibration (see `_calibrate`).
RECALIBRATE_SHARE = 0.1


def _calibrate(generation: Path, faiss_index: object, model: PassageModel, sampler: PseudoQuerySampler,
               sizes: tuple[int, int, int], previous: FusionCalibration | None) -> FusionCalibration:
    """The index's fusion weights (search/calibration.py): measured on its own pseudo-queries, or the previous
    build's when this one changed little: the same model, about the same number of papers, and at most
    `RECALIBRATE_SHARE` of the chunks newly encoded (``sizes``: papers, chunks, passages encoded), so a small
    rebuild stays as cheap as it was before calibration existed."""
    n_papers, n_chunks, encoded = sizes
    if (previous is not None and reusable(previous, model.name, n_papers)
            and encoded <= RECALIBRATE_SHARE * max(n_chunks, 1)):
        return previous
    queries = sampler.queries()
    enc = model.encoder(3 * len(queries))  # the queries, and their stand-ins' passages
    fusion = calibrate_generation(generation, faiss_index, enc.encode_queries, queries, n_papers,
                                  encode_passages=enc.encode_passages, english_share=sampler.english_share,
                                  model_name=model.name)
    if fusion.dense_off:
        warnings.warn(f"hybrid search will be lexical search on this index: {fusion.decision}",
                      FusionCalibrationWarning, stacklevel=2)
    return fusion


@dataclass(frozen=True)
class GenerationContent:
    """What a new generation holds: the spool's papers and chunks, each chunk's passage hash and vector (None:
    lexical-only), the model that made them, and the options and chunker settings it is built with."""

    spool: PaperSpool
    hashes: list[str]
    vectors: np.ndarray | None
    model: PassageModel | None
    settings: ChunkerSettings
    options: BuildOptions
    #: Passages this build encoded (the rest came from caches): decides whether the fusion is measured again.
    encoded: int = 0


@dataclass(frozen=True)
class Inherited:
    """What the generation being replaced lends the new one: its store (the BM25 tokens of texts it analysed),
    its word-table rows, its lexicon base and its fusion calibration."""

    store: Store | None = None
    eojeol_rows: dict[str, tuple[str, int]] | None = None
    base: LexicalBase | None = None
    fusion: FusionCalibration | None = None


def write_generation(index_dir: Path, content: GenerationContent, inherited: Inherited,
                     progress: ProgressCallback | None, inputs: str | None,
                     engine: BuildEngine | None = None) -> tuple[IndexManifest, int]:
    """Write store, FAISS and BM25 files into a new generation and commit it; returns its manifest and
    how many texts Kiwi analysed. Papers and chunks stream from the spool a batch at a time; the BM25
    tokens of texts the previous store analysed are read back from it, not analysed again; the word
    table and lexicon start from the previous generation's."""
    spool, hashes, vectors, encoder = content.spool, content.hashes, content.vectors, content.model
    settings, options = content.settings, content.options
    previous, eojeol_rows, base, previous_fusion = (inherited.store, inherited.eojeol_rows, inherited.base,
                                                     inherited.fusion)
    # A full disk (or quota, read-only mount) before the commit: one typed line, the old index untouched.
    with index_write_errors(index_dir), PendingGeneration(index_dir) as gen:
        if progress:
            progress("indexing", 0, 3)
        n_papers, n_chunks = len(spool), spool.chunk_count
        writer = StoreWriter(gen.path / STORE_FILE, analysis_cache_key())
        try:
            # The word table (eojeols.py) starts from the previous one: reused tokens' texts are not analysed.
            base = base or LexicalBase()
            tokens = _StoreTokens(writer, previous, EojeolRecorder(eojeol_rows, base=base.eojeols))
            lexical = LexicalBuilder(None, tokens, previous_lexicon=base.lexicon)
            ids: list[np.ndarray] = []
            n_lexical = 0
            sampler = PseudoQuerySampler(keep=trained_heldout(encoder.name if encoder else None),
                                         sentences=trained_sentences(encoder.name if encoder else None)) \
                if vectors is not None else None
            for batch in spool.batches():
                writer.add_papers(batch)
                rows = spool.chunks_of([p.id for p, _js in batch])
                chunks = [c for c, _h in rows]
                writer.add_chunks(chunks, [h for _c, h in rows])
                # The store keeps BM25's tokens as the next build's cache (see _StoreTokens).
                bm25_docs = lexical_chunks(chunks)
                lexical.add(bm25_docs, {p.id: p for p, _js in batch})
                n_lexical += len(bm25_docs)
                ids.append(np.fromiter((c.id for c in chunks), dtype=np.int64, count=len(chunks)))
                if sampler is not None:
                    sampler.add(chunks)
            if vectors is not None:
                writer.add_embeddings(hashes, vectors)
            lex = lexical.finish()  # before the commit: mining the lexicon may analyse (and record) phrases
            # The English tokens a question's Hangul loanwords may spell, by consonant skeleton.
            writer.add_loanwords(loanword_rows(lex.vocabulary(), writer.author_names()), LOANWORD_RULES)
            # Known-item names and English-only papers, from all papers at once (never per search process).
            writer.add_search_tables(name_owners(writer.titles), NAME_RULES)
            writer.finish(n_lexical)
        finally:
            writer.close()
        used_factory = search_param = faiss_version = None
        if vectors is not None:
            import faiss

            fidx, used_factory = (engine or LocalEngine()).build_faiss(
                np.concatenate(ids), vectors, options.factory, progress)
            save_faiss(fidx, gen.path / FAISS_FILE)
            search_param, faiss_version = search_param_of(fidx), faiss.__version__
        pause_point("writing")
        if progress:
            progress("indexing", 1, 3)
        lex.save(gen.path / LEXICAL_DIR)
        fusion = None
        if vectors is not None and encoder is not None and sampler is not None:
            fusion = _calibrate(gen.path, fidx, encoder, sampler, (n_papers, n_chunks, content.encoded),
                                previous_fusion)
        if progress:
            progress("indexing", 2, 3)
        manifest = IndexManifest(
            format_version=FORMAT_VERSION,
            library_version=__version__,
            created_at=_dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            data_dir=gen.name,
            model_name=encoder.name if encoder else None,
            model_revision=encoder.revision if encoder else None,
            dimension=encoder.dimension if encoder else None,
            query_prefix=encoder.query_prefix if encoder else QUERY_PREFIX,
            passage_prefix=encoder.passage_prefix if encoder else PASSAGE_PREFIX,
            normalized=True,
            chunker=settings,
            build_options=options,
            corpus_fingerprint=fingerprint(spool.sorted_json(), presorted=True),
            inputs_fingerprint=inputs,
            paper_count=n_papers,
            chunk_count=n_chunks,
            faiss_version=faiss_version,
            index_type=used_factory,
            search_param=search_param,
            backend=encoder.backend if encoder else None,
            lexical=True,
            sources=spool.sources(),
            files=gen.checksums(),
            fusion=fusion,
        )
        gen.commit(manifest)
        if progress:
            progress("indexing", 3, 3)
    return manifest, tokens.analysed
