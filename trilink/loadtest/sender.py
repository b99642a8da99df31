"""Sender processes: keep to the open-loop schedule and stamp both send times on every record.

Each process owns a disjoint set of keys (so per-key order is one producer's order) and sends
its slots when they fall due, never earlier; when it is behind it sends at once, catching up
without skipping, and records how late it was. Encoding happens *before* waiting for the due
time, so a sender that keeps up adds no encoding time to the figures, and one that cannot
keep up shows it as schedule lag.

Headers on every record: :data:`~trilink.latency.SENT_NS_HEADER` = the intended send time
(so every later hop, including the ally services' own, counts from it), ``trilink_actual_sent_ns``
= the wall clock just before ``send()``, ``trilink_loadtest_run`` and ``trilink_loadtest_slot``
(which slot of the plan this is; the harness needs no Avro decoding to account for it).

Processes rather than threads: kafka-python spends most of a send in Python, so on a small
machine a second thread in the same interpreter adds GIL contention, not throughput.
"""

from __future__ import annotations

import signal
import struct
import time
from dataclasses import dataclass, field
from typing import Any

from schemas import encode_event, kafka_headers, message_key
from schemas.models import EventKind
from trilink.latency import SENT_NS_HEADER, encode_sent_ns
from trilink.loadtest.accounting import CurveRecorder
from trilink.loadtest.workload import NS_PER_S, LoadSpec, Workload, worker_partition
from trilink.platform.clients import producer_config
from trilink.platform.topics import topic_name

ACTUAL_SENT_NS_HEADER = "trilink_actual_sent_ns"
RUN_HEADER = "trilink_loadtest_run"
SLOT_HEADER = "trilink_loadtest_slot"
SOURCE = "/trilink/loadtest"
_SLOT = struct.Struct(">q")


def encode_slot(slot: int) -> bytes:
    return _SLOT.pack(slot)


def decode_slot(raw: bytes) -> int | None:
    return int(_SLOT.unpack(raw)[0]) if len(raw) == _SLOT.size else None


@dataclass(frozen=True)
class ProducerSettings:
    """The knobs of the producer under test (the rest comes from the project's client defaults)."""

    acks: str = "all"
    linger_ms: int = 1
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
    cpu_s: float = 0.0
    encode_cpu_s: float = 0.0
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
    warnings, status = topic_name("warnings"), topic_name("sensor_status")
    spread = {t: _partition_count(kafka, t, spec.partitions) for t in (warnings, status)}
    lag = CurveRecorder()
    run_raw = spec.run_id.encode("ascii")
    acked = [0]
    progress[2] = 1
    while not go.wait(0.1):
        if stop.is_set():
            result.interrupted = True
            kafka.close(timeout=settings.flush_timeout_s)
            return
    start_ns = int(start_value.value)
    cpu_start = time.process_time()  # after set-up: CPU of scheduling, encoding and sending only

    def on_ack(_metadata: Any) -> None:
        acked[0] += 1

    def on_error(slot: int, exc: BaseException) -> None:
        result.failed_slots.append(slot)
        if len(result.errors) < 10:
            result.errors.append(f"slot {slot}: {exc!r}")

    sent_per_s: dict[int, int] = {}
    encode_cpu = 0.0
    try:
        for planned, event in workload.events(worker, start_ns):
            result.planned += 1
            t0 = time.process_time()
            topic = status if event.kind is EventKind.SENSOR_STATUS else warnings
            value = encode_event(event)
            headers = kafka_headers(event, SOURCE)
            key = message_key(event)
            partition = None if spread[topic] is None else worker_partition(planned.key, spread[topic] or 1)
            encode_cpu += time.process_time() - t0
            due_ns = start_ns + planned.offset_ns
            wait_ns = due_ns - time.time_ns()
            if wait_ns > 0 and stop.wait(wait_ns / NS_PER_S):
                result.interrupted = True
                break
            if stop.is_set():
                result.interrupted = True
                break
            actual_ns = time.time_ns()
            headers += [
                (SENT_NS_HEADER, encode_sent_ns(due_ns)),
                (ACTUAL_SENT_NS_HEADER, encode_sent_ns(actual_ns)),
                (RUN_HEADER, run_raw),
                (SLOT_HEADER, encode_slot(planned.slot)),
            ]
            future = kafka.send(topic, value=value, key=key, headers=headers, partition=partition)
            future.add_callback(on_ack)
            future.add_errback(lambda exc, slot=planned.slot: on_error(slot, exc))
            result.sent += 1
            result.value_bytes += len(value)
            result.sent_slots_upto = planned.slot
            lag_ns = actual_ns - due_ns
            result.final_lag_ns = lag_ns
            second = (actual_ns - start_ns) // NS_PER_S
            sent_per_s[second] = sent_per_s.get(second, 0) + 1
            if planned.measured:
                lag.record_ns(lag_ns)
                result.max_lag_ns = max(result.max_lag_ns, lag_ns)
                result.measured_sent += 1
                if result.measured_first_due_ns is None:
                    result.measured_first_due_ns = due_ns
                result.measured_last_actual_ns = actual_ns
            progress[0] = result.sent
            progress[1] = lag_ns
        kafka.flush(timeout=settings.flush_timeout_s)
    finally:
        progress[0] = result.sent
        kafka.close(timeout=settings.flush_timeout_s)
        result.acked = acked[0]
        result.lag_hist = lag.encode()
        result.sent_per_s = sent_per_s
        result.encode_cpu_s = encode_cpu
        result.cpu_s = time.process_time() - cpu_start


def _partition_count(kafka: Any, topic: str, limit: int | None) -> int | None:
    """None: let the key choose among all partitions; else the number of partitions to use."""
    available = kafka.partitions_for(topic) or {0}  # also fetches metadata before the clock starts
    return None if limit is None else min(limit, len(available))
