"""A bilingual lexicon mined from the indexed corpus at build time, beside the curated glossary.

Digests pair Korean and English about the same paper (a comparable corpus), so
the corpus itself teaches which Korean words the English text uses for a
concept. Two sources, both cheap enough to re-run on every build:

* **parenthetical pairs**: "지식 증류(knowledge distillation)" and
  "knowledge distillation(지식 증류)". The Korean span before a parenthesis is
  ambiguous (how many words belong to the term?), so every suffix of up to
  three words is a candidate and only the candidate that recurs in the most
  papers survives;
* **co-occurrence across papers**: a Korean word of a paper's commentary and an
  English word of the same paper's title/abstract that occur in nearly the same
  papers (Dice coefficient over the bilingual papers), each the other's best
  partner.

Noise must not swamp the curated glossary: a pair needs support in several
papers, generic words (in too large a share of the papers) never pair, a pair
the glossary already names is dropped, and a mined expansion weighs less than
a glossary expansion (`PAREN_WEIGHT`, `COOC_WEIGHT` < `analysis.EXPANSION_WEIGHT`).

Mining reads the BM25 documents' analysed tokens (`LexicalIndex.build` already
has them, from its token cache on an update) and runs a regex over the raw
chunk texts; only new parenthetical phrases go through Kiwi, and those are
cached with the documents' tokens. The result is stored as
``lexical/lexicon.json`` (format version, miner version, parameters, pairs with
scores) inside the generation, so the manifest's checksums cover it.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from digest_rag.errors import IndexCorruptedError, IndexVersionError

__all__ = [
    "LEXICON_FILE",
    "LEXICON_FORMAT",
    "MINER_VERSION",
    "COOC_WEIGHT",
    "PAREN_WEIGHT",
    "MinedLexicon",
    "MinedPair",
    "MinerParams",
    "mine_lexicon",
    "parenthetical_candidates",
]

#: File name inside the generation's lexical directory.
LEXICON_FILE = "lexicon.json"
#: Version of the JSON layout; a file of another version is an `IndexVersionError`.
LEXICON_FORMAT = 1
#: Version of the mining rules: pairs mined by other rules are still readable, `info` names them.
MINER_VERSION = "paren-1+cooc-dice-1"

#: Query weight of an expansion from a parenthetical pair (a typed word counts 1.0, a glossary form 0.5).
PAREN_WEIGHT = 0.4
#: Query weight of an expansion from a co-occurrence pair, times the pair's Dice score.
COOC_WEIGHT = 0.4

PairSource = Literal["paren", "cooc"]


class MinerParams(BaseModel):
    """Thresholds of the miner; stored with the lexicon so a reader knows how it was made."""

    model_config = ConfigDict(frozen=True)

    min_support: int = Field(default=2, ge=1, description="papers a parenthetical pair must occur in")
    cooc_min_support: int = Field(default=4, ge=1, description="bilingual papers a co-occurring pair must share")
    cooc_min_dice: float = Field(default=0.5, ge=0, le=1, description="Dice coefficient a co-occurring pair needs")
    max_df: float = Field(default=0.05, gt=0, le=1, description="a word in a larger share of the papers is generic")
    max_pairs: int = Field(default=20000, ge=0, description="cap on stored pairs, best first")
    max_papers: int = Field(default=200_000, ge=0,
                            description="co-occurrence reads the first this many papers (its memory grows with them)")


class MinedPair(BaseModel):
    """One Korean <-> English pair: analysed tokens of each side, where it came from, how strong it is."""

    model_config = ConfigDict(frozen=True)

    ko: tuple[str, ...] = Field(min_length=1)
    en: tuple[str, ...] = Field(min_length=1)
    source: PairSource
    support: int = Field(ge=1, description="papers the pair was seen in")
    score: float = Field(ge=0, le=1, description="Dice coefficient (co-occurrence) or share of the English form's candidates")


class MinedLexicon(BaseModel):
    """The stored lexicon of one index generation."""

    format: int = LEXICON_FORMAT
    miner: str = MINER_VERSION
    params: MinerParams = Field(default_factory=MinerParams)
    papers: int = Field(default=0, ge=0, description="papers mined")
    pairs: list[MinedPair] = Field(default_factory=list)
    cooc_inputs: str | None = Field(
        default=None, description="sha256 of what the co-occurrence pairs were mined from (the next build's "
        "check that it may reuse them); not part of the lexicon's meaning")
    # Pairs by trigger token, built on the first expansion (not a field: not saved, not compared).
    _trigger_cache: dict[str, list[tuple[frozenset[str], tuple[str, ...], float]]] | None = PrivateAttr(default=None)

    def __eq__(self, other: object) -> bool:
        # The same pairs and settings, whether or not either has expanded a query yet.
        return isinstance(other, MinedLexicon) and self.model_dump(exclude={"cooc_inputs"}) == other.model_dump(
            exclude={"cooc_inputs"})

    __hash__ = None  # type: ignore[assignment]  # mutable, like any non-frozen model

    def counts(self) -> dict[str, int]:
        """Pairs by source."""
        out = {"paren": 0, "cooc": 0}
        for p in self.pairs:
            out[p.source] += 1
        return out

    # ------------------------------------------------------------------ query expansion

    def expand(self, terms: dict[str, float]) -> dict[str, float]:
        """Add the other side of every pair whose one side the query typed (weight 1.0 terms), at a mined weight.

        A side fires when all its tokens are typed words of the query; its
        partner's tokens are added unless the query already weighs them more.
        """
        typed = {t for t, w in terms.items() if w >= 1.0 and not t.startswith("ml:")}
        if not typed or not self.pairs:
            return terms
        out = dict(terms)
        triggers = self._triggers()
        for tok in typed:
            for side, other, weight in triggers.get(tok, ()):
                if typed.issuperset(side):
                    for t in other:
                        if out.get(t, 0.0) < weight:
                            out[t] = weight
        return out

    def _triggers(self) -> dict[str, list[tuple[frozenset[str], tuple[str, ...], float]]]:
        if self._trigger_cache is None:
            cached: dict[str, list[tuple[frozenset[str], tuple[str, ...], float]]] = defaultdict(list)
            for p in self.pairs:
                weight = PAREN_WEIGHT if p.source == "paren" else COOC_WEIGHT * p.score
                for side, other in ((p.ko, p.en), (p.en, p.ko)):
                    # Keyed by the side's longest token: one dict probe per typed word finds its pairs.
                    cached[max(side, key=len)].append((frozenset(side), other, weight))
            self._trigger_cache = dict(cached)
        return self._trigger_cache

    # ------------------------------------------------------------------ persistence

    def save(self, directory: Path) -> str:
        """Write ``directory/lexicon.json``; returns the file name."""
        (Path(directory) / LEXICON_FILE).write_text(self.model_dump_json(), encoding="utf-8")
        return LEXICON_FILE

    @classmethod
    def load(cls, directory: Path) -> MinedLexicon:
        """Read ``directory/lexicon.json``: `IndexVersionError` for another format version,
        `IndexCorruptedError` for a missing or malformed file."""
        path = Path(directory) / LEXICON_FILE
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise IndexCorruptedError(f"{path}: missing lexicon file") from exc
        except (OSError, ValueError, RecursionError) as exc:
            raise IndexCorruptedError(f"{path}: unreadable or not JSON ({type(exc).__name__})") from exc
        if not isinstance(raw, dict):
            raise IndexCorruptedError(f"{path}: not a mined lexicon")
        if raw.get("format") != LEXICON_FORMAT:
            raise IndexVersionError(
                f"{path}: unknown lexicon format version {raw.get('format')!r} (this digest_rag reads "
                f"{LEXICON_FORMAT}); rebuild the index"
            )
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise IndexCorruptedError(f"{path}: lexicon field {'.'.join(map(str, first['loc']))}: {first['msg']}") from exc


# ---------------------------------------------------------------------- mining

_HANGUL = re.compile(r"[\uac00-\ud7a3]")
# A parenthesis, then what it holds; the words before it are read from the text that precedes it
# (one regex over the whole text with the word runs in it backtracks badly on long Korean notes).
_PAREN = re.compile(r"\(\s*([^()\n]{1,60}?)\s*\)")
_EN_TERM = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[\s-][A-Za-z0-9]+){0,3}")
_KO_TERM = re.compile(r"[\uac00-\ud7a3]+(?:\s[\uac00-\ud7a3]+){0,2}")
_EN_WORD = re.compile(r"[A-Za-z][A-Za-z0-9-]*")
_KO_WORD = re.compile(r"[\uac00-\ud7a3][\uac00-\ud7a30-9]*")
_ENGLISH_WORD = re.compile(r"[a-z]{3,}")


def _suffixes(words: Sequence[str], most: int) -> list[str]:
    return [" ".join(words[-j:]) for j in range(1, min(most, len(words)) + 1)]


def _words_before(text: str, end: int, word: re.Pattern[str], most: int) -> list[str]:
    """The run of up to ``most`` words matching ``word`` that ends at ``end`` (at most one space before it)."""
    before = text[max(0, end - 100):end]
    if before.endswith(("  ", "\n")) or not before.strip():
        return []
    words = before.split()
    if before[0] not in " \n" and end > 100:
        words = words[1:]  # the window cut the first word
    run: list[str] = []
    for w in reversed(words):
        if len(run) == most or not word.fullmatch(w):
            break
        run.append(w)
    return run[::-1]


def parenthetical_candidates(text: str) -> set[tuple[str, str]]:
    """(Korean span, English span) candidates of one text's parenthetical pairs, both orders.

    Every suffix of the words before the parenthesis is a candidate (the
    miner chooses among them, `_paren_pairs`); English is lowercased.
    """
    out: set[tuple[str, str]] = set()
    for m in _PAREN.finditer(text):
        inner = m.group(1)
        if _EN_TERM.fullmatch(inner):
            en = " ".join(inner.lower().split())
            for ko in _suffixes(_words_before(text, m.start(), _KO_WORD, 3), 3):
                out.add((ko, en))
        elif _KO_TERM.fullmatch(inner):
            ko = " ".join(inner.split())
            for en in _suffixes(_words_before(text, m.start(), _EN_WORD, 4), 4):
                out.add((ko, en.lower()))
    return out


# Words of abstracts' and commentaries' boilerplate ("we propose ... achieving ... compared to recent ..."):
# frequent in papers of every topic, so any topic word of a small topic co-occurs with them by chance.
_GENERIC_EN = frozenset(
    """propose proposed demonstrate show shown achieve achieving achieved compared compare recent recently
    existing notably effectively particular much may yet best new novel approach method methods result
    paper work task tasks based well while however further significantly significant improve improved
    improvement improvements performance state art results experiment experiments extensive outperform
    outperforms including different various several many first one two three large small high low
    also only very even without across between within often still make makes made like given find found
    furthermore moreover thus therefore here present introduce introduced study studies""".split()
)


def _is_korean(tok: str) -> bool:
    # Not a verb or adjective lemma ("뛰어나다", "끌어당기다"): those say how, not what.
    # One syllable ("주", "힘") is too ambiguous to pair.
    return len(tok) > 1 and bool(_HANGUL.search(tok)) and not tok.startswith("ml:") and not tok.endswith("다")


def _is_english(tok: str) -> bool:
    return bool(_ENGLISH_WORD.fullmatch(tok)) and tok not in _GENERIC_EN


def _content(tokens: Sequence[str], keep: Callable[[str], bool]) -> tuple[str, ...]:
    """A side's tokens for matching: its words of one script, without whole-compound tokens
    (the analysis appends "지식증류" after 지식 + 증류; a query spacing the words would miss it)."""
    words = [t for t in tokens if keep(t)]
    parts = set(words)
    out = [w for w in words if not (len(w) > 2 and any(w.startswith(p) and w[len(p):] in parts for p in parts if p != w))]
    return tuple(dict.fromkeys(out))


def mine_lexicon(
    tokens: Iterable[tuple[str, Sequence[str]]],
    texts: Iterable[tuple[str, str]],
    analyse: Callable[[list[str]], list[list[str]]],
    concepts: Iterable[frozenset[str]] = (),
    params: MinerParams | None = None,
    previous: MinedLexicon | None = None,
) -> MinedLexicon:
    """Mine a lexicon from one build's analysed documents.

    ``tokens`` are (paper id, analysed tokens) of each document (chunk text,
    paper title; not author names, which would pair with any word of one
    author's papers); ``texts`` are (paper id, raw text). ``analyse`` tokenizes
    parenthetical phrases (a cached `document_tokens`: only new phrases cost
    Kiwi time). ``concepts`` are the curated glossary's token sets: a pair both
    of whose sides fall in one concept is already known and dropped.

    ``previous`` (the last build's lexicon): when the co-occurrence inputs (the
    kept papers' tokens in order, the concepts, the parameters and the miner
    version) hash as its ``cooc_inputs`` and the parenthetical pairs come out
    as its own, its pairs are returned instead of mining co-occurrence again
    (the costly part on a rebuild where little changed). The result is the
    same either way.
    """
    params = params or MinerParams()
    concepts = list(concepts)
    inputs = hashlib.sha256(json.dumps([MINER_VERSION, params.model_dump()]).encode())
    for c in sorted(sorted(c) for c in concepts):
        inputs.update(("\x1e".join(c) + "\x1d").encode("utf-8", "surrogatepass"))
    by_paper: dict[str, set[str]] = defaultdict(set)
    for pid, toks in tokens:
        if pid in by_paper or len(by_paper) < params.max_papers:
            by_paper[pid].update(toks)
            inputs.update(f"{pid}\x1d{chr(31).join(toks)}\x1e".encode("utf-8", "surrogatepass"))
    cooc_inputs = inputs.hexdigest()
    n_papers = len(by_paper)
    df: Counter[str] = Counter()
    for toks in by_paper.values():
        df.update(toks)
    generic = max(params.max_df * n_papers, float(params.cooc_min_support))
    concept_of: dict[str, set[int]] = defaultdict(set)
    for cid, toks in enumerate(concepts):
        for t in toks:
            concept_of[t].add(cid)

    def known(ko: Sequence[str], en: Sequence[str]) -> bool:
        ko_c = set.intersection(*(concept_of.get(t, set()) for t in ko)) if ko else set()
        return bool(ko_c and any(ko_c & concept_of.get(t, set()) for t in en))

    # Always mined: cheap, and its phrases go through ``analyse`` (the token cache) as on every build.
    pairs = _paren_pairs(texts, analyse, df, generic, known, params)
    pairs.sort(key=_pair_order)
    if (previous is not None and previous.cooc_inputs == cooc_inputs and previous.miner == MINER_VERSION
            and previous.params == params and previous.papers == n_papers and len(pairs) < params.max_pairs
            and [p for p in previous.pairs if p.source == "paren"] == pairs):
        # The co-occurrence pairs depend on nothing else, and the final list on nothing but both lists.
        return MinedLexicon(params=params, papers=n_papers, pairs=list(previous.pairs), cooc_inputs=cooc_inputs)
    seen = {(p.ko, p.en) for p in pairs}
    pairs += [p for p in _cooc_pairs(by_paper, known, params) if (p.ko, p.en) not in seen]
    pairs.sort(key=_pair_order)
    return MinedLexicon(params=params, papers=n_papers, pairs=pairs[: params.max_pairs], cooc_inputs=cooc_inputs)


def _pair_order(p: MinedPair) -> tuple:
    return p.source != "paren", -p.score, -p.support, p.ko, p.en


def _paren_pairs(
    texts: Iterable[tuple[str, str]],
    analyse: Callable[[list[str]], list[list[str]]],
    df: Mapping[str, int],
    generic: float,
    known: Callable[[Sequence[str], Sequence[str]], bool],
    params: MinerParams,
) -> list[MinedPair]:
    support: dict[tuple[str, str], set[str]] = defaultdict(set)
    for pid, text in texts:
        if "(" in text and _HANGUL.search(text):
            for cand in parenthetical_candidates(text):
                support[cand].add(pid)
    # Which words before the parenthesis belong to the term? Every shorter suffix is seen at least as
    # often, so support alone would always pick one word. Among the spans seen in enough papers, the one
    # whose word count is closest to its partner's is the translation ("지식 증류" for two English words).
    groups: dict[tuple[str, str], list[tuple[str, str, int]]] = defaultdict(list)
    for (ko, en), pids in support.items():
        if len(pids) >= params.min_support:
            groups[("en", en)].append((ko, en, len(pids)))
            groups[("ko", ko)].append((ko, en, len(pids)))
    best: dict[tuple[str, str], tuple[str, str, int] | None] = {}
    for (side, anchor), cands in groups.items():
        # The anchor side is fixed; the other side varies by suffix length.
        def rank(c: tuple[str, str, int], side: str = side) -> tuple[int, int]:
            return abs(len(c[0].split()) - len(c[1].split())), -c[2]

        cands.sort(key=lambda c: (*rank(c), len((c[0] if side == "en" else c[1]).split())))
        # Two equally good partners ("힘" for attraction and for repulsion): it translates neither.
        tied = len(cands) > 1 and rank(cands[0]) == rank(cands[1])
        best[(side, anchor)] = None if tied else cands[0]
    # Keep a pair both of whose sides choose it.
    chosen = sorted(c for (side, _a), c in best.items() if side == "en" and c is not None and best.get(("ko", c[0])) == c)
    if not chosen:
        return []
    phrases = sorted({s for ko, en, _ in chosen for s in (ko, en)})
    tokens = dict(zip(phrases, analyse(phrases), strict=True))
    out: list[MinedPair] = []
    for ko, en, n in chosen:
        ko_t = _content(tokens[ko], _is_korean)
        en_t = _content(tokens[en], _is_english)
        if not ko_t or not en_t or known(ko_t, en_t):
            continue
        # A span of generic words only ("모델(llama)") names no term.
        if all(df.get(t, 0) > generic for t in ko_t) or all(df.get(t, 0) > generic for t in en_t):
            continue
        out.append(MinedPair(ko=ko_t, en=en_t, source="paren", support=n, score=1.0))
    return out


def _cooc_pairs(
    by_paper: Mapping[str, set[str]], known: Callable[[Sequence[str], Sequence[str]], bool], params: MinerParams
) -> list[MinedPair]:
    """Mutually best (Korean word, English word) pairs by Dice over the papers holding both scripts."""
    import numpy as np
    from scipy import sparse

    # Classify each distinct token once; papers then filter by set intersection.
    vocab = set().union(*by_paper.values())
    ko_words = {t for t in vocab if _is_korean(t)}
    en_words = {t for t in vocab if _is_english(t)}
    rows_ko: list[set[str]] = []
    rows_en: list[set[str]] = []
    for toks in by_paper.values():
        ko, en = toks & ko_words, toks & en_words
        if ko and en:
            rows_ko.append(ko)
            rows_en.append(en)
    n = len(rows_ko)
    if n == 0:
        return []
    generic = params.max_df * n

    def matrix(rows: list[set[str]]) -> tuple[sparse.csr_matrix, list[str], np.ndarray]:
        df: Counter[str] = Counter(t for r in rows for t in r)
        vocab = sorted(t for t, c in df.items() if params.cooc_min_support <= c <= generic)
        ids = {t: i for i, t in enumerate(vocab)}
        indptr, indices = [0], []
        for r in rows:
            indices.extend(ids[t] for t in r if t in ids)
            indptr.append(len(indices))
        m = sparse.csr_matrix(
            (np.ones(len(indices), dtype=np.float32), np.array(indices, dtype=np.int32), np.array(indptr)),
            shape=(len(rows), len(vocab)),
        )
        return m, vocab, np.array([df[t] for t in vocab], dtype=np.float32)

    ko_m, ko_vocab, ko_df = matrix(rows_ko)
    en_m, en_vocab, en_df = matrix(rows_en)
    if not ko_vocab or not en_vocab:
        return []
    co = (ko_m.T @ en_m).tocoo()
    keep = co.data >= params.cooc_min_support
    r, c, v = co.row[keep], co.col[keep], co.data[keep]
    dice = 2 * v / (ko_df[r] + en_df[c])
    keep = dice >= params.cooc_min_dice
    r, c, v, dice = r[keep], c[keep], v[keep], dice[keep]
    # Mutual best: the English word is the Korean word's best partner and the other way round.
    best_ko: dict[int, float] = {}
    best_en: dict[int, float] = {}
    for i, j, d in zip(r.tolist(), c.tolist(), dice.tolist(), strict=True):
        best_ko[i] = max(best_ko.get(i, 0.0), d)
        best_en[j] = max(best_en.get(j, 0.0), d)
    out: list[MinedPair] = []
    for i, j, s, d in zip(r.tolist(), c.tolist(), v.tolist(), dice.tolist(), strict=True):
        if d < best_ko[i] or d < best_en[j]:
            continue
        ko_t, en_t = (ko_vocab[i],), (en_vocab[j],)
        if known(ko_t, en_t):
            continue
        out.append(MinedPair(ko=ko_t, en=en_t, source="cooc", support=int(s), score=round(float(min(d, 1.0)), 4)))
    return out
