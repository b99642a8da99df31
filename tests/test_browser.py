"""The headless-browser helper (tests/browser.py) against a real Chromium and a page served here."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.browser import SCREENSHOT_DIR, Browser, BrowserTimeoutError, artefact_name

# The page fills its list 0.5 s after loading, so the waits have something to wait for.
_PAGE = b"""<!doctype html><html><head><title>helper check</title></head><body>
<h1>trilink</h1><ul id="list"></ul>
<script>
setTimeout(() => {
  for (const ally of ["US", "JP", "KR"]) {
    const li = document.createElement("li"); li.className = "ally"; li.textContent = ally;
    document.getElementById("list").appendChild(li);
  }
  window.ready = 3;
}, 500);
</script></body></html>"""


class _Page(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(_PAGE)))
        self.end_headers()
        self.wfile.write(_PAGE)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def page_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.mark.integration
@pytest.mark.browser
def test_waits_reads_and_screenshots(browser: Browser, page_url: str) -> None:
    browser.open(page_url)
    browser.wait_for_selector("li.ally")
    assert browser.wait_for_js("window.ready") == 3
    assert browser.texts("li.ally") == ["US", "JP", "KR"]
    assert browser.text("h1") == "trilink"
    assert browser.evaluate("document.title") == "helper check"
    shot = browser.screenshot("extra")
    assert shot == SCREENSHOT_DIR / "test_waits_reads_and_screenshots-extra.png"
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    window = browser.screenshot("window", full_page=False)
    assert window.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert browser.console_errors() == []


@pytest.mark.integration
@pytest.mark.browser
def test_a_wait_that_never_holds_fails_saying_what_the_page_showed(browser: Browser, page_url: str) -> None:
    browser.open(page_url)
    with pytest.raises(BrowserTimeoutError, match=r"no element matches '\.missing'.*trilink"):
        browser.wait_for_selector(".missing", timeout_s=1.0)
    with pytest.raises(BrowserTimeoutError, match=r"window\.nothing"):
        browser.wait_for_js("window.nothing", timeout_s=1.0)


@pytest.mark.unit
def test_artefact_names_are_file_names() -> None:
    assert artefact_name("test_console[US]") == "test_console[US]"
    assert artefact_name("test_x[a/b c]") == "test_x[a_b_c]"
