"""Known-item matching (issue 25 part 1): a question naming a model puts the paper that introduces it first."""

from __future__ import annotations

from pathlib import Path

import pytest

from digest_rag import DigestIndex
from digest_rag.evaluation.variants import write_jsonl
from digest_rag.models import Paper, Section
from digest_rag.search.known_item import NameTable, name_key, promote, question_names, title_names


@pytest.mark.parametrize("title, owned", [
    ("XLNet", {"xlnet"}),
    ("Llama 2", {"llama2"}),
    ("Mip-NeRF: A Multiscale Representation for Anti-Aliasing", {"mipnerf"}),
    ("AWQ: Activation-aware Weight Quantization for LLM Compression", {"awq"}),
    ("Direct Preference Optimization: Your Language Model is Secretly a Reward Model",
     {"directpreferenceoptimization", "dpo"}),
    ("Pixel-BERT: Aligning Image Pixels with Text", {"pixelbert"}),
])
def test_title_names(title: str, owned: set[str]) -> None:
    assert set(title_names(title)) == owned


@pytest.mark.parametrize("title", ["Deep ViT Features as Dense Visual Descriptors", "Attention Is All You Need",
                                   "Taking Notes on the Fly Helps BERT Pre-training", "구글 달리기"])
def test_titles_that_use_a_name_do_not_own_it(title: str) -> None:
    assert {"vit", "bert", "attention"}.isdisjoint(title_names(title))


def test_a_rare_first_word_is_a_name_a_common_one_is_not() -> None:
    assert "swin" in title_names("Swin Transformer: Shifted Windows", rare=lambda w: True)
    assert "scaling" not in title_names("Scaling Laws: For Models", rare=lambda w: w != "scaling")


@pytest.mark.parametrize("question, names", [
    ("RoBERTa가 BERT 사전학습에서 바꾼 점", ["roberta", "bert"]),
    ("Mixtral에서 DPO는 어떻게", ["mixtral", "dpo"]),
    ("GPT-4의 성능", ["gpt4"]),
    ("로버타가 바꾼 점", ["roberta"]),
    ("미스트랄 모델", ["mistral"]),
    ("제미나이는 멀티모달", ["gemini"]),
    ("스테이블 디퓨전에서 텍스트 조건", ["stablediffusion"]),
])
def test_question_names(question: str, names: list[str]) -> None:
    assert question_names(question) == names


def test_question_names_prefer_the_numbered_name_the_table_knows() -> None:
    assert question_names("라마 2는 1편이랑 뭐가 달라졌어", {"llama2": 1, "llama": 1}) == ["llama2"]
    assert question_names("라마 2는 1편이랑 뭐가 달라졌어", {"llama": 1}) == ["llama"]
    assert question_names("Llama 2 선호 데이터", {"llama2": 1}) == ["llama2"]


def test_name_table_drops_names_many_titles_claim_and_lists_of_names() -> None:
    titles = [(f"p{i}", f"Foo{i}Net: thing") for i in range(3)] + [
        (f"g{i}", f"GenericNet: variant {i}") for i in range(5)]
    table = NameTable(titles)
    assert table.owners[name_key("Foo1Net")] == ("p1",)
    assert "genericnet" not in table.owners
    assert table.owned("Foo0Net가 뭐야") == {"foo0net": ("p0",)}
    assert table.owned("Foo0Net, Foo1Net, Foo2Net 비교") == {}


def test_promote_adds_a_share_of_the_best_score() -> None:
    ranking = [(1, 10.0), (2, 8.0), (3, 4.0)]
    owner_of = {1: "a", 2: "b", 3: "c"}
    assert [c for c, _s in promote(ranking, owner_of, {"b": 0.3})] == [2, 1, 3]
    # A weak owner (the name used as context) stays below a paper that matches the question well.
    assert [c for c, _s in promote(ranking, owner_of, {"c": 0.3})] == [1, 2, 3]
    assert [c for c, _s in promote(ranking, owner_of, {"c": 0.8})] == [3, 1, 2]
    assert promote(ranking, owner_of, {}) == ranking


def test_the_name_a_question_opens_with_gets_the_larger_bonus() -> None:
    from digest_rag.search.known_item import BONUS, LEAD_BONUS

    table = NameTable([("x", "XyzNet: one"), ("q", "QrsNet: two")])
    assert table.bonuses("XyzNet이 QrsNet보다 나은 점") == {"x": LEAD_BONUS, "q": BONUS}
    assert table.leading("Llama 2 선호 데이터") == set()  # not a name of this table
    assert NameTable([("l", "Llama 2")]).leading("Llama 2 선호 데이터") == {"llama2"}


def test_spelled_names_give_the_latin_form_of_owned_hangul_names() -> None:
    from digest_rag.search.known_item import spelled_names

    assert spelled_names("로버타가 바꾼 점", {"roberta"}) == ["roberta"]
    assert spelled_names("로버타가 바꾼 점", {"xlnet"}) == []
    assert spelled_names("트랜스포머 구조", set()) == []


def _paper(pid: str, title: str, ko: str) -> Paper:
    return Paper(id=pid, title=title, sections=[Section(kind="commentary", language="ko", text=ko)])


