"""Snippets: which part of a matched chunk a result shows, and where the query's words are in it.

Highlighting and snippet windows find the query's BM25 terms
(``digest_rag.lexical.analysis.tokenize``) back in a text. Korean words carry
particles and endings ("스케일링의", "법칙을", "학습했다"), so Hangul text is
re-analysed with Kiwi (or read from the index's stored Kiwi analyses,
`digest_rag.lexical.word_table`) and each morpheme whose form (nouns) or lemma (verbs,
adjectives) is a query term is marked at its exact character offsets; the
particle stays unmarked. Latin words are matched through the same
normalisation as the index ("models" matches "model"), and the glossary's
English forms of a Korean query term count too ("스케일링 법칙" marks "Scaling Laws").
"""

from __future__ import annotations

import functools
import re
import threading
import weakref
from collections.abc import Iterable, Sequence

# The analyser's own word shapes and tag sets: spans cover exactly what BM25 matched.
from digest_rag.lexical.analysis import LATIN_WORD, StoredAnalysis, kiwi_morphs, needs_kiwi, tokenize_many
from digest_rag.lexical.kiwi import NOUN_TAGS, PRED_TAGS
from digest_rag.lexical.terms import QueryTerms, analyse_query
from digest_rag.models import Chunk, SearchHit

__all__ = ["SNIPPET_CHARS", "Highlighter", "Span", "as_highlighter", "make_snippet", "match_spans", "opening_snippet"]

SNIPPET_CHARS = 320

Span = tuple[int, int]



@functools.lru_cache(maxsize=1 << 16)
def _latin_word_tokens(word: str) -> frozenset[str]:
    # A Latin word alone never reaches Kiwi and its tokens depend on nothing else, so they are kept by word:
    # a snippet's few hundred words are mostly words seen in earlier snippets (its analysis was half of a
    # lexical search's time).
    return frozenset(tokenize_many([word])[0])


def _latin_spans(text: str, terms: frozenset[str]) -> list[Span]:
    return [m.span() for m in LATIN_WORD.finditer(text) if not terms.isdisjoint(_latin_word_tokens(m.group(0)))]


#: Per word table (an index's `EojeolTable`), the Hangul content morphemes of texts it read for snippets:
#: a text's morphemes do not depend on the question, and the chunks shown recur from search to search.
_CONTENT: weakref.WeakKeyDictionary[object, dict[str, tuple[tuple[str, int, int], ...]]] = weakref.WeakKeyDictionary()
_CONTENT_MAX = 2048
_CONTENT_LOCK = threading.Lock()


def _content_morphs(text: str, stored: StoredAnalysis | None) -> tuple[tuple[str, int, int], ...]:
    """(term, start, end) of each Hangul noun (its form) and verb or adjective (its lemma) of ``text``."""
    try:
        kept = _CONTENT.get(stored) if stored is not None else None
    except TypeError:  # a table that cannot be weakly referenced: nothing is kept for it
        stored, kept = None, None
    hit = kept.get(text) if kept is not None else None
    if hit is not None:
        return hit
    out: list[tuple[str, int, int]] = []
    # Snippets are corpus text: an index's table of Kiwi's readings (``stored``) knows their words, and Kiwi
    # is asked only for a text with a word it lacks.
    for t in kiwi_morphs([text], stored)[0]:
        tag = str(t.tag).split("-", 1)[0]
        if tag in NOUN_TAGS:
            term = t.form
        elif tag in PRED_TAGS:
            term = getattr(t, "lemma", None) or t.form + "다"
        else:
            continue
        if needs_kiwi(t.form):
            out.append((term, int(t.start), int(t.start) + int(t.len)))
    found = tuple(out)
    if stored is not None:
        with _CONTENT_LOCK:
            kept = _CONTENT.setdefault(stored, {})
            if len(kept) >= _CONTENT_MAX:
                kept.clear()
            kept[text] = found
    return found


def _korean_spans(text: str, terms: frozenset[str], stored: StoredAnalysis | None) -> list[Span]:
    # Only a Hangul term can match a Hangul morpheme (the check below): without one, Kiwi (seconds to
    # start in a fresh process) has nothing to find.
    if not needs_kiwi(text) or not any(needs_kiwi(t) for t in terms):
        return []
    return [(start, end) for term, start, end in _content_morphs(text, stored) if term in terms]


def _merge(spans: Iterable[Span]) -> list[Span]:
    out: list[Span] = []
    for start, end in sorted(spans):
        if end <= start:
            continue
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


