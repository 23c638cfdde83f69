"""Tests for digest_rag.lexical.index: ranking, filters, field weights, pickle-free persistence."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from digest_rag.lexical.word_table import EOJEOL_FILE
from digest_rag.errors import IndexCorruptedError
from digest_rag.lexical.files import LEXICAL_FILES, PARAMS_FILE
from digest_rag.lexical.index import FieldWeights, LexicalIndex
from digest_rag.models import Chunk, Paper


def _chunk(cid: int, pid: str, text: str) -> Chunk:
    return Chunk(
        id=cid, paper_id=pid, section_index=0, section_kind="summary", language="ko",
        text=text, start=0, end=len(text),
    )


@pytest.fixture(scope="module")
def papers() -> dict[str, Paper]:
    ps = [
        Paper(id="p-jail", title="Many-shot Jailbreaking", title_ko="다발성 탈옥", tags=["safety"],
              authors=["Cem Anil"]),
        Paper(id="p-swe", title="SWE-Agent", authors=["John Yang"], tags=["agent"]),
        Paper(id="p-mod", title="Mixture-of-Depths", title_ko="깊이 혼합", tags=["efficiency"],
              authors=["David Raposo"]),
        Paper(id="p-gemma", title="Gemma 2", tags=["llm", "distillation"], authors=["Gemma Team"]),
    ]
    return {p.id: p for p in ps}


@pytest.fixture(scope="module")
def chunks() -> list[Chunk]:
    return [
        _chunk(101, "p-jail", "긴 컨텍스트 창을 악용하고 수백 개의 가짜 대화를 넣어 모델을 조종합니다."),
        _chunk(102, "p-jail", "This attack follows a power law up to hundreds of shots."),
        _chunk(201, "p-swe", "SWE-벤치에서 GitHub 이슈를 자동으로 해결하는 오픈소스 에이전트입니다."),
        _chunk(301, "p-mod", "트랜스포머가 토큰마다 FLOP을 동적으로 할당하는 방법을 학습합니다."),
        _chunk(401, "p-gemma", "Gemma 2에서는 Post Norm을 쓰고 Knowledge Distillation을 적극적으로 사용했습니다."),
        _chunk(402, "p-gemma", "벤치마크 스코어는 잘 나왔습니다. 한국어도 꽤 합니다."),
    ]


@pytest.fixture(scope="module")
def index(chunks: list[Chunk], papers: dict[str, Paper]) -> LexicalIndex:
    return LexicalIndex.build(chunks, papers)


def test_ranking(index: LexicalIndex) -> None:
    hits = index.search("긴 컨텍스트를 악용하는 탈옥 공격")
    assert hits[0][0] in (101, 102)
    assert all(s > 0 for _, s in hits)
    assert [s for _, s in hits] == sorted((s for _, s in hits), reverse=True)


def test_english_and_mixed_queries(index: LexicalIndex) -> None:
    assert index.search("SWE-bench 에이전트")[0][0] == 201
    assert index.search("Post Norm을 쓴 모델")[0][0] == 401
    assert index.search("FLOP 할당")[0][0] == 301


def test_title_field_reaches_every_chunk(index: LexicalIndex) -> None:
    # "jailbreaking" appears only in the title, so both chunks of the paper match.
    ids = {cid for cid, _ in index.search("jailbreaking")}
    assert ids == {101, 102}


def test_korean_query_finds_english_chunk_through_glossary(papers: dict[str, Paper]) -> None:
    chunks = [
        _chunk(1, "p-jail", "이 공격의 효과는 파워 법칙을 따릅니다. This attack follows a power law."),
        _chunk(2, "p-mod", "We study scaling laws for fine-grained mixture of experts."),
        _chunk(3, "p-swe", "An agent that solves GitHub issues."),
    ]
    idx = LexicalIndex.build(chunks, papers, FieldWeights(title=0, tags=0, authors=0))
    # Only chunk 1 shares a Korean word ("법칙") with the query, yet the
    # English "scaling laws" chunk is the answer.
    assert idx.search("스케일링 법칙에 대한 논문을 찾아줘")[0][0] == 2
    assert idx.search("지식 증류", k=3) == [] or all(cid != 3 for cid, _ in idx.search("지식 증류"))
    assert idx.search("에이전트")[0][0] == 3


def test_term_scores_weighting(index: LexicalIndex) -> None:
    one = index.term_scores({"탈옥": 1.0})
    half = index.term_scores({"탈옥": 0.5})
    np.testing.assert_allclose(half, one * 0.5, rtol=1e-6)
    assert not index.term_scores({"zzz-not-a-term": 1.0}).any()
    assert not index.term_scores({"탈옥": 0.0}).any()


def test_many_terms_score_as_the_weighted_sum_of_each(index: LexicalIndex) -> None:
    terms = {t: w for t, w in zip(index.vocab_names()[:40], [1.0, 0.5, 1.5, 0.25] * 10, strict=True) if t}
    terms["zzz-not-a-term"] = 1.0
    each = sum(index.term_scores({t: w}) for t, w in terms.items())
    together = index.term_scores(terms)
    assert together.dtype == np.float32 and together.shape == (len(index),) and together.any()
    np.testing.assert_allclose(together, each, rtol=1e-5)


def test_authors_and_tags_are_searchable(index: LexicalIndex) -> None:
    assert index.search("Raposo")[0][0] == 301
    assert {cid for cid, _ in index.search("distillation")} >= {401, 402}


def test_zero_weights_drop_fields(chunks: list[Chunk], papers: dict[str, Paper]) -> None:
    idx = LexicalIndex.build(chunks, papers, FieldWeights(title=0, tags=0, authors=0))
    assert idx.search("Raposo") == []
    assert {cid for cid, _ in idx.search("jailbreaking")} == set()


def test_k_and_empty_queries(index: LexicalIndex) -> None:
    assert len(index.search("모델", k=1)) <= 1
    assert index.search("") == []
    assert index.search("   을를 ") == []
    assert index.search("zzzunknownword") == []
    assert index.search("탈옥", k=0) == []


def test_allowed_filter(index: LexicalIndex) -> None:
    hits = index.search("탈옥 에이전트 Gemma", allowed={201, 402})
    assert hits and {cid for cid, _ in hits} <= {201, 402}
    assert index.search("탈옥", allowed={301}) == []
    assert index.search("탈옥", allowed=set()) == []
    assert index.search("탈옥", allowed={999999}) == []


def test_empty_index(papers: dict[str, Paper], tmp_path: Path) -> None:
    idx = LexicalIndex.build([], papers)
    assert idx.search("탈옥") == []
    idx.save(tmp_path)
    assert LexicalIndex.load(tmp_path).search("탈옥") == []


def test_duplicate_chunk_ids_rejected(papers: dict[str, Paper]) -> None:
    with pytest.raises(ValueError):
        LexicalIndex.build([_chunk(1, "p-swe", "a"), _chunk(1, "p-swe", "b")], papers)


QUERIES = ["긴 컨텍스트를 악용하는 탈옥 공격", "SWE-bench", "Gemma 2 distillation", "토큰 할당", "Raposo", "hundreds"]


def test_a_document_outside_the_index_scores_as_an_indexed_one(chunks: list[Chunk], papers: dict[str, Paper],
                                                                tmp_path: Path) -> None:
    """`score_document` (fusion calibration's stand-ins) gives an indexed chunk's own BM25 score from its tokens
    and fields, in memory and after a save and load; an index saved without the mean length says None."""
    from digest_rag.lexical.builder import TokenCache, paper_field_tokens

    index = LexicalIndex.build(chunks, papers)
    index.save(tmp_path)
    loaded = LexicalIndex.load(tmp_path)
    cache = TokenCache(None)
    fields = paper_field_tokens(papers, papers, cache)
    w = index.weights
    for q in QUERIES:
        terms = dict(index.analyse(q).weights)
        expected = index.term_scores(terms)
        for row, c in enumerate(chunks):
            title, tags, authors = fields[c.paper_id]
            doc = [*cache.tokens([c.text])[0], *title * w.title, *tags * w.tags, *authors * w.authors]
            assert index.score_document(terms, doc) == pytest.approx(float(expected[row]), rel=1e-5, abs=1e-6)
            assert loaded.score_document(terms, doc) == pytest.approx(float(expected[row]), rel=1e-5, abs=1e-6)
    params = json.loads((tmp_path / PARAMS_FILE).read_text(encoding="utf-8"))
    del params["avg_len"]
    (tmp_path / PARAMS_FILE).write_text(json.dumps(params), encoding="utf-8")
    assert LexicalIndex.load(tmp_path).score_document({"x": 1.0}, ["x"]) is None


def test_save_load_round_trip(index: LexicalIndex, tmp_path: Path) -> None:
    written = index.save(tmp_path)
    # The word table (eojeols.py) is written by every build; an index without it (older builds) still loads.
    assert sorted(written) == sorted([*LEXICAL_FILES, EOJEOL_FILE])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(written)
    loaded = LexicalIndex.load(tmp_path)
    assert loaded.weights == index.weights
    assert loaded.analysis_version == index.analysis_version
    np.testing.assert_array_equal(loaded.chunk_ids, index.chunk_ids)
    for q in QUERIES:
        assert loaded.search(q) == index.search(q)
        assert loaded.search(q, allowed={101, 401}) == index.search(q, allowed={101, 401})


def test_saved_files_are_json_or_plain_npy(index: LexicalIndex, tmp_path: Path) -> None:
    index.save(tmp_path)
    for f in tmp_path.iterdir():
        data = f.read_bytes()
        if f.suffix == ".json":
            json.loads(data.decode("utf-8"))
        elif f.name == EOJEOL_FILE:
            assert data.startswith(b"SQLite format 3\x00")  # rows of JSON text, read with SQL
        else:
            assert f.suffix == ".npy" and data.startswith(b"\x93NUMPY")
            arr = np.load(f, allow_pickle=False)
            assert arr.dtype != object
            assert not zipfile.is_zipfile(f)


def test_custom_weights_persist(chunks: list[Chunk], papers: dict[str, Paper], tmp_path: Path) -> None:
    w = FieldWeights(title=5, tags=0, authors=2, k1=1.5, b=0.5)
    idx = LexicalIndex.build(chunks, papers, w)
    idx.save(tmp_path)
    loaded = LexicalIndex.load(tmp_path)
    assert loaded.weights == w
    assert loaded.search("탈옥 jailbreaking") == idx.search("탈옥 jailbreaking")


@pytest.mark.parametrize("name", LEXICAL_FILES)
def test_truncated_file_raises_corrupted(index: LexicalIndex, tmp_path: Path, name: str) -> None:
    index.save(tmp_path)
    f = tmp_path / name
    f.write_bytes(f.read_bytes()[: max(1, f.stat().st_size // 2)])
    with pytest.raises(IndexCorruptedError, match=name.replace(".", r"\.")):
        LexicalIndex.load(tmp_path)


@pytest.mark.parametrize("name", LEXICAL_FILES)
def test_missing_file_raises_corrupted(index: LexicalIndex, tmp_path: Path, name: str) -> None:
    index.save(tmp_path)
    (tmp_path / name).unlink()
    with pytest.raises(IndexCorruptedError, match=name.replace(".", r"\.")):
        LexicalIndex.load(tmp_path)


def test_pickled_array_is_refused(index: LexicalIndex, tmp_path: Path) -> None:
    index.save(tmp_path)
    np.save(tmp_path / "lexical.data.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(IndexCorruptedError, match=r"lexical\.data\.npy"):
        LexicalIndex.load(tmp_path)


def test_other_analysis_version_asks_for_rebuild(index: LexicalIndex, tmp_path: Path) -> None:
    index.save(tmp_path)
    meta_path = tmp_path / "lexical.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    meta["analysis"] = "ko-kiwi-0.24+latin-v1"  # an index from before the glossary
    meta_path.write_text(json.dumps(meta), encoding="utf-8")
    with pytest.raises(IndexCorruptedError, match="rebuild"):
        LexicalIndex.load(tmp_path)


def test_inconsistent_arrays_raise(index: LexicalIndex, tmp_path: Path) -> None:
    index.save(tmp_path)
    np.save(tmp_path / "lexical.chunk_ids.npy", np.arange(3, dtype=np.int64), allow_pickle=False)
    with pytest.raises(IndexCorruptedError, match=r"lexical\.chunk_ids\.npy"):
        LexicalIndex.load(tmp_path)


def _forged_npy(path: Path, shape: tuple[int, ...], descr: str = "<f4", data: bytes = b"\0" * 64) -> None:
    import io

    from numpy.lib import format as npy_format

    buf = io.BytesIO()
    npy_format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    path.write_bytes(buf.getvalue() + data)


@pytest.mark.parametrize("name", [n for n in LEXICAL_FILES if n.endswith(".npy")])
@pytest.mark.parametrize("shape", [(10**10,), (10**6, 10**6), (3,), (0,), (16, 1)])
def test_forged_npy_header_is_refused_before_allocating(
    index: LexicalIndex, tmp_path: Path, name: str, shape: tuple[int, ...]
) -> None:
    """Issue 16 item 6: a header asking for 1e10 elements was a MemoryError traceback."""
    import resource

    index.save(tmp_path)
    descr = "<i8" if name in ("lexical.chunk_ids.npy", "lexical.indptr.npy") else "<f4"
    _forged_npy(tmp_path / name, shape, descr)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(IndexCorruptedError, match=name.replace(".", r"\.")):
        LexicalIndex.load(tmp_path)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100_000  # KiB: nothing big allocated


@pytest.mark.parametrize("name", [n for n in LEXICAL_FILES if n.endswith(".json")])
@pytest.mark.parametrize("text", ["[" * 200_000, '{"a":' * 100_000, '{"num_docs": 1' + "0" * 5000 + "}",
                                  '{"k1": 1e999999}'])
def test_hostile_json_is_corruption(index: LexicalIndex, tmp_path: Path, name: str, text: str) -> None:
    """Issue 16 item 6: a deeply nested vocab JSON was a RecursionError traceback."""
    index.save(tmp_path)
    (tmp_path / name).write_text(text, encoding="utf-8")
    with pytest.raises(IndexCorruptedError, match=name.replace(".", r"\.")):
        LexicalIndex.load(tmp_path)


def test_huge_bm25_parameter_is_corruption(index: LexicalIndex, tmp_path: Path) -> None:
    index.save(tmp_path)
    params = json.loads((tmp_path / "lexical.params.json").read_text(encoding="utf-8"))
    params["k1"] = 10**400  # float() of it overflows
    (tmp_path / "lexical.params.json").write_text(json.dumps(params), encoding="utf-8")
    with pytest.raises(IndexCorruptedError, match=r"lexical\.params\.json"):
        LexicalIndex.load(tmp_path)


def test_token_cache_skips_analysis_and_gives_the_same_index(
    chunks: list[Chunk], papers: dict[str, Paper], monkeypatch: pytest.MonkeyPatch
) -> None:
    import digest_rag.lexical.builder as builder_module

    first = LexicalIndex.build(chunks, papers)
    # Every chunk text and every paper field text was analysed once, and is recorded for the next build.
    assert first.analysed_texts == len(first.token_entries) > len(chunks)

    def no_analysis(texts: list[str]) -> list[list[str]]:
        raise AssertionError(f"analysed {len(texts)} texts that were cached")

    monkeypatch.setattr(builder_module, "document_tokens", no_analysis)
    again = LexicalIndex.build(chunks, papers, token_cache=first.token_entries)
    assert again.analysed_texts == 0 and again.token_entries == first.token_entries
    for q in ("탈옥 공격", "SWE-Agent", "Gemma distillation"):
        np.testing.assert_array_equal(again.scores(q), first.scores(q))
    monkeypatch.undo()
    # A changed chunk is analysed alone; entries no longer used are not carried forward.
    edited = [*chunks[:-1], _chunk(chunks[-1].id, chunks[-1].paper_id, chunks[-1].text + " 새 문장.")]
    third = LexicalIndex.build(edited, papers, token_cache=first.token_entries)
    assert third.analysed_texts == 1 and len(third.token_entries) == len(first.token_entries)


def test_word_table_grows_with_updates_without_analysing_reused_texts(
    chunks: list[Chunk], papers: dict[str, Paper], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = LexicalIndex.build(chunks, papers)
    first.save(tmp_path / "one")
    rows = LexicalIndex.previous_eojeols(tmp_path / "one")
    assert rows and "컨텍스트" in rows and "탈옥" in rows  # a chunk's words and a paper field's (title_ko)
    # A second build reuses every text: no Kiwi at all, the same table.
    monkeypatch.setattr("digest_rag.lexical.analysis.get_kiwi", lambda: pytest.fail("Kiwi started for reused texts"))
    again = LexicalIndex.build(chunks, papers, token_cache=first.token_entries, eojeol_rows=rows)
    again.save(tmp_path / "two")
    assert LexicalIndex.previous_eojeols(tmp_path / "two") == rows
    monkeypatch.undo()
    # A new text adds its words; the reused texts' words stay.
    added = [*chunks, _chunk(999, "p-jail", "새로운 공격 기법을 제안합니다.")]
    third = LexicalIndex.build(added, papers, token_cache=first.token_entries, eojeol_rows=rows)
    assert third.analysed_texts == 1
    third.save(tmp_path / "three")
    grown = LexicalIndex.previous_eojeols(tmp_path / "three")
    assert grown is not None and set(rows) < set(grown) and "기법을" in grown
    loaded = LexicalIndex.load(tmp_path / "three", eojeols=True)
    assert loaded.eojeols is not None
    for q in QUERIES:
        assert loaded.search(q) == third.search(q)
    loaded.close()


def test_top_k_selection_matches_a_full_sort_with_ties(index: LexicalIndex, monkeypatch: pytest.MonkeyPatch) -> None:
    # search() narrows to scores >= the k-th largest before sorting; ties must still break by chunk order.
    rng = np.random.default_rng(0)
    fake = rng.integers(0, 4, size=len(index)).astype(np.float32)
    monkeypatch.setattr(index, "scores", lambda _q: fake)
    pos = np.flatnonzero(fake > 0)
    full = pos[np.lexsort((pos, -fake[pos]))]
    for k in (1, 2, 3, len(index)):
        assert index.search("q", k) == [(int(index.chunk_ids[i]), float(fake[i])) for i in full[:k]]


def test_title_only_paper_is_searchable() -> None:
    # A paper whose note is only its English title still gets a BM25 document
    # (its title passage); papers with text are indexed by their text chunks only.
    from digest_rag.lexical.builder import lexical_chunks

    def chunk(cid: int, pid: str, kind: str, text: str) -> Chunk:
        return Chunk(id=cid, paper_id=pid, section_index=0, section_kind=kind, language="en",
                     text=text, start=0, end=len(text))

    papers = {
        "lima": Paper(id="lima", title="LIMA: Less Is More for Alignment"),
        "other": Paper(id="other", title="A Survey of Instruction Tuning"),
    }
    chunks = [
        chunk(1, "lima", "title", "LIMA: Less Is More for Alignment"),
        chunk(2, "other", "title", "A Survey of Instruction Tuning"),
        chunk(3, "other", "commentary", "정렬 데이터를 많이 모은 지시 튜닝 연구를 정리했습니다."),
    ]
    selected = lexical_chunks(chunks)
    assert [c.id for c in selected] == [1, 3]
    index = LexicalIndex.build(selected, papers)
    assert index.search("LIMA 정렬", 5)[0][0] == 1


def test_title_weight_decides_between_a_title_and_a_commentary() -> None:
    # Paper A names "sparse attention" in its title and once in its text; paper B's commentary
    # names it twice. Weighting the title (the default, 3 repeats) puts A first; without it, B.
    papers = {
        "a": Paper(id="a", title="Sparse Attention for Long Documents"),
        "b": Paper(id="b", title="A Survey of Efficient Transformers"),
    }
    chunks = [
        _chunk(1, "a", "We cut the cost of sparse attention on long inputs."),
        _chunk(2, "b", "Sparse attention and sparse attention variants are compared with linear kernels."),
    ]
    assert LexicalIndex.build(chunks, papers, FieldWeights()).search("sparse attention")[0][0] == 1
    assert LexicalIndex.build(chunks, papers, FieldWeights(title=0)).search("sparse attention")[0][0] == 2


def test_format_2_with_a_json_vocabulary_still_loads(index: LexicalIndex, tmp_path: Path) -> None:
    """Format 3 keeps the vocabulary as sorted memory-mapped arrays; format 2 indexes (JSON vocabulary) still load."""
    index.save(tmp_path)
    current = LexicalIndex.load(tmp_path)
    vocab = dict(current._bm25.vocab_dict)  # the sorted arrays, read back as a mapping
    assert vocab and all(current._bm25.vocab_dict[t] == i for t, i in list(vocab.items())[:50])
    assert "no such token" not in current._bm25.vocab_dict
    assert "no such token" not in current._bm25.vocab_dict  # a remembered miss is still a miss
    assert all(current._bm25.vocab_dict[t] == i for t, i in list(vocab.items())[:50])  # remembered hits too
    from_files = LexicalIndex.load(tmp_path)._bm25.vocab_dict
    current._bm25.vocab_dict.hold()
    for sorted_vocab in (current._bm25.vocab_dict, from_files):  # held, and read from the files
        assert all(sorted_vocab.get(t) == i and t in sorted_vocab for t, i in list(vocab.items())[:50])
        assert sorted_vocab.get("no such token") is None and sorted_vocab.get("no such token", -7) == -7
        assert sorted_vocab.get(3) is None and 3 not in sorted_vocab  # not a token at all
    meta = json.loads((tmp_path / "lexical.json").read_text(encoding="utf-8"))
    for name in ("lexical.vocab_bytes.npy", "lexical.vocab_offsets.npy", "lexical.vocab_ids.npy"):
        (tmp_path / name).unlink()
    (tmp_path / "lexical.vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (tmp_path / "lexical.json").write_text(json.dumps({**meta, "format": 2}), encoding="utf-8")
    old = LexicalIndex.load(tmp_path)
    for q in QUERIES:
        assert old.search(q) == current.search(q) == index.search(q)


def test_a_paper_field_adds_a_bounded_number_of_tokens_to_each_chunk() -> None:
    """Issue 23: a paper merged from thousands of copies has thousands of tags and of chunks; each chunk's
    BM25 document repeated every tag (64 M tokens at 8,000 copies). A field adds at most MAX_FIELD_TOKENS."""
    from digest_rag.lexical.builder import MAX_FIELD_TOKENS, TokenCache, paper_field_tokens
    from digest_rag.models import Paper

    paper = Paper(id="p", title="Shared Title", tags=[f"tag{i}" for i in range(3 * MAX_FIELD_TOKENS)],
                  authors=["Alice Kim", "Bob Lee"], source="x.jsonl", format="jsonl")
    title, tags, authors = paper_field_tokens({"p": paper}, ["p"], TokenCache())["p"]
    assert len(tags) == MAX_FIELD_TOKENS
    assert tags[0].startswith("tag")
    assert authors and title and len(title) < MAX_FIELD_TOKENS


def test_a_held_index_searches_as_before_and_a_damaged_one_still_says_so(index: LexicalIndex, tmp_path: Path) -> None:
    """`hold_small` (a process's second search): the vocabulary as a dict and the posting lists checked at once,
    the same results; a posting list out of range is not waved through, the per-term check still names it."""
    index.save(tmp_path / "ok")
    held = LexicalIndex.load(tmp_path / "ok")
    held.hold_small()
    assert held._all_checked and held._bm25.vocab_dict._held is not None
    for q in QUERIES:
        assert held.search(q) == index.search(q)
    assert "없는토큰" not in held._bm25.vocab_dict
    index.save(tmp_path / "bad")
    path = tmp_path / "bad" / "lexical.indices.npy"
    indices = np.load(path)
    indices[:] = len(index) + 5  # every posting names a chunk the index does not have
    np.save(path, indices)
    damaged = LexicalIndex.load(tmp_path / "bad")
    damaged.hold_small()
    assert not damaged._all_checked
    with pytest.raises(IndexCorruptedError, match="out of range"):
        for q in QUERIES:
            damaged.search(q)


def test_an_analysed_question_searched_again_is_scored_once(
        chunks: list[Chunk], papers: dict[str, Paper], monkeypatch: pytest.MonkeyPatch) -> None:
    """A search's second pass with the same `QueryTerms` (the chunks of a paper the question names) reuses the
    scores; another analysis of the same words, or another feedback setting, scores afresh."""
    from digest_rag.lexical.feedback import FeedbackSettings

    index = LexicalIndex.build(chunks, papers)
    terms = index.analyse(QUERIES[0])
    scored: list[object] = []
    original = LexicalIndex.term_scores
    monkeypatch.setattr(LexicalIndex, "term_scores", lambda self, t: scored.append(t) or original(self, t))
    first = index.search(terms, k=5)
    assert first and index.search(terms, k=2, allowed={first[-1][0]}) == [first[-1]] and len(scored) == 1
    assert index.search(index.analyse(QUERIES[0]), k=5) == first and len(scored) == 2
    index.feedback = FeedbackSettings()
    index.search(terms, k=5)
    assert len(scored) > 2
    with pytest.raises(ValueError):
        index._last_scores[2][0] = 1.0  # noqa: SLF001  # the kept scores are read-only
