"""Every command in README.md runs as documented.

The fenced ```bash blocks are read in order; each `digest-rag ...` command in them (with a leading
`.venv/bin/` stripped, `&&` chains split) is run in-process against a scratch copy of `corpus/` and
`eval/`, offline (HF_HUB_OFFLINE=1, DIGEST_RAG_MODEL unset), so the default model is unavailable and
`build` falls back to a lexical-only index, exactly what a new user without the weights sees. A
command is expected to exit 0 unless its trailing comment says `exit N`. The venv and pip steps of
the two top commands are not run here: CI runs the test command itself (.ci/run), which installs
the package the same way the main-job command does. The ```python blocks run in order in the same
scratch directory, and the ```json JSON Lines example is parsed by the real parser.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from digest_rag.cli import app

FENCE = re.compile(r"^( *)```(\w+)\n(.*?)^\1```", re.S | re.M)
EXPECT = re.compile(r"#.*\bexit (\d)\b")


def _blocks(readme: str, lang: str) -> list[str]:
    out = []
    for m in FENCE.finditer(readme):
        if m.group(2) == lang:
            indent = len(m.group(1))
            out.append("\n".join(line[indent:] for line in m.group(3).splitlines()))
    return out


def _commands(block: str) -> list[tuple[list[str], int, str]]:
    """(argv after `digest-rag`, expected exit code, source line) for each digest-rag command of a block."""
    found = []
    for line in block.replace("\\\n", " ").splitlines():
        expected = int(m.group(1)) if (m := EXPECT.search(line)) else 0
        words = shlex.split(line, comments=True)
        # Split `a && b` chains; shlex keeps "&&" as its own word.
        parts: list[list[str]] = [[]]
        for w in words:
            if w == "&&":
                parts.append([])
            else:
                parts[-1].append(w)
        for part in parts:
            if part and part[0] in ("digest-rag", ".venv/bin/digest-rag"):
                found.append((part[1:], expected, line.strip()))
    return found


@pytest.fixture(scope="module")
def readme(repo_root: Path) -> str:
    return (repo_root / "README.md").read_text(encoding="utf-8")


@pytest.fixture()
def workspace(tmp_path: Path, repo_root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("corpus", "eval"):
        shutil.copytree(repo_root / name, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("DIGEST_RAG_MODEL", raising=False)
    return tmp_path


def test_top_commands_are_the_documented_ones(readme: str) -> None:
    bash = _blocks(readme, "bash")
    main_job = _commands(bash[0])
    assert [argv[0] for argv, _code, _line in main_job] == ["build", "search"]
    assert main_job[1][0][1] == "스케일링 법칙에 대한 논문을 찾아줘"
    assert bash[1].strip().endswith(".venv/bin/python -m pytest -q")  # the CI command (.ci/run runs it verbatim)


def test_readme_cli_commands_run(readme: str, workspace: Path) -> None:
    runner = CliRunner()
    commands = [c for block in _blocks(readme, "bash") for c in _commands(block)]
    assert len(commands) >= 12  # the tour, the examples and the offline-model block
    ran = set()
    for argv, expected, line in commands:
        res = runner.invoke(app, argv)
        assert res.exit_code == expected, f"{line}\nstdout: {res.stdout}\nstderr: {res.stderr}"
        if expected:
            assert res.stderr.startswith("error: ") and res.stderr.count("\n") == 1, line
        if "--json" in argv:
            json.loads(res.stdout)  # machine-clean: the whole stdout is JSON
        ran.add(argv[0])
        if argv[:2] == ["search", "스케일링 법칙에 대한 논문을 찾아줘"]:
            # What the new user of the acceptance test sees: a readable ranked list, not a dump.
            assert res.stdout.startswith(" 1. ") and " 2. " in res.stdout and "score " in res.stdout
            assert "\x1b[" not in res.stdout
    assert {"build", "search", "info", "update", "eval"} <= ran


@pytest.mark.filterwarnings("ignore::digest_rag.errors.ModelFallbackWarning")  # offline on purpose
def test_readme_python_snippets_run(readme: str, workspace: Path) -> None:
    namespace: dict[str, object] = {"__name__": "readme"}
    blocks = _blocks(readme, "python")
    assert blocks
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102 - our own documentation
    assert (workspace / "indexes" / "default" / "manifest.json").is_file()


def test_readme_jsonl_example_parses(readme: str, tmp_path: Path) -> None:
    from digest_rag.parsing import parse_file

    (example,) = _blocks(readme, "json")
    record = json.loads(" ".join(example.split("\n")))
    path = tmp_path / "one.jsonl"
    path.write_text(json.dumps(record, ensure_ascii=False) + "\n", encoding="utf-8")
    (paper,) = parse_file(path).papers
    assert paper.title == "Gemma 2" and paper.title_ko == "젬마 2" and paper.id == "2408.00118"
    assert {s.language for s in paper.sections} == {"en", "ko"}
