"""Sender processes: keep to the open-loop schedule and stamp both send times on every record.

Each event goes to the topic its sensor nation writes (:func:`sensor_topics`: the shared warning
topics, or in the hub topology the nation's ingest topic). Each process owns a disjoint set of keys (so per-key order is one producer's order) and sends
its slots when they fall due, never earlier; when it is behind it sends at once, catching up
without skipping, and records how late it was.

The plan is fixed before the first send (open loop), so the events are built, encoded and
given their headers and partition *before* the schedule starts (:func:`prepare`, up to
:data:`PREPARE_AHEAD` records per process; a longer run prepares the rest one at a time,
before waiting for each due time). The loop then only stamps the two send times and hands the
record to the client library. The events' own times (``measured_at``, ``emitted_at``) are
those of the schedule rebased to when the sender prepared them, a little before its zero;
every latency counts from the intended send time in the header, never from the body.

Headers on every record: :data:`~schemas.headers.SENT_NS_HEADER` = the intended send time
(so every later hop, including the ally services' own, counts from it), ``trilink_actual_sent_ns``
= the wall clock just before ``send()``, ``trilink_loadtest_run`` and ``trilink_loadtest_slot``
(which slot of the plan this is; the harness needs no Avro decoding to account for it).

Processes rather than threads: kafka-python spends most of a send in Python, so on a small
machine a second thread in the same interpreter adds GIL contention, not throughput.
"""

from __future__ import annotations

import itertools
import signal
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from schemas import encode_event, kafka_headers, message_key
from schemas.headers import (
    ACTUAL_SENT_NS_HEADER,
    CE_ID_HEADER,
    LOADTEST_RUN_HEADER,
    LOADTEST_SLOT_HEADER,
    SENT_NS_HEADER,
)
from schemas.models import EventKind, Nation
from trilink.latency import encode_sent_ns
from trilink.loadtest.accounting import CurveRecorder
from trilink.loadtest.workload import NS_PER_S, LoadSpec, PlannedEvent, Workload, worker_partition
from trilink.pacing import pace_until
from trilink.platform.clients import producer_config
from trilink.platform.topics import sensor_topic_role, topic_name
from trilink.runtime import tune_gc
from trilink.settings import get_settings

SOURCE = "/trilink/loadtest"
_SLOT = struct.Struct(">q")

#: Records a sender prepares before the schedule starts (under 1 kB each in memory): 20,000/s
#: for 6 s from one sender fits, a longer run prepares the rest as it goes.
PREPARE_AHEAD = 125_000
#: Distinct header pairs shared between prepared records (see :func:`prepare`).
_SHARED_HEADERS_MAX = 4_096


def encode_slot(slot: int) -> bytes:
    return _SLOT.pack(slot)


def decode_slot(raw: bytes) -> int | None:
    return int(_SLOT.unpack(raw)[0]) if len(raw) == _SLOT.size else None


@dataclass(frozen=True)
class ProducerSettings:
    """The knobs of the producer under test (the rest comes from the project's client defaults)."""

    acks: str = "all"
    #: As the sensors' own producers (``producer_config``): a warning leaves as soon as it exists.
    #: With 1 ms the low-load send->receive p50 was ~1 ms higher (rate 50/s, 2026-12-03).
    linger_ms: int = 0
    flush_timeout_s: float = 60.0

    def overrides(self) -> dict[str, Any]:
        acks: int | str = "all" if self.acks in ("all", "-1") else int(self.acks)
        # Kafka's idempotent producer requires acks=all.
        return {"acks": acks, "linger_ms": self.linger_ms, "enable_idempotence": acks == "all"}


@dataclass
class SenderResult:
    """What one sender process did (picklable; histograms travel encoded)."""

    worker: int
    planned: int = 0
    sent: int = 0
    acked: int = 0
    failed_slots: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    sent_slots_upto: int = -1  # schedule order: every slot of this worker up to here was handed to send()
    measured_sent: int = 0
    measured_first_due_ns: int | None = None
    measured_last_actual_ns: int | None = None
    max_lag_ns: int = 0
    final_lag_ns: int = 0
    lag_hist: str = ""
    sent_per_s: dict[int, int] = field(default_factory=dict)
    cpu_s: float = 0.0  # process CPU from the schedule's zero to the last acknowledgement
    encode_cpu_s: float = 0.0  # CPU of preparing the records (mostly before the zero)
    value_bytes: int = 0
    interrupted: bool = False
    fatal: str | None = None


