"""Integration tests of the ally service through a real Kafka broker (no mocks)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from consumers.dlq import ALLY_HEADER, ERROR_HEADER, REASON_HEADER, SOURCE_HEADER
from consumers.service import INSTANCE_HEADER, RECEIVED_NS_HEADER, AllyService
from schemas import encode_event, kafka_headers, message_key
from schemas.headers import SENT_NS_HEADER
from schemas.models import EventKind, Nation
from tests.consumers.support import (
    ALL,
    Producer,
    SseClient,
    StalledSseClient,
    by_key,
    end_offsets,
    event,
    headers_for,
    http_get,
    read_from,
    unique_key,
    wait_for,
)
from trilink.platform.topics import ally_input_roles, load_topic_file
from trilink.policy import parse_policy
from trilink.settings import get_settings

pytestmark = pytest.mark.integration

MakeService = Callable[..., AllyService]

NO_RELAY_POLICY = parse_policy(
    """
hub = "US"
hub_relay = false
relayed_kinds = ["launch_detection", "track_update", "impact_prediction", "track_end"]
[nations.US]
direct = ["US", "JP", "KR"]
[nations.JP]
direct = ["JP", "US"]
via_hub = ["KR"]
[nations.KR]
direct = ["KR", "US"]
via_hub = ["JP"]
"""
)


def input_partitions() -> int:
    """Partitions an ally service reads in the tests' (direct) topology, from the topic file."""
    roles = ally_input_roles("US", "direct")
    return sum(t.partitions for t in load_topic_file(get_settings().topics_file).topics if t.role in roles)


