"""Property tests (hypothesis): parsers, decoding, chunker and query handling on arbitrary input.

Contract checked here: on any text, parsers raise nothing but ParseError, decoding nothing but
ParseError, the corpus walker nothing at all (bad files become skips; CorpusError in strict
mode), and search nothing but EmptyQueryError. The chunker covers every non-whitespace
character of every section and never produces a passage over the token limit.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from digest_rag import (
    ChunkerSettings,
    CorpusError,
    DigestIndex,
    EmptyQueryError,
    Paper,
    ParseError,
    QueryTruncatedWarning,
    Section,
)
from digest_rag.build.chunking import approx_token_count, chunk_paper, passage_text
from digest_rag.parsing import PARSERS, detect_format, parse_paths
from digest_rag.text import decode_bytes

ROOT = Path(__file__).resolve().parents[1]
MANY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SOME = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _seed_lines() -> list[str]:
    lines: list[str] = []
    for f in sorted((ROOT / "corpus").glob("*.txt")):
        lines += [ln for ln in f.read_text(encoding="utf-8").split("\n") if ln.strip()][:60]
    return lines


SEED_LINES = _seed_lines()
# Lines that steer the format scorers and parsers into their deeper branches.
SPECIAL_LINES = [
    "2024년 6월 28일", "2024/06/28", "# 제목", "## Abstract", "#llm #scaling-law", "#", "# ", "(", ")", "((a)",
    "https://arxiv.org/abs/2406.00001", "<https://arxiv.org/pdf/2401.1234v2>", "[링크](https://example.com)",
    "{\"title\": \"T\", \"abstract\": \"A\"}", "{\"title\": null}", "[1, 2]", "{", "1. Paper (Author)", "- key point",
    "---", "```", "Title (저자, Google (DeepMind))", "\u200b", "\x00", "\ufeff", "\ud7a3\u1100", "0000년 13월 40일",
]
LINE = st.one_of(
    st.sampled_from(SEED_LINES),
    st.sampled_from(SPECIAL_LINES),
    st.text(max_size=80),
    st.text(alphabet="가나다라마바사 abc.!?\n\t#()[]{}:,/-0123456789", max_size=80),
)
DIGEST_TEXT = st.one_of(st.text(max_size=2000), st.lists(LINE, max_size=40).map("\n".join))


# ---------------------------------------------------------------------------- decoding and parsing


@MANY
@given(st.binary(max_size=3000))
def test_decode_bytes_only_raises_parse_error(data: bytes) -> None:
    try:
        text = decode_bytes(data, "x.txt")
    except ParseError:
        return
    assert isinstance(text, str) and "\r" not in text


@MANY
@given(st.text(max_size=1500))
def test_utf8_and_cp949_round_trip(text: str) -> None:
    text = text.replace("\r", "").replace("\x00", "").lstrip("\ufeff")
    assert decode_bytes(text.encode("utf-8")) == text
    try:
        legacy = text.encode("cp949")
    except UnicodeEncodeError:
        return
    # CP949 bytes that happen to be valid UTF-8 are ASCII-only, where both decodings agree.
    assert decode_bytes(legacy) == text


@pytest.mark.parametrize("fmt", sorted(PARSERS))
@MANY
@given(text=DIGEST_TEXT)
def test_parsers_raise_only_parse_error(fmt: str, text: str) -> None:
    try:
        papers = PARSERS[fmt](text, f"x.{'jsonl' if fmt == 'jsonl' else 'txt'}")
    except ParseError:
        return
    for p in papers:
        assert isinstance(p, Paper) and p.id and p.title


@MANY
@given(text=DIGEST_TEXT, suffix=st.sampled_from([".txt", ".md", ".jsonl", ".markdown"]))
def test_detect_format_raises_only_parse_error(text: str, suffix: str) -> None:
    try:
        fmt = detect_format(text, "digest" + suffix)
    except ParseError:
        return
    assert fmt in PARSERS


@SOME
@given(
    files=st.lists(
        st.one_of(DIGEST_TEXT.map(lambda t: t.encode("utf-8")), st.binary(max_size=500),
                  DIGEST_TEXT.map(lambda t: t.encode("cp949", "replace"))),
        min_size=1, max_size=4,
    ),
    strict=st.booleans(),
)
def test_parse_paths_never_raises_on_bad_files(files: list[bytes], strict: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for i, data in enumerate(files):
            (Path(tmp) / f"f{i}{('.txt', '.md', '.jsonl')[i % 3]}").write_bytes(data)
        try:
            result = parse_paths([tmp], strict=strict)
        except CorpusError:
            assert strict
            return
    assert len(result.skipped) + len(result.files) == len(files)
    assert len({p.id for p in result.papers}) == len(result.papers)


# ---------------------------------------------------------------------------------------- chunker

SENTENCE_TEXT = st.one_of(
    st.text(max_size=1500),
    st.lists(st.one_of(st.sampled_from(SEED_LINES), st.text(max_size=300),
                       st.text(alphabet="가나다라마바사아자 abcdefghij.!? \n", max_size=400)),
             min_size=1, max_size=12).map(" ".join),
    # Unbroken runs (URLs, long Hangul words) force the character-level cuts.
    st.integers(1, 3000).map(lambda n: "가" * n),
    st.integers(1, 3000).map(lambda n: "https://example.com/" + "x" * n),
)
TITLE = st.one_of(
    st.sampled_from([ln[:120] for ln in SEED_LINES]),
    st.text(min_size=1, max_size=150),
    st.integers(1, 600).map(lambda n: "제목" * n),  # absurdly long Korean titles
)
CHUNKER = st.builds(
    ChunkerSettings,
    target_tokens=st.integers(16, 300),
    overlap_tokens=st.integers(0, 80),
    max_tokens=st.integers(32, 512),
    title_in_passage=st.booleans(),
    title_chunk=st.booleans(),
)


def _paper(title: str, texts: list[str]) -> Paper:
    sections = [Section(kind="body", language="mixed", text=t) for t in texts]
    return Paper(id="p", title=title, sections=sections, source="x.txt", format="notes")


def _check_chunks(paper: Paper, cfg: ChunkerSettings, count, prefix: str = "passage: ") -> None:  # noqa: ANN001
    chunks = chunk_paper(paper, cfg, count, prefix)
    assert len({c.id for c in chunks}) == len(chunks)
    for s_idx, section in enumerate(paper.sections):
        mine = [c for c in chunks if c.section_index == s_idx]
        covered = [False] * len(section.text)
        for c in mine:
            assert c.text == section.text[c.start : c.end] and c.text.strip()
            for i in range(c.start, c.end):
                covered[i] = True
        missing = [i for i, ch in enumerate(section.text) if not ch.isspace() and not covered[i]]
        assert not missing, (section.text[missing[0] : missing[0] + 20], cfg)
    # The chunker's own rule: below 16 tokens of room it drops an absurd title from the budget.
    title_budget_ok = count(prefix) + count(paper.display_title + "\n") + 6 + 16 <= cfg.max_tokens
    for c in chunks:
        assert count(c.text) <= cfg.max_tokens
        if title_budget_ok or not cfg.title_in_passage or c.section_kind == "title":
            full = prefix + passage_text(paper, c.text, cfg, c.section_kind)
            assert count(full) + 2 <= cfg.max_tokens, (len(full), cfg)


@MANY
@given(title=TITLE, texts=st.lists(SENTENCE_TEXT, min_size=1, max_size=3), cfg=CHUNKER)
def test_chunks_cover_sections_within_limit_approx(title: str, texts: list[str], cfg: ChunkerSettings) -> None:
    assume(title.strip() and all(t.strip() for t in texts))
    _check_chunks(_paper(title.strip(), texts), cfg, approx_token_count)


@SOME
@given(title=TITLE, texts=st.lists(SENTENCE_TEXT, min_size=1, max_size=2), cfg=CHUNKER)
def test_chunks_within_limit_real_tokenizer(tiny_encoder, title: str, texts: list[str], cfg: ChunkerSettings) -> None:  # noqa: ANN001
    assume(title.strip() and all(t.strip() for t in texts))
    _check_chunks(_paper(title.strip(), texts), cfg, tiny_encoder.count_tokens)


# ------------------------------------------------------------------------------------------ queries


@pytest.fixture(scope="module")
def lexical_index(tmp_path_factory: pytest.TempPathFactory, seed_corpus: Path):  # noqa: ANN201
    idx = DigestIndex.build([seed_corpus], index_dir=tmp_path_factory.mktemp("lex") / "ix", lexical_only=True)
    yield idx
    idx.close()


QUERY = st.one_of(
    st.text(max_size=300),
    st.lists(st.sampled_from(SEED_LINES + SPECIAL_LINES), min_size=1, max_size=3).map(" ".join),
    st.sampled_from(["'; DROP TABLE papers; --", "\" OR 1=1 --", "%", "_", "*", "🤖🔥 LLM 스케일링", "\x00\x01\x02"]),
)


@MANY
@given(query=QUERY, k=st.integers(1, 30))
def test_search_any_query(lexical_index: DigestIndex, query: str, k: int) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", QueryTruncatedWarning)
        try:
            hits = lexical_index.search(query, k=k, mode="lexical")
        except EmptyQueryError:
            assert not "".join(ch for ch in query if ch.isprintable()).strip()
            return
    assert len(hits) <= k
    assert len({h.paper.id for h in hits}) == len(hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert len(lexical_index.papers) == 29  # SQL-looking text never touches the store
