"""Tests for digest_rag.lexical.kiwi: the shared analyser's background start."""

from __future__ import annotations

import logging

import pytest

import digest_rag.lexical.kiwi as kiwi_module


def test_a_background_start_that_fails_is_logged_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> object:
        raise OSError("model files missing")

    class Records(logging.Handler):
        def __init__(self) -> None:
            super().__init__(logging.WARNING)
            self.messages: list[str] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.messages.append(record.getMessage())

    # Its own handler: the CLI's tests may stop digest_rag's loggers from propagating to the root.
    records = Records()
    logger = logging.getLogger("digest_rag.lexical.kiwi")
    logger.addHandler(records)
    monkeypatch.setattr(kiwi_module, "get_kiwi", broken)
    try:
        kiwi_module.start_kiwi_in_background().join(timeout=10)
    finally:
        logger.removeHandler(records)
    assert records.messages == ["Kiwi did not start in the background: OSError: model files missing"]


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
