"""Sensor producers on Kafka: play a scenario's events onto the warning topics.

Where an event leaves the simulation and enters the pipeline. Each event is encoded with
the contract (single-object Avro), keyed by its correlation key (one missile, one
partition, in order), sent with ``acks=all`` and idempotence, and stamped with the
wall-clock send time (:data:`trilink.latency.SENT_NS_HEADER`), from which every later hop
is measured.

A *run* gives the scenario a fresh identity on the wire: event ids are re-derived from the
run id (``uuid5``) and missile correlation keys get a ``:<run>`` suffix, so playing the same
scenario twice is two runs (the allies' de-duplication does not swallow the second) while
each run stays deterministic. Simulated times are rebased so the scenario starts at the
run's wall-clock start.
"""

from __future__ import annotations

import dataclasses
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from types import FrameType
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics

from producers.scenario import ScheduledEvent
from schemas import WarningEvent, encode_event, kafka_headers, message_key
from schemas.models import Alert, EventKind, Nation, TrackEnd
from trilink.errors import TrilinkError
from trilink.latency import (
    LATENCY_BUCKETS_S,
    PACING_HEADER,
    REALTIME_PACING,
    SENT_NS_HEADER,
    encode_sent_ns,
)
from trilink.platform.clients import producer_config
from trilink.platform.topics import topic_name

_STATUS_PREFIX = "STS-"


class PublishError(TrilinkError):
    """Events could not be handed to Kafka (reason ``send_failed`` or ``flush_timeout``)."""

    retriable = True


@dataclasses.dataclass(frozen=True)
class Run:
    """The identity of one play of a scenario on the wire."""

    run_id: str
    start_time: datetime

    @classmethod
    def new(cls, now: datetime | None = None) -> Run:
        return cls(uuid.uuid4().hex[:8], now or datetime.now(UTC))

    def key(self, correlation_key: str) -> str:
        if correlation_key.startswith(_STATUS_PREFIX):
            return correlation_key  # per sensor, not per missile: stays stable across runs
        return f"{correlation_key}:{self.run_id}"

    def event_id(self, event_id: uuid.UUID) -> uuid.UUID:
        return uuid.uuid5(uuid.NAMESPACE_OID, f"trilink/{self.run_id}/{event_id}")


def for_run(
    scheduled: Iterable[ScheduledEvent], run: Run, scenario_start: datetime
) -> Iterator[ScheduledEvent]:
    """The scenario's events with run-unique ids and keys and times rebased to the run start."""
    shift = run.start_time - scenario_start
    for item in scheduled:
        event = item.event
        h = event.header
        header = h.model_copy(
            update={
                "event_id": run.event_id(h.event_id),
                "correlation_key": run.key(h.correlation_key),
                "measured_at": h.measured_at + shift,
                "emitted_at": h.emitted_at + shift,
            }
        )
        payload: Any = event.payload
        updates: dict[str, Any] = {}
        for name in ("launch_time", "impact_time"):
            value = getattr(payload, name, None)
            if isinstance(value, datetime):
                updates[name] = value + shift
        if isinstance(payload, Alert) and payload.references:
            updates["references"] = [run.event_id(ref) for ref in payload.references]
        if isinstance(payload, TrackEnd) and payload.merged_into:
            updates["merged_into"] = run.key(payload.merged_into)
        if updates:
            payload = payload.model_copy(update=updates)
        yield ScheduledEvent(item.emit_offset_s, WarningEvent(header=header, payload=payload))


