"""A real Prometheus with the project's config and rules scraping the REAL services.

The three ally services run one process each (:class:`consumers.fleet.AllyFleet`, HTTP on)
against the session's Kafka broker and announce themselves; the real
:class:`producers.publisher.SensorPublisher` plays a short scenario with its ``/metrics``
announced as ``trilink run`` does. Checks through Prometheus' HTTP API: discovery, the
contract and ``promtool check metrics`` on each real ``/metrics`` page, counts that add up to
what was published and delivered, sane per-ally latency histograms, recording rules and every
dashboard query with data, and the ally-down alert once one ally process is killed.
"""

from __future__ import annotations

import math
import subprocess
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from consumers.fleet import AllyFleet
from producers.publisher import PublishReport, Run, SensorPublisher, for_run
from producers.scenario import load_scenario, simulate
from tests.monitoring.conftest import RunningPrometheus
from tests.monitoring.test_live import dashboard_targets, per_ally, wait_for
from trilink.monitoring import names as n
from trilink.monitoring.api import PrometheusAPI
from trilink.monitoring.contract import exposition_problems
from trilink.monitoring.discovery import ALLY_JOB, SENSORS_JOB
from trilink.pipeline import serve_producer_metrics, stop_producer_metrics

pytestmark = [pytest.mark.integration, pytest.mark.monitoring]

SCENARIO = "single_srbm"  # ~520 events, 13 sensors' heartbeats


@dataclass
class RealRun:
    prometheus: RunningPrometheus
    api: PrometheusAPI
    fleet: AllyFleet
    ports: dict[str, int]  # ally (and "sensors") -> /metrics port
    published: PublishReport
    sensors_instance: str


def _scalar(api: PrometheusAPI, expr: str) -> float:
    values = list(api.values(expr).values())
    assert len(values) == 1, f"{expr}: {values}"
    return values[0]


@pytest.fixture(scope="module")
def real(prometheus: RunningPrometheus, kafka_bootstrap: str) -> Iterator[RealRun]:
    settings = prometheus.settings
    api = PrometheusAPI(prometheus.url)
    tag = uuid.uuid4().hex[:8]
    group_ids = {ally: f"test-monitoring-{tag}-{ally.lower()}" for ally in n.ALLIES}
    fleet = AllyFleet(kafka_bootstrap, group_ids, f"mon-{tag}", http=True, settings=settings)
    publisher = SensorPublisher(kafka_bootstrap, client_id=f"trilink-sensors-{tag}")
    run = Run.new()
    scenario = load_scenario(SCENARIO)
    # the producer's /metrics exactly as `trilink run` serves and announces it
    server = serve_producer_metrics(publisher, run, scenario, settings)
    try:
        # ready = each service owns all its partitions with positions pinned at the end (fresh
        # groups, offset reset latest): the counts below are this run's only
        fleet.start()
        ports: dict[str, int] = {a: p for a, p in fleet.http_ports.items() if p is not None}
        ports["sensors"] = int(server.server_port)
        # Scraped at least once before the first event: counters start at 0 in Prometheus.
        wait_for(
            "three allies and the sensors up",
            lambda: len([v for v in api.values('up{job=~"trilink-.*"}').values() if v == 1]) == 4,
        )
        published = publisher.publish(for_run(simulate(scenario), run, scenario.start_time), speed=None)
        assert published.failed == 0 and published.acknowledged == published.sent > 0
        # every ally reads every record of the run and delivers or withholds it
        assert fleet.wait_settled(dict.fromkeys(n.ALLIES, published.sent), 45.0), fleet.settled()
        yield RealRun(prometheus, api, fleet, ports, published, f"sensors-{run.run_id}")
    finally:
        try:
            fleet.stop()
        finally:
            stop_producer_metrics(server, run, settings)
            publisher.close()


def test_real_services_are_discovered(real: RealRun) -> None:
    targets = {(t["labels"]["job"], t["labels"].get("ally")): t for t in real.api.targets()}
    for ally in n.ALLIES:
        target = targets[(ALLY_JOB, ally)]
        assert target["health"] == "up", target
        assert target["labels"]["instance"].startswith(f"{ally}-mon-")
        assert target["scrapeUrl"].endswith(f":{real.ports[ally]}/metrics")
    sensors = targets[(SENSORS_JOB, None)]
    assert sensors["labels"]["instance"] == real.sensors_instance
    assert sensors["scrapeUrl"].endswith(f":{real.ports['sensors']}/metrics")


