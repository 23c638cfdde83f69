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
from digest_rag.lexical.analysis import (
    LATIN_WORD,
    StoredAnalysis,
    kiwi_morphs,
    needs_kiwi,
    tokenize_many,
)
from digest_rag.lexical.kiwi import NOUN_TAGS, PRED_TAGS
from digest_rag.lexical.terms import QueryTerms, analyse_query
from digest_rag.lexical.word_table import WORD
from digest_rag.models import Chunk, SearchHit
from digest_rag.text import (
    HANGUL_FINALS,
    HANGUL_FIRST,
    HANGUL_VOWELS,
    SENTENCE_END,
    hangul_parts,
)

__all__ = ["SNIPPET_CHARS", "Highlighter", "Span", "as_highlighter", "make_snippet", "match_spans", "opening_snippet"]

SNIPPET_CHARS = 320

Span = tuple[int, int]



@functools.lru_cache(maxsize=1 << 16)
def _latin_word_tokens(word: str) -> frozenset[str]:
    # A Latin word alone never reaches Kiwi and its tokens depend on nothing else, so they are kept by word:
    # a snippet's few hundred words are mostly words seen in earlier snippets (its analysis was half of a
    # lexical search's time).
    return frozenset(tokenize_many([word])[0])


@functools.lru_cache(maxsize=256)
def _latin_needles(terms: frozenset[str]) -> tuple[str, ...]:
    # A Latin word's token is the word lowercased, less a possessive or plural ending ("studies" -> "study"):
    # the token, or all but its "y", is written inside the word.
    return tuple({t[:-1] if t.endswith("y") and len(t) > 2 else t for t in terms if t.isascii() and t})


# The characters of a Latin word (`LATIN_WORD`): letters, digits and the marks that join its parts; and the
# letters beyond ASCII, whose words are always tokenized (the analysis' Unicode normalisation may change them).
_LATIN_CHAR = re.compile(r"[0-9A-Za-z\u00c0-\u024f\-.'\u2019]")
_BEYOND_ASCII = re.compile(r"[\u00c0-\u024f]")


def _latin_spans(text: str, terms: frozenset[str]) -> list[Span]:
    lowered = text.lower()
    if len(lowered) != len(text):  # a letter whose lowercase is longer ("İ"): offsets would drift
        return [m.span() for m in LATIN_WORD.finditer(text) if not terms.isdisjoint(_latin_word_tokens(m.group(0)))]
    # Only the words where a term's letters are written are tokenized (a chunk's other words cannot match).
    places = sorted(at for needle in _latin_needles(terms) for at in _find_all(lowered, needle))
    if _BEYOND_ASCII.search(text) is None:
        return _spans_at(text, places, terms)
    spans: list[Span] = []
    i = 0
    for m in LATIN_WORD.finditer(text):
        start, end = m.span()
        while i < len(places) and places[i] < start:
            i += 1
        # A word that is not ASCII may change under the analysis' Unicode normalisation: always tokenized.
        if ((i < len(places) and places[i] < end) or not m.group(0).isascii()) and not terms.isdisjoint(
                _latin_word_tokens(m.group(0))):
            spans.append((start, end))
    return spans


def _spans_at(text: str, places: Sequence[int], terms: frozenset[str]) -> list[Span]:
    """The Latin words holding one of ``places`` (sorted) that give one of ``terms``: each word found from its
    place, never by reading the text's other words (a chunk has a hundred; a question's terms touch a few)."""
    spans: list[Span] = []
    # Where a scan from the text's start would look for its next word: the end of the last word read (or the
    # start of one not read yet). Nothing before it is read again, so a text is read at most once whatever
    # its places.
    resume = 0
    for at in places:
        if at < resume:
            continue
        # Back to the start of the run of word characters ``at`` is in (no word crosses the character before
        # it), or to ``resume``: a scan from either finds the words a scan from the text's start finds.
        start = at
        while start > resume and _LATIN_CHAR.match(text, start - 1):
            start -= 1
        m = next((m for m in LATIN_WORD.finditer(text, start) if m.end() > at), None)
        if m is None:
            break  # no word from here on
        if m.start() > at:
            resume = m.start()
            continue
        resume = m.end()
        if not terms.isdisjoint(_latin_word_tokens(m.group(0))):
            spans.append(m.span())
    return spans


