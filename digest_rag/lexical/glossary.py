"""The bilingual ML glossary: Korean and English forms of each concept, matched on analysed tokens, compiled once and cached."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path

from digest_rag.lexical import analysis, kiwi
from digest_rag.lexical.analysis import ANALYSIS_VERSION, _analyse_many
from digest_rag.lexical.kiwi import bundled_user_words
from digest_rag.storage.cachedir import cache_root

#: Weight of a glossary expansion relative to a word the user typed (1.0).
#: Chosen on held-out cross-lingual checks, not the dev queries (docs/EVAL.md).
EXPANSION_WEIGHT = 0.5

#: Weight of a concept token (a glossary phrase matched in the query). A
#: concept token is the one term a Korean question shares *as a phrase* with
#: an English text, so it counts more than a typed word: 1.5 beat 1.0 and 2.0
#: on both variants of the ml-papers tuning split (docs/EVAL.md, issue 12).
CONCEPT_WEIGHT = 1.5




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
                parts = _match_tokens(analysed[f].sequence())
                if len(parts) == 1 and len(f.split()) > 1:
                    # A form of several words whose analysis leaves one ("지시 튜닝" -> 튜닝, "분포 외" -> 분포:
                    # Kiwi reads 지시 and 외 as no noun) names that word, not the concept: every "튜닝" would be
                    # instruction tuning, every "분포" out-of-distribution.
                    continue
                toks = analysed[f].bag()
                tokens.update(toks)
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

    def names(self, token: str) -> bool:
        """Whether ``token`` alone is a form of some concept (its key, whatever the context)."""
        return bool(self.keys.get(_key(_match_tokens([token]))))

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
        return self.expand_matched(tokens, self.match(tokens if sequence is None else sequence, tokens), weight)

    def expand_matched(self, tokens: Sequence[str], matched: Iterable[int],
                       weight: float = EXPANSION_WEIGHT) -> dict[str, float]:
        """`expand` for concepts already matched (`match`): a question matches once for its expansions and
        its concept tokens."""
        terms = dict.fromkeys(tokens, 1.0)
        for cid in matched:
            for t in self.concepts[cid]:
                terms.setdefault(t, weight)
        return terms


_COMPILED_FORMAT = 1


def _compiled_glossary_path(text: str) -> Path:
    """Cache file of the compiled ``text``: keyed by the text, the analysis version, Kiwi's version and this module."""
    from importlib import metadata

    try:
        kiwi_version = metadata.version("kiwipiepy")
    except metadata.PackageNotFoundError:  # pragma: no cover - a dependency
        kiwi_version = "unknown"
    h = hashlib.sha256(f"{_COMPILED_FORMAT}|{ANALYSIS_VERSION}|kiwipiepy-{kiwi_version}|".encode())
    try:
        # The analysis code itself: an edit to the tokenizer that forgot to bump ANALYSIS_VERSION
        # must not leave a stale compiled glossary behind.
        for module in (analysis, kiwi, sys.modules[__name__]):
            h.update(Path(module.__file__ or "").read_bytes())
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
