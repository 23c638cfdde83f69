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

import contextlib
import functools
import hashlib
import json
import os
import re
import tempfile
import threading
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from digest_rag.storage.cachedir import cache_root

if TYPE_CHECKING:  # pragma: no cover - typing only
    from kiwipiepy import Kiwi

__all__ = [
    "ANALYSIS_VERSION",
    "GLOSSARY_VERSION",
    "KIWI_OPTIONS",
    "EXPANSION_WEIGHT",
    "Glossary",
    "default_glossary",
    "document_tokens",
    "query_term_weights",
    "tokenize",
    "tokenize_many",
    "get_kiwi",
    "has_hangul",
    "stored_analysis",
]

#: Version of the bundled glossary file (its "# version:" header must match).
GLOSSARY_VERSION = "2"

#: Stored with every lexical index; a mismatch means the index must be rebuilt.
#: It names the glossary too: expansion changes which documents a stored
#: index returns, so an index must be rebuilt (and re-evaluated) with it.
ANALYSIS_VERSION = f"ko-kiwi-0.24-nomulti+latin-v2+compounds-v1+numbers-v1+ml-concepts-v2+gloss-{GLOSSARY_VERSION}"

#: How Kiwi is built (`get_kiwi`). Its multi-word dictionary (Wikipedia titles such as "테드 창", "네이버 쇼핑")
#: costs ~1.9 s of every process's Kiwi start (construction and first analysis: 3.17 s against 1.25 s,
#: benchmarks/bench_kiwi_start.py) and changes 8 of ml-papers' 3,000 Korean lines, where it reads a name as one
#: noun rather than as its words; every cell of the lexical eval stays the same without it (docs/EVAL.md).
KIWI_OPTIONS: dict[str, bool] = {"load_multi_dict": False}

#: Weight of a glossary expansion relative to a word the user typed (1.0).
#: Chosen on held-out cross-lingual checks, not the dev queries (docs/EVAL.md).
EXPANSION_WEIGHT = 0.5
#: Weight of a concept token (a glossary phrase matched in the query). A
#: concept token is the one term a Korean question shares *as a phrase* with
#: an English text, so it counts more than a typed word: 1.5 beat 1.0 and 2.0
#: on both variants of the ml-papers tuning split (docs/EVAL.md, issue 12).
CONCEPT_WEIGHT = 1.5

# Kiwi tags kept (tag without the irregular-conjugation suffix, e.g. "VV-I").
# NNB (bound nouns: 것, 수, 개) and NR (numerals: 억, 백만) carry no topic, dropped.
_NOUN_TAGS = frozenset({"NNG", "NNP", "XR", "SH"})
_PRED_TAGS = frozenset({"VV", "VA"})

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
_LATIN_WORD = re.compile(
    r"[0-9A-Za-z\u00c0-\u024f]+(?:[-.'\u2019][0-9A-Za-z\u00c0-\u024f]+)*"
)
_PART_SPLIT = re.compile(r"[-.]")


def has_hangul(text: str) -> bool:
    """Whether ``text`` holds Hangul or Hanja: the characters Kiwi's part of the analysis reads."""
    return _HANGUL_OR_HANJA.search(text) is not None
# Characters Kiwi does not need to see (controls, surrogates, unassigned).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")

# Kiwi's cost grows with segment length and a single huge run without
# newlines is pathological; cut long input into segments of about this size.
_KIWI_SEGMENT = 2000

_kiwi: Kiwi | None = None
_kiwi_lock = threading.Lock()


def get_kiwi() -> Kiwi:
    """The process-wide Kiwi analyser, created on first use (model loads offline; ~1.2 s with the first analysis)."""
    global _kiwi
    if _kiwi is None:
        with _kiwi_lock:
            if _kiwi is None:
                from kiwipiepy import Kiwi

                kiwi = Kiwi(**KIWI_OPTIONS)
                for word in bundled_user_words():
                    kiwi.add_user_word(word, "NNP")
                _kiwi = kiwi
    return _kiwi


_HANGUL_WORD = re.compile(r"[\uac00-\ud7a3]+")
_PRED_START = frozenset({"VV", "VA", "VX", "XSV", "XSA"})
_INFLECTED_END = frozenset("다의에한인된은는을를")


