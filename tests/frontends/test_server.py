"""`digest-rag serve`: every endpoint through the ASGI test client, bad input, token, rate limit, hot reload, the page."""

from __future__ import annotations

import errno
import json
import logging
import re
import shutil
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import pytest

pytest.importorskip("fastapi", reason="the 'serve' extra is not installed")
from fastapi.testclient import TestClient  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from digest_rag import DigestIndex, UsageError  # noqa: E402
from digest_rag.frontends.cli import app as cli_app  # noqa: E402
from digest_rag.frontends.live import LiveIndex  # noqa: E402
from digest_rag.frontends.http_guard import RateLimiter, check_bind
from digest_rag.frontends.server import STATIC_DIR, create_app
from digest_rag.frontends.service import MAX_K, SearchRequest  # noqa: E402

JAILBREAK = "긴 컨텍스트를 악용하는 탈옥 공격"
LOCAL = "http://localhost"  # the test client's default Host, "testserver", is not a loopback name: 400
TOKEN = "s3cret-token-of-24-chars"


@pytest.fixture(scope="module")
def live(seed_index_dir: Path) -> Iterator[LiveIndex]:
    with LiveIndex(seed_index_dir, interval=0) as li:
        yield li


@pytest.fixture(scope="module")
def client(live: LiveIndex) -> TestClient:
    return TestClient(create_app(live, rate_limit=0), base_url=LOCAL)


def _assert_error(res, status: int, name: str) -> None:  # noqa: ANN001 - httpx.Response
    assert res.status_code == status, res.text
    assert res.headers["content-type"].startswith("application/json")
    body = res.json()
    assert body["error"] == name and body["detail"] and "Traceback" not in res.text


def test_search_returns_the_cli_json_records(client: TestClient, seed_index_dir: Path, live: LiveIndex) -> None:
    res = client.get("/search", params={"q": JAILBREAK, "k": 3, "mode": "lexical"})
    assert res.status_code == 200
    hits = res.json()
    assert [h["rank"] for h in hits] == [1, 2, 3]
    assert hits[0]["title"] == "Many-shot Jailbreaking"
    assert res.headers["x-index-generation"] == live.generation
    cli = CliRunner().invoke(cli_app, ["search", JAILBREAK, "--index", str(seed_index_dir), "--mode", "lexical",
                                       "-k", "3", "--json"])
    assert cli.exit_code == 0
    assert hits == json.loads(cli.stdout)


def test_search_author_min_score_and_strong_match(client: TestClient) -> None:
    res = client.get("/search", params={"q": "language model", "mode": "lexical", "author": "goldstein", "k": 20})
    assert res.status_code == 200 and res.json()
    assert all(any("goldstein" in a.lower() for a in h["authors"]) for h in res.json())
    cut = client.get("/search", params={"q": "language model", "mode": "lexical", "min_score": 5}).json()
    assert all(h["score"] >= 5 for h in cut)
    assert client.get("/search", params={"q": JAILBREAK, "mode": "lexical"}).json()[0]["strong_match"] is True
    off = client.get("/search", params={"q": "축구 오프사이드 규칙 설명", "mode": "lexical"}).json()
    assert off and all(h["strong_match"] is False for h in off)


def test_search_filters_and_modes(client: TestClient) -> None:
    for mode in ("hybrid", "dense", "lexical"):
        res = client.get("/search", params={"q": "Gemma 2 지식 증류", "k": 2, "mode": mode})
        assert res.status_code == 200 and len(res.json()) == 2
        # Each hit names the retrievers that found it: the mode's own, or in hybrid mode one or both.
        expected = ({"dense", "lexical"} if mode == "hybrid" else {mode})
        assert all(h["modes"] and set(h["modes"]) <= expected for h in res.json())
    res = client.get("/search", params={"q": "distillation", "mode": "lexical", "from": "2024-06-01",
                                        "to": "2024-06-30", "lang": "en"})
    assert res.status_code == 200 and res.json()
    assert all("2024-06-01" <= h["date"] <= "2024-06-30" and h["language"] == "en" for h in res.json())
    tagged = client.get("/search", params=[("q", "model"), ("mode", "lexical"), ("tag", "llm"), ("tag", "#rlhf")])
    assert tagged.status_code == 200 and tagged.json()
    assert all({"llm", "rlhf"} & set(h["tags"]) for h in tagged.json())


