"""Where an ally service delivers: one object per downstream channel, and the dead-letter writer.

Every channel has ``deliver(delivery, checkpoint)``; the service's coordinator closes a
:class:`Checkpoint` every ``commit_interval_s`` and commits its offsets once every channel made
it durable: Kafka acknowledged each record sent under it (acks=all) and the audit file's sync
thread fsync-ed past it. Checkpoints are pipelined, so a durable point never stops delivery.

- :class:`KafkaChannel`: the ally topic. Headers are the record's own, passed on as received
  (validated by :func:`schemas.headers.parse_headers`), plus when this service received it and
  which instance delivered it. Delivered = acknowledged by the broker.
- :class:`AuditChannel`: an append-only JSON-lines file (:mod:`consumers.audit`). Delivered =
  written to the OS; durable at the checkpoint's fsync.
- :class:`SseChannel`: the live subscribers (:mod:`consumers.sse`). Delivered = queued.
- :class:`DeadLetters`: records refused with a reason, kept as evidence on the dead-letter
  topic; a record too large or with headers the client cannot send goes in a reduced form
  (value cut to :data:`REDUCED_VALUE_BYTES`, its size and SHA-256 in headers).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol
from uuid import UUID

from consumers import kafka_io
from consumers.acks import AckSender
from consumers.audit import AuditLog
from consumers.dlq import dead_letter_headers
from consumers.errors import ChannelDeliveryError, UnparseableRecordError
from consumers.ledger import FirstDeliveryReport, KindSeries, Ledger
from consumers.measure import LaunchBook
from consumers.ports import ProducerPort
from consumers.sse import SseHub, SseItem, sse_frame
from schemas.acks import ACKNOWLEDGED_KINDS
from schemas.headers import (
    DLQ_ORIGINAL_DIGEST_HEADER,
    DLQ_ORIGINAL_SIZE_HEADER,
    INSTANCE_HEADER,
    RECEIVED_NS_HEADER,
    ParsedHeaders,
)
from schemas.models import WarningEvent
from trilink.latency import encode_sent_ns

#: pydantic's compiled serializer of the event model (what ``model_dump_json`` calls, minus
#: the per-call keyword handling).
_to_json = WarningEvent.__pydantic_serializer__.to_json

log = logging.getLogger(__name__)

#: Largest record the service sends as it is (the broker's default limit is 1 MiB with batch
#: overhead; kafka-python refuses at ``max_request_size`` = 1 MiB before sending).
MAX_RECORD_BYTES = 1_000_000
REDUCED_VALUE_BYTES = 1024


@dataclass(slots=True)
class Delivery:
    """One event on its way out: the record, what was parsed from it and when it arrived."""

    record: Any
    parsed: ParsedHeaders
    event: WarningEvent
    kind: str  # the event kind's value (the ledger's and the lines' label)
    series: KindSeries
    received_ns: int
    append_ns: int | None
    first: FirstDeliveryReport | None
    _json: bytes | None = None

    @property
    def event_json(self) -> bytes:
        """The event as JSON, made once for every channel that shows it."""
        if self._json is None:
            self._json = _to_json(self.event)
        return self._json


@dataclass(eq=False)
class Checkpoint:
    """What was fanned out between two durable points, and how far its channels got.

    ``sent`` is written by the consumer loop only, ``acked`` by the producer's IO thread only,
    ``failed`` appended to by either (list appends are atomic).
    """

    first: dict[tuple[str, int], int] = field(default_factory=dict)
    next: dict[tuple[str, int], int] = field(default_factory=dict)
    ids: list[UUID] = field(default_factory=list)
    sent: int = 0
    acked: int = 0
    failed: list[tuple[str, UUID | None, str]] = field(default_factory=list)
    audit_generation: int = 0
    closed_monotonic: float | None = None

    def settled(self) -> bool:
        """Every send under this checkpoint answered (acknowledged or refused)."""
        return self.closed_monotonic is not None and self.acked + self._send_failures() >= self.sent

    def _send_failures(self) -> int:
        return sum(1 for channel, _, _ in self.failed if channel in ("kafka", "dead_letter"))

    def track(self, future: Any, channel: str, event_id: UUID | None) -> None:
        """Count ``future`` under this checkpoint until the broker answers it."""
        self.sent += 1
        future.add_callback(self._acknowledged)
        future.add_errback(self.refused, channel, event_id)

    def _acknowledged(self, _metadata: Any) -> None:
        self.acked += 1

    def refused(self, channel: str, event_id: UUID | None, exc: BaseException) -> None:
        """Errback: the broker refused a send under this checkpoint."""
        self.failed.append((channel, event_id, f"{type(exc).__name__}: {exc}"))


class KafkaChannel:
    """The ally topic (see the module docstring)."""

    name = "kafka"

    def __init__(
        self,
        producer: ProducerPort,
        topic: str,
        instance_id: str,
        ledger: Ledger,
        launches: LaunchBook,
        *,
        acks: AckSender | None = None,
    ) -> None:
        self._producer = producer
        self.topic = topic
        self._acks = acks
        self._instance = instance_id.encode("utf-8")
        self._ledger = ledger
        self._launches = launches
        self._partitions: dict[bytes, int] = {}
        self._received_ns = -1
        self._added: tuple[tuple[str, bytes], ...] = ()
        self._partition_count = 0

    def _partition(self, key: bytes | None) -> int | None:
        """The default partitioner's choice for ``key``, remembered (keys are per missile)."""
        if key is None:
            return None
        partition = self._partitions.get(key)
        if partition is None:
            if not self._partition_count:
                self._partition_count = len(self._producer.partitions_for(self.topic) or ())
                if not self._partition_count:
                    return None
            from kafka.partitioner.default import murmur2

            partition = (murmur2(key) & 0x7FFFFFFF) % self._partition_count
            if len(self._partitions) >= 65_536:
                self._partitions.clear()
            self._partitions[key] = partition
        return partition

    def refresh(self) -> None:
        """Forget cached partitions (the topic may have grown)."""
        self._partition_count = 0
        self._partitions.clear()

    def deliver(self, d: Delivery, checkpoint: Checkpoint) -> None:
        record = d.record
        if d.received_ns != self._received_ns:  # one poll, one receive time: encode it once
            self._received_ns = d.received_ns
            self._added = (
                (RECEIVED_NS_HEADER, encode_sent_ns(d.received_ns)),
                (INSTANCE_HEADER, self._instance),
            )
        headers = [*d.parsed.forward, *self._added]
        future = self._producer.send(
            self.topic,
            value=record.value,
            key=record.key,
            headers=headers,
            partition=self._partition(record.key),
        )
        checkpoint.sent += 1
        future.add_callback(self._acked, d, checkpoint)
        future.add_errback(checkpoint.refused, "kafka", d.parsed.event_id)

    def _acked(self, d: Delivery, checkpoint: Checkpoint, _metadata: Any) -> None:
        now_ns = time.time_ns()
        series = d.series
        ledger = self._ledger
        ledger.sample(series.receive_to_deliver["kafka"], now_ns - d.received_ns)
        if d.parsed.sent_ns is not None:
            ledger.sample(series.end_to_end["kafka"], now_ns - d.parsed.sent_ns)
        ledger.delivered[(d.kind, "kafka")] += 1
        if d.first is not None:
            self._launches.delivered(d.first, "kafka", now_ns)
        if self._acks is not None and d.event.kind in ACKNOWLEDGED_KINDS:
            self._acknowledge(d, checkpoint, now_ns)
        checkpoint.acked += 1

    def acknowledge_again(
        self, event: WarningEvent, event_id: UUID, sent_ns: int | None, delivered_ns: int
    ) -> None:
        """Acknowledge an event a previous process of this service delivered (at
        ``delivered_ns``, its record's append time on the ally topic) and may have died before
        acknowledging. Outside any checkpoint: the next durable point flushes it like any send,
        and a failure is logged, never re-delivered. Each ally's first acknowledgement is the
        one every book keeps, so a second one changes nothing."""
        if self._acks is None or event.kind not in ACKNOWLEDGED_KINDS:
            return
        try:
            future = self._acks.send(event, event_id, sent_ns, delivered_ns)
        except Exception:
            log.warning("acknowledgement of %s after a restart refused", event_id, exc_info=True)
            return
        future.add_errback(
            lambda exc: log.warning("acknowledgement of %s after a restart failed: %r", event_id, exc)
        )

    def _acknowledge(self, d: Delivery, checkpoint: Checkpoint, delivered_ns: int) -> None:
        """Send this ally's acknowledgement under the same checkpoint (counted sent before the
        delivery is counted acknowledged, so the checkpoint cannot settle in between). A refused
        acknowledgement fails the delivery itself: it is read and delivered again, and
        acknowledged again."""
        assert self._acks is not None
        event_id = d.parsed.event_id
        checkpoint.sent += 1
        try:
            future = self._acks.send(d.event, event_id, d.parsed.sent_ns, delivered_ns)
        except Exception as exc:
            checkpoint.failed.append(
                ("kafka", event_id, f"acknowledgement refused: {type(exc).__name__}: {exc}")
            )
            return
        future.add_callback(checkpoint._acknowledged)
        future.add_errback(checkpoint.refused, "kafka", event_id)


