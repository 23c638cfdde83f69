"""Known-item matching: a question that names a model or method puts the paper that introduces it first.

"RoBERTa가 BERT 사전학습에서 바꾼 점" names RoBERTa; many papers mention RoBERTa in passing and share
more of the question's other words than RoBERTa's own note, so BM25 alone ranks the owner low. Here:

* **Names a paper owns** come from its title (`title_names`): the head before a colon when it is short
  ("Mip-NeRF: A Multiscale ..." owns *mip-nerf*, "Llama 2" owns *llama 2*), the name-like words of that
  head (internal capitals, digits, all capitals: XLNet, GPT-4, AWQ), and the initials of a head of
  capitalised words ("Direct Preference Optimization: ..." owns *dpo*). A name that more than
  `MAX_OWNERS` titles claim is a common word, not a name, and is dropped (`NameTable`).
* **Names a question uses** (`question_names`): its Latin words with any Korean particle cut off
  (RoBERTa가, Mixtral에서), joined with a following number ("Llama 2"), and Hangul words that a curated
  table (`data/name_transliterations_ko_en.tsv`) spells as a Latin name (로버타 -> roberta, 라마 2 -> llama 2),
  matched on the word with its particle cut off.
* **Promotion** (`promote`): each owner's BM25 score gets `BONUS` (`LEAD_BONUS` for the name the question
  opens with) x the best BM25 score added, before hybrid fusion; owners
  missing from the candidates join them first. An owner whose text has little to do with the rest of the
  question (a name used as context) stays below a paper that matches it well; one that matches it at all
  beats papers that merely mention the name. A question naming more than `MAX_NAMES` owned names is
  a list of context, and nothing is promoted.

Keys are compared without case, spaces, hyphens or dots (`name_key`): "Mip-NeRF", "mip nerf" and
"MipNeRF" are one name.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from operator import itemgetter

from digest_rag.text import bundled_rows

__all__ = ["BONUS", "LEAD_BONUS", "MAX_NAMES", "MAX_OWNERS", "NAME_RULES", "NameTable", "name_key", "name_owners",
           "promote", "question_names", "spelled_names", "title_names", "transliterations"]

#: A promoted paper's score gains this share of the ranking's best score (chosen on the tuning questions,
#: docs/EVAL.md "Issue 25").
BONUS = 0.3
#: The bonus of the paper owning the name a question opens with ("RoBERTa가 ...": the question is about it).
LEAD_BONUS = 0.5
#: A name claimed by more titles than this is a common word ("Scaling", "Learning"), not one paper's name.
MAX_OWNERS = 3
#: A capitalised first word is a name when at most this many titles hold it ("Swin", not "Scaling").
RARE_TITLES = 5
#: A question naming more owned names than this lists context ("MAE나 BEiT, MoCo보다 ..."): no promotion.
MAX_NAMES = 2
#: Heads (the part before a colon) of up to this many words are names themselves ("Swin Transformer").
MAX_HEAD_WORDS = 4

_TRANSLIT_FILE = "name_transliterations_ko_en.tsv"
_LATIN = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[-.][A-Za-z0-9]+)*")
_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+-]*")
_HANGUL = re.compile(r"[\uac00-\ud7a3]+")
_NUMBER_AFTER = re.compile(r"\s*-?\s*(\d+(?:\.\d+)?)(?![\d])")
# Words that head titles without naming anything.
_STOP = frozenset(
    "a an the of on for in to with and or is are be by from via at as towards toward do does can how what why "
    "when we you your our it its not no all one two more less than beyond into".split()
)
# Korean particles and endings that follow a name in a question (longest first).
_PARTICLES = tuple(sorted(
    "이 가 은 는 을 를 의 에 에서 에게 로 으로 와 과 랑 이랑 도 만 보다 처럼 같은 이나 나 까지 부터 하고 "
    "에서는 에서의 으로는 로는 와는 과는 이라는 라는 이란 란 에는 에도 로도 으로도 이는 이가 "
    "에선 한테 께서 이며 이고 다 이다 인가 인지 같이".split(), key=len, reverse=True))
_PARTICLE_SET = frozenset(_PARTICLES)
_LONGEST_PARTICLE = max(len(p) for p in _PARTICLES)


def name_key(text: str) -> str:
    """``text`` as a comparable name: lower case, without spaces, hyphens, dots or underscores."""
    return re.sub(r"[\s\-._]+", "", text).lower()


def _name_like(word: str) -> bool:
    """XLNet, RoBERTa, GPT-4, AWQ, T5, eDiffi: a capital after the first letter, or a digit in a word."""
    letters = word.replace("-", "")
    if len(letters) < 2:
        return False
    return any(ch.isupper() for ch in letters[1:]) or (any(ch.isdigit() for ch in letters)
                                                      and any(ch.isalpha() for ch in letters))


def title_names(title: str, rare: Callable[[str], bool] | None = None) -> dict[str, int]:
    """The name keys a paper with this title owns, each with its strength: 2 when the name is the whole head
    ("XLNet", "GPT-4", "Mip-NeRF: ..."), 1 for a name inside it (see the module docstring).

    Only the head's first word can be a name inside it ("Pixel-BERT: ..." owns *pixel-bert*, "Deep ViT
    Features ..." owns nothing: it uses ViT). ``rare(word)`` says a word is rare among all titles: then a
    capitalised first word of a short head is a name ("Swin Transformer: ..." owns *swin*, "Mixtral of
    Experts" *mixtral*), where a common one ("Scaling Laws ...", "Attention Is All You Need") is not.
    """
    title = title.strip()
    if not title or not _LATIN.search(title):
        return {}
    head = re.split(r"\s*:\s+|\s+[-\u2013\u2014]\s+|:$", title, maxsplit=1)[0].strip()
    has_colon = head != title
    words = _WORD.findall(head)
    if not words:
        return {}
    names: dict[str, int] = {}
    first = words[0]
    if (has_colon or len(words) <= 2) and len(words) <= MAX_HEAD_WORDS and not (
            len(words) == 1 and first.lower() in _STOP):
        # "Mip-NeRF: ...", "Swin Transformer: ...", or a short title that is a name ("Llama 2", "MelGAN").
        names[name_key(head)] = 2
    if len(words) > 1 and (_name_like(first) or (
            rare is not None and has_colon and first[:1].isupper() and len(first) >= 3 and first.lower() not in _STOP
            and len(words) <= 3 and rare(first.lower()))):
        names.setdefault(name_key(first), 1)
    caps = [w for w in words if w[:1].isupper() and w.lower() not in _STOP]
    if has_colon and len(caps) >= 3 and len(caps) == len([w for w in words if w.lower() not in _STOP]):
        # "Direct Preference Optimization: ..." introduces DPO; hyphenated words give each part's initial.
        initials = "".join(part[0] for w in caps for part in w.split("-") if part)
        if len(initials) >= 3:
            names.setdefault(initials.lower(), 2)
    return {n: v for n, v in names.items() if len(n) >= 2 and n not in _STOP}


@functools.lru_cache(maxsize=1)
def transliterations() -> dict[str, tuple[str, ...]]:
    """Hangul form (spaces removed) -> the Latin names it spells (as written in the table), from the bundled table."""
    table: dict[str, tuple[str, ...]] = {}
    for cols in bundled_rows(_TRANSLIT_FILE):
        if len(cols) < 2:
            continue
        latin = tuple(f.strip() for f in cols[1].split("|") if f.strip())
        for form in cols[0].split("|"):
            key = re.sub(r"\s+", "", form.strip())
            if key:
                table[key] = tuple(dict.fromkeys(table.get(key, ()) + latin))
    return table


def _strip_particle(word: str, known: Mapping[str, object]) -> str | None:
    """The longest prefix of a Hangul ``word`` that ``known`` holds, once a particle is cut off (or none is)."""
    if word in known:
        return word
    # A few dictionary probes per word (particles are 1-4 syllables), not one per particle: this runs for
    # every Hangul word of every question.
    for n in range(1, min(_LONGEST_PARTICLE, len(word) - 1) + 1):
        if word[-n:] in _PARTICLE_SET and word[:-n] in known:
            return word[:-n]
    return None


def question_names(question: str, known: Mapping[str, object] | None = None) -> list[str]:
    """Name keys the question uses, longest first within a span ("라마 2" gives *llama2* before *llama*).

    Latin words count whatever follows them (a particle, nothing); a following number joins them
    ("Llama 2", "GPT-4"). Hangul words count when the transliteration table spells them as a name.
    ``known`` (optional) keeps only keys it holds, trying the joined form first.
    """
    out: list[str] = []

    def add(*candidates: str) -> None:
        # The first candidate the table knows (or all, without a table): the longest reading of one span.
        for c in candidates:
            if c and (known is None or c in known):
                out.append(c)
                if known is not None:
                    return

    for m in _LATIN.finditer(question):
        word = m.group(0)
        num = _NUMBER_AFTER.match(question, m.end())
        whole = name_key(word)
        add(*([whole + num.group(1).replace(".", "")] if num else []), whole)
    table = transliterations()
    tokens = re.findall(r"\S+", question)
    for i, tok in enumerate(tokens):
        hangul = _HANGUL.match(tok)
        if not hangul:
            continue
        word = hangul.group(0)
        # Two words spelled as one name ("스테이블 디퓨전"), else the word itself.
        nxt = _HANGUL.match(tokens[i + 1]) if i + 1 < len(tokens) else None
        stem2 = _strip_particle(word + nxt.group(0), table) if nxt and hangul.end() == len(tok) else None
        stem = stem2 or _strip_particle(word, table)
        if stem is None:
            continue
        rest = tok[len(word):] if stem2 is None else ""
        num = re.match(r"-?(\d+)", rest) or (
            re.match(r"(\d+)", tokens[i + 1]) if stem2 is None and i + 1 < len(tokens) and stem == word else None)
        for latin in table[stem]:
            key = name_key(latin)
            add(*([key + num.group(1)] if num else []), key)
    return list(dict.fromkeys(out))


def spelled_names(question: str, keys: Iterable[str]) -> list[str]:
    """The Latin spellings of the Hangul names in ``question`` whose keys are in ``keys`` ("로버타가" ->
    "roberta"): BM25 then matches the owner's Latin text, which the Hangul form alone would not."""
    wanted = set(keys)
    out: list[str] = []
    table = transliterations()
    for word in _HANGUL.findall(question):
        stem = _strip_particle(word, table)
        for latin in table.get(stem, ()) if stem else ():
            if name_key(latin) in wanted or any(k.startswith(name_key(latin)) for k in wanted):
                out.append(latin)
    return list(dict.fromkeys(out))


#: Version of the naming rules (`title_names`, `name_owners` and their limits). A build stores its name table
#: with it (`Store.name_owners`); a table made by other rules is not read: the index computes its own.
NAME_RULES = "1"


def name_owners(read_titles: Callable[[], Iterable[tuple[str, str]]]) -> dict[str, tuple[str, ...]]:
    """Name key -> the ids of the papers whose titles own it (at most `MAX_OWNERS`), from (paper id, title)
    pairs that ``read_titles()`` yields afresh on each of its three passes (a build streams them from its
    store). Only the words a name or a rarity check can ask about are counted, so memory follows the names,
    not every word of every title (a million titles)."""
    # Pass 1: every key a title could own, taking every rarity check as rare, and the words those checks ask.
    wanted: set[str] = set()

    def asked(word: str) -> bool:
        wanted.add(name_key(word))
        return True

    for _pid, title in read_titles():
        wanted.update(title_names(title or "", asked))
    # Pass 2: how many titles hold each of those words (and pairs of words, spaced names: "Llama 2"): a
    # head's first word names a model only when few titles use it, and a name many titles use (GPT-4, LLM,
    # Diffusion) is a tool or a field that questions about other papers mention, not one paper's own.
    counts: dict[str, int] = {}
    for _pid, title in read_titles():
        words = [name_key(w) for w in _WORD.findall(title or "")]
        for w in {*words, *(a + b for a, b in zip(words, words[1:]))}:
            if w in wanted:
                counts[w] = counts.get(w, 0) + 1
    owners: dict[str, dict[str, int]] = {}
    for pid, title in read_titles():
        for key, strength in title_names(title or "", lambda w: counts.get(name_key(w), 0) <= RARE_TITLES).items():
            owners.setdefault(key, {})[pid] = strength
    # A key many titles claim is a word, not a name; of the rest, the papers it names whole come first.
    out: dict[str, tuple[str, ...]] = {}
    for key, by_paper in owners.items():
        if len(by_paper) <= MAX_OWNERS and counts.get(key, 0) <= RARE_TITLES:
            top = max(by_paper.values())
            out[key] = tuple(pid for pid, v in by_paper.items() if v == top)
    return out


class NameTable:
    """Name key -> the ids of the papers whose titles own it (at most `MAX_OWNERS`).

    Made from every title (`name_owners`, a pass over all of them: ~70 ms at 1,645 papers, tens of seconds
    at a million) or, with `stored`, read from the table a build stored with the generation."""

    def __init__(self, titles: Iterable[tuple[str, str]]) -> None:
        titles = list(titles)
        self.owners: Mapping[str, tuple[str, ...]] = name_owners(lambda: titles)

    @classmethod
    def stored(cls, owners: Mapping[str, tuple[str, ...]]) -> NameTable:
        """The table of ``owners`` as a build computed them (`Store.name_owners`: read key by key)."""
        table = cls.__new__(cls)
        table.owners = owners
        return table

    def __len__(self) -> int:
        return len(self.owners)

    def owned(self, question: str) -> dict[str, tuple[str, ...]]:
        """The names ``question`` uses that papers own, with their owners; empty when it names more than
        `MAX_NAMES` (a list of context, not one paper asked about)."""
        found = {key: self.owners[key] for key in question_names(question, self.owners)}
        return found if len(found) <= MAX_NAMES else {}

    def leading(self, question: str) -> set[str]:
        """The owned names the question opens with (its first word, particle or number aside): the subject
        of a question about one paper ("RoBERTa가 ...", "로라로 ...", "Llama 2 ...")."""
        words = question.split()
        if not words:
            return set()
        head = words[0] + (" " + words[1] if len(words) > 1 and words[1][:1].isdigit() else "")
        return set(question_names(head, self.owners)[:1])

    def bonuses(self, question: str, names: Iterable[str] | None = None) -> dict[str, float]:
        """Paper id -> its promotion (a share of the best score): `LEAD_BONUS` for the owner of the name the
        question opens with, `BONUS` for the owners of other names it uses (``names``: those `owned` found)."""
        owned = self.owned(question) if names is None else {k: self.owners[k] for k in names if k in self.owners}
        lead = self.leading(question) & set(owned)
        out: dict[str, float] = {}
        for key, pids in owned.items():
            for pid in pids:
                out[pid] = max(out.get(pid, 0.0), LEAD_BONUS if key in lead else BONUS)
        return out


def promote(
    ranking: Sequence[tuple[int, float]],
    chunk_paper: Mapping[int, str],
    bonuses: Mapping[str, float],
) -> list[tuple[int, float]]:
    """A BM25 ``ranking`` (chunk id, score) with every chunk of a paper in ``bonuses`` scored higher by its
    bonus x the best score, re-sorted (stable: ties keep their order). Hybrid search fuses the promoted
    ranking, so an owner moves up the lexical side exactly as in a lexical search."""
    if not ranking or not bonuses:
        return list(ranking)
    best = max(score for _cid, score in ranking)
    out = [(cid, score + bonuses.get(chunk_paper.get(cid, ""), 0.0) * best) for cid, score in ranking]
    out.sort(key=itemgetter(1), reverse=True)  # (stable: ties keep their order)
    return out
