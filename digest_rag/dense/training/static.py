"""The `--static` starting point: a StaticEmbedding over a WordPiece tokenizer trained on the corpus, SVD-initialised.

Nothing is downloaded. The tokenizer is trained on the training texts (both
languages, the glossary's forms included, so every glossary term has tokens).
Each token's vector starts from a truncated SVD (LSI) of a token x document
matrix: documents are the training pairs (each pair's two sides together, so a
Korean term and its English form share documents) and the papers' texts, TF-IDF
weighted. Tokens that share contexts start close, which the contrastive
training then refines; a random start learned less in the same steps.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

__all__ = ["DEFAULT_DIM", "DEFAULT_VOCAB", "svd_table", "static_model", "train_tokenizer"]

DEFAULT_DIM = 512
DEFAULT_VOCAB = 30_000
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def train_tokenizer(texts: Iterable[str], vocab_size: int = DEFAULT_VOCAB) -> Any:
    """A WordPiece `tokenizers.Tokenizer` (NFKC, lower case, BERT pre-tokenizer) trained on ``texts``."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, min_frequency=2,
                                        show_progress=False)
    tok.train_from_iterator(list(texts), trainer)
    return tok


def svd_table(tokenizer: Any, documents: Sequence[str], dim: int, seed: int) -> np.ndarray:
    """(vocab, dim) float32 token vectors from a TF-IDF token x document SVD; unseen tokens get small random rows.

    Rows are scaled to norm ``sqrt(dim)`` (the scale of `nn.EmbeddingBag`'s N(0, 1) start), so the
    optimiser's steps mean the same with or without this start.
    """
    vocab = tokenizer.get_vocab_size()
    rng = np.random.default_rng(seed)
    table = rng.normal(0.0, 0.1, size=(vocab, dim)).astype(np.float32)
    rows: list[int] = []
    cols: list[int] = []
    for j, enc in enumerate(tokenizer.encode_batch(list(documents), add_special_tokens=False)):
        ids = sorted(set(enc.ids))
        rows.extend(ids)
        cols.extend([j] * len(ids))
    if rows:
        _fill_svd(table, rows, cols, len(documents), dim, seed)
    norms = np.linalg.norm(table, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return (table / norms * np.sqrt(dim)).astype(np.float32)


def _fill_svd(table: np.ndarray, rows: list[int], cols: list[int], n_docs: int, dim: int, seed: int) -> None:
    """Overwrite the rows of tokens seen in the documents with their LSI vectors."""
    from scipy import sparse
    from scipy.sparse.linalg import svds

    vocab = table.shape[0]
    m = sparse.csr_matrix((np.ones(len(rows), dtype=np.float64), (rows, cols)), shape=(vocab, n_docs))
    df = np.asarray((m > 0).sum(axis=1)).ravel()
    idf = np.log((1 + n_docs) / (1 + df)) + 1.0
    m = sparse.diags(idf) @ m
    k = min(dim, min(m.shape) - 1)
    # ARPACK's start vector decides the result's signs and order: fix it, so the same seed gives the same model.
    v0 = np.random.default_rng(seed).uniform(-1, 1, size=min(m.shape))
    u, s, _ = svds(m, k=k, v0=v0)
    order = np.argsort(-s)
    vecs = (u[:, order] * np.sqrt(s[order])).astype(np.float32)
    seen = df > 0
    table[seen, :k] = vecs[seen]
    if k < dim:
        table[np.ix_(seen, np.arange(k, dim))] = 0.0


def static_model(texts: Sequence[str], documents: Sequence[str], *, dim: int = DEFAULT_DIM,
                 vocab_size: int = DEFAULT_VOCAB, seed: int = 0, svd: bool = True) -> Any:
    """A SentenceTransformer of one StaticEmbedding module, tokenizer trained on ``texts``, SVD start on ``documents``."""
    import torch
    from sentence_transformers import SentenceTransformer

    try:
        from sentence_transformers.sentence_transformer.modules import StaticEmbedding
    except ImportError:  # sentence-transformers < 6
        from sentence_transformers.models import StaticEmbedding

    tok = train_tokenizer(texts, vocab_size)
    if svd:
        weights = torch.from_numpy(svd_table(tok, documents, dim, seed))
    else:
        gen = torch.Generator().manual_seed(seed)
        weights = torch.randn((tok.get_vocab_size(), dim), generator=gen)
    return SentenceTransformer(modules=[StaticEmbedding(tok, embedding_weights=weights)], device="cpu")
