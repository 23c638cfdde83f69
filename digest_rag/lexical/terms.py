"""What BM25 indexes and asks for: a document's tokens with their glossary concepts, a question's weighted terms."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict

from digest_rag.lexical.analysis import StoredAnalysis, _analyse_many
from digest_rag.lexical.glossary import (
    CONCEPT_WEIGHT,
    EXPANSION_WEIGHT,
    Glossary,
    default_glossary,
)
from digest_rag.lexical.loanwords import curated_stem
from digest_rag.models import Language
from digest_rag.text import detect_language

if TYPE_CHECKING:  # pragma: no cover - typing only
    from digest_rag.lexical.lexicon import MinedLexicon
    from digest_rag.lexical.loanwords import Loanwords

#: Where a query term comes from: the question's own words, a glossary concept token (never a word of any
#: text), the other language's forms of a glossary concept, the lexicon mined from the corpus, or the English
#: word a Hangul loanword of the question spells (`lexical.loanwords`).
TermSource = Literal["question", "concept", "glossary", "lexicon", "loanword"]


class QueryTerms(BaseModel):
    """A question analysed once per search, then handed to every part that needs its words.

    The lexical retriever scores ``weights``; snippets and highlighting look for `highlight` (the question's
    words and their glossary and lexicon expansions, so a match found through an expansion is marked too);
    ``names`` are the model or method names the question uses (known-item matching).
    """

    model_config = ConfigDict(frozen=True)

    text: str
    #: The question's own tokens in order, repeats kept (its size: what serve's cost limit counts).
    tokens: tuple[str, ...]
    weights: Mapping[str, float]
    sources: Mapping[str, TermSource]
    language: Language
    names: tuple[str, ...] = ()

    @property
    def highlight(self) -> frozenset[str]:
        """The terms that can occur as words of a text: every term but the concept tokens."""
        return frozenset(t for t, source in self.sources.items() if source != "concept")


def analyse_query(text: str, *, glossary: Glossary | None = None, lexicon: MinedLexicon | None = None,
                  stored: StoredAnalysis | None = None, weight: float = EXPANSION_WEIGHT,
                  loanwords: Loanwords | None = None, indexed: Callable[[str], bool] | None = None) -> QueryTerms:
    """The `QueryTerms` of a question: its tokens (1.0), its glossary concept tokens (`CONCEPT_WEIGHT`), the
    other forms of its glossary concepts (``weight``), with ``lexicon`` the mined partners of its words, and
    with ``loanwords`` the English words its Hangul loanwords spell (`loanwords.Loanwords.weight`).

    ``stored`` (an index's word table) reads Korean words without starting Kiwi wherever it knows them.
    ``indexed`` (whether the index holds a token): a Korean compound it does not hold, written as one word
    ("랜덤시드", "인코더디코더") and read as one noun, is asked for as its indexed parts too (`compound_parts`).
    """
    gloss = glossary or default_glossary()
    a = _analyse_many([text], stored)[0]
    tokens, seq = a.bag(), a.sequence()
    if indexed is not None:
        tokens += [p for p in dict.fromkeys(p for t in tokens for p in compound_parts(t, indexed)) if p not in tokens]
    sources: dict[str, TermSource] = dict.fromkeys(tokens, "question")
    matched = gloss.match(seq, tokens)  # once, for the expansions and the concept tokens alike
    weights = gloss.expand_matched(tokens, matched, weight) if weight > 0 else dict.fromkeys(tokens, 1.0)
    for t in weights:
        sources.setdefault(t, "glossary")
    for c in (gloss.concept_token(cid) for cid in matched):
        weights[c] = max(weights.get(c, 0.0), CONCEPT_WEIGHT)
        sources.setdefault(c, "concept")
    if lexicon is not None:
        weights = lexicon.expand(weights)
        for t in weights:
            sources.setdefault(t, "lexicon")
    if loanwords is not None:
        # A predicate's lemma ("줄이다") is no loanword, and neither is a word the glossary translates ("샘플" is
        # sample, never "simple"): the curated entry decides. Other nouns are read as written ("레이턴트" ->
        # latent).
        for token in tokens:
            if token.endswith("다") or gloss.names(token):
                continue
            for spelled in loanwords.spell(token):
                if spelled not in weights:
                    weights[spelled] = loanwords.weight(token)
                    sources[spelled] = "loanword"
        # A listed loanword as the question writes it, a particle or ending cut off: the analysis may have
        # read it otherwise ("맵을" as the adjective 맵다) or as nothing at all ("서치해서").
        for word in _HANGUL_RUN.findall(text):
            stem = curated_stem(word)
            if stem is None or gloss.names(stem):
                continue
            for spelled in loanwords.curated(stem):
                if spelled not in weights:
                    weights[spelled] = loanwords.weight(stem)
                    sources[spelled] = "loanword"
    return QueryTerms(text=text, tokens=tuple(tokens), weights=weights, sources=sources,
                      language=detect_language(text))


_HANGUL_WORD = re.compile(r"[\uac00-\ud7a3]{3,}")
_HANGUL_RUN = re.compile(r"[\uac00-\ud7a3]+")


def compound_parts(token: str, indexed: Callable[[str], bool]) -> list[str]:
    """The indexed words an unindexed Hangul compound is made of, two or three of at least two syllables each
    ("랜덤시드" -> 랜덤, 시드), the longest first part first; [] for an indexed token or one with no such split.

    Readers run words together that notes write apart (or Kiwi reads a run-together word as one noun): the
    whole finds nothing, its parts do. Tuning files: 2 questions ranked higher, none lower (docs/EVAL.md)."""
    if not _HANGUL_WORD.fullmatch(token) or indexed(token):
        return []
    return _split(token, indexed, 3) or []


def _split(word: str, indexed: Callable[[str], bool], parts: int) -> list[str] | None:
    for cut in range(len(word) - 2, 1, -1):
        head, tail = word[:cut], word[cut:]
        if indexed(head):
            if indexed(tail):
                return [head, tail]
            rest = _split(tail, indexed, parts - 1) if parts > 2 and len(tail) >= 4 else None
            if rest:
                return [head, *rest]
    return None


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
    ``stored`` (an index's word table) reads Korean words
    from an index's table of Kiwi's analyses instead of starting Kiwi.
    """
    return dict(analyse_query(text, glossary=glossary, stored=stored, weight=weight).weights)
