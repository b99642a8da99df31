"""Failure paths of the ally service that a real broker cannot be made to produce on cue, with
fake Kafka clients behind the service's typed seams (consumers.ports): a send the broker refuses,
acknowledgements that never come, an audit file that cannot be written, a ``poll`` that raises on
a batch the client library cannot parse, and records that must never stop the loop. The happy
path and every other behaviour are tested against the real broker in test_service.py."""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kafka import TopicPartition
from kafka.errors import FencedInstanceIdError

from consumers.errors import ChannelDeliveryError, FencedMemberError
from consumers.service import AllyService, Plausibility
from schemas import encode_event, kafka_headers, message_key
from schemas.headers import SENT_NS_HEADER
from schemas.models import EventKind
from schemas.samples import sample_event
from trilink.latency import encode_sent_ns
from trilink.platform.topics import topic_name
from trilink.settings import Settings

pytestmark = pytest.mark.unit

WARNINGS = topic_name("warnings")
STATUS = topic_name("sensor_status")


@dataclass
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, Any]]
    timestamp: int = 0
    timestamp_type: int = 1


class FakeFuture:
    def __init__(self) -> None:
        self.callbacks: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []
        self.errbacks: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []

    def add_callback(self, fn: Callable[..., Any], *args: Any) -> FakeFuture:
        self.callbacks.append((fn, args))
        return self

    def add_errback(self, fn: Callable[..., Any], *args: Any) -> FakeFuture:
        self.errbacks.append((fn, args))
        return self


