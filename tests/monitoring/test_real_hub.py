"""A real Prometheus with the project's config and rules scraping a REAL US hub.

The hub topology as ``trilink run`` runs it: the hub's process and one process per ally
(:class:`consumers.fleet.AllyFleet`, HTTP on, announced to this Prometheus), the real
:class:`producers.publisher.SensorPublisher` writing each nation's ingest topic. Checks: the hub
is discovered as job ``trilink-hub``, every recording rule over its families has a value, its
console shows a number for every hop and feed, the dashboards' hub panels have data, and
``TrilinkHubDown`` fires once its process is killed.
(The other monitoring tests run the direct topology; ``test_live.py`` also covers the hub's rules
on a simulated hub.)
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from consumers.fleet import HUB, AllyFleet
from producers.publisher import Run, SensorPublisher, for_run
from producers.scenario import load_scenario, simulate
from tests.monitoring.conftest import RunningPrometheus
from tests.monitoring.test_live import dashboard_targets, hub_console_rows, wait_for, wait_for_hub_series
from trilink.monitoring import names as n
from trilink.monitoring.api import PrometheusAPI
from trilink.monitoring.discovery import HUB_JOB
from trilink.platform.groups import delete_groups_at

pytestmark = [pytest.mark.integration, pytest.mark.monitoring]

SCENARIO = "irbm_over_japan"  # bilateral data too: the hub withholds some of it per feed


@dataclass
class HubRun:
    prometheus: RunningPrometheus
    api: PrometheusAPI
    fleet: AllyFleet


@pytest.fixture(scope="module")
def hub_run(prometheus: RunningPrometheus, kafka_bootstrap: str) -> Iterator[HubRun]:
    settings = prometheus.settings
    api = PrometheusAPI(prometheus.url)
    tag = uuid.uuid4().hex[:8]
    group_ids = {ally: f"test-monitoring-hub-{tag}-{ally.lower()}" for ally in n.ALLIES}
    fleet = AllyFleet(
        kafka_bootstrap,
        group_ids,
        f"monhub-{tag}",
        http=True,
        topology="hub",
        hub_group_id=f"test-monitoring-hub-{tag}-hub",
        hub_options={"settings": settings},
        settings=settings,
    )
    publisher = SensorPublisher(kafka_bootstrap, client_id=f"trilink-sensors-{tag}", topology="hub")
    try:
        fleet.start()
        wait_for(
            "the hub and three allies up",
            lambda: (
                len([v for v in api.values('up{job=~"trilink-hub|trilink-ally"}').values() if v == 1]) == 4
            ),
        )
        scenario = load_scenario(SCENARIO)
        published = publisher.publish(for_run(simulate(scenario), Run.new(), scenario.start_time), speed=None)
        assert published.failed == 0 and published.acknowledged == published.sent > 0
        yield HubRun(prometheus, api, fleet)
    finally:
        try:
            fleet.stop()
        finally:
            publisher.close()
            delete_groups_at(
                kafka_bootstrap, [*group_ids.values(), fleet.hub_group_id], client_id="test-cleanup"
            )


def test_the_real_hub_is_discovered_without_an_ally_label(hub_run: HubRun) -> None:
    targets = [t for t in hub_run.api.targets() if t["labels"]["job"] == HUB_JOB]
    assert len(targets) == 1, targets
    assert targets[0]["health"] == "up"
    assert "ally" not in targets[0]["labels"]


def test_every_hub_rule_has_a_value_from_the_real_hub(hub_run: HubRun) -> None:
    wait_for_hub_series(hub_run.api)
    for name in n.HUB_RECORDED_SERIES:
        values = wait_for(
            f"recorded series {name}",
            lambda name=name: [v for v in hub_run.api.values(name).values() if not math.isnan(v)],
        )
        assert all(math.isfinite(v) and v >= 0 for v in values), (name, values)
    ack = hub_run.api.values("hop_feed:trilink_hub_hop_latency_seconds:p99_1m")
    feeds = {dict(labels)["feed"] for labels, v in ack.items() if dict(labels)["hop"] == "hub_to_ack"}
    assert feeds == set(n.ALLIES)
    # the scenario's bilateral data is withheld from some feed, and counted per feed
    withheld = hub_run.api.values("sum(trilink_hub_records_withheld_total) by (feed)")
    assert sum(withheld.values()) > 0, withheld


def test_the_hub_console_has_numbers_from_the_real_hub(hub_run: HubRun) -> None:
    wait_for_hub_series(hub_run.api)
    hops, feeds = hub_console_rows(hub_run.prometheus.url)
    assert {("send_to_append", "none"), ("append_to_hub", "none")} <= set(hops), sorted(hops)
    assert {("hub_to_ack", ally) for ally in n.ALLIES} <= set(hops), sorted(hops)
    assert set(feeds) == set(n.ALLIES)


def test_the_dashboards_hub_panels_have_data_from_the_real_hub(hub_run: HubRun) -> None:
    queries = [(uid, title, expr) for uid, title, expr in dashboard_targets() if "trilink_hub_" in expr]
    assert len(queries) >= 3, queries
    for uid, title, expr in queries:
        wait_for(f"data for {uid} / {title}: {expr}", lambda expr=expr: hub_run.api.query(expr))


def test_a_killed_hub_alerts(hub_run: HubRun) -> None:
    """Last in the module: SIGKILLs the hub's process (a crash leaves its target file behind)."""
    api = hub_run.api
    hub_run.fleet.kill(HUB)
    wait_for("up == 0 for the hub", lambda: api.values('up{job="trilink-hub"} == 0'))
    down = wait_for(
        "TrilinkHubDown",
        lambda: [a["state"] for a in api.alerts() if a["labels"]["alertname"] == "TrilinkHubDown"],
    )
    assert down[0] in ("pending", "firing")
