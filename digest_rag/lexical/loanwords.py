"""Hangul loanwords read as the English words they spell: "어그멘테이션" finds "augmentation".

Readers type English terms in Hangul ("레이턴트", "스파스하게", "모달리티"), while the notes they search write
the same terms in Latin letters ("latent", "sparse", "modality"). The glossary covers the common terms; this
module covers the long tail without a list. A Hangul word and an English token are each turned into a
rough phonetic form (`hangul_form`, `latin_form`: consonant classes in capitals, vowels in lower case: "x"
is the schwa that Korean writes ㅓ), and a word spells a token when their consonants agree
(`skeleton`) and their forms differ by little (`distance`, a weighted alignment: vowels may differ or be
dropped cheaply, consonants not).

Only a question's words that look borrowed (`looks_borrowed`: an aspirated ㅋ ㅌ ㅍ, or a syllable with
the ㅡ that Korean adds between English consonants, as in 스, 트, 크) are spelled, and only into tokens of
the index's vocabulary that are not authors' names (a name shares its consonants with many Korean
words). A build stores the candidates by consonant skeleton (`loanword_rows`, `Store.loanword_candidates`);
an index built before keeps them in memory, computed once from its vocabulary (`Loanwords.from_tokens`).

Measured on the tuning questions (docs/EVAL.md, "Hangul loanwords"): 9 questions more first, none fewer.

Short and irregular spellings say too little to the speller ("웨이트" weight, "로스" loss, "포지션" position,
"크로스" cross): a bundled list of the common ML ones (`curated_spellings`, data/ml_loanwords_ko_en.tsv) is read
first, for questions only (`Loanwords.curated`, `curated_stem`).
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence

from digest_rag.text import bundled_rows, hangul_parts

__all__ = ["INDEXED_LOANWORD_WEIGHT", "LOANWORD_RULES", "LOANWORD_WEIGHT", "MAX_DISTANCE", "Loanwords",
           "curated_spellings", "curated_stem", "distance", "hangul_form", "latin_form", "loanword_rows",
           "looks_borrowed", "skeleton"]

#: Version of the rules below; a build stores it with its candidates, and a store made by other rules is not read.
LOANWORD_RULES = "1"
#: Query weight of a token a Hangul word spells: it is the word the reader typed, in other letters.
LOANWORD_WEIGHT = 1.0
#: ... when the index also holds the Hangul word as typed (some notes write it so): 1.0 and 0.75 did equally
#: well on the tuning questions, 0.5 worse; the lower one is kept (docs/EVAL.md, "Hangul loanwords").
INDEXED_LOANWORD_WEIGHT = 0.75
#: Largest `distance` per character of the longer form for a word to spell a token.
MAX_DISTANCE = 0.2
#: Tokens within this much of the best one are spelled too ("샘플": sample and simple), at most `MAX_SPELLINGS`.
TIE_MARGIN = 0.02
MAX_SPELLINGS = 2
#: Fewer consonants than this say too little to tell a loanword from a Korean word ("모델" is left to the glossary).
MIN_CONSONANTS = 3
#: Shortest English token a word may spell.
MIN_TOKEN_CHARS = 4

# Initial consonant index -> class (ㅇ is silent, ㅎ mostly dropped in loanwords).
_INITIAL = ("K", "K", "N", "T", "T", "L", "M", "P", "P", "S", "S", "", "C", "C", "C", "K", "T", "P", "")
# Vowel index -> vowel letters: ㅏ ㅐ ㅑ ㅒ ㅓ ㅔ ㅕ ㅖ ㅗ ㅘ ㅙ ㅚ ㅛ ㅜ ㅝ ㅞ ㅟ ㅠ ㅡ ㅢ ㅣ (ㅡ is the added vowel: none).
_VOWEL = ("a", "e", "ia", "e", "x", "e", "ix", "ie", "o", "ua", "ue", "ue", "io", "u", "ux", "ue", "ui", "iu", "", "ui",
          "i")
# Final consonant index -> class (a final ㅅ is the English t of 넷 "net", ㅇ the ng of 링 "ring").
_FINAL = ("", "K", "K", "K", "N", "N", "N", "T", "L", "L", "L", "L", "L", "L", "L", "L", "M", "P", "P", "T", "T", "G",
          "T", "T", "K", "T", "P", "T")
_ASPIRATED = frozenset((15, 16, 17))  # ㅋ ㅌ ㅍ
_ADDED_VOWEL = 18  # ㅡ

# English spellings, longest first at each position; c and g are read by what follows them.
_MULTI = (("tion", "SxN"), ("sion", "SxN"), ("ture", "Cx"), ("tch", "C"), ("ph", "P"), ("ck", "K"), ("qu", "Ku"),
          ("wh", "u"), ("gh", ""), ("sh", "Si"), ("ch", "C"), ("th", "S"), ("ng", "G"), ("dg", "C"), ("ee", "i"),
          ("ea", "i"), ("oo", "u"), ("ou", "au"), ("ai", "ei"), ("ay", "ei"), ("ei", "ei"), ("ey", "i"), ("ie", "i"))
_SINGLE = {"x": "KS", "k": "K", "q": "K", "b": "P", "p": "P", "f": "P", "v": "P", "d": "T", "t": "T", "s": "S",
           "z": "C", "j": "C", "l": "L", "r": "L", "m": "M", "n": "N", "h": "", "w": "u", "y": "i", "a": "a", "e": "e",
           "i": "i", "o": "o", "u": "x"}
# A vowel + r before a consonant or the end: the r is not pronounced ("transformer" 트랜스포머).
_R_COLORED = {"er": "x", "or": "x", "ar": "a", "ur": "x", "ir": "x"}
# A vowel before one consonant and a silent final e is long ("scale" 스케일, "style" 스타일, "spike" 스파이크).
_LONG = {"a": "ei", "i": "ai", "y": "ai", "o": "o", "u": "u"}
_SILENT_E = re.compile(r"([aiyou])[^aeiouy]e$")
_VOWELS = "aeiouy"
# Vowel pairs a loanword often writes for each other (English a as ㅐ, the schwa as ㅓ or ㅗ, ...).
_NEAR_VOWELS = frozenset(frozenset(p) for p in ("ae", "ax", "xo", "xu", "xe", "ie", "ou", "ao", "ia"))
_NEAR_PAIRS = frozenset((x, y) for pair in _NEAR_VOWELS for x in pair for y in pair if x != y)
_DOUBLED = re.compile(r"([A-Z])\1+")
_ENGLISH_TOKEN = re.compile(r"[a-z]+")


def hangul_form(word: str) -> str | None:
    """The phonetic form of a Hangul ``word`` ("어그멘테이션" -> "xKMeNTeiSixN"); None if it is not all syllables."""
    out: list[str] = []
    for ch in word:
        parts = hangul_parts(ch)
        if parts is None:
            return None
        initial, vowel, final = parts
        out += (_INITIAL[initial], _VOWEL[vowel], _FINAL[final])
    return _DOUBLED.sub(r"\1", "".join(out))


def latin_form(token: str) -> str:
    """The phonetic form of a lower-case English ``token`` as Korean would write it ("augmentation" ->
    "axKMeNTaSxN")."""
    w = token.lower()
    n = len(w)
    long_at, long_vowel, end = -1, "", n
    if n > 3 and w.endswith("e") and not w.endswith("ee"):
        end = n - 1
        m = _SILENT_E.search(w)
        if m:
            long_at, long_vowel = m.start(1), _LONG[m.group(1)]
    out: list[str] = []
    i = 0
    while i < end:
        if i == long_at:
            out.append(long_vowel)
            i += 1
            continue
        two = w[i:i + 2]
        if two in _R_COLORED and (i + 2 >= end or w[i + 2] not in _VOWELS):
            out.append(_R_COLORED[two])
            i += 2
            continue
        for spelling, sound in _MULTI:
            if w.startswith(spelling, i):
                out.append(sound)
                i += len(spelling)
                break
        else:
            c, nxt = w[i], w[i + 1:i + 2]
            if c == "c":
                out.append("S" if nxt in ("e", "i", "y") else "K")
            elif c == "g":
                out.append("C" if nxt in ("e", "i", "y") and i > 0 else "K")
            else:
                out.append(_SINGLE.get(c, ""))
            i += 1
    return _DOUBLED.sub(r"\1", "".join(out))


def skeleton(form: str) -> str:
    """A phonetic form's consonants, repeats merged: what a word and the token it spells share exactly."""
    return _DOUBLED.sub(r"\1", "".join(ch for ch in form if ch.isupper()))


