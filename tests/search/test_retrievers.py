"""search.retrievers: which retrievers a mode asks for, and the hybrid fallback when the encoder is missing."""

from __future__ import annotations

from pathlib import Path

import pytest

from digest_rag.errors import ModelFallbackWarning, ModelUnavailableError, UsageError
from digest_rag.lexical.terms import QueryTerms, analyse_query
from digest_rag.search.retrievers import retrievers_for, run_retrievers


class _Fake:
    def __init__(self, name: str, ranking: list[tuple[int, float]] | None = None) -> None:
        self.name = name
        self.ranking = ranking
        self.asked: list[QueryTerms] = []

    def search(self, query: QueryTerms, k: int, allowed_ids: set[int] | None) -> list[tuple[int, float]]:
        self.asked.append(query)
        if self.ranking is None:
            raise ModelUnavailableError("no weights here")
        return [(c, s) for c, s in self.ranking if allowed_ids is None or c in allowed_ids][:k]


def test_modes_choose_their_retrievers() -> None:
    dense, lexical = _Fake("dense", []), _Fake("lexical", [])
    assert retrievers_for("hybrid", dense, lexical, Path("ix")) == [dense, lexical]  # type: ignore[arg-type]
    assert retrievers_for("lexical", dense, lexical, Path("ix")) == [lexical]  # type: ignore[arg-type]
    assert retrievers_for("hybrid", None, lexical, Path("ix")) == [lexical]  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="lexical-only"):
        retrievers_for("dense", None, lexical, Path("ix"))  # type: ignore[arg-type]


def test_every_retriever_gets_the_one_analysis() -> None:
    terms = analyse_query("탈옥 공격")
    dense, lexical = _Fake("dense", [(1, 0.9)]), _Fake("lexical", [(2, 3.0), (1, 1.0)])
    got = run_retrievers([dense, lexical], "hybrid", terms, 10, {1})
    assert got == {"dense": [(1, 0.9)], "lexical": [(1, 1.0)]}
    assert dense.asked == [terms] and lexical.asked[0] is terms


def test_hybrid_falls_back_to_lexical_with_a_warning_dense_raises() -> None:
    terms = analyse_query("jailbreak")
    lexical = _Fake("lexical", [(2, 3.0)])
    with pytest.warns(ModelFallbackWarning, match="lexical side"):
        got = run_retrievers([_Fake("dense"), lexical], "hybrid", terms, 10, None)
    assert got == {"lexical": [(2, 3.0)]}
    with pytest.raises(ModelUnavailableError):
        run_retrievers([_Fake("dense")], "dense", terms, 10, None)
