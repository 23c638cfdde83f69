"""Chunker: sentence boundaries, token limits with the real tokenizer, spans, overlap, title in passages."""

from __future__ import annotations

from pathlib import Path

import pytest

from digest_rag.build.chunking import approx_token_count, chunk_paper, chunk_papers, passage_text, split_sentences
from digest_rag.models import ChunkerSettings, Paper, Section
from digest_rag.parsing import parse_paths


@pytest.fixture(scope="module")
def seed_papers(seed_corpus: Path) -> list[Paper]:
    return parse_paths([seed_corpus]).papers


def _paper(text: str, kind: str = "commentary", lang: str = "ko", title: str = "A Paper") -> Paper:
    return Paper(id="p1", title=title, sections=[Section(kind=kind, language=lang, text=text)])  # type: ignore[arg-type]


def test_split_sentences_spans_cover_text() -> None:
    text = "첫 문장입니다. Second sentence! 세 번째?\n줄바꿈 문장"
    spans = split_sentences(text)
    assert [text[s:e] for s, e in spans] == ["첫 문장입니다.", "Second sentence!", "세 번째?", "줄바꿈 문장"]


def test_seed_chunks_within_model_limit(seed_papers: list[Paper], tiny_encoder) -> None:  # noqa: ANN001
    settings = ChunkerSettings(max_tokens=tiny_encoder.max_seq_length)
    chunks = chunk_papers(seed_papers, settings, tiny_encoder.count_tokens, tiny_encoder.passage_prefix)
    assert chunks
    by_id = {p.id: p for p in seed_papers}
    tok = tiny_encoder.tokenizer
    for c in chunks:
        full = tiny_encoder.passage_prefix + passage_text(by_id[c.paper_id], c.text, settings, c.section_kind)
        # The real tokenizer with special tokens: what the model actually reads.
        assert len(tok(full)["input_ids"]) <= settings.max_tokens


def test_small_limit_forces_many_chunks_and_never_exceeds(seed_papers: list[Paper], tiny_encoder) -> None:  # noqa: ANN001
    settings = ChunkerSettings(max_tokens=64, target_tokens=40, overlap_tokens=10)
    tok = tiny_encoder.tokenizer
    for paper in seed_papers:
        for c in chunk_paper(paper, settings, tiny_encoder.count_tokens, tiny_encoder.passage_prefix):
            full = tiny_encoder.passage_prefix + passage_text(paper, c.text, settings, c.section_kind)
            assert len(tok(full)["input_ids"]) <= 64, (paper.title, c.text)


def test_chunks_carry_metadata_and_spans(seed_papers: list[Paper]) -> None:
    for paper in seed_papers:
        chunks = chunk_paper(paper)
        title_chunks = [c for c in chunks if c.section_kind == "title"]
        assert len(title_chunks) == 1 and title_chunks[0].text == paper.display_title
        assert title_chunks[0].section_index == -1
        for c in chunks:
            if c.section_kind == "title":
                continue
            section = paper.sections[c.section_index]
            assert section.text[c.start : c.end] == c.text
            assert c.section_kind == section.kind and c.language == section.language
            assert c.paper_id == paper.id


def test_chunks_cover_all_sentences_with_overlap() -> None:
    sentences = [f"문장 번호 {i} 입니다 그리고 내용이 조금 더 있습니다." for i in range(60)]
    paper = _paper(" ".join(sentences))
    settings = ChunkerSettings(target_tokens=80, overlap_tokens=30, max_tokens=128)  # ~22 tokens a sentence
    chunks = [c for c in chunk_paper(paper, settings) if c.section_kind != "title"]
    assert len(chunks) > 3
    joined = " ".join(c.text for c in chunks)
    for s in sentences:
        assert s in joined
    # Consecutive chunks overlap by at least one sentence and chunks end on sentence boundaries.
    for a, b in zip(chunks, chunks[1:]):
        assert b.start < a.end
        assert a.text.endswith(".")


def test_overlong_sentence_is_split_within_budget() -> None:
    paper = _paper("가" * 3000 + " " + "word " * 500, lang="mixed")
    settings = ChunkerSettings(max_tokens=100, target_tokens=80)
    chunks = chunk_paper(paper, settings)
    assert len(chunks) > 10
    for c in chunks:
        assert approx_token_count("passage: " + passage_text(paper, c.text, settings)) <= 100


def test_ids_are_stable_and_distinct(seed_papers: list[Paper]) -> None:
    a = chunk_papers(seed_papers)
    b = chunk_papers(seed_papers)
    assert [c.id for c in a] == [c.id for c in b]
    assert len({c.id for c in a}) == len(a)
    assert all(0 <= c.id < 2**63 for c in a)


def test_title_in_passage_is_a_setting(seed_papers: list[Paper]) -> None:
    paper = seed_papers[0]
    c = chunk_paper(paper)[1]
    assert c.section_kind != "title"
    assert passage_text(paper, c.text, ChunkerSettings()).startswith(paper.title)
    assert passage_text(paper, c.text, ChunkerSettings(title_in_passage=False)) == c.text
    title = chunk_paper(paper)[0]
    assert passage_text(paper, title.text, ChunkerSettings(), title.section_kind) == paper.display_title
    assert [c.section_kind for c in chunk_paper(paper, ChunkerSettings(title_chunk=False))].count("title") == 0
