"""The three-way acknowledgement, an ally service's side (the record: :mod:`schemas.acks`).

- :class:`AckSender`: once a launch detection or an alert is acknowledged on this ally's topic,
  writes this ally's :class:`~schemas.acks.Acknowledgement` to the acknowledgement topic, under
  the same durable point as the delivery (its offsets are committed only once the
  acknowledgement is acknowledged too, so a crash re-delivers and re-acknowledges).
- :class:`AckBook`: for each such warning this service delivered, which of the allies it is
  released to (the sharing policy and the producer's marking, as
  :mod:`consumers.policy_filter` decides for each ally) have acknowledged it. When the last one
  has, the time from the sensor's send to the last acknowledgement is a latency sample of hop
  ``acknowledged_by_all``; a warning still missing some after ``timeout_s`` is counted
  unacknowledged, per missing ally, and listed in the report.
- :class:`AckReader`: a thread reading the acknowledgement topic (every ally's) into the book,
  from the end of the topic at start. A record that is not an acknowledgement is dead-lettered.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from consumers.errors import EmptyRecordError
from consumers.ledger import AcknowledgedWarning, AckSummary, Ledger, UnacknowledgedWarning
from consumers.ports import ProducerPort
from schemas.acks import ACKNOWLEDGED_KINDS, Acknowledgement, ack_headers, decode_ack, encode_ack
from schemas.models import EventKind, Nation, WarningEvent
from trilink.errors import DeserializationError
from trilink.pacing import linger_after_poll
from trilink.policy import SharingPolicy
from trilink.waiting import wait_until

log = logging.getLogger(__name__)

#: Acknowledgements seen before this service delivered the warning itself (another ally was
#: faster), kept until it does; the oldest are forgotten beyond this many warnings.
EARLY_LIMIT = 20_000
#: Warnings listed by id in the report as unacknowledged (all are counted).
LISTED_LIMIT = 100
#: Warnings listed with their time to the last acknowledgement (all are in the histogram).
TIMES_LIMIT = 10_000
#: The reader's poll timeout and its consumer's ``fetch_max_wait_ms``: how often an idle
#: reader wakes up (the broker answers a fetch, and ``poll`` returns, as soon as a record is
#: there). At 100/100, as the consume loops run, an idle reader cost 16-17 ms of CPU per
#: second, at 500/500 3.4-3.8 (``bench/bench_request_cost.py``, plaintext, 2026-12-04), and
#: acknowledgements are rare (launch detections and alerts only). In the demo,
#: acknowledged-by-all p50 minus end-to-end p50 was 9-10 ms at 500 and 4-8 ms at 100 (three
#: and two runs): a few ms at most, within the runs' spread. Unacknowledged warnings are
#: swept after each poll, so they are counted at most this much later than their timeout.
IDLE_WAIT_MS = 500


@dataclass(slots=True)
class _Pending:
    kind: EventKind
    correlation_key: str
    expected: frozenset[Nation]
    sent_ns: int | None
    since_monotonic: float
    acked: dict[Nation, int] = field(default_factory=dict)


class AckBook:
    """Which allies acknowledged each warning this service delivered (see the module docstring)."""

    def __init__(
        self,
        ally: Nation,
        policy: SharingPolicy,
        ledger: Ledger,
        timeout_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ally = ally
        self.timeout_s = timeout_s
        self._ledger = ledger
        self._clock = clock
        self._lock = threading.Lock()
        self._allowed = {
            (n, k): frozenset(r for r in Nation if policy.may_receive(n, r, k))
            for n in Nation
            for k in ACKNOWLEDGED_KINDS
        }
        self._pending: dict[UUID, _Pending] = {}
        self._early: OrderedDict[UUID, dict[Nation, int]] = OrderedDict()
        self._series = {k: ledger.by_kind[k.value].acknowledged_by_all for k in ACKNOWLEDGED_KINDS}
        self.completed = 0
        self.unacknowledged = 0
        self.listed: list[UnacknowledgedWarning] = []
        self.times: list[AcknowledgedWarning] = []

    def expected(self, event: WarningEvent) -> frozenset[Nation]:
        """The allies ``event`` is released to: the policy's and the producer's marking agree."""
        header = event.header
        return self._allowed[(header.sensor_nation, event.kind)] & frozenset(header.releasable_to)

    def expect(self, event: WarningEvent, event_id: UUID, sent_ns: int | None) -> None:
        """This service delivered ``event`` (a kind in :data:`ACKNOWLEDGED_KINDS`)."""
        entry = _Pending(
            event.kind, event.header.correlation_key, self.expected(event), sent_ns, self._clock()
        )
        with self._lock:
            if event_id in self._pending:
                return  # delivered again after a restart or a rebalance: one warning, one entry
            early = self._early.pop(event_id, None)
            if early:
                entry.acked.update(early)
            self._pending[event_id] = entry
            self._complete_if_done(event_id, entry)

    def acknowledged(self, ack: Acknowledgement) -> None:
        """An acknowledgement read from the topic (any ally's, this one's included)."""
        with self._lock:
            entry = self._pending.get(ack.event_id)
            if entry is None:
                early = self._early.setdefault(ack.event_id, {})
                early.setdefault(ack.ally, ack.delivered_ns)
                if len(self._early) > EARLY_LIMIT:
                    self._early.popitem(last=False)
                return
            entry.acked.setdefault(ack.ally, ack.delivered_ns)
            self._complete_if_done(ack.event_id, entry)

    def _complete_if_done(self, event_id: UUID, entry: _Pending) -> None:
        if not entry.expected <= entry.acked.keys():
            return
        del self._pending[event_id]
        self.completed += 1
        took_ns = None
        if entry.sent_ns is not None:
            took_ns = max(entry.acked[a] for a in entry.expected) - entry.sent_ns
            self._ledger.sample(self._series[entry.kind], took_ns)
        if len(self.times) < TIMES_LIMIT:
            self.times.append(
                AcknowledgedWarning(
                    event_id=str(event_id),
                    correlation_key=entry.correlation_key,
                    kind=entry.kind.value,
                    allies=sorted(a.value for a in entry.expected),
                    acknowledged_by_all_ms=None if took_ns is None else took_ns / 1e6,
                )
            )

    def sweep(self, *, everything: bool = False) -> None:
        """Count as unacknowledged what waited longer than ``timeout_s`` (``everything``: all
        that is still pending, at shutdown)."""
        deadline = float("inf") if everything else self._clock() - self.timeout_s
        with self._lock:
            late = [(i, e) for i, e in self._pending.items() if e.since_monotonic < deadline]
            for event_id, entry in late:
                del self._pending[event_id]
                missing = sorted(a.value for a in entry.expected - entry.acked.keys())
                self.unacknowledged += 1
                counts = self._ledger.unacknowledged
                for ally in missing:
                    counts[ally] = counts.get(ally, 0) + 1
                if len(self.listed) < LISTED_LIMIT:
                    self.listed.append(
                        UnacknowledgedWarning(
                            event_id=str(event_id),
                            correlation_key=entry.correlation_key,
                            kind=entry.kind.value,
                            missing=missing,
                        )
                    )

    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    def summary(self) -> AckSummary:
        with self._lock:
            return AckSummary(
                acknowledged_by_all=self.completed,
                pending=len(self._pending),
                unacknowledged=self.unacknowledged,
                unacknowledged_by_ally={a: n for a, n in self._ledger.unacknowledged.items() if n},
                unacknowledged_listed=list(self.listed),
                acknowledged=list(self.times),
            )


class AckSender:
    """Writes this ally's acknowledgement of a delivered warning (see the module docstring)."""

    def __init__(
        self, producer: ProducerPort, topic: str, ally: Nation, instance_id: str, book: AckBook
    ) -> None:
        self._producer = producer
        self.topic = topic
        self._ally = ally
        self._instance = instance_id
        self.book = book

    def send(self, event: WarningEvent, event_id: UUID, sent_ns: int | None, delivered_ns: int) -> Any:
        """Send the acknowledgement; returns the client's future (the caller tracks it)."""
        ack = Acknowledgement(
            event_id=event_id,
            correlation_key=event.header.correlation_key,
            kind=event.kind,
            ally=self._ally,
            instance_id=self._instance,
            sent_ns=sent_ns,
            delivered_ns=delivered_ns,
        )
        self.book.expect(event, event_id, sent_ns)
        return self._producer.send(
            self.topic,
            value=encode_ack(ack),
            key=ack.correlation_key.encode("utf-8"),
            headers=ack_headers(ack),
        )


