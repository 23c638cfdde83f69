"""Every command in README.md runs as documented.

The fenced ```bash blocks are read in order; each `digest-rag ...` command in them (with a leading
`.venv/bin/` stripped, `&&` chains split) is run in-process against a scratch copy of `corpus/` and
`eval/`, offline (HF_HUB_OFFLINE=1, DIGEST_RAG_MODEL unset), so the default model is unavailable and
`build` falls back to a lexical-only index, exactly what a new user without the weights sees. A
command is expected to exit 0 unless its trailing comment says `exit N`. The venv and pip steps of
the two top commands are not run here: CI runs the test command itself (.ci/run), which installs
the package the same way the main-job command does. The ```python blocks run in order in the same
scratch directory, and the ```json JSON Lines example is parsed by the real parser.

The long-running commands are run for real, as subprocesses, by their own tests: `serve` is started
on a free port (the README's `--port` is swapped for it), the `curl` commands of its block are sent to
it and must answer 200 with JSON, and it is stopped; the MCP client configuration's command is
started by the official MCP client, which lists the tools and calls `search_papers`; the `shell`
session transcript's typed lines are fed to `shell`, whose answers must show the transcript's lines.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from typer.testing import CliRunner

from digest_rag.frontends.cli import app

FENCE = re.compile(r"^( *)```(\w+)\n(.*?)^\1```", re.S | re.M)
EXPECT = re.compile(r"#.*\bexit (\d)\b")
LONG_RUNNING = ("serve", "mcp")  # run as subprocesses by their own tests below
PROMPT = "digest-rag> "


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
        if argv[0] in LONG_RUNNING:
            continue
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

    (example,) = [b for b in _blocks(readme, "json") if "mcpServers" not in b]
    record = json.loads(" ".join(example.split("\n")))
    path = tmp_path / "one.jsonl"
    path.write_text(json.dumps(record, ensure_ascii=False) + "\n", encoding="utf-8")
    (paper,) = parse_file(path).papers
    assert paper.title == "Gemma 2" and paper.title_ko == "젬마 2" and paper.id == "2408.00118"
    assert {s.language for s in paper.sections} == {"en", "ko"}


def _build_workspace_index() -> None:
    res = CliRunner().invoke(app, ["build", "corpus/", "-q"])  # offline: the lexical-only fallback
    assert res.exit_code == 0, res.output


def _curl(words: list[str], base: str) -> tuple[str, dict[str, str]]:
    """The URL and headers a README `curl` line requests (-G with -d / --data-urlencode, -H), against ``base``."""
    url, data, headers = "", [], {}
    it = iter(words[1:])
    for w in it:
        if w in ("-d", "--data", "--data-urlencode"):
            key, _, value = next(it).partition("=")
            data.append((key, value))
        elif w in ("-H", "--header"):
            name, _, value = next(it).partition(":")
            headers[name.strip()] = value.strip()
        elif w.startswith("http"):
            url = re.sub(r"^http://127\.0\.0\.1:\d+", base, w)
        else:
            assert w in ("-s", "-G", "-sS", "--silent"), f"curl option the test does not know: {w}"
    if data:
        url += "?" + urllib.parse.urlencode(data)
    return url, headers


@pytest.mark.filterwarnings("ignore::digest_rag.ModelFallbackWarning")
def test_readme_serve_block_runs(readme: str, workspace: Path) -> None:
    pytest.importorskip("fastapi", reason="the 'serve' extra is not installed")
    from digest_rag.testing import running_server

    _build_workspace_index()
    blocks = [b for b in _blocks(readme, "bash") if any(a[0] == "serve" for a, _c, _l in _commands(b))]
    assert blocks, "the README shows `digest-rag serve`"
    for block in blocks:
        (argv, _code, _line), = [c for c in _commands(block) if c[0][0] == "serve"]
        opts = dict(zip(argv[1::2], argv[2::2], strict=True))
        index = opts.pop("--index", "indexes/default")
        opts.pop("--port", None)  # a free port instead
        curls = [shlex.split(line, comments=True) for line in block.splitlines() if line.startswith("curl ")]
        assert curls, "the serve block shows requests"
        with running_server(workspace / index, args=[x for kv in opts.items() for x in kv]) as base:
            for words in curls:
                url, headers = _curl(words, base)
                with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=60) as res:  # noqa: S310
                    assert res.status == 200, url
                    body = json.loads(res.read())
                offset = int(urllib.parse.parse_qs(urllib.parse.urlparse(url).query).get("offset", ["0"])[0])
                if "/search" in url and offset:  # a later page: ranks continue after the skipped papers
                    assert [h["rank"] for h in body] == list(range(offset + 1, offset + 1 + len(body))) and body
                elif "/search" in url:
                    assert body and body[0]["title"] == "Many-shot Jailbreaking"
                if "/similar/" in url:
                    assert body and "Many-shot Jailbreaking" not in {h["title"] for h in body}
                if "/papers/" in url:
                    assert body["title"] == "Many-shot Jailbreaking" and body["sections"]


@pytest.mark.filterwarnings("ignore::digest_rag.ModelFallbackWarning")
def test_readme_mcp_configuration_runs(readme: str, workspace: Path) -> None:
    pytest.importorskip("mcp", reason="the 'mcp' extra is not installed")
    import asyncio
    import os
    import sys

    from mcp import Client
    from mcp.client.stdio import StdioServerParameters

    (config,) = [json.loads(b) for b in _blocks(readme, "json") if "mcpServers" in b]
    (entry,) = config["mcpServers"].values()
    assert entry["command"] == "digest-rag" and entry["args"][0] == "mcp"
    _build_workspace_index()
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "digest_rag.frontends.cli", *entry["args"]], cwd=str(workspace),
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )

    async def session() -> None:
        async with Client(params, read_timeout_seconds=120) as client:
            assert {t.name for t in (await client.list_tools()).tools} == {"search_papers", "get_paper",
                                                                           "similar_papers"}
            res = await client.call_tool("search_papers", {"query": "긴 컨텍스트를 악용하는 탈옥 공격", "k": 1})
            assert not res.is_error and res.structured_content["result"][0]["title"] == "Many-shot Jailbreaking"

    asyncio.run(session())


@pytest.mark.filterwarnings("ignore::digest_rag.ModelFallbackWarning")
def test_readme_sample_search_output_is_what_search_prints(readme: str, workspace: Path) -> None:
    """The sample of `search`'s output (its ranks, titles, dates, tags and scores) is what the tour's search prints
    on the offline lexical-only index (issue 22 item 9: the README showed 2.8932 where search printed 5.3117)."""
    samples = [b for b in _blocks(readme, "text") if re.match(r"\s*1\. ", b)]
    assert samples, "the README shows search's output"
    _build_workspace_index()
    res = CliRunner().invoke(app, ["search", "스케일링 법칙에 대한 논문을 찾아줘", "-k", "3", "--no-color"])
    assert res.exit_code == 0, res.output
    real = {line.strip() for line in res.stdout.splitlines()}
    for block in samples:
        shown = [line.strip() for line in block.splitlines() if re.match(r"\s*\d+\. |.* · score ", line)]
        assert shown and not [line for line in shown if line not in real], (shown, res.stdout)


def test_readme_synopsis_lists_every_command_and_option(readme: str) -> None:
    """The CLI synopsis names every command and every long option (issue 22 item 9: export-variant and
    search -m/--model were missing)."""
    import typer

    block = next(b for b in _blocks(readme, "text") if b.startswith("digest-rag build"))
    entries: dict[str, str] = {}
    for line in block.splitlines():
        if m := re.match(r"digest-rag (\S+)", line):
            entries[m.group(1)] = line
        else:
            entries[list(entries)[-1]] += line
    for name, command in typer.main.get_command(app).commands.items():
        assert name in entries, f"README's CLI synopsis lacks `digest-rag {name}`"
        for param in command.params:
            for opt in param.opts:
                if opt.startswith("--") and opt != "--help":
                    assert opt in entries[name], f"README's synopsis of `{name}` lacks {opt}"


def test_readme_shell_transcript(readme: str, workspace: Path) -> None:
    transcripts = [b for b in _blocks(readme, "text") if b.startswith(PROMPT)]
    assert transcripts, "the README shows a shell session"
    _build_workspace_index()
    for block in transcripts:
        typed = [line[len(PROMPT):] for line in block.splitlines() if line.startswith(PROMPT)]
        res = CliRunner().invoke(app, ["shell", "--no-color"], input="\n".join(typed) + "\n")
        assert res.exit_code == 0, res.output
        real = {line.strip() for line in res.stdout.splitlines()}
        # Score lines too (issue 22 item 9: the README showed 17.6011 where the shell printed 20.9854).
        shown = [line.strip() for line in block.splitlines()
                 if not line.startswith(PROMPT) and "…" not in line and line.strip()]
        assert shown
        missing = [line for line in shown if line not in real]
        assert not missing, f"shown in the README but not printed by the shell: {missing}"
