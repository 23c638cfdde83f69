"""CLI: in-process with typer's CliRunner and as a real subprocess; exit codes and one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from digest_rag.cli import app

HIT_KEYS = {"paper_id", "title", "title_ko", "date", "tags", "score", "snippet", "section", "language", "source", "modes"}


@pytest.fixture()
def runner() -> CliRunner:
    return CliRunner()


def _run(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "digest_rag.cli", *args], capture_output=True, text=True, env=full_env, cwd=cwd,
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
    env = {"DIGEST_RAG_MODEL": "unreachable-org/unreachable-model"}
    res = _run("search", "긴 컨텍스트를 악용하는 탈옥 공격", "--index", str(index), "--json", env=env)
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


def test_help_has_examples(runner: CliRunner) -> None:
    for cmd in ("build", "update", "search", "info", "eval"):
        res = runner.invoke(app, [cmd, "--help"])
        assert res.exit_code == 0 and "Example: digest-rag" in res.stdout