class AckReader:
    """Reads the acknowledgement topic into an :class:`AckBook` on a thread of its own."""

    def __init__(
        self,
        consumer: Any,  # a group-less KafkaConsumer (assign, offsets_for_times: not in ConsumerPort)
        topic: str,
        book: AckBook,
        on_bad_record: Callable[[Any, DeserializationError], None],
        *,
        poll_timeout_ms: int = IDLE_WAIT_MS,
        read_linger_ms: int = 0,
    ) -> None:
        self._consumer = consumer
        self.topic = topic
        self.book = book
        self._on_bad = on_bad_record
        self._poll_timeout_ms = poll_timeout_ms
        #: ``Settings.reader_linger_ms``: an acknowledgement's time is the delivered time it
        #: carries, so reading it later changes no figure (:func:`trilink.pacing.linger_after_poll`).
        self._read_linger_ns = read_linger_ms * 1_000_000
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    def start(self) -> None:
        """Position every partition at the acknowledgements of the last ack timeout, then read.

        Looking back, not from the end: a service that starts again after a crash delivers
        again the warnings its dead process had not committed, and the other allies'
        acknowledgements of those were written before it started. Older ones match nothing
        this service delivers and stay among the bounded early acknowledgements."""
        from kafka import TopicPartition

        partitions = sorted(self._consumer.partitions_for_topic(self.topic) or ())
        tps = [TopicPartition(self.topic, p) for p in partitions]
        self._consumer.assign(tps)
        since_ms = int((time.time() - self.book.timeout_s) * 1000)
        found = self._consumer.offsets_for_times(dict.fromkeys(tps, since_ms))
        for tp in tps:
            at = found.get(tp)
            if at is None:  # nothing written since: from the end
                self._consumer.seek_to_end(tp)
            else:
                self._consumer.seek(tp, at.offset)
            self._consumer.position(tp)  # resolved now, not at the first poll
        self._thread = threading.Thread(
            target=self._run, name=f"ack-reader-{self.book.ally.value}", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                batch = self._consumer.poll(timeout_ms=self._poll_timeout_ms)
                polled_ns = time.monotonic_ns()
                for records in batch.values():
                    for record in records:
                        try:
                            if record.value is None:
                                raise EmptyRecordError("the record has no value")
                            self.book.acknowledged(decode_ack(record.value))
                        except DeserializationError as exc:
                            self._on_bad(record, exc)
                self.book.sweep()
                linger_after_poll(batch, polled_ns, self._read_linger_ns, self._stop, min_records=1)
        except BaseException as exc:
            self.error = exc
            log.exception("ally %s: the acknowledgement reader stopped", self.book.ally.value)

    def drain(self, timeout_s: float) -> None:
        """Wait up to ``timeout_s`` for the acknowledgements still missing (the others' are
        on the topic already when they delivered before this service stopped), then count
        what is still missing as unacknowledged."""
        thread = self._thread
        wait_until(
            lambda: not self.book.pending() or thread is None or not thread.is_alive(), timeout_s, 0.05
        )
        self.book.sweep(everything=True)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        try:
            self._consumer.close()
        except Exception:
            log.exception("closing the acknowledgement reader's consumer failed")