def _find_all(text: str, needle: str) -> list[int]:
    out: list[int] = []
    at = text.find(needle)
    while at >= 0:
        out.append(at)
        at = text.find(needle, at + 1)
    return out


#: Per word table (an index's `EojeolTable`), the Hangul content morphemes of the words it read for snippets:
#: a word's morphemes do not depend on the question, and the chunks shown recur from search to search.
_CONTENT: weakref.WeakKeyDictionary[object, dict[str, tuple[tuple[str, int, int], ...] | None]] = (
    weakref.WeakKeyDictionary())
_CONTENT_MAX = 1 << 15
_CONTENT_LOCK = threading.Lock()

# The vowels a one-syllable verb or adjective stem may be written with once conjugated: contraction with
# 아/어 (하 -> 해, 보 -> 봐, 주 -> 줘, 쓰 -> 써, 시 -> 셔, 되 -> 돼) and 우-irregular (푸 -> 퍼). Vowel indices:
# ㅏ0 ㅐ1 ㅑ2 ㅒ3 ㅓ4 ㅔ5 ㅕ6 ㅖ7 ㅗ8 ㅘ9 ㅙ10 ㅚ11 ㅛ12 ㅜ13 ㅝ14 ㅞ15 ㅟ16 ㅠ17 ㅡ18 ㅢ19 ㅣ20.
_CONTRACTED = {0: (1,), 8: (9,), 11: (10,), 13: (14, 4), 18: (4, 0), 20: (6,)}


def _content(morphs: Iterable[object]) -> tuple[tuple[str, int, int], ...]:
    """(term, start, end) of each Hangul noun (its form) and verb or adjective (its lemma) among ``morphs``."""
    out: list[tuple[str, int, int]] = []
    for t in morphs:
        tag = str(t.tag).split("-", 1)[0]  # type: ignore[attr-defined]
        if tag in NOUN_TAGS:
            term = t.form  # type: ignore[attr-defined]
        elif tag in PRED_TAGS:
            term = getattr(t, "lemma", None) or t.form + "다"  # type: ignore[attr-defined]
        else:
            continue
        if needs_kiwi(t.form):  # type: ignore[attr-defined]
            out.append((term, int(t.start), int(t.start) + int(t.len)))  # type: ignore[attr-defined]
    return tuple(out)


def _syllables(first: str, *, one_syllable_stem: bool) -> Iterable[str]:
    """The syllables a predicate stem's first syllable ``first`` may be written as: any final consonant
    (듣 -> 들어, 돕 -> 도와, 모르 -> 몰라, 만들 -> 만드는), and for a one-syllable stem the contracted vowels too.
    Conjugation never changes a stem's first initial consonant."""
    initial, vowel, _final = hangul_parts(first)  # type: ignore[misc]  # the caller checked it is a syllable
    for v in (vowel, *_CONTRACTED.get(vowel, ())) if one_syllable_stem else (vowel,):
        lo = HANGUL_FIRST + (initial * HANGUL_VOWELS + v) * HANGUL_FINALS
        yield from map(chr, range(lo, lo + HANGUL_FINALS))


class _TermPlaces:
    """Where in a text one of a question's Hangul terms may be a morpheme: a noun where it is written as it
    is, a verb or adjective lemma ("바꾸다") where its stem's first syllable may stand. Only the words holding
    such a place are read for highlighting (a chunk has a hundred words; a question's terms touch a few).
    Found with `str.find`: a regular expression of the terms cost more to compile than a search."""

    __slots__ = ("syllables", "words")

    def __init__(self, terms: Iterable[str]) -> None:
        words: set[str] = set()
        syllables: set[str] = set()
        for term in terms:
            words.add(term)
            stem = term[:-1]
            if term.endswith("다") and stem and hangul_parts(stem[0]) is not None:
                syllables.update(_syllables(stem[0], one_syllable_stem=len(stem) == 1))
        self.words = tuple(w for w in words if not (w[:1] in syllables))  # those the syllables find anyway
        self.syllables = frozenset(syllables)

    def find(self, text: str) -> list[int]:
        """Sorted offsets in ``text`` where a term may start."""
        return sorted(at for needle in (*self.words, *self.syllables.intersection(text)) for at in _find_all(text, needle))


