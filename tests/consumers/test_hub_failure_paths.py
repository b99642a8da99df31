"""Failure paths of the hub's loop (consumers.loop, shared with the ally services) with the fake
Kafka clients of test_failure_paths.py: a feed write the broker refuses, acknowledgements that
never come, and a dead letter the client cannot send at all. The happy path and the rest run
against the real broker in test_hub.py."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kafka.errors import KafkaTimeoutError

from consumers.hub import HubService
from consumers.service import AllyService
from tests.consumers.test_failure_paths import (
    FakeConsumer,
    FakeFuture,
    FakeProducer,
    Record,
    event_record,
    sent_to,
    start,
    wait_for,
)
from trilink.platform.topics import feed_role, ingest_role, topic_name
from trilink.settings import Settings

pytestmark = pytest.mark.unit

INGEST_US = topic_name(ingest_role("US"))
FEEDS = {topic_name(feed_role(n)) for n in ("US", "JP", "KR")}
DEAD_LETTER = topic_name("dead_letter")


@dataclass
class CloggedProducer(FakeProducer):
    """Raises on the next ``clogged`` sends to the dead-letter topic (the client cannot send now)."""

    clogged: int = 0

    def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
        partition: int | None = None,
    ) -> FakeFuture:
        if topic == DEAD_LETTER and self.clogged:
            self.clogged -= 1
            raise KafkaTimeoutError("the send buffer is full")
        return super().send(topic, value, key, headers, partition)


def ingest_record(offset: int, **fields: Any) -> Record:
    """A US sensor's record on the US ingest topic (the sample header is a US radar's)."""
    return dataclasses.replace(event_record(offset), topic=INGEST_US, **fields)


def start_hub(tmp_path: Path, consumer: FakeConsumer, producer: FakeProducer) -> HubService:
    consumer.topic = INGEST_US
    hub = HubService(
        "fake:9092",
        http_port=None,
        commit_interval_s=0.01,
        flush_timeout_s=0.5,
        consumer_factory=lambda *a, **k: consumer,
        producer_factory=lambda *a: producer,
        settings=Settings(state_dir=tmp_path / "state", bootstrap=None),
    )
    hub.start()
    assert hub.wait_ready(5)
    return hub


def feed_writes(producer: FakeProducer) -> list[bytes | None]:
    with producer.lock:
        return [value for topic, value, _ in producer.sent if topic in FEEDS]


@pytest.mark.parametrize(
    "failing",
    [
        # the broker refuses a write it was sent (the errback)
        {"refuse": RuntimeError("NotLeaderForPartition")},
        # the client cannot send now (its buffer full): ``send`` raises, not the record's fault
        {"raise_on_send": KafkaTimeoutError("the send buffer is full")},
    ],
    ids=["refused-by-the-broker", "client-cannot-send-now"],
)
def test_a_failed_feed_write_is_written_again_and_committed_only_then(
    tmp_path: Path, failing: dict[str, BaseException]
) -> None:
    ((how, error),) = failing.items()
    once = [error]
    producer = FakeProducer(**{how: lambda topic, value: once.pop() if once and topic in FEEDS else None})
    records = [ingest_record(0), ingest_record(1)]
    consumer = FakeConsumer(producer, records)
    hub = start_hub(tmp_path, consumer, producer)
    try:
        wait_for(
            lambda: consumer.committed_ == 2 and hub.report().delivery_failures == {"feed_write_failed": 1}
        )
        writes = feed_writes(producer)
        with producer.lock:
            feeds = len({topic for topic, _, _ in producer.sent if topic in FEEDS})
        assert feeds > 0 and all(writes.count(r.value) >= feeds for r in records)
        assert len(writes) > feeds * len(records)  # the checkpoint was read and written again
        assert sent_to(producer, DEAD_LETTER) == []  # never dead-lettered
        assert hub.error is None and hub.running
    finally:
        hub.stop()


def test_a_feed_write_refused_at_once_is_dead_lettered_and_the_others_are_written(tmp_path: Path) -> None:
    """The poll's feed writes go out together at its end: a record the client refuses as it is
    is dead-lettered, and the records around it are written."""
    records = [ingest_record(0), ingest_record(1), ingest_record(2)]
    refused = records[1].value
    producer = FakeProducer(
        raise_on_send=lambda topic, value: (
            RuntimeError("MessageSizeTooLargeError") if topic in FEEDS and value == refused else None
        )
    )
    consumer = FakeConsumer(producer, records)
    hub = start_hub(tmp_path, consumer, producer)
    try:
        wait_for(lambda: consumer.committed_ == 3)
        writes = feed_writes(producer)
        assert refused not in writes
        assert records[0].value in writes and records[2].value in writes
        dead = sent_to(producer, DEAD_LETTER)
        assert [dict(h)["trilink_dlq_reason"] for _, _, h in dead] == [b"undeliverable"]
        assert hub.error is None and hub.running
    finally:
        hub.stop()


def test_feed_acks_that_never_come_hold_the_commit_back(tmp_path: Path) -> None:
    producer = FakeProducer(silent=True)
    consumer = FakeConsumer(producer, [ingest_record(0)])
    hub = start_hub(tmp_path, consumer, producer)
    try:
        wait_for(lambda: hub.report().delivery_failures.get("feed_write_failed", 0) >= 1)
        assert consumer.committed_ in (None, 0)
        assert hub.running
    finally:
        producer.silent = False
        hub.stop()


def test_a_dead_letter_the_hub_cannot_send_is_read_again(tmp_path: Path) -> None:
    producer = CloggedProducer(clogged=2)  # the record as it is, then its reduced form
    consumer = FakeConsumer(producer, [ingest_record(0, value=None), ingest_record(1)])
    hub = start_hub(tmp_path, consumer, producer)
    try:
        wait_for(lambda: consumer.committed_ == 2)
        report = hub.report()
        assert report.dead_letters == {"no_value": 1}
        assert report.delivery_failures == {"dead_letter_failed": 1}
        assert [dict(h)["trilink_dlq_reason"] for _, _, h in sent_to(producer, DEAD_LETTER)] == [b"no_value"]
        assert hub.error is None and hub.running
    finally:
        hub.stop()


def test_a_dead_letter_the_ally_cannot_send_is_read_again(tmp_path: Path) -> None:
    """As the hub: the loop goes on, the record is read again and dead-lettered then, and the
    event delivered meanwhile is not delivered twice."""
    producer = CloggedProducer(clogged=2)
    consumer = FakeConsumer(producer, [dataclasses.replace(event_record(0), value=None), event_record(1)])
    service: AllyService = start(tmp_path, consumer, producer)
    try:
        wait_for(lambda: consumer.committed_ == 2)
        assert service.report().counts.delivery_failures == {"dead_letter/dead_letter_failed": 1}
        assert [dict(h)["trilink_dlq_reason"] for _, _, h in sent_to(producer, DEAD_LETTER)] == [b"no_value"]
        assert len(sent_to(producer, service.output_topic)) == 1
        assert service.error is None and service.running
    finally:
        service.stop()
