"""A test that cannot run here says what it needs (issue 22 item 11: four tests skipped silently without ../shared)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ML_PAPERS_TESTS = [
    "tests/evaluation/test_evaluate.py::test_ml_papers_relevant_ids_exist",
    "tests/parsing/test_notes_newer.py::test_ml_papers_no_word_is_lost",
    "tests/parsing/test_parsing.py::test_ml_papers_corpus",
    "tests/build/test_corpus_report.py::test_inspect_ml_papers",
]


def test_tests_of_the_shared_corpus_say_what_they_need(repo_root: Path, tmp_path: Path) -> None:
    env = {**os.environ, "DIGEST_RAG_ML_PAPERS": str(tmp_path / "no-corpus-here"), "HF_HUB_OFFLINE": "1"}
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", *ML_PAPERS_TESTS],
                         cwd=repo_root, env=env, capture_output=True, text=True, timeout=600)
    assert "4 skipped" in res.stdout, res.stdout[-2000:]
    reasons = [line for line in res.stdout.splitlines() if line.startswith("SKIPPED")]
    assert len(reasons) == 4, reasons
    for line in reasons:
        assert "needs the ml-papers corpus" in line and "../shared/corpora/ml-papers/papers" in line, line
        assert "DIGEST_RAG_ML_PAPERS" in line, line