def run_sender(
    spec: LoadSpec,
    worker: int,
    *,
    start_value: Any,
    go: Any,
    bootstrap: str,
    producer: ProducerSettings,
    stop: Any,
    progress: Any,
    results: Any,
) -> None:
    """Process entry point: set up, say ready (``progress[2] = 1``), wait for ``go``, read the
    schedule's zero from ``start_value`` and send. ``progress`` is a shared int64 array
    [sent, last lag ns, ready]; ``results`` a queue receiving one :class:`SenderResult`."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    result = SenderResult(worker)
    try:
        _send_all(
            spec,
            worker,
            start_value=start_value,
            go=go,
            bootstrap=bootstrap,
            settings=producer,
            stop=stop,
            progress=progress,
            result=result,
        )
    except Exception as exc:
        result.fatal = f"{type(exc).__name__}: {exc}"
    results.put(result)


class Ready(NamedTuple):
    """One slot of a sender's schedule made ready for the wire: only the two send times are
    stamped when it is sent."""

    planned: PlannedEvent
    topic: str
    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...]  # CloudEvents, run and slot
    partition: int | None


class Partitions:
    """Where each key of a run goes: the first ``limit`` partitions by :func:`worker_partition`
    (``--partitions``), or kafka-python's default choice (murmur2 of the key over all of the
    topic's partitions), computed once per key rather than by the client on every send."""

    def __init__(self, kafka: Any, limit: int | None) -> None:
        self._kafka = kafka
        self._limit = limit
        self._counts: dict[str, int] = {}
        self._chosen: dict[tuple[str, bytes], int | None] = {}

    def count(self, topic: str) -> int:
        """The partitions in use on ``topic`` (fetches its metadata the first time)."""
        count = self._counts.get(topic)
        if count is None:
            count = len(self._kafka.partitions_for(topic) or ())
            if self._limit is not None:
                count = min(self._limit, max(count, 1))
            self._counts[topic] = count
        return count

    def __call__(self, topic: str, key: str, key_raw: bytes) -> int | None:
        chosen = self._chosen.get((topic, key_raw), -1)
        if chosen != -1:
            return chosen
        count = self.count(topic)
        if self._limit is not None:
            chosen = worker_partition(key, count)
        elif count:
            from kafka.partitioner.default import murmur2

            chosen = (murmur2(key_raw) & 0x7FFFFFFF) % count
        else:
            chosen = None  # no metadata: the client chooses at send time
        self._chosen[(topic, key_raw)] = chosen
        return chosen


def sensor_topics(topology: str | None = None) -> dict[str, tuple[str, str]]:
    """Per sensor nation: the (warnings, sensor status) topics its events go to: the shared
    topics (``direct``) or that nation's ingest topic for both (``hub``; the setting unless given)."""
    chosen = topology or get_settings().topology
    return {
        n.value: (
            topic_name(sensor_topic_role(n.value, False, chosen)),
            topic_name(sensor_topic_role(n.value, True, chosen)),
        )
        for n in Nation
    }


def prepare(
    workload: Workload, worker: int, events_zero_ns: int, partitions: Partitions, run_raw: bytes
) -> Iterator[Ready]:
    """This worker's slots in schedule order, each encoded with its headers and partition.

    Header pairs that repeat (source, type, spec version, run) are one object shared by every
    record that carries them, which keeps a prepared record under 1 kB; the event id and the
    slot are each record's own."""
    topics = sensor_topics()
    shared: dict[tuple[str, bytes], tuple[str, bytes]] = {}
    run_pair = (LOADTEST_RUN_HEADER, run_raw)
    for planned, event in workload.events(worker, events_zero_ns):
        topics_of_nation = topics[event.header.sensor_nation.value]
        topic = topics_of_nation[1] if event.kind is EventKind.SENSOR_STATUS else topics_of_nation[0]
        key = message_key(event)
        headers = [
            pair
            if pair[0] == CE_ID_HEADER or len(shared) >= _SHARED_HEADERS_MAX
            else shared.setdefault(pair, pair)
            for pair in kafka_headers(event, SOURCE)
        ]
        headers += [run_pair, (LOADTEST_SLOT_HEADER, encode_slot(planned.slot))]
        yield Ready(
            planned, topic, key, encode_event(event), tuple(headers), partitions(topic, planned.key, key)
        )