def distance(a: str, b: str) -> float:
    """Weighted edit distance of two phonetic forms: a vowel dropped or added 0.5, a near vowel 0.25 (another
    0.75), a consonant dropped or added 1, one consonant for another 2."""
    # (Every cost is a multiple of 0.25, so sums are exact in any order. The loop keeps to local names and
    # comparisons: a question's new loanword is measured against each candidate of its skeleton.)
    gaps = [0.5 if y.islower() else 1.0 for y in b]
    prev = [0.0]
    for gap in gaps:
        prev.append(prev[-1] + gap)
    columns = range(len(b))
    near = _NEAR_PAIRS
    for x in a:
        vowel = x.islower()
        gap_x = 0.5 if vowel else 1.0
        left = prev[0] + gap_x
        cur = [left]
        for j in columns:
            y = b[j]
            if x == y:
                best = prev[j]
            elif vowel and y.islower():
                best = prev[j] + (0.25 if (x, y) in near else 0.75)
            else:
                best = prev[j] + 2.0
            up = prev[j + 1] + gap_x
            if up < best:
                best = up
            left += gaps[j]
            if best < left:
                left = best
            cur.append(left)
        prev = cur
    return prev[-1]


_SPELLINGS_FILE = "ml_loanwords_ko_en.tsv"

