"""Issue 23, item 6: no control character from corpus content or file names reaches the terminal.

A corpus whose titles, tags, text and file names carry OSC 0 (window title),
OSC 52 (clipboard write), OSC 8 (hyperlink), a CSI clear-screen and C1
controls is built, searched, described and browsed in real processes; their
stdout and stderr hold no ESC byte but the display's own colour codes (SGR),
and no other C0/C1 control but newline and tab.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from digest_rag.text import strip_controls

ROOT = Path(__file__).resolve().parents[2]
OSC_TITLE = "\x1b]0;pwned\x07"
OSC_CLIPBOARD = "\x1b]52;c;cm0gLXJmIH4=\x07"
OSC_LINK = "\x1b]8;;https://evil.example\x1b\\"
CLEAR = "\x1b[2J\x1b[H"
C1_CSI = "\x9b31m"
SGR = re.compile(r"\x1b\[[0-9;]*m")
CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _hostile_corpus(root: Path) -> Path:
    root.mkdir()
    record = {"id": "evil-paper", "title": f"Evil {OSC_TITLE}Distillation{OSC_CLIPBOARD} Paper",
              "title_ko": f"증류 {CLEAR}논문", "tags": [f"llm{OSC_LINK}", f"x{C1_CSI}"],
              "abstract": f"Knowledge distillation {OSC_LINK}click{OSC_LINK} with a bell \x07 and {C1_CSI}red{CLEAR}."}
    (root / f"evil{OSC_TITLE}.jsonl").write_text(json.dumps(record) + "\n", encoding="utf-8")
    # The same id again: a "merged:" line names both files.
    (root / f"copy{CLEAR}.jsonl").write_text(json.dumps({**record, "abstract": "Another distillation text."}) + "\n",
                                             encoding="utf-8")
    (root / f"empty{OSC_CLIPBOARD}.md").write_text("", encoding="utf-8")  # a skip naming the file
    return root


def _run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "digest_rag.frontends.cli", *args], capture_output=True,
                          input=stdin.encode() if stdin is not None else None, env=env, timeout=180)


def _assert_clean(res: subprocess.CompletedProcess[bytes], colored: bool = False) -> None:
    for name, data in (("stdout", res.stdout), ("stderr", res.stderr)):
        text = data.decode("utf-8")
        if colored:
            text = SGR.sub("", text)
        assert "\x1b" not in text and not CONTROLS.search(text), f"{name}: {text!r}"


def test_no_control_character_reaches_the_terminal(tmp_path: Path) -> None:
    corpus = _hostile_corpus(tmp_path / "corpus")
    ix = str(tmp_path / "ix")
    built = _run("build", str(corpus), "--index", ix, "--lexical-only")
    assert built.returncode == 0, built.stderr
    out = built.stdout.decode() + built.stderr.decode()
    assert "merged" in out and "skipped 1 file" in out  # the lines that name the files are there, stripped
    _assert_clean(built)
    dry = _run("build", str(corpus), "--index", ix, "--lexical-only", "--dry-run", "--force")
    _assert_clean(dry)
    for color in ("--no-color", "--color"):
        found = _run("search", "distillation", "--index", ix, "--mode", "lexical", color)
        assert found.returncode == 0 and b"Distillation" in found.stdout, found.stderr
        _assert_clean(found, colored=color == "--color")
    as_json = _run("search", "distillation", "--index", ix, "--mode", "lexical", "--json")
    _assert_clean(as_json)
    assert json.loads(as_json.stdout)[0]["paper_id"] == "evil-paper"
    info = _run("info", "--index", ix)
    assert info.returncode == 0 and b"evil" in info.stdout
    _assert_clean(info)
    _assert_clean(_run("info", "--index", ix, "--json"))
    shell = _run("shell", "--index", ix, stdin="distillation\n:open 1\n:tag nope\u001b]0;x\u0007\n:quit\n")
    assert shell.returncode == 0 and b"Knowledge distillation" in shell.stdout, shell.stderr
    _assert_clean(shell)
    missing = _run("search", "x", "--index", str(tmp_path / f"no{OSC_TITLE}where"))
    assert missing.returncode == 2
    _assert_clean(missing)


@pytest.mark.parametrize("text, expected", [
    ("a\x1b]0;t\x07b", "a]0;tb"), ("tab\tand\nnewline", "tab\tand\nnewline"), ("\x9b31mC1\x85", "31mC1"),
    ("cr\r\x00nul\x7f", "crnul"), ("한국어 text", "한국어 text"),
])
def test_strip_controls(text: str, expected: str) -> None:
    assert strip_controls(text) == expected


def test_strip_controls_keeps_only_colour_codes() -> None:
    assert strip_controls("\x1b[1mT\x1b[0m \x1b]52;c;x\x07 \x1b[2J", keep_colors=True) == "\x1b[1mT\x1b[0m ]52;c;x [2J"