def _audit_lines(directory: Path, keys: set[str]) -> list[dict[str, Any]]:
    lines = []
    for path in sorted(directory.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            row = json.loads(line)
            if row["correlation_key"] in keys:
                lines.append(row)
    return lines


def test_end_to_end_all_channels_with_withheld_events(
    kafka_bootstrap: str, make_service: MakeService, tmp_path: Path
) -> None:
    service = make_service("JP", policy=NO_RELAY_POLICY)
    assert service.http_port
    everything = SseClient(service.http_port)
    alerts = SseClient(service.http_port, "kind=alert")
    assert "200" in everything.status_line
    assert wait_for(lambda: service.hub.subscriber_count == 2)

    key_a, key_b = unique_key("E2E-A"), unique_key("E2E-B")
    keys = {key_a, key_b}
    kinds = [
        EventKind.LAUNCH_DETECTION,
        EventKind.TRACK_UPDATE,
        EventKind.TRACK_UPDATE,
        EventKind.IMPACT_PREDICTION,
        EventKind.ALERT,
        EventKind.TRACK_END,
    ]
    deliverable = [event(key_a, i, kind=k) for i, k in enumerate(kinds)]
    deliverable += [event(key_b, i, sensor=Nation.JP, releasable=[Nation.US]) for i in range(3)]
    not_releasable = [event(key_a, 100 + i, sensor=Nation.US, releasable=[Nation.KR]) for i in range(3)]
    # Producer marked JP, but this service's policy has no hub relay: KR data must not reach JP.
    policy_forbids = [event(key_b, 200 + i, sensor=Nation.KR, releasable=[Nation.JP]) for i in range(2)]
    start = end_offsets(kafka_bootstrap, "ally.JP")
    producer = Producer(kafka_bootstrap)
    try:
        for ev in [*deliverable, *not_releasable, *policy_forbids]:
            producer.send_event(ev)
        producer.flush()
    finally:
        producer.close()

    delivered = read_from(
        kafka_bootstrap, "ally.JP", start, lambda rs: len(rs) >= len(deliverable), keep=by_key(keys)
    )
    expected_ids = {str(ev.header.event_id) for ev in deliverable}
    assert {r.headers["ce_id"].decode() for r in delivered} == expected_ids
    assert len(delivered) == len(deliverable)
    originals = {str(ev.header.event_id): ev for ev in deliverable}
    for record in delivered:
        ev = originals[record.headers["ce_id"].decode()]
        assert record.value == encode_event(ev)
        assert record.key == message_key(ev)
        assert [h for h in record.raw_headers if h[0] in dict(kafka_headers(ev, "/x"))][1:] == kafka_headers(
            ev, "/trilink/tests"
        )[1:]
        assert SENT_NS_HEADER in record.headers
        assert record.headers[INSTANCE_HEADER]  # which instance delivered it (the topic says which ally)
        assert RECEIVED_NS_HEADER in record.headers
    # per-missile order on the ally topic
    a_ids = [
        r.headers["ce_id"].decode()
        for r in sorted(delivered, key=lambda r: r.offset)
        if r.key == key_a.encode()
    ]
    assert a_ids == [str(ev.header.event_id) for ev in deliverable[:6]]

    assert wait_for(lambda: len({i for i in everything.ids() if i in expected_ids}) == len(deliverable))
    assert wait_for(lambda: len(alerts.events) >= 1)
    mine = [e for e in everything.events if e[2]["header"]["correlation_key"] in keys]
    assert [e[0] for e in mine if e[2]["header"]["correlation_key"] == key_a] == a_ids
    assert all(e[0] == e[2]["header"]["event_id"] for e in mine)
    assert {e[1] for e in alerts.events} == {"alert"}
    assert [e[0] for e in alerts.events] == [str(deliverable[4].header.event_id)]
    everything.close()
    alerts.close()

    assert wait_for(lambda: len(_audit_lines(tmp_path / "audit", keys)) == len(deliverable))
    audit = _audit_lines(tmp_path / "audit", keys)
    assert {row["event_id"] for row in audit} == expected_ids
    for row in audit:
        assert row["received_ns"] <= row["delivered_ns"]
        assert row["sent_ns"] <= row["append_ns"] + 1_000_000  # broker ms resolution
        assert row["event"]["header"]["event_id"] == row["event_id"]

    assert wait_for(lambda: service.count("withheld") == 5)
    report = service.report().model_dump()
    assert report["counts"]["withheld_by_reason"] == {"not_releasable": 3, "policy_forbids": 2}
    assert report["counts"]["delivered"]["kafka"]["track_update"] == 5
    launch = report["launches"][key_a]
    assert launch["first_launch_detection"]["event_id"] == str(deliverable[0].header.event_id)
    assert launch["first_alert"]["event_id"] == str(deliverable[4].header.event_id)
    assert set(launch["first_alert"]["delivered_ns"]) >= {"kafka", "audit", "sse"}
    assert launch["first_launch_detection"]["launch_time_ns"] is not None
    rows = {(r["hop"], r["kind"], r["channel"]): r for r in report["latency"]}
    for channel in ("kafka", "sse", "audit"):
        assert rows[("end_to_end", "*", channel)]["count"] >= 1
    assert rows[("send_to_append", "*", "none")]["count"] >= len(deliverable)
    assert ("sensor_to_send", "*", "none") not in rows  # no real-time pacing header was sent

    status, body = http_get(service.http_port, "/metrics")
    text = body.decode()
    assert status == 200
    assert 'trilink_ally_events_withheld_total{ally="JP",kind="track_update"} 5.0' in text
    assert 'trilink_ally_hop_latency_seconds_bucket{ally="JP",channel="kafka",hop="end_to_end"' in text
    assert "trilink_ally_consumer_lag_records" in text
    status, body = http_get(service.http_port, "/healthz")
    health = json.loads(body)
    assert status == 200, health
    assert health["status"] == "ok"
    assert len(health["assigned_partitions"]) == input_partitions()
    assert http_get(service.http_port, "/stream?kind=bogus")[0] == 400
    assert http_get(service.http_port, "/nope")[0] == 404
    service.stop()
    assert http_get_fails(service)


def http_get_fails(service: AllyService) -> bool:
    healthy, detail = service.health()
    return not healthy and "consumer loop not running" in detail["problems"]


def test_dead_letters_carry_the_reason_and_the_service_keeps_going(
    kafka_bootstrap: str, make_service: MakeService
) -> None:
    service = make_service("KR")
    key = unique_key("DLQ")
    good = event(key, 0)
    other = event(key, 1, kind=EventKind.ALERT)
    valid_headers = headers_for(good)
    start = end_offsets(kafka_bootstrap, "dead_letter")
    ally_start = end_offsets(kafka_bootstrap, "ally.KR")
    producer = Producer(kafka_bootstrap)
    try:
        producer.send_raw(b"\x00garbage bytes", key.encode(), valid_headers)  # not single-object encoded
        producer.send_raw(b"\xc3\x01" + b"\x11" * 8 + b"body", key.encode(), valid_headers)  # unknown schema
        producer.send_raw(encode_event(other), key.encode(), valid_headers)  # headers describe `good`
        producer.send_raw(encode_event(good), key.encode(), [])  # no headers at all
        producer.send_raw(None, key.encode(), valid_headers)  # tombstone
        producer.send_raw(encode_event(good)[:-3], key.encode(), valid_headers)  # cut short
        producer.send_event(good)
        producer.flush()
    finally:
        producer.close()
    expected = ["bad_magic", "unknown_fingerprint", "header_mismatch", "bad_header", "no_value", "truncated"]
    dead = read_from(kafka_bootstrap, "dead_letter", start, lambda rs: len(rs) >= 6, keep=by_key({key}))
    assert [r.headers[REASON_HEADER].decode() for r in sorted(dead, key=lambda r: r.offset)] == expected
    for record in dead:
        assert record.headers[ALLY_HEADER] == b"KR"
        assert record.headers[ERROR_HEADER]
        topic, partition, offset = record.headers[SOURCE_HEADER].decode().rsplit("/", 2)
        assert topic == "trilink.warnings.v1" and int(partition) >= 0 and int(offset) >= 0
    mismatch = next(r for r in dead if r.headers[REASON_HEADER] == b"header_mismatch")
    assert mismatch.value == encode_event(other)
    assert [h for h in mismatch.raw_headers if not h[0].startswith("trilink_dlq_")] == valid_headers
    delivered = read_from(kafka_bootstrap, "ally.KR", ally_start, lambda rs: len(rs) >= 1, keep=by_key({key}))
    assert [r.headers["ce_id"].decode() for r in delivered] == [str(good.header.event_id)]
    assert service.running
    assert service.report().counts.dead_letters == Counter(expected)
    _status, body = http_get(service.http_port or 0, "/metrics")
    assert 'trilink_dead_letters_total{ally="KR",reason="header_mismatch"} 1.0' in body.decode()


def _commit_offsets(bootstrap: str, group: str, offsets: dict[tuple[str, int], int]) -> None:
    """Rewind a group's committed offsets, as if its last batches were delivered but never committed."""
    from kafka import KafkaConsumer, OffsetAndMetadata, TopicPartition

    from trilink.platform.clients import consumer_config

    consumer: Any = KafkaConsumer(**consumer_config(bootstrap, group, "trilink-tests-rewind"))
    try:
        tps = {TopicPartition(t, p): OffsetAndMetadata(o, "", -1) for (t, p), o in offsets.items()}
        consumer.assign(list(tps))
        consumer.commit(tps)
    finally:
        consumer.close()


def test_duplicates_are_suppressed_within_a_run_and_across_a_restart(
    kafka_bootstrap: str, make_service: MakeService
) -> None:
    group = f"test-ally-restart-{uuid.uuid4().hex[:8]}"
    first = make_service("US", group_id=group, instance_id="restart-1")
    key = unique_key("DUP")
    events = [event(key, i) for i in range(10)]
    start = end_offsets(kafka_bootstrap, "ally.US")
    producer = Producer(kafka_bootstrap)
    try:
        sent = [producer.send_event(ev) for ev in events]
        producer.flush()
        metadata = [f.get(timeout=10) for f in sent]
        assert first.run_until(lambda s: s.delivered_count("kafka") >= 10, timeout_s=20)
        producer.send_event(events[3])  # the same event id again
        producer.flush()
        assert first.run_until(lambda s: s.count("duplicates_suppressed") >= 1, timeout_s=20)
        first.stop()

        # Simulate a crash after delivery but before commit: rewind the group to the first event.
        _commit_offsets(
            kafka_bootstrap, group, {(metadata[0].topic, metadata[0].partition): metadata[0].offset}
        )
        second = make_service("US", group_id=group, instance_id="restart-2")
        assert len(second.window) >= 10
        late = event(key, 10)
        producer.send_event(late)
        producer.flush()
        assert second.run_until(lambda s: s.delivered_count("kafka") >= 1, timeout_s=20)
        assert second.run_until(lambda s: s.count("duplicates_suppressed") >= 11, timeout_s=20), (
            second.report().counts
        )
    finally:
        producer.close()
    delivered = read_from(kafka_bootstrap, "ally.US", start, lambda rs: len(rs) >= 11, keep=by_key({key}))
    ids = [r.headers["ce_id"].decode() for r in delivered]
    assert Counter(ids) == Counter(str(ev.header.event_id) for ev in [*events, late])


def test_scale_out_two_instances_deliver_everything_exactly_once(
    kafka_bootstrap: str, make_service: MakeService, tmp_path: Path
) -> None:
    group = f"test-ally-scale-{uuid.uuid4().hex[:8]}"
    a = make_service("KR", group_id=group, instance_id="scale-a")
    keys = [unique_key(f"SCALE{i}") for i in range(12)]
    start = end_offsets(kafka_bootstrap, "ally.KR")
    expected: list[str] = []
    producing = threading.Event()
    producing.set()
    producer = Producer(kafka_bootstrap)

    def produce() -> None:
        n = 0
        while producing.is_set():
            for key in keys:
                ev = event(key, n)
                expected.append(str(ev.header.event_id))
                producer.send_event(ev)
            producer.flush()
            n += 1
            time.sleep(0.02)

    thread = threading.Thread(target=produce)
    thread.start()
    try:
        assert wait_for(lambda: a.delivered_count("kafka") > 0)  # the stream flows through a alone
        b = make_service("KR", group_id=group, instance_id="scale-b")
        everything = input_partitions()
        # kafka-python 3.0 can leave a join unanswered (ConsumeLoop._rejoin): the service joins
        # again after rejoin_after_s (20 s), so allow that and one more rebalance.
        assert wait_for(lambda: len(a.assigned_partitions()) < everything and b.count("received") > 0, 45)
        assert wait_for(lambda: b.delivered_count("kafka") > 0)  # b has delivered part of the stream
        b.stop()  # mid-stream: finish the batch, commit on revoke, leave the group
        assert wait_for(lambda: len(a.assigned_partitions()) == everything)
        taken_over_at = a.delivered_count("kafka")
        assert wait_for(lambda: a.delivered_count("kafka") > taken_over_at)  # a carries on with b's share
    finally:
        producing.clear()
        thread.join()
        producer.close()
    assert a.run_until(lambda s: s.health()[1]["lag_records"]["trilink.warnings.v1"] == 0, timeout_s=20)
    key_filter = by_key(set(keys))
    delivered = read_from(
        kafka_bootstrap, "ally.KR", start, lambda rs: len(rs) >= len(expected), keep=key_filter
    )
    ids = Counter(r.headers["ce_id"].decode() for r in delivered)
    assert set(ids) == set(expected)
    assert max(ids.values()) == 1, [i for i, n in ids.items() if n > 1]
    by_instance = Counter(r.headers["trilink_ally_instance"].decode() for r in delivered)
    assert by_instance["scale-a"] > 0 and by_instance["scale-b"] > 0, by_instance
    a.stop()
    audit = _audit_lines(tmp_path / "audit", set(keys))
    audit_ids = Counter(row["event_id"] for row in audit)
    assert set(audit_ids) == set(expected)
    assert max(audit_ids.values()) == 1
    # per-missile order across the hand-over: sequences of each key strictly increase
    for key in keys:
        seqs = [
            r["event"]["header"]["sequence"]
            for r in sorted(audit, key=lambda r: r["delivered_ns"])
            if r["correlation_key"] == key
        ]
        assert seqs == sorted(seqs)


def test_slow_subscriber_never_stalls_the_others(kafka_bootstrap: str, make_service: MakeService) -> None:
    service = make_service("US", sse_queue_size=200, sse_send_buffer_bytes=4096)
    assert service.http_port
    stalled = StalledSseClient(service.http_port)
    reader = SseClient(service.http_port)
    try:
        assert wait_for(lambda: service.hub.subscriber_count == 2)
        key = unique_key("SLOW")
        events = [event(key, i) for i in range(1000)]
        producer = Producer(kafka_bootstrap)
        try:
            for i, ev in enumerate(events):  # ~1,000 events/s: a live viewer keeps up
                producer.send_event(ev)
                if i % 20 == 19:
                    producer.flush()
                    time.sleep(0.02)
            producer.flush()
        finally:
            producer.close()
        expected = [str(ev.header.event_id) for ev in events]
        wanted = set(expected)
        assert wait_for(lambda: len([i for i in reader.ids() if i in wanted]) == len(expected), 30), (
            len([i for i in reader.ids() if i in wanted]),
            service.report().counts,
        )
        assert [i for i in reader.ids() if i in wanted] == expected
        assert service.count("subscriber_drops") > 0
        _status, body = http_get(service.http_port, "/metrics")
        drops = [
            line
            for line in body.decode().splitlines()
            if line.startswith("trilink_ally_subscriber_drops_total{")
        ]
        assert drops and float(drops[0].rsplit(" ", 1)[1]) > 0
        assert service.running
    finally:
        reader.close()
        stalled.close()
    assert wait_for(lambda: service.hub.subscriber_count == 0, 15)


def test_three_allies_deliver_only_what_is_releasable_to_them(
    kafka_bootstrap: str, make_service: MakeService
) -> None:
    import random

    rng = random.Random(20231219)
    services = {n: make_service(n.value) for n in ALL}
    key = unique_key("REL")
    events = []
    for i in range(60):
        sensor = rng.choice(ALL)
        kind = rng.choice(list(EventKind))
        releasable = [n for n in ALL if rng.random() < 0.5]
        events.append(event(key, i, kind=kind, sensor=sensor, releasable=releasable))
    starts = {n: end_offsets(kafka_bootstrap, f"ally.{n.value}") for n in ALL}
    producer = Producer(kafka_bootstrap)
    try:
        for ev in events:
            producer.send_event(ev)
        producer.flush()
    finally:
        producer.close()
    policy = services[Nation.US].policy
    for nation, service in services.items():
        allowed = {
            str(ev.header.event_id)
            for ev in events
            if nation in ev.header.releasable_to
            and policy.may_receive(ev.header.sensor_nation, nation, ev.kind)
        }
        assert service.run_until(lambda s: s.count("received") >= len(events), timeout_s=20)
        delivered = read_from(
            kafka_bootstrap,
            f"ally.{nation.value}",
            starts[nation],
            lambda rs, n=len(allowed): len(rs) >= n,  # noqa: B008 - bound per nation
            keep=by_key({key}),
        )
        assert {r.headers["ce_id"].decode() for r in delivered} == allowed, nation
        assert len(delivered) == len(allowed)
        assert service.count("withheld") == len(events) - len(allowed)