@pytest.mark.parametrize("service", [*n.ALLIES, "sensors"])
def test_real_metrics_pages_pass_promtool_and_the_contract(
    real: RealRun, promtool: str, service: str
) -> None:
    host = real.prometheus.settings.host
    with urllib.request.urlopen(f"http://{host}:{real.ports[service]}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    side = "producer" if service == "sensors" else "ally"
    assert exposition_problems(text, [f for f in n.FAMILIES if f.exposed_by == side]) == []
    assert "_created" not in text
    lint = subprocess.run(
        [promtool, "check", "metrics"], input=text.encode(), capture_output=True, check=False
    )
    assert lint.returncode == 0 and not lint.stdout.strip(), lint.stdout.decode() + lint.stderr.decode()


def _by_ally(api: PrometheusAPI, expr: str) -> dict[str, float]:
    return {dict(labels)["ally"]: v for labels, v in api.values(expr).items()}


def test_scraped_counts_and_latency_match_the_run(real: RealRun) -> None:
    api, sent = real.api, real.published.sent
    received_q = "sum by (ally) (trilink_ally_events_received_total)"
    delivered_q = 'sum by (ally) (trilink_ally_events_delivered_total{channel="kafka"})'
    withheld_q = "sum by (ally) (trilink_ally_events_withheld_total)"

    def settled_in_prometheus() -> tuple[dict[str, float], ...] | None:
        # a scrape after the drain: every record received and delivered (acked) or withheld
        r, d, w = (_by_ally(api, q) for q in (received_q, delivered_q, withheld_q))
        ok = set(r) == set(d) == set(w) == set(n.ALLIES) and all(
            r[a] == sent == d[a] + w[a] for a in n.ALLIES
        )
        return (r, d, w) if ok else None

    received, delivered, withheld = wait_for("settled counts scraped", settled_in_prometheus)
    settled = real.fleet.settled()
    duplicates = _by_ally(api, "sum by (ally) (trilink_ally_duplicates_suppressed_total)")
    dead = _by_ally(api, "sum by (ally) (trilink_dead_letters_total)")
    for ally in n.ALLIES:
        assert dead[ally] == 0 and duplicates[ally] == 0
        assert delivered[ally] > 0
        assert delivered[ally] + withheld[ally] == received[ally] == settled[ally] == sent

    # one end_to_end and one receive_to_deliver sample per Kafka delivery, one upstream per receive
    # (a scrape can land between a delivery's counter and its histogram sample: wait for the
    # next one rather than read a single moment)
    def hop_counts() -> dict[tuple[str, str], tuple[float, float]] | None:
        counts = api.values("sum by (ally, hop) (trilink_ally_hop_latency_seconds_count)")
        pairs = {}
        for labels, value in counts.items():
            ally, hop = dict(labels)["ally"], dict(labels)["hop"]
            if hop in n.ALLY_ACK_HOPS:  # one per warning every ally acknowledged: checked below
                continue
            want = received[ally] if hop in ("send_to_append", "append_to_receive") else delivered[ally]
            pairs[(ally, hop)] = (value, want)
        complete = {hop for _, hop in pairs} == set(n.ALLY_HOPS)
        return pairs if complete and all(v == w for v, w in pairs.values()) else None

    assert wait_for("one latency sample per receive and per delivery", hop_counts)

    # the three-way acknowledgement: the scenario's launch detections, acknowledged by all
    def acked() -> set[str] | None:
        counts = api.values(
            'sum by (ally) (trilink_ally_hop_latency_seconds_count{hop="acknowledged_by_all"})'
        )
        allies = {dict(k)["ally"] for k, v in counts.items() if v > 0}
        return allies if allies == set(n.ALLIES) else None

    wait_for("warnings acknowledged by all, seen by every ally", acked)
    assert all(v == 0 for v in api.values("trilink_ally_warnings_unacknowledged_total").values())

    p99 = api.values(
        "histogram_quantile(0.99, sum by (ally, hop, le) "
        '(trilink_ally_hop_latency_seconds_bucket{hop!~"acknowledged_by_all"}))'
    )
    assert len(p99) == len(n.ALLIES) * len(n.ALLY_HOPS)
    for labels, value in p99.items():
        assert math.isfinite(value) and value > 0, (labels, value)
    # end_to_end (send -> Kafka ack of the delivery) spans the other hops: its mean is the largest
    means = api.values(
        "sum by (ally, hop) (trilink_ally_hop_latency_seconds_sum)"
        " / sum by (ally, hop) (trilink_ally_hop_latency_seconds_count)"
    )
    for ally in n.ALLIES:
        by_hop = {dict(k)["hop"]: v for k, v in means.items() if dict(k)["ally"] == ally}
        assert all(0 <= v < 60 for v in by_hop.values()), by_hop
        assert all(by_hop["end_to_end"] >= by_hop[h] for h in n.ALLY_HOPS), by_hop

    # the producer's own view of the same run (scraped on its own schedule: wait for a scrape
    # after the last acknowledgement, as for the allies above)
    def producer_counts() -> tuple[float, float] | None:
        events = _scalar(api, "sum(trilink_producer_events_total)")
        samples = _scalar(api, "sum(trilink_producer_send_latency_seconds_count)")
        return (events, samples) if events == samples == real.published.acknowledged else None

    assert wait_for("the producer's acknowledged events scraped", producer_counts) == (
        real.published.acknowledged,
        real.published.acknowledged,
    )
    # heartbeats: every ally heard from at least one sensor, moments ago
    seen = api.values("time() - trilink_ally_sensor_last_seen_timestamp_seconds")
    assert {dict(k)["ally"] for k in seen} == set(n.ALLIES)
    assert all(-5 < v < 120 for v in seen.values()), seen


def test_recording_rules_and_dashboards_have_data(real: RealRun) -> None:
    api = real.api

    def numbers(expr: str) -> Callable[[], list[float]]:
        return lambda: [v for v in api.values(expr).values() if not math.isnan(v)]

    for name in n.RECORDED_SERIES:
        if name in n.HUB_RECORDED_SERIES and not real.fleet.with_hub:
            continue  # the direct topology has no hub (test_live.py evaluates them on a simulated one)
        wait_for(f"recorded series {name}", numbers(name))
    p99 = wait_for(
        "a recorded end_to_end p99 for every ally",
        per_ally(api, 'ally_hop:trilink_ally_hop_latency_seconds:p99_1m{hop="end_to_end"}'),
    )
    assert all(math.isfinite(v) and v > 0 for v in p99.values()), p99
    for group in api.rule_groups():
        for rule in group["rules"]:
            assert rule["health"] == "ok", f"{group['name']}/{rule['name']}: {rule.get('lastError')}"

    def answer(expr: str) -> Callable[[], list[dict[str, Any]]]:
        return lambda: api.query(expr)  # a parse error raises QueryError here

    for uid, title, expr in dashboard_targets():
        assert "$" not in expr, f"{uid} / {title}: unresolved variable in {expr}"
        if "trilink_hub_" in expr and not real.fleet.with_hub:
            api.query(expr)  # parses; no data without a hub (test_real_hub.py, test_live.py have one)
            continue
        wait_for(f"data for {uid} / {title}: {expr}", answer(expr))


def test_killed_ally_service_alerts(real: RealRun) -> None:
    """Last in the module: SIGKILLs the US process (a crash leaves its target file behind)."""
    api = real.api
    real.fleet.kill("US")
    wait_for("up == 0 for US", lambda: api.values('up{job="trilink-ally", ally="US"} == 0'))

    def us_down() -> list[str]:
        return [
            a["state"]
            for a in api.alerts()
            if a["labels"]["alertname"] == "TrilinkAllyServiceDown" and a["labels"].get("ally") == "US"
        ]

    assert wait_for("TrilinkAllyServiceDown for US", us_down)[0] in ("pending", "firing")
    assert len(api.values('up{job="trilink-ally", ally=~"JP|KR"} == 1')) == 2
