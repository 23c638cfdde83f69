"""The forms a question gives the corpus's verbs and adjectives, for the word table (`word_table`).

A search reads a question's Korean words from the index's table of Kiwi's readings and starts Kiwi only
for a word the table lacks. Notes are written in the plain written style ("섞는다", "줄였다"), questions in
the spoken one ("섞은", "줄여서", "걸렸대", "빨라져?"), so most questions held a verb form the corpus never
wrote: 19 of the 30 latency benchmark's questions started Kiwi (BENCHMARKS.md). The build therefore adds,
for every verb and adjective the corpus uses, the forms of `QUESTION_ENDINGS`: Kiwi conjugates each
(`Kiwi.join`), reads the form alone, and the form joins the table only when Kiwi's reading of it starts
with that verb. The table keeps Kiwi's readings only, as before; it knows more words.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

from digest_rag.lexical.analysis import kiwi_morphs
from digest_rag.lexical.kiwi import get_kiwi, has_batchim
from digest_rag.lexical.word_table import EojeolRecorder, Morph, _decode
from digest_rag.text import hangul_parts

__all__ = ["NOUN_PREDICATES", "QUESTION_ENDINGS", "QUESTION_FORMS_VERSION", "add_question_forms", "corpus_nouns",
           "corpus_predicates", "question_forms", "reads_as"]

#: Version of the forms a build adds (`QUESTION_ENDINGS`, `NOUN_PREDICATES`, the check): part of the token cache's
#: key (`builder.analysis_cache_key`), so an index built with other forms, or none, is analysed again once.
QUESTION_FORMS_VERSION = "2"

#: Endings (Kiwi morphemes after the stem) of the verb forms questions use: connectives, modifiers,
#: plain and polite sentence ends, past tense, recollection ("-더라"), reported speech ("-대", "-다는", "-다던데"),
#: and the auxiliaries "-어지다" (become), "-어내다" (out), "-어주다" (for), "-어보다" (try), "-어두다" (keep).
#: Kiwi picks 아/어, 으 and the irregular stems.
QUESTION_ENDINGS: tuple[tuple[tuple[str, str], ...], ...] = tuple(
    tuple((m, t) for m, t in (part.split("/") for part in ending.split("+")))
    for ending in (
        "어/EC", "어서/EC", "어야/EC", "고/EC", "게/EC", "지/EC", "으면/EC", "으려고/EC", "는데/EC", "으니까/EC",
        "도록/EC", "어도/EC", "으며/EC", "다가/EC", "는지/EC", "는/ETM", "은/ETM", "을/ETM", "던/ETM",
        "는다는/ETM", "다는/ETM", "기/ETN", "음/ETN", "어/EF", "다/EF", "나/EF", "니/EF", "나요/EF", "어요/EF",
        "습니다/EF", "대/EF", "냐/EF", "지/EF", "죠/EF", "네/EF", "을까/EF",
        "었/EP+어/EF", "었/EP+다/EF", "었/EP+대/EF", "었/EP+다는/ETM", "었/EP+던/ETM", "었/EP+는지/EC",
        "었/EP+나/EF", "었/EP+을까/EF", "었/EP+고/EC", "었/EP+는데/EC", "었/EP+지/EF", "었/EP+어요/EF",
        "었/EP+나요/EF", "었/EP+습니다/EF", "었/EP+다고/EC",
        "어/EC+지/VX+어/EF", "어/EC+지/VX+는/ETM", "어/EC+지/VX+었/EP+어/EF", "어/EC+지/VX+었/EP+다는/ETM",
        "어/EC+내/VX+은/ETM", "어/EC+내/VX+었/EP+어/EF", "어/EC+내/VX+어도/EC", "어/EC+주/VX+는/ETM",
        "어/EC+주/VX+어/EF", "더라/EF", "었/EP+더라/EF", "으면서/EC", "으려다/EC", "는다던데/EC", "다던데/EC",
        "었/EP+다던데/EC", "다던/ETM", "었/EP+다던/ETM", "어/EC+보/VX+고/EC", "어/EC+보/VX+기/ETN",
        "어/EC+두/VX+고/EC",
    )
)

#: What makes a verb of a noun ("학습했어", "해결된다는") or says what it is ("뭐였지", "모델이었어"): its forms
#: with `QUESTION_ENDINGS` teach the table those suffixes, which it then reads after any noun it knows.
NOUN_PREDICATES: tuple[tuple[str, str], ...] = (("하", "XSV"), ("되", "XSV"), ("이", "VCP"))

# Kiwi's tags of a verb and an adjective stem (an irregular one carries a suffix: "VV-I").
_PREDICATE = frozenset({"VV", "VA"})
# Endings that follow a verb only (an adjective takes "-은", "-다"): "빠르는", "빠른다는" are not words.
_VERB_ONLY = frozenset({"는", "는데", "는지", "는다는", "는다던데"})
# Auxiliaries after a verb only: "-어내다", "-어주다", "-어보다", "-어두다" (an adjective takes "-어지다").
_VERB_AUXILIARIES = frozenset({"내", "주", "보", "두"})


def _one_word_morphemes(readings: Mapping[str, Mapping[str, int]]) -> Iterator[tuple[str, str, int]]:
    """(form, tag, times read) of every morpheme of the one-word keys' readings (key -> encoded reading ->
    count, `EojeolRecorder.readings`)."""
    for key, counted in readings.items():
        if " " in key:
            continue
        for raw, n in counted.items():
            for form, tag, _s, _n, _lemma in _decode(raw):
                yield form, tag, n


def _question_words(morphemes: Iterable[tuple[str, str, int]]) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """`corpus_predicates` and `corpus_nouns` from one pass over the morphemes."""
    predicates: set[tuple[str, str]] = set()
    counts: dict[tuple[str, str], int] = {}
    for form, tag, n in morphemes:
        if tag.split("-", 1)[0] in _PREDICATE:
            predicates.add((form, tag))
        elif tag in ("NNG", "NP") and len(form) >= (2 if tag == "NNG" else 1) and hangul_parts(form[-1]) is not None:
            counts[(form, tag)] = counts.get((form, tag), 0) + n
    nouns = sorted(k for k in counts if k[1] == "NP")
    for closed in (True, False):
        common = [k for k in counts if k[1] == "NNG" and has_batchim(k[0][-1]) == closed]
        if common:
            nouns.append(min(common, key=lambda k: (-counts[k], k)))
    return sorted(predicates), nouns


def corpus_predicates(readings: Mapping[str, Mapping[str, int]]) -> list[tuple[str, str]]:
    """(stem, tag) of every verb and adjective in the word table's readings (key -> encoded reading ->
    count, `EojeolRecorder.readings`), in a fixed order."""
    return _question_words(_one_word_morphemes(readings))[0]


def corpus_nouns(readings: Mapping[str, Mapping[str, int]]) -> list[tuple[str, str]]:
    """(noun, tag) whose forms with `NOUN_PREDICATES` the table should hold: the corpus's most frequent common
    noun ending in a consonant and the one ending in a vowel (the suffixes differ: "이었어" / "였어"), and
    every pronoun it uses ("뭐였지": the pronoun itself is read only through such forms)."""
    return _question_words(_one_word_morphemes(readings))[1]


#: Kiwi's ``join``: morphemes (form, tag) to the word they make.
Join = Callable[[list[tuple[str, str]]], str]


def question_forms(words: Iterable[tuple[str, str]], join: Join) -> Iterator[tuple[str, tuple[tuple[str, str], ...]]]:
    """(form, the morphemes its reading must start with) of each verb or adjective of ``words`` with each of
    `QUESTION_ENDINGS`, and of each noun with each of `NOUN_PREDICATES` and ending, conjugated by ``join``
    (`Kiwi.join`). A form Kiwi writes as two words ("잘라 내도") is taken as the one word a reader types."""
    seen: set[str] = set()
    for stem, tag in words:
        # A pronoun takes only the copula ("뭐였지"; "뭐해" is 뭐 + the verb 하다, not a derived verb).
        makers: list[tuple[tuple[str, str], ...]] = [(m,) for m in NOUN_PREDICATES if tag == "NNG" or m[1] == "VCP"] \
            if tag in ("NNG", "NP") else [()]
        for maker in makers:
            verb = not tag.startswith("VA") and not (maker and maker[0][1] == "VCP")
            for ending in QUESTION_ENDINGS:
                if not verb and (ending[0][0] in _VERB_ONLY or any(m in _VERB_AUXILIARIES for m, _t in ending[1:])):
                    continue
                try:
                    form = join([(stem, tag), *maker, *ending]).replace(" ", "")
                except (ValueError, RuntimeError):  # a tag or morpheme Kiwi will not conjugate
                    continue
                if form and form not in seen:
                    seen.add(form)
                    yield form, ((stem, tag), *maker)


def reads_as(morphs: Iterable[object], start: Sequence[tuple[str, str]]) -> bool:
    """Whether Kiwi's reading of a form alone (``morphs``) starts with the morphemes it was made from."""
    got = [(m.form, m.tag.split("-", 1)[0]) for m in morphs][: len(start)]  # type: ignore[attr-defined]
    return got == [(form, tag.split("-", 1)[0]) for form, tag in start]


