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
#: Word starts up to this many characters (shorter than the word) and endings up to `SUFFIX_MAX` are pieces.
PIECE_MAX = 8
SUFFIX_MAX = 3


def train_tokenizer(texts: Iterable[str], vocab_size: int = DEFAULT_VOCAB) -> Any:
    """A WordPiece `tokenizers.Tokenizer` (NFKC, lower case, BERT pre-tokenizer, Hangul apart) whose vocabulary fits ``texts``.

    The vocabulary is chosen here rather than by `tokenizers`' WordPiece trainer, which breaks ties
    between equally frequent merges in hash order and so gives another vocabulary on every run: the
    same texts must give the same model. Every character (and its ``##`` continuation) is in it, then,
    by frequency with ties broken alphabetically: the words written at least twice, and the word
    starts and ``##`` endings they share (a Korean stem and its particles: 모델 + ##을; "transform" +
    ##ers). Greedy longest-match WordPiece then splits unseen words into those pieces.
    """
    from collections import Counter

    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    # Hangul runs split from Latin ones: "transformer의" is the English word and a particle, so the English term
    # of a Korean note shares its vector with the English title's.
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.BertPreTokenizer(),
        pre_tokenizers.Split(Regex("[\uac00-\ud7a3\u3131-\u318e]+"), behavior="isolated"),
    ])
    words: Counter[str] = Counter()
    for text in texts:
        words.update(w for w, _ in tok.pre_tokenizer.pre_tokenize_str(tok.normalizer.normalize_str(text)))
    chars = sorted({ch for w in words for ch in w})
    pieces: Counter[str] = Counter()
    for w, n in words.items():
        if len(w) < 2:
            continue
        if n >= 2:
            pieces[w] += 2 * n  # a whole word outranks the pieces it shares its count with
        for k in range(2, min(len(w), PIECE_MAX) ):
            pieces[w[:k]] += n
        for k in range(1, min(len(w), SUFFIX_MAX + 1)):
            pieces["##" + w[-k:]] += n
    vocab = list(SPECIAL_TOKENS) + chars + ["##" + ch for ch in chars]
    known = set(vocab)
    ranked = sorted((p for p, n in pieces.items() if n >= 2 and p not in known), key=lambda p: (-pieces[p], p))
    vocab += ranked[: max(0, vocab_size - len(vocab))]
    out = Tokenizer(models.WordPiece(vocab={t: i for i, t in enumerate(vocab)}, unk_token="[UNK]",
                                     max_input_chars_per_word=100))
    out.normalizer = tok.normalizer
    out.pre_tokenizer = tok.pre_tokenizer
    out.decoder = decoders.WordPiece()
    return out


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
