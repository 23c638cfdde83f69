"""Kiwi's analysis of every Hangul word form an index was built from, stored with the index.

Starting Kiwi costs a search process a second or more and ~500 MB (model load
plus its first analysis: BENCHMARKS.md), which is most of a CLI question. The
build already runs Kiwi over every Korean text, so it records, per eojeol (a
whitespace-delimited word as written: "컨텍스트를", "(탈옥)", "LLM의"), the
morphemes Kiwi gave it: form, tag, start and length within the word, lemma.
A word Kiwi read differently in different sentences keeps its most frequent
analysis (ties: the smallest analysis string), so the table is a function of
the texts, never of their order. A morpheme Kiwi drew across a space (its
multi-word dictionary, "자연어 처리" as one noun; `analysis.KIWI_OPTIONS` leaves it unloaded, but a Kiwi
with it still reads this way) makes the words it covers
one key, joined by a single space, up to `MAX_WORDS` words.

At query time `EojeolTable.analyse` rebuilds a text's morpheme list from the
table, longest key first, when *every* Hangul word of it is known (leading and
trailing punctuation may be peeled off a word to find it); the morphemes go
through exactly the code Kiwi's would (`analysis._korean_tokens`, the snippet
highlighter). One unknown word and the caller asks Kiwi, as before. Kiwi reads
a word in its sentence, so the table can differ from a fresh analysis where
context changes the reading; the agreement measured on the eval queries is in
BENCHMARKS.md.

The table is one SQLite file in the lexical directory, listed and checksummed
by the manifest like every generation file, with its format version inside.
An update seeds the new table from the previous generation's (texts it does
not re-analyse keep their words), so a word of a text that was since removed
can stay in the table: it is still Kiwi's reading of that word.
"""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import threading
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

from digest_rag.lexical.analysis import needs_kiwi
from digest_rag.errors import IndexCorruptedError, IndexVersionError

__all__ = ["EOJEOL_FILE", "EOJEOL_FORMAT", "MAX_WORDS", "EojeolRecorder", "EojeolTable", "Morph"]

#: File name inside the lexical directory.
EOJEOL_FILE = "lexical.eojeols.sqlite"
#: Format of the table; another value in a file means it was written by another digest_rag: rebuild.
EOJEOL_FORMAT = 1
#: Most words one key may join (a multi-word morpheme longer than this is not recorded).
MAX_WORDS = 3
#: Distinct analyses counted per word during a build (a word read more ways keeps its first ones): bounds memory.
_MAX_READINGS = 4
# SQLite's default limit of host parameters is 999 on old builds.
_BATCH = 500

_SCHEMA = """
CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE eojeols (key TEXT PRIMARY KEY, morphs TEXT NOT NULL, seen INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE multiword (key TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE stems (key TEXT PRIMARY KEY, morphs TEXT NOT NULL, seen INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE suffixes (key TEXT PRIMARY KEY, morphs TEXT NOT NULL, seen INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE part_counts (
    part TEXT NOT NULL, key TEXT NOT NULL, morphs TEXT NOT NULL, seen INTEGER NOT NULL,
    PRIMARY KEY (part, key, morphs)) WITHOUT ROWID;
"""
# Version of the stem/suffix split (`_split`, `_contribution`): a previous table whose part_counts were
# made by other rules is rewritten whole, never patched. Readers never read part_counts (format 1 still).
_PARTS_VERSION = "1"
# Lookups by table; the keys are always bound parameters.
_SELECT = {name: f"SELECT key, morphs FROM {name} WHERE key IN " for name in ("eojeols", "stems", "suffixes")}
# Writes of the stems and suffixes tables (a build's), by table.
_PUT = {name: f"INSERT OR REPLACE INTO {name} VALUES (?, ?, ?)" for name in ("stems", "suffixes")}
_DROP = {name: f"DELETE FROM {name} WHERE key = ?" for name in ("stems", "suffixes")}

#: Most keys one table's lookup cache holds (hits and misses) before it starts over.
_CACHE_MAX = 1 << 16
_UNKNOWN: list = []  # a cache entry's absence (None is a cached miss)
_WORD = re.compile(r"\S+")
# A Latin/number head written against Korean ("XLNet이", "GPT-4로"): the characters before the first Hangul.
_LATIN_HEAD = re.compile(r"[0-9A-Za-z][0-9A-Za-z.+\-_/]*(?=[\uac00-\ud7a3])")
# Punctuation a reader puts around a word ("공격은?", "(탈옥)") that Kiwi reads as its own morpheme.
_EDGE = re.compile(r"^[^\w]+|[^\w]+$")