class _Answers:
    """The broker's answers for one sender (counted by the client's IO thread)."""

    __slots__ = ("acked", "result")

    def __init__(self, result: SenderResult) -> None:
        self.result = result
        self.acked = 0

    def failed(self, slot: int, exc: BaseException) -> None:
        self.result.failed_slots.append(slot)
        if len(self.result.errors) < 10:
            self.result.errors.append(f"slot {slot}: {exc!r}")


class _InFlight:
    """One send until the broker answers it, and the one callback for either answer (given to
    ``add_both``): a single small object per send, no closure."""

    __slots__ = ("answers", "slot")

    def __init__(self, answers: _Answers, slot: int) -> None:
        self.answers = answers
        self.slot = slot

    def __call__(self, result: Any) -> None:
        if isinstance(result, BaseException):
            self.answers.failed(self.slot, result)
        else:
            self.answers.acked += 1


def _send_all(
    spec: LoadSpec,
    worker: int,
    *,
    start_value: Any,
    go: Any,
    bootstrap: str,
    settings: ProducerSettings,
    stop: Any,
    progress: Any,
    result: SenderResult,
) -> None:
    from kafka import KafkaProducer

    workload = Workload(spec)
    kafka: Any = KafkaProducer(
        **producer_config(bootstrap, f"trilink-loadtest-{spec.run_id}-{worker}", **settings.overrides())
    )
    lag = CurveRecorder()
    answers = _Answers(result)
    partitions = Partitions(kafka, spec.partitions)
    for topic in {t for pair in sensor_topics().values() for t in pair}:
        partitions.count(topic)  # metadata before the clock starts
    encode_cpu = time.thread_time()
    source = prepare(workload, worker, time.time_ns(), partitions, spec.run_id.encode("ascii"))
    ahead = list(itertools.islice(source, PREPARE_AHEAD))
    encode_cpu = time.thread_time() - encode_cpu
    tune_gc()  # after set-up: the prepared records leave the collector's sight
    counters = progress.get_obj()  # plain int64 stores: one writer, the parent only reads
    counters[2] = 1
    while not go.wait(0.1):
        if stop.is_set():
            result.interrupted = True
            kafka.close(timeout=settings.flush_timeout_s)
            return
    start_ns = int(start_value.value)
    cpu_start = time.process_time()  # after set-up: CPU of scheduling and sending only

    def rest() -> Iterator[Ready]:  # a run longer than PREPARE_AHEAD: one at a time, before its wait
        nonlocal encode_cpu
        while True:
            t0 = time.thread_time()
            ready = next(source, None)
            encode_cpu += time.thread_time() - t0
            if ready is None:
                return
            yield ready

    send = kafka.send
    sent_per_s: dict[int, int] = {}
    measured_sent = lag_ns = 0
    try:
        for ready in itertools.chain(ahead, rest()):
            planned = ready.planned
            result.planned += 1
            due_ns = start_ns + planned.offset_ns
            if not pace_until(due_ns, stop, time.time_ns):
                result.interrupted = True
                break
            if stop.is_set():
                result.interrupted = True
                break
            actual_ns = time.time_ns()
            headers = [
                *ready.headers,
                (SENT_NS_HEADER, encode_sent_ns(due_ns)),
                (ACTUAL_SENT_NS_HEADER, encode_sent_ns(actual_ns)),
            ]
            future = send(
                ready.topic, value=ready.value, key=ready.key, headers=headers, partition=ready.partition
            )
            future.add_both(_InFlight(answers, planned.slot))
            result.sent += 1
            result.value_bytes += len(ready.value)
            result.sent_slots_upto = planned.slot
            lag_ns = actual_ns - due_ns
            second = (actual_ns - start_ns) // NS_PER_S
            sent_per_s[second] = sent_per_s.get(second, 0) + 1
            if planned.measured:
                lag.record_ns(lag_ns)
                result.max_lag_ns = max(result.max_lag_ns, lag_ns)
                measured_sent += 1
                if result.measured_first_due_ns is None:
                    result.measured_first_due_ns = due_ns
                result.measured_last_actual_ns = actual_ns
            counters[0] = result.sent
            counters[1] = lag_ns
        kafka.flush(timeout=settings.flush_timeout_s)
    finally:
        counters[0] = result.sent
        kafka.close(timeout=settings.flush_timeout_s)
        result.acked = answers.acked
        result.measured_sent = measured_sent
        result.final_lag_ns = lag_ns
        result.lag_hist = lag.encode()
        result.sent_per_s = sent_per_s
        result.encode_cpu_s = encode_cpu
        result.cpu_s = time.process_time() - cpu_start