#: Each word's accepted forms with Kiwi's reading of each (`add_question_forms`), kept for the process: a
#: notebook or a test suite that builds the same corpus again asks Kiwi nothing (bounded; starts over past the size).
_MADE: dict[tuple[str, str], tuple[tuple[str, tuple[Morph, ...]], ...]] = {}
_MADE_MAX = 8192


def add_question_forms(recorder: EojeolRecorder) -> int:
    """Record in ``recorder`` the question forms (`question_forms`) of the verbs, adjectives and nouns of the
    words new to its table in this build (`EojeolRecorder.new_readings`: every word, without a previous table),
    each where Kiwi reads the form alone as made; how many. The previous build made the forms of its words
    (the token cache's key says so), so an update joins only its new words' verbs (a 1% rebuild stays cheap),
    and one that met no new word starts no Kiwi."""
    predicates, nouns = _question_words(_one_word_morphemes(recorder.new_readings()))
    words = [*predicates, *nouns]
    todo = [word for word in words if word not in _MADE]
    if todo:
        made = list(question_forms(todo, get_kiwi().join))
        accepted: dict[tuple[str, str], list[tuple[str, tuple[Morph, ...]]]] = {word: [] for word in todo}
        for (form, start), morphs in zip(made, kiwi_morphs([form for form, _start in made]) if made else [],
                                         strict=True):
            if reads_as(morphs, start):
                accepted[start[0]].append((form, tuple(
                    Morph(m.form, str(m.tag), int(m.start), int(m.len), getattr(m, "lemma", None) or m.form)
                    for m in morphs)))  # type: ignore[attr-defined]
        if len(_MADE) + len(accepted) > _MADE_MAX:
            _MADE.clear()
        _MADE.update((word, tuple(forms)) for word, forms in accepted.items())
    added = 0
    for word in words:
        for form, morphs in _MADE.get(word, ()):
            if form not in recorder.readings:
                recorder.observe(form, morphs)
                added += 1
    return added
