"""`digest-rag mcp`: the real program over stdio, driven by the official MCP client library."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

pytest.importorskip("mcp", reason="the 'mcp' extra is not installed")
from mcp import Client  # noqa: E402
from mcp.client.stdio import StdioServerParameters  # noqa: E402

from digest_rag.frontends.live import LiveIndex  # noqa: E402
from digest_rag.frontends.mcp_server import create_server  # noqa: E402

JAILBREAK = "긴 컨텍스트를 악용하는 탈옥 공격"


def test_mcp_over_stdio(seed_lexical_index_dir: Path) -> None:
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "digest_rag.frontends.cli", "mcp", "--index", str(seed_lexical_index_dir)],
        env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )

    async def session() -> None:
        async with Client(params, read_timeout_seconds=120) as client:
            tools = {t.name: t for t in (await client.list_tools()).tools}
            assert set(tools) == {"search_papers", "get_paper", "similar_papers"}
            props = tools["search_papers"].input_schema["properties"]
            assert {"query", "k", "mode", "lang", "date_from", "date_to", "tags", "authors", "min_score"} <= set(props)
            assert tools["search_papers"].input_schema["required"] == ["query"]
            assert props["mode"]["enum"] == ["hybrid", "dense", "lexical"]

            res = await client.call_tool("search_papers", {"query": JAILBREAK, "k": 3, "mode": "lexical"})
            assert not res.is_error
            hits = res.structured_content["result"]
            assert len(hits) == 3 and hits[0]["title"] == "Many-shot Jailbreaking" and hits[0]["rank"] == 1
            assert json.loads(res.content[0].text)["title"] == "Many-shot Jailbreaking"  # text for plain clients
            assert hits[0]["strong_match"] is True
            off = await client.call_tool("search_papers", {"query": "축구 오프사이드 규칙 설명", "mode": "lexical"})
            assert not off.is_error and all(h["strong_match"] is False for h in off.structured_content["result"])

            dated = await client.call_tool("search_papers", {"query": "distillation", "mode": "lexical",
                                                             "date_from": "2024-06-01", "tags": ["llm"]})
            assert not dated.is_error and dated.structured_content["result"]
            assert all(h["date"] >= "2024-06-01" and "llm" in h["tags"] for h in dated.structured_content["result"])

            paper = await client.call_tool("get_paper", {"id": hits[0]["paper_id"]})
            assert not paper.is_error and paper.structured_content["title_ko"] == "다발성 탈옥"
            assert {s["language"] for s in paper.structured_content["sections"]} == {"ko", "en"}

            for args, name in [({"query": ""}, "EmptyQueryError"), ({"query": "x", "k": 0}, "UsageError"),
                               ({"query": "x", "date_from": "2024-13-01"}, "UsageError"),
                               ({"query": "x" * 10_000}, "UsageError")]:
                bad = await client.call_tool("search_papers", args)
                assert bad.is_error and f"{name}: " in bad.content[0].text and "Traceback" not in bad.content[0].text
            missing = await client.call_tool("get_paper", {"id": "no-such-paper"})
            assert missing.is_error and "PaperNotFoundError" in missing.content[0].text

            # Paging: the second page continues the ranking of the first.
            both = await client.call_tool("search_papers", {"query": JAILBREAK, "k": 4, "mode": "lexical"})
            second = await client.call_tool("search_papers", {"query": JAILBREAK, "k": 2, "mode": "lexical",
                                                              "offset": 2})
            assert not second.is_error
            assert [(h["paper_id"], h["rank"]) for h in second.structured_content["result"]] == [
                (h["paper_id"], h["rank"]) for h in both.structured_content["result"][2:]]

            like = await client.call_tool("similar_papers", {"id": hits[0]["paper_id"], "k": 3, "mode": "lexical"})
            assert not like.is_error
            near = like.structured_content["result"]
            assert len(near) == 3 and hits[0]["paper_id"] not in {h["paper_id"] for h in near}
            gone = await client.call_tool("similar_papers", {"id": "no-such-paper"})
            assert gone.is_error and "PaperNotFoundError: " in gone.content[0].text

    asyncio.run(session())


def test_mcp_in_process_dense_mode(seed_index_dir: Path) -> None:
    """The same tools in-process on a hybrid index (tiny model): every mode answers."""
    with LiveIndex(seed_index_dir, interval=0) as live:
        server = create_server(live)

        async def session() -> None:
            async with Client(server) as client:
                for mode in ("hybrid", "dense", "lexical"):
                    res = await client.call_tool("search_papers", {"query": "Gemma 2 지식 증류", "k": 2, "mode": mode})
                    assert not res.is_error and len(res.structured_content["result"]) == 2

        asyncio.run(session())


def test_mcp_answers_undecodable_requests(seed_lexical_index_dir: Path) -> None:
    """Issue 23, item 9: a request the protocol library cannot read (a lone surrogate in an argument, a line
    that is not JSON) gets a JSON-RPC error naming its id, and the server goes on answering."""
    import queue
    import subprocess
    import threading
    import time

    proc = subprocess.Popen(
        [sys.executable, "-m", "digest_rag.frontends.cli", "mcp", "--index", str(seed_lexical_index_dir)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    lines = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize",
         "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
         "params": {"name": "search_papers", "arguments": {"query": "\ud800", "mode": "lexical"}}},
        {"jsonrpc": "2.0", "id": "three", "method": "tools/call", "params": {"name": "get_paper", "arguments": {"id": "x\udfff"}}},
        {"jsonrpc": "2.0", "method": "notifications/x", "params": {"a": "\ud800"}},  # a notification: no answer
        "not json at all",
        {"jsonrpc": "2.0", "id": 4, "method": "tools/call",
         "params": {"name": "search_papers", "arguments": {"query": "distillation", "k": 1, "mode": "lexical"}}},
    ]
    data = "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
    t0 = time.monotonic()
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(data.encode("utf-8", "surrogatepass"))
    proc.stdin.flush()  # left open: the server stops at end of input, cancelling what it has not answered
    replies: queue.Queue[bytes] = queue.Queue()
    threading.Thread(target=lambda: [replies.put(line) for line in proc.stdout], daemon=True).start()
    by_id: dict[object, dict] = {}
    try:
        while set(by_id) != {1, 2, "three", None, 4} and time.monotonic() - t0 < 90:
            try:
                answer = json.loads(replies.get(timeout=max(90 - (time.monotonic() - t0), 0.1)))
            except queue.Empty:
                break  # a request left unanswered: the client would wait forever
            by_id[answer.get("id")] = answer
    finally:
        proc.stdin.close()
        proc.wait(30)
    assert set(by_id) == {1, 2, "three", None, 4}, by_id
    for rid in (2, "three"):
        assert by_id[rid]["error"]["code"] == -32600 and "Invalid request" in by_id[rid]["error"]["message"]
    assert by_id[None]["error"]["code"] == -32700
    assert not by_id[4]["result"]["isError"] and by_id[4]["result"]["structuredContent"]["result"]
    assert time.monotonic() - t0 < 120
