"""Issue 16 item 7: search options are checked once; strings are one value, bad types are UsageError."""

from __future__ import annotations

import datetime as _dt

import numpy as np
import pytest

from digest_rag.errors import UsageError
from digest_rag.query_options import SEARCH_SECTIONS, SearchFilters, check_k, search_filters


def test_k_must_be_a_positive_whole_number() -> None:
    assert check_k(5) == 5 and check_k(np.int64(3)) == 3
    for bad in ("5", 5.5, 5.0, True, None, [5]):
        with pytest.raises(UsageError, match="k must be a whole number"):
            check_k(bad)
    for bad in (0, -1):
        with pytest.raises(UsageError, match="at least 1"):
            check_k(bad)


def test_a_string_is_one_tag_not_its_letters() -> None:
    assert search_filters(tags="llm").tags == ("llm",)
    assert search_filters(tags=["llm", "rag"]).tags == ("llm", "rag")
    assert search_filters(tags=("llm",)).tags == ("llm",)
    assert search_filters(tags=(t for t in ["a", "b"])).tags == ("a", "b")
    for bad in (5, b"llm", {"llm": 1}, ["llm", 3]):
        with pytest.raises(UsageError, match="tags must be"):
            search_filters(tags=bad)  # type: ignore[arg-type]


def test_unknown_section_or_language_is_refused() -> None:
    assert search_filters(section="summary").sections == ("summary",)
    assert search_filters(section=["title", "abstract"]).sections == ("title", "abstract")
    assert "title" in SEARCH_SECTIONS and "summary" in SEARCH_SECTIONS
    with pytest.raises(UsageError, match="unknown section 'sumary'; choose title, summary"):
        search_filters(section="sumary")
    with pytest.raises(UsageError, match="unknown section"):
        search_filters(section=["summary", "s"])
    assert search_filters(language="ko").languages == ("ko",)
    with pytest.raises(UsageError, match="unknown language 'kr'; choose ko, en or mixed"):
        search_filters(language="kr")


def test_dates() -> None:
    f = search_filters(date_from="2024-06-01", date_to=_dt.date(2024, 6, 30))
    assert (f.date_from, f.date_to) == (_dt.date(2024, 6, 1), _dt.date(2024, 6, 30))
    assert search_filters(date_from=_dt.datetime(2024, 6, 1, 12)).date_from == _dt.date(2024, 6, 1)
    for bad in ("June", "2024-13-01", 20240601, "x" * 10_000):
        with pytest.raises(UsageError, match="date_from must be a date like 2024-06-28"):
            search_filters(date_from=bad)
    with pytest.raises(UsageError) as err:
        search_filters(date_to="x" * 10_000)
    assert len(str(err.value)) < 150  # a hostile value is not echoed whole


def test_empty_filters() -> None:
    assert search_filters().empty and SearchFilters() == search_filters()
    assert not search_filters(tags="llm").empty
