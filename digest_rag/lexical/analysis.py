"""Text analysis for BM25 over bilingual (Korean/English) paper digests.

Korean is agglutinative: "컨텍스트를", "탈옥은" must match "컨텍스트", "탈옥", so
Hangul text goes through the Kiwi morphological analyser and only content
morphemes survive (nouns, verb/adjective lemmas, roots, hanja). Latin-script
words and numbers are *not* taken from Kiwi: a small regex tokenizer handles
them so that hyphenated terms ("SWE-bench", "JetMoE-8B") and version-like
numbers ("GPT-3.5") are kept whole *and* split, which Kiwi would not do.

The same function analyses documents and queries, so whatever normalisation
is chosen here is automatically consistent between the two. Changing it
changes the index: bump `ANALYSIS_VERSION` so stale lexical indexes are
detected and rebuilt.

Cross-lingual matching goes through a bilingual ML glossary (`Glossary`,
data/ml_glossary_ko_en.tsv): much of the indexed text is English while
readers write Korean translations and transliterations ("스케일링 법칙",
"증류", "탈옥"). Two mechanisms, both measured (docs/EVAL.md):

* concept tokens: a document or query naming a glossary concept in either
  language gets the concept's token ("ml:<id>"), so "스케일링 법칙" in a query
  meets "scaling laws" in an abstract *as a phrase*, not as the loose words
  "scaling" and "law" (which "power law" also contains);
* query expansion: a query term found in the glossary also searches for the
  concept's other forms as plain words, at `EXPANSION_WEIGHT`, which reaches
  text where the words occur apart ("laws of scaling").
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from digest_rag.lexical.kiwi import (
    _KIWI_SEGMENT,
    NOUN_TAGS,
    PRED_TAGS,
    get_kiwi,
    has_batchim,
)

#: Version of the bundled glossary file (its "# version:" header must match).
GLOSSARY_VERSION = "3"

__all__ = ["ANALYSIS_VERSION", "LATIN_WORD", "StoredAnalysis", "kiwi_morphs", "needs_kiwi", "tokenize", "tokenize_many"]


#: Stored with every lexical index; a mismatch means the index must be rebuilt.
#: It names the glossary too: expansion changes which documents a stored
#: index returns, so an index must be rebuilt (and re-evaluated) with it.
ANALYSIS_VERSION = f"ko-kiwi-0.24-nomulti+latin-v2+compounds-v1+numbers-v1+ml-concepts-v2+gloss-{GLOSSARY_VERSION}"




# Korean words too common in questions and digests to discriminate between
# papers ("...에 대한 논문을 찾아줘"); applied to documents and queries alike.
_KO_STOP = frozenset(
    {
        "하다", "되다", "있다", "없다", "이다", "아니다", "같다", "대하다", "위하다", "통하다",
        "관하다", "보다", "주다", "찾다", "알다", "알리다", "싶다", "말하다", "다루다",
        "논문", "연구", "내용", "방법", "경우", "정도", "부분", "관련", "무엇", "어떤", "의",
    }
)

# Minimal English function-word list: BM25's idf already discounts frequent
# words, this only removes the ones that make query scores noisy.
_EN_STOP = frozenset(
    """a an the of to in on for and or but is are was were be been being by with as at from
    that this these those it its into than then there their they we our you your i he she
    which who whom what when where why how do does did not no can could should would will
    about over under via using use used such also both each other more most any all""".split()
)

_HANGUL_OR_HANJA = re.compile(r"[\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f\u4e00-\u9fff\u3400-\u4dbf\uf900-\ufaff]")
# A Latin/number word, optionally joined by hyphens, dots or apostrophes
# ("swe-bench", "gpt-3.5", "model's", "v1.0").
LATIN_WORD = re.compile(
    r"[0-9A-Za-z\u00c0-\u024f]+(?:[-.'\u2019][0-9A-Za-z\u00c0-\u024f]+)*"
)
_PART_SPLIT = re.compile(r"[-.]")


def needs_kiwi(text: str) -> bool:
    """Whether ``text`` holds Hangul or Hanja: the characters Kiwi's part of the analysis reads."""
    return _HANGUL_OR_HANJA.search(text) is not None
# Characters Kiwi does not need to see (controls, surrogates, unassigned).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
















def _normalize(text: str) -> str:
    # NFKC folds full-width Latin ("ＬｏＲＡ") and compatibility forms; control
    # characters become spaces so they never glue words together.
    text = unicodedata.normalize("NFKC", text)
    return _CONTROL.sub(" ", text)


def _latin_token(word: str) -> str:
    """Lowercase + light English normalisation (possessive, plural 's')."""
    w = word.lower()
    if w.endswith(("'s", "\u2019s")):
        w = w[:-2]
    w = w.strip("'\u2019")
    if len(w) > 3 and w.isalpha():
        if w.endswith("ies") and len(w) > 4:
            w = w[:-3] + "y"
        elif w.endswith("s") and not w.endswith(("ss", "us", "is")):
            w = w[:-1]
    return w


