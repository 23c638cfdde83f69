"""Kiwi, the Korean morphological analyser: one shared instance, the tag sets the analysis keeps, and the user words it is given."""

from __future__ import annotations

import functools
import logging
import re
import threading
from importlib import resources
from typing import TYPE_CHECKING

from digest_rag.text import hangul_parts

if TYPE_CHECKING:  # pragma: no cover - typing only
    from kiwipiepy import Kiwi

_HANGUL_WORD = re.compile(r"[\uac00-\ud7a3]+")

_PRED_START = frozenset({"VV", "VA", "VX", "XSV", "XSA"})

_INFLECTED_END = frozenset("다의에한인된은는을를")

def has_batchim(syllable: str) -> bool:
    parts = hangul_parts(syllable)
    return parts is not None and parts[2] != 0


#: How Kiwi is built (`get_kiwi`). Its multi-word dictionary (Wikipedia titles such as "테드 창", "네이버 쇼핑")
#: costs ~1.9 s of every process's Kiwi start (construction and first analysis: 3.17 s against 1.25 s,
#: benchmarks/bench_kiwi_start.py) and changes 8 of ml-papers' 3,000 Korean lines, where it reads a name as one
#: noun rather than as its words; every cell of the lexical eval stays the same without it (docs/EVAL.md).
KIWI_OPTIONS: dict[str, bool] = {"load_multi_dict": False}


# Kiwi tags kept (tag without the irregular-conjugation suffix, e.g. "VV-I").
# NNB (bound nouns: 것, 수, 개) and NR (numerals: 억, 백만) carry no topic, dropped.
NOUN_TAGS = frozenset({"NNG", "NNP", "XR", "SH"})


PRED_TAGS = frozenset({"VV", "VA"})


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


def start_kiwi_in_background() -> threading.Thread:
    """Start Kiwi (`get_kiwi` and a first analysis: ~1-3 s, +320 MiB) on a daemon thread, for a process that
    will be asked questions later (serve, an interactive shell): the first question with a word the index's
    table lacks then does not wait for it. A failure is logged; that question reports it again."""

    def start() -> None:
        try:
            get_kiwi().tokenize("시작")
        except Exception as exc:  # noqa: BLE001 - a question that needs Kiwi will report the failure itself
            logging.getLogger(__name__).warning("Kiwi did not start in the background: %s: %s",
                                                type(exc).__name__, exc)

    thread = threading.Thread(target=start, name="digest-rag-kiwi", daemon=True)
    thread.start()
    return thread


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
    probes = ordered + [w + ("을" if has_batchim(w[-1]) else "를") for w in ordered]
    analysed = list(kiwi.tokenize(probes))
    out: list[str] = []
    for i, word in enumerate(ordered):
        alone, with_particle = analysed[i], analysed[i + len(ordered)]
        tags = [str(t.tag).split("-", 1)[0] for t in alone]
        if not tags or tags[0] in _PRED_START:
            continue
        nouns = [t for t in with_particle if int(t.start) < len(word)]
        if all(str(t.tag).split("-", 1)[0] in NOUN_TAGS for t in nouns) and "".join(t.form for t in nouns) == word:
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
