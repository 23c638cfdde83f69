"""CLI: in-process with typer's CliRunner and as a real subprocess; exit codes and one-line errors."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from digest_rag.frontends.cli import app

HIT_KEYS = {"paper_id", "title", "title_ko", "date", "tags", "score", "snippet", "section", "language", "source", "modes"}


@pytest.fixture()
def runner() -> CliRunner:
    return CliRunner()


def _run(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "digest_rag.frontends.cli", *args], capture_output=True, text=True, env=full_env, cwd=cwd,
        timeout=300,
    )


def test_search_json(runner: CliRunner, seed_index_dir: Path) -> None:
    res = runner.invoke(app, ["search", "긴 컨텍스트를 악용하는 탈옥 공격", "--index", str(seed_index_dir),
                              "--mode", "lexical", "-k", "3", "--json"])
    assert res.exit_code == 0, res.output
    hits = json.loads(res.stdout)
    assert len(hits) == 3 and HIT_KEYS <= set(hits[0])
    assert hits[0]["title"] == "Many-shot Jailbreaking" and hits[0]["modes"] == ["lexical"]


def test_search_text(runner: CliRunner, seed_index_dir: Path) -> None:
    res = runner.invoke(app, ["search", "Gemma 2 지식 증류", "--index", str(seed_index_dir), "-k", "2"])
    assert res.exit_code == 0, res.output
    assert " 1. " in res.stdout and "score" in res.stdout


def test_info_json_lists_seed_papers(runner: CliRunner, seed_index_dir: Path) -> None:
    res = runner.invoke(app, ["info", "--index", str(seed_index_dir), "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)
    assert info["papers"] == 29 and len(info["paper_list"]) == 29
    langs = {s["language"] for p in info["paper_list"] for s in p["sections"]}
    assert {"ko", "en"} <= langs
    assert all(p["sections"] for p in info["paper_list"])


def test_info_text(runner: CliRunner, seed_index_dir: Path) -> None:
    res = runner.invoke(app, ["info", "--index", str(seed_index_dir)])
    assert res.exit_code == 0 and "papers      29" in res.stdout
    # Exact index: no search parameter to show; the encoder backend is shown.
    assert "FAISS IDMap2,Flat, built with torch)" in res.stdout and "search param" not in res.stdout
    assert re.search(r"^loanwords   \d+ English words a Hangul loanword may spell \(rules 1\)$", res.stdout, re.M)
    data = json.loads(runner.invoke(app, ["info", "--index", str(seed_index_dir), "--json"]).stdout)
    assert data["loanwords"]["rules"] == "1" and data["loanwords"]["candidates"] > 0
    # The word table: its corpus words and their question forms (lexical/verb_forms.py).
    assert data["word_forms"] > 0
    assert re.search(rf"^words       {data['word_forms']} Korean word forms read without Kiwi ", res.stdout, re.M)


def test_exit_codes(runner: CliRunner, seed_index_dir: Path, tmp_path: Path) -> None:
    res = runner.invoke(app, ["search", "   ", "--index", str(seed_index_dir)])
    assert res.exit_code == 1 and res.stderr.startswith("error: ") and res.stderr.count("\n") == 1
    res = runner.invoke(app, ["search", "x", "--index", str(tmp_path / "missing")])
    assert res.exit_code == 2 and "no such index directory" in res.stderr
    res = runner.invoke(app, ["search", "x", "--index", str(seed_index_dir), "--mode", "dense", "--model", str(tmp_path / "nope")])
    assert res.exit_code == 3 and "DIGEST_RAG_MODEL" in res.stderr and res.stderr.count("\n") == 1


def test_subprocess_build_search_and_missing_model(tmp_path: Path, seed_corpus: Path, tiny_model: Path) -> None:
    index = tmp_path / "ix"
    res = _run("build", str(seed_corpus), "--index", str(index), "--model", str(tiny_model), "--quiet")
    assert res.returncode == 0, res.stderr
    assert "indexed 29 papers" in res.stdout
    res = _run("search", "긴 컨텍스트를 악용하는 탈옥 공격", "--index", str(index), "--mode", "lexical", "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)[0]["title"] == "Many-shot Jailbreaking"
    # An unreachable model: hybrid answers from BM25 with exactly one warning line; dense fails cleanly.
    # (The random model's index calibrated its dense weight to 0, so plain hybrid needs no model at all and
    # says nothing; weights that fuse the dense side make it reach for the model.)
    env = {"DIGEST_RAG_MODEL": "unreachable-org/unreachable-model"}
    res = _run("search", "긴 컨텍스트를 악용하는 탈옥 공격", "--index", str(index), "--json", env=env)
    assert res.returncode == 0 and not res.stderr.strip(), res.stderr
    assert json.loads(res.stdout)[0]["modes"] == ["lexical"]
    res = _run("search", "긴 컨텍스트를 악용하는 탈옥 공격", "--index", str(index), "--json", "--fusion-weights", "1:1",
               env=env)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)[0]["modes"] == ["lexical"]
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("warning: ") and "unreachable-org/unreachable-model" in lines[0]
    res = _run("search", "x", "--index", str(index), "--mode", "dense", env=env)
    assert res.returncode == 3 and "Traceback" not in res.stderr
    assert res.stderr.startswith("error: embedding model 'unreachable-org/unreachable-model' is not available")


def test_subprocess_build_with_missing_explicit_model(tmp_path: Path, seed_corpus: Path) -> None:
    res = _run("build", str(seed_corpus), "--index", str(tmp_path / "ix"), "--model", str(tmp_path / "no-model"))
    assert res.returncode == 3 and "Traceback" not in res.stderr
    assert not (tmp_path / "ix" / "manifest.json").exists()


def test_eval_command(runner: CliRunner, seed_index_dir: Path, repo_root: Path) -> None:
    res = runner.invoke(app, ["eval", str(repo_root / "eval" / "dev_queries.jsonl"), "--index", str(seed_index_dir)])
    assert res.exit_code == 0, res.output
    for name in ("lexical", "dense", "hybrid", "naive-bm25", "R@1", "MRR@10", "nDCG@10"):
        assert name in res.stdout


def test_help_writes_values_as_the_readme_does(runner: CliRunner) -> None:
    """Issue 22 item 9: --help showed {query}, <list[str]> and <list[hybrid|dense|lexical]>."""
    import re

    import typer

    for name in typer.main.get_command(app).commands:
        out = runner.invoke(app, [name, "--help"]).stdout
        usage = out.splitlines()[0]
        assert "{" not in usage and "<" not in usage, usage
        odd = re.findall(r"<[a-z][^>]*>|list\[", out)
        assert not odd, (name, odd)
    out = runner.invoke(app, ["search", "--help"]).stdout
    assert "QUERY" in out.splitlines()[0] and "--mode hybrid|dense|lexical" in out and "--tag TAG" in out
    assert "--from DATE" in out and "-k, --top-k N" in out


def test_reversed_or_bad_dates_are_usage_errors_naming_the_options(runner: CliRunner, seed_index_dir: Path) -> None:
    """Issue 22 item 8: a range ending before it starts answered "no matching papers" with exit 0, and a bad
    date was reported as date_from, a name the command line does not have."""
    from digest_rag import DigestIndex
    from digest_rag.errors import UsageError

    args = ["search", "x", "--index", str(seed_index_dir)]
    res = runner.invoke(app, [*args, "--from", "2024-06-01", "--to", "2024-01-01"])
    assert res.exit_code == 1 and res.stdout == ""
    assert res.stderr == "error: --from 2024-06-01 is after --to 2024-01-01: no paper can match; swap them\n"
    res = runner.invoke(app, [*args, "--from", "2024-13-01"])
    assert res.exit_code == 1 and res.stderr.startswith("error: --from must be a date") and "date_from" not in res.stderr
    with DigestIndex.load(seed_index_dir) as idx, pytest.raises(UsageError, match="is after"):
        idx.search("x", mode="lexical", date_from="2024-06-01", date_to="2024-01-01")


def test_a_year_or_a_month_filters_by_period(runner: CliRunner, seed_index_dir: Path) -> None:
    """`--from 2022` was refused ("must be a date like 2024-06-28"); a year or a month now names its period."""
    args = ["search", "language model", "--index", str(seed_index_dir), "--mode", "lexical", "--json"]
    whole = runner.invoke(app, [*args, "--from", "2024-01-01", "--to", "2024-12-31"])
    year = runner.invoke(app, [*args, "--from", "2024", "--to", "2024"])
    assert year.exit_code == 0 and json.loads(year.stdout) == json.loads(whole.stdout)
    months = runner.invoke(app, [*args, "--from", "2024-06", "--to", "2024-06"])
    dated = [h["date"] for h in json.loads(months.stdout)]
    assert dated and all(d.startswith("2024-06") for d in dated)
    res = runner.invoke(app, [*args, "--to", "2024-13"])
    assert res.exit_code == 1 and "a month like 2024-06 or a year like 2024" in res.stderr


def test_help_has_examples(runner: CliRunner) -> None:
    for cmd in ("build", "update", "search", "info", "eval"):
        res = runner.invoke(app, [cmd, "--help"])
        assert res.exit_code == 0 and "Example: digest-rag" in res.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["search", "x", "--bogus"],  # unknown option
        ["search"],  # missing argument
        ["search", "x", "--mode", "semantic"],  # unknown --mode value
        ["search", "x", "--lang", "de"],  # unknown --lang value
        ["search", "x", "-k", "0"],  # out of range
        ["serch", "x"],  # unknown command
        ["build", "--backend", "tensorflow"],
        ["eval", "q.jsonl", "--mode", "semantic"],
    ],
)
def test_usage_errors_exit_1_with_one_line(runner: CliRunner, args: list[str]) -> None:
    res = runner.invoke(app, args)
    assert res.exit_code == 1, (res.stdout, res.stderr)
    assert res.stderr.startswith("error: ") and res.stderr.count("\n") == 1 and "--help" in res.stderr
    assert res.stdout == ""


def test_usage_error_exit_code_through_console_entry_point() -> None:
    # The real process path (run() -> sys.exit), not only the in-process runner.
    res = _run("search", "x", "--mode", "semantic")
    assert res.returncode == 1 and res.stderr.count("\n") == 1
    assert "'semantic' is not one of 'hybrid', 'dense', 'lexical'" in res.stderr


def test_no_arguments_prints_help(runner: CliRunner) -> None:
    res = runner.invoke(app, [])
    assert res.exit_code == 0 and "Exit codes: 0 ok, 1 usage" in res.stdout and "search" in res.stdout


def test_console_script_installed() -> None:
    script = Path(sys.executable).with_name("digest-rag")
    if not script.exists():
        pytest.skip(f"no console script beside {sys.executable} (not a venv install)")
    res = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.startswith("digest-rag ")


def test_search_text_is_readable_and_plain_when_piped(runner: CliRunner, seed_index_dir: Path) -> None:
    res = runner.invoke(app, ["search", "긴 컨텍스트를 악용하는 탈옥 공격", "--index", str(seed_index_dir),
                              "--mode", "lexical", "-k", "3"])
    assert res.exit_code == 0, res.output
    first = res.stdout.split("\n\n")[0].splitlines()
    assert first[0] == " 1. Many-shot Jailbreaking" and first[1].strip() == "다발성 탈옥"
    assert first[2].strip().startswith("2024-04-01") and "score " in first[2]
    assert first[3].strip().startswith("[") and "\x1b[" not in res.stdout  # not a terminal: no ANSI codes
    assert res.stdout.count("\n\n") == 2  # three papers, a blank line between them


def test_search_color_highlights_query_terms(runner: CliRunner, seed_index_dir: Path) -> None:
    res = runner.invoke(app, ["search", "긴 컨텍스트를 악용하는 탈옥 공격", "--index", str(seed_index_dir),
                              "--mode", "lexical", "-k", "1", "--color"])
    assert res.exit_code == 0, res.output
    assert "\x1b[1;33m컨텍스트\x1b[0m" in res.stdout  # the particle 를/가 stays outside the mark


def test_search_param_flag(runner: CliRunner, seed_index_dir: Path) -> None:
    args = ["search", "Gemma 2 지식 증류", "--index", str(seed_index_dir), "--mode", "dense", "-k", "2", "--json"]
    res = runner.invoke(app, [*args, "--search-param", "64"])
    assert res.exit_code == 0, res.output
    assert len(json.loads(res.stdout)) == 2
    res = runner.invoke(app, [*args, "--search-param", "0"])
    assert res.exit_code == 1


def test_progress_bars_only_on_a_terminal(runner: CliRunner, seed_corpus: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    from digest_rag.frontends.cli_output import ProgressBars
    from digest_rag.parsing import parse_paths

    # Not a terminal (the runner's stderr): the build prints its summary and no bar.
    res = runner.invoke(app, ["build", str(seed_corpus), "--index", str(tmp_path / "ix"), "--lexical-only"])
    assert res.exit_code == 0, res.output
    assert "%|" not in res.stderr and "indexed 29 papers" in res.stdout
    # The bars themselves: one per stage, with counts and units, fed by the library's callbacks.
    calls: list[tuple[str, int, int]] = []
    parse_paths([seed_corpus], progress=lambda *a: calls.append(a))
    assert calls[0] == ("parsing", 0, 4) and calls[-1] == ("parsing", 4, 4)
    bars = ProgressBars()
    for stage, done, total in [*calls, ("encoding", 0, 300), ("encoding", 256, 300), ("encoding", 300, 300)]:
        bars(stage, done, total)
    bars.close()
    err = capsys.readouterr().err
    assert "parsing" in err and "4/4" in err and "file" in err
    assert "encoding" in err and "300/300" in err and "passage" in err


def test_build_twice_says_up_to_date_and_force_rebuilds(runner: CliRunner, seed_corpus: Path, tmp_path: Path) -> None:
    args = ["build", str(seed_corpus), "--index", str(tmp_path / "ix"), "--lexical-only"]
    assert runner.invoke(app, args).exit_code == 0
    res = runner.invoke(app, args)
    assert res.exit_code == 0 and res.stdout.startswith("up to date: 29 papers") and "--force" in res.stdout
    res = runner.invoke(app, [*args, "--json"])
    assert json.loads(res.stdout)["up_to_date"] is True
    res = runner.invoke(app, [*args, "--force"])
    assert res.exit_code == 0 and res.stdout.startswith("indexed 29 papers")


def test_lexical_search_process_never_imports_torch(seed_index_dir: Path, tmp_path: Path) -> None:
    # A lexical question needs Kiwi, BM25 and SQLite only; torch/sentence-transformers cost seconds of start-up.
    from digest_rag.testing import cli_heavy_imports

    res, heavy = cli_heavy_imports(["search", "긴 컨텍스트를 악용하는 탈옥 공격", "--index", str(seed_index_dir),
                                    "--mode", "lexical", "-k", "3", "--json"], tmp_path)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)[0]["title"] == "Many-shot Jailbreaking"
    assert heavy == []


def test_lexical_search_in_the_corpus_words_never_starts_kiwi(seed_index_dir: Path, tmp_path: Path) -> None:
    # Every word of this question is written so in the seeds: the index's table of Kiwi's readings
    # (digest_rag.lexical.word_table) answers it, and Kiwi (a second and ~500 MB to start) is never imported.
    from digest_rag import DigestIndex
    from digest_rag.testing import cli_heavy_imports

    query = "매우 긴 컨텍스트에서는 탈옥 공격"
    res, kiwi = cli_heavy_imports(["search", query, "--index", str(seed_index_dir), "--mode", "lexical", "-k", "3",
                                   "--json"], tmp_path, modules=["kiwipiepy"])
    assert res.returncode == 0, res.stderr
    assert kiwi == []
    records = json.loads(res.stdout)
    assert records[0]["title"] == "Many-shot Jailbreaking"
    # The same hits, scores and snippets as when Kiwi analyses the question.
    idx = DigestIndex.load(seed_index_dir)
    try:
        assert idx.lexical is not None and idx.lexical.eojeols is not None
        idx.lexical.eojeols = None
        hits = idx.search(query, k=3, mode="lexical").to_records()
    finally:
        idx.close()
    assert [(r["title"], r["snippet"]) for r in records] == [(r["title"], r["snippet"]) for r in hits]
    # Scores are float32 sums: the CLI process may add a term in another order and land one float32 step away
    # (11.2487574 vs 11.2487564), which rounding to 6 decimals can split; within 1e-6 relative is "the same".
    assert [r["score"] for r in records] == pytest.approx([r["score"] for r in hits], rel=1e-6)


def test_lexical_search_with_an_unknown_word_falls_back_to_kiwi(seed_index_dir: Path, tmp_path: Path) -> None:
    from digest_rag.testing import cli_heavy_imports

    res, kiwi = cli_heavy_imports(["search", "긴 컨텍스트를 뷁쉛는 탈옥 공격", "--index", str(seed_index_dir),
                                   "--mode", "lexical", "-k", "3", "--json"], tmp_path, modules=["kiwipiepy"])
    assert res.returncode == 0, res.stderr
    assert kiwi and json.loads(res.stdout)[0]["title"] == "Many-shot Jailbreaking"


def test_eval_fusion_weight_sweep(runner: CliRunner, seed_index_dir: Path, repo_root: Path) -> None:
    res = runner.invoke(app, ["eval", str(repo_root / "eval" / "dev_queries.jsonl"), "--index", str(seed_index_dir),
                              "--mode", "lexical", "--fusion-weights", "0:1", "--fusion-weights", "dense=1,lexical=0.5"])
    assert res.exit_code == 0, res.output
    rows = {line.split("  ")[0].strip(): line for line in res.output.splitlines()}
    assert "hybrid d=0,l=1" in rows and "hybrid d=1,l=0.5" in rows
    # Dense weighted 0: hybrid ranks papers as lexical does.
    assert rows["hybrid d=0,l=1"].split()[3:] == rows["lexical"].split()[2:]
    bad = runner.invoke(app, ["eval", "q.jsonl", "--index", str(seed_index_dir), "--fusion-weights", "sparse=1"])
    assert bad.exit_code == 1 and len(bad.output.strip().splitlines()) == 1


def test_subprocess_fallback_index_is_up_to_date_without_torch(tmp_path: Path, seed_corpus: Path) -> None:
    """Issue 22 item 1: the README's main command without the weights builds a lexical-only fallback; the next
    `build` (and `--dry-run`) is up to date: no warning, no new generation, no torch or sentence-transformers."""
    env = {"HF_HUB_CACHE": str(tmp_path / "empty-hub")}
    index = tmp_path / "ix"
    res = _run("build", str(seed_corpus), "--index", str(index), "-q", env=env)
    assert res.returncode == 0 and "[lexical-only]" in res.stdout and res.stderr.startswith("warning: "), res.stderr
    gens = sorted(p.name for p in index.glob("gen-*"))
    for extra in ([], ["--dry-run"]):
        res = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "digest_rag.frontends.cli", "build", str(seed_corpus),
             "--index", str(index), *extra],
            capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1", **env}, timeout=300,
        )
        assert res.returncode == 0, res.stderr
        assert "up to date" in res.stdout and res.stdout.count("\n") == 1
        imported = {line.rsplit("|", 1)[-1].strip() for line in res.stderr.splitlines() if line.startswith("import time:")}
        assert not {"torch", "sentence_transformers", "transformers"} & imported
        assert not [ln for ln in res.stderr.splitlines() if not ln.startswith("import time:")]  # no warning
    assert sorted(p.name for p in index.glob("gen-*")) == gens


def test_info_text_lists_at_most_ten_sources(runner: CliRunner, seed_index_dir: Path) -> None:
    """Issue 22 item 2: one line per source file made `info` 1,617 lines long on ml-papers; --json keeps them all."""
    from digest_rag import DigestIndex
    from digest_rag.frontends.cli_output import format_info

    with DigestIndex.load(seed_index_dir) as idx:
        data = idx.info()
    data["sources"] = {f"notes/{i:04d}.md": 1 + i % 3 for i in range(1617)}
    text = format_info(data)
    assert len(text.splitlines()) <= 40
    assert "1607 more" in text and "--json lists all" in text and "notes/0002.md" in text  # most papers first
    data["sources"] = {"a.md": 1, "b.md": 2}
    assert "   1 paper   a.md" in format_info(data) and "   2 papers  b.md" in format_info(data)


def test_missing_path_is_exit_2_and_one_line(runner: CliRunner, seed_index_dir: Path, tmp_path: Path) -> None:
    """Issue 22 item 3: `update corpus/nope.txt` (a typo) exited 0 after "skipped 1 file(s)"."""
    nope = str(tmp_path / "nope.txt")
    for args in (["update", nope, "--index", str(tmp_path / "ix")], ["build", nope, "--index", str(tmp_path / "ix")],
                 ["build", nope, "--index", str(tmp_path / "ix"), "--dry-run"], ["inspect", nope]):
        res = runner.invoke(app, args)
        assert res.exit_code == 2, (args, res.output)
        assert res.stderr == f"error: no such file or directory: {nope}\n" and res.stdout == ""
    assert not (tmp_path / "ix").exists()


JAILBREAK_ID = "many-shot-jailbreaking-2024-04-01"


def test_show_prints_a_paper_whole_and_as_json(runner: CliRunner, seed_lexical_index_dir: Path) -> None:
    res = runner.invoke(app, ["show", JAILBREAK_ID, "--index", str(seed_lexical_index_dir)])
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert lines[:2] == ["Many-shot Jailbreaking", "다발성 탈옥"] and f"id {JAILBREAK_ID}" in lines[2]
    assert "[summary, ko]" in res.stdout
    js = runner.invoke(app, ["show", JAILBREAK_ID, "--index", str(seed_lexical_index_dir), "--json"])
    paper = json.loads(js.stdout)
    assert paper["paper_id"] == JAILBREAK_ID and {s["language"] for s in paper["sections"]} == {"ko", "en"}


def test_show_and_similar_of_an_unknown_id_exit_2_in_one_line(runner: CliRunner, seed_lexical_index_dir: Path) -> None:
    for cmd in ("show", "similar"):
        res = runner.invoke(app, [cmd, "no-such-paper", "--index", str(seed_lexical_index_dir)])
        assert res.exit_code == 2, res.output
        assert res.stderr.startswith("error: no paper with id 'no-such-paper'") and res.stderr.count("\n") == 1
        assert res.stdout == ""


def test_similar_lists_neighbours_without_the_paper(runner: CliRunner, seed_lexical_index_dir: Path) -> None:
    res = runner.invoke(app, ["similar", JAILBREAK_ID, "--index", str(seed_lexical_index_dir), "-k", "3", "--json"])
    assert res.exit_code == 0, res.output
    hits = json.loads(res.stdout)
    assert len(hits) == 3 and JAILBREAK_ID not in {h["paper_id"] for h in hits}
    text = runner.invoke(app, ["similar", JAILBREAK_ID, "--index", str(seed_lexical_index_dir), "-k", "2",
                               "--offset", "2"])
    assert text.exit_code == 0 and text.stdout.startswith(" 3. ") and " 4. " in text.stdout
    assert hits[2]["title"] in text.stdout.splitlines()[0]


def test_search_offset_numbers_the_next_page(runner: CliRunner, seed_lexical_index_dir: Path) -> None:
    args = ["search", "긴 컨텍스트를 악용하는 탈옥 공격", "--index", str(seed_lexical_index_dir), "--json"]
    first = json.loads(runner.invoke(app, [*args, "-k", "4"]).stdout)
    second = json.loads(runner.invoke(app, [*args, "-k", "2", "--offset", "2"]).stdout)
    assert [(h["rank"], h["paper_id"]) for h in second] == [(h["rank"], h["paper_id"]) for h in first[2:]]
    bad = runner.invoke(app, [*args, "--offset", "-1"])
    assert bad.exit_code == 1 and bad.stderr.count("\n") == 1


def test_remove_and_update_prune(runner: CliRunner, tmp_path: Path, corpus: Path) -> None:
    ix = str(tmp_path / "ix")
    assert runner.invoke(app, ["build", str(corpus), "--index", ix, "--lexical-only", "-q"]).exit_code == 0
    daily = str(corpus / "2024-06-28-daily-digest.txt")
    res = runner.invoke(app, ["remove", daily, "--index", ix])
    assert res.exit_code == 0, res.output
    assert res.stdout.startswith("removed ") and "  - " in res.stdout
    again = runner.invoke(app, ["remove", daily, "--index", ix])  # nothing of it is left
    assert again.exit_code == 2 and again.stderr.startswith("error: no paper in the index comes from")
    (corpus / "2024-02-13-daily-digest.txt").unlink()
    pruned = runner.invoke(app, ["update", "--prune", "--index", ix, "--json"])
    assert pruned.exit_code == 0, pruned.output
    report = json.loads(pruned.stdout)
    assert report["removed"] and not report["added"]
    info = json.loads(runner.invoke(app, ["info", "--index", ix, "--json"]).stdout)
    assert sorted(Path(s).name for s in info["sources"]) == ["2024-04-22-blog-llama-introduction.txt",
                                                              "2024-04-weekly-top-papers-roundup.txt"]
    none = runner.invoke(app, ["update", "--index", ix])
    assert none.exit_code == 1 and "--prune" in none.stderr and none.stderr.count("\n") == 1


def test_model_list_and_fetch_offline(runner: CliRunner, tmp_path: Path, tiny_model: Path) -> None:
    import shutil

    local = tmp_path / "models"
    shutil.copytree(tiny_model, local / "tiny")
    res = runner.invoke(app, ["model", "list", str(local), "--hf-cache", str(tmp_path / "no-cache"), "--json"])
    assert res.exit_code == 0, res.output
    (entry,) = json.loads(res.stdout)
    assert entry["where"] == "local" and entry["path"] == str(local / "tiny") and entry["dimension"]
    text = runner.invoke(app, ["model", "list", str(local), "--hf-cache", str(tmp_path / "no-cache")])
    assert text.stdout.startswith(f"{local / 'tiny'}  [local] dimension ")
    # Offline (the tests' HF_HUB_OFFLINE=1) and not cached: exit 3, one line that says what to do.
    fetch = runner.invoke(app, ["model", "fetch", "intfloat/no-such-model-for-tests"])
    assert fetch.exit_code == 3, fetch.output
    assert fetch.stderr.startswith("error: cannot fetch model intfloat/no-such-model-for-tests: HF_HUB_OFFLINE")
    assert fetch.stderr.count("\n") == 1
    path = runner.invoke(app, ["model", "fetch", str(local / "tiny")])
    assert path.exit_code == 1 and "local path" in path.stderr