_USER_WORDS_FILE = "kiwi_user_words.txt"


def glossary_user_words(glossary_text: str, kiwi: Kiwi) -> list[str]:
    """The glossary's Korean words that ``kiwi`` (a `Kiwi(**KIWI_OPTIONS)` without user words) would cut wrongly.

    Kiwi reads an unknown loanword by guessing ("미스트랄" -> 미스트 + 이 + 랄,
    "제미나이를" -> 제미나 + 이 + 를), so the word, its particles and its
    glossary entry never line up. A word of a Korean glossary form that Kiwi
    does not read as nouns spelling the word, alone and before a particle,
    is listed; words it reads as a verb or adjective ("줄이다", "빠른") are not.
    `get_kiwi` adds the list (data/kiwi_user_words.txt, kept in step with the
    glossary by a test) as proper nouns. It is stored, not computed at start-up,
    because adding words after Kiwi has analysed anything makes it rebuild
    its model, which doubles its start-up time.
    """
    words: set[str] = set()
    for form in glossary_korean_forms(glossary_text):
        # Not: verbs ("줄이다"), one-syllable words, inflected forms ("규모의", "가능한").
        words.update(
            w for w in form.split() if _HANGUL_WORD.fullmatch(w) and len(w) > 1 and w[-1] not in _INFLECTED_END
        )
    ordered = sorted(words)
    probes = ordered + [w + ("을" if _has_batchim(w[-1]) else "를") for w in ordered]
    analysed = list(kiwi.tokenize(probes))
    out: list[str] = []
    for i, word in enumerate(ordered):
        alone, with_particle = analysed[i], analysed[i + len(ordered)]
        tags = [str(t.tag).split("-", 1)[0] for t in alone]
        if not tags or tags[0] in _PRED_START:
            continue
        nouns = [t for t in with_particle if int(t.start) < len(word)]
        if all(str(t.tag).split("-", 1)[0] in _NOUN_TAGS for t in nouns) and "".join(t.form for t in nouns) == word:
            continue
        out.append(word)
    return out


def glossary_korean_forms(glossary_text: str) -> list[str]:
    """The Korean forms (first column) of every concept of a glossary file's text, in file order."""
    forms: list[str] = []
    for line in glossary_text.splitlines():
        if not line.strip() or line.lstrip().startswith("#") or "\t" not in line:
            continue
        forms.extend(f.strip() for f in line.split("\t", 1)[0].split("|") if f.strip())
    return forms


@functools.lru_cache(maxsize=1)
def bundled_user_words() -> tuple[str, ...]:
    """The stored `glossary_user_words` of the bundled glossary."""
    text = resources.files("digest_rag").joinpath("data", _USER_WORDS_FILE).read_text(encoding="utf-8")
    return tuple(w.strip() for w in text.splitlines() if w.strip() and not w.startswith("#"))


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
    for m in _LATIN_WORD.finditer(text):
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


def _has_batchim(syllable: str) -> bool:
    code = ord(syllable) - 0xAC00
    return 0 <= code < 11172 and code % 28 != 0


def _strip_particle(form: str) -> str | None:
    """``form`` without a trailing particle that agrees with its stem's sound, None if none."""
    for group, need in ((_AFTER_ANY, None), (_AFTER_CONSONANT, True), (_AFTER_VOWEL, False)):
        for particle in group:
            stem = form[: -len(particle)]
            if form.endswith(particle) and len(stem) >= 2 and (need is None or _has_batchim(stem[-1]) == need):
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
        if not (tag in _NOUN_TAGS or tag == "XSN" or (tag == "NP" and form in _KEEP_NP)):
            flush()
            if tag in _PRED_TAGS:
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
    """Kiwi's morphemes of a text rebuilt without Kiwi (`digest_rag.lexical.word_table.EojeolTable`)."""

    def analyse(self, text: str) -> Sequence[object] | None:
        """Morphemes of ``text`` with Kiwi's attributes, or None when the table cannot tell."""


#: The stored analysis query and snippet analysis use in this context (`stored_analysis`).
_stored: ContextVar[StoredAnalysis | None] = ContextVar("digest_rag_stored_analysis", default=None)


