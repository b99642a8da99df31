"""trilink's console templates rendered by the real Prometheus during a real run.

The run is the ``real`` fixture of test_real_services.py (three ally service processes on the
session's Kafka broker, the real sensor publisher playing a scenario, Prometheus from
``start_prometheus`` with the consoles): this module gets its own instance of it, since a
module-scoped fixture lives per module. Checks: every console Prometheus renders answers 200
without a template error, and headless Chromium shows a number (not NaN, not "no data") for
every ally on the overview and on a per-ally console, with screenshots kept under
``.trilink/artifacts/screenshots/``.
"""

from __future__ import annotations

import html
import re
import urllib.error
import urllib.request
from typing import Any

import pytest

from tests.browser import Browser
from tests.monitoring import test_real_services
from tests.monitoring.test_live import per_ally, wait_for
from tests.monitoring.test_real_services import RealRun
from trilink.monitoring import names as n
from trilink.monitoring.prometheus import console_urls

pytestmark = [pytest.mark.integration, pytest.mark.monitoring]

# The same module-scoped run fixture, instantiated for this module.
real = test_real_services.real

# What Prometheus prints when a console's template fails (parse or execution, a bad query).
TEMPLATE_ERROR = re.compile(r"error executing template|template: __console_|parse error|bad_data", re.I)
# The ally whose console the browser test opens: the one with the most hops to show.
BROWSED_ALLY = "KR"


@pytest.fixture(scope="module")
def recorded(real: RealRun) -> RealRun:
    """The run once Prometheus' recording rules have an end-to-end p99 for every ally: the
    consoles read recorded series, and a rule evaluated before the first scrape of the burst
    gives NaN until the next evaluation."""
    for name in ("p50_1m", "p99_1m"):
        wait_for(
            f"a recorded end_to_end {name} for every ally",
            per_ally(real.api, f'ally_hop:trilink_ally_hop_latency_seconds:{name}{{hop="end_to_end"}}'),
        )
    wait_for(
        "every ally's sensors heard",
        per_ally(real.api, "ally_sensor:trilink_ally_sensor_last_seen_timestamp_seconds:max"),
    )
    # The overview's rates too: each is evaluated on its own, so a rate whose counter first
    # appeared at the last scrape is still absent when the percentiles are already there.
    for what, expr in (
        ("received", "sum by (ally) (ally_kind:trilink_ally_events_received:rate1m)"),
        (
            "delivered",
            'sum by (ally) (ally_kind_channel:trilink_ally_events_delivered:rate1m{channel="kafka"})',
        ),
    ):
        wait_for(f"a recorded {what} rate for every ally", per_ally(real.api, expr))
    return real