def _latin_tokens(text: str) -> list[tuple[int, str]]:
    """(position, token) of every Latin/number word of ``text``."""
    out: list[tuple[int, str]] = []
    for m in LATIN_WORD.finditer(text):
        raw = m.group(0)
        pos = m.start()
        parts = [p for p in _PART_SPLIT.split(raw) if p]
        if len(parts) > 1:
            joined = _latin_token(raw)
            if joined:
                out.append((pos, joined))
            # Dots inside numbers ("12.29", "3.5") are decimals: do not split
            # them into meaningless digit fragments.
            if "-" in raw:
                for p in raw.split("-"):
                    tok = _latin_token(p)
                    if tok and tok not in _EN_STOP:
                        out.append((pos, tok))
            continue
        tok = _latin_token(raw)
        if tok and tok not in _EN_STOP:
            out.append((pos, tok))
    return out


# ------------------------------------------------------------------ numbers
# "70억", "2조", "1.5만", "천억" and "7 billion", "2T" name the same quantities;
# each gets one canonical token written the way English model cards write it
# ("7b", "2t", "15k", "100b"). English "7B" already analyses to "7b", so a
# Korean "70억" meets it; "7 billion" gets "7b" added the same way.
_KO_SMALL = {"십": 10, "백": 100, "천": 1000}
_KO_BIG = {"만": 10**4, "억": 10**8, "조": 10**12}
_KO_NUMBER = re.compile(
    r"(?<![0-9.])(?:(\d+(?:\.\d+)?)\s?([십백천])?\s?([만억조])|(\d+(?:\.\d+)?)\s?천(?![만억조])|([십백천])([만억조]))"
)
_EN_SCALE = {"thousand": 10**3, "million": 10**6, "billion": 10**9, "trillion": 10**12, "bn": 10**9}
_EN_NUMBER = re.compile(r"(?<![0-9.])(\d+(?:\.\d+)?)\s?(thousand|million|billion|trillion|bn)\b", re.IGNORECASE)
_SCALES = ((10**12, "t"), (10**9, "b"), (10**6, "m"), (10**3, "k"))


def number_token(value: float) -> str | None:
    """The canonical token of a large quantity: 7e9 -> "7b", 1.5e4 -> "15k"; None below 1000."""
    for size, suffix in _SCALES:
        if value >= size:
            mantissa = f"{value / size:.3f}".rstrip("0").rstrip(".")
            return mantissa + suffix
    return None


def _number_tokens(text: str) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    for m in _KO_NUMBER.finditer(text):
        digits, small, big, digits_thousand, small_only, big_only = m.groups()
        if digits_thousand is not None:
            value = float(digits_thousand) * 1000
        elif small_only is not None:
            value = float(_KO_SMALL[small_only] * _KO_BIG[big_only])
        else:
            value = float(digits) * (_KO_SMALL[small] if small else 1) * _KO_BIG[big]
        tok = number_token(value)
        if tok:
            out.append((m.start(), tok))
    for m in _EN_NUMBER.finditer(text):
        tok = number_token(float(m.group(1)) * _EN_SCALE[m.group(2).lower()])
        if tok:
            out.append((m.start(), tok))
    return out