@contextlib.contextmanager
def stored_analysis(table: StoredAnalysis | None) -> Iterator[None]:
    """Within the block, queries and snippets read Korean words from ``table`` (an index's), Kiwi only for
    words it lacks. Documents (and the glossary) are always analysed by Kiwi."""
    token = _stored.set(table)
    try:
        yield
    finally:
        _stored.reset(token)


def current_stored_analysis() -> StoredAnalysis | None:
    """The table `stored_analysis` put in place here, if any."""
    return _stored.get()


def kiwi_morphs(segments: Sequence[str], stored: StoredAnalysis | None = None) -> list[Sequence[object]]:
    """Kiwi's morphemes of each segment; with ``stored``, from the table wherever it knows every word."""
    out: list[Sequence[object] | None] = [stored.analyse(s) if stored is not None else None for s in segments]
    todo = [i for i, m in enumerate(out) if m is None]
    if todo:
        kiwi = get_kiwi()
        # Kiwi's iterable form analyses the batch with its worker threads.
        fresh = kiwi.tokenize([segments[i] for i in todo]) if len(todo) > 1 else [kiwi.tokenize(segments[todo[0]])]
        for i, morphs in zip(todo, fresh, strict=True):
            out[i] = morphs
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

_GLOSSARY_FILE = "ml_glossary_ko_en.tsv"
_VERSION_LINE = re.compile(r"^#\s*version:\s*(\S+)\s*$")


def _match_tokens(tokens: Iterable[str]) -> list[str]:
    # The tokenizer emits "fine-tuning" as fine-tuning + fine + tuning; matching
    # ignores the joined form so "fine tuning" and "fine-tuning" match alike.
    return [t for t in tokens if "-" not in t]


def _key(tokens: Sequence[str]) -> str:
    # Keys are the tokens run together: Kiwi splits a compound differently by
    # context ("파인튜닝" alone is one noun, "파인튜닝한" gives 파인 + 튜닝) and
    # writers space Korean compounds freely ("강화학습" / "강화 학습"); joined,
    # all of them read "파인튜닝", "강화학습". Latin "fine tuning" joins to
    # "finetuning", which is the same word.
    return "".join(tokens)