def test_search_dates_may_be_a_year_or_a_month(client: TestClient) -> None:
    import datetime as dt

    req = SearchRequest.parse(query="q", date_from="2024-02", date_to="2024")
    assert (req.date_from, req.date_to) == (dt.date(2024, 2, 1), dt.date(2024, 12, 31))
    by_day = client.get("/search", params={"q": "language model", "mode": "lexical", "from": "2024-01-01", "to": "2024-12-31"})
    by_year = client.get("/search", params={"q": "language model", "mode": "lexical", "from": "2024", "to": "2024"})
    assert by_year.status_code == 200 and by_year.json() == by_day.json()
    bad = client.get("/search", params={"q": "x", "to": "2024-13"})
    assert bad.status_code == 400 and "a month like 2024-06" in bad.text


def test_search_highlight_html_is_escaped_and_marked(client: TestClient) -> None:
    res = client.get("/search", params={"q": JAILBREAK, "k": 1, "mode": "lexical", "highlight": "html"})
    hit = res.json()[0]
    assert "<mark>" in hit["snippet_html"]
    assert re.sub(r"</?mark>", "", hit["snippet_html"]) == (
        hit["snippet"].replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
        .replace("'", "&#x27;"))


@pytest.mark.parametrize(("params", "name"), [
    ({"q": ""}, "EmptyQueryError"),
    ({"q": "   "}, "EmptyQueryError"),
    ({}, "UsageError"),
    ({"q": "탈옥", "k": 0}, "UsageError"),
    ({"q": "탈옥", "k": 100000}, "UsageError"),
    ({"q": "탈옥", "k": "ten"}, "UsageError"),
    ({"q": "탈옥", "from": "2024-13-01"}, "UsageError"),
    ({"q": "탈옥", "to": "yesterday"}, "UsageError"),
    ({"q": "탈옥", "mode": "semantic"}, "UsageError"),
    ({"q": "탈옥", "lang": "fr"}, "UsageError"),
    ({"q": "탈옥", "highlight": "ansi"}, "UsageError"),
    ({"q": "탈옥 " * 2_500}, "UsageError"),  # 10,000 characters
    ({"q": "탈옥", "tag": [f"t{i}" for i in range(1000)]}, "UsageError"),
    ({"q": "탈옥", "tag": "x" * 500}, "UsageError"),
])
def test_bad_search_input_is_a_4xx_json_error(client: TestClient, params: dict[str, object], name: str) -> None:
    _assert_error(client.get("/search", params=params), 400, name)


def test_k_limit_is_inclusive(client: TestClient) -> None:
    assert client.get("/search", params={"q": "model", "k": MAX_K, "mode": "lexical"}).status_code == 200


def test_papers_endpoint(client: TestClient) -> None:
    pid = client.get("/search", params={"q": JAILBREAK, "k": 1, "mode": "lexical"}).json()[0]["paper_id"]
    res = client.get(f"/papers/{pid}")
    assert res.status_code == 200
    paper = res.json()
    assert paper["paper_id"] == pid and paper["title"] == "Many-shot Jailbreaking" and paper["title_ko"]
    assert {s["language"] for s in paper["sections"]} == {"ko", "en"}
    assert all(s["text"] and "html" not in s for s in paper["sections"])
    marked = client.get(f"/papers/{pid}", params={"q": "탈옥"}).json()
    assert any("<mark>탈옥</mark>" in s["html"] for s in marked["sections"])
    _assert_error(client.get("/papers/no-such-paper"), 404, "PaperNotFoundError")
    _assert_error(client.get("/papers/" + "x" * 5000), 404, "PaperNotFoundError")
    _assert_error(client.get(f"/papers/{pid}", params={"q": "x" * 10_000}), 400, "UsageError")


def test_info_healthz_openapi(client: TestClient, live: LiveIndex) -> None:
    info = client.get("/info").json()
    assert info["papers"] == 29 and info["generation"] == live.generation and "paper_list" not in info
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["generation"] == live.generation
    schema = client.get("/openapi.json").json()
    assert {"/search", "/papers/{paper_id}", "/info", "/healthz"} <= set(schema["paths"])
    names = {p["name"] for p in schema["paths"]["/search"]["get"]["parameters"]}
    assert {"q", "k", "mode", "lang", "from", "to", "tag"} <= names


