"""The search page in a real headless browser: Chromium from the OS packages, driven by Playwright.

Runs where `chromium` (apt: chromium chromium-driver) and the `playwright` Python package are
installed; skipped with the reason elsewhere. Playwright's own browser download is not used:
`executable_path` points at the system binary. The screenshot is saved under the test's tmp dir
(and copied to $DIGEST_RAG_SCREENSHOT when set, which is how docs/serve-page.png is made).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from digest_rag.testing import running_server

JAILBREAK = "긴 컨텍스트를 악용하는 탈옥 공격"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def _chromium() -> str:
    for name in ("/usr/bin/chromium", shutil.which("chromium") or "", shutil.which("chromium-browser") or ""):
        if name and Path(name).is_file():
            return name
    pytest.skip("Chromium is not installed (apt-get install chromium chromium-driver)")


def test_search_page_in_chromium(seed_lexical_index_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("fastapi", reason="the 'serve' extra is not installed")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    chromium = _chromium()
    shot = tmp_path / "serve-page.png"
    with running_server(seed_lexical_index_dir, env={"HF_HUB_OFFLINE": "1"}) as url, sync_api.sync_playwright() as pw:
        # A fresh profile (--user-data-dir): Playwright takes it as launch_persistent_context's first argument.
        browser = pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=chromium, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1100, "height": 900}, locale="ko-KR",
        )
        try:
            page = browser.new_page()
            outside: list[str] = []
            page.on("request", lambda r: None if r.url.startswith(url) else outside.append(r.url))
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(url + "/")
            page.wait_for_selector("#footer:has-text('논문 29편')")  # /info answered
            page.fill("#q", JAILBREAK)
            page.press("#q", "Enter")
            page.wait_for_selector("#results li.hit")
            titles = page.locator("#results li.hit h2").all_inner_texts()
            assert "Many-shot Jailbreaking" in titles[:3]
            first = page.locator("#results li.hit").first
            assert first.locator(".title-ko").inner_text() == "다발성 탈옥"
            assert first.locator(".snippet mark").count() > 0  # the library's highlighter, in HTML
            assert first.locator(".meta .date").inner_text() == "2024-04-01"
            assert not page.locator("#token-box").is_visible()  # no token on this server
            assert "q=" in page.url  # the question is in the address, to share or reload
            page.screenshot(path=str(shot), full_page=False)
            first.locator("h2 a").click()  # the paper's whole text
            page.wait_for_selector("#paper:not([hidden]) .section-text")
            assert "many-shot jailbreaking" in page.locator("#paper-body").inner_text().lower()
            assert page.locator("#paper-body h3").count() >= 2
            page.select_option("#mode", "lexical")  # a filter change searches again
            page.wait_for_selector("#status:has-text('키워드')")
            # Paging: k=5, the next page continues the ranking (ranks 6..10) and can go back.
            page.select_option("#k", "5")
            page.wait_for_selector("#status:has-text('1–5')")
            first_page = page.locator("#results li.hit h2").all_inner_texts()
            assert page.locator("#prev-page").is_disabled() and page.locator("#next-page").is_enabled()
            page.click("#next-page")
            page.wait_for_selector("#status:has-text('6–10')")
            assert "offset=5" in page.url
            second_page = page.locator("#results li.hit h2").all_inner_texts()
            assert second_page and not set(second_page) & set(first_page)
            # The numbers (h2::before, counter "hit") continue: the list's counter starts after the 5 skipped.
            assert page.locator("#results").evaluate("r => getComputedStyle(r).counterReset") == "hit 5"
            page.click("#prev-page")
            page.wait_for_selector("#status:has-text('1–5')")
            assert page.locator("#results li.hit h2").all_inner_texts() == first_page
            # More like this: the first hit's neighbours, without itself.
            jailbreak = page.locator("#results li.hit", has_text="Many-shot Jailbreaking").first
            jailbreak.locator("a.similar").click()
            page.wait_for_selector("#status:has-text('More like this')")
            page.wait_for_selector("#results li.hit")
            assert "Many-shot Jailbreaking" not in page.locator("#results li.hit h2").all_inner_texts()
            assert "#similar=many-shot-jailbreaking-2024-04-01" in page.url
            # show: a paper's whole text from its address alone
            page.goto(url + "/#paper=many-shot-jailbreaking-2024-04-01")
            page.wait_for_selector("#paper:not([hidden]) .section-text")
            assert page.locator("#paper-body h2").inner_text() == "Many-shot Jailbreaking"
            assert page.locator("#paper-body a.similar").count() == 1
            assert not errors, errors
            assert not outside, f"the page loaded something from elsewhere: {outside}"
        finally:
            browser.close()
    assert shot.stat().st_size > 10_000
    target = os.environ.get("DIGEST_RAG_SCREENSHOT")
    if target:
        shutil.copy(shot, target)


# Words of Hangul text in the results and the paper panel whose characters lie on more than one line.
_BROKEN_KOREAN_WORDS = """() => {
  const broken = [];
  for (const node of document.querySelectorAll("#results .snippet, #results .title-ko, #paper-body .section-text")) {
    const walker = document.createTreeWalker(node, NodeFilter.SHOW_TEXT);
    for (let t = walker.nextNode(); t; t = walker.nextNode()) {
      for (const m of t.data.matchAll(/\\S+/g)) {
        if (!/[\\uac00-\\ud7a3]{2}/.test(m[0])) continue;
        const r = document.createRange();
        r.setStart(t, m.index); r.setEnd(t, m.index + m[0].length);
        const tops = new Set([...r.getClientRects()].filter((x) => x.width > 0).map((x) => Math.round(x.top)));
        if (tops.size > 1) broken.push(m[0]);
      }
    }
  }
  return broken;
}"""


def test_page_keeps_korean_words_marks_titles_and_offers_only_lexical(seed_lexical_index_dir: Path,
                                                                      tmp_path: Path) -> None:
    """Issue 22 item 5: Korean wrapped mid-word ("상대적으/로"), titles were never highlighted, Dense and Hybrid
    stayed selectable on a lexical-only index, the full text opened below every result, and form controls
    named no Hangul font."""
    pytest.importorskip("fastapi", reason="the 'serve' extra is not installed")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    chromium = _chromium()
    with running_server(seed_lexical_index_dir, env={"HF_HUB_OFFLINE": "1"}) as url, sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=chromium, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 430, "height": 900}, locale="ko-KR",  # a phone's width: many line breaks
        )
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(url + "/?mode=dense&q=" + JAILBREAK)  # an address asking for a mode this index lacks
            page.wait_for_selector("#results li.hit")
            modes = page.eval_on_selector_all("#mode option", "os => os.map(o => [o.value, o.disabled])")
            assert modes == [["hybrid", True], ["dense", True], ["lexical", False]]
            assert page.input_value("#mode") == "lexical"
            first = page.locator("#results li.hit").first
            assert first.locator(".title-ko").inner_text() == "다발성 탈옥"
            assert first.locator(".title-ko mark").inner_text() == "탈옥"  # the title's match is marked
            for selector in ("body", "#q", "#go", "#mode"):
                family = page.eval_on_selector(selector, "e => getComputedStyle(e).fontFamily")
                assert "Noto Sans CJK KR" in family and "Malgun Gothic" in family, (selector, family)
            assert page.eval_on_selector(".snippet", "e => getComputedStyle(e).wordBreak") == "keep-all"
            first.locator("h2 a").click()
            page.wait_for_selector("#paper:not([hidden]) .section-text")
            # The text opens over the results where the reader is: in view, the list not scrolled away.
            box = page.locator("#paper").bounding_box()
            assert box is not None and box["y"] < 50 and box["height"] > 400
            assert page.evaluate("window.scrollY") == 0
            assert page.eval_on_selector("#paper", "e => getComputedStyle(e).position") == "fixed"
            broken = page.evaluate(_BROKEN_KOREAN_WORDS)
            assert not broken, f"Korean words broken across lines: {broken[:10]}"
            page.keyboard.press("Escape")
            page.wait_for_selector("#paper", state="hidden")
            assert not errors, errors
        finally:
            browser.close()