# Tags that make no BM25 token (analysis._korean_tokens): particles (J*), endings (E*), the verb/adjective
# makers and copulas. A word is split into a stem (its leading morphemes up to the first of these) and a
# suffix (the rest, all of these).
_SUFFIX_TAGS = frozenset({"XSV", "XSA", "VCP", "VCN", "VX"})


def _is_suffix_tag(tag: str) -> bool:
    base = tag.split("-", 1)[0]
    return base[:1] in ("J", "E") or base in _SUFFIX_TAGS


class Morph(NamedTuple):
    """One morpheme as Kiwi gives it (the attributes `analysis._korean_tokens` reads)."""

    form: str
    tag: str
    start: int
    len: int
    lemma: str


def _encode(morphs: Iterable[tuple[str, str, int, int, str]]) -> str:
    # Compact JSON; the lemma is stored empty when it equals the form (most morphemes).
    return json.dumps([[f, t, s, n, "" if lem == f else lem] for f, t, s, n, lem in morphs],
                      ensure_ascii=False, separators=(",", ":"))


def _decode(raw: str) -> list[tuple[str, str, int, int, str]]:
    return [(f, t, int(s), int(n), lem or f) for f, t, s, n, lem in json.loads(raw)]


class EojeolRecorder:
    """Collects Kiwi's analysis per word (or multi-word key) while a build analyses texts.

    ``previous`` (key -> (encoded analysis, times seen)) seeds the counts, e.g.
    the previous generation's table: its texts are not analysed again. When
    ``base`` names that table's file (checked by the caller), `save` copies it
    and rewrites only the entries this build's analyses changed, instead of
    writing every entry and re-deriving every stem and suffix: the same
    table, at the cost of the change.
    """

    def __init__(self, previous: Mapping[str, tuple[str, int]] | None = None, base: Path | None = None) -> None:
        self.readings: dict[str, dict[str, int]] = {k: {m: n} for k, (m, n) in (previous or {}).items()}
        self._previous = previous or {}
        self.base = base if previous else None
        #: Keys whose counts changed since ``previous``.
        self.touched: set[str] = set()

    def observe(self, text: str, morphs: Sequence[object]) -> None:
        """Record the words of ``text`` (a segment Kiwi analysed) with their ``morphs`` (Kiwi tokens)."""
        words = [(m.start(), m.end()) for m in _WORD.finditer(text)]
        if not words:
            return
        starts = [s for s, _e in words]
        link = [False] * len(words)  # link[i]: word i and word i+1 share a morpheme
        bad = [False] * len(words)
        placed: list[tuple[int, int, object]] = []
        for t in morphs:
            start = int(t.start)  # type: ignore[attr-defined]
            end = start + int(t.len)  # type: ignore[attr-defined]
            i = bisect_right(starts, start) - 1
            j = bisect_right(starts, max(end - 1, start)) - 1
            if i < 0 or start >= words[i][1] or max(end - 1, start) >= words[j][1]:
                # A morpheme in whitespace: its neighbours' reading cannot be cut into words.
                for w in (i, i + 1):
                    if 0 <= w < len(words):
                        bad[w] = True
                continue
            for w in range(i, j):
                link[w] = True
            placed.append((i, j, t))
        by_first: dict[int, list[tuple[int, object]]] = {}
        for i, j, t in placed:
            by_first.setdefault(i, []).append((j, t))
        g = 0
        while g < len(words):
            h = g
            while link[h] and h + 1 < len(words):
                h += 1
            self._record(text, words[g : h + 1], g, by_first, any(bad[g : h + 1]))
            g = h + 1

    def _record(self, text: str, group: list[tuple[int, int]], first: int,
                by_first: Mapping[int, list[tuple[int, object]]], bad: bool) -> None:
        if bad or len(group) > MAX_WORDS:
            return
        key = " ".join(text[s:e] for s, e in group)
        if not needs_kiwi(key):
            return  # only words with Hangul (or Hanja) ever reach Kiwi's part of the analysis
        offsets: list[int] = []
        pos = 0
        for s, e in group:
            offsets.append(pos)
            pos += e - s + 1
        out: list[tuple[str, str, int, int, str]] = []
        for w in range(first, first + len(group)):
            for j, t in by_first.get(w, []):
                start = int(t.start)  # type: ignore[attr-defined]
                end = start + int(t.len)  # type: ignore[attr-defined]
                a = offsets[w - first] + start - group[w - first][0]
                b = offsets[j - first] + end - group[j - first][0]
                form = t.form  # type: ignore[attr-defined]
                lemma = getattr(t, "lemma", None) or form
                out.append((form, str(t.tag), a, b - a, lemma))  # type: ignore[attr-defined]
        enc = _encode(out)
        seen = self.readings.setdefault(key, {})
        if enc in seen or len(seen) < _MAX_READINGS:
            seen[enc] = seen.get(enc, 0) + 1
            self.touched.add(key)

    def rows(self) -> list[tuple[str, str, int]]:
        """(key, most frequent analysis, times seen), sorted by key; ties go to the smallest analysis string."""
        return [(key, *_best(self.readings[key])) for key in sorted(self.readings)]

    def parts(self) -> tuple[list[tuple[str, str, int]], list[tuple[str, str, int]]]:
        """Stems and suffixes of the one-word entries: rows as `rows`, each key's most frequent reading.

        "컨텍스트를" (컨텍스트/NNG 를/JKO) gives the stem "컨텍스트" and the suffix "를"; a query's
        "컨텍스트에서", unknown as a word, is then read as that stem plus the suffix of "모델에서".
        """
        stems, suffixes = self._part_counts(self.rows())
        return ([(k, *_best(stems[k])) for k in sorted(stems)], [(k, *_best(suffixes[k])) for k in sorted(suffixes)])

    @staticmethod
    def _part_counts(rows: Iterable[tuple[str, str, int]]) -> tuple[dict[str, dict[str, int]], dict[str, dict[str, int]]]:
        """Every stem's and suffix's readings with their summed counts (what `parts` picks the best of)."""
        counts: dict[str, dict[str, dict[str, int]]] = {"stems": {}, "suffixes": {}}
        for key, best, seen in rows:
            for table, part, enc, n in _contribution(key, best, seen):
                by_reading = counts[table].setdefault(part, {})
                by_reading[enc] = by_reading.get(enc, 0) + n
        return counts["stems"], counts["suffixes"]

    def save(self, path: Path) -> None:
        """Write the table as a fresh SQLite file at ``path`` (from ``base`` and the changes, when it has one)."""
        path.unlink(missing_ok=True)
        if self.base is not None and self._patch(path):
            return
        path.unlink(missing_ok=True)
        con = sqlite3.connect(path)
        try:
            con.executescript(_SCHEMA)
            con.executemany("INSERT INTO meta VALUES (?, ?)", (("format", str(EOJEOL_FORMAT)), ("parts", _PARTS_VERSION)))
            rows = self.rows()
            con.executemany("INSERT INTO eojeols VALUES (?, ?, ?)", rows)
            # The multi-word keys on their own (few: 7 of 18,801 for ml-papers), so that a query tries a
            # run of words as one key only where the table has it, not every run of 2-3 words through SQL.
            con.executemany("INSERT INTO multiword VALUES (?)", ((k,) for k, _m, _n in rows if " " in k))
            stems, suffixes = self._part_counts(rows)
            for table, counts in (("stems", stems), ("suffixes", suffixes)):
                con.executemany(_PUT[table], ((k, *_best(counts[k])) for k in sorted(counts)))
                # Every reading's count, not only the best: the next build patches them (see _patch).
                con.executemany("INSERT INTO part_counts VALUES (?, ?, ?, ?)",
                                ((table, k, m, n) for k in sorted(counts) for m, n in counts[k].items()))
            con.commit()
        finally:
            con.close()

    def _patch(self, path: Path) -> bool:
        """Copy ``base`` (the table ``previous`` was read from) to ``path`` and apply this build's changes;
        False (nothing usable written) when ``base`` has no reading counts of the current split rules."""
        assert self.base is not None
        shutil.copyfile(self.base, path)
        con = sqlite3.connect(path)
        try:
            meta = dict(con.execute("SELECT name, value FROM meta").fetchall())
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if meta.get("format") != str(EOJEOL_FORMAT) or meta.get("parts") != _PARTS_VERSION \
                    or "part_counts" not in tables:
                return False
            delta: dict[tuple[str, str, str], int] = {}
            for key in sorted(self.touched):
                best, seen = _best(self.readings[key])
                old = self._previous.get(key)
                if old is not None and (old[0], int(old[1])) == (best, seen):
                    continue
                con.execute("INSERT OR REPLACE INTO eojeols VALUES (?, ?, ?)", (key, best, seen))
                if " " in key:
                    con.execute("INSERT OR IGNORE INTO multiword VALUES (?)", (key,))
                for sign, row in ((-1, old), (1, (best, seen))):
                    if row is not None:
                        for table, part, enc, n in _contribution(key, row[0], int(row[1])):
                            delta[(table, part, enc)] = delta.get((table, part, enc), 0) + sign * n
            for (table, part, enc), d in delta.items():
                if d:
                    con.execute("INSERT INTO part_counts VALUES (?, ?, ?, ?) ON CONFLICT (part, key, morphs) "
                                "DO UPDATE SET seen = seen + excluded.seen", (table, part, enc, d))
            con.execute("DELETE FROM part_counts WHERE seen <= 0")
            # Each stem or suffix whose counts moved gets its best reading again, or goes.
            for table, part in sorted({(t, p) for (t, p, _e), d in delta.items() if d}):
                counts = dict(con.execute("SELECT morphs, seen FROM part_counts WHERE part = ? AND key = ?",
                                          (table, part)).fetchall())
                if counts:
                    con.execute(_PUT[table], (part, *_best(counts)))
                else:
                    con.execute(_DROP[table], (part,))
            con.commit()
            return True
        finally:
            con.close()


