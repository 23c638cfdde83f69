"""digest_rag.testing: the offline stand-in models are the same for the same texts (issue 22 item 10: each run of
the notebook, and of the suite, had another stand-in, so other dense figures and another fusion decision)."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

from digest_rag.testing import SPECIAL_TOKENS, _wordpiece_vocab, build_tiny_model, corpus_texts


def _fingerprint(model: Path) -> tuple[dict[str, int], str]:
    vocab = json.loads((model / "tokenizer.json").read_text(encoding="utf-8"))["model"]["vocab"]
    weights = hashlib.sha256(next(model.rglob("model.safetensors")).read_bytes()).hexdigest()
    return vocab, weights


def test_tiny_model_is_the_same_for_the_same_texts(seed_corpus: Path, tmp_path: Path) -> None:
    texts = corpus_texts([seed_corpus])
    first, second = (_fingerprint(build_tiny_model(tmp_path / name, texts)) for name in ("a", "b"))
    assert len(first[0]) == 8000
    assert first == second  # tokenizers' own trainer gave another vocabulary on each build


def test_vocabulary_merges_the_most_frequent_pairs_and_breaks_ties_by_order() -> None:
    words = Counter({"scaling": 3, "scale": 2, "법칙": 1, "법칙을": 1})
    alphabet = {c if i == 0 else f"##{c}" for w in words for i, c in enumerate(w)}
    base = len(SPECIAL_TOKENS) + len(alphabet)
    vocab = _wordpiece_vocab(words, base + 3)
    assert list(vocab)[: len(SPECIAL_TOKENS)] == list(SPECIAL_TOKENS)
    # s c a l: each adjacent pair 5 times, before 법+칙 (2 times); among equal counts the pair that sorts first.
    assert list(vocab)[base:] == ["##al", "##cal", "scal"]
    assert list(vocab.values()) == list(range(base + 3))
    assert _wordpiece_vocab(words, base + 3) == vocab
