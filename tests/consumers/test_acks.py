"""The three-way acknowledgement: the record's contract, the book's logic, and the real thing.

Unit tests: the acknowledgement round-trips and every class of bad bytes is a typed error; the
released schema is the model's; the book completes a warning only when every ally it was
released to acknowledged it, keeps acknowledgements that arrive first, and counts what is
missing after the timeout. Integration (real broker): three ally services acknowledge every
launch detection and alert each delivered, each knows when all did, and with one ally down the
others list what it never acknowledged.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from consumers.acks import AckBook
from consumers.ledger import Ledger
from schemas import encode_event, message_key
from schemas.acks import (
    ACK_SCHEMA_NAME,
    ACKNOWLEDGED_KINDS,
    Acknowledgement,
    decode_ack,
    derive_ack_schema,
    encode_ack,
)
from schemas.avro import RELEASED_DIR
from schemas.headers import INSTANCE_HEADER
from schemas.models import EventKind, Nation
from tests.consumers.support import (
    ALL,
    Producer,
    by_key,
    end_offsets,
    event,
    headers_for,
    read_from,
    unique_key,
)
from trilink.errors import DeserializationError
from trilink.pipeline import pin_groups_to_end
from trilink.platform.topics import topic_name
from trilink.policy import default_policy


def ack(
    event_id: uuid.UUID, ally: Nation, delivered_ns: int = 2_000, sent_ns: int | None = 1_000
) -> Acknowledgement:
    return Acknowledgement(
        event_id=event_id,
        correlation_key="K-1",
        kind=EventKind.ALERT,
        ally=ally,
        instance_id=f"{ally.value}-test",
        sent_ns=sent_ns,
        delivered_ns=delivered_ns,
    )


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


# ------------------------------------------------------------------ the record


@pytest.mark.unit
def test_acknowledgement_round_trips_and_the_release_is_the_models() -> None:
    original = ack(uuid.uuid4(), Nation.JP)
    assert decode_ack(encode_ack(original)) == original
    released = json.loads((RELEASED_DIR / ACK_SCHEMA_NAME / "v1.avsc").read_text())
    assert released == derive_ack_schema()


@pytest.mark.unit
@pytest.mark.parametrize(
    ("mangle", "reason"),
    [
        (lambda b: b[:5], "truncated"),
        (lambda b: b[:-3], "truncated"),
        (lambda b: b"\x00\x01" + b[2:], "bad_magic"),
        (lambda b: b[:2] + bytes(8) + b[10:], "unknown_fingerprint"),
        (lambda b: b + b"\x00", "trailing_bytes"),
        (lambda b: b + bytes(5000), "too_large"),
    ],
)
def test_bad_bytes_are_typed_errors(mangle: Any, reason: str) -> None:
    with pytest.raises(DeserializationError) as caught:
        decode_ack(mangle(encode_ack(ack(uuid.uuid4(), Nation.US))))
    assert caught.value.reason == reason


@pytest.mark.unit
def test_a_well_framed_record_with_bad_values_is_a_typed_error() -> None:
    good = encode_ack(ack(uuid.uuid4(), Nation.US))
    # the uuid's text is the first field: 36 characters after a 1-byte length at offset 10
    bad = good[:11] + b"x" * 36 + good[47:]
    with pytest.raises(DeserializationError) as caught:
        decode_ack(bad)
    assert caught.value.reason == "invalid_value"


# ------------------------------------------------------------------ the book


def book_for(ally: Nation = Nation.US, timeout_s: float = 30.0) -> tuple[AckBook, Ledger, Clock]:
    ledger = Ledger(ally.value)
    clock = Clock()
    return AckBook(ally, default_policy(), ledger, timeout_s, clock=clock), ledger, clock


@pytest.mark.unit
def test_complete_only_when_every_ally_released_to_acknowledged() -> None:
    book, ledger, _ = book_for()
    warning = event("K-1", 0, kind=EventKind.ALERT, sensor=Nation.US, releasable=ALL)
    expected = book.expected(warning)
    assert expected == {n for n in ALL if default_policy().may_receive(Nation.US, n, EventKind.ALERT)}
    event_id = warning.header.event_id
    book.expect(warning, event_id, sent_ns=1_000_000)
    for n, ally in enumerate(sorted(expected)):
        assert book.summary().acknowledged_by_all == 0
        book.acknowledged(ack(event_id, ally, delivered_ns=2_000_000 + n * 1_000_000))
    summary = book.summary()
    assert (summary.acknowledged_by_all, summary.pending) == (1, 0)
    ledger.fold()
    row = next(r for r in ledger.rows() if r["hop"] == "acknowledged_by_all" and r["kind"] == "alert")
    assert row["count"] == 1
    last = 2_000_000 + (len(expected) - 1) * 1_000_000
    assert abs(row["max_ms"] - (last - 1_000_000) / 1e6) < 0.01


@pytest.mark.unit
def test_acknowledgements_before_the_own_delivery_are_kept() -> None:
    book, _, _ = book_for(Nation.KR)
    warning = event("K-2", 0, kind=EventKind.LAUNCH_DETECTION, sensor=Nation.KR, releasable=ALL)
    event_id = warning.header.event_id
    others = book.expected(warning) - {Nation.KR}
    for ally in others:
        book.acknowledged(ack(event_id, ally))
    book.expect(warning, event_id, sent_ns=None)
    assert book.summary().pending == 1
    book.acknowledged(ack(event_id, Nation.KR))
    assert book.summary().acknowledged_by_all == 1


@pytest.mark.unit
def test_only_the_allies_it_was_released_to_are_waited_for() -> None:
    book, _, _ = book_for()
    warning = event("K-3", 0, kind=EventKind.ALERT, sensor=Nation.US, releasable=[Nation.US])
    assert book.expected(warning) == {Nation.US}
    book.expect(warning, warning.header.event_id, sent_ns=1)
    book.acknowledged(ack(warning.header.event_id, Nation.US))
    assert book.summary().acknowledged_by_all == 1


@pytest.mark.unit
def test_missing_acknowledgements_are_counted_and_listed_after_the_timeout() -> None:
    book, ledger, clock = book_for(timeout_s=5.0)
    warning = event("K-4", 0, kind=EventKind.ALERT, sensor=Nation.US, releasable=ALL)
    event_id = warning.header.event_id
    book.expect(warning, event_id, sent_ns=1)
    book.expect(warning, event_id, sent_ns=1)  # delivered again after a restart: one warning
    book.acknowledged(ack(event_id, Nation.US))
    clock.now += 4.0
    book.sweep()
    assert book.summary().unacknowledged == 0
    clock.now += 2.0
    book.sweep()
    summary = book.summary()
    missing = sorted(a.value for a in book.expected(warning) - {Nation.US})
    assert (summary.unacknowledged, summary.pending) == (1, 0)
    assert summary.unacknowledged_listed[0].missing == missing
    assert summary.unacknowledged_by_ally == dict.fromkeys(missing, 1)
    assert ledger.unacknowledged == {a.value: int(a.value in missing) for a in ALL}


# ------------------------------------------------------------------ on the real broker


def _warnings(key: str) -> list[Any]:
    """Launch detections and alerts from every nation plus track updates (never acknowledged)."""
    out = []
    for i, (kind, sensor) in enumerate(
        [(k, s) for k in (EventKind.LAUNCH_DETECTION, EventKind.ALERT, EventKind.TRACK_UPDATE) for s in ALL]
    ):
        out.append(event(key, i, kind=kind, sensor=sensor, releasable=ALL))
    return out


def _wait_complete(book: AckBook, wanted: int, timeout_s: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while book.summary().acknowledged_by_all < wanted:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.mark.integration
def test_every_ally_acknowledges_and_knows_when_all_did(kafka_bootstrap: str, make_service: Any) -> None:
    services = {n: make_service(n.value) for n in ALL}
    key = unique_key("ACK")
    warnings = _warnings(key)
    start = end_offsets(kafka_bootstrap, "acks")
    producer = Producer(kafka_bootstrap)
    try:
        for w in warnings:
            producer.send_event(w)
        producer.flush()
    finally:
        producer.close()
    acked_kinds = [w for w in warnings if w.kind in ACKNOWLEDGED_KINDS]
    released = {n: [w for w in acked_kinds if n in services[n].acks.expected(w)] for n in ALL}  # type: ignore[union-attr]
    expected_acks = sum(len(ws) for ws in released.values())
    records = read_from(
        kafka_bootstrap, "acks", start, lambda rs: len(rs) >= expected_acks, keep=by_key({key})
    )
    acks = [decode_ack(r.value) for r in records]
    assert sorted((a.ally, str(a.event_id)) for a in acks) == sorted(
        (n, str(w.header.event_id)) for n, ws in released.items() for w in ws
    )
    assert all(r.headers["ce_type"] == b"org.trilink.ack.acknowledgement.v1" for r in records)
    for nation, service in services.items():
        book = service.acks
        assert book is not None
        assert _wait_complete(book, len(released[nation])), (nation, book.summary())
        report = service.report()
        assert report.acknowledgements is not None
        assert report.acknowledgements.unacknowledged == 0
        rows = [r for r in report.latency if r.hop == "acknowledged_by_all" and r.kind == "*"]
        assert rows and rows[0].count == len(released[nation]) and rows[0].p50_ms > 0


@pytest.mark.integration
def test_an_ally_that_never_acknowledges_is_named(kafka_bootstrap: str, make_service: Any) -> None:
    """KR is down: US and JP deliver, wait ``ack_timeout_s``, then list the warnings KR lacks."""
    services = {n: make_service(n.value, ack_timeout_s=2.0) for n in (Nation.US, Nation.JP)}
    key = unique_key("NOACK")
    warning = event(key, 0, kind=EventKind.ALERT, sensor=Nation.US, releasable=ALL)
    producer = Producer(kafka_bootstrap)
    try:
        producer.send_event(warning)
        producer.flush()
    finally:
        producer.close()
    assert Nation.KR in services[Nation.US].acks.expected(warning)  # type: ignore[union-attr]
    deadline = time.monotonic() + 20
    for service in services.values():
        book = service.acks
        assert book is not None
        expects_kr = Nation.KR in book.expected(warning)
        while time.monotonic() < deadline and book.summary().unacknowledged < int(expects_kr):
            time.sleep(0.1)
        summary = book.summary()
        if expects_kr:
            assert summary.unacknowledged == 1, summary
            assert summary.unacknowledged_listed[0].event_id == str(warning.header.event_id)
            assert summary.unacknowledged_listed[0].missing == ["KR"]
            assert service.ledger.unacknowledged == {"US": 0, "JP": 0, "KR": 1}


@pytest.mark.integration
def test_a_record_on_the_acknowledgement_topic_that_is_not_one_is_dead_lettered(
    kafka_bootstrap: str, make_service: Any
) -> None:
    from kafka import KafkaProducer

    from trilink.platform.clients import producer_config
    from trilink.platform.topics import topic_name

    service = make_service("JP")
    key = unique_key("BADACK")
    start = end_offsets(kafka_bootstrap, "dead_letter")
    producer = KafkaProducer(**producer_config(kafka_bootstrap, "trilink-tests-bad-ack"))
    try:
        truncated = encode_ack(ack(uuid.uuid4(), Nation.US))[:5]
        producer.send(topic_name("acks"), truncated, key=key.encode()).get(timeout=30)
    finally:
        producer.close()
    (dead,) = read_from(kafka_bootstrap, "dead_letter", start, lambda rs: len(rs) >= 1, keep=by_key({key}))
    assert dead.headers["trilink_dlq_reason"] == b"truncated"
    assert dead.headers["trilink_dlq_ally"] == b"JP"
    assert dead.value == truncated
    assert service.running and service.error is None


@pytest.mark.integration
@pytest.mark.parametrize("audit", [False, True], ids=["kafka-only", "with-audit"])
def test_a_restarted_service_acknowledges_what_its_dead_process_delivered(
    kafka_bootstrap: str, make_service: Any, tmp_path: Path, audit: bool
) -> None:
    """The state a kill -9 leaves between a delivery and its acknowledgement: the alert is on
    the ally topic, its offset not committed, no acknowledgement sent. The service that starts
    in that group reads the alert again, does not deliver it twice, and acknowledges it with
    the time it was delivered (with an audit file, the alert is also written there, since that
    channel never got it)."""
    key = unique_key("REACK")
    warning = event(key, 0, kind=EventKind.ALERT, sensor=Nation.US, releasable=ALL)
    group = f"test-reack-{uuid.uuid4().hex[:8]}"
    pin_groups_to_end(kafka_bootstrap, [group], (topic_name("warnings"), topic_name("sensor_status")))
    ack_start = end_offsets(kafka_bootstrap, "acks")
    ally_start = end_offsets(kafka_bootstrap, "ally.US")
    producer = Producer(kafka_bootstrap)
    try:
        producer.send_event(warning)  # read, not committed
        delivered = [*headers_for(warning), (INSTANCE_HEADER, b"the-dead-process")]
        producer.send_raw(encode_event(warning), message_key(warning), delivered, role="ally.US")
        producer.flush()
    finally:
        producer.close()

    service = make_service("US", group_id=group, audit_dir=tmp_path / "audit" if audit else None)

    acks = read_from(kafka_bootstrap, "acks", ack_start, lambda rs: len(rs) >= 1, keep=by_key({key}))
    on_topic = read_from(
        kafka_bootstrap, "ally.US", ally_start, lambda rs: len(rs) >= 1, keep=by_key({key}), settle_s=2.0
    )
    assert len(on_topic) == 1  # the dead process's copy only
    assert [(a.ally, a.event_id) for a in map(decode_ack, (r.value for r in acks))] == [
        (Nation.US, warning.header.event_id)
    ]
    assert decode_ack(acks[0].value).delivered_ns == on_topic[0].timestamp_ms * 1_000_000
    assert service.count("duplicates_suppressed") == (0 if audit else 1)
    assert service.delivered_count("audit") == (1 if audit else 0)