class ProducerMetrics:
    """The producer's Prometheus series (bounded labels: nation, kind, reason)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        # prometheus_client's switch is process-wide and read at collect time: no _created
        # series (no rule or dashboard reads them; they double the counter series).
        disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped in prometheus_client
        self.events = Counter(
            "trilink_producer_events",
            "Events handed to Kafka and acknowledged by all in-sync replicas.",
            ["nation", "kind"],
            registry=registry,
        )
        self.send_errors = Counter(
            "trilink_producer_send_errors",
            "Events Kafka did not acknowledge, by error reason.",
            ["kind", "reason"],
            registry=registry,
        )
        self.send_latency = Histogram(
            "trilink_producer_send_latency_seconds",
            "Producer send to broker acknowledgement (acks=all).",
            ["kind"],
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        # Every bounded combination starts at 0, so rate() sees a run's first events.
        for kind in EventKind:
            self.send_latency.labels(kind.value)
            for nation in Nation:
                self.events.labels(nation.value, kind.value)


@dataclasses.dataclass
class PublishReport:
    """What one publish did."""

    sent: int = 0
    acknowledged: int = 0
    failed: int = 0
    by_kind: dict[str, int] = dataclasses.field(default_factory=dict)
    late_s_max: float = 0.0  # worst lag of an actual send behind its paced schedule
    wall_s: float = 0.0
    interrupted: bool = False
    errors: list[str] = dataclasses.field(default_factory=list)


class SensorPublisher:
    """Sends scheduled events to Kafka, paced on the wall clock or as fast as possible.

    ``speed`` maps simulated time onto the wall clock (1.0 = real time, 10.0 = ten times
    faster); ``None`` sends as fast as the producer can.
    """

    def __init__(
        self,
        bootstrap: str,
        registry: CollectorRegistry | None = None,
        client_id: str = "trilink-sensors",
        **producer_overrides: Any,
    ) -> None:
        from kafka import KafkaProducer

        self.registry = registry or CollectorRegistry()
        self.metrics = ProducerMetrics(self.registry)
        self._producer: Any = KafkaProducer(**producer_config(bootstrap, client_id, **producer_overrides))
        self._warnings = topic_name("warnings")
        self._status = topic_name("sensor_status")
        self._stop = threading.Event()
        self._lock = threading.Lock()

    def stop(self) -> None:
        """Ask :meth:`publish` to stop after the event in hand (it still flushes)."""
        self._stop.set()

    def install_signal_handlers(self) -> None:
        def _handler(signum: int, frame: FrameType | None) -> None:
            self.stop()

        signal.signal(signal.SIGTERM, _handler)
        signal.signal(signal.SIGINT, _handler)

    def publish(
        self,
        events: Iterable[ScheduledEvent],
        speed: float | None = 1.0,
        on_sent: Callable[[WarningEvent], None] | None = None,
        flush_timeout_s: float = 60.0,
    ) -> PublishReport:
        """Send every event at its paced time; returns counts once all are acknowledged."""
        report = PublishReport()
        realtime = speed == 1.0
        start = time.monotonic()
        for item in events:
            if self._stop.is_set():
                report.interrupted = True
                break
            if speed is not None:
                due = start + item.emit_offset_s / speed
                wait_s = due - time.monotonic()
                if wait_s > 0 and self._stop.wait(wait_s):
                    report.interrupted = True
                    break
                report.late_s_max = max(report.late_s_max, time.monotonic() - due)
            self._send(item.event, realtime, report)
            if on_sent is not None:
                on_sent(item.event)
        try:
            self._producer.flush(timeout=flush_timeout_s)
        except Exception as exc:  # kafka-python raises its own KafkaTimeoutError here
            raise PublishError(
                "flush_timeout", f"events still unacknowledged after {flush_timeout_s:.0f} s: {exc!r}"
            ) from exc
        report.wall_s = time.monotonic() - start
        return report

    def _send(self, event: WarningEvent, realtime: bool, report: PublishReport) -> None:
        kind = event.kind
        topic = self._status if kind is EventKind.SENSOR_STATUS else self._warnings
        value = encode_event(event)
        headers = kafka_headers(event, f"/trilink/sensors/{event.header.sensor_id}")
        if realtime:
            headers.append((PACING_HEADER, REALTIME_PACING))
        sent_ns = time.time_ns()
        headers.append((SENT_NS_HEADER, encode_sent_ns(sent_ns)))
        nation = event.header.sensor_nation.value
        future = self._producer.send(topic, key=message_key(event), value=value, headers=headers)
        report.sent += 1
        report.by_kind[kind.value] = report.by_kind.get(kind.value, 0) + 1

        def acked(_: Any) -> None:
            self.metrics.send_latency.labels(kind.value).observe((time.time_ns() - sent_ns) / 1e9)
            self.metrics.events.labels(nation, kind.value).inc()
            with self._lock:
                report.acknowledged += 1

        def failed(exc: BaseException) -> None:
            reason = type(exc).__name__
            self.metrics.send_errors.labels(kind.value, reason).inc()
            with self._lock:
                report.failed += 1
                if len(report.errors) < 20:
                    report.errors.append(f"{event.header.event_id}: {exc!r}")

        future.add_callback(acked)
        future.add_errback(failed)

    def close(self, timeout_s: float = 10.0) -> None:
        self._producer.close(timeout=timeout_s)
