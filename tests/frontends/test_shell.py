"""`digest-rag shell`: the command logic in-process, and the real program through a pseudo-terminal."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from digest_rag.frontends.cli import app
from digest_rag.frontends.live import LiveIndex
from digest_rag.frontends.shell import HELP, Shell

JAILBREAK = "긴 컨텍스트를 악용하는 탈옥 공격"


@pytest.fixture()
def shell(seed_lexical_index_dir: Path) -> Iterator[Shell]:
    with LiveIndex(seed_lexical_index_dir, interval=0) as live:
        yield Shell(live, width=100)


def test_questions_print_like_search(shell: Shell, seed_lexical_index_dir: Path) -> None:
    out = shell.handle(JAILBREAK)
    res = CliRunner().invoke(app, ["search", JAILBREAK, "--index", str(seed_lexical_index_dir), "--no-color"])
    assert out.startswith(" 1. Many-shot Jailbreaking") and out == res.stdout.rstrip("\n")


def test_settings_change_the_search(shell: Shell) -> None:
    assert shell.handle(":mode lexical").startswith("mode lexical · k 10")
    assert "k 3" in shell.handle(":k 3")
    assert "lang en" in shell.handle(":lang en")
    assert "from 2024-06-01" in shell.handle(":from 2024-06-01")
    out = shell.handle("long context")
    assert " 1. " in out and " 4. " not in out
    assert shell.last and all(h.paper.date and h.paper.date.isoformat() >= "2024-06-01" and h.language == "en"
                              for h in shell.last)
    assert "tags #llm #rlhf" in shell.handle(":tag llm #rlhf")
    assert "from - · to - · tags -" in shell.handle(":from -") + shell.handle(":tag -")
    assert "lang any" in shell.handle(":lang any")


@pytest.mark.parametrize("line", [":mode semantic", ":k 0", ":k 1000", ":k x", ":lang fr", ":from 2024-13-01",
                                  ":to yesterday", ":open 1", ":bogus", ":k", "   :mode"])
def test_bad_lines_are_one_error_line(shell: Shell, line: str) -> None:
    before = shell.options
    out = shell.handle(line)
    assert out.startswith("error: ") and "\n" not in out
    assert shell.options == before  # nothing changed


def test_lexical_only_index_starts_lexical_and_refuses_vector_modes(shell: Shell) -> None:
    """Issue 22 item 8: the shell started in hybrid on a lexical-only index and took `:mode dense`, failing
    only at the next question; a date range ending before it starts was accepted."""
    assert shell.options.mode == "lexical" and shell._settings([]).startswith("mode lexical")
    for mode in ("dense", "hybrid"):
        out = shell.handle(f":mode {mode}")
        assert out.startswith("error: ") and "lexical-only" in out and "\n" not in out
    assert shell.options.mode == "lexical"
    assert "from 2024-06-01" in shell.handle(":from 2024-06-01")
    out = shell.handle(":to 2024-01-01")
    assert out.startswith("error: ") and "is after" in out and shell.options.date_to is None


def test_index_with_a_model_starts_hybrid(seed_index_dir: Path) -> None:
    with LiveIndex(seed_index_dir, interval=0, warm_up=False) as live:
        shell = Shell(live)
        assert shell.options.mode == "hybrid" and shell.handle(":mode dense").startswith("mode dense")


def test_open_prints_the_whole_paper(shell: Shell) -> None:
    shell.handle(JAILBREAK)
    paper = shell.last[0].paper
    out = shell.handle(":open 1")
    assert out.startswith("Many-shot Jailbreaking\n다발성 탈옥\n")
    flat = " ".join(out.split())
    assert all(" ".join(s.text.split()) in flat for s in paper.sections)  # every section, whole
    assert shell.handle(":open 99").startswith("error: ")


def test_help_quit_and_empty_lines(shell: Shell) -> None:
    assert shell.handle(":help") == HELP and shell.handle("") == ""
    assert shell.handle("   ").strip() == "" and not shell.done
    shell.handle(":quit")
    assert shell.done


def test_piped_input(seed_lexical_index_dir: Path) -> None:
    res = CliRunner().invoke(app, ["shell", "--index", str(seed_lexical_index_dir)],
                             input=f":k 1\n{JAILBREAK}\n:open 1\n:quit\nnot asked\n")
    assert res.exit_code == 0, res.output
    assert res.stdout.count(" 1. ") == 1 and "Many-shot Jailbreaking" in res.stdout and "[abstract, en]" in res.stdout
    missing = CliRunner().invoke(app, ["shell", "--index", "nowhere"], input=":quit\n")
    assert missing.exit_code == 2 and missing.stderr.startswith("error: ")


def test_shell_in_a_pseudo_terminal(seed_lexical_index_dir: Path, tmp_path: Path) -> None:
    """The real program on a terminal (prompt_toolkit): Korean input, a setting change, :open, history on disk."""
    pexpect = pytest.importorskip("pexpect", reason="pexpect is not installed")
    env = {**os.environ, "PROMPT_TOOLKIT_NO_CPR": "1", "TERM": "xterm", "NO_COLOR": "1", "HF_HUB_OFFLINE": "1",
           "DIGEST_RAG_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    child = pexpect.spawn(sys.executable, ["-m", "digest_rag.frontends.cli", "shell", "--index", str(seed_lexical_index_dir)],
                          env=env, encoding="utf-8", timeout=120, dimensions=(40, 110))
    try:
        child.expect("digest-rag>")
        child.sendline(JAILBREAK)
        child.expect(r" 1\. Many-shot Jailbreaking")
        child.expect("digest-rag>")
        child.sendline(":k 2")
        child.expect("k 2 ·")
        child.expect("digest-rag>")
        child.sendline("긴 컨텍스트 LLM")
        child.expect(r" 1\. ")
        child.expect(r" 2\. ")
        child.expect("digest-rag>")
        assert " 3. " not in child.before  # k is 2 now
        child.sendline(":open 1")
        child.expect(r"\[abstract, en\]")
        child.expect("digest-rag>")
        child.sendline(":quit")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0
    history = (tmp_path / "cache" / "shell_history").read_text(encoding="utf-8")
    assert re.search(rf"^\+{JAILBREAK}$", history, re.M) and "+:k 2" in history


def test_author_and_min_score_settings(shell: Shell) -> None:
    assert "authors Goldstein" in shell.handle(":author Goldstein")
    shell.handle(":mode lexical")
    shell.handle("language model")
    assert shell.last and all(any("goldstein" in a.lower() for a in h.paper.authors) for h in shell.last)
    assert "min-score 5.0" in shell.handle(":min-score 5")
    shell.handle("language model")
    assert all(h.score >= 5.0 for h in shell.last or [])
    assert "authors - · min-score -" in shell.handle(":author -") + shell.handle(":min-score -")
    assert shell.handle(":min-score high").startswith("error")


def test_shell_says_no_strong_match(shell: Shell) -> None:
    from digest_rag.frontends.display import NO_STRONG_MATCH

    shell.handle(":mode lexical")
    assert shell.handle("축구 오프사이드 규칙 설명").endswith(NO_STRONG_MATCH)
    assert NO_STRONG_MATCH not in shell.handle(JAILBREAK)


def test_an_interactive_shell_starts_kiwi_while_the_reader_types(seed_lexical_index_dir: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    import digest_rag.frontends.shell as shell_module

    started: list[int] = []
    monkeypatch.setattr(shell_module, "start_kiwi_in_background", lambda: started.append(1))
    monkeypatch.setattr(shell_module, "_terminal_lines", lambda prompt: iter([":quit"]))

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    shell_module.run_shell(seed_lexical_index_dir, stdin=Terminal(""), stdout=Terminal())
    assert started == [1]
    shell_module.run_shell(seed_lexical_index_dir, stdin=io.StringIO(":quit\n"), stdout=io.StringIO())
    assert started == [1]  # piped questions (a script) do not load Kiwi before one needs it