def test_a_named_paper_beats_papers_that_only_mention_it(tmp_path: Path) -> None:
    papers = [
        _paper("zorb", "ZorbNet: Better Pretraining",
               "사전학습 목표를 조금 바꿔 더 오래 학습한 모델. 동적 마스킹을 쓴다."),
        *[_paper(f"m{i}", f"Other Method {i}",
                 "ZorbNet과 BERT 사전학습을 비교했다. BERT 사전학습에서 바꾼 점을 분석한다. ZorbNet보다 낫다.")
          for i in range(4)],
        # Papers about other things, as any collection has: among five papers every word of the question is in
        # four or five of them, and BM25's idf is ~0 for all (whichever word Kiwi's reading keeps decides).
        *[_paper(f"f{i}", f"Filler Study {i}", f"{i}번째 연구는 이미지 분류와 검출 성능을 비교하고 데이터 증강의 효과를 분석한다.")
          for i in range(20)],
    ]
    src = write_jsonl(papers, tmp_path / "src.jsonl")
    with DigestIndex.build([src], index_dir=tmp_path / "ix", lexical_only=True) as index:
        for question in ("ZorbNet이 BERT 사전학습에서 바꾼 점", "ZorbNet에서 바꾼 점"):
            hits = index.search(question, k=3, mode="lexical")
            assert hits[0].paper.id == "zorb", question
            assert index.search(question, k=3, mode="hybrid")[0].paper.id == "zorb"
        # Without the promotion the mentioning papers win: the test decides something.
        import digest_rag.search.pipeline as dix

        original = dix.promote
        try:
            dix.promote = lambda ranked, chunk_paper, bonuses: list(ranked)
            assert index.search("ZorbNet이 BERT 사전학습에서 바꾼 점", k=3, mode="lexical")[0].paper.id != "zorb"
        finally:
            dix.promote = original


def test_an_owner_outside_the_candidates_joins_them(tmp_path: Path) -> None:
    papers = [_paper("zorb", "ZorbNet: Better Pretraining", "동적 마스킹.")] + [
        _paper(f"m{i}", f"Other Method {i}", "동적 마스킹 동적 마스킹 사전학습 ZorbNet") for i in range(3)]
    src = write_jsonl(papers, tmp_path / "src.jsonl")
    with DigestIndex.build([src], index_dir=tmp_path / "ix", lexical_only=True) as index:
        assert index.search("ZorbNet 동적 마스킹", k=1, mode="lexical")[0].paper.id == "zorb"


def test_a_hangul_name_finds_the_paper_written_in_latin(tmp_path: Path) -> None:
    papers = [Paper(id="rob", title="RoBERTa", sections=[Section(kind="abstract", language="en",
                                                                 text="A robustly optimized pretraining approach.")]),
              *[_paper(f"m{i}", f"Other Method {i}", "바꾼 점을 정리했다. 여러 가지를 바꾼 점.") for i in range(3)]]
    src = write_jsonl(papers, tmp_path / "src.jsonl")
    with DigestIndex.build([src], index_dir=tmp_path / "ix", lexical_only=True) as index:
        assert index.search("로버타가 바꾼 점", k=3, mode="lexical")[0].paper.id == "rob"


def test_a_name_many_titles_use_is_nobody_s_own() -> None:
    """GPT-4, LLM: tools and fields that questions about other papers mention; promoting their owner hurt."""
    titles = [("g", "GPT-4"), ("l", "LLM Critics Help Catch LLM Bugs")] + [
        (f"u{i}", f"Using GPT-4 and LLM for task {i}") for i in range(6)]
    table = NameTable(titles)
    assert "gpt4" not in table.owners and "llm" not in table.owners
    assert NameTable(titles[:3]).owners["gpt4"] == ("g",)


def test_the_named_paper_keeps_the_top_of_a_hybrid_search(tmp_path: Path, tiny_model: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A dense side that ranks the named paper last, weighed heavily, cannot push it off the top of hybrid
    search: known-item matching's lead keeps first place (fusion.lead_first)."""
    import digest_rag.search.pipeline as dix

    papers = [
        _paper("zorb", "ZorbNet: Better Pretraining", "사전학습 목표를 조금 바꿔 더 오래 학습한 모델. 동적 마스킹을 쓴다."),
        *[_paper(f"m{i}", f"Other Method {i}", f"ZorbNet과 BERT를 비교한 {i}번째 방법. 사전학습 목표를 바꾼다.")
          for i in range(6)],
    ]
    src = write_jsonl(papers, tmp_path / "src.jsonl")
    heavy = {"dense": 3.0, "lexical": 1.0}
    run = dix.run_retrievers

    def dense_ranks_the_owner_last(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        rankings = run(*args, **kwargs)
        if "dense" in rankings:
            zorb = set(index.store.chunk_ids_of(["zorb"]))
            ranking = rankings["dense"]
            rankings["dense"] = [r for r in ranking if r[0] not in zorb] + [r for r in ranking if r[0] in zorb]
        return rankings

    questions = ["ZorbNet이 바꾼 점", "ZorbNet에서 사전학습 목표를 바꾼 이유", "ZorbNet의 동적 마스킹"]
    with DigestIndex.build([src], index_dir=tmp_path / "ix", model=str(tiny_model)) as index:
        monkeypatch.setattr(dix, "run_retrievers", dense_ranks_the_owner_last)
        for question in questions:
            assert index.search(question, k=3, mode="lexical")[0].paper.id == "zorb", question
            assert index.search(question, k=3, mode="hybrid", fusion_weights=heavy)[0].paper.id == "zorb", question
        # Without the lead, that dense side decides: the test decides something.
        monkeypatch.setattr(dix, "lead_first", lambda ranked, chunk_paper, lead: list(ranked))
        tops = [index.search(q, k=3, mode="hybrid", fusion_weights=heavy)[0].paper.id for q in questions]
        assert "zorb" not in tops, tops
