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

At query time `word_lookup.EojeolTable.analyse` rebuilds a text's morpheme list from the
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
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

from digest_rag.lexical.analysis import needs_kiwi

__all__ = ["EOJEOL_FILE", "EOJEOL_FORMAT", "MAX_WORDS", "WORD", "EojeolRecorder", "Morph"]

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
# Writes of the stems and suffixes tables (a build's), by table.
_PUT = {name: f"INSERT OR REPLACE INTO {name} VALUES (?, ?, ?)" for name in ("stems", "suffixes")}
_DROP = {name: f"DELETE FROM {name} WHERE key = ?" for name in ("stems", "suffixes")}

#: A word of the table: what whitespace separates (a text's reading is its words' readings, placed).
WORD = re.compile(r"\S+")
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
        words = [(m.start(), m.end()) for m in WORD.finditer(text)]
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

    def new_readings(self) -> dict[str, dict[str, int]]:
        """The readings of the keys this build recorded that ``previous`` did not have (every key without one)."""
        return {key: self.readings[key] for key in self.touched if key not in self._previous}

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