@dataclass
class FakeProducer:
    """Acknowledges every send at once unless told to refuse or to stay silent."""

    refuse: Callable[[str, bytes | None], BaseException | None] = lambda topic, value: None
    #: An exception ``send`` raises at once (the client refusing a record before it is queued).
    raise_on_send: Callable[[str, bytes | None], BaseException | None] = lambda topic, value: None
    silent: bool = False
    sent: list[tuple[str, bytes | None, list[tuple[str, bytes]]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    pending: list[tuple[FakeFuture, BaseException | None]] = field(default_factory=list)

    def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
        partition: int | None = None,
    ) -> FakeFuture:
        refusal = self.raise_on_send(topic, value)
        if refusal is not None:
            raise refusal
        future = FakeFuture()
        error = self.refuse(topic, value)
        with self.lock:
            self.sent.append((topic, value, list(headers or [])))
            # callbacks are added after send returns: answered on the next poll or flush
            self.pending.append((future, error))
        return future

    def answer(self) -> None:
        """Answer every send so far (the broker's acks or errors), unless told to stay silent."""
        if self.silent:
            return
        with self.lock:
            pending, self.pending = self.pending, []
        for future, error in pending:
            for fn, args in future.errbacks if error else future.callbacks:
                fn(*args, error) if error else fn(*args, None)

    def flush(self, timeout: float | None = None) -> None:
        self.answer()

    def partitions_for(self, topic: str) -> set[int]:
        return {0, 1, 2}

    def close(self, timeout: float | None = None) -> None:
        pass


@dataclass
class FakeConsumer:
    """One partition of one topic (warnings unless told); ``poll`` hands out what is queued from
    the position."""

    producer: FakeProducer
    records: list[Record] = field(default_factory=list)
    poll_error: Callable[[int], BaseException | None] = lambda position: None
    position_: int = 0
    committed_: int | None = None
    listener: Any = None
    assigned: bool = False
    polls: int = 0
    stuck_joins: int = 0  # joins whose assignment never arrives (a rebalance left unfinished)
    topic: str = WARNINGS  # the one topic it reads (partition 0)
    #: (monotonic time the poll began, records it returned), every poll
    poll_log: list[tuple[float, int]] = field(default_factory=list)

    def subscribe(self, topics: list[str], listener: Any = None) -> None:
        self.listener = listener

    def unsubscribe(self) -> None:
        self.assigned = False
        self.stuck_joins = max(self.stuck_joins - 1, 0)

    def partitions_for_topic(self, topic: str) -> set[int]:
        return {0}

    def poll(self, timeout_ms: int = 0, max_records: int | None = None) -> dict[Any, list[Any]]:
        began = time.monotonic()
        batch = self._poll(timeout_ms, max_records)
        self.poll_log.append((began, sum(len(r) for r in batch.values())))
        return batch

    def _poll(self, timeout_ms: int, max_records: int | None) -> dict[Any, list[Any]]:
        self.polls += 1
        self.producer.answer()
        if not self.assigned and not self.stuck_joins:
            self.assigned = True
            asyncio.run(self.listener.on_partitions_assigned([TopicPartition(self.topic, 0)]))
            return {}
        if not self.assigned:
            return {}
        error = self.poll_error(self.position_)
        if error is not None:
            raise error
        batch = []  # contiguous offsets from the position (a gap is where the log cannot be read)
        for record in sorted(self.records, key=lambda r: r.offset):
            if record.offset == self.position_ + len(batch) and len(batch) < (max_records or 500):
                batch.append(record)
        if not batch:
            time.sleep(timeout_ms / 1000 / 10)
            return {}
        self.position_ = batch[-1].offset + 1
        return {TopicPartition(self.topic, 0): batch}

    def lose(self) -> None:
        """The group evicted this member: its partition is lost, not revoked."""
        asyncio.run(self.listener.on_partitions_lost([TopicPartition(self.topic, 0)]))

    def position(self, tp: Any) -> int:
        return self.position_

    def committed(self, tp: Any) -> int | None:
        return self.committed_

    def highwater(self, tp: Any) -> int:
        return len(self.records)

    def seek(self, tp: Any, offset: int) -> None:
        self.position_ = offset

    def pause(self, *tps: Any) -> None:
        pass

    def resume(self, *tps: Any) -> None:
        pass

    def commit(self, offsets: Any = None, timeout_ms: int | None = None) -> None:
        for tp, meta in (offsets or {}).items():
            if tp.topic == self.topic:
                self.committed_ = meta.offset

    def commit_async(self, offsets: Any = None, callback: Any = None) -> None:
        self.commit(offsets)

    def close(self) -> None:
        pass


def event_record(offset: int, **header: Any) -> Record:
    event = sample_event(EventKind.TRACK_UPDATE, event_id=str(uuid.UUID(int=offset + 1)), **header)
    headers: list[tuple[str, Any]] = [
        *kafka_headers(event, "/t"),
        (SENT_NS_HEADER, encode_sent_ns(time.time_ns())),
    ]
    return Record(
        WARNINGS, 0, offset, message_key(event), encode_event(event), headers, time.time_ns() // 10**6
    )


def start(tmp_path: Path, consumer: FakeConsumer, producer: FakeProducer, **options: Any) -> AllyService:
    options.setdefault("rebuild_dedup", False)
    service = AllyService(
        "US",
        "fake:9092",
        http_port=None,
        commit_interval_s=0.01,
        flush_timeout_s=0.5,
        consumer_factory=lambda *a, **k: consumer,
        producer_factory=lambda *a: producer,
        acknowledge=False,  # the acknowledgement reader is a real consumer: tests/consumers/test_acks.py
        settings=Settings(state_dir=tmp_path / "state", bootstrap=None),
        **options,
    )
    service.start()
    assert service.wait_ready(5)
    return service


def sent_to(producer: FakeProducer, topic: str) -> list[tuple[str, bytes | None, list[tuple[str, bytes]]]]:
    with producer.lock:
        return [s for s in producer.sent if s[0] == topic]


def wait_for(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def test_hostile_records_are_dead_lettered_and_the_loop_goes_on(tmp_path: Path) -> None:
    producer = FakeProducer()
    good = event_record(3)
    records = [
        Record(
            WARNINGS,
            0,
            0,
            b"k",
            encode_event(sample_event()),
            [*kafka_headers(sample_event(), "/t"), ("x", None)],
        ),
        Record(WARNINGS, 0, 1, b"k", b"\x00" * 999_990, kafka_headers(sample_event(), "/t")),
        event_record(2, measured_at="2999-01-01T00:00:00Z", emitted_at="2999-01-01T00:00:01Z"),
        good,
    ]
    consumer = FakeConsumer(producer, records)
    service = start(tmp_path, consumer, producer)
    try:
        wait_for(lambda: consumer.committed_ == 4)
        dead = sent_to(producer, topic_name("dead_letter"))
        reasons = [dict(h)["trilink_dlq_reason"] for _, _, h in dead]
        assert reasons == [b"bad_header", b"too_large", b"implausible_time"]
        assert all(len(value or b"") + sum(len(n) + len(v) for n, v in h) < 1_000_000 for _, value, h in dead)
        assert [v for _, v, _ in sent_to(producer, service.output_topic)] == [good.value]
        assert service.error is None and service.running
    finally:
        service.stop()


def test_a_refused_send_is_delivered_again_and_committed_only_then(tmp_path: Path) -> None:
    refusals = [RuntimeError("NotLeaderForPartition")]
    producer = FakeProducer(
        refuse=lambda topic, value: refusals.pop() if refusals and "ally" in topic else None
    )
    consumer = FakeConsumer(producer, [event_record(0), event_record(1)])
    service = start(tmp_path, consumer, producer, audit_dir=tmp_path / "audit")
    try:
        wait_for(lambda: consumer.committed_ == 2 and service.delivered_count("kafka") == 2)
        out = sent_to(producer, service.output_topic)
        assert len(out) == 3  # one refused, sent again
        assert service.delivered_count("audit") == 2  # the audit line was not written twice
        lines = (tmp_path / "audit").glob("*.jsonl")
        assert sum(len(p.read_text().splitlines()) for p in lines) == 2
        assert service.report().counts.delivery_failures == {"kafka/kafka_send_failed": 1}
    finally:
        service.stop()


def test_a_record_the_client_refuses_at_once_goes_to_no_channel_and_the_rest_do(tmp_path: Path) -> None:
    """The poll's events reach the channels together at the end of the poll: one the Kafka
    client refuses as it is (too large with the relay's headers, say) is dead-lettered and
    written to neither the audit file nor the live view; the events around it are."""
    records = [event_record(0), event_record(1), event_record(2)]
    refused = records[1].value

    def too_large(topic: str, value: bytes | None) -> BaseException | None:
        return RuntimeError("MessageSizeTooLargeError") if "ally" in topic and value == refused else None

    producer = FakeProducer(raise_on_send=too_large)
    consumer = FakeConsumer(producer, [])
    service = start(tmp_path, consumer, producer, audit_dir=tmp_path / "audit")
    viewer = service.hub.subscribe()
    consumer.records.extend(records)  # polled once the live viewer is there
    try:
        wait_for(lambda: consumer.committed_ == 3 and service.delivered_count("audit") == 2)
        assert [v for _, v, _ in sent_to(producer, service.output_topic)] == [
            records[0].value,
            records[2].value,
        ]
        dead = sent_to(producer, topic_name("dead_letter"))
        assert [dict(h)["trilink_dlq_reason"] for _, _, h in dead] == [b"undeliverable"]
        lines = [
            json.loads(line)
            for p in (tmp_path / "audit").glob("*.jsonl")
            for line in p.read_text().splitlines()
        ]
        assert [line["event_id"] for line in lines] == [str(uuid.UUID(int=1)), str(uuid.UUID(int=3))]
        frames = b"".join(item.frame for item in viewer.take(1.0))
        assert frames.count(b"id: ") == 2
        assert str(uuid.UUID(int=2)).encode() not in frames
        assert service.error is None and service.running
    finally:
        service.stop()


def test_acks_that_never_come_hold_the_commit_back(tmp_path: Path) -> None:
    producer = FakeProducer(silent=True)
    consumer = FakeConsumer(producer, [event_record(0)])
    service = start(tmp_path, consumer, producer)
    try:
        wait_for(lambda: service.report().counts.delivery_failures.get("kafka/kafka_flush_timeout", 0) >= 1)
        assert consumer.committed_ in (None, 0)
        assert service.running
    finally:
        producer.silent = False
        service.stop()


def test_an_audit_write_failure_is_retried_without_duplicating_kafka(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    producer = FakeProducer()
    consumer = FakeConsumer(producer, [event_record(0)])
    service = start(tmp_path, consumer, producer, audit_dir=tmp_path / "audit")
    assert service.audit is not None
    real_append = service.audit.append
    failures = [ChannelDeliveryError("audit_write_failed", "disk full")]

    def flaky(line: bytes) -> None:
        if failures:
            raise failures.pop()
        real_append(line)

    monkeypatch.setattr(service.audit, "append", flaky)
    try:
        consumer.records.append(event_record(1))
        wait_for(lambda: consumer.committed_ == 2 and service.delivered_count("audit") >= 1)
        assert len(sent_to(producer, service.output_topic)) == 2  # kafka had it: not sent twice
        assert service.report().counts.delivery_failures["audit/audit_write_failed"] >= 1
    finally:
        service.stop()


def test_an_unparseable_batch_is_skipped_and_named(tmp_path: Path) -> None:
    producer = FakeProducer()
    consumer = FakeConsumer(producer, [event_record(0), event_record(5)])
    consumer.poll_error = lambda position: (
        UnicodeDecodeError("utf-8", b"\xff", 0, 1, "bad") if 1 <= position < 5 else None
    )
    located: list[tuple[str, int, int]] = []

    def locate(bootstrap: str, topic: str, partition: int, offset: int) -> tuple[int, str] | None:
        located.append((topic, partition, offset))
        return (5, "UnicodeDecodeError") if offset == 1 else None

    service = start(tmp_path, consumer, producer, locate_unparseable=locate, plausibility=Plausibility())
    try:
        wait_for(lambda: consumer.committed_ == 6)
        dead = sent_to(producer, topic_name("dead_letter"))
        assert [dict(h)["trilink_dlq_reason"] for _, _, h in dead] == [b"unparseable_batch"]
        assert b"offsets 1..4" in dict(dead[0][2])["trilink_dlq_error"]
        assert (WARNINGS, 0, 1) in located
        assert len(sent_to(producer, service.output_topic)) == 2
    finally:
        service.stop()


def test_a_failed_rebuild_delivers_with_the_window_as_it_is(tmp_path: Path) -> None:
    producer = FakeProducer()
    consumer = FakeConsumer(producer, [event_record(0)])

    def unreachable(*args: Any, **kwargs: Any) -> list[tuple[int, int, int, uuid.UUID]]:
        raise ConnectionError("tail read timed out")

    service = start(tmp_path, consumer, producer, rebuild_dedup=True, read_tail=unreachable)
    try:
        wait_for(lambda: consumer.committed_ == 1)
        assert service.delivered_count("kafka") == 1
        failures = [
            s.labels["reason"]
            for f in service.metrics.delivery_failures.collect()
            for s in f.samples
            if s.name.endswith("_total") and s.value
        ]
        assert failures == ["rebuild_failed"]
    finally:
        service.stop()


def test_after_a_crash_each_channel_gets_only_what_it_lacks(tmp_path: Path) -> None:
    """Records read again after a crash: one was written to the audit file but never
    acknowledged by Kafka, one reached Kafka but not the audit file, one reached neither."""
    records = [event_record(0), event_record(1), event_record(2)]
    audit_only, kafka_only = uuid.UUID(int=1), uuid.UUID(int=2)
    audit_dir = tmp_path / "audit"
    audit_dir.mkdir()
    (audit_dir / "ally-us-crashed-instance.jsonl").write_text(
        f'{{"event_id":"{audit_only}"}}\n{{"event_id":"partial-line-cut-by-the-cr'
    )

    def tail(*args: Any, **kwargs: Any) -> list[tuple[int, int, int, uuid.UUID]]:
        return [(0, 0, 7, kafka_only)]

    producer = FakeProducer()
    consumer = FakeConsumer(producer, records)
    service = start(tmp_path, consumer, producer, rebuild_dedup=True, read_tail=tail, audit_dir=audit_dir)
    try:
        wait_for(lambda: consumer.committed_ == 3)
        sent_ids = [dict(h)["ce_id"] for _, _, h in sent_to(producer, service.output_topic)]
        assert sent_ids == [str(audit_only).encode(), str(uuid.UUID(int=3)).encode()]
        assert service.audit_path is not None
        written = [line for line in service.audit_path.read_text().splitlines()]
        assert [line.split('"event_id":"')[1][:36] for line in written] == [
            str(kafka_only),
            str(uuid.UUID(int=3)),
        ]
        assert service.count("duplicates_suppressed") == 0
    finally:
        service.stop()


def test_lost_partitions_are_not_committed(tmp_path: Path) -> None:
    producer = FakeProducer(silent=True)
    consumer = FakeConsumer(producer, [event_record(0)])
    service = start(tmp_path, consumer, producer)
    try:
        wait_for(lambda: len(sent_to(producer, service.output_topic)) == 1)
        pinned = consumer.committed_  # the start position, committed when the partition was assigned
        consumer.lose()
        assert service.assigned_partitions() == []
        producer.silent = False
        producer.flush()  # the acknowledgement arrives after the partition was lost
        assert service.delivered_count("kafka") == 1
        turns = consumer.polls
        wait_for(lambda: consumer.polls >= turns + 5)  # loop turns in which a commit would happen
        assert consumer.committed_ == pinned == 0
        assert service.running and service.error is None
    finally:
        service.stop()


def test_the_rebuilt_window_forgets_its_oldest_ids_first(tmp_path: Path) -> None:
    """The window is refilled oldest first: events arriving after a restart evict the oldest
    recovered ids, never the newest, which are the ones the restarted service reads again.
    (The ids are chosen so that a set's iteration order would load the newest first.)"""
    older, newer = uuid.UUID(int=6), uuid.UUID(int=2)
    audit_dir = tmp_path / "audit"
    audit_dir.mkdir()
    (audit_dir / "ally-us-crashed-instance.jsonl").write_text(
        f'{{"event_id":"{older}"}}\n{{"event_id":"{newer}"}}\n'
    )

    def tail(*args: Any, **kwargs: Any) -> list[tuple[int, int, int, uuid.UUID]]:
        return [(1, 0, 1, older), (2, 0, 2, newer)]

    fresh, again = event_record(0), event_record(1)  # ids 1 (new) and 2 (== newer, read again)
    producer = FakeProducer()
    consumer = FakeConsumer(producer, [fresh, again])
    service = start(
        tmp_path,
        consumer,
        producer,
        rebuild_dedup=True,
        read_tail=tail,
        audit_dir=audit_dir,
        dedup_capacity=2,
    )
    try:
        wait_for(lambda: consumer.committed_ == 2)
        assert [v for _, v, _ in sent_to(producer, service.output_topic)] == [fresh.value]
        assert service.count("duplicates_suppressed") == 1
    finally:
        service.stop()


def test_a_join_that_never_gets_partitions_is_retried(tmp_path: Path) -> None:
    producer = FakeProducer()
    consumer = FakeConsumer(producer, [event_record(0)], stuck_joins=1)
    service = start(tmp_path, consumer, producer, rejoin_after_s=0.2)
    try:
        wait_for(lambda: consumer.committed_ == 1)
        assert consumer.stuck_joins == 0
        assert service.report().counts.delivery_failures == {"consumer/rejoin": 1}
    finally:
        service.stop()


def test_after_a_poll_with_several_records_the_next_waits_for_the_poll_linger(tmp_path: Path) -> None:
    """The poll linger (Settings.poll_linger_ms): a poll that returned several records is
    followed by the next no sooner than the linger, so what arrives meanwhile comes in one
    fetch; a poll that returned one record, or nothing, is followed at once (no record waits
    for the linger at low load)."""
    producer = FakeProducer()
    consumer = FakeConsumer(producer, [event_record(0), event_record(1)])
    service = start(tmp_path, consumer, producer, poll_linger_ms=150)
    try:
        wait_for(lambda: consumer.committed_ == 2)
        consumer.records.append(event_record(2))
        wait_for(lambda: consumer.committed_ == 3)

        def polls_since_records() -> int:
            last = max(i for i, (_, count) in enumerate(consumer.poll_log) if count)
            return len(consumer.poll_log) - 1 - last

        wait_for(lambda: polls_since_records() >= 2)
    finally:
        service.stop()
    log = consumer.poll_log
    gap_after = {n: log[i + 1][0] - log[i][0] for i, (_, n) in enumerate(log[:-1]) if n}
    assert set(gap_after) == {1, 2}
    assert gap_after[2] >= 0.15
    assert gap_after[1] < 0.1
    empty_gaps = [b[0] - a[0] for a, b in itertools.pairwise(log) if not a[1]]
    assert empty_gaps and min(empty_gaps) < 0.1


@pytest.mark.parametrize("static_member", [True, False])
def test_a_static_member_joins_as_its_client_id_and_stops_when_fenced(
    tmp_path: Path, static_member: bool
) -> None:
    """A fleet's services are static members (consumers/fleet.py): a process started again
    after a crash takes the dead one's place at once. Should two processes share the identity,
    the broker fences the older one, which stops (typed) instead of polling on against it."""
    producer = FakeProducer()
    consumer = FakeConsumer(producer, [event_record(0), event_record(1)])
    consumer.poll_error = lambda position: (
        FencedInstanceIdError("a newer member") if static_member and position >= 2 else None
    )
    joined_as: dict[str, Any] = {}
    left: list[tuple[str, str, str, str]] = []

    def factory(*args: Any, **kwargs: Any) -> FakeConsumer:
        joined_as.update(kwargs)
        return consumer

    service = AllyService(
        "US",
        "fake:9092",
        instance_id="fleet-1",
        http_port=None,
        commit_interval_s=0.01,
        flush_timeout_s=0.5,
        consumer_factory=factory,
        producer_factory=lambda *a: producer,
        acknowledge=False,
        rebuild_dedup=False,
        settings=Settings(state_dir=tmp_path / "state", bootstrap=None),
        static_member=static_member,
        leave_group=lambda *identity: left.append(identity),
    )
    service.start()
    try:
        assert service.wait_ready(5)
        assert joined_as["group_instance_id"] == (service.client_id if static_member else None)
        wait_for(lambda: len(sent_to(producer, service.output_topic)) == 2)
        if static_member:
            wait_for(lambda: not service.running)
            assert isinstance(service.error, FencedMemberError)
            assert service.error.reason == "fenced" and service.client_id in service.error.message
        else:
            time.sleep(0.2)
            assert service.running and service.error is None
    finally:
        service.stop()
    assert left == []  # fenced: its identity is the newer process's; dynamic: close() left


def test_a_static_member_that_stops_cleanly_leaves_its_group(tmp_path: Path) -> None:
    """kafka-python's close() sends no LeaveGroup for a static member: the service sends it, so
    the partitions of a stopped instance go to the others at once."""
    producer = FakeProducer()
    consumer = FakeConsumer(producer, [event_record(0)])
    left: list[tuple[str, str, str, str]] = []
    service = start(
        tmp_path,
        consumer,
        producer,
        instance_id="fleet-2",
        static_member=True,
        leave_group=lambda *identity: left.append(identity),
    )
    try:
        wait_for(lambda: consumer.committed_ == 1)
    finally:
        service.stop()
    assert left == [("fake:9092", service.group_id, service.client_id, service.client_id)]
