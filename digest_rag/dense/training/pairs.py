"""Training pairs mined from the digests themselves, aligned by paper, plus term pairs.

A digest pairs, for each paper, English text (title, abstract) with Korean text
(a Korean title, summary or commentary). Those are the parallel data a
cross-lingual retriever needs, in the user's own domain:

* ``note_abstract``: a paper's Korean summary/commentary <-> its English abstract;
* ``title_title``: its Korean title <-> its English title;
* ``passage_passage``: a Korean passage of its commentary <-> a passage of its abstract;
* ``passage_title``: a Korean passage <-> the English title (and abstract opening): the only English
  many notes have, and what a Korean question must find in an English-only paper;
* ``glossary``: the curated glossary's Korean <-> English forms (digest_rag/data/ml_glossary_ko_en.tsv);
* ``lexicon``: "지식 증류(knowledge distillation)" pairs written in the notes, kept when several papers agree.

The notes write technical terms in English, so a Korean term such as 옵티마이저
never meets its English side in paper pairs alone: the term pairs are the bridge,
and the trainer puts some in every batch (trainer.py).

Pairs are deduplicated, a pair never mixes two papers, and a fixed slice of
papers (`stable_bucket`, so the same papers on every run) is held out for
validation and the self-check.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from digest_rag.evaluation.evaluate import EvalQuery, is_heldout, stable_bucket
from digest_rag.lexical.lexicon import parenthetical_candidates
from digest_rag.models import Paper
from digest_rag.text import SENTENCE_END

__all__ = ["PAIR_KINDS", "MinedPairs", "Pair", "PairKind", "english_text", "excluded_papers", "glossary_pairs",
           "hold_out_sentences", "korean_text", "mine_pairs"]

PairKind = Literal["note_abstract", "title_title", "passage_passage", "passage_title", "glossary", "lexicon"]
PAIR_KINDS: tuple[PairKind, ...] = ("note_abstract", "title_title", "passage_passage", "passage_title", "glossary",
                                    "lexicon")
#: Characters per passage (a few sentences); a whole note or abstract is cut at `MAX_CHARS`.
PASSAGE_CHARS = 320
MAX_CHARS = 1200
#: A lexicon pair must be written in at least this many papers.
LEXICON_MIN_PAPERS = 2
_HANGUL = re.compile(r"[\uac00-\ud7a3]")
# The shared sentence ends, and a Korean declarative "다." with no space after it ("...그렇다.) 아주"): a
# training passage is cut there too.
_SENTENCE_END = re.compile(SENTENCE_END.pattern + r"|(?<=다\.)")
_URL_ONLY = re.compile(r"^\s*(https?://\S+\s*)+$")


class Pair(BaseModel):
    """One (anchor, positive) pair: Korean side first; ``paper`` is empty for term pairs."""

    model_config = ConfigDict(frozen=True)

    kind: PairKind
    anchor: str
    positive: str
    paper: str = ""
    #: Term pairs of the same concept share a group: never two of them in one batch (they would be false negatives).
    group: str = ""


class MinedPairs(BaseModel):
    """Pairs for training and validation, and what was mined."""

    train: list[Pair]
    heldout: list[Pair]
    heldout_papers: list[str]
    train_papers: list[str]
    excluded_papers: int = 0
    counts: dict[str, int] = Field(default_factory=dict, description="training pairs per kind")
    heldout_counts: dict[str, int] = Field(default_factory=dict, description="held-out pairs per kind")


def _is_korean(text: str) -> bool:
    hangul = len(_HANGUL.findall(text))
    return hangul >= 2 and hangul >= 0.15 * max(1, sum(ch.isalpha() for ch in text))


def korean_text(paper: Paper) -> str:
    """The paper's Korean note: summaries and commentaries with Korean in them, in order."""
    parts = [s.text for s in paper.sections
             if s.kind in ("summary", "commentary", "key_points", "body") and s.language in ("ko", "mixed")
             and _is_korean(s.text)]
    return "\n".join(parts).strip()


def english_text(paper: Paper) -> str:
    """The paper's English side: its title, then its English abstract/summary (what an English-only paper has)."""
    parts = [paper.title] + [s.text for s in paper.sections
                             if s.kind in ("abstract", "summary") and s.language == "en" and not _URL_ONLY.match(s.text)]
    return "\n".join(p.strip() for p in parts if p.strip())