# What may follow a loanword in a question: a particle, the plural 들, or 하다 / 되다 conjugated ("서치해서").
_ENDINGS = frozenset({
    "이", "가", "을", "를", "은", "는", "의", "에", "에서", "로", "으로", "와", "과", "랑", "이랑", "도", "만", "까지",
    "부터", "보다", "처럼", "에게", "한테", "이나", "나", "이든", "든", "라도", "이라도", "에는", "에도", "로는",
    "으로는", "로도", "와는", "과는", "만큼", "마다", "밖에", "들", "들이", "들을", "들의", "들은", "들로", "들도",
    "하는", "한", "해서", "해", "했", "했던", "할", "하고", "하면", "하게", "된", "되는", "돼", "됐", "되면", "된다",
})
_LONGEST_ENDING = max(map(len, _ENDINGS))


@functools.lru_cache(maxsize=1)
def curated_spellings() -> dict[str, tuple[str, ...]]:
    """Hangul word -> the English words it spells, from the bundled list (data/ml_loanwords_ko_en.tsv)."""
    table: dict[str, tuple[str, ...]] = {}
    for cols in bundled_rows(_SPELLINGS_FILE):
        hangul = cols[0].strip()
        words = tuple(w.strip().lower() for w in (cols[1] if len(cols) > 1 else "").split("|") if w.strip())
        if hangul and words:
            table[hangul] = tuple(dict.fromkeys(table.get(hangul, ()) + words))
    return table


def curated_stem(word: str) -> str | None:
    """The listed loanword a question's Hangul ``word`` is, with any particle or 하다 / 되다 ending cut off
    ("웨이트를" -> 웨이트, "서치해서" -> 서치); None for a word not in the list."""
    table = curated_spellings()
    if word in table:
        return word
    for n in range(min(_LONGEST_ENDING, len(word) - 1), 0, -1):  # the longest ending first
        if word[-n:] in _ENDINGS and word[:-n] in table:
            return word[:-n]
    return None


def looks_borrowed(word: str) -> bool:
    """Whether a Hangul ``word`` looks like a loanword: an aspirated ㅋ ㅌ ㅍ, or a syllable of a consonant and
    the added ㅡ alone (스, 트, 크), which Korean writes between English consonants."""
    for ch in word:
        parts = hangul_parts(ch)
        if parts is None:
            return False
        initial, vowel, final = parts
        if initial in _ASPIRATED or (vowel == _ADDED_VOWEL and final == 0 and initial != 11):
            return True
    return False


