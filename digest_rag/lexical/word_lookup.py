"""Reading an index's stored word analyses (`EojeolTable`): a text's Kiwi morphemes from point lookups, never Kiwi.

The table itself, its format and how a build records it: `digest_rag.lexical.word_table`. A word the table
lacks is read as a known stem plus a known suffix, or as two known words run together, before the caller
falls back to Kiwi."""

from __future__ import annotations

import re
import sqlite3
import threading
from bisect import bisect_right
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from digest_rag.errors import IndexCorruptedError, IndexVersionError
from digest_rag.lexical.analysis import needs_kiwi
from digest_rag.lexical.word_table import EOJEOL_FORMAT, MAX_WORDS, WORD, Morph, _BATCH, _EDGE, _decode

__all__ = ["HELD_WORDS", "EojeolTable"]

# Lookups by table; the keys are always bound parameters.
_SELECT = {name: f"SELECT key, morphs FROM {name} WHERE key IN " for name in ("eojeols", "stems", "suffixes")}


#: Most keys one table's lookup cache holds (hits and misses) before it starts over.
_CACHE_MAX = 1 << 16

#: Most rows (words, stems and suffixes together) a table may have for `EojeolTable.hold` to hold it.
HELD_WORDS = 262_144


# A hyphen or slash inside a word, and the pieces it joins.
_JOINER = re.compile(r"\w[-/\u00b7]\w")
_PIECE = re.compile(r"[^-/\u00b7]+")
_UNKNOWN: list = []  # a cache entry's absence (None is a cached miss)


# A Latin/number head written against Korean ("XLNet이", "GPT-4로"): the characters before the first Hangul.
_LATIN_HEAD = re.compile(r"[0-9A-Za-z][0-9A-Za-z.+\-_/]*(?=[\uac00-\ud7a3])")


# Which suffix may follow which stem: a particle or 하/되/이 after a noun ("탈옥을", "악용하는"), an ending
# after a verb or adjective ("넣어서"); nothing after a prefix. Keeps "비지도" from reading as 비 + 지도 (EC+JX).
_NOUNISH = frozenset({"NNG", "NNP", "NNB", "NR", "NP", "XR", "XSN", "SL", "SN", "SH"})


_AFTER_NOUN = frozenset({"XSV", "XSA", "VCP", "VCN"})


def _fits(stem: Sequence[tuple[str, str, int, int, str]], suffix: Sequence[tuple[str, str, int, int, str]]) -> bool:
    if not suffix:
        return True
    last, first = stem[-1][1].split("-", 1)[0], suffix[0][1].split("-", 1)[0]
    if last in _NOUNISH:
        return first[:1] == "J" or first in _AFTER_NOUN
    if last in ("VV", "VA"):
        return first[:1] == "E"
    return False