def _contribution(key: str, best: str, seen: int) -> list[tuple[str, str, str, int]]:
    """(table, stem or suffix, its reading, count) that one entry adds to the stems and suffixes.

    "악용하고," teaches the stem 악용 and the suffix 하고: punctuation around a word is no part of either.
    """
    if " " in key:
        return []
    word = _EDGE.sub("", key)
    if not word:
        return []
    at = key.index(word)
    morphs = [(f, t, s - at, n, lem) for f, t, s, n, lem in _decode(best) if at <= s < at + len(word)]
    split = _split(word, morphs)
    if split is None:
        return []
    cut, head, tail = split
    return [(table, part, _encode(m), seen)
            for table, part, m in (("stems", word[:cut], head), ("suffixes", word[cut:], tail)) if part]


def _best(seen: Mapping[str, int]) -> tuple[str, int]:
    return min(seen, key=lambda m: (-seen[m], m)), sum(seen.values())


def _split(word: str, morphs: Sequence[tuple[str, str, int, int, str]]) -> tuple[int, list, list] | None:
    """(cut, stem morphemes, suffix morphemes relative to the cut) of a one-word reading, or None.

    The stem is the morphemes before the first suffix tag (`_SUFFIX_TAGS`); the reading splits only when
    every stem morpheme lies before the cut and every suffix morpheme at or after it (contractions such as
    했 = 하 + 었 across the cut do not split).
    """
    first = next((i for i, m in enumerate(morphs) if _is_suffix_tag(m[1])), len(morphs))
    head, tail = list(morphs[:first]), list(morphs[first:])
    if not head or any(not _is_suffix_tag(m[1]) for m in tail):
        return None
    cut = max(m[2] + m[3] for m in head)
    if cut <= 0 or cut > len(word) or any(m[2] < cut for m in tail) or (tail and tail[0][2] != cut):
        return None
    return cut, head, [(f, t, s - cut, n, lem) for f, t, s, n, lem in tail]


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
        for i in range(0, len(todo), _BATCH):
            part = todo[i : i + _BATCH]
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

    def analyse(self, text: str) -> list[Morph] | None:
        """Kiwi-like morphemes of ``text`` (positions in ``text``), or None when a Hangul word is not in the table.

        Words without Hangul or Hanja are skipped: what Kiwi makes of them
        (Latin, numbers, symbols) is never a Korean token. A word the table
        lacks is read as a known stem plus a known suffix (`EojeolRecorder.parts`),
        the longest stem first; None when no split is known either.
        """
        if self.multiword:
            return self._analyse_text(text)
        # Without multi-word keys each word reads alone: its reading (relative to the word) is kept, and a
        # text (a snippet's chunk, a question) is its words' readings placed, one dictionary read per word.
        readings = self._readings
        words = [(m.start(), m.group()) for m in _WORD.finditer(text)]
        todo = list(dict.fromkeys(w for _s, w in words if w not in readings))
        if todo:
            if len(readings) + len(todo) > _CACHE_MAX:
                readings.clear()
            readings.update(self._read_words(todo))
        out: list[Morph] = []
        for start, word in words:
            reading = readings.get(word, _UNKNOWN)
            if reading is _UNKNOWN:  # cleared by another thread meanwhile
                return self._analyse_text(text)
            if reading is None:
                return None
            out.extend(Morph(f, t, start + s, n, lem) for f, t, s, n, lem in reading)
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
        return out

    def _analyse_text(self, text: str) -> list[Morph] | None:
        """`analyse` of a whole text: its words and multi-word keys looked up together."""
        words = [(m.start(), m.end()) for m in _WORD.finditer(text)]
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
