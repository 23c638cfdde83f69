"""Tests for digest_rag.lexical.lexicon: the bilingual lexicon mined from the corpus at build time."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from digest_rag.lexical.glossary import default_glossary
from digest_rag.lexical.terms import document_tokens
from digest_rag.errors import IndexCorruptedError, IndexVersionError
from digest_rag.lexical.index import LexicalIndex
from digest_rag.lexical.lexicon import (
    LEXICON_FILE,
    MINER_VERSION,
    MinedLexicon,
    MinedPair,
    MinerParams,
    mine_lexicon,
    parenthetical_candidates,
)
from digest_rag.models import Chunk, Paper

# Korean terms in these corpora are absent from the curated glossary (a test keeps it so), so only
# the mined lexicon can connect them to their English forms.
_FILLER = " 실험 환경과 결과를 자세히 비교하고 여러 변형을 분석한다." * 3


def _chunk(cid: int, pid: str, text: str, lang: str = "ko") -> Chunk:
    return Chunk(id=cid, paper_id=pid, section_index=0, section_kind="commentary", language=lang,
                 text=text, start=0, end=len(text))


def _paren_mine(texts: dict[str, str], params: MinerParams | None = None) -> MinedLexicon:
    """Mine parenthetical pairs of ``texts`` (paper id -> text) with the real analysis."""
    toks = document_tokens(list(texts.values()))
    return mine_lexicon(list(zip(texts, toks, strict=True)), list(texts.items()), document_tokens,
                        default_glossary().concepts, params)


def _pairs(lex: MinedLexicon) -> set[tuple[str, str]]:
    return {(" ".join(p.ko), " ".join(p.en)) for p in lex.pairs}


def test_terms_are_not_in_the_glossary() -> None:
    gloss = default_glossary()
    for word in ("벌집", "순회", "나방", "불꽃", "honeycomb", "traversal", "moth", "flame"):
        assert not any(word in c for c in gloss.concepts), word


def test_parenthetical_candidates_both_orders() -> None:
    assert ("벌집 순회", "honeycomb traversal") in parenthetical_candidates("새로운 벌집 순회(honeycomb traversal)를 쓴다")
    assert ("나방 불꽃", "moth flame") in parenthetical_candidates("we use Moth Flame (나방 불꽃) search")
    # Every suffix of the words before the parenthesis is a candidate; the miner chooses.
    assert {("순회", "honeycomb traversal"), ("새로운 벌집 순회", "honeycomb traversal")} <= parenthetical_candidates(
        "새로운 벌집 순회(honeycomb traversal)")


def test_mining_extracts_parenthetical_pairs_in_both_orders() -> None:
    lex = _paren_mine({
        "p1": "새로운 벌집 순회(honeycomb traversal)를 제안한다.",
        "p2": "이 논문은 벌집 순회(honeycomb traversal)로 경로를 찾는다.",
        "p3": "We tune the moth flame(나방 불꽃) optimiser.",
        "p4": "A faster moth flame (나방 불꽃) variant.",
    })
    # The Korean span is the one whose length matches the English term, not the shortest suffix.
    assert {("벌집 순회", "honeycomb traversal"), ("나방 불꽃", "moth flame")} <= _pairs(lex)
    assert all(p.source == "paren" and p.support == 2 for p in lex.pairs)


def test_noise_is_filtered() -> None:
    texts = {
        # seen in one paper only
        "p1": "벌집 순회(honeycomb traversal)를 제안한다.",
        # a generic word ("모델" is in most papers) paired twice
        "p2": "큰 모델(llama)을 쓴다.", "p3": "작은 모델(llama)을 쓴다.",
        # a pair the curated glossary already names
        "p4": "지식 증류(knowledge distillation)를 쓴다.", "p5": "지식 증류(knowledge distillation)로 줄인다.",
        **{f"g{i}": "이 모델은 잘 된다." for i in range(4)},
    }
    assert _pairs(_paren_mine(texts)) == set()
    # The same pair in two papers passes; with min_support 3 it does not.
    texts["p6"] = "벌집 순회(honeycomb traversal)로 찾는다."
    assert _pairs(_paren_mine(texts)) == {("벌집 순회", "honeycomb traversal")}
    assert _pairs(_paren_mine(texts, MinerParams(min_support=3))) == set()


def test_cooccurrence_pairs_need_support_and_mutual_best() -> None:
    # No Kiwi: the miner reads the documents' analysed tokens.
    docs = [(f"p{i}", ["벌집", "honeycomb", "공통", "common", f"w{i}"]) for i in range(5)]
    docs += [(f"q{i}", ["나방", "moth", "공통", "common"]) for i in range(2)]  # too little support
    docs += [(f"r{i}", ["공통", "common", "flame"]) for i in range(3)]
    lex = mine_lexicon(docs, [], lambda texts: [], params=MinerParams(cooc_min_support=3, max_df=0.6))
    # "공통"/"common" occur in every paper: generic, never paired; 나방/moth in two papers only.
    assert _pairs(lex) == {("벌집", "honeycomb")}
    (pair,) = lex.pairs
    assert pair.source == "cooc" and pair.support == 5 and pair.score == 1.0


def test_stored_lexicon_round_trips_and_checks_its_version(tmp_path: Path) -> None:
    lex = MinedLexicon(papers=3, pairs=[
        MinedPair(ko=("벌집", "순회"), en=("honeycomb", "traversal"), source="paren", support=2, score=1.0)])
    assert lex.save(tmp_path) == LEXICON_FILE
    raw = json.loads((tmp_path / LEXICON_FILE).read_text(encoding="utf-8"))
    assert raw["format"] == 1 and raw["miner"] == MINER_VERSION and raw["params"]["min_support"] == 2
    assert MinedLexicon.load(tmp_path) == lex
    (tmp_path / LEXICON_FILE).write_text(json.dumps({**raw, "format": 99}), encoding="utf-8")
    with pytest.raises(IndexVersionError, match="unknown lexicon format version 99"):
        MinedLexicon.load(tmp_path)
    (tmp_path / LEXICON_FILE).write_text(json.dumps({**raw, "pairs": [{"ko": [], "en": ["x"]}]}), encoding="utf-8")
    with pytest.raises(IndexCorruptedError, match="lexicon field"):
        MinedLexicon.load(tmp_path)


def _corpus() -> tuple[dict[str, Paper], list[Chunk]]:
    """Two Korean notes name "벌집 순회(honeycomb traversal)"; the paper about it is English only.

    The query "로봇의 벌집 순회" matches the Korean notes word for word and the English
    paper only through the glossary's 로봇 -> robot, which four other robot papers share.
    """
    papers = {p.id: p for p in [
        Paper(id="a", title="Foraging Agents"),
        Paper(id="b", title="Bee Inspired Planning"),
        Paper(id="t", title="Honeycomb Traversal for Warehouse Robots"),
        Paper(id="r1", title="Robot Grasping with Tactile Sensing"),
        Paper(id="r2", title="Robot Navigation in Crowds"),
        Paper(id="r3", title="Robot Arms for Cooking"),
        Paper(id="r4", title="Legged Robot Locomotion"),
    ]}
    chunks = [
        _chunk(1, "a", "꿀벌의 벌집 순회(honeycomb traversal)를 흉내 낸 채집 에이전트." + _FILLER),
        _chunk(2, "b", "벌집 순회(honeycomb traversal)로 경로를 계획하는 방법." + _FILLER),
        _chunk(3, "t", "We apply honeycomb traversal to warehouse robots.", "en"),
        _chunk(4, "r1", "A robot learns to grasp objects from touch.", "en"),
        _chunk(5, "r2", "A robot moves through dense crowds of people.", "en"),
        _chunk(6, "r3", "Robot arms cook simple meals.", "en"),
        _chunk(7, "r4", "A legged robot walks over rough ground.", "en"),
    ]
    return papers, chunks


QUERY = "로봇의 벌집 순회"


def test_mined_lexicon_decides_the_ranking() -> None:
    papers, chunks = _corpus()
    without = LexicalIndex.build(chunks, papers, mine=False)
    assert without.lexicon.pairs == [] and without.search(QUERY, 1)[0][0] != 3
    mined = LexicalIndex.build(chunks, papers)
    assert _pairs(mined.lexicon) == {("벌집 순회", "honeycomb traversal")}
    assert mined.search(QUERY, 1)[0][0] == 3
    # Mined expansions weigh less than the words typed and the glossary's forms.
    terms = mined.lexicon.expand({"벌집": 1.0, "순회": 1.0})
    assert 0 < terms["honeycomb"] < 0.5 and terms["traversal"] < 0.5


def test_rebuild_from_the_token_cache_mines_the_same_lexicon_without_analysis() -> None:
    papers, chunks = _corpus()
    first = LexicalIndex.build(chunks, papers)
    again = LexicalIndex.build(chunks, papers, token_cache=first.token_entries)
    assert again.analysed_texts == 0 and again.lexicon == first.lexicon


def test_index_stores_and_reports_the_lexicon(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from digest_rag import DigestIndex
    from digest_rag.frontends.cli import app

    papers, chunks = _corpus()
    corpus = tmp_path / "notes.jsonl"
    with corpus.open("w", encoding="utf-8") as f:
        for c in chunks:
            key = "commentary_ko" if c.language == "ko" else "abstract_en"
            f.write(json.dumps({"id": c.paper_id, "title": papers[c.paper_id].title, key: c.text}, ensure_ascii=False) + "\n")
    ix = tmp_path / "ix"
    DigestIndex.build([corpus], index_dir=ix, lexical_only=True).close()
    with DigestIndex.load(ix, verify=True) as idx:  # verify: lexicon.json is checksummed with the rest
        info = idx.info()["lexicon"]
        assert info["miner"] == MINER_VERSION and info["pairs"] == 1 and info["by_source"]["paren"] == 1
        assert idx.search(QUERY, k=1, mode="lexical")[0].paper.id == "t"
    res = CliRunner().invoke(app, ["info", "--index", str(ix)])
    assert res.exit_code == 0 and f"1 mined pairs (paren 1, cooc 0; miner {MINER_VERSION})" in res.stdout


def test_unchanged_inputs_reuse_the_previous_cooccurrence_pairs(monkeypatch: pytest.MonkeyPatch) -> None:
    import digest_rag.lexical.lexicon as lexicon

    docs = [(f"p{i}", ["벌집", "honeycomb", "공통", "common", f"w{i}"]) for i in range(5)]
    docs += [(f"q{i}", ["나방", "moth", "공통", "common"]) for i in range(2)]
    docs += [(f"r{i}", ["공통", "common", "flame"]) for i in range(3)]
    params = MinerParams(cooc_min_support=3, max_df=0.6)
    first = mine_lexicon(docs, [], lambda texts: [], params=params)
    assert first.pairs and first.cooc_inputs
    real = lexicon._cooc_pairs
    calls: list[int] = []

    def counting(*args: object) -> list[MinedPair]:
        calls.append(1)
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(lexicon, "_cooc_pairs", counting)
    again = mine_lexicon(docs, [], lambda texts: [], params=params, previous=first)
    assert again == first and again.cooc_inputs == first.cooc_inputs and not calls
    # One more paper: mined again, and the result is what mining without a previous lexicon gives.
    more = [*docs, *((f"s{i}", ["나방", "moth", "공통", "common"]) for i in range(2))]
    assert mine_lexicon(more, [], lambda texts: [], params=params, previous=first) == \
        mine_lexicon(more, [], lambda texts: [], params=params)
    assert len(calls) == 2
    # Other parameters: mined again too.
    other = MinerParams(cooc_min_support=2, max_df=0.6)
    assert mine_lexicon(docs, [], lambda texts: [], params=other, previous=first) == \
        mine_lexicon(docs, [], lambda texts: [], params=other)
    assert len(calls) == 4