class AuditChannel:
    """The audit file (see :mod:`consumers.audit`): the lines of one poll's records are written
    with one system call at the end of the batch (delivered = handed to the OS then)."""

    name = "audit"

    def __init__(
        self, log: AuditLog, ally: str, instance_id: str, ledger: Ledger, launches: LaunchBook
    ) -> None:
        self.log = log
        self._ledger = ledger
        self._launches = launches
        self._lines: list[bytes] = []
        self._batch: list[Delivery] = []
        # Constant part of every line (validated ids only: no JSON escaping needed).
        self._prefix = f'{{"ally":"{ally}","instance_id":{_json_str(instance_id)},"event_id":"'.encode()

    def deliver(self, d: Delivery, checkpoint: Checkpoint) -> None:
        header = d.event.header
        record = d.record
        self._lines.append(
            b"".join(
                (
                    self._prefix,
                    d.parsed.event_id_text.encode(),
                    f'","kind":"{d.kind}","correlation_key":"{header.correlation_key}",'
                    f'"sensor_id":"{header.sensor_id}","sensor_nation":"{header.sensor_nation.value}",'
                    f'"source":"{record.topic}/{record.partition}/{record.offset}",'
                    f'"sent_ns":{_json_int(d.parsed.sent_ns)},"append_ns":{_json_int(d.append_ns)},'
                    f'"received_ns":{d.received_ns},"delivered_ns":{time.time_ns()},"event":'.encode(),
                    d.event_json,
                    b"}\n",
                )
            )
        )
        self._batch.append(d)

    def end_batch(self, checkpoint: Checkpoint) -> None:
        """Write the batch's lines; a failure marks each of its events failed on this channel."""
        if not self._lines:
            return
        lines, batch = self._lines, self._batch
        self._lines, self._batch = [], []
        try:
            self.log.append(b"".join(lines))
        except ChannelDeliveryError as exc:
            checkpoint.failed.extend(("audit", d.parsed.event_id, exc.reason) for d in batch)
            return
        done_ns = time.time_ns()
        ledger = self._ledger
        delivered = ledger.delivered
        for d in batch:
            series = d.series
            ledger.sample(series.receive_to_deliver["audit"], done_ns - d.received_ns)
            if d.parsed.sent_ns is not None:
                ledger.sample(series.end_to_end["audit"], done_ns - d.parsed.sent_ns)
            delivered[(d.kind, "audit")] += 1
            if d.first is not None:
                self._launches.delivered(d.first, "audit", done_ns)


