"""digest_rag.text: language detection, ids, hashing, reading and decoding corpus files."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest

from digest_rag.errors import ParseError
from digest_rag.text import (
    arxiv_ids,
    decode_bytes,
    detect_language,
    fingerprint,
    has_hangul,
    make_paper_id,
    read_text,
    slugify,
    stable_int64,
)


def test_language_by_share_of_hangul() -> None:
    assert detect_language("긴 컨텍스트를 악용하는 탈옥 공격을 다룬 논문입니다") == "ko"
    assert detect_language("Many-shot jailbreaking exploits long context windows.") == "en"
    # Korean commentary full of English terms is still Korean; a few Korean words in English text make it mixed.
    assert detect_language("LoRA와 QLoRA를 비교한 결과 메모리가 크게 줄었다") == "ko"
    assert detect_language("We compare LoRA and QLoRA adapters on long inputs (요약)") == "mixed"
    assert detect_language("1234 !!") == "en" and not has_hangul("1234") and has_hangul("a 가")


def test_arxiv_ids_in_order_without_versions_or_repeats() -> None:
    text = "see https://arxiv.org/abs/2404.02151v2 and arxiv.org/pdf/2401.00001, again arxiv.org/abs/2404.02151"
    assert arxiv_ids(text) == ["2404.02151", "2401.00001"]


def test_paper_ids_are_stable_and_readable() -> None:
    assert make_paper_id("Anything", None, "2404.02151") == "2404.02151"
    assert make_paper_id("Many-shot Jailbreaking!", dt.date(2024, 4, 1)) == "many-shot-jailbreaking-2024-04-01"
    assert slugify("긴 컨텍스트 공격") == "긴-컨텍스트-공격" and slugify("!!!") == "untitled"
    assert stable_int64("a", 1) == stable_int64("a", 1) != stable_int64("a", 2)
    assert 0 <= stable_int64("x") < 2**63


def test_fingerprint_ignores_order() -> None:
    assert fingerprint(["b", "a"]) == fingerprint(["a", "b"]) == fingerprint(["a", "b"], presorted=True)
    assert fingerprint(["ab"]) != fingerprint(["a", "b"])


def test_decoding_korean_legacy_encodings_and_refusing_binary() -> None:
    text = "스케일링 법칙\r\n두 번째 줄"
    for enc in ("utf-8", "cp949", "euc-kr", "utf-8-sig"):
        assert decode_bytes(text.encode(enc)) == "스케일링 법칙\n두 번째 줄"
    with pytest.raises(ParseError, match="binary"):
        decode_bytes(b"\x00\x01\x02abc")


def test_reading_refuses_what_is_not_a_regular_file(tmp_path: Path) -> None:
    with pytest.raises(ParseError, match="cannot read"):
        read_text(tmp_path / "missing.txt")
    with pytest.raises(ParseError, match="directory"):
        read_text(tmp_path)
    fifo = tmp_path / "pipe.txt"
    os.mkfifo(fifo)
    with pytest.raises(ParseError, match="FIFO"):  # returns at once: opened non-blocking
        read_text(fifo)


def test_sentences_cut_at_terminal_punctuation_and_line_breaks() -> None:
    from digest_rag.build.chunking import split_sentences
    from digest_rag.text import SENTENCE_END

    text = "LoRA는 3.5배 빠르다. Really? 네！ 그렇다\n\n다음 줄입니다。끝"
    expected = ["LoRA는 3.5배 빠르다.", "Really?", "네！", "그렇다", "다음 줄입니다。끝"]
    assert [text[a:b] for a, b in split_sentences(text)] == expected  # the chunker's spans
    assert [s.strip() for s in SENTENCE_END.split(text)] == expected  # calibration's and training's cuts
    assert split_sentences("  \n ") == []


def test_hangul_parts() -> None:
    from digest_rag.text import hangul_parts

    assert hangul_parts("가") == (0, 0, 0) and hangul_parts("힣") == (18, 20, 27)
    assert hangul_parts("각") == (0, 0, 1) and hangul_parts("트") == (16, 18, 0)
    assert hangul_parts("a") is None and hangul_parts("ㄱ") is None and hangul_parts(chr(0xD7A4)) is None