def _abstract(paper: Paper) -> str:
    return "\n".join(s.text for s in paper.sections
                     if s.kind in ("abstract", "summary") and s.language == "en" and not _URL_ONLY.match(s.text)).strip()


def passages(text: str, size: int = PASSAGE_CHARS) -> list[str]:
    """Consecutive sentences joined up to about ``size`` characters."""
    out: list[str] = []
    cur = ""
    for sent in (s.strip() for s in _SENTENCE_END.split(text)):
        if not sent or _URL_ONLY.match(sent):
            continue
        if cur and len(cur) + len(sent) + 1 > size:
            out.append(cur)
            cur = ""
        cur = f"{cur} {sent}".strip()
    if cur:
        out.append(cur)
    return [p[: size * 2] for p in out if len(p) >= 20]


def _paper_pairs(paper: Paper) -> list[Pair]:
    ko = korean_text(paper)
    abstract = _abstract(paper)
    title = paper.title.strip()
    pid = paper.id
    out: list[Pair] = []
    if paper.title_ko and paper.title_ko.strip() and title and not paper.title_from_filename:
        out.append(Pair(kind="title_title", anchor=paper.title_ko.strip(), positive=title, paper=pid))
    if ko and abstract:
        out.append(Pair(kind="note_abstract", anchor=ko[:MAX_CHARS], positive=abstract[:MAX_CHARS], paper=pid))
    ko_parts = passages(ko)
    en_parts = passages(abstract)
    if ko_parts and en_parts:
        for i, part in enumerate(ko_parts):  # the i-th Korean passage with the abstract passage at the same share
            j = min(len(en_parts) - 1, i * len(en_parts) // len(ko_parts))
            out.append(Pair(kind="passage_passage", anchor=part, positive=en_parts[j], paper=pid))
    if title and not paper.title_from_filename:
        english = title + ("\n" + en_parts[0] if en_parts else "")
        out.extend(Pair(kind="passage_title", anchor=part, positive=english, paper=pid) for part in ko_parts)
    return out


def _glossary_lines() -> list[str]:
    return resources.files("digest_rag").joinpath("data/ml_glossary_ko_en.tsv").read_text(encoding="utf-8").splitlines()


def glossary_pairs(lines: Iterable[str] | None = None) -> list[Pair]:
    """Every Korean form <-> every English form of each glossary concept, grouped by concept."""
    out: list[Pair] = []
    for n, raw in enumerate(_glossary_lines() if lines is None else lines):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        cols = line.split("\t")
        if len(cols) < 2:
            continue
        ko, en = ([f.strip() for f in col.split("|") if f.strip()] for col in cols[:2])
        out.extend(Pair(kind="glossary", anchor=k, positive=e, group=f"g{n}") for k in ko for e in en)
    return out


def lexicon_pairs(papers: Sequence[Paper], known: set[tuple[str, str]]) -> list[Pair]:
    """Parenthetical KO/EN pairs written in at least `LEXICON_MIN_PAPERS` papers, best Korean span per English term."""
    support: dict[tuple[str, str], set[str]] = defaultdict(set)
    for p in papers:
        for s in p.sections:
            for ko, en in parenthetical_candidates(s.text):
                support[(ko, en)].add(p.id)
    best: dict[str, tuple[int, int, str]] = {}
    for (ko, en), ids in support.items():
        if len(ids) < LEXICON_MIN_PAPERS or (ko.lower(), en) in known:
            continue
        cand = (len(ids), -len(ko), ko)
        if en not in best or cand > best[en]:
            best[en] = cand
    return [Pair(kind="lexicon", anchor=best[en][2], positive=en, group=f"l:{en}") for en in sorted(best)]


#: Training papers that each keep one Korean sentence out of training, for fusion calibration to ask.
CALIBRATION_SENTENCE_PAPERS = 300
#: Characters of Korean note a paper must keep without that sentence.
MIN_REST = 40


def hold_out_sentences(papers: Sequence[Paper], skip: set[str],
                       limit: int = CALIBRATION_SENTENCE_PAPERS) -> tuple[list[Paper], dict[str, str]]:
    """Leave one Korean sentence of up to ``limit`` papers (not in ``skip``) out of their text.

    Returns the papers (those papers with the sentence removed from their Korean sections) and
    paper id -> sentence. The papers are those with the smallest calibration hash that can give a pair
    (a Korean note and an English title); the sentence is the one `korean_sentence` picks from the
    paper's Korean note. A build with the model asks these sentences as pseudo-queries
    (`digest_rag.search.pseudo_queries.trained_sentences`): the model has learnt the paper, never them.
    """
    from digest_rag.search.pseudo_queries import _key, korean_sentence, sentences_of, without_sentence

    chosen: dict[str, str] = {}
    for paper in sorted((p for p in papers if p.id not in skip), key=lambda p: (_key(p.id), p.id)):
        if len(chosen) >= limit:
            break
        ko = korean_text(paper)
        if not ko or not paper.title.strip() or paper.title_from_filename:
            continue
        sentence = korean_sentence(ko, paper.id)
        # The paper must stay learnt without it (the questions a build is measured on are about papers the
        # model learnt): a note that is that one sentence is not asked.
        if sentence is not None and len(without_sentence(ko, sentence)) >= MIN_REST:
            chosen[paper.id] = sentence
    out: list[Paper] = []
    for paper in papers:
        sentence = chosen.get(paper.id)
        if sentence is None:
            out.append(paper)
            continue
        sections = [sec.model_copy(update={"text": without_sentence(sec.text, sentence)})
                    if sentence in sentences_of(sec.text) else sec for sec in paper.sections]
        out.append(paper.model_copy(update={"sections": [sec for sec in sections if sec.text.strip()]}))
    return out, chosen


def excluded_papers(papers: Sequence[Paper], eval_files: Sequence[tuple[Path, bool]]) -> set[str]:
    """Ids of the papers that questions of ``eval_files`` are about (ids or exact titles).

    Each entry is (JSONL file, held-out third only): with True only the
    questions `is_heldout` keeps count, as the dev set's held-out part.
    """
    wanted: set[str] = set()
    for path, heldout_only in eval_files:
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            q = EvalQuery.model_validate(json.loads(line))
            if heldout_only and not is_heldout(q):
                continue
            wanted.update(r.strip().lower() for r in q.relevant)
    return {p.id for p in papers if p.id.lower() in wanted or p.title.strip().lower() in wanted}


def _dedupe(pairs: Iterable[Pair]) -> list[Pair]:
    seen: set[tuple[str, str]] = set()
    out: list[Pair] = []
    for p in pairs:
        key = (" ".join(p.anchor.split()), " ".join(p.positive.split()))
        if key in seen or key[0] == key[1] or not key[0] or not key[1]:
            continue
        seen.add(key)
        out.append(p)
    return out


def mine_pairs(papers: Sequence[Paper], *, heldout_share: float = 0.1, exclude: set[str] | None = None,
               salt: str = "train-heldout") -> MinedPairs:
    """All training pairs of ``papers``: paper pairs split by paper (train / held out), term pairs in training.

    ``exclude``: ids of papers whose text is left out entirely (neither trained
    on nor held out). Papers without both a Korean and an English side give no pairs.
    """
    exclude = exclude or set()
    buckets = max(2, round(1 / heldout_share)) if heldout_share > 0 else 0
    train: list[Pair] = []
    held: list[Pair] = []
    train_ids: list[str] = []
    held_ids: list[str] = []
    kept = [p for p in papers if p.id not in exclude]
    for paper in kept:
        pairs = _paper_pairs(paper)
        if not pairs:
            continue
        if buckets and stable_bucket(paper.id, buckets, salt) == 0:
            held.extend(pairs)
            held_ids.append(paper.id)
        else:
            train.extend(pairs)
            train_ids.append(paper.id)
    gloss = glossary_pairs()
    known = {(p.anchor.lower(), p.positive.lower()) for p in gloss}
    train_papers = [p for p in kept if p.id in set(train_ids)]
    train = _dedupe([*train, *gloss, *lexicon_pairs(train_papers, known)])
    held = _dedupe(held)
    return MinedPairs(
        train=train, heldout=held, heldout_papers=held_ids, train_papers=train_ids,
        excluded_papers=len(papers) - len(kept),
        counts=dict(sorted(Counter(p.kind for p in train).items())),
        heldout_counts=dict(sorted(Counter(p.kind for p in held).items())),
    )
