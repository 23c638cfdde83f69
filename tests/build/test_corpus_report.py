"""`inspect_corpus` and `digest-rag inspect`: how a corpus is read, without building anything."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

import digest_rag
from digest_rag.frontends.cli import app
from digest_rag.build.corpus_report import CorpusReport, format_report, inspect_corpus
from digest_rag.parsing import parse_paths

NOTES = Path(__file__).resolve().parents[1] / "data" / "notes"


def test_inspect_seed_corpus_and_a_note_file(seed_corpus: Path, tmp_path: Path) -> None:
    bad = tmp_path / "broken.jsonl"
    bad.write_text('{"title": "x \\ud800"}\n', encoding="utf-8")
    two = NOTES / "250114 Two Papers.md"
    untitled = NOTES / "250116 Can Small Training Runs Reliably Guide Data Curation.md"
    report = inspect_corpus([seed_corpus, two, untitled, bad, tmp_path / "missing.md"])
    parsed = parse_paths([seed_corpus, two, untitled])
    assert report.files == len(parsed.files) and report.papers == len(parsed.papers)
    assert report.files_per_format == {"blog": 1, "daily": 2, "notes": 2, "weekly": 1}
    assert sum(report.files_per_format.values()) == report.files
    # Section counts are papers having such a section, so none exceeds the paper count.
    assert report.sections["commentary"]["en"] >= 2 and report.sections["abstract"]["en"] >= 4
    assert all(0 <= n <= report.papers for by_lang in report.sections.values() for n in by_lang.values())
    assert {r.title for r in report.title_from_filename} == {"Can Small Training Runs Reliably Guide Data Curation"}
    no_abs = {r.id for r in report.without_english_abstract}
    assert no_abs == {p.id for p in parsed.papers if not any((s.kind, s.language) == ("abstract", "en") for s in p.sections)}
    assert {r.id for r in report.missing_authors} == {p.id for p in parsed.papers if not p.authors}
    assert sorted(s.source for s in report.skipped) == sorted([str(bad), str(tmp_path / "missing.md")])
    assert len(report.largest) == 10 and report.largest == sorted(report.largest, key=lambda p: -p.chars)
    # File arguments get their papers and sections; the directory does not.
    details = {Path(f.source).name: f for f in report.file_details}
    assert set(details) == {two.name, untitled.name, bad.name}
    assert [p.title for p in details[two.name].papers][1] == "Second Paper? Dense Experts!"
    assert [(s.kind, s.language) for s in details[two.name].papers[1].sections] == [
        ("abstract", "en"), ("commentary", "ko"), ("commentary", "en")
    ]
    assert details[bad.name].skipped and "line 1" in details[bad.name].skipped
    text = format_report(report)
    assert "title from file name" in text and "Second Paper? Dense Experts!" in text and "broken.jsonl" in text


def test_inspect_previews_are_short_and_on_one_line() -> None:
    report = inspect_corpus(NOTES / "250112 Multi Paragraph Abstract.md")
    (detail,) = report.file_details
    previews = [s.preview for p in detail.papers for s in p.sections]
    assert previews[0] == "First paragraph of the abstract, with extra spaces. Second paragraph: it continues "[:80]
    assert all(len(p) <= 80 and "\n" not in p for p in previews)


def test_inspect_cli_json_and_table(seed_corpus: Path) -> None:
    runner = CliRunner()
    note = NOTES / "250113 English Commentary.md"
    res = runner.invoke(app, ["inspect", str(seed_corpus), str(note), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)  # one JSON document
    report = CorpusReport.model_validate(data)
    assert report == inspect_corpus([seed_corpus, note])
    english = "Gradient differences shrink when a detailed chain of thought is given. Interesting.\n\nA second English paragraph."
    assert data["file_details"][0]["papers"][0]["sections"][2] == {
        "kind": "commentary", "language": "en", "chars": len(english), "preview": " ".join(english.split())[:80],
    }
    table = runner.invoke(app, ["inspect", str(seed_corpus)])
    assert table.exit_code == 0 and f"papers                    {report.papers - 1}" in table.output
    assert "files per" not in table.output and "skipped files             0" in table.output


def test_inspect_is_public_api() -> None:
    assert "inspect_corpus" in digest_rag.__all__ and digest_rag.inspect_corpus is inspect_corpus


def test_inspect_ml_papers(ml_papers_dir: Path) -> None:
    report = inspect_corpus([ml_papers_dir])
    assert report.files_per_format == {"notes": report.files}
    assert report.papers + len(report.merged) == report.files
    assert len(report.skipped) + report.files == sum(1 for _ in ml_papers_dir.rglob("*.md"))
    assert len(report.title_from_filename) < report.papers // 5