def _spellable(token: str) -> str | None:
    """The skeleton under which ``token`` is stored, or None for a token no loanword is matched to."""
    if len(token) < MIN_TOKEN_CHARS or not _ENGLISH_TOKEN.fullmatch(token):
        return None
    sk = skeleton(latin_form(token))
    return sk if len(sk) >= MIN_CONSONANTS else None


def loanword_rows(tokens: Iterable[str], names: Iterable[str] = ()) -> Iterator[tuple[str, str, str]]:
    """(skeleton, token, phonetic form) of each English ``token`` a loanword may spell; the words of ``names``
    (authors' names: "Yarin Gal" leaves out yarin and gal) are left out."""
    skip = {word for name in names for word in _ENGLISH_TOKEN.findall(name.lower())}
    for token in tokens:
        if token in skip:
            continue
        sk = _spellable(token)
        if sk is not None:
            yield sk, token, latin_form(token)


class Loanwords:
    """Spells a question's Hangul loanwords as tokens of one index (`spell`).

    ``candidates(skeleton)`` gives the (token, phonetic form) pairs stored under a skeleton: the build's
    table (`Store.loanword_candidates`) or an in-memory one (`from_tokens`). ``indexed(token)`` says whether
    the index holds a token: the Hangul word itself (`weight`), a listed spelling (`curated`)."""

    def __init__(self, candidates: Callable[[str], Sequence[tuple[str, str]]],
                 indexed: Callable[[str], bool] | None = None) -> None:
        self._candidates = candidates
        self._indexed = indexed
        self._spelled: dict[str, tuple[str, ...]] = {}
        self._lock = threading.Lock()

    def weight(self, word: str) -> float:
        """The query weight of what ``word`` spells: `LOANWORD_WEIGHT`, or `INDEXED_LOANWORD_WEIGHT` when the
        index holds the Hangul word too (its notes already match it as typed)."""
        return INDEXED_LOANWORD_WEIGHT if self._indexed is not None and self._indexed(word) else LOANWORD_WEIGHT

    @classmethod
    def from_tokens(cls, tokens: Callable[[], Iterable[str]], names: Callable[[], Iterable[str]] = tuple,
                    indexed: Callable[[str], bool] | None = None) -> Loanwords:
        """A table made in memory on first use from ``tokens()`` (the index's vocabulary) less ``names()``:
        for an index whose build did not store one."""
        table: dict[str, list[tuple[str, str]]] | None = None
        lock = threading.Lock()

        def candidates(sk: str) -> Sequence[tuple[str, str]]:
            nonlocal table
            if table is None:
                with lock:
                    if table is None:
                        made: dict[str, list[tuple[str, str]]] = {}
                        for s, token, form in loanword_rows(tokens(), names()):
                            made.setdefault(s, []).append((token, form))
                        table = made
            return table.get(sk, ())

        return cls(candidates, indexed)

    def curated(self, word: str) -> tuple[str, ...]:
        """The English words the list spells ``word`` as (`curated_spellings`) that the index holds."""
        listed = curated_spellings().get(word, ())
        indexed = self._indexed
        return listed if indexed is None else tuple(w for w in listed if indexed(w))

    def spell(self, word: str) -> tuple[str, ...]:
        """The tokens a Hangul ``word`` spells, best first (none for a word that does not look borrowed): the
        listed spellings the index holds (`curated`), else what the speller finds."""
        cached = self._spelled.get(word)
        if cached is not None:
            return cached
        out: tuple[str, ...] = self.curated(word)
        if out:
            with self._lock:
                self._spelled[word] = out
            return out
        form = hangul_form(word) if looks_borrowed(word) else None
        sk = skeleton(form) if form else ""
        if form and len(sk) >= MIN_CONSONANTS:
            # Each character of length between the forms costs at least 0.5: most candidates are out at once.
            scored = sorted((distance(form, f) / max(len(form), len(f)), token) for token, f in self._candidates(sk)
                            if 0.5 * abs(len(form) - len(f)) <= MAX_DISTANCE * max(len(form), len(f)))
            if scored and scored[0][0] <= MAX_DISTANCE:
                best = scored[0][0]
                out = tuple(t for d, t in scored[:MAX_SPELLINGS] if d <= best + TIE_MARGIN)
        with self._lock:
            if len(self._spelled) >= 4096:
                self._spelled.clear()
            self._spelled[word] = out
        return out