def test_model_work_runs_on_the_index_thread(client: TestClient, live: LiveIndex,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    # torch gives each calling thread its own OpenMP team; more than one team slows every query (digest_rag.frontends.live).
    index_thread = live.call(lambda _index: threading.get_ident())
    assert index_thread != threading.get_ident()
    assert live.call(lambda _index: live.call(lambda _inner: threading.get_ident())) == index_thread  # no deadlock
    seen: list[int] = []
    real_search = DigestIndex.search

    def search(self: DigestIndex, *args: object, **kwargs: object) -> object:
        seen.append(threading.get_ident())
        return real_search(self, *args, **kwargs)

    monkeypatch.setattr(DigestIndex, "search", search)
    for mode in ("hybrid", "lexical"):
        assert client.get("/search", params={"q": JAILBREAK, "k": 2, "mode": mode}).status_code == 200
    assert seen == [index_thread, index_thread]
    import torch  # loaded by the hybrid index's encoder

    assert live.call(lambda _index: torch.get_num_threads()) == 1  # a question on one torch thread
    with pytest.raises(UsageError):  # the library's exceptions come back through the thread unchanged
        live.call(lambda _index: (_ for _ in ()).throw(UsageError("bad")))


def test_unknown_routes_and_methods_are_json(client: TestClient) -> None:
    _assert_error(client.get("/nowhere"), 404, "NotFound")
    _assert_error(client.post("/search", params={"q": "탈옥"}), 405, "MethodNotAllowed")
    _assert_error(client.delete("/papers/x"), 405, "MethodNotAllowed")
    assert client.get("/docs").status_code == 404  # Swagger UI would load scripts from a CDN


def test_token_enforcement(live: LiveIndex) -> None:
    guarded = TestClient(create_app(live, token=TOKEN, rate_limit=0), base_url=LOCAL)
    for path in ("/search?q=탈옥&mode=lexical", "/info", "/papers/x"):
        _assert_error(guarded.get(path), 401, "Unauthorized")
        _assert_error(guarded.get(path, headers={"Authorization": "Bearer wrong"}), 401, "Unauthorized")
        _assert_error(guarded.get(path, headers={"Authorization": TOKEN}), 401, "Unauthorized")
    ok = guarded.get("/search", params={"q": "탈옥", "mode": "lexical"}, headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200 and ok.json()
    assert guarded.get("/healthz").status_code == 200 and guarded.get("/").status_code == 200  # no data there


def test_non_loopback_bind_needs_a_token() -> None:
    for host in ("127.0.0.1", "::1", "localhost", "127.0.0.2"):
        check_bind(host, None)
    for host in ("0.0.0.0", "::", "192.168.1.10", "example.org"):
        with pytest.raises(UsageError, match="token"):
            check_bind(host, None)
        check_bind(host, TOKEN)
    res = CliRunner().invoke(cli_app, ["serve", "--host", "0.0.0.0", "--index", "nowhere"], env={"DIGEST_RAG_TOKEN": ""})
    assert res.exit_code == 1 and res.stderr.startswith("error: ") and res.stderr.count("\n") == 1


def test_rate_limit(live: LiveIndex) -> None:
    limited = TestClient(create_app(live, rate_limit=1), base_url=LOCAL)
    codes = [limited.get("/search", params={"q": "탈옥", "mode": "lexical"}).status_code for _ in range(4)]
    assert codes[:2] == [200, 200] and codes[-1] == 429  # a burst of 2, then 1 per second
    res = limited.get("/info")
    _assert_error(res, 429, "RateLimited")
    assert int(res.headers["retry-after"]) >= 1
    assert limited.get("/healthz").status_code == 200  # liveness is never limited


def test_rate_limiter_refills() -> None:
    limiter = RateLimiter(rate=50, burst=1)
    assert limiter.retry_after("a") == 0 and limiter.retry_after("a") > 0
    assert limiter.retry_after("b") == 0  # per client
    time.sleep(0.05)
    assert limiter.retry_after("a") == 0


def test_the_page_and_its_script(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    for element in ('id="search-form"', 'id="q"', 'id="mode"', 'id="lang"', 'id="from"', 'id="to"', 'id="tag"',
                    'id="results"', 'id="paper"', 'lang="ko"', "검색", "Search"):
        assert element in html
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert "/static/app.js" in assets and "/static/style.css" in assets
    for asset in assets:  # everything is served by the package: no CDN, no external fonts
        assert asset.startswith("/"), asset
        assert client.get(asset).status_code == 200
    script = client.get("/static/app.js").text
    assert not re.search(r"https?://", script + client.get("/static/style.css").text)
    # The script's API calls are the server's routes, with parameter names the API accepts.
    schema = client.get("/openapi.json").json()
    calls = set(re.findall(r'"(/(?:search|papers|similar|info)[^"?]*)', script))
    assert calls == {"/search", "/papers/", "/similar/", "/info"}
    fields = json.loads(re.search(r"const FIELDS = (\[.*?\]);", script).group(1))
    accepted = {p["name"] for p in schema["paths"]["/search"]["get"]["parameters"]}
    assert set(fields) | {"highlight", "offset"} <= accepted and "highlight" in script
    assert 'p.set("offset"' in script  # paging asks the API for the next page
    # "More like this" sends the same filters, which /similar accepts, minus the question.
    similar = {p["name"] for p in schema["paths"]["/similar/{paper_id}"]["get"]["parameters"]}
    assert set(fields) - {"q"} | {"offset"} <= similar
    for element in ('id="pager"', 'id="prev-page"', 'id="next-page"'):
        assert element in html
    for field in fields:  # every field the script reads exists in the page
        assert f'id="{field}"' in html
    for key in ("title", "title_ko", "date", "tags", "snippet_html", "urls", "paper_id", "sections"):
        assert key in script
    assert STATIC_DIR.is_dir()


def _lexical_index(root: Path, files: list[str], corpus: Path) -> Path:
    src = root / "src"
    src.mkdir(exist_ok=True)
    for name in files:
        shutil.copy(corpus / name, src / name)
    out = root / "index"
    DigestIndex.build([src], index_dir=out, lexical_only=True).close()
    return out


@pytest.mark.filterwarnings("ignore::digest_rag.ModelFallbackWarning")  # update of a lexical-only index, offline
def test_hot_reload_switches_generations_without_dropping_requests(tmp_path: Path, seed_corpus: Path) -> None:
    index_dir = _lexical_index(tmp_path, ["2024-04-weekly-top-papers-roundup.txt"], seed_corpus)
    with LiveIndex(index_dir, interval=0) as li:
        client = TestClient(create_app(li, rate_limit=0), base_url=LOCAL)
        before = client.get("/search", params={"q": "Gemma 2", "mode": "lexical", "k": 3})
        assert before.status_code == 200
        assert not any(h["title"].startswith("Gemma 2") for h in before.json())
        old_gen = before.headers["x-index-generation"]
        with li.use() as in_flight:  # a request still running on the old generation while the build commits
            shutil.copy(seed_corpus / "2024-06-28-daily-digest.txt", tmp_path / "src")
            DigestIndex.update([tmp_path / "src" / "2024-06-28-daily-digest.txt"], index_dir=index_dir).close()
            assert li.refresh() and li.generation != old_gen
            assert in_flight.search("many-shot", k=1, mode="lexical")  # not closed under the request
        with pytest.raises(Exception):  # noqa: B017 - the old generation is closed once its last request ends
            in_flight.store.counts()
        after = client.get("/search", params={"q": "Gemma 2", "mode": "lexical", "k": 3})
        assert after.headers["x-index-generation"] == li.generation != old_gen
        assert after.json()[0]["title"].startswith("Gemma 2")
        assert client.get("/healthz").json()["reloads"] == 1
        assert not li.refresh()  # nothing new


@pytest.mark.filterwarnings("ignore::digest_rag.ModelFallbackWarning")
def test_hot_reload_by_the_watcher_and_a_damaged_generation_is_skipped(tmp_path: Path, seed_corpus: Path) -> None:
    index_dir = _lexical_index(tmp_path, ["2024-04-weekly-top-papers-roundup.txt"], seed_corpus)
    with LiveIndex(index_dir, interval=0.05) as li:
        first = li.generation
        manifest = json.loads((index_dir / "manifest.json").read_text())
        broken = dict(manifest, data_dir="gen-missing")
        (index_dir / "manifest.json.tmp").write_text(json.dumps(broken))
        (index_dir / "manifest.json.tmp").replace(index_dir / "manifest.json")
        deadline = time.monotonic() + 10
        while li.last_error is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert li.last_error and li.generation == first  # still serving the good generation
        with li.use() as idx:
            assert idx.search("many-shot", k=1, mode="lexical")
        (index_dir / "manifest.json.tmp").write_text(json.dumps(manifest))
        (index_dir / "manifest.json.tmp").replace(index_dir / "manifest.json")
        shutil.copy(seed_corpus / "2024-06-28-daily-digest.txt", tmp_path / "src")
        DigestIndex.update([tmp_path / "src" / "2024-06-28-daily-digest.txt"], index_dir=index_dir).close()
        deadline = time.monotonic() + 10
        while li.generation == first and time.monotonic() < deadline:
            time.sleep(0.05)
        assert li.generation != first and li.last_error is None


# ---------------------------------------------------------------- issue 23: a serve that cannot be stalled
def test_a_wrong_host_gets_400(live: LiveIndex) -> None:
    # DNS rebinding: a page of attacker.example whose name now points at 127.0.0.1 sends its own Host.
    app = create_app(live, rate_limit=0)
    for base in ("http://attacker.example", "http://attacker.example:8000", "http://127.0.0.1.attacker.example"):
        for path in ("/", "/healthz", "/search?q=탈옥&mode=lexical", "/info"):
            _assert_error(TestClient(app, base_url=base).get(path), 400, "BadHost")
    for base in ("http://localhost", "http://127.0.0.1:8000", "http://[::1]:8000", "http://LOCALHOST."):
        assert TestClient(app, base_url=base).get("/healthz").status_code == 200, base
    no_host = TestClient(app, base_url=LOCAL).get("/healthz", headers={"Host": ""})
    _assert_error(no_host, 400, "BadHost")
    named = create_app(live, rate_limit=0, allowed_hosts=["papers.example.org"])
    assert TestClient(named, base_url="http://papers.example.org").get("/healthz").status_code == 200
    assert TestClient(named, base_url="http://localhost:9000").get("/healthz").status_code == 200
    _assert_error(TestClient(named, base_url="http://other.example.org").get("/healthz"), 400, "BadHost")
    anyhost = create_app(live, rate_limit=0, allowed_hosts=["*"])
    assert TestClient(anyhost, base_url="http://whatever.example").get("/healthz").status_code == 200


def test_allowed_host_names_include_the_bound_address() -> None:
    from digest_rag.frontends.http_guard import allowed_host_names

    assert allowed_host_names("192.168.1.10") == {"localhost", "127.0.0.1", "::1", "192.168.1.10"}
    assert allowed_host_names("::", ["fe80::1", "Example.org:8000"]) == {"localhost", "127.0.0.1", "::1",
                                                                        "fe80::1", "example.org"}
    assert allowed_host_names("0.0.0.0") == {"localhost", "127.0.0.1", "::1"}


def test_a_short_token_is_refused_off_loopback() -> None:
    for token in ("t", "x" * 15):
        with pytest.raises(UsageError, match="16 characters"):
            check_bind("0.0.0.0", token)
    check_bind("0.0.0.0", "x" * 16)
    check_bind("127.0.0.1", "t")  # on loopback the token only guards; any length
    res = CliRunner().invoke(cli_app, ["serve", "--host", "0.0.0.0", "--token", "t", "--index", "nowhere"])
    assert res.exit_code == 1 and "16 characters" in res.stderr and res.stderr.count("\n") == 1


def _hangul_paste(chars: int = 2_000) -> str:
    words = "모델 학습 데이터 언어 추론 성능 방법 결과 대규모 실험 강화학습 트랜스포머 어텐션 스케일링 법칙".split()
    return " ".join(words[i % len(words)] + "에서" * (i % 3) for i in range(chars))[:chars]


def test_a_question_of_too_many_terms_is_refused(client: TestClient, live: LiveIndex) -> None:
    pasted = _hangul_paste()
    res = client.get("/search", params={"q": pasted, "mode": "lexical"})
    _assert_error(res, 400, "UsageError")
    assert "terms" in res.json()["detail"]
    pid = client.get("/search", params={"q": JAILBREAK, "k": 1, "mode": "lexical"}).json()[0]["paper_id"]
    _assert_error(client.get(f"/papers/{pid}", params={"q": pasted}), 400, "UsageError")
    words = " ".join(f"word{i}" for i in range(64))
    assert client.get("/search", params={"q": words, "mode": "lexical"}).status_code == 200  # the limit is inclusive


def test_paper_highlighting_is_bounded(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    import digest_rag.frontends.server as server

    pid = client.get("/search", params={"q": JAILBREAK, "k": 1, "mode": "lexical"}).json()[0]["paper_id"]
    full = client.get(f"/papers/{pid}", params={"q": "탈옥"}).json()
    assert "highlight_truncated" not in full
    first = len(full["sections"][0]["text"])
    monkeypatch.setattr(server, "MAX_HIGHLIGHT_CHARS", first)  # only the first section is highlighted
    cut = client.get(f"/papers/{pid}", params={"q": "탈옥"}).json()
    assert cut["highlight_truncated"] is True
    assert cut["sections"][0]["html"] == full["sections"][0]["html"]
    assert all("<mark>" not in s["html"] for s in cut["sections"][1:])
    assert any("<mark>" in s["html"] for s in full["sections"][1:])
    assert [re.sub(r"</?mark>", "", s["html"]) for s in cut["sections"]] == [
        re.sub(r"</?mark>", "", s["html"]) for s in full["sections"]]  # the same text, escaped the same way


@contextmanager
def _uvicorn(app: object, **settings: object) -> Iterator[int]:
    """``app`` served by uvicorn with serve's own settings on a free loopback port, in a thread; its port."""
    import uvicorn

    from digest_rag.frontends.server import server_config

    server = uvicorn.Server(server_config(app, host="127.0.0.1", port=0, **settings))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _get(port: int, path: str, headers: dict[str, str] | None = None, timeout: float = 10) -> tuple[int, bytes]:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        res = conn.getresponse()
        return res.status, res.read()
    finally:
        conn.close()


def _raw_request(port: int, path: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
    return sock


def test_abandoned_requests_do_not_stall_the_next_one(live: LiveIndex, monkeypatch: pytest.MonkeyPatch) -> None:
    # 30 slow questions whose clients hang up at once: queued ones are dropped, the running one stops at its
    # next stage, so a normal question waits for at most one slow one (it waited for all 30 before).
    real_run = SearchRequest.run
    started: list[float] = []

    def slow_run(self: SearchRequest, index: DigestIndex) -> object:
        if self.query.startswith("slow"):
            started.append(time.monotonic())
            time.sleep(0.4)
        return real_run(self, index)

    monkeypatch.setattr(SearchRequest, "run", slow_run)
    app = create_app(live, rate_limit=0, max_queue=64)
    with _uvicorn(app) as port:
        socks = [_raw_request(port, f"/search?mode=lexical&q=slow+{i}") for i in range(30)]
        time.sleep(0.3)  # the requests are read and queued
        for sock in socks:
            sock.close()
        time.sleep(0.2)
        t0 = time.monotonic()
        status, body = _get(port, "/search?mode=lexical&k=1&q=" + quote(JAILBREAK))
        waited = time.monotonic() - t0
        assert status == 200 and json.loads(body)[0]["title"] == "Many-shot Jailbreaking"
        assert waited <= 2.0, f"the normal question waited {waited:.1f}s behind abandoned ones"
        assert len(started) <= 3  # the abandoned questions never ran, but for the one or two already started
        assert app.state.queue.dropped >= 25
        deadline = time.monotonic() + 5
        while app.state.queue.pending and time.monotonic() < deadline:
            time.sleep(0.05)
        assert app.state.queue.pending == 0


def test_a_full_queue_answers_503(live: LiveIndex, monkeypatch: pytest.MonkeyPatch) -> None:
    gate = threading.Event()
    real_run = SearchRequest.run

    def held_run(self: SearchRequest, index: DigestIndex) -> object:
        gate.wait(10)
        return real_run(self, index)

    monkeypatch.setattr(SearchRequest, "run", held_run)
    app = create_app(live, rate_limit=0, max_queue=2)
    with _uvicorn(app) as port:
        results: list[int] = []
        threads = [threading.Thread(target=lambda: results.append(_get(port, "/search?mode=lexical&q=model")[0]))
                   for _ in range(2)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 5
        while app.state.queue.pending < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        status, body = _get(port, "/search?mode=lexical&q=model")
        assert status == 503 and json.loads(body)["error"] == "ServerBusy"
        assert _get(port, "/healthz")[0] == 200  # liveness does not queue
        gate.set()
        for t in threads:
            t.join(10)
        assert results == [200, 200]


def test_rotating_forwarded_for_does_not_lift_the_rate_limit(live: LiveIndex) -> None:
    app = create_app(live, rate_limit=1)
    with _uvicorn(app) as port:
        codes = [_get(port, "/info", {"X-Forwarded-For": f"10.0.0.{i}"})[0] for i in range(10)]
    assert codes[:2] == [200, 200] and codes.count(429) >= 7, codes
    # Behind a proxy (--trust-proxy), the proxy's X-Forwarded-For names the client the limit counts.
    app = create_app(live, rate_limit=1)
    with _uvicorn(app, trust_proxy=True) as port:
        codes = [_get(port, "/info", {"X-Forwarded-For": f"10.0.0.{i}"})[0] for i in range(10)]
    assert codes == [200] * 10


def test_slow_headers_are_cut_off(live: LiveIndex) -> None:
    with _uvicorn(create_app(live, rate_limit=0), header_timeout=0.5) as port:
        t0 = time.monotonic()
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n")  # headers never finished
        assert sock.recv(100) == b""  # closed by the server
        assert time.monotonic() - t0 < 3
        sock.close()
        # The next request on a kept-alive connection gets the same deadline.
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        answer = b""
        while not re.search(rb"\r\n\r\n\{.*\}$", answer, re.S):  # the whole response
            answer += sock.recv(1000)
        assert answer.startswith(b"HTTP/1.1 200")
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        assert sock.recv(100) == b""
        sock.close()


def test_the_connection_cap_closes_the_oldest_idle_connection(live: LiveIndex) -> None:
    with _uvicorn(create_app(live, rate_limit=0), max_connections=5) as port:
        idle = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(5)]
        time.sleep(0.2)
        assert _get(port, "/healthz")[0] == 200  # a newcomer gets in: an idle connection makes room
        idle[0].settimeout(2)
        assert idle[0].recv(100) == b""  # the oldest was closed
        for sock in idle:
            sock.close()


def test_log_throttle_lets_no_flood_through() -> None:
    from digest_rag.frontends.connections import LogThrottle

    throttle = LogThrottle(interval=60, burst=20)
    logger = logging.getLogger("test.throttle")
    passed = []
    for i in range(10_000):
        try:
            raise OSError(errno.EMFILE, "Too many open files")
        except OSError:
            record = logger.makeRecord(logger.name, logging.ERROR, __file__, 1,
                                       "socket.accept() out of system resource", None, sys.exc_info())
        if throttle.filter(record):
            passed.append(record)
    assert len(passed) == 1 and passed[0].exc_info is None  # one line, no traceback
    for i in range(1_000):  # distinct messages: at most `burst` per interval
        record = logger.makeRecord(logger.name, logging.ERROR, __file__, 1, f"error {i}", None, None)
        if throttle.filter(record):
            passed.append(record)
    assert len(passed) == 20
    assert "[9999 similar log records held back]" in passed[1].getMessage()  # the next one passed says so
    assert throttle.suppressed == 1_000 - 19


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="needs /proc and RLIMIT_NOFILE semantics of Linux")
def test_idle_connections_beyond_the_open_file_limit(seed_lexical_index_dir: Path, tmp_path: Path) -> None:
    # 1,100 idle connections to a serve limited to 1,024 open files: before, accept() met EMFILE, asyncio wrote a
    # traceback per attempt (338 MB of stderr a minute) and /healthz failed until the run ended.
    import resource
    import subprocess

    from digest_rag.testing import free_port

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1300:
        pytest.skip("this test needs 1,300 open files for its own client sockets")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1300) if hard == resource.RLIM_INFINITY
                                                else min(max(soft, 1300), hard), hard))
    port = free_port()
    stderr_path = tmp_path / "stderr"
    with stderr_path.open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "digest_rag.frontends.cli", "serve", "--index", str(seed_lexical_index_dir),
             "--port", str(port)],
            stdout=subprocess.DEVNULL, stderr=stderr,
            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024)),  # noqa: PLW1509
        )
    socks: list[socket.socket] = []
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, stderr_path.read_text()[-2000:]
            try:
                if _get(port, "/healthz", timeout=2)[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "serve did not start"
            time.sleep(0.2)
        for _ in range(1_100):
            try:
                socks.append(socket.create_connection(("127.0.0.1", port), timeout=5))
            except OSError:
                break
        assert len(socks) >= 1_050
        time.sleep(3)  # idle, the server at its cap
        assert stderr_path.stat().st_size < 1_000_000
        for sock in socks:
            sock.close()
        socks.clear()
        t0 = time.monotonic()
        while True:
            try:
                status, _ = _get(port, "/healthz", timeout=2)
                if status == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() - t0 <= 5, "/healthz did not answer within 5 s of the connections closing"
            time.sleep(0.1)
        assert proc.poll() is None
    finally:
        for sock in socks:
            sock.close()
        proc.terminate()
        proc.wait(timeout=20)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert stderr_path.stat().st_size < 1_000_000
def test_search_offset_pages_continue_the_ranking(client: TestClient) -> None:
    params = {"q": JAILBREAK, "mode": "lexical"}
    whole = client.get("/search", params={**params, "k": 6}).json()
    page = client.get("/search", params={**params, "k": 3, "offset": 3})
    assert page.status_code == 200
    assert [(h["rank"], h["paper_id"]) for h in page.json()] == [(h["rank"], h["paper_id"]) for h in whole[3:]]
    for bad in ("-1", "1001", "two"):
        _assert_error(client.get("/search", params={**params, "offset": bad}), 400, "UsageError")


def test_similar_endpoint(client: TestClient, live: LiveIndex) -> None:
    pid = "many-shot-jailbreaking-2024-04-01"
    res = client.get(f"/similar/{pid}", params={"k": 4, "mode": "lexical"})
    assert res.status_code == 200 and res.headers["x-index-generation"] == live.generation
    hits = res.json()
    assert len(hits) == 4 and pid not in {h["paper_id"] for h in hits} and [h["rank"] for h in hits] == [1, 2, 3, 4]
    second = client.get(f"/similar/{pid}", params={"k": 2, "mode": "lexical", "offset": 2}).json()
    assert [h["paper_id"] for h in second] == [h["paper_id"] for h in hits[2:]]
    _assert_error(client.get("/similar/no-such-paper"), 404, "PaperNotFoundError")
    _assert_error(client.get(f"/similar/{pid}", params={"k": 0}), 400, "UsageError")
    assert "/similar/{paper_id}" in client.get("/openapi.json").json()["paths"]


def test_similar_needs_the_token_like_search(live: LiveIndex) -> None:
    guarded = TestClient(create_app(live, token=TOKEN, rate_limit=0), base_url=LOCAL)
    _assert_error(guarded.get("/similar/many-shot-jailbreaking-2024-04-01"), 401, "Unauthorized")


def test_access_log_one_line_per_request_without_the_question(live: LiveIndex,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    logged = TestClient(create_app(live, rate_limit=0.5, access_log=True), base_url=LOCAL)  # a burst of 1
    with caplog.at_level("INFO", logger="digest_rag.access"):
        assert logged.get("/search", params={"q": JAILBREAK, "k": 2, "mode": "lexical"}).status_code == 200
        logged.get("/search", params={"q": "secret question", "mode": "lexical"})  # over the rate: 429
        logged.get("/healthz")
        logged.get("/papers/a%0Afake%20line")  # an encoded newline must not split the line
    lines = [r.getMessage() for r in caplog.records if r.name == "digest_rag.access"]
    assert len(lines) == 4 and all("\n" not in line for line in lines)
    assert re.fullmatch(r'testclient - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d \+0000\] "GET /search HTTP/1\.1" 200 \d+ '
                        r"\d+\.\dms", lines[0]), lines[0]
    assert '"GET /search HTTP/1.1" 429 ' in lines[1] and '"GET /healthz HTTP/1.1" 200 ' in lines[2]
    assert '"GET /papers/' in lines[3] and " 429 " in lines[3]  # refused requests are logged too
    assert not any("secret" in line or "q=" in line or "%EA%B8%B4" in line for line in lines)


def test_access_line_cannot_be_split_or_forged() -> None:
    from digest_rag.frontends.server import access_line

    scope = {"type": "http", "method": "GET", "path": "/papers/a\n1.2.3.4 - - [x] \"GET /ok\" 200 탈옥",
             "query_string": "q=탈옥\n".encode(), "headers": [], "client": ("10.0.0.1", 5), "http_version": "1.1"}
    line = access_line(scope, 404, "12", 0.0123, log_queries=True)
    assert "\n" not in line and line.count('"') == 2 and line.startswith("10.0.0.1 - - [")
    assert line.endswith('"GET /papers/a%0A1.2.3.4%20-%20-%20%5Bx%5D%20%22GET%20/ok%22%20200%20%ED%83%88%EC%98%A5'
                         '?q=%ED%83%88%EC%98%A5%0A HTTP/1.1" 404 12 12.3ms'), line
    assert "q=" not in access_line(scope, 404, None, 0.0, log_queries=False)


def test_access_log_with_queries_and_off(live: LiveIndex, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("INFO", logger="digest_rag.access"):
        TestClient(create_app(live, rate_limit=0, access_log=True, log_queries=True), base_url=LOCAL).get(
            "/search", params={"q": "distillation", "k": 1, "mode": "lexical"})
        TestClient(create_app(live, rate_limit=0), base_url=LOCAL).get("/healthz")  # the library default: no log
    (line,) = [r.getMessage() for r in caplog.records if r.name == "digest_rag.access"]
    assert '"GET /search?q=distillation&k=1&mode=lexical HTTP/1.1" 200 ' in line


def test_the_startup_line_strips_escapes_from_the_index_path(tmp_path: Path, seed_lexical_index_dir: Path,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 23 item 6: an index directory's name reached stderr unfiltered in serve's "serving ..." line."""
    import shutil

    import uvicorn

    from digest_rag.frontends import server

    ix = Path(shutil.copytree(seed_lexical_index_dir, tmp_path / "ix\x1b]0;pwned\x07"))
    monkeypatch.setattr(uvicorn.Server, "run", lambda self: None)  # the line is printed just before serving
    server.serve(ix, port=0)
    err = capsys.readouterr().err
    assert "serving " in err and "\x1b" not in err and "\x07" not in err