@dataclass
class Glossary:
    """Concepts with Korean and English surface forms, matched on analysed tokens.

    ``concepts[i]`` is the set of tokens (both languages, every form) of concept
    i; ``keys`` maps the token sequence of each form to the concepts it names.
    Forms are analysed by `tokenize`, so a query matches a form whatever its
    particles, inflection, case or spacing of Korean compounds.
    """

    version: str
    concepts: list[frozenset[str]] = field(default_factory=list)
    keys: dict[str, set[int]] = field(default_factory=dict)
    max_key: int = 0
    #: Keys that name their concept only in context: key -> tokens of which one
    #: must occur elsewhere in the same text (a query, a chunk).
    senses: dict[str, frozenset[str]] = field(default_factory=dict)

    @classmethod
    def from_lines(cls, lines: Iterable[str], version: str = "unversioned") -> Glossary:
        """Parse TSV lines ``korean forms<TAB>english forms[<TAB>context words]``.

        Forms are separated by ``|``; ``#`` starts a comment line. The optional
        third column makes the concept's one-word Korean forms ambiguous: they
        name the concept only when one of the context words (either language)
        occurs in the same text. "정렬" is *alignment* next to 선호, 보상, 모델,
        and *sorting* elsewhere; multi-word forms and English forms are
        specific enough to fire alone.
        """
        rows: list[tuple[list[str], list[str], list[str]]] = []
        for raw in lines:
            m = _VERSION_LINE.match(raw.strip())
            if m:
                version = m.group(1)
                continue
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            cols = line.split("\t")
            if len(cols) not in (2, 3):
                raise ValueError(f"glossary line needs two tab-separated columns (plus optional context words): {line!r}")
            ko, en = ([f.strip() for f in col.split("|") if f.strip()] for col in cols[:2])
            ctx = [f.strip() for f in cols[2].split("|") if f.strip()] if len(cols) == 3 else []
            if ko or en:
                rows.append((ko, en, ctx))
        flat = sorted({f for ko, en, ctx in rows for f in (*ko, *en, *ctx)})
        analysed = dict(zip(flat, _analyse_many(flat), strict=True))
        gloss = cls(version=version)
        # Analysis can drop a suffix ("학습률" -> 학습, "검증기" -> 검증), so two
        # forms may share a key. The shortest surface form owns the key: the
        # bare word "학습" means training, not learning *rate*.
        owner_len: dict[str, int] = {}
        for ko, en, ctx in rows:
            cid = len(gloss.concepts)
            tokens: set[str] = set()
            context = frozenset(t for c in ctx for t in analysed[c].bag())
            for f in (*ko, *en):
                toks = analysed[f].bag()
                tokens.update(toks)
                parts = _match_tokens(analysed[f].sequence())
                key = _key(parts)
                if not key:
                    continue
                size = len(f.replace(" ", ""))
                best = owner_len.get(key)
                if best is None or size < best:
                    owner_len[key] = size
                    gloss.keys[key] = {cid}
                    gloss.senses.pop(key, None)
                    if context and f in ko and " " not in f:
                        gloss.senses[key] = context
                elif size == best:
                    gloss.keys[key].add(cid)
                # +1: a form analysed as one token may be split in context.
                gloss.max_key = max(gloss.max_key, len(parts) + 1)
            gloss.concepts.append(frozenset(tokens))
        return gloss

    @classmethod
    def load(cls, path: str | Path | None = None) -> Glossary:
        """Read a glossary file (default: the one bundled with the package).

        Compiling a glossary analyses every form with Kiwi (seconds, Kiwi's
        start-up included); the result is cached as JSON under
        ``$DIGEST_RAG_CACHE/analysis``, keyed by the file's text and everything
        its analysis depends on, so later processes load it instead.
        """
        if path is None:
            text = bundled_glossary_text()
        else:
            text = Path(path).read_text(encoding="utf-8")
        return _compiled_glossary(text)

    def to_json(self) -> str:
        """The compiled glossary as JSON (what `from_json` reads back)."""
        return json.dumps({
            "format": _COMPILED_FORMAT,
            "version": self.version,
            "concepts": [sorted(c) for c in self.concepts],
            "keys": {k: sorted(v) for k, v in self.keys.items()},
            "max_key": self.max_key,
            "senses": {k: sorted(v) for k, v in self.senses.items()},
        }, ensure_ascii=False)

    @classmethod
    def from_json(cls, raw: str) -> Glossary:
        """A glossary saved by `to_json`; ValueError when ``raw`` is not one."""
        data = json.loads(raw)
        if not isinstance(data, dict) or data.get("format") != _COMPILED_FORMAT:
            raise ValueError("not a compiled glossary of this format")
        if set(data) - {"format"} != {f.name for f in fields(cls)}:
            raise ValueError("compiled glossary fields differ from this Glossary's")
        concepts, keys = data["concepts"], data["keys"]
        if not (isinstance(concepts, list) and all(isinstance(c, list) and all(isinstance(t, str) for t in c) for c in concepts)
                and isinstance(keys, dict) and all(isinstance(v, list) and all(isinstance(i, int) for i in v)
                                                   for v in keys.values())
                and isinstance(data["max_key"], int) and isinstance(data["version"], str)
                and isinstance(data["senses"], dict)
                and all(isinstance(v, list) and all(isinstance(t, str) for t in v) for v in data["senses"].values())):
            raise ValueError("malformed compiled glossary")
        return cls(version=data["version"], concepts=[frozenset(c) for c in concepts],
                   keys={k: set(v) for k, v in keys.items()}, max_key=data["max_key"],
                   senses={k: frozenset(v) for k, v in data["senses"].items()})

    def match(self, tokens: Sequence[str], context: Iterable[str] | None = None) -> list[int]:
        """Concept ids named in ``tokens`` (a text's `sequence`): greedy longest match, left to right.

        Longest match first means "스케일링 법칙" is read as the concept
        *scaling law*, not as *scaling* plus a bare "법칙" (law), which would
        also pull in every "power law". An ambiguous key (see `from_lines`)
        counts only when one of its context words is among ``context``
        (default: ``tokens``) outside the matched phrase.
        """
        seq = _match_tokens(tokens)
        ctx: set[str] | None = None
        found: list[int] = []
        # `tokenize` appends a compound's whole word after its parts; when the
        # parts already named a phrase, its whole word is the same mention.
        joined: set[str] = set()
        i = 0
        while i < len(seq):
            if seq[i] in joined:
                i += 1
                continue
            for n in range(min(self.max_key, len(seq) - i), 0, -1):
                key = _key(seq[i : i + n])
                ids = self.keys.get(key)
                if not ids:
                    continue
                need = self.senses.get(key)
                if need is not None:
                    if ctx is None:
                        ctx = set(context if context is not None else seq)
                    if not (need & (ctx - set(seq[i : i + n]))):
                        continue
                found.extend(sorted(ids))
                if n > 1:
                    joined.add(key)
                i += n
                break
            else:
                i += 1
        return found

    def concept_token(self, cid: int) -> str:
        """The index token standing for concept ``cid`` (":" never occurs in analysed words)."""
        return f"ml:{cid}"

    def annotate(self, tokens: Sequence[str], context: Iterable[str] | None = None) -> list[str]:
        """Concept tokens for the glossary concepts named in ``tokens`` (a document's or a query's sequence)."""
        return [self.concept_token(c) for c in self.match(tokens, context)]

    def expand(
        self, tokens: Sequence[str], weight: float = EXPANSION_WEIGHT, sequence: Sequence[str] | None = None
    ) -> dict[str, float]:
        """Query term weights: each typed token 1.0, other forms of matched concepts ``weight``.

        Concepts are matched on ``sequence`` (the text's `sequence`; default ``tokens``).
        """
        terms = dict.fromkeys(tokens, 1.0)
        for cid in self.match(tokens if sequence is None else sequence, tokens):
            for t in self.concepts[cid]:
                terms.setdefault(t, weight)
        return terms


