"""search/pipeline.py: the query path of a loaded index, and what it keeps between searches (bounded)."""

from __future__ import annotations

import pytest

from digest_rag import DigestIndex


def test_a_search_analyses_its_question_once(seed_index, monkeypatch: pytest.MonkeyPatch) -> None:
    """The question is analysed once per search (QueryTerms), for ranking, snippets and printing alike, and
    not again when the same index is asked it again (`DigestIndex.analyse` keeps recent questions' analyses)."""
    import digest_rag.lexical.analysis as analysis_module
    import digest_rag.lexical.terms as terms_module
    from digest_rag.frontends.display import format_hits

    question = "긴 컨텍스트를 악용하는 탈옥 공격"
    calls: list[list[str]] = []
    real = analysis_module._analyse_many

    def counting(texts, *args, **kwargs):
        calls.append(list(texts))
        return real(texts, *args, **kwargs)

    monkeypatch.setattr(analysis_module, "_analyse_many", counting)
    monkeypatch.setattr(terms_module, "_analyse_many", counting)
    for mode in ("lexical", "hybrid"):
        calls.clear()
        hits = seed_index.search(question, k=5, mode=mode)
        assert hits
        format_hits(hits, color=True, width=80)
        # Once by the first search; the second search of the same question reuses the index's kept analysis.
        assert sum(question in texts for texts in calls) == (1 if mode == "lexical" else 0), (mode, calls)


def test_the_chunks_a_page_shows_are_read_from_the_store_once(seed_index_dir, monkeypatch: pytest.MonkeyPatch) -> None:
    from digest_rag.storage.store import Store

    read: list[int] = []
    real = Store.chunks

    def counting(self, ids=None):
        ids = list(ids) if ids is not None else None
        read.extend(ids or [])
        return real(self, ids)

    monkeypatch.setattr(Store, "chunks", counting)
    with DigestIndex.load(seed_index_dir) as idx:
        first = idx.search("긴 컨텍스트를 악용하는 탈옥 공격", k=5, mode="lexical")
        shown = [h.chunk_id for h in first]
        assert set(shown) <= set(read)
        read.clear()
        again = idx.search("긴 컨텍스트를 악용하는 탈옥 공격", k=5, mode="lexical")
        assert [h.model_dump() for h in again] == [h.model_dump() for h in first]
        assert not set(shown) & set(read)  # kept from the first search (a title hit's opening chunk aside)


def test_a_small_index_reads_its_papers_once_from_the_second_search(seed_index_dir,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A small index reads every paper in one go on its second search (a one-question process reads only the
    page's papers), and a new question then reads no paper record."""
    from digest_rag.search import pipeline
    from digest_rag.storage.store import Store

    reads: list[object] = []
    real = Store.papers

    def counting(self, ids=None):
        ids = list(ids) if ids is not None else None
        reads.append(ids)
        return real(self, ids)

    monkeypatch.setattr(Store, "papers", counting)
    with DigestIndex.load(seed_index_dir) as idx:
        first = idx.search("긴 컨텍스트를 악용하는 탈옥 공격", k=5, mode="lexical")
        assert reads and all(ids is not None for ids in reads)  # the page's papers only
        reads.clear()
        second = idx.search("라마 3 모델", k=5, mode="lexical")
        assert reads == [None]  # every paper, once
        reads.clear()
        third = idx.search("에이전트 벤치마크", k=5, mode="lexical")
        assert reads == [] and first and second and third
    # Above the size held the second search keeps reading the page's papers.
    monkeypatch.setattr(pipeline, "HELD_PAPERS", 1)
    reads.clear()
    with DigestIndex.load(seed_index_dir) as idx:
        for q in ("긴 컨텍스트를 악용하는 탈옥 공격", "라마 3 모델"):
            again = idx.search(q, k=5, mode="lexical")
        assert None not in reads
        assert [h.paper.id for h in again] == [h.paper.id for h in second]


def test_a_small_index_holds_its_chunks_and_vocabulary_from_the_second_search(
        seed_index_dir, monkeypatch: pytest.MonkeyPatch) -> None:
    """From the second search a small index reads no chunk text and searches no vocabulary file for a new
    question, with the same results as an index that holds nothing."""
    from digest_rag.lexical.files import SortedVocab
    from digest_rag.search import pipeline
    from digest_rag.storage.store import Store

    questions = ["긴 컨텍스트를 악용하는 탈옥 공격", "라마 3 모델", "에이전트 벤치마크", "Mixtral experts routing"]
    with DigestIndex.load(seed_index_dir) as idx:
        for q in questions[:2]:
            idx.search(q, k=5, mode="lexical")
        held = [[h.model_dump() for h in idx.search(q, k=5, mode="lexical")] for q in questions[2:]]
    monkeypatch.setattr(pipeline, "HELD_CHUNKS", 0)
    monkeypatch.setattr(pipeline, "HELD_PAPERS", 0)
    monkeypatch.setattr("digest_rag.lexical.index.HELD_TERMS", 0)
    with DigestIndex.load(seed_index_dir) as idx:
        for q in questions[:2]:
            idx.search(q, k=5, mode="lexical")
        assert [[h.model_dump() for h in idx.search(q, k=5, mode="lexical")] for q in questions[2:]] == held
    monkeypatch.undo()
    chunk_reads: list[object] = []
    real_chunks = Store.chunks
    monkeypatch.setattr(Store, "chunks", lambda self, ids=None: chunk_reads.append(ids) or real_chunks(self, ids))
    with DigestIndex.load(seed_index_dir) as idx:
        for q in questions[:2]:
            idx.search(q, k=5, mode="lexical")
        assert chunk_reads[-1] is None  # every chunk, once
        chunk_reads.clear()
        monkeypatch.setattr(SortedVocab, "_find", lambda self, token: pytest.fail(f"searched the files for {token!r}"))
        assert idx.search("완전히 새로운 질문 diffusion 샘플링", k=5, mode="lexical") is not None
        assert chunk_reads == []


def test_the_kept_analyses_are_bounded(seed_index_dir, monkeypatch: pytest.MonkeyPatch) -> None:
    from digest_rag.search import pipeline

    monkeypatch.setattr(pipeline, "ANALYSED_QUESTIONS", 3)
    with DigestIndex.load(seed_index_dir) as idx:
        questions = [f"탈옥 공격 {i}" for i in range(7)]
        for q in questions:
            idx.search(q, k=2, mode="lexical")
            assert len(idx._query._analysed) <= 3
        assert idx.analyse(questions[-1]) is idx.analyse(questions[-1])  # the latest is kept


def _loanword_corpus(tmp_path):
    import json

    papers = [
        {"id": "aug", "title": "Affinity and Diversity", "authors": ["Jared Kaplan"], "abstract_en": "We quantify how data augmentation helps "
         "generalization with two measures, affinity and diversity of the augmented samples."},
        {"id": "other", "title": "Caching for Faster Training", "abstract_en": "Data loading and caching for training."},
        {"id": "ko", "title": "Korean Note", "commentary_ko": "강화학습 보상 모델이 왜 잘 되는지 분석한 연구입니다."},
    ]
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in papers), encoding="utf-8")
    return path


