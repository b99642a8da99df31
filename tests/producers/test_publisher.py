"""Sensor producers: what they send and count (with a fake client), and against a real broker
that every event arrives, decodes and keeps its order."""

from __future__ import annotations

import time
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaTimeoutError
from kafka.partitioner.default import DefaultPartitioner
from prometheus_client import CollectorRegistry

from producers.publisher import OutboundEvent, Run, SensorPublisher, for_run
from producers.scenario import load_scenario, simulate
from schemas import decode_event, parse_headers
from schemas.headers import PACING_HEADER, SENT_NS_HEADER
from schemas.models import Alert, EventKind
from trilink.latency import decode_sent_ns
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


class _FakeCluster:
    """What kafka-python's DefaultPartitioner reads of the cluster metadata."""

    def __init__(self, partitions: int) -> None:
        self._partitions = set(range(partitions))

    def topics(self) -> set[str]:
        return {topic_name("warnings"), topic_name("sensor_status")}

    def partitions_for_topic(self, topic: str) -> set[int]:
        return self._partitions

    def available_partitions_for_topic(self, topic: str) -> set[int]:
        return self._partitions


class _FakeFuture:
    def __init__(self) -> None:
        self.callbacks: list[tuple[Any, tuple[Any, ...]]] = []
        self.errbacks: list[tuple[Any, tuple[Any, ...]]] = []

    def add_callback(self, f: Any, *args: Any) -> _FakeFuture:
        self.callbacks.append((f, args))
        return self

    def add_errback(self, f: Any, *args: Any) -> _FakeFuture:
        self.errbacks.append((f, args))
        return self

    def add_both(self, f: Any, *args: Any) -> _FakeFuture:
        return self.add_callback(f, *args).add_errback(f, *args)


class _FakeProducer:
    """Records every send; ``flush`` answers them: refused when the key is in ``refuse``."""

    def __init__(self, partitions: int = 12, refuse: frozenset[bytes] = frozenset()) -> None:
        self.partitions = partitions
        self.refuse = refuse
        self.sent: list[dict[str, Any]] = []
        self._pending: list[tuple[bytes, _FakeFuture]] = []

    def partitions_for(self, topic: str) -> set[int]:
        return set(range(self.partitions))

    def send(self, topic: str, **record: Any) -> _FakeFuture:
        self.sent.append({"topic": topic, **record})
        future = _FakeFuture()
        self._pending.append((record["key"], future))
        return future

    def flush(self, timeout: float | None = None) -> None:
        for key, future in self._pending:
            if key in self.refuse:
                for f, args in future.errbacks:
                    f(*args, KafkaTimeoutError("no answer"))
            else:
                for f, args in future.callbacks:
                    f(*args, object())
        self._pending.clear()

    def close(self, timeout: float | None = None) -> None:
        pass


def _played(name: str = "single_srbm") -> list[Any]:
    scenario = load_scenario(name)
    return list(for_run(simulate(scenario), Run.new(), scenario.start_time))


@pytest.mark.unit
def test_prepared_events_are_sent_as_scheduled_ones_with_the_default_partitioners_choice() -> None:
    events = _played()
    fake = _FakeProducer()
    publisher = SensorPublisher("unused:9092", producer=fake)
    prepared = publisher.prepare(events)
    assert all(isinstance(out, OutboundEvent) for out in prepared)
    assert all(SENT_NS_HEADER not in dict(out.headers) for out in prepared), "stamped at send, not before"
    partitioner, cluster = DefaultPartitioner(), _FakeCluster(fake.partitions)
    for out in prepared:
        assert out.partition == partitioner.partition(out.topic, out.key, out.key, None, None, cluster)

    before = time.time_ns()
    reports = [
        publisher.publish(prepared, speed=None),
        publisher.publish(iter(events), speed=None),  # all prepared before the first send
        publisher.publish(iter(events), speed=1e9),  # paced: each prepared before its wait
    ]
    after = time.time_ns()
    assert all(r.sent == r.acknowledged == len(events) for r in reports)
    n = len(events)
    for out, *records in zip(prepared, fake.sent[:n], fake.sent[n : 2 * n], fake.sent[2 * n :], strict=True):
        for record in records:
            assert (record["topic"], record["key"], record["value"]) == (out.topic, out.key, out.value)
            assert record["partition"] == out.partition
            assert record["headers"][:-1] == list(out.headers)
            name, raw = record["headers"][-1]
            sent_ns = decode_sent_ns(raw)
            assert name == SENT_NS_HEADER
            assert sent_ns is not None
            assert before <= sent_ns <= after
            assert PACING_HEADER not in dict(record["headers"]), "not real time: no pacing header"


@pytest.mark.unit
def test_acknowledgements_and_refusals_are_counted_from_the_callbacks() -> None:
    events = _played()
    refused_key = events[0].event.header.correlation_key.encode()
    registry = CollectorRegistry()
    publisher = SensorPublisher(
        "unused:9092", registry=registry, producer=_FakeProducer(refuse=frozenset({refused_key}))
    )
    report = publisher.publish(iter(events), speed=None)
    refused = [e for e in events if e.event.header.correlation_key.encode() == refused_key]
    assert report.sent == len(events)
    assert report.failed == len(refused) > 0
    assert report.acknowledged == len(events) - len(refused)
    assert report.errors[0].startswith(str(refused[0].event.header.event_id))
    kind = refused[0].event.kind.value
    assert registry.get_sample_value(
        "trilink_producer_send_errors_total", {"kind": kind, "reason": "KafkaTimeoutError"}
    ) == sum(1 for e in refused if e.event.kind.value == kind)
    acked = sum(
        registry.get_sample_value("trilink_producer_events_total", {"nation": n.value, "kind": k.value})
        or 0.0
        for n in {e.event.header.sensor_nation for e in events}
        for k in EventKind
    )
    assert acked == report.acknowledged
    latencies = sum(
        registry.get_sample_value("trilink_producer_send_latency_seconds_count", {"kind": k.value}) or 0.0
        for k in EventKind
    )
    assert latencies == report.acknowledged, "every acknowledged event is timed, none sampled"


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