_COMPILED_FORMAT = 1


def _compiled_glossary_path(text: str) -> Path:
    """Cache file of the compiled ``text``: keyed by the text, the analysis version, Kiwi's version and this module."""
    from importlib import metadata

    try:
        kiwi = metadata.version("kiwipiepy")
    except metadata.PackageNotFoundError:  # pragma: no cover - a dependency
        kiwi = "unknown"
    h = hashlib.sha256(f"{_COMPILED_FORMAT}|{ANALYSIS_VERSION}|kiwipiepy-{kiwi}|".encode())
    try:
        # The analysis code itself: an edit to the tokenizer that forgot to bump ANALYSIS_VERSION
        # must not leave a stale compiled glossary behind.
        h.update(Path(__file__).read_bytes())
    except OSError:  # pragma: no cover - a zipped install: the version string has to do
        pass
    h.update(text.encode("utf-8"))
    # Kiwi's user words change how glossary forms are analysed.
    h.update("\n".join(bundled_user_words()).encode("utf-8"))
    return cache_root() / "analysis" / f"glossary-{h.hexdigest()[:32]}.json"


def _compiled_glossary(text: str) -> Glossary:
    """``Glossary.from_lines(text)``, read from the cache when it was compiled before (written there if not)."""
    path = _compiled_glossary_path(text)
    try:
        return Glossary.from_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError, KeyError):
        pass  # absent, unreadable or foreign: compile it (a cache only ever costs time)
    gloss = Glossary.from_lines(text.splitlines())
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".glossary-", suffix=".json", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(gloss.to_json())
            os.replace(tmp, path)  # atomic: a concurrent reader sees the old state or the whole file
        finally:
            Path(tmp).unlink(missing_ok=True)
    except OSError:
        pass  # a read-only cache directory: compile per process, as before
    return gloss


@functools.lru_cache(maxsize=1)
def bundled_glossary_text() -> str:
    """The glossary file shipped with the package, as text."""
    return resources.files("digest_rag").joinpath("data", _GLOSSARY_FILE).read_text(encoding="utf-8")


_glossary: Glossary | None = None
_glossary_lock = threading.Lock()


def default_glossary() -> Glossary:
    """The bundled glossary, loaded once per process (compiled with Kiwi once per version: `Glossary.load`)."""
    global _glossary
    if _glossary is None:
        with _glossary_lock:
            if _glossary is None:
                _glossary = Glossary.load()
    return _glossary


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