@functools.lru_cache(maxsize=256)
def _term_places(terms: frozenset[str]) -> _TermPlaces:
    return _TermPlaces(terms)


def _content_morphs(text: str, stored: StoredAnalysis | None) -> tuple[tuple[str, int, int], ...]:
    """(term, start, end) of each Hangul noun and verb or adjective of ``text``, read as a whole (Kiwi, or the
    table where it knows every word)."""
    return _content(kiwi_morphs([text], stored)[0])


def _words_content(words: Sequence[str], stored: StoredAnalysis) -> dict[str, tuple[tuple[str, int, int], ...] | None]:
    """`_content_morphs` of each word from the table's reading of it (None: unknown word), kept per table; the
    words not kept yet are read in one batch (`StoredAnalysis.read_words`)."""
    try:
        kept = _CONTENT.get(stored)
    except TypeError:  # a table that cannot be weakly referenced: nothing is kept for it
        kept, keep = None, False
    else:
        keep = True
    known = kept if kept is not None else {}
    missing = [w for w in dict.fromkeys(words) if w not in known]
    fresh: dict[str, tuple[tuple[str, int, int], ...] | None] = {}
    if missing:
        read = getattr(stored, "read_words", None)
        readings = read(missing) if read is not None else {w: stored.analyse(w) for w in missing}
        fresh = {w: None if readings[w] is None else _content(readings[w]) for w in missing}  # type: ignore[arg-type]
        if keep:
            with _CONTENT_LOCK:
                table = _CONTENT.setdefault(stored, {})
                if len(table) + len(fresh) > _CONTENT_MAX:
                    table.clear()
                table.update(fresh)
    return {w: fresh[w] if w in fresh else known[w] for w in words}


def _korean_spans(text: str, hangul: frozenset[str], stored: StoredAnalysis | None) -> list[Span]:
    # Only a Hangul term (``hangul``: `Highlighter.hangul`) can match a Hangul morpheme: without one, Kiwi
    # (seconds to start in a fresh process) has nothing to find.
    if not hangul or not needs_kiwi(text):
        return []
    if stored is None or not stored.reads_words_alone:
        return [(start, end) for term, start, end in _content_morphs(text, stored) if term in hangul]
    # Snippets are corpus text: the index's table of Kiwi's readings knows their words, each read alone.
    found: list[tuple[int, str]] = []
    end = 0
    for place in _term_places(hangul).find(text):
        if place < end:  # in the word just found
            continue
        start = place
        while start > end and not text[start - 1].isspace():
            start -= 1
        word = WORD.match(text, start)
        if word is None:
            continue
        end = word.end()
        found.append((start, word.group()))
    contents = _words_content([w for _s, w in found], stored)
    spans: list[Span] = []
    for start, word in found:
        content = contents[word]
        if content is None:  # a word the table lacks (text that is not the corpus'): Kiwi reads the text
            return [(a, b) for term, a, b in _content_morphs(text, stored) if term in hangul]
        spans.extend((start + a, start + b) for term, a, b in content if term in hangul)
    return spans


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

    __slots__ = ("hangul", "stored", "terms")

    def __init__(self, terms: Iterable[str], stored: StoredAnalysis | None = None) -> None:
        self.terms = frozenset(terms)
        self.hangul = frozenset(t for t in self.terms if needs_kiwi(t))  # the terms a Korean morpheme can be
        self.stored = stored

    @classmethod
    def of(cls, query: QueryTerms, stored: StoredAnalysis | None = None) -> Highlighter:
        """The highlighter of an analysed question."""
        return cls(query.highlight, stored)

    def spans(self, text: str) -> list[Span]:
        """Sorted, non-overlapping ``(start, end)`` character spans of the terms in ``text``."""
        if not self.terms or not text:
            return []
        return _merge([*_latin_spans(text, self.terms), *_korean_spans(text, self.hangul, self.stored)])


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
    # A sentence start after ``floor``: its punctuation at or after ``floor`` too (the pattern's look-behind
    # would otherwise see the character before it).
    starts = [m.end() for m in SENTENCE_END.finditer(flat, floor, first_in) if m.start() > floor]
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