def test_a_hangul_loanword_finds_the_english_note(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """"어그멘테이션" is how a reader types "augmentation": the build stores what a loanword may spell, and the
    question finds the English abstract; an index built before (no stored table) spells it the same way."""
    from digest_rag.lexical.loanwords import LOANWORD_RULES, latin_form, skeleton
    from digest_rag.storage.store import Store

    question = "어그멘테이션이 왜 먹히는지 두 지표로 잰 연구"
    with DigestIndex.build([_loanword_corpus(tmp_path)], index_dir=tmp_path / "ix", lexical_only=True) as idx:
        assert idx.store.has_loanwords(LOANWORD_RULES)
        stored = idx.store.loanword_candidates(skeleton(latin_form("augmentation")))
        assert [t for t, _f in stored] == ["augmentation"]
        assert idx.store.loanword_candidates(skeleton(latin_form("kaplan"))) == []  # an author's name: never spelled
        terms = idx.analyse(question)
        assert terms.sources.get("augmentation") == "loanword"
        hits = idx.search(question, k=3, mode="lexical")
        assert hits[0].paper.id == "aug"
        snippet = hits[0].snippet
        assert any(snippet[a:b].lower() == "augmentation" for a, b in hits.highlighter.spans(snippet))
    # An index whose build stored no candidates (before they were stored) makes them from its vocabulary.
    monkeypatch.setattr(Store, "has_loanwords", lambda self, rules: False)
    with DigestIndex.load(tmp_path / "ix") as old:
        assert not old.store.has_loanwords(LOANWORD_RULES)
        assert old.analyse(question).sources.get("augmentation") == "loanword"
        assert old.search(question, k=3, mode="lexical")[0].paper.id == "aug"


def test_a_damaged_record_elsewhere_does_not_stop_the_second_search(seed_index_dir,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Holding a small index reads every record; one damaged record the question never needs leaves the index
    reading lazily instead of failing every search from the second on."""
    from digest_rag.errors import IndexCorruptedError
    from digest_rag.storage.store import Store

    real = Store.chunks

    def damaged(self, ids=None):
        if ids is None:
            raise IndexCorruptedError(f"{self.path}: damaged chunk record (test)")
        return real(self, ids)

    monkeypatch.setattr(Store, "chunks", damaged)
    with DigestIndex.load(seed_index_dir) as idx:
        first = idx.search("긴 컨텍스트를 악용하는 탈옥 공격", k=5, mode="lexical")
        second = idx.search("라마 3 모델", k=5, mode="lexical")
        assert first and second and idx._query._papers is None  # nothing held, the searches answered