def _segments(text: str) -> list[tuple[int, str]]:
    """(offset, piece) of Hangul-bearing text small enough for Kiwi, cut at whitespace."""
    if len(text) <= _KIWI_SEGMENT:
        return [(0, text)] if _HANGUL_OR_HANJA.search(text) else []
    segs: list[tuple[int, str]] = []
    start = 0
    n = len(text)
    while start < n:
        end = min(start + _KIWI_SEGMENT, n)
        if end < n:
            # Prefer a line break, then any whitespace, near the limit.
            cut = text.rfind("\n", start + _KIWI_SEGMENT // 2, end)
            if cut < 0:
                cut = max(text.rfind(" ", start + _KIWI_SEGMENT // 2, end), -1)
            if cut > start:
                end = cut
        seg = text[start:end]
        if _HANGUL_OR_HANJA.search(seg):
            segs.append((start, seg))
        start = end
    return segs


# Pronouns are dropped except "자기" (self), which opens ML compounds:
# 자기 지도 학습 (self-supervised), 자기 회귀, 자기 일관성.
_KEEP_NP = frozenset({"자기"})
# Particles Kiwi sometimes leaves glued to a loanword it does not know
# ("미스트랄이" as one noun), by what the stem must end with: a consonant
# (batchim) or a vowel. Korean picks the particle's form by that sound, so the
# check keeps real words such as 전문가 (ends in 가 after a consonant) whole.
# 도/만 are left out: too many nouns end in them (정확도, 유사도).
_AFTER_CONSONANT = ("이나", "으로", "이", "을", "은", "과")
_AFTER_VOWEL = ("로", "가", "를", "는", "와")
_AFTER_ANY = ("에서", "에게", "의", "에")




def _strip_particle(form: str) -> str | None:
    """``form`` without a trailing particle that agrees with its stem's sound, None if none."""
    for group, need in ((_AFTER_ANY, None), (_AFTER_CONSONANT, True), (_AFTER_VOWEL, False)):
        for particle in group:
            stem = form[: -len(particle)]
            if form.endswith(particle) and len(stem) >= 2 and (need is None or has_batchim(stem[-1]) == need):
                return stem
    return None


@dataclass
class _Analysed:
    """One text's analysis. ``seq``: (position, token) of the words, which go into
    the bag of words and are matched against glossary phrases in text order;
    ``match_only``: suffixes the glossary phrases see but the bag does not;
    ``extra``: bag-only tokens (whole compounds, canonical numbers)."""

    seq: list[tuple[int, str]] = field(default_factory=list)
    match_only: list[tuple[int, str]] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)

    def bag(self) -> list[str]:
        return [t for _p, t in sorted(self.seq, key=lambda pt: pt[0])] + self.extra

    def sequence(self) -> list[str]:
        return [t for _p, t in sorted(self.seq + self.match_only, key=lambda pt: pt[0])]


def _korean_tokens(morphs: Iterable[object], offset: int, text: str, out: _Analysed) -> None:
    """Content morphemes of one Kiwi-analysed segment into ``out``.

    A run of nouns written without spaces (a compound: "준지도학습",
    "다발성", "제미나이") gives its parts *and* the whole word: the parts
    meet text that spaces the compound ("강화 학습"), the whole word keeps its
    own meaning. A prefix (XPN: 준-, 비-, 초-) is fused to the noun it modifies
    so "준지도" never reads as the bare "지도" (which means *map* as often as
    *supervision*); a suffix (XSN: -성, -이) lives only in the whole word and in
    the sequence glossary phrases are matched on, so "준지도 학습" reaches
    *semi-supervised learning* and "제미나이를" reaches *Gemini*.
    """
    run: list[str] = []
    run_end = -1
    prefix: tuple[str, int] | None = None  # (form, end offset) of a pending XPN

    def flush() -> None:
        if len(run) > 1:
            joined = "".join(run)
            if joined not in _KO_STOP:
                out.extra.append(joined)
        run.clear()

    for t in morphs:
        tag = str(t.tag).split("-", 1)[0]  # type: ignore[attr-defined]
        start = int(t.start)  # type: ignore[attr-defined]
        end = start + int(t.len)  # type: ignore[attr-defined]
        form = t.form  # type: ignore[attr-defined]
        pos = offset + start
        if start != run_end:
            flush()
        if tag == "XPN":
            prefix = (form, end)
            run_end = end
            continue
        fused = prefix[0] if prefix is not None and prefix[1] == start else ""
        prefix = None
        if not (tag in NOUN_TAGS or tag == "XSN" or (tag == "NP" and form in _KEEP_NP)):
            flush()
            if tag in PRED_TAGS:
                lemma = getattr(t, "lemma", None) or (form + "다")
                if lemma not in _KO_STOP:
                    out.seq.append((pos, lemma))
            continue
        # Latin/digit forms are handled by the regex path; keep Hangul/Hanja only.
        if not _HANGUL_OR_HANJA.search(form):
            flush()
            continue
        run_end = end
        if tag == "XSN":
            if run:
                run.append(form)
                out.match_only.append((pos, form))
            continue
        form = fused + form
        run.append(form)
        if form in _KO_STOP:
            continue
        out.seq.append((pos, form))
        at_word_end = end >= len(text) or not _HANGUL_OR_HANJA.match(text[end])
        if at_word_end and not fused and len(form) >= 3 and tag in ("NNG", "NNP"):
            stem = _strip_particle(form)
            if stem is not None:
                out.seq.append((pos, stem))
    flush()


class StoredAnalysis(Protocol):
    """Kiwi's morphemes of a text rebuilt without Kiwi (`digest_rag.lexical.word_lookup.EojeolTable`)."""

    @property
    def reads_words_alone(self) -> bool:
        """Whether a text's reading is its words' readings, each word (`word_table.WORD`) read alone."""

    def analyse(self, text: str, unknown: Callable[[str], Sequence[tuple[str, str, int, int, str]]] | None = None,
                ) -> Sequence[object] | None:
        """Morphemes of ``text`` with Kiwi's attributes, or None when the table cannot tell; ``unknown(word)``
        reads a word the table lacks (where its words read alone)."""

    def read_words(self, words: Iterable[str]) -> Mapping[str, Sequence[object] | None]:
        """Each word's morphemes read alone (positions within the word), None where the table cannot tell."""


#: Kiwi's readings of what a search sent it (the words an index's table lacks, each alone; a whole short
#: segment where the table cannot read words alone), by text: a process asks Kiwi once per distinct word or
#: question, not once per search. Only searches fill it (``stored`` given), never a build; entries are at
#: most `_KIWI_CACHE_CHARS` long; cleared past the size.
_KIWI_CACHE: dict[str, tuple[object, ...]] = {}
_KIWI_CACHE_MAX = 4096
_KIWI_CACHE_CHARS = 500


def _kiwi_word(word: str) -> tuple[tuple[str, str, int, int, str], ...]:
    """Kiwi's reading of one word alone, (form, tag, start, length, lemma) within the word, kept per process."""
    kept = _KIWI_CACHE.get(word)
    if kept is None:
        kept = tuple((t.form, str(t.tag), t.start, t.len, getattr(t, "lemma", None) or t.form)
                     for t in get_kiwi().tokenize(word))
        if len(_KIWI_CACHE) >= _KIWI_CACHE_MAX:
            _KIWI_CACHE.clear()
        _KIWI_CACHE[word] = kept
    return kept  # type: ignore[return-value]


def kiwi_morphs(segments: Sequence[str], stored: StoredAnalysis | None = None) -> list[Sequence[object]]:
    """Kiwi's morphemes of each segment; with ``stored``, from the table wherever it knows every word (and
    from the process's cache of Kiwi's readings of short segments searches asked before).

    A table whose words read alone (`StoredAnalysis.reads_words_alone`) reads a segment as its words' readings,
    and Kiwi reads only the words it lacks, each alone: the words the table holds are read alone too, and
    Kiwi's cost grows with the text it is given (a question ~0.3-0.8 ms, one word a tenth of that)."""
    if stored is not None and stored.reads_words_alone:
        out: list[Sequence[object] | None] = [stored.analyse(s, _kiwi_word) for s in segments]
    else:
        out = [stored.analyse(s) if stored is not None else None for s in segments]
    todo = [i for i, m in enumerate(out) if m is None]
    if todo and stored is not None:
        for i in todo:
            out[i] = _KIWI_CACHE.get(segments[i])
        todo = [i for i in todo if out[i] is None]
    if todo:
        kiwi = get_kiwi()
        # Kiwi's iterable form analyses the batch with its worker threads.
        fresh = kiwi.tokenize([segments[i] for i in todo]) if len(todo) > 1 else [kiwi.tokenize(segments[todo[0]])]
        for i, morphs in zip(todo, fresh, strict=True):
            out[i] = morphs
            if stored is not None and len(segments[i]) <= _KIWI_CACHE_CHARS:
                if len(_KIWI_CACHE) >= _KIWI_CACHE_MAX:
                    _KIWI_CACHE.clear()
                _KIWI_CACHE[segments[i]] = tuple(morphs)
    return out  # type: ignore[return-value]


def _analyse_many(texts: Sequence[str], stored: StoredAnalysis | None = None,
                  observe: Callable[[str, Sequence[object]], None] | None = None) -> list[_Analysed]:
    """Analyses of ``texts``: Korean words from ``stored`` where it knows them all, else from Kiwi;
    ``observe(segment, morphemes)`` sees each segment Kiwi analysed (the build's `EojeolRecorder`)."""
    norm = [_normalize(t) if isinstance(t, str) else "" for t in texts]
    results = [_Analysed(seq=_latin_tokens(t), extra=[tok for _p, tok in _number_tokens(t)]) for t in norm]
    owners: list[tuple[int, int, str]] = []
    segments: list[str] = []
    for i, t in enumerate(norm):
        for off, seg in _segments(t):
            owners.append((i, off, seg))
            segments.append(seg)
    if segments:
        for (owner, off, seg), morphs in zip(owners, kiwi_morphs(segments, stored), strict=True):
            if observe is not None:
                morphs = list(morphs)
                observe(seg, morphs)
            _korean_tokens(morphs, off, seg, results[owner])
    return results


def tokenize(text: str) -> list[str]:
    """BM25 tokens of a document or query (Korean morphemes + normalised Latin words).

    Never raises on string input: empty text, emoji, control characters and very
    long inputs all yield a (possibly empty) list.
    """
    return tokenize_many([text])[0]


def tokenize_many(texts: Sequence[str]) -> list[list[str]]:
    """`tokenize` for many texts at once, sending all Korean segments to Kiwi in one batch.

    Tokens come in text order, then the extra whole-compound and number tokens.
    """
    return [a.bag() for a in _analyse_many(texts)]


# --------------------------------------------------------------------- glossary