class SseChannel:
    """The live subscribers: a poll's events are queued together at the end of the batch (one
    wake-up per subscriber), written and measured by the subscribers' writer threads."""

    name = "sse"

    def __init__(self, hub: SseHub, ledger: Ledger, launches: LaunchBook) -> None:
        self.hub = hub
        self._ledger = ledger
        self._launches = launches
        self._items: list[SseItem] = []
        self._firsts: list[FirstDeliveryReport] = []

    def deliver(self, d: Delivery, checkpoint: Checkpoint) -> None:
        if not self.hub.subscriber_count:
            return
        kind = d.event.kind
        frame = sse_frame(d.parsed.event_id_text, d.kind, d.event_json)
        self._items.append(SseItem(kind, frame, d.received_ns, d.parsed.sent_ns))
        if d.first is not None:
            self._firsts.append(d.first)

    def end_batch(self, checkpoint: Checkpoint) -> None:
        if not self._items:
            return
        items, firsts = self._items, self._firsts
        self._items, self._firsts = [], []
        self.hub.publish_many(items)
        delivered = self._ledger.delivered
        for item in items:
            delivered[(item.kind.value, "sse")] += 1
        now_ns = time.time_ns()
        for first in firsts:
            self._launches.delivered(first, "sse", now_ns)

    def on_written(self, items: list[SseItem], written_ns: int) -> None:
        """Writer threads: one latency sample per item written to a subscriber's socket."""
        ledger = self._ledger
        for item in items:
            series = ledger.by_kind[item.kind.value]
            ledger.sample(series.receive_to_deliver["sse"], written_ns - item.received_ns)
            if item.sent_ns is not None:
                ledger.sample(series.end_to_end["sse"], written_ns - item.sent_ns)


