"""Sensor producers on Kafka: play a scenario's events onto the warning topics (hub topology:
each event onto its sensor nation's ingest topic).

Where an event leaves the simulation and enters the pipeline. Each event is encoded with
the contract (single-object Avro), keyed by its correlation key (one missile, one
partition, in order), sent with ``acks=all`` and idempotence, and stamped with the
wall-clock send time (:data:`trilink.latency.SENT_NS_HEADER`), from which every later hop
is measured.

Everything but the send time is made before the event's turn: :meth:`SensorPublisher.prepare`
turns scheduled events into :class:`OutboundEvent` records (value, key, partition, headers),
so the paced loop only stamps the send time and hands the record to the client library. A
caller that knows its events in advance prepares them all before publishing; events that
arrive as scheduled events are prepared one at a time, before waiting for their due time.

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
from typing import Any, NamedTuple

from prometheus_client import CollectorRegistry, disable_created_metrics

from producers.scenario import ScheduledEvent
from schemas import WarningEvent, encode_event, kafka_headers, message_key
from schemas.headers import PACING_HEADER, REALTIME_PACING, SENT_NS_HEADER
from schemas.models import Alert, EventKind, Nation, TrackEnd
from trilink.errors import TrilinkError
from trilink.latency import encode_sent_ns
from trilink.monitoring import names
from trilink.pacing import pace_until
from trilink.platform.clients import producer_config
from trilink.platform.topics import sensor_topic_role, topic_name
from trilink.settings import get_settings

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
        fields = type(payload).model_fields  # (a getattr that misses costs pydantic an exception)
        for name in ("launch_time", "impact_time"):
            value = getattr(payload, name) if name in fields else None
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
        self.events = names.counter(names.PRODUCER_EVENTS, registry)
        self.send_errors = names.counter(names.PRODUCER_SEND_ERRORS, registry)
        self.send_latency = names.histogram(names.PRODUCER_SEND_LATENCY, registry)
        # Every bounded combination starts at 0, so rate() sees a run's first events; the
        # children are kept, so an acknowledgement costs no label lookup.
        self.send_latency_by_kind = {kind.value: self.send_latency.labels(kind.value) for kind in EventKind}
        self.events_by_nation_kind = {
            (nation.value, kind.value): self.events.labels(nation.value, kind.value)
            for kind in EventKind
            for nation in Nation
        }


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


class OutboundEvent(NamedTuple):
    """One scheduled event made ready for the wire by :meth:`SensorPublisher.prepare`: all that
    is left to do at its turn is to stamp the send time and send it."""

    emit_offset_s: float
    event: WarningEvent
    topic: str
    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...]  # the CloudEvents headers; the send time comes at send
    partition: int | None  # the default partitioner's choice for the key, made once per key
    kind: str
    nation: str


class _Answers:
    """The broker's answers to the sends of one :meth:`SensorPublisher.publish`: the report's
    counts and the producer's series (children looked up in dicts made once), fed from the
    client library's IO thread."""

    __slots__ = ("_events", "_latency", "_lock", "_send_errors", "report")

    def __init__(self, report: PublishReport, metrics: ProducerMetrics) -> None:
        self.report = report
        self._lock = threading.Lock()
        self._latency = metrics.send_latency_by_kind
        self._events = metrics.events_by_nation_kind
        self._send_errors = metrics.send_errors

    def acked(self, out: OutboundEvent, sent_ns: int) -> None:
        self._latency[out.kind].observe((time.time_ns() - sent_ns) / 1e9)
        self._events[(out.nation, out.kind)].inc()
        with self._lock:
            self.report.acknowledged += 1

    def failed(self, out: OutboundEvent, exc: BaseException) -> None:
        self._send_errors.labels(out.kind, type(exc).__name__).inc()  # rare: the lookup may stay
        with self._lock:
            self.report.failed += 1
            if len(self.report.errors) < 20:
                self.report.errors.append(f"{out.event.header.event_id}: {exc!r}")


class _InFlight:
    """One send until the broker answers it, and the one callback for either answer (given to
    ``add_both``): a single small object per send, where a callback and an errback with their
    arguments would be four for the garbage collector to track."""

    __slots__ = ("answers", "out", "sent_ns")

    def __init__(self, answers: _Answers, out: OutboundEvent, sent_ns: int) -> None:
        self.answers = answers
        self.out = out
        self.sent_ns = sent_ns

    def __call__(self, result: Any) -> None:
        if isinstance(result, BaseException):
            self.answers.failed(self.out, result)
        else:
            self.answers.acked(self.out, self.sent_ns)


