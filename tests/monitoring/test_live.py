"""A real Prometheus with the project's config and rules scraping real HTTP endpoints.

The endpoints are the in-process simulated services of :mod:`trilink.monitoring.simulated`
(every metric family of the contract, plausible values, traffic in a background thread),
announced through :mod:`trilink.monitoring.discovery` exactly as the real services do. No
Kafka. Checks: discovery, the scraped series against the contract, sane values, every
recording rule producing a value, every dashboard query parsing and returning data, and
the ally-down alert once an endpoint stops.
"""

from __future__ import annotations

import json
import math
import re
import threading
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

import pytest

from tests import REPO_ROOT
from tests.monitoring.conftest import RunningPrometheus
from trilink.monitoring import names as n
from trilink.monitoring.api import PrometheusAPI
from trilink.monitoring.discovery import ALLY_JOB, HUB_JOB, SENSORS_JOB, announce, withdraw
from trilink.monitoring.prometheus import HUB_CONSOLE
from trilink.monitoring.simulated import Endpoint, SimulatedRun
from trilink.waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.monitoring]

T = TypeVar("T")
DASHBOARD_DIR = REPO_ROOT / "deploy" / "grafana" / "dashboards"
# Grafana's variables as the tests resolve them (scrape interval here is 1 s).
GRAFANA_VARIABLES = {"$__rate_interval": "10s", "$__interval": "2s", "$ally": "US"}


def wait_for(what: str, probe: Callable[[], T | None], timeout_s: float = 25.0) -> T:
    """Poll ``probe`` until it returns something truthy; fail with ``what`` after the timeout."""
    last: list[T | None] = [None]

    def remembered() -> T | None:
        last[0] = probe()
        return last[0]

    got = wait_until(remembered, timeout_s, interval_s=0.25)
    if got:
        return got
    pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what} (last: {last[0]!r})")


@dataclass
class LiveRun:
    prometheus: RunningPrometheus
    api: PrometheusAPI
    run: SimulatedRun
    endpoints: dict[str, Endpoint]
    stop: threading.Event = field(default_factory=threading.Event)


@pytest.fixture(scope="module")
def live(prometheus: RunningPrometheus) -> Iterator[LiveRun]:
    run = SimulatedRun(seed=11)
    endpoints = {ally: Endpoint(sim.registry) for ally, sim in run.allies.items()}
    endpoints["sensors"] = Endpoint(run.sensors.registry)
    endpoints["hub"] = Endpoint(run.hub.registry)
    lock = threading.Lock()
    live = LiveRun(prometheus, PrometheusAPI(prometheus.url), run, endpoints)

    def traffic() -> None:
        missiles = 1
        while not live.stop.wait(0.1):
            with lock:
                run.run_events(100, missiles=missiles)
            missiles += 1

    driver = threading.Thread(target=traffic, name="simulated-traffic", daemon=True)
    driver.start()
    for ally in n.ALLIES:
        announce(ALLY_JOB, f"{ally}-0", endpoints[ally].port, {"ally": ally}, settings=prometheus.settings)
    announce(SENSORS_JOB, "sim", endpoints["sensors"].port, settings=prometheus.settings)
    announce(HUB_JOB, "sim-hub", endpoints["hub"].port, settings=prometheus.settings)
    try:
        wait_for(
            "all five service targets up",
            lambda: len([v for v in live.api.values('up{job=~"trilink-.*"}').values() if v == 1]) == 5,
        )
        yield live
    finally:
        live.stop.set()
        driver.join(timeout=5)
        for endpoint in endpoints.values():
            endpoint.close()
        for ally in n.ALLIES:
            withdraw(ALLY_JOB, f"{ally}-0", settings=prometheus.settings)
        withdraw(SENSORS_JOB, "sim", settings=prometheus.settings)
        withdraw(HUB_JOB, "sim-hub", settings=prometheus.settings)


def test_discovered_targets_carry_job_instance_and_ally(live: LiveRun) -> None:
    targets = {(t["labels"]["job"], t["labels"]["instance"]): t for t in live.api.targets()}
    for ally in n.ALLIES:
        target = targets[(ALLY_JOB, f"{ally}-0")]
        assert target["labels"]["ally"] == ally
        assert target["health"] == "up"
        assert target["scrapeUrl"] == live.endpoints[ally].url
    assert targets[(SENSORS_JOB, "sim")]["health"] == "up"
    assert targets[(HUB_JOB, "sim-hub")]["health"] == "up"
    assert "ally" not in targets[(HUB_JOB, "sim-hub")]["labels"]


# The hub's delivery failures: none in the simulation, so no series to scrape.
SCRAPED_FAMILIES = [*n.FAMILIES, *(f for f in n.HUB_FAMILIES if f is not n.HUB_DELIVERY_FAILURES)]


