"""Tests for digest_rag.lexical.kiwi: the shared analyser's background start."""

from __future__ import annotations

import logging

import pytest

import digest_rag.lexical.kiwi as kiwi_module


def test_a_background_start_that_fails_is_logged_not_raised(monkeypatch: pytest.MonkeyPatch,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    def broken() -> object:
        raise OSError("model files missing")

    monkeypatch.setattr(kiwi_module, "get_kiwi", broken)
    with caplog.at_level(logging.WARNING, logger="digest_rag.lexical.kiwi"):
        kiwi_module.start_kiwi_in_background().join(timeout=10)
    assert "Kiwi did not start in the background: OSError: model files missing" in caplog.text


def test_a_background_start_analyses_once(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []

    class FakeKiwi:
        def tokenize(self, text: str) -> list[object]:
            seen.append(text)
            return []

    monkeypatch.setattr(kiwi_module, "get_kiwi", FakeKiwi)
    thread = kiwi_module.start_kiwi_in_background()
    thread.join(timeout=10)
    assert seen == ["시작"] and thread.daemon
