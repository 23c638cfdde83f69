"""What BM25 indexes and asks for: a document's tokens with their glossary concepts, a question's weighted terms."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from digest_rag.lexical.analysis import StoredAnalysis, _analyse_many, _stored
from digest_rag.lexical.glossary import (
    CONCEPT_WEIGHT,
    EXPANSION_WEIGHT,
    Glossary,
    default_glossary,
)


def document_tokens(texts: Sequence[str], glossary: Glossary | None = None,
                    observe: Callable[[str, Sequence[object]], None] | None = None) -> list[list[str]]:
    """`tokenize_many` plus the glossary's concept tokens: what the BM25 index stores per text.

    ``observe(segment, morphemes)`` sees Kiwi's analysis of each Korean segment (`eojeols.EojeolRecorder`).
    """
    gloss = glossary or default_glossary()
    out: list[list[str]] = []
    for a in _analyse_many(texts, observe=observe):
        toks = a.bag()
        toks.extend(gloss.annotate(a.sequence(), toks))
        out.append(toks)
    return out


def query_term_weights(text: str, glossary: Glossary | None = None, weight: float = EXPANSION_WEIGHT,
                       stored: StoredAnalysis | None = None) -> dict[str, float]:
    """Weighted BM25 terms of a query: its tokens (1.0), its concept tokens
    (`CONCEPT_WEIGHT`) and the other forms of its glossary concepts (``weight``).

    ``glossary`` defaults to the bundled one; ``weight=0`` turns the plain-word
    expansion off (concept tokens stay: they are part of the index's analysis).
    ``stored`` (default: the `stored_analysis` in place) reads Korean words
    from an index's table of Kiwi's analyses instead of starting Kiwi.
    """
    gloss = glossary or default_glossary()
    a = _analyse_many([text], stored if stored is not None else _stored.get())[0]
    tokens, seq = a.bag(), a.sequence()
    terms = gloss.expand(tokens, weight, seq) if weight > 0 else dict.fromkeys(tokens, 1.0)
    for c in gloss.annotate(seq, tokens):
        terms[c] = max(terms.get(c, 0.0), CONCEPT_WEIGHT)
    return terms