class Highlighter:
    """Where a search's terms occur in a text: made once per search from its `QueryTerms`.

    ``terms`` are normalised words (`QueryTerms.highlight`: the question's words and their glossary and lexicon
    expansions); ``stored`` (the index's word table) reads the Korean words of a text without Kiwi.
    """

    __slots__ = ("stored", "terms")

    def __init__(self, terms: Iterable[str], stored: StoredAnalysis | None = None) -> None:
        self.terms = frozenset(terms)
        self.stored = stored

    @classmethod
    def of(cls, query: QueryTerms, stored: StoredAnalysis | None = None) -> Highlighter:
        """The highlighter of an analysed question."""
        return cls(query.highlight, stored)

    def spans(self, text: str) -> list[Span]:
        """Sorted, non-overlapping ``(start, end)`` character spans of the terms in ``text``."""
        if not self.terms or not text:
            return []
        return _merge([*_latin_spans(text, self.terms), *_korean_spans(text, self.terms, self.stored)])


def as_highlighter(query: str | Highlighter | Iterable[str]) -> Highlighter:
    """A `Highlighter` as given, of normalised terms, or of a question typed as text (analysed here: a
    search's results carry the one it made, `SearchResults.highlighter`, so showing them analyses nothing)."""
    if isinstance(query, Highlighter):
        return query
    return Highlighter.of(analyse_query(query)) if isinstance(query, str) else Highlighter(query)


def match_spans(text: str, query: str | Highlighter | Iterable[str]) -> list[Span]:
    """Sorted, non-overlapping ``(start, end)`` character spans in ``text`` of the words of ``query`` (a
    question, normalised terms or a `Highlighter`)."""
    return as_highlighter(query).spans(text)


# A sentence ends before this whitespace: Latin/CJK punctuation, or the Korean
# declarative ending "다." that most commentary sentences close with.
_SENTENCE_END = re.compile(r"[.!?。？！]\s")


def _window_start(flat: str, spans: Sequence[tuple[int, int]], limit: int) -> int:
    """Where a ``limit``-character window over ``flat`` shows the most query matches.

    The window opens a little before its first match (a fifth of ``limit``) so
    the reader sees what leads up to it, at the sentence start nearest to that
    point when one is close enough, else at a word boundary.
    """
    lead = limit // 5
    best, best_count = 0, -1
    for first, _end in spans:
        start = max(0, min(first - lead, len(flat) - limit))
        count = sum(1 for a, b in spans if a >= start and b <= start + limit)
        if count > best_count:  # strictly greater: ties keep the earliest window
            best, best_count = start, count
    if best == 0:
        return 0
    inside = [(a, b) for a, b in spans if a >= best and b <= best + limit]
    first_in, last_in = inside[0][0], inside[-1][1]
    # Moving the start earlier must not push the last counted match past the cut
    # (which lands on the last space before ``limit``, hence the 2 characters).
    floor = min(first_in, max(0, best - lead, last_in - limit + 2))
    starts = [m.end() for m in _SENTENCE_END.finditer(flat, floor, first_in)]
    if starts:
        return min(starts, key=lambda i: abs(i - best))
    space = flat.rfind(" ", floor, best + 1)
    return space + 1 if space >= 0 else max(best, floor)


def make_snippet(text: str, limit: int = SNIPPET_CHARS, query: str | Highlighter | Iterable[str] | None = None) -> str:
    """The chunk text on one line, about ``limit`` characters, cut at word boundaries.

    With ``query`` (a question, a `Highlighter`, or normalised terms such as `QueryTerms.highlight`),
    a chunk longer than ``limit`` is shown around the passage with the most
    query-term matches rather than from its start, with "…" marking what was
    left out on either side; a chunk without matches is shown from its start.
    """
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    start = 0
    if query is not None:
        spans = match_spans(flat, query)
        if spans:
            start = _window_start(flat, spans, limit)
    body = flat[start:]
    prefix = "… " if start > 0 else ""
    if len(body) <= limit:
        return prefix + body
    cut = body.rfind(" ", 0, limit)
    return prefix + body[: cut if cut > limit // 2 else limit].rstrip() + " …"


def opening_snippet(hit: SearchHit, chunk: Chunk | None, terms: str | Highlighter | Iterable[str]) -> SearchHit:
    """A hit found by its title passage alone shows the paper's opening text (``chunk``) as its snippet."""
    if chunk is None:
        return hit
    return hit.model_copy(update={
        "snippet": make_snippet(chunk.text, query=terms), "section": chunk.section_kind, "language": chunk.language,
        "chunk_id": chunk.id,
    })