class SensorPublisher:
    """Sends scheduled events to Kafka, paced on the wall clock or as fast as possible.

    ``speed`` maps simulated time onto the wall clock (1.0 = real time, 10.0 = ten times
    faster); ``None`` sends as fast as the producer can. A process that publishes for long
    calls :func:`trilink.runtime.tune_gc` once set up (the events prepared): a full collection
    walks every event held, a few hundred milliseconds each time on a salvo.

    ``producer`` replaces the ``KafkaProducer`` the publisher would make (tests pass a fake).

    In the hub topology each nation's sensors write through a producer of their own, whose
    client id names the nation (``trilink-sensors-jp-...``): on a secured cluster that is the
    nation's sensor principal, allowed to write only its nation's ingest topic.
    """

    def __init__(
        self,
        bootstrap: str,
        registry: CollectorRegistry | None = None,
        client_id: str = "trilink-sensors",
        *,
        producer: Any = None,
        topology: str | None = None,
        **producer_overrides: Any,
    ) -> None:
        self.registry = registry or CollectorRegistry()
        self.metrics = ProducerMetrics(self.registry)
        #: direct: the shared warnings / sensor-status topics; hub: the sensor nation's ingest topic.
        self.topology = topology or get_settings().topology
        self._topics = {
            (nation.value, is_status): topic_name(sensor_topic_role(nation.value, is_status, self.topology))
            for nation in Nation
            for is_status in (False, True)
        }
        #: One producer per nation in the hub topology (each nation's principal), else one for all.
        self._producers: dict[str, Any] = {}
        per_nation = self.topology == "hub" and producer is None
        for nation in Nation:
            if per_nation:
                made = _new_producer(
                    bootstrap, _nation_client_id(client_id, nation.value), producer_overrides
                )
            else:
                made = self._producers.get(Nation.US.value) or producer
                if made is None:
                    made = _new_producer(bootstrap, client_id, producer_overrides)
            self._producers[nation.value] = made
        self._producer: Any = self._producers[Nation.US.value]
        self._by_topic = {topic: self._producers[nation] for (nation, _), topic in self._topics.items()}
        self._stop = threading.Event()
        self._partitions: dict[str, dict[bytes, int]] = {}
        self._partition_counts: dict[str, int] = {}

    def stop(self) -> None:
        """Ask :meth:`publish` to stop after the event in hand (it still flushes)."""
        self._stop.set()

    def install_signal_handlers(self) -> None:
        def _handler(signum: int, frame: FrameType | None) -> None:
            self.stop()

        signal.signal(signal.SIGTERM, _handler)
        signal.signal(signal.SIGINT, _handler)

    def prepare(self, events: Iterable[ScheduledEvent | OutboundEvent]) -> list[OutboundEvent]:
        """Encode every event and build its record before publishing (the clock not yet running);
        events already prepared are kept as they are."""
        return [item if isinstance(item, OutboundEvent) else self.outbound(item) for item in events]

    def outbound(self, item: ScheduledEvent) -> OutboundEvent:
        """One event ready for the wire: Avro value, key, partition and CloudEvents headers."""
        event = item.event
        kind = event.kind
        topic = self._topics[(event.header.sensor_nation.value, kind is EventKind.SENSOR_STATUS)]
        key = message_key(event)
        headers = kafka_headers(event, f"/trilink/sensors/{event.header.sensor_id}")
        return OutboundEvent(
            emit_offset_s=item.emit_offset_s,
            event=event,
            topic=topic,
            key=key,
            value=encode_event(event),
            headers=tuple(headers),
            partition=self._partition(topic, key),
            kind=kind.value,
            nation=event.header.sensor_nation.value,
        )

    def _partition(self, topic: str, key: bytes) -> int | None:
        """kafka-python's DefaultPartitioner choice for ``key`` (murmur2 of the key over all the
        topic's partitions), computed once per key: the client would otherwise run murmur2 in
        pure Python on every send. Same partition, so per-missile order is unchanged."""
        cached = self._partitions.setdefault(topic, {})
        partition = cached.get(key)
        if partition is None:
            count = self._partition_counts.get(topic)
            if count is None:
                count = len(self._by_topic[topic].partitions_for(topic) or ())  # waits for metadata once
                self._partition_counts[topic] = count
            if not count:
                return None  # no metadata: leave the choice to the client at send time
            from kafka.partitioner.default import murmur2

            partition = (murmur2(key) & 0x7FFFFFFF) % count
            if len(cached) >= 65_536:  # keys are per missile and run: bounded in practice
                cached.clear()
            cached[key] = partition
        return partition

    def publish(
        self,
        events: Iterable[ScheduledEvent | OutboundEvent],
        speed: float | None = 1.0,
        on_sent: Callable[[WarningEvent], None] | None = None,
        flush_timeout_s: float = 60.0,
    ) -> PublishReport:
        """Send every event at its paced time; returns counts once all are acknowledged.

        Events from :meth:`prepare` are sent as they are. Scheduled events are prepared all
        before the first send when nothing is paced (``speed=None``): the loop then only stamps
        and sends, and the client library batches such a tight loop's records far better than
        sends spaced by encoding. Paced, each is prepared just before waiting for its due time,
        so encoding delays no send that keeps up and its times stay those of the run's clock.
        """
        if speed is None:
            events = self.prepare(events)
        report = PublishReport()
        answers = _Answers(report, self.metrics)
        realtime = speed == 1.0
        sends = {topic: producer.send for topic, producer in self._by_topic.items()}
        by_kind = report.by_kind
        start_ns = time.monotonic_ns()
        for item in events:
            if self._stop.is_set():
                report.interrupted = True
                break
            out = item if isinstance(item, OutboundEvent) else self.outbound(item)
            if speed is not None:
                due_ns = start_ns + round(out.emit_offset_s / speed * 1e9)
                if not pace_until(due_ns, self._stop):
                    report.interrupted = True
                    break
                report.late_s_max = max(report.late_s_max, (time.monotonic_ns() - due_ns) / 1e9)
            sent_ns = time.time_ns()
            if realtime:
                headers = [
                    *out.headers,
                    (PACING_HEADER, REALTIME_PACING),
                    (SENT_NS_HEADER, encode_sent_ns(sent_ns)),
                ]
            else:
                headers = [*out.headers, (SENT_NS_HEADER, encode_sent_ns(sent_ns))]
            future = sends[out.topic](
                out.topic, value=out.value, key=out.key, headers=headers, partition=out.partition
            )
            future.add_both(_InFlight(answers, out, sent_ns))
            report.sent += 1
            by_kind[out.kind] = by_kind.get(out.kind, 0) + 1
            if on_sent is not None:
                on_sent(out.event)
        try:
            for producer in self._distinct_producers():
                producer.flush(timeout=flush_timeout_s)
        except Exception as exc:  # kafka-python raises its own KafkaTimeoutError here
            raise PublishError(
                "flush_timeout", f"events still unacknowledged after {flush_timeout_s:.0f} s: {exc!r}"
            ) from exc
        report.wall_s = (time.monotonic_ns() - start_ns) / 1e9
        return report

    def close(self, timeout_s: float = 10.0) -> None:
        for producer in self._distinct_producers():
            producer.close(timeout=timeout_s)

    def _distinct_producers(self) -> list[Any]:
        out: list[Any] = []
        for producer in self._producers.values():
            if all(producer is not seen for seen in out):
                out.append(producer)
        return out


def _new_producer(bootstrap: str, client_id: str, overrides: dict[str, Any]) -> Any:
    from kafka import KafkaProducer

    return KafkaProducer(**producer_config(bootstrap, client_id, **overrides))


def _nation_client_id(client_id: str, nation: str) -> str:
    """``trilink-sensors-<run>`` -> ``trilink-sensors-jp-<run>`` (the JP sensors' principal on a
    secured cluster, :func:`trilink.platform.security.principal_for_client`); another client id
    (a benchmark's, a tool's) gets the nation appended."""
    prefix = "trilink-sensors"
    if client_id.startswith(prefix):
        return f"{prefix}-{nation.lower()}{client_id.removeprefix(prefix)}"
    return f"{client_id}-{nation.lower()}"