@pytest.mark.parametrize("family", SCRAPED_FAMILIES, ids=lambda f: f.name)
def test_scraped_series_match_the_contract(live: LiveRun, family: n.MetricFamily) -> None:
    names_regex = json.dumps("|".join(family.series_names()))
    selector = f"{{__name__=~{names_regex}}}"
    series = wait_for(f"series of {family.name}", lambda: live.api.series(selector))
    expected = set(family.labels) | {"__name__", "job", "instance"}
    for labels in series:
        got = set(labels) - ({"le"} if labels["__name__"].endswith("_bucket") else set())
        # no exported_* duplicates of target labels, nothing beyond the contract
        assert got == expected, f"{labels}"
    if "ally" in family.labels:
        assert {s["ally"] for s in series} == set(n.ALLIES)
        assert all(s["job"] == ALLY_JOB for s in series)
    if family.exposed_by == "hub":
        assert all(s["job"] == HUB_JOB for s in series)


def per_ally(api: PrometheusAPI, expr: str) -> Callable[[], dict[str, float] | None]:
    """A probe answering ``{ally: value}`` once the query has a number for every ally.

    NaN counts as no value: a quantile over a window whose rate is still 0 (the rule ran
    between the event and the scrape that saw it) is NaN until the next evaluation.
    """

    def probe() -> dict[str, float] | None:
        got = {dict(labels)["ally"]: v for labels, v in api.values(expr).items() if not math.isnan(v)}
        return got if set(got) == set(n.ALLIES) else None

    return probe


def test_scraped_values_are_sane(live: LiveRun) -> None:
    api = live.api
    wait_for(
        "a received rate for every ally",
        per_ally(api, "sum by (ally) (rate(trilink_ally_events_received_total[5s])) > 0"),
    )
    p99 = wait_for(
        "an end_to_end p99 for every ally",
        per_ally(
            api,
            'histogram_quantile(0.99, sum by (ally, le) (rate(trilink_ally_hop_latency_seconds_bucket{hop="end_to_end"}[5s])))',
        ),
    )
    assert all(0.0005 < v < 0.25 for v in p99.values()), p99
    # end_to_end is the sum of the hops before it: its mean is larger than each of theirs
    means = api.values(
        'sum by (hop) (rate(trilink_ally_hop_latency_seconds_sum{ally="US"}[5s]))'
        ' / sum by (hop) (rate(trilink_ally_hop_latency_seconds_count{ally="US"}[5s]))'
    )
    by_hop = {dict(k)["hop"]: v for k, v in means.items()}
    assert set(by_hop) == {*n.ALLY_HOPS, *n.ALLY_ACK_HOPS}
    assert all(by_hop["end_to_end"] > by_hop[h] for h in n.ALLY_HOPS if h != "end_to_end")
    assert all(v >= 0 for v in api.values("trilink_ally_consumer_lag_records").values())
    seen = wait_for(
        "a sensor heartbeat age",
        lambda: api.values("time() - trilink_ally_sensor_last_seen_timestamp_seconds"),
    )
    assert all(-5 < v < 120 for v in seen.values())
    produced = wait_for(
        "a producer event rate",
        lambda: [v for v in api.values("sum(rate(trilink_producer_events_total[5s]))").values() if v > 0],
    )
    assert produced


def test_every_recording_rule_produces_a_value(live: LiveRun) -> None:
    def numbers(expr: str) -> Callable[[], list[float]]:
        return lambda: [v for v in live.api.values(expr).values() if not math.isnan(v)]

    for name in n.RECORDED_SERIES:
        assert wait_for(f"recorded series {name}", numbers(name))
    latency = wait_for(
        "a recorded end_to_end p99 for every ally",
        per_ally(live.api, 'ally_hop:trilink_ally_hop_latency_seconds:p99_1m{hop="end_to_end"}'),
    )
    assert all(0 < v < n.P99_OBJECTIVE_S for v in latency.values()), "simulated latency is a few ms"
    for group in live.api.rule_groups():
        for rule in group["rules"]:
            assert rule["health"] == "ok", f"{group['name']}/{rule['name']}: {rule.get('lastError')}"


def dashboard_targets() -> list[tuple[str, str, str]]:
    found = []
    for path in sorted(DASHBOARD_DIR.glob("*.json")):
        doc = json.loads(path.read_text())
        for panel in doc["panels"]:
            for target in panel.get("targets", []):
                expr = target["expr"]
                for variable, value in GRAFANA_VARIABLES.items():
                    expr = expr.replace(variable, value)
                found.append((doc["uid"], panel["title"], expr))
    return found