class DeadLetterCounter(Protocol):
    """Where :class:`DeadLetters` counts what it sent (an ally's :class:`Ledger`, the hub's ledger)."""

    def dead_letter(self, reason: str) -> None: ...


class DeadLetters:
    """Writes refused records to the dead-letter topic, reduced when they could not be sent whole."""

    def __init__(self, producer: ProducerPort, topic: str, ally: str, ledger: DeadLetterCounter) -> None:
        self._producer = producer
        self.topic = topic
        self._ally = ally
        self._ledger = ledger

    def send(
        self,
        checkpoint: Checkpoint,
        *,
        reason: str,
        error: str,
        topic: str,
        partition: int,
        offset: int,
        value: bytes | None = None,
        key: bytes | None = None,
        headers: Any = None,
    ) -> None:
        """Dead-letter one record (``value``/``key``/``headers`` as read; None when unknown)."""
        kept = [(n, v) for n, v in (headers or ()) if type(n) is str and type(v) is bytes]
        out = dead_letter_headers(
            kept, reason=reason, error=error, topic=topic, partition=partition, offset=offset, ally=self._ally
        )
        size = len(value or b"") + len(key or b"") + sum(len(n) + len(v) for n, v in out)
        future = None
        if size <= MAX_RECORD_BYTES and len(kept) == len(headers or ()):
            try:
                future = self._producer.send(self.topic, value=value, key=key, headers=out)
            except Exception as exc:  # refused before sending (size, a header): send it reduced
                error = f"{error}; sent reduced: {type(exc).__name__}"
        if future is None:
            future = self._producer.send(
                self.topic,
                value=(value or b"")[:REDUCED_VALUE_BYTES],
                key=(key or b"")[:256] or None,
                headers=self._reduced_headers(reason, error, topic, partition, offset, value=value),
            )
        checkpoint.track(future, "dead_letter", None)
        self._ledger.dead_letter(reason)

    def _reduced_headers(
        self, reason: str, error: str, topic: str, partition: int, offset: int, *, value: bytes | None
    ) -> list[tuple[str, bytes]]:
        headers = dead_letter_headers(
            [], reason=reason, error=error, topic=topic, partition=partition, offset=offset, ally=self._ally
        )
        if value is not None:
            headers += [
                (DLQ_ORIGINAL_SIZE_HEADER, str(len(value)).encode()),
                (DLQ_ORIGINAL_DIGEST_HEADER, hashlib.sha256(value).hexdigest().encode()),
            ]
        return headers


def _json_int(value: int | None) -> str:
    return "null" if value is None else str(value)


def _json_str(text: str) -> str:
    import json

    return json.dumps(text)


__all__ = [
    "INSTANCE_HEADER",
    "MAX_RECORD_BYTES",
    "RECEIVED_NS_HEADER",
    "AuditChannel",
    "Checkpoint",
    "DeadLetters",
    "Delivery",
    "KafkaChannel",
    "SseChannel",
]


def skip_unparseable(
    consumer: Any,
    bootstrap: str,
    partitions: list[tuple[str, int]],
    *,
    locate: Callable[[str, str, int, int], tuple[int, str] | None],
    dead: DeadLetters,
    checkpoint: Checkpoint,
    who: str,
) -> tuple[tuple[str, int], int] | None:
    """After ``poll`` raised: probe each partition's next batch (``locate``); the first one the
    client library cannot parse is dead-lettered by its offsets under ``checkpoint`` and skipped.
    Returns that partition and its new position, or None (nothing found: back off, poll again).
    Shared by the ally services and the hub."""
    for topic, partition in partitions:
        try:
            position = kafka_io.position(consumer, topic, partition)
            found = locate(bootstrap, topic, partition, position)
        except Exception as probe_exc:
            log.warning("%s: probing %s/%s failed: %r", who, topic, partition, probe_exc)
            continue
        if found is None:
            continue
        end, why = found
        checkpoint.first.setdefault((topic, partition), position)
        checkpoint.next[(topic, partition)] = end
        dead.send(
            checkpoint,
            reason=UnparseableRecordError.REASON,
            error=f"offsets {position}..{end - 1} could not be parsed by the client library: {why}",
            topic=topic,
            partition=partition,
            offset=position,
        )
        kafka_io.seek(consumer, topic, partition, end)
        return (topic, partition), end
    return None