class EojeolTable:
    """The stored table of one generation, read with point lookups (never loaded whole)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._multiword: frozenset[str] | None = None
        # Each word's reading relative to the word (None: unknown), for a table without multi-word keys.
        self._readings: dict[str, list[Morph] | None] = {}
        # Lookups already answered, hits and misses, per table: the table is immutable, and a query's words
        # (방법, 모델, 논문, 어떻게 ...) recur from question to question. Bounded: cleared when it grows past
        # _CACHE_MAX keys.
        self._cache: dict[str, dict[str, list[tuple[str, str, int, int, str]] | None]] = {t: {} for t in _SELECT}
        # Every row's encoded analysis, per table, once `hold` read them (None: lookups ask SQLite).
        self._held: dict[str, dict[str, str]] | None = None
        try:
            # Read-only and immutable: a generation's files never change once committed.
            self._con: sqlite3.Connection | None = sqlite3.connect(
                f"{self.path.resolve().as_uri()}?mode=ro&immutable=1", uri=True, check_same_thread=False)
            row = self._con.execute("SELECT value FROM meta WHERE name = 'format'").fetchone()
        except sqlite3.Error as exc:
            raise IndexCorruptedError(f"{self.path}: unreadable word analysis table ({exc})") from exc
        if row is None or row[0] != str(EOJEOL_FORMAT):
            self.close()
            raise IndexVersionError(
                f"{self.path}: word analysis table of format {row[0] if row else None!r}, this digest_rag reads "
                f"format {EOJEOL_FORMAT}; rebuild the index (digest-rag build --force)")

    def close(self) -> None:
        """Release the SQLite connection (lookups then find nothing)."""
        with self._lock:
            if self._con is not None:
                self._con.close()
                self._con = None
            for cache in self._cache.values():
                cache.clear()
            self._readings.clear()
            self._held = None

    def __len__(self) -> int:
        return int(self._query("SELECT count(*) FROM eojeols", ())[0][0])

    def _query(self, sql: str, params: Sequence[object]) -> list[tuple]:
        with self._lock:
            if self._con is None:
                return []
            try:
                return self._con.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise IndexCorruptedError(f"{self.path}: unreadable word analysis table ({exc})") from exc

    def hold(self) -> bool:
        """Read every row of a table of at most `HELD_WORDS` rows into memory (encoded; each decoded when first
        looked up), so that a question's new words and a snippet's words cost a dictionary read, not a SQLite
        query: a process's second search does it for a small index (`LexicalIndex.hold_small`). 0.05-0.1 s and
        ~22 MiB for seeds + ml-papers' 57,000 rows. False (nothing held) for a bigger table or one that cannot
        be read whole."""
        if self._held is not None:
            return True
        try:
            counts = self._query("SELECT (SELECT count(*) FROM eojeols) + (SELECT count(*) FROM stems)"
                                 " + (SELECT count(*) FROM suffixes)", ())
            if not counts or not isinstance(counts[0][0], int) or counts[0][0] > HELD_WORDS:
                return False
            held = {t: dict(self._query(f"SELECT key, morphs FROM {t}", ())) for t in _SELECT}
            _ = self.multiword  # (read once: with the rows held, nothing else asks SQLite)
        except IndexCorruptedError:
            # Holding never fails a search: the lookup that meets the damage reports it.
            return False
        with self._lock:
            if self._con is not None:  # not closed meanwhile
                self._held = held
        return self._held is not None

    def lookup(self, keys: Iterable[str], table: str = "eojeols") -> dict[str, list[tuple[str, str, int, int, str]]]:
        """Stored analyses of those ``keys`` the table holds (``table``: eojeols, stems or suffixes)."""
        if table not in _SELECT:
            raise ValueError(f"no table {table!r}")
        cache = self._cache[table]
        out: dict[str, list[tuple[str, str, int, int, str]]] = {}
        todo = []
        for key in set(keys):
            hit = cache.get(key, _UNKNOWN)  # one read: another thread may clear the cache meanwhile
            if hit is _UNKNOWN:
                todo.append(key)
            elif hit is not None:
                out[key] = hit
        todo.sort()
        fresh: dict[str, list[tuple[str, str, int, int, str]]] = {}
        held = self._held
        for i in range(0, len(todo), _BATCH):
            part = todo[i : i + _BATCH]
            if held is not None:
                rows = [(key, held[table][key]) for key in part if key in held[table]]
            else:
                rows = self._query(_SELECT[table] + "(" + ",".join("?" * len(part)) + ")", part)
            for key, raw in rows:
                try:
                    fresh[key] = _decode(raw)
                except (ValueError, TypeError) as exc:
                    raise IndexCorruptedError(f"{self.path}: damaged analysis of {key!r}") from exc
        if todo and self._con is not None:
            if len(cache) + len(todo) > _CACHE_MAX:
                cache.clear()
            cache.update(dict.fromkeys(todo))
            cache.update(fresh)
        out.update(fresh)
        return out

    def rows(self) -> dict[str, tuple[str, int]]:
        """Every entry, key -> (encoded analysis, times seen): the next build's starting counts."""
        return {k: (m, int(n)) for k, m, n in self._query("SELECT key, morphs, seen FROM eojeols", ())}

    @property
    def multiword(self) -> frozenset[str]:
        """The multi-word keys, read once."""
        if self._multiword is None:
            self._multiword = frozenset(k for (k,) in self._query("SELECT key FROM multiword", ()))
        return self._multiword

    @property
    def reads_words_alone(self) -> bool:
        """True for a table without multi-word keys: a text reads as its words, each alone."""
        return not self.multiword

    def analyse(self, text: str, unknown: Callable[[str], Sequence[tuple[str, str, int, int, str]]] | None = None,
                ) -> list[Morph] | None:
        """Kiwi-like morphemes of ``text`` (positions in ``text``), or None when a Hangul word is not in the table.

        Words without Hangul or Hanja are skipped: what Kiwi makes of them
        (Latin, numbers, symbols) is never a Korean token. A word the table
        lacks is read as a known stem plus a known suffix (`EojeolRecorder.parts`),
        the longest stem first; failing that, by ``unknown(word)`` (Kiwi reading the word alone, positions
        within the word) where given, else the text is None. ``unknown`` is asked only of a table whose words
        read alone (`reads_words_alone`).
        """
        if self.multiword:
            return self._analyse_text(text)
        # Without multi-word keys each word reads alone: its reading (relative to the word) is kept, and a
        # text (a snippet's chunk, a question) is its words' readings placed, one dictionary read per word.
        words = [(m.start(), m.group()) for m in WORD.finditer(text)]
        readings = self.read_words(w for _s, w in words)
        out: list[Morph] = []
        for start, word in words:
            reading = readings[word]
            if reading is None:
                if unknown is None:
                    return None
                reading = unknown(word)
            out.extend(Morph(f, t, start + s, n, lem) for f, t, s, n, lem in reading)
        return out

    def read_words(self, words: Iterable[str]) -> dict[str, list[Morph] | None]:
        """Each word's reading alone (positions within the word; None: a word the table cannot read), the new
        ones in one batch of lookups, all kept: what `analyse` reads a text of these words from. A table with
        multi-word keys reads each word as a text of its own (`reads_words_alone` is then False)."""
        unique = list(dict.fromkeys(words))
        if self.multiword:
            return {w: self._analyse_text(w) for w in unique}
        readings = self._readings
        todo = [w for w in unique if w not in readings]
        fresh = self._read_words(todo) if todo else {}
        if fresh:
            if len(readings) + len(fresh) > _CACHE_MAX:
                readings.clear()
            readings.update(fresh)
        out: dict[str, list[Morph] | None] = {}
        for w in unique:
            reading = fresh[w] if w in fresh else readings.get(w, _UNKNOWN)
            out[w] = self._read_words([w])[w] if reading is _UNKNOWN else reading  # (cleared meanwhile)
        return out

    def _read_words(self, words: Sequence[str]) -> dict[str, list[Morph] | None]:
        """Each word's reading as `_analyse_text` gives it for the word alone (positions within the word; None:
        unknown), with one batch of lookups for all of them."""
        cores = {w: _EDGE.sub("", w) for w in words if needs_kiwi(w)}
        candidates = set(cores) | {c for c in cores.values() if c}
        found = self.lookup(candidates)
        parts = self._parts([k for k in candidates if k not in found])
        parts.update(self._joined([k for k in candidates if k not in found and k not in parts]))
        out: dict[str, list[Morph] | None] = {}
        for word in words:
            if word not in cores:
                out[word] = []
                continue
            core = cores[word] or word
            out[word] = None
            for lookup, form in ((found, word), (found, core), (parts, core), (parts, word)):
                stored = lookup.get(form)
                if stored is not None:
                    at = word.index(form)
                    out[word] = [Morph(f, t, at + st, n, lem) for f, t, st, n, lem in stored]
                    break
        # Still unknown: words joined by a hyphen or slash ("비전-언어", "키/값"), which Kiwi reads as the words
        # with a symbol between them (SO/SP: no token), so their readings are the words' readings.
        joined = {w: [(m.start(), m.group()) for m in _PIECE.finditer(w)] for w in words
                  if out.get(w) is None and _JOINER.search(cores.get(w) or "")}
        if joined:
            pieces = self._read_words(list({p for found_pieces in joined.values() for _s, p in found_pieces}))
            for w, found_pieces in joined.items():
                if all(pieces.get(p) is not None for _s, p in found_pieces):
                    out[w] = [Morph(m.form, m.tag, at + m.start, m.len, m.lemma)
                              for at, p in found_pieces for m in pieces[p]]  # type: ignore[union-attr]
        return out

    def _analyse_text(self, text: str) -> list[Morph] | None:
        """`analyse` of a whole text: its words and multi-word keys looked up together."""
        words = [(m.start(), m.end()) for m in WORD.finditer(text)]
        multiword = self.multiword
        candidates: set[str] = set()
        for i in range(len(words)):
            for n in range(1, MAX_WORDS + 1):
                if i + n > len(words) or (n > 1 and not multiword):
                    break
                key = " ".join(text[s:e] for s, e in words[i : i + n])
                if n > 1:
                    if key in multiword:
                        candidates.add(key)
                elif needs_kiwi(key):
                    candidates.add(key)
                    core = _EDGE.sub("", key)
                    if core:
                        candidates.add(core)
        found = self.lookup(candidates)
        parts = self._parts([k for k in candidates if " " not in k and k not in found])
        # Still unknown: a name with a particle ("XLNet이"), or two known words written as one ("사전학습").
        parts.update(self._joined([k for k in candidates if " " not in k and k not in found and k not in parts]))
        out: list[Morph] = []
        i = 0
        longest = MAX_WORDS if multiword else 1  # without multi-word keys every key is one word
        while i < len(words):
            for n in range(min(longest, len(words) - i), 1, -1):
                group = words[i : i + n]
                stored = found.get(" ".join(text[s:e] for s, e in group))
                if stored is not None:
                    out.extend(_place(stored, group))
                    i += n
                    break
            else:
                s, e = words[i]
                word = text[s:e]
                i += 1
                if not needs_kiwi(word):
                    continue
                # The word as written, then without the punctuation around it; each whole, then as stem + suffix.
                core = _EDGE.sub("", word) or word
                for lookup, form in ((found, word), (found, core), (parts, core), (parts, word)):
                    stored = lookup.get(form)
                    if stored is not None:
                        s += word.index(form)
                        out.extend(_place(stored, [(s, s + len(form))]))
                        break
                else:
                    return None
        return out

    def _joined(self, words: Sequence[str]) -> dict[str, list[tuple[str, str, int, int, str]]]:
        """Readings of unknown ``words`` that are no stem + suffix either, from two known parts.

        * A Latin or number head with a Korean particle or ending: "XLNet이", "GPT-4로", "DPO는". The head
          makes no Korean morpheme (Kiwi reads it SL/SN, which the analysis leaves to its Latin tokens),
          so the reading is the tail's, from the suffixes (or words) the table knows.
        * Two known words run together, the first a noun: "사전학습" (사전 + 학습), "플래시어텐션"
          (플래시 + 어텐션), the second also as stem + suffix ("언어모델을"). Longest first part first.
        """
        out: dict[str, list[tuple[str, str, int, int, str]]] = {}
        latin = {w: m.end() for w in words if (m := _LATIN_HEAD.match(w)) and m.end() < len(w)}
        if latin:
            tails = {w[cut:] for w, cut in latin.items()}
            known = {**self.lookup(tails), **self.lookup(tails, "suffixes")}
            for w, cut in latin.items():
                tail = known.get(w[cut:])
                if tail is not None:
                    out[w] = [(f, t, st + cut, n, lem) for f, t, st, n, lem in tail]
        rest = [w for w in words if w not in out and needs_kiwi(w) and len(w) >= 3 and w not in latin]
        if not rest:
            return out
        heads = self.lookup(w[:k] for w in rest for k in range(2, len(w)))
        tails_needed = {w[k:] for w in rest for k in range(2, len(w)) if w[:k] in heads}
        tails = {**self._parts(list(tails_needed)), **self.lookup(tails_needed)}
        for w in rest:
            for k in range(len(w) - 1, 1, -1):
                head, tail = heads.get(w[:k]), tails.get(w[k:])
                if head and tail and all(m[1] in _NOUNISH for m in head) and tail[0][1] in _NOUNISH:
                    out[w] = [*head, *((f, t, st + k, n, lem) for f, t, st, n, lem in tail)]
                    break
        return out

    def _parts(self, words: Sequence[str]) -> dict[str, list[tuple[str, str, int, int, str]]]:
        """Readings of unknown ``words`` as a known stem + a known suffix (longest stem first)."""
        words = [w for w in words if needs_kiwi(w)]
        if not words:
            return {}
        stems = self.lookup((w[:k] for w in words for k in range(1, len(w) + 1)), "stems")
        suffixes = self.lookup((w[k:] for w in words for k in range(1, len(w))), "suffixes")
        out: dict[str, list[tuple[str, str, int, int, str]]] = {}
        for w in words:
            for k in range(len(w), 0, -1):
                head = stems.get(w[:k])
                tail = suffixes.get(w[k:]) if k < len(w) else []
                if head is not None and tail is not None and _fits(head, tail):
                    out[w] = [*head, *((f, t, st + k, n, lem) for f, t, st, n, lem in tail)]
                    break
        return out


def _place(stored: Sequence[tuple[str, str, int, int, str]], group: Sequence[tuple[int, int]]) -> list[Morph]:
    """Stored morphemes of a key, moved to where its words are in the text (single spaces in the key)."""
    if len(group) == 1:  # one word: every morpheme moves by the word's start
        at = group[0][0]
        return [Morph(form, tag, at + start, length, lemma) for form, tag, start, length, lemma in stored]
    offsets: list[int] = []
    pos = 0
    for s, e in group:
        offsets.append(pos)
        pos += e - s + 1

    def at(p: int) -> int:
        w = bisect_right(offsets, p) - 1
        return group[w][0] + p - offsets[w]

    out = []
    for form, tag, start, length, lemma in stored:
        a = at(start)
        b = at(start + length - 1) + 1 if length > 0 else a
        out.append(Morph(form, tag, a, b - a, lemma))
    return out