def fetch(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return int(resp.status), resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def console_pages(real: RealRun) -> dict[str, str]:
    base = f"{real.prometheus.url}/consoles"
    return {
        **console_urls(real.prometheus.url),
        "index": f"{base}/index.html",
        "ally without a choice": f"{base}/trilink-ally.html",
    }


def value_cells(page: str, row_attr: str) -> dict[str, list[tuple[str, str]]]:
    """``{row key: [(cell class, cell text), ...]}`` of the rows carrying ``data-<row_attr>``."""
    rows: dict[str, list[tuple[str, str]]] = {}
    for match in re.finditer(rf'<tr data-{row_attr}="([^"]+)">(.*?)</tr>', page, re.S):
        cells = re.findall(r'<td class="([^"]*)">(.*?)</td>', match.group(2), re.S)
        rows[match.group(1)] = [
            (cls, html.unescape(re.sub(r"<[^>]+>", "", text)).strip()) for cls, text in cells
        ]
    return rows


def assert_numbers(where: str, cells: list[tuple[str, str]] | list[list[str]]) -> None:
    assert cells, f"{where}: no value cells"
    for cls, text in cells:
        assert "num" in cls.split() and "nodata" not in cls, f"{where}: {cls!r} {text!r}"
        assert re.search(r"\d", text) and "NaN" not in text and "Inf" not in text, f"{where}: {text!r}"


def test_every_console_renders_without_template_errors(recorded: RealRun) -> None:
    for name, url in console_pages(recorded).items():
        status, page = fetch(url)
        assert status == 200, f"{name} {url}: HTTP {status}: {page[:500]}"
        assert "</html>" in page, f"{name}: truncated page"
        assert not TEMPLATE_ERROR.search(page), f"{name}: {TEMPLATE_ERROR.search(page)}"


def test_overview_served_by_prometheus_has_numbers_for_every_ally(recorded: RealRun) -> None:
    status, page = fetch(console_urls(recorded.prometheus.url)["overview"])
    assert status == 200
    rows = value_cells(page, "ally")
    assert set(rows) == set(n.ALLIES), sorted(rows)
    for ally, cells in rows.items():
        assert len(cells) == 11, (ally, cells)
        assert_numbers(f"overview {ally}", cells)
        assert cells[0][1] == "1 of 1", (ally, cells[0])  # one service process per ally, up


def _rows_in_browser(browser: Browser, table: str, key: str) -> dict[str, list[list[str]]]:
    rows: Any = browser.evaluate(
        f"Array.from(document.querySelectorAll('#{table} tr[data-{key}]')).map(r => "
        "[r.dataset." + key + ", Array.from(r.querySelectorAll('td')).map(c => [c.className, c.innerText])])"
    )
    return {str(k): [[str(c), str(t)] for c, t in cells] for k, cells in rows}


@pytest.mark.browser
def test_overview_console_in_chromium(recorded: RealRun, browser: Browser) -> None:
    browser.open(console_urls(recorded.prometheus.url)["overview"])
    browser.wait_for_selector("#allies tr[data-ally]")
    # prom_console.js drew both graphs from /api/v1/query_range (an SVG path per ally)
    browser.wait_for_js("document.querySelectorAll('.rickshaw_graph svg path').length >= 6")
    rows = _rows_in_browser(browser, "allies", "ally")
    assert set(rows) == set(n.ALLIES), rows
    for ally, cells in rows.items():
        assert_numbers(f"overview {ally}", [(c, t) for c, t in cells])
    assert browser.texts("nav a")[:1] == ["trilink overview"]
    assert browser.console_errors() == []
    browser.screenshot()


@pytest.mark.browser
def test_ally_console_in_chromium(recorded: RealRun, browser: Browser) -> None:
    browser.open(console_urls(recorded.prometheus.url)[BROWSED_ALLY])
    browser.wait_for_selector("#hops tr[data-hop]")
    browser.wait_for_js("document.querySelectorAll('.rickshaw_graph svg path').length >= 2")
    assert browser.text("h1") == f"Ally {BROWSED_ALLY}"
    hops = _rows_in_browser(browser, "hops", "hop")
    # the acknowledgement's hop shows once a launch detection or alert was acknowledged by all
    assert set(n.ALLY_HOPS) <= set(hops) <= {*n.ALLY_HOPS, *n.ALLY_ACK_HOPS}, hops
    for hop, cells in hops.items():
        if (
            hop in n.ALLY_ACK_HOPS
        ):  # a few samples a little later than the burst: may not be in the 1 m window yet
            continue
        assert_numbers(f"{BROWSED_ALLY} {hop}", [(c, t) for c, t in cells])
    kinds = _rows_in_browser(browser, "kinds", "kind")
    assert kinds and set(kinds) <= set(n.KINDS), kinds
    for kind, cells in kinds.items():
        assert_numbers(f"{BROWSED_ALLY} {kind}", [(c, t) for c, t in cells])
    sensors = _rows_in_browser(browser, "sensors", "sensor")
    assert sensors, "no sensor heartbeat shown"
    for sensor, cells in sensors.items():
        assert_numbers(f"{BROWSED_ALLY} sensor {sensor}", [(c, t) for c, t in cells])
    assert browser.console_errors() == []
    browser.screenshot()
