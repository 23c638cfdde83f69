"""`digest-rag serve`: every endpoint through the ASGI test client, bad input, token, rate limit, hot reload, the page."""

from __future__ import annotations

import json
import re
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the 'serve' extra is not installed")
from fastapi.testclient import TestClient  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from digest_rag import DigestIndex, UsageError  # noqa: E402
from digest_rag.frontends.cli import app as cli_app  # noqa: E402
from digest_rag.frontends.live import LiveIndex  # noqa: E402
from digest_rag.frontends.server import STATIC_DIR, RateLimiter, check_bind, create_app  # noqa: E402
from digest_rag.frontends.service import MAX_K  # noqa: E402

JAILBREAK = "긴 컨텍스트를 악용하는 탈옥 공격"


@pytest.fixture(scope="module")
def live(seed_index_dir: Path) -> Iterator[LiveIndex]:
    with LiveIndex(seed_index_dir, interval=0) as li:
        yield li


@pytest.fixture(scope="module")
def client(live: LiveIndex) -> TestClient:
    return TestClient(create_app(live, rate_limit=0))


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


def test_search_filters_and_modes(client: TestClient) -> None:
    for mode in ("hybrid", "dense", "lexical"):
        res = client.get("/search", params={"q": "Gemma 2 지식 증류", "k": 2, "mode": mode})
        assert res.status_code == 200 and len(res.json()) == 2
        assert all(mode in h["modes"] or mode == "hybrid" for h in res.json())
    res = client.get("/search", params={"q": "distillation", "mode": "lexical", "from": "2024-06-01",
                                        "to": "2024-06-30", "lang": "en"})
    assert res.status_code == 200 and res.json()
    assert all("2024-06-01" <= h["date"] <= "2024-06-30" and h["language"] == "en" for h in res.json())
    tagged = client.get("/search", params=[("q", "model"), ("mode", "lexical"), ("tag", "llm"), ("tag", "#rlhf")])
    assert tagged.status_code == 200 and tagged.json()
    assert all({"llm", "rlhf"} & set(h["tags"]) for h in tagged.json())


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
    guarded = TestClient(create_app(live, token="s3cret-token", rate_limit=0))
    for path in ("/search?q=탈옥&mode=lexical", "/info", "/papers/x"):
        _assert_error(guarded.get(path), 401, "Unauthorized")
        _assert_error(guarded.get(path, headers={"Authorization": "Bearer wrong"}), 401, "Unauthorized")
        _assert_error(guarded.get(path, headers={"Authorization": "s3cret-token"}), 401, "Unauthorized")
    ok = guarded.get("/search", params={"q": "탈옥", "mode": "lexical"}, headers={"Authorization": "Bearer s3cret-token"})
    assert ok.status_code == 200 and ok.json()
    assert guarded.get("/healthz").status_code == 200 and guarded.get("/").status_code == 200  # no data there


def test_non_loopback_bind_needs_a_token() -> None:
    for host in ("127.0.0.1", "::1", "localhost", "127.0.0.2"):
        check_bind(host, None)
    for host in ("0.0.0.0", "::", "192.168.1.10", "example.org"):
        with pytest.raises(UsageError, match="token"):
            check_bind(host, None)
        check_bind(host, "t")
    res = CliRunner().invoke(cli_app, ["serve", "--host", "0.0.0.0", "--index", "nowhere"], env={"DIGEST_RAG_TOKEN": ""})
    assert res.exit_code == 1 and res.stderr.startswith("error: ") and res.stderr.count("\n") == 1


def test_rate_limit(live: LiveIndex) -> None:
    limited = TestClient(create_app(live, rate_limit=1))
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
    calls = set(re.findall(r'"(/(?:search|papers|info)[^"?]*)', script))
    assert calls == {"/search", "/papers/", "/info"}
    fields = json.loads(re.search(r"const FIELDS = (\[.*?\]);", script).group(1))
    accepted = {p["name"] for p in schema["paths"]["/search"]["get"]["parameters"]}
    assert set(fields) | {"highlight"} <= accepted and "highlight" in script
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
        client = TestClient(create_app(li, rate_limit=0))
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
