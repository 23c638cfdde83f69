"""The build's spool: papers streamed from the parser to disk, merged and skipped exactly as parse_paths does,
and a build that passes through memory a batch of papers at a time."""

from __future__ import annotations

import gc
import json
from pathlib import Path

import pytest

import digest_rag.build.spool as spool_mod
from digest_rag import DigestIndex
from digest_rag.lexical.builder import LexicalBuilder
from digest_rag.models import Paper
from digest_rag.parsing import iter_text, parse_paths
from digest_rag.build.spool import PaperSpool


def _jsonl(path: Path, n: int, start: int = 0, bad_at: int | None = None) -> Path:
    lines = []
    for i in range(start, start + n):
        lines.append("{not json" if i == bad_at else json.dumps(
            {"id": f"p{i:04d}", "title": f"Paper {i} on sparse attention", "date": "2024-05-01", "tags": ["LLM"],
             "abstract_en": f"We study sparse attention variant {i} for long documents."}))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_jsonl_records_come_one_at_a_time(tmp_path: Path) -> None:
    text = _jsonl(tmp_path / "a.jsonl", 5, bad_at=3).read_text()
    fmt, papers = iter_text(text, "a.jsonl")
    assert fmt == "jsonl"
    taken = [next(papers), next(papers), next(papers)]  # the records before the bad line, before it is read
    assert [p.id for p in taken] == ["p0000", "p0001", "p0002"]
    with pytest.raises(Exception, match="line 4: invalid JSON"):
        next(papers)


def test_spool_parses_like_parse_paths(tmp_path: Path, seed_corpus: Path) -> None:
    corpus = tmp_path / "c"
    corpus.mkdir()
    _jsonl(corpus / "a.jsonl", 30)
    _jsonl(corpus / "b.jsonl", 10, start=25)  # 5 ids again: merged into a.jsonl's papers
    _jsonl(corpus / "c.jsonl", 10, start=100, bad_at=108)  # skipped whole, though 8 records came first
    paths = [corpus, seed_corpus]
    expected = parse_paths(paths)
    with PaperSpool() as spool:
        spool.parse_paths(paths)
        got = {p.id: p for batch in spool.batches(7) for p, _js in batch}
        assert list(got) == sorted(p.id for p in expected.papers)
        assert got == {p.id: p for p in expected.papers}
        assert spool.merged == expected.merged and len(spool.merged) == 5
        assert spool.skipped == expected.skipped and "c.jsonl" in spool.skipped[0].source
        assert spool.files == expected.files


def test_build_holds_a_batch_of_papers_not_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Papers pass through the chunker and BM25 a batch at a time: live Paper objects stay near the batch size."""
    monkeypatch.setattr(spool_mod, "SPOOL_BATCH", 10)
    corpus = _jsonl(tmp_path / "many.jsonl", 120)
    live: list[int] = []
    real_add = LexicalBuilder.add

    def papers_alive() -> int:
        gc.collect()
        return sum(1 for o in gc.get_objects() if isinstance(o, Paper))

    before = papers_alive()  # other tests' fixtures may hold papers of their own

    def counting_add(self: LexicalBuilder, chunks: list, papers: dict) -> None:
        live.append(papers_alive() - before)
        assert len(papers) <= 10
        real_add(self, chunks, papers)

    monkeypatch.setattr(LexicalBuilder, "add", counting_add)
    idx = DigestIndex.build([corpus], index_dir=tmp_path / "ix", lexical_only=True)
    try:
        assert idx.manifest.paper_count == 120 and len(live) == 12
        assert max(live) <= 30, live  # a batch (and a few the caller still references), never all 120
        assert [h.paper.id for h in idx.search("sparse attention variant 117", k=1, mode="lexical")] == ["p0117"]
    finally:
        idx.close()
