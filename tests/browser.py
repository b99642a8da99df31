"""The project's headless-browser helper: Debian's ``chromium`` driven through ``chromedriver``
(Debian package ``chromium-driver``) with Selenium. `make browser` (run by `make test`) installs
both packages.

Use the ``browser`` fixture (registered for every test by ``tests/conftest.py``)::

    @pytest.mark.integration
    @pytest.mark.browser
    def test_page(browser: Browser) -> None:
        browser.open("http://127.0.0.1:9100/")
        browser.wait_for_selector("svg .track")
        browser.wait_for_js("document.querySelectorAll('.alert').length > 0")
        assert "KR" in browser.text("h1")
        browser.screenshot("after-alerts")  # optional extra artefacts

When the test ends (passed or failed) the fixture saves the whole page as
``.trilink/artifacts/screenshots/<test name>.png`` (gitignored) and always quits the browser.
Outside pytest, ``with headless_chromium("name") as browser:`` does the same.

Waits fail with :class:`BrowserTimeoutError`, whose message carries the page's URL, title and the
start of its text, so a failed wait says what the page showed instead.
"""

from __future__ import annotations

import base64
import re
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.common.exceptions import JavascriptException, NoSuchElementException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from tests import REPO_ROOT

SCREENSHOT_DIR = REPO_ROOT / ".trilink" / "artifacts" / "screenshots"
DEFAULT_TIMEOUT_S = 30.0
WINDOW_SIZE_PX = (1400, 1000)
_POLL_INTERVAL_S = 0.2
# Debian's binaries; the wrapper /usr/bin/chromium sets Debian's flags before the real binary.
_CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
_CHROMEDRIVER_NAMES = ("chromedriver",)


class BrowserTimeoutError(AssertionError):
    """A wait for a selector or a JS condition ran out of time (an assertion: the page was wrong)."""


class BrowserMissingError(RuntimeError):
    """chromium or chromedriver is not on PATH (install with `make browser`)."""


def _which(names: tuple[str, ...]) -> str:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    raise BrowserMissingError(
        f"none of {', '.join(names)} on PATH: run `make browser` (Debian packages chromium, chromium-driver)"
    )


def artefact_name(test_name: str) -> str:
    """A file-name-safe form of a pytest test name (``test_x[US-1]`` -> ``test_x[US-1]``, no slashes)."""
    return re.sub(r"[^A-Za-z0-9_.\[\]-]+", "_", test_name).strip("_") or "browser"


