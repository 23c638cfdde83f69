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
"""

from __future__ import annotations

import re
import threading
import unicodedata
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover - typing only
    from kiwipiepy import Kiwi

__all__ = ["ANALYSIS_VERSION", "tokenize", "tokenize_many", "get_kiwi"]

#: Stored with every lexical index; a mismatch means the index must be rebuilt.
ANALYSIS_VERSION = "ko-kiwi-0.24+latin-v1"

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
# Characters Kiwi does not need to see (controls, surrogates, unassigned).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")

# Kiwi's cost grows with segment length and a single huge run without
# newlines is pathological; cut long input into segments of about this size.
_KIWI_SEGMENT = 2000

#: Also emit space-less noun runs joined ("다발"+"성" -> "다발성"). Measured on
#: eval/dev_queries.jsonl (50 queries): off R@1 0.78 / MRR@10 0.813 / R@10 0.90,
#: on R@1 0.76 / MRR@10 0.806 / R@10 0.92 -- off by default, it costs precision.
JOIN_COMPOUNDS = False

_kiwi: Kiwi | None = None
_kiwi_lock = threading.Lock()


def get_kiwi() -> Kiwi:
    """The process-wide Kiwi analyser, created on first use (model loads offline, ~1 s)."""
    global _kiwi
    if _kiwi is None:
        with _kiwi_lock:
            if _kiwi is None:
                from kiwipiepy import Kiwi

                _kiwi = Kiwi()
    return _kiwi


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


def _latin_tokens(text: str) -> list[str]:
    out: list[str] = []
    for m in _LATIN_WORD.finditer(text):
        raw = m.group(0)
        parts = [p for p in _PART_SPLIT.split(raw) if p]
        if len(parts) > 1:
            joined = _latin_token(raw)
            if joined:
                out.append(joined)
            # Dots inside numbers ("12.29", "3.5") are decimals: do not split
            # them into meaningless digit fragments.
            if "-" in raw:
                for p in raw.split("-"):
                    tok = _latin_token(p)
                    if tok and tok not in _EN_STOP:
                        out.append(tok)
            continue
        tok = _latin_token(raw)
        if tok and tok not in _EN_STOP:
            out.append(tok)
    return out


def _segments(text: str) -> list[str]:
    """Pieces of Hangul-bearing text small enough for Kiwi, cut at whitespace."""
    if len(text) <= _KIWI_SEGMENT:
        return [text] if _HANGUL_OR_HANJA.search(text) else []
    segs: list[str] = []
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
            segs.append(seg)
        start = end
    return segs


def _korean_tokens(morphs: Iterable[object]) -> list[str]:
    out: list[str] = []
    # Run of nouns written without spaces ("테스트셋" -> 테스트 + 셋, "다발성"
    # -> 다발 + 성): the parts are always emitted, and when
    # JOIN_COMPOUNDS is on the joined word is emitted as well.
    run: list[str] = []
    run_end = -1

    def flush() -> None:
        if JOIN_COMPOUNDS and len(run) > 1:
            joined = "".join(run)
            if joined not in _KO_STOP:
                out.append(joined)
        run.clear()

    for t in morphs:
        tag = str(t.tag).split("-", 1)[0]  # type: ignore[attr-defined]
        start = int(t.start)  # type: ignore[attr-defined]
        if tag in _NOUN_TAGS or tag == "XSN":
            form = t.form  # type: ignore[attr-defined]
            # Latin/digit forms are handled by the regex path; keep Hangul/Hanja only.
            if not _HANGUL_OR_HANJA.search(form):
                flush()
                continue
            if start != run_end:
                flush()
            if tag != "XSN" or run:
                run.append(form)
            run_end = start + int(t.len)  # type: ignore[attr-defined]
            if tag == "XSN":
                continue  # suffixes only count as part of a compound
        elif tag in _PRED_TAGS:
            flush()
            form = getattr(t, "lemma", None) or (t.form + "다")  # type: ignore[attr-defined]
        else:
            flush()
            continue
        if form not in _KO_STOP:
            out.append(form)
    flush()
    return out


def tokenize(text: str) -> list[str]:
    """BM25 tokens of a document or query (Korean morphemes + normalised Latin words).

    Never raises on string input: empty text, emoji, control characters and very
    long inputs all yield a (possibly empty) list.
    """
    return tokenize_many([text])[0]


def tokenize_many(texts: Sequence[str]) -> list[list[str]]:
    """`tokenize` for many texts at once, sending all Korean segments to Kiwi in one batch."""
    norm = [_normalize(t) if isinstance(t, str) else "" for t in texts]
    results = [_latin_tokens(t) for t in norm]
    owners: list[int] = []
    segments: list[str] = []
    for i, t in enumerate(norm):
        for seg in _segments(t):
            owners.append(i)
            segments.append(seg)
    if segments:
        kiwi = get_kiwi()
        # Kiwi's iterable form analyses the batch with its worker threads.
        analysed = kiwi.tokenize(segments) if len(segments) > 1 else [kiwi.tokenize(segments[0])]
        for owner, morphs in zip(owners, analysed, strict=True):
            results[owner].extend(_korean_tokens(morphs))
    return results