def test_every_dashboard_query_parses_and_returns_data(live: LiveRun) -> None:
    targets = dashboard_targets()
    assert len(targets) > 20
    for uid, title, expr in targets:
        assert "$" not in expr, f"{uid} / {title}: unresolved variable in {expr}"
        # a parse error raises QueryError (HTTP 400) here
        live.api.query(expr)

    def answer(expr: str) -> Callable[[], list[dict[str, object]]]:
        return lambda: live.api.query(expr)

    for uid, title, expr in targets:
        wait_for(f"data for {uid} / {title}: {expr}", answer(expr))
    # the ally variable: label_values(up{job="trilink-ally"}, ally)
    allies = {s["ally"] for s in live.api.series('up{job="trilink-ally"}')}
    assert allies == set(n.ALLIES)


def hub_console_rows(prometheus_url: str) -> tuple[dict[tuple[str, str], list[str]], dict[str, list[str]]]:
    """The hub console as Prometheus renders it: ``({(hop, feed): cells}, {feed: cells})``, every
    cell checked to be a number (not NaN, not "no data")."""
    with urllib.request.urlopen(f"{prometheus_url}/consoles/{HUB_CONSOLE}", timeout=10) as resp:
        assert resp.status == 200
        page = resp.read().decode()
    assert "error executing template" not in page and "</html>" in page

    def numbers(cells_html: str) -> list[str]:
        cells = re.findall(r'<td class="([^"]*)">(.*?)</td>', cells_html, re.S)
        assert cells and all("num" in cls.split() for cls, _ in cells), cells
        texts = [text.strip() for _, text in cells]
        assert all(re.search(r"\d", t) and "NaN" not in t for t in texts), texts
        return texts

    hops = {
        (m.group(1), m.group(2)): numbers(m.group(3))
        for m in re.finditer(r'<tr data-hop="([^"]+)" data-feed="([^"]+)">(.*?)</tr>', page, re.S)
    }
    feeds = {
        m.group(1): numbers(m.group(2))
        for m in re.finditer(r'<tr data-feed="([^"]+)">(.*?)</tr>', page, re.S)
    }
    return hops, feeds


def wait_for_hub_series(api: PrometheusAPI) -> None:
    """Until the recorded hub series the console reads have a number for every feed."""
    for feed in n.ALLIES:
        for expr in (
            f'hop_feed:trilink_hub_hop_latency_seconds:p50_1m{{hop="hub_to_ack", feed="{feed}"}}',
            f'hop_feed:trilink_hub_hop_latency_seconds:p99_1m{{hop="hub_to_ack", feed="{feed}"}}',
            f'feed:trilink_hub_records_released:rate1m{{feed="{feed}"}}',
        ):
            wait_for(expr, lambda e=expr: [v for v in api.values(e).values() if not math.isnan(v)])


def test_the_hub_console_shows_every_hop_and_feed(live: LiveRun) -> None:
    """The hub's console, rendered by Prometheus from the recorded hub series: a number in
    every cell of every hop and feed row, and the hub in every page's navigation."""
    wait_for_hub_series(live.api)
    hops, feeds = hub_console_rows(live.prometheus.url)
    assert {("append_to_hub", "none"), *(("hub_to_ack", a) for a in n.ALLIES)} <= set(hops), sorted(hops)
    assert all(len(cells) == 2 for cells in hops.values())  # p50, p99
    assert set(feeds) == set(n.ALLIES) and all(len(cells) == 2 for cells in feeds.values())
    with urllib.request.urlopen(f"{live.prometheus.url}/consoles/trilink-overview.html", timeout=10) as resp:
        assert 'href="trilink-hub.html"' in resp.read().decode()


def test_withdrawn_service_leaves_and_a_dead_one_alerts(live: LiveRun) -> None:
    """Last in the module: it stops the US and hub endpoints and withdraws the sensors."""
    withdraw(SENSORS_JOB, "sim", settings=live.prometheus.settings)
    wait_for(
        "the withdrawn sensors target to leave",
        lambda: all(t["labels"]["job"] != SENSORS_JOB for t in live.api.targets()),
    )
    live.endpoints["US"].close()
    wait_for("up == 0 for US", lambda: live.api.values('up{job="trilink-ally", ally="US"} == 0'))

    def us_down_alert() -> list[str]:
        return [
            a["state"]
            for a in live.api.alerts()
            if a["labels"]["alertname"] == "TrilinkAllyServiceDown" and a["labels"].get("ally") == "US"
        ]

    states = wait_for("TrilinkAllyServiceDown for US", us_down_alert)
    assert states[0] in ("pending", "firing")
    live.endpoints["hub"].close()
    hub_down = wait_for(
        "TrilinkHubDown",
        lambda: [a["state"] for a in live.api.alerts() if a["labels"]["alertname"] == "TrilinkHubDown"],
    )
    assert hub_down[0] in ("pending", "firing")
    # the other allies are unaffected
    wait_for(
        "JP and KR still up", lambda: len(live.api.values('up{job="trilink-ally", ally=~"JP|KR"} == 1')) == 2
    )