class Browser:
    """One headless Chromium window. Small on purpose: open, wait, read, screenshot."""

    def __init__(self, driver: webdriver.Chrome, name: str) -> None:
        self.driver = driver  # the Selenium driver itself, for anything this class does not cover
        self.name = artefact_name(name)

    def open(self, url: str) -> None:
        """Load ``url`` and wait until its document has loaded (not for scripts' later work)."""
        self.driver.get(url)

    def evaluate(self, expression: str) -> Any:
        """The value of a JS expression in the page (JSON-like: numbers, strings, lists, dicts)."""
        return self.driver.execute_script(f"return ({expression});")

    def wait_for_js(self, expression: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> Any:
        """Poll the JS expression until it is truthy and return its value; a JS error counts as
        not yet (the page may still be loading its scripts)."""
        deadline = time.monotonic() + timeout_s
        last_error = ""
        while True:
            try:
                value = self.evaluate(expression)
            except JavascriptException as exc:
                value, last_error = None, exc.msg or str(exc)
            if value:
                return value
            if time.monotonic() >= deadline:
                hint = f"; last JS error: {last_error}" if last_error else ""
                raise BrowserTimeoutError(
                    f"{expression!r} not true after {timeout_s:g} s{hint}; {self._describe()}"
                )
            time.sleep(_POLL_INTERVAL_S)

    def wait_for_selector(self, css: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        """Wait until at least one element matches the CSS selector."""
        deadline = time.monotonic() + timeout_s
        while not self.driver.find_elements(By.CSS_SELECTOR, css):
            if time.monotonic() >= deadline:
                raise BrowserTimeoutError(
                    f"no element matches {css!r} after {timeout_s:g} s; {self._describe()}"
                )
            time.sleep(_POLL_INTERVAL_S)

    def text(self, css: str = "body") -> str:
        """The visible text of the first element matching ``css`` (the whole page by default)."""
        try:
            return str(self.driver.find_element(By.CSS_SELECTOR, css).text)
        except NoSuchElementException as exc:
            raise AssertionError(f"no element matches {css!r}; {self._describe()}") from exc

    def texts(self, css: str) -> list[str]:
        """The visible text of every element matching ``css``, in document order."""
        return [str(element.text) for element in self.driver.find_elements(By.CSS_SELECTOR, css)]

    def console_errors(self) -> list[str]:
        """The page's console messages of level SEVERE since the last call (JS errors, failed loads)."""
        entries: list[dict[str, Any]] = self.driver.get_log("browser")  # type: ignore[no-untyped-call]
        return [str(entry.get("message", "")) for entry in entries if entry.get("level") == "SEVERE"]

    def screenshot(self, label: str | None = None, *, full_page: bool = True) -> Path:
        """Save the page as ``<test name>.png`` (or ``<test name>-<label>.png``) under
        :data:`SCREENSHOT_DIR` and return its path: the whole scrollable page, or only the
        window with ``full_page=False``."""
        SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
        stem = self.name if label is None else f"{self.name}-{artefact_name(label)}"
        path = SCREENSHOT_DIR / f"{stem}.png"
        if full_page:
            # DevTools' capture beyond the viewport: no window resize, so no re-layout.
            size = self.driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
            clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
            shot = self.driver.execute_cdp_cmd(
                "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip}
            )
            path.write_bytes(base64.b64decode(shot["data"]))
        elif not self.driver.save_screenshot(str(path)):
            raise RuntimeError(f"chromium did not save a screenshot to {path}")
        return path

    def _describe(self) -> str:
        try:
            body = self.driver.find_element(By.TAG_NAME, "body").text
            return f"page {self.driver.current_url} ({self.driver.title!r}) shows: {body[:400]!r}"
        except WebDriverException as exc:
            return f"page unreadable: {exc.msg}"


@contextmanager
def headless_chromium(name: str, window_size_px: tuple[int, int] = WINDOW_SIZE_PX) -> Iterator[Browser]:
    """Start headless Chromium through chromedriver; on exit save ``<name>.png`` of the last page
    (also when the body raised) and always quit the browser and its driver."""
    options = webdriver.ChromeOptions()
    options.binary_location = _which(_CHROMIUM_NAMES)
    for flag in (
        "--headless=new",
        "--no-sandbox",  # tests run as root in CI, where Chromium's sandbox refuses to start
        "--disable-dev-shm-usage",  # small /dev/shm in containers
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
        "--disable-background-networking",
        f"--window-size={window_size_px[0]},{window_size_px[1]}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # An explicit chromedriver path: Selenium then never runs its own driver download.
    service = Service(executable_path=_which(_CHROMEDRIVER_NAMES))
    driver = webdriver.Chrome(options=options, service=service)
    try:
        driver.set_page_load_timeout(DEFAULT_TIMEOUT_S)
        browser = Browser(driver, name)
        try:
            yield browser
        finally:
            # A crashed page has nothing to show; the test's own error says why.
            with suppress(WebDriverException):
                browser.screenshot()
    finally:
        driver.quit()


@pytest.fixture
def browser(request: pytest.FixtureRequest) -> Iterator[Browser]:
    """A headless Chromium for one test, screenshot saved as ``<test name>.png`` at the end."""
    with headless_chromium(request.node.name) as opened:
        yield opened
