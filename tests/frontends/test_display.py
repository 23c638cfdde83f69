"""Highlighting that survives Korean particles, terminal layout, and SearchResults conversions."""

from __future__ import annotations

import json
import sys

import pytest

from digest_rag import SearchHit, SearchResults
from digest_rag.frontends.display import display_width, format_hits, highlight
from digest_rag.lexical.terms import analyse_query
from digest_rag.search.snippets import match_spans


def test_korean_terms_highlighted_without_their_particles() -> None:
    text = "이 연구는 스케일링 법칙을 따르는 모델의 스케일링이 어디서 깨지는지 본다."
    out = highlight(text, "스케일링 법칙에 대한 논문을 찾아줘", style="markdown")
    assert "**스케일링** **법칙**을 따르는" in out
    assert "**스케일링**이" in out
    # Question words and particles of the query itself (논문, 찾다, 대하다) are not terms.
    assert "논문" not in analyse_query("스케일링 법칙에 대한 논문을 찾아줘").highlight


def test_korean_predicates_match_by_lemma() -> None:
    # The query says "긴" (길다), the text "길면": the same lemma, a different surface form.
    out = highlight("컨텍스트가 길면 성능이 떨어진다", "긴 컨텍스트를", style="brackets")
    assert out.startswith("[컨텍스트]가 [길]면")


def test_latin_terms_use_the_index_normalisation() -> None:
    text = "Scaling Laws for Neural Language Models, evaluated on SWE-bench."
    out = highlight(text, "scaling law model bench", style="brackets")
    assert out == "[Scaling] [Laws] for Neural Language [Models], evaluated on [SWE-bench]."
    assert highlight(text, "the of for", style="brackets") == text  # stop words never light up


def test_spans_are_sorted_disjoint_and_inside_the_text() -> None:
    text = "긴 컨텍스트 LLM을 평가한 결과: long context LLMs"
    spans = match_spans(text, "긴 컨텍스트 LLM long context")
    assert spans and all(0 <= s < e <= len(text) for s, e in spans)
    assert all(a[1] < b[0] for a, b in zip(spans, spans[1:]))
    assert [text[s:e] for s, e in spans] == ["긴", "컨텍스트", "LLM", "long", "context", "LLMs"]


def test_styles() -> None:
    text = "스케일링 법칙"
    assert highlight(text, "법칙", style="none") == text
    assert highlight(text, "법칙", style="ansi") == "스케일링 \x1b[1;33m법칙\x1b[0m"
    with pytest.raises(ValueError, match="unknown highlight style"):
        highlight(text, "법칙", style="bold")  # type: ignore[arg-type]


def test_display_width_counts_hangul_double() -> None:
    assert display_width("한국어 abc") == 10


def test_format_hits_plain_wrapped_and_complete(seed_index) -> None:  # noqa: ANN001 - fixture
    query = "긴 컨텍스트를 악용하는 탈옥 공격"
    hits = seed_index.search(query, k=3, mode="lexical")
    text = format_hits(hits, query, color=False, width=60)
    assert "\x1b[" not in text
    assert text.startswith(" 1. Many-shot Jailbreaking\n    다발성 탈옥\n    2024-04-01")
    assert all(display_width(line) <= 60 for line in text.splitlines())
    for rank in (" 1. ", " 2. ", " 3. "):
        assert rank in text
    # The snippet survives wrapping word for word.
    first = hits[0].snippet.split()
    assert " ".join(text.split("\n\n")[0].split()).endswith(" ".join(first))
    coloured = format_hits(hits, query, color=True, width=60)
    assert "\x1b[1;33m" in coloured and "\x1b[1m" in coloured
    assert format_hits([], query) == "no matching papers"


def test_search_returns_search_results(seed_index) -> None:  # noqa: ANN001 - fixture
    hits = seed_index.search("Gemma 2 지식 증류", k=4, mode="lexical")
    assert isinstance(hits, SearchResults)
    assert all(isinstance(h, SearchHit) for h in hits) and len(hits) == 4
    assert hits.query == "Gemma 2 지식 증류" and hits.mode == "lexical"
    records = hits.to_records()
    assert [r["rank"] for r in records] == [1, 2, 3, 4]
    assert records[0]["paper_id"] == hits[0].paper.id
    json.dumps(records, ensure_ascii=False)  # JSON-ready as documented
    frame = hits.to_frame()
    assert list(frame["paper_id"]) == [h.paper.id for h in hits]
    assert {"title", "title_ko", "date", "tags", "score", "snippet", "section", "language"} <= set(frame.columns)
    assert str(frame["date"].dtype).startswith("datetime64")
    assert frame["score"].is_monotonic_decreasing


def test_to_frame_without_pandas_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas now raises ImportError
    with pytest.raises(ImportError, match=r"digest-rag\[pandas\]"):
        SearchResults().to_frame()
    assert SearchResults().to_records() == []


def test_korean_query_highlights_english_glossary_forms() -> None:
    terms = analyse_query("스케일링 법칙에 대한 논문을 찾아줘").highlight
    # The bundled glossary maps 스케일링 법칙 to "scaling law": losing that mapping must fail, not skip.
    assert {"scaling", "law"} <= terms
    out = highlight("We fit Scaling Laws for MoE.", terms, style="brackets")
    assert "[Scaling]" in out and all(":" not in t for t in terms)
