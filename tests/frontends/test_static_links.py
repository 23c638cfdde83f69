"""Issue 23, item 10: the search page turns only http(s) URLs from the corpus into links.

A JSONL record can carry any string as a URL; ``javascript:`` and ``data:`` ones
became hrefs (the CSP stopped them). The page's `webUrl` now lets through
http(s) only, and every href the page writes is either its own ``#paper=`` / ``#similar=``
anchor or a `webUrl` result.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

APP_JS = Path(__file__).resolve().parents[2] / "digest_rag" / "static" / "app.js"


def test_every_href_is_an_anchor_or_a_checked_web_url() -> None:
    src = APP_JS.read_text(encoding="utf-8")
    hrefs = re.findall(r"[{,]\s*href(?:\s*:\s*([^,}]+))?\s*[,}]", src)
    assert hrefs, "no href found: the check reads the wrong file"
    for expr in hrefs:
        expr = expr.strip()
        # The page's own anchors (a paper's text, its "more like this" list) or a checked web URL.
        assert expr.startswith(('"#paper="', '"#similar="')) or expr in ("", "paperUrl"), f"unchecked href: {expr!r}"
    assert "const paperUrl = (hit.urls || []).map(webUrl)" in src and "const href = webUrl(u);" in src


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_web_url_lets_through_http_and_https_only() -> None:
    src = APP_JS.read_text(encoding="utf-8")
    fn = re.search(r"function webUrl\(u\) \{.*?\n\}\n", src, re.S)
    assert fn is not None
    cases = ["https://arxiv.org/abs/2401.00001", "http://example.org/x?y=1", "javascript:alert(1)",
             " JavaScript:alert(1)", "java\tscript:alert(1)", "data:text/html,<script>alert(1)</script>",
             "vbscript:x", "file:///etc/passwd", "//evil.example/x", "not a url", "", "HTTPS://EXAMPLE.ORG/"]
    script = fn.group(0) + f"console.log(JSON.stringify({json.dumps(cases)}.map(webUrl)));"
    out = json.loads(subprocess.run(["node", "-e", script], capture_output=True, text=True, timeout=30,
                                    check=True).stdout)
    assert out == ["https://arxiv.org/abs/2401.00001", "http://example.org/x?y=1", None, None, None, None, None,
                   None, None, None, None, "https://example.org/"]
