"""The real services' metric declarations against the contract (no Kafka: only their
registries are built and exposed in the text format, as their /metrics endpoints do)."""

from __future__ import annotations

import subprocess

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from consumers.ledger import Ledger
from consumers.metrics import AllyMetrics
from producers.publisher import ProducerMetrics
from trilink.monitoring.contract import exposition_problems
from trilink.monitoring.names import ALLY_SENSOR_LAST_SEEN, FAMILIES

pytestmark = [pytest.mark.monitoring]


def ally_exposition() -> str:
    m = AllyMetrics("JP")
    ledger = Ledger("JP")
    m.registry.register(ledger)
    ledger.record_ns("end_to_end", "alert", "kafka", 4_000_000)
    ledger.received["alert"] += 1
    ledger.delivered[("alert", "kafka")] += 1
    ledger.withheld["track_update"] += 1
    ledger.dead_letter("bad_magic")
    m.subscriber_drops.labels("JP", "sse").inc()
    m.lag_records.labels("JP", "trilink.warnings.v1").set(3)
    m.sensor_seen("jp-fps5-sado", 1_700_000_000.0)
    return generate_latest(m.registry).decode()


def producer_exposition() -> str:
    registry = CollectorRegistry()
    m = ProducerMetrics(registry)
    m.events.labels("US", "track_update").inc()
    m.send_errors.labels("alert", "timeout").inc()
    m.send_latency.labels("alert").observe(0.002)
    return generate_latest(registry).decode()


@pytest.mark.integration
def test_producer_metrics_follow_the_contract(promtool: str) -> None:
    text = producer_exposition()
    assert exposition_problems(text, [f for f in FAMILIES if f.exposed_by == "producer"]) == []
    lint = subprocess.run(
        [promtool, "check", "metrics"], input=text.encode(), capture_output=True, check=False
    )
    assert lint.returncode == 0 and not lint.stdout.strip(), lint.stdout.decode() + lint.stderr.decode()


@pytest.mark.integration
def test_ally_metrics_follow_the_contract(promtool: str) -> None:
    text = ally_exposition()
    wanted = [f for f in FAMILIES if f.exposed_by == "ally"]
    assert exposition_problems(text, wanted) == []
    lint = subprocess.run(
        [promtool, "check", "metrics"], input=text.encode(), capture_output=True, check=False
    )
    assert lint.returncode == 0 and not lint.stdout.strip(), lint.stdout.decode() + lint.stderr.decode()


@pytest.mark.unit
def test_ally_service_exposes_sensor_last_seen() -> None:
    assert exposition_problems(ally_exposition(), [ALLY_SENSOR_LAST_SEEN]) == []


@pytest.mark.unit
def test_sensor_last_seen_only_for_catalog_sensors_and_no_created_series() -> None:
    m = AllyMetrics("KR", sensors=["kr-aegis-eastsea"])
    m.registry.register(Ledger("KR"))
    text = generate_latest(m.registry).decode()
    # no sighting yet: no series (a 0 timestamp would read as silent since 1970)
    assert "trilink_ally_sensor_last_seen_timestamp_seconds{" not in text
    m.sensor_seen("kr-aegis-eastsea", 1_700_000_123.5)
    m.sensor_seen("not-in-the-catalog", 1_700_000_124.0)  # from the wire: never a label
    text = generate_latest(m.registry).decode()
    assert 'sensor="kr-aegis-eastsea"} 1.7000001235e+09' in text
    assert "not-in-the-catalog" not in text
    assert "_created" not in text
    # counters are pre-created at 0, so rate() sees the first event
    assert 'trilink_ally_events_received_total{ally="KR",kind="alert"} 0.0' in text
