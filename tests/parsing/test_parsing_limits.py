"""Hostile input to the parsers (issue 16, items 3 and 4): regex blow-ups and text that is not UTF-8.

Every regular expression of the parsing package (module-level patterns and the literal patterns
passed to ``re.*`` calls, found by reading the source) runs on adversarial 100 KB lines within a
time budget enforced here; format detection and parsing of such files do too. Lone surrogates
(from JSON escapes or undecodable file names) are skipped with a reason, never passed on.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

from digest_rag import text as text_module
from digest_rag.errors import ParseError
from digest_rag.parsing import PARSERS, _util, blog, daily, detect, detect_format, jsonl, notes, notes_newer, parse_file, parse_paths, weekly

MODULES: list[ModuleType] = [_util, blog, daily, detect, jsonl, notes, notes_newer, weekly, text_module]
N = 100_000
BUDGET_S = 1.0

ADVERSARIAL: list[str] = [
    "# a" + " " * N + "b",  # notes._ATX_RE was cubic on this
    "x" + " " * N + "본문x",  # blog._HEADER_RE was quadratic on this
    " " * N + "x",
    "\t" * N + "x",
    "a" * N + "!",
    "#" * N + " x",
    "# " * (N // 2) + "x",
    "#a " * (N // 3) + "b c",
    "| " * (N // 2) + "x",
    "1|" * (N // 2) + "x",
    "-|:" * (N // 3) + "a",
    "*" * N + "x",
    "*a" * (N // 2),
    "_a " * (N // 3) + "_",
    "*T" + " *" * (N // 2),
    "(" * N + "x",
    ")" * N,
    "a (" * (N // 3),
    "https://" + "a" * N + " b",
    "<https://" + "a" * N + " >x",
    "http://a " * (N // 9),
    ">" * N + "x",
    "> " * (N // 2),
    "<english" + " " * N,
    "< " * (N // 2) + "english",
    "<" + " " * N + "x",
    "< /" + " " * N + "english",
    "[[" + "a" * N,
    "[[a]]" * (N // 5) + "x",
    "[[a]] ," * (N // 7) + "x",
    "2024" + "." * N,
    "2024. " * (N // 6) + "x",
    "2024년 " * (N // 6) + "x",
    "가" * N + "x",
    "가 " * (N // 2) + "x",
    "a, " * (N // 3) + "(",
    "0" * N + "x",
    "- Today " + "x" * N,
    "arxiv.org/abs/" * (N // 14),
    "=" * N + "x",
    "원문 " * (N // 3),
]


def _module_patterns(mod: ModuleType) -> Iterator[tuple[str, re.Pattern[str]]]:
    for name, obj in vars(mod).items():
        if isinstance(obj, re.Pattern):
            yield f"{mod.__name__}.{name}", obj


def _inline_patterns(mod: ModuleType) -> Iterator[tuple[str, re.Pattern[str]]]:
    """Literal patterns passed straight to re.match/search/sub/... inside functions."""
    source = Path(mod.__file__ or "").read_text(encoding="utf-8")
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "re"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield f"{mod.__name__}:{node.lineno}", re.compile(node.args[0].value)


PATTERNS = sorted({name: pat for mod in MODULES for name, pat in [*_module_patterns(mod), *_inline_patterns(mod)]}.items())


def test_patterns_found() -> None:
    names = {name for name, _ in PATTERNS}
    assert {"digest_rag.parsing.notes._ATX_RE", "digest_rag.parsing.blog._HEADER_RE"} <= names
    assert len(PATTERNS) > 30


def _timed(label: str, func: Callable[[], object]) -> None:
    """Run func, printing a start record first so a hang names its culprit."""
    print(json.dumps({"start": label}), flush=True)
    t0 = time.perf_counter()
    try:
        func()
    except ParseError:
        pass
    print(json.dumps({"done": label, "s": time.perf_counter() - t0}), flush=True)


def _measure(what: str) -> None:
    """Child-process side: time every hostile input (see `_run_measured`)."""
    for i, line in enumerate(ADVERSARIAL):
        if what == "regex":
            for name, pattern in PATTERNS:
                _timed(f"{name} on input {i} {line[:24]!r}", lambda: (pattern.match(line), pattern.search(line), pattern.fullmatch(line)))
            continue
        source = "papers/250101 Hostile.txt"  # .txt: every format's scorer runs
        for text in (line, f"https://arxiv.org/abs/2501.00001\n\n*T* (A)\n\n{line}\n{line}\n\n#tag\n"):
            _timed(f"detect on input {i} {line[:24]!r}", lambda: detect_format(text, source))
            for fmt, parse in PARSERS.items():
                _timed(f"parse {fmt} on input {i} {line[:24]!r}", lambda: parse(text, source))


def _run_measured(what: str, limit: float) -> list[tuple[str, float]]:
    """Run `_measure` in a child process, so a regex that never returns fails the test instead of hanging it."""
    code = f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import test_parsing_limits as t; t._measure({what!r})"
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        out = proc.stdout
        assert proc.returncode == 0, proc.stderr[-2000:]
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        started = [json.loads(ln)["start"] for ln in out.splitlines() if ln.startswith('{"start"')]
        pytest.fail(f"no answer within 120 s; last started: {started[-1] if started else '?'}")
    records = [json.loads(ln) for ln in out.splitlines() if ln.startswith('{"done"')]
    assert records
    return [(r["done"], r["s"]) for r in records if r["s"] >= limit]


def test_every_parser_regex_is_fast_on_hostile_lines() -> None:
    slow = _run_measured("regex", BUDGET_S)
    assert not slow, f"over {BUDGET_S}s: {slow[:5]}"


def test_detection_and_parsing_are_fast_on_hostile_files() -> None:
    slow = _run_measured("files", BUDGET_S)
    detection = [(label, s) for label, s in slow if label.startswith("detect")]
    parsing = [(label, s) for label, s in slow if s >= 2 * BUDGET_S]  # parsing reads every line: twice the budget
    assert not detection, f"detection over {BUDGET_S}s: {detection[:5]}"
    assert not parsing, f"parsing over {2 * BUDGET_S}s: {parsing[:5]}"


def test_detection_reads_a_bounded_sample() -> None:
    huge = "https://arxiv.org/abs/2501.00001\n\n" + ("가나다 " * 2_000_000) + "\n#tag\n"
    start = time.perf_counter()
    assert detect.scores(huge)["notes"] > 0
    assert time.perf_counter() - start < 5 * BUDGET_S


# --- text that cannot round-trip to UTF-8 -----------------------------------------------------


def test_jsonl_lone_surrogate_is_a_skipped_record(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"title":"ok"}\n{"title":"x \\ud800"}\n', encoding="utf-8")
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps({"title": "Fine", "abstract_en": "Text."}) + "\n", encoding="utf-8")
    with pytest.raises(ParseError, match="line 2"):
        jsonl.parse(bad.read_text(encoding="utf-8"), str(bad))
    result = parse_paths([tmp_path])
    assert [p.title for p in result.papers] == ["Fine"]
    assert [s.source for s in result.skipped] == [str(bad)] and "line 2" in result.skipped[0].reason
    assert "surrogate" in result.skipped[0].reason or "UTF-8" in result.skipped[0].reason


@pytest.mark.parametrize("field", ["authors", "tags", "abstract_en", "title_ko", "url"])
def test_jsonl_surrogates_in_any_field(field: str) -> None:
    record = '{"title": "ok", "%s": "a \\udfff b"}' % field
    with pytest.raises(ParseError, match="line 1"):
        jsonl.parse(record + "\n", "x.jsonl")


def test_lone_surrogate_never_leaves_parse_file(tmp_path: Path) -> None:
    # Every parser's output passes one check; a parser that let such text through is caught there.
    f = tmp_path / "note.jsonl"
    f.write_text('{"title":"x", "body": "\\udc80"}\n', encoding="utf-8")
    with pytest.raises(ParseError):
        parse_file(f)


def test_undecodable_file_name_is_skipped(tmp_path: Path) -> None:
    import os

    raw_dir = os.fsencode(tmp_path)
    name = raw_dir + b"/250101 bad \xff name.md"
    try:
        with open(name, "wb") as fh:
            fh.write("https://arxiv.org/abs/2501.00001\n\nTitle (A B)\n\n코멘트.\n".encode())
    except OSError:
        pytest.skip("file system refuses non-UTF-8 names")
    (tmp_path / "250101 good.md").write_text("https://arxiv.org/abs/2501.00002\n\nGood (A B)\n\n코멘트.\n", encoding="utf-8")
    result = parse_paths([tmp_path])
    assert [p.title for p in result.papers] == ["Good"]
    assert len(result.skipped) == 1 and "UTF-8" in result.skipped[0].reason
    result.skipped[0].source.encode("utf-8")  # printable, storable
    json.dumps(result.model_dump(mode="json"), ensure_ascii=False).encode("utf-8")
