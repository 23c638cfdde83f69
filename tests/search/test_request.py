"""Issue 16 item 7: search options are checked once; a string is one value, bad types are UsageError."""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

import pytest

from digest_rag import DigestIndex
from digest_rag.errors import UsageError
from digest_rag.models import CHUNK_KINDS
from digest_rag.search.request import Filters, check_k, make_filters, period_day


def test_k_must_be_a_positive_whole_number() -> None:
    assert check_k(5) == 5
    for bad in ("5", 5.5, 5.0, True, None, [5]):
        with pytest.raises(UsageError, match="k must be a whole number"):
            check_k(bad)
    for bad in (0, -1):
        with pytest.raises(UsageError, match="at least 1"):
            check_k(bad)


def test_a_string_is_one_tag_not_its_letters() -> None:
    assert make_filters(tags="llm").tags == ("llm",)
    assert make_filters(tags=["llm", "rag"]).tags == ("llm", "rag")
    assert make_filters(tags=(t for t in ["a", "b"])).tags == ("a", "b")
    for bad in (5, b"llm", {"llm": 1}, ["llm", 3]):
        with pytest.raises(UsageError, match="tag must be"):
            make_filters(tags=bad)  # type: ignore[arg-type]


def test_unknown_section_or_language_is_refused() -> None:
    assert make_filters(section="summary").sections == ("summary",)
    assert make_filters(section=["title", "abstract"]).sections == ("title", "abstract")
    assert "title" in CHUNK_KINDS and "summary" in CHUNK_KINDS
    with pytest.raises(UsageError, match="unknown section 'sumary'; choose from title, summary"):
        make_filters(section="sumary")
    with pytest.raises(UsageError, match="unknown section"):
        make_filters(section=["summary", "s"])
    assert make_filters(language="ko").languages == ("ko",)
    with pytest.raises(UsageError, match="unknown language 'kr'"):
        make_filters(language="kr")


def test_dates() -> None:
    f = make_filters(date_from="2024-06-01", date_to=_dt.date(2024, 6, 30))
    assert (f.date_from, f.date_to) == (_dt.date(2024, 6, 1), _dt.date(2024, 6, 30))
    assert type(make_filters(date_from=_dt.datetime(2024, 6, 1, 12)).date_from) is _dt.date
    for bad in ("June", "2024-13-01", 20240601, ["2024-06-01"], "x" * 10_000):
        with pytest.raises(UsageError, match="date_from must be a date like 2024-06-28"):
            make_filters(date_from=bad)
    with pytest.raises(UsageError) as err:
        make_filters(date_to="x" * 10_000)
    assert len(str(err.value)) < 150  # a hostile value is not echoed whole


def test_a_month_or_a_year_is_a_period() -> None:
    """`--from 2022` used to be refused ("must be a date like 2024-06-28"): a year or a month names a period,
    its first day for date_from and its last for date_to."""
    f = make_filters(date_from="2022", date_to="2023")
    assert (f.date_from, f.date_to) == (_dt.date(2022, 1, 1), _dt.date(2023, 12, 31))
    f = make_filters(date_from="2024-02", date_to=" 2024-02 ")
    assert (f.date_from, f.date_to) == (_dt.date(2024, 2, 1), _dt.date(2024, 2, 29))  # a leap year's February
    assert make_filters(date_to="2023-02").date_to == _dt.date(2023, 2, 28)
    assert period_day("2024-06-28") == period_day("2024-06-28", end=True) == _dt.date(2024, 6, 28)
    for bad in ("2024-13", "2024-00", "24", "2024-6-1x", "0000"):
        with pytest.raises(UsageError, match="a month like 2024-06 or a year like 2024"):
            make_filters(date_to=bad)
    with pytest.raises(UsageError, match="is after"):
        make_filters(date_from="2024", date_to="2023")


def test_empty_filters() -> None:
    assert make_filters().empty and Filters() == make_filters()
    assert not make_filters(tags="llm").empty


def test_search_takes_a_string_tag_and_refuses_bad_options(tmp_path: Path, seed_corpus: Path) -> None:
    """The reported cases, through DigestIndex.search: tags="llm" matched nothing, section="sumary" was accepted,
    k="5" raised a bare TypeError."""
    with DigestIndex.build([seed_corpus], index_dir=tmp_path / "ix", lexical_only=True) as idx:
        as_list = [h.paper.id for h in idx.search("language model", k=5, mode="lexical", tags=["llm"])]
        assert as_list and [h.paper.id for h in idx.search("language model", k=5, mode="lexical", tags="llm")] == as_list
        for kwargs in ({"section": "sumary"}, {"k": "5"}, {"k": 5.5}, {"language": "kr"}, {"tags": 5}):
            with pytest.raises(UsageError):
                idx.search("language model", mode="lexical", **kwargs)  # type: ignore[arg-type]


def test_author_filter_and_min_score(seed_lexical_index_dir) -> None:  # noqa: ANN001 - a Path fixture
    """Issue 25: ``author=`` joins the filters (part of a name, any case); ``min_score=`` drops weaker hits."""
    from digest_rag import DigestIndex

    with DigestIndex.load(seed_lexical_index_dir) as index:
        everyone = index.search("language model", k=20, mode="lexical")
        goldstein = index.search("language model", k=20, mode="lexical", author="goldstein")
        assert goldstein and len(goldstein) < len(everyone)
        assert all(any("goldstein" in a.lower() for a in h.paper.authors) for h in goldstein)
        both = index.search("language model", k=20, mode="lexical", author=["Goldstein", "Julia Kempe"])
        assert {h.paper.id for h in goldstein} < {h.paper.id for h in both}
        assert index.search("language model", k=20, mode="lexical", author="Nobody Atall") == []
        cut = everyone[len(everyone) // 2].score
        kept = index.search("language model", k=20, mode="lexical", min_score=cut)
        assert kept and len(kept) < len(everyone) and all(h.score >= cut for h in kept)
        assert [h.paper.id for h in kept] == [h.paper.id for h in everyone[:len(kept)]]


@pytest.mark.parametrize("bad", [{"author": ""}, {"author": [3]}, {"min_score": "high"}, {"min_score": True},
                                 {"min_score": float("nan")}])
def test_bad_author_and_min_score_are_usage_errors(seed_lexical_index_dir, bad) -> None:  # noqa: ANN001
    from digest_rag import DigestIndex

    with DigestIndex.load(seed_lexical_index_dir) as index, pytest.raises(UsageError):
        index.search("language model", mode="lexical", **bad)
