"""Sensor producers against a real broker: every event arrives, decodes, keeps its order."""

from __future__ import annotations

import time
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import pytest
from kafka import KafkaConsumer, TopicPartition

from producers.publisher import Run, SensorPublisher, for_run
from producers.scenario import load_scenario, simulate
from schemas import decode_event, parse_headers
from schemas.models import Alert, EventKind
from trilink.latency import PACING_HEADER, SENT_NS_HEADER, decode_sent_ns
from trilink.platform.clients import consumer_config
from trilink.platform.topics import topic_name


@pytest.mark.unit
def test_a_run_renames_ids_and_keys_but_keeps_the_content() -> None:
    scenario = load_scenario("single_srbm")
    original = list(simulate(scenario))
    run = Run("abc12345", datetime(2030, 5, 1, tzinfo=UTC))
    played = list(for_run(iter(original), run, scenario.start_time))
    assert len(played) == len(original)
    shift = run.start_time - scenario.start_time
    ids = {p.event.header.event_id for p in played}
    assert len(ids) == len(played)
    assert ids.isdisjoint({o.event.header.event_id for o in original})
    for o, p in zip(original, played, strict=True):
        assert p.emit_offset_s == o.emit_offset_s
        assert p.event.payload.KIND == o.event.payload.KIND
        assert p.event.header.measured_at == o.event.header.measured_at + shift
        if o.event.kind is not EventKind.SENSOR_STATUS:
            assert p.event.header.correlation_key == f"{o.event.header.correlation_key}:abc12345"
    alerts = [p.event for p in played if isinstance(p.event.payload, Alert)]
    references = {ref for a in alerts if isinstance(a.payload, Alert) for ref in a.payload.references}
    assert references <= ids, "alert references point at the run's own event ids"
    again = list(for_run(iter(original), run, scenario.start_time))
    assert [a.event for a in again] == [p.event for p in played], "a run is deterministic"


def _drain(bootstrap: str, topic: str, keys: set[bytes], expected: int, timeout_s: float = 60) -> list[Any]:
    consumer: Any = KafkaConsumer(**consumer_config(bootstrap, None, "test-publisher"))
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        got: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while len(got) < expected and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                got += [r for r in records if r.key in keys]
        return got
    finally:
        consumer.close()


@pytest.mark.integration
def test_sensors_publish_every_event_in_per_missile_order(kafka_bootstrap: str) -> None:
    scenario = load_scenario("single_srbm")
    run = Run.new()
    events = list(for_run(simulate(scenario), run, scenario.start_time))
    publisher = SensorPublisher(kafka_bootstrap)
    try:
        report = publisher.publish(iter(events), speed=None)
    finally:
        publisher.close()
    assert report.sent == report.acknowledged == len(events)
    assert report.failed == 0

    missile = [e.event for e in events if e.event.kind is not EventKind.SENSOR_STATUS]
    keys = {e.header.correlation_key.encode() for e in missile}
    records = _drain(kafka_bootstrap, topic_name("warnings"), keys, len(missile))
    assert len(records) == len(missile)

    by_sensor: dict[tuple[bytes, str], list[int]] = defaultdict(list)
    for record in records:
        event = decode_event(record.value)
        headers = parse_headers(record.headers)
        assert headers.event_id == event.header.event_id
        assert record.key == event.header.correlation_key.encode()
        assert record.timestamp_type == 1, "warnings topic stamps broker append time"
        sent_ns = decode_sent_ns(dict(record.headers)[SENT_NS_HEADER])
        assert sent_ns is not None
        assert (
            sent_ns <= record.timestamp * 1_000_000 + 1_000_000
        )  # sent no later than appended (1 ms rounding)
        assert PACING_HEADER not in dict(record.headers), "as-fast-as-possible is not real-time pacing"
        by_sensor[(record.key, event.header.sensor_id)].append(event.header.sequence)
    for sequences in by_sensor.values():
        assert sequences == sorted(sequences), "one sensor's events about one missile arrive in order"
    assert {e.event.header.event_id for e in events if e.event.kind is not EventKind.SENSOR_STATUS} == {
        decode_event(r.value).header.event_id for r in records
    }


@pytest.mark.integration
def test_paced_publishing_follows_the_schedule(kafka_bootstrap: str) -> None:
    scenario = load_scenario("single_srbm")
    events = list(for_run(simulate(scenario), Run.new(), scenario.start_time))[:40]
    span_s = events[-1].emit_offset_s - events[0].emit_offset_s
    speed = span_s / 1.0  # the 40 events spread over about one wall second
    publisher = SensorPublisher(kafka_bootstrap)
    try:
        report = publisher.publish(iter(events), speed=speed)
    finally:
        publisher.close()
    assert report.acknowledged == 40
    assert report.wall_s >= events[-1].emit_offset_s / speed * 0.95, "pacing waited for the schedule"
