"""``trilink replay``: re-emit recordings with their original inter-event timing.

Planning and sending are separate steps so the pacing loop does nothing but wait and send:

1. :func:`plan_replay` merges the files' rows into one schedule. Rows of one recorded
   partition keep their offset order (so one missile's events keep their order, as the
   partition did); partitions are interleaved by original send time. The intended emit offset
   of each row is its original send time (send-time header, else broker timestamp, or the
   event's ``emitted_at`` with ``timeline="event"``) minus that of the first row.
2. :func:`prepare_sends` turns each row into what goes on the wire: the recorded key and
   headers without the old send-time and pacing headers, the recorded value bytes as they are,
   or, with ``rebase``, the decoded event with every time shifted by one constant and
   re-encoded. Nothing else is re-derived: ids, keys, sequences and releasability stay.
3. :class:`Replayer` waits for each intended offset divided by the speed, stamps a fresh
   :data:`~schemas.headers.SENT_NS_HEADER` and sends with the project's producer settings,
   recording how late each send was against its schedule.
"""

from __future__ import annotations

import dataclasses
import heapq
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from schemas import decode_event, encode_event
from schemas.headers import PACING_HEADER, SENT_NS_HEADER
from schemas.models import WarningEvent
from trilink.errors import DeserializationError
from trilink.latency import LatencyRecorder, LatencySummary, encode_sent_ns
from trilink.pacing import SPIN_NS, pace_until
from trilink.platform.clients import producer_config
from trilink.platform.topics import ingest_role, sensor_topic_role, topic_name
from trilink.replay.errors import RecordingError, ReplayError
from trilink.replay.format import RecordedMessage, Recording
from trilink.replay.recorder import MessageFilter
from trilink.settings import get_settings

__all__ = [
    "PlannedSend",
    "PreparedSend",
    "ReplayPlan",
    "ReplayReport",
    "Replayer",
    "Timeline",
    "plan_replay",
    "prepare_sends",
]

Timeline = Literal["send", "broker", "event"]
#: Headers a replay drops: the old send time (a fresh one is stamped) and the real-time pacing
#: marker (a replay's send time says nothing about when the sensor measured).
_DROPPED_HEADERS = frozenset({SENT_NS_HEADER, PACING_HEADER})
#: GIL switch interval while pacing, seconds (CPython's default is 5 ms).
_PACED_SWITCH_INTERVAL_S = 0.0002


@dataclasses.dataclass(frozen=True, slots=True)
class PlannedSend:
    """One row scheduled ``intended_offset_ns`` after the first (at speed 1), to ``topic``."""

    intended_offset_ns: int
    topic: str
    message: RecordedMessage


@dataclasses.dataclass
class ReplayPlan:
    """The merged schedule of one or more recordings, and what did not make it in."""

    sends: list[PlannedSend]
    filtered_out: int = 0
    duplicates_skipped: int = 0
    damages: list[RecordingError] = dataclasses.field(default_factory=list)
    records_read: int = 0

    @property
    def span_s(self) -> float:
        return self.sends[-1].intended_offset_ns / 1e9 if self.sends else 0.0


def _timeline_ns(message: RecordedMessage, timeline: Timeline) -> int:
    if timeline == "event" and message.emitted_at_us is not None:
        return message.emitted_at_us * 1000
    if timeline == "broker":
        return message.timestamp_ms * 1_000_000
    return message.send_time_ns


def plan_replay(
    recordings: Sequence[Recording],
    message_filter: MessageFilter | None = None,
    topic_map: dict[str, str] | None = None,
    timeline: Timeline = "send",
    topology: str | None = None,
) -> ReplayPlan:
    """Merge recordings into one schedule (per-partition order kept, interleaved by time).

    A record goes to ``topic_map``'s topic for its recorded topic when given; otherwise to where a
    sensor of its nation writes in ``topology`` (default: the setting): a recording of the shared
    warning topics replays into the nations' ingest topics in the hub topology, and back."""
    message_filter = message_filter or MessageFilter()
    topic_map = topic_map or {}
    target = _topic_router(topology or get_settings().topology)
    plan = ReplayPlan([])
    partitions: dict[tuple[str, int], list[RecordedMessage]] = {}
    seen: set[tuple[str, int, int]] = set()
    for recording in recordings:
        plan.records_read += len(recording.messages)
        if recording.damage is not None:
            plan.damages.append(recording.damage)
        for message in recording.messages:
            where = (message.topic, message.partition, message.offset)
            if where in seen:
                plan.duplicates_skipped += 1
                continue
            seen.add(where)
            if not message_filter.accepts(message):
                plan.filtered_out += 1
                continue
            partitions.setdefault((message.topic, message.partition), []).append(message)
    queues: list[list[tuple[int, RecordedMessage]]] = []
    for rows in partitions.values():
        rows.sort(key=lambda m: m.offset)
        queue = []
        floor_ns = -(2**63)
        for message in rows:
            # A time that goes backwards inside a partition (several producers, a clock step)
            # is held at the previous one: the partition's order wins over its timestamps.
            floor_ns = max(floor_ns, _timeline_ns(message, timeline))
            queue.append((floor_ns, message))
        queues.append(queue)
    merged = list(heapq.merge(*queues, key=lambda item: item[0]))
    if merged:
        origin_ns = merged[0][0]
        plan.sends = [
            PlannedSend(at_ns - origin_ns, topic_map.get(m.topic) or target(m), m) for at_ns, m in merged
        ]
    return plan


def _topic_router(topology: str) -> Any:
    """``message -> topic``: a record of a sensor topic of either topology goes to the topic its
    sensor nation writes in ``topology``; any other topic is kept. A record whose nation is
    unknown (it did not decode) goes to the US hub's own ingest topic in the hub topology,
    where the hub judges it, as the allies judge it on the shared topic."""
    nations = ("US", "JP", "KR")
    shared = {topic_name("warnings"): False, topic_name("sensor_status"): True}
    ingest = {topic_name(ingest_role(n)) for n in nations}
    where = {
        (n, status): topic_name(sensor_topic_role(n, status, topology))
        for n in nations
        for status in (False, True)
    }

    def route(m: RecordedMessage) -> str:
        if m.topic in shared:
            status = shared[m.topic]
        elif m.topic in ingest:
            status = m.kind == "sensor_status"
        else:
            return m.topic
        if m.sensor_nation in nations:
            return where[(str(m.sensor_nation), status)]
        return where[("US", status)] if topology == "hub" else m.topic

    return route


@dataclasses.dataclass(frozen=True, slots=True)
class PreparedSend:
    """Exactly what one send puts on the wire (apart from the fresh send-time header)."""

    intended_offset_ns: int
    topic: str
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]
    kind: str
    decode_error: str | None


def prepare_sends(
    plan: ReplayPlan, *, rebase: bool = False, now: datetime | None = None
) -> list[PreparedSend]:
    """The wire form of every planned row; with ``rebase`` every value must decode.

    Rebasing shifts every time of every event (``measured_at``, ``emitted_at``, launch and
    impact times, and the ``ce_time`` header that mirrors ``emitted_at``) by one constant so
    that the earliest ``emitted_at`` of the replay becomes ``now``. A value that cannot be
    decoded stops the replay before anything is sent, naming the first such row.
    """
    shift: timedelta | None = None
    events: list[WarningEvent] = []
    if rebase:
        events = [_decode_for_rebase(item) for item in plan.sends]
        if events:
            earliest = min(e.header.emitted_at for e in events)
            shift = (now or datetime.now(UTC)) - earliest
    out = []
    for index, item in enumerate(plan.sends):
        message = item.message
        headers = tuple((k, v) for k, v in message.headers if k not in _DROPPED_HEADERS)
        value = message.value
        if shift is not None:
            shifted = _shifted(events[index], shift)
            value = encode_event(shifted, revalidate=True)
            headers = tuple(
                (k, _rfc3339(shifted.header.emitted_at) if k == "ce_time" else v) for k, v in headers
            )
        out.append(
            PreparedSend(
                item.intended_offset_ns,
                item.topic,
                message.key,
                value,
                headers,
                message.kind or "unknown",
                message.decode_error,
            )
        )
    return out


def _decode_for_rebase(item: PlannedSend) -> WarningEvent:
    message = item.message
    where = f"{message.topic}[{message.partition}]@{message.offset}"
    if message.value is None:
        raise ReplayError("undecodable_value", f"--rebase: record {where} has no value to rebase")
    try:
        return decode_event(message.value)
    except DeserializationError as exc:
        fingerprint = message.fingerprint
        if exc.reason == "unknown_fingerprint" and fingerprint is not None:
            raise ReplayError(
                "unknown_fingerprint",
                f"--rebase: record {where} (event {message.event_id or '?'}) was written with schema "
                f"fingerprint 0x{fingerprint:016x}, which no released schema has; nothing was sent "
                "(without --rebase its bytes are replayed as they are)",
            ) from None
        raise ReplayError(
            "undecodable_value",
            f"--rebase: record {where} does not decode [{exc.reason}] {exc.message}; nothing was sent",
        ) from None


def _shifted(event: WarningEvent, shift: timedelta) -> WarningEvent:
    header = event.header.model_copy(
        update={
            "measured_at": event.header.measured_at + shift,
            "emitted_at": event.header.emitted_at + shift,
        }
    )
    payload: Any = event.payload
    updates = {
        name: value + shift
        for name in ("launch_time", "impact_time")
        if isinstance(value := getattr(payload, name, None), datetime)
    }
    if updates:
        payload = payload.model_copy(update=updates)
    return WarningEvent(header=header, payload=payload)


def _rfc3339(moment: datetime) -> bytes:
    # the same shape schemas.headers writes: UTC, microseconds, "Z"
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ").encode("ascii")


@dataclasses.dataclass
class ReplayReport:
    """Counts and timing fidelity of one replay."""

    speed: float | None
    sent: int = 0
    acknowledged: int = 0
    failed: int = 0
    filtered_out: int = 0
    duplicates_skipped: int = 0
    by_kind: dict[str, int] = dataclasses.field(default_factory=dict)
    undecodable_sent: dict[str, int] = dataclasses.field(default_factory=dict)
    wall_s: float = 0.0
    #: How late each send was against its schedule (speed given), µs.
    fidelity: LatencySummary | None = None
    interrupted: bool = False
    errors: list[str] = dataclasses.field(default_factory=list)

    @property
    def rate_per_s(self) -> float:
        return self.sent / self.wall_s if self.wall_s > 0 else 0.0

    def lines(self) -> list[str]:
        pace = "as fast as possible" if self.speed is None else f"x{self.speed:g}"
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(self.by_kind.items())) or "nothing"
        out = [
            f"sent {self.sent}, acknowledged {self.acknowledged}, failed {self.failed}, "
            f"filtered out {self.filtered_out}, duplicates skipped {self.duplicates_skipped} "
            f"in {self.wall_s:.2f} s ({pace}, {self.rate_per_s:.0f} events/s)"
            + (" (interrupted)" if self.interrupted else ""),
            f"per kind: {kinds}",
        ]
        if self.undecodable_sent:
            bad = ", ".join(f"{k} {v}" for k, v in sorted(self.undecodable_sent.items()))
            out.append(f"undecodable values sent as recorded: {bad}")
        if self.fidelity is not None and self.fidelity.count:
            f = self.fidelity
            out.append(
                f"timing error (actual - intended emit offset): p50 {f.p50_us} us, "
                f"p99 {f.p99_us} us, max {f.max_us} us over {f.count} sends"
            )
        out += [f"send error: {e}" for e in self.errors]
        return out


class Replayer:
    """Sends prepared rows to Kafka on schedule (``speed``) or as fast as possible (``None``)."""

    def __init__(
        self,
        bootstrap: str,
        client_id: str = "trilink-replay",
        *,
        producer: Any = None,
        **producer_overrides: Any,
    ) -> None:
        """``producer`` replaces the Kafka producer (the benchmark's pacing-only control run)."""
        from kafka import KafkaProducer

        self._producer: Any = producer or KafkaProducer(
            **producer_config(bootstrap, client_id, **producer_overrides)
        )
        self._stop = threading.Event()
        self._lock = threading.Lock()
        #: The report of the replay in progress, counted as it goes (read by the progress line).
        self.live_report: ReplayReport | None = None

    def stop(self) -> None:
        """Ask :meth:`replay` to stop before the next send (it still flushes)."""
        self._stop.set()

    def replay(
        self,
        sends: Iterable[PreparedSend],
        speed: float | None = 1.0,
        *,
        plan: ReplayPlan | None = None,
        flush_timeout_s: float = 60.0,
    ) -> ReplayReport:
        """Send every row at ``intended_offset / speed`` after the start; returns once acknowledged."""
        if speed is not None and speed <= 0:
            raise ReplayError("bad_option", f"speed must be positive, got {speed}")
        report = self.live_report = ReplayReport(speed)
        if plan is not None:
            report.filtered_out = plan.filtered_out
            report.duplicates_skipped = plan.duplicates_skipped
        sends = list(sends)
        self._warm_up({item.topic for item in sends})
        lateness = LatencyRecorder()
        clock = time.perf_counter_ns
        report_start_ns = clock()
        # The producer's I/O thread shares the GIL: with the default 5 ms switch interval a due
        # send can wait that long for the interpreter. Hand it over more often while pacing.
        switch_interval_s = sys.getswitchinterval()
        if speed is not None:
            sys.setswitchinterval(_PACED_SWITCH_INTERVAL_S)
        try:
            self._send_all(sends, speed, report, lateness)
        finally:
            sys.setswitchinterval(switch_interval_s)
        try:
            self._producer.flush(timeout=flush_timeout_s)
        except Exception as exc:  # kafka-python raises its own KafkaTimeoutError here
            raise ReplayError(
                "flush_timeout", f"records still unacknowledged after {flush_timeout_s:.0f} s: {exc!r}"
            ) from exc
        report.wall_s = (clock() - report_start_ns) / 1e9
        report.fidelity = lateness.summary() if speed is not None else None
        return report

    def _send_all(
        self,
        sends: Iterable[PreparedSend],
        speed: float | None,
        report: ReplayReport,
        lateness: LatencyRecorder,
    ) -> None:
        clock = time.perf_counter_ns
        start_ns = clock()
        for item in sends:
            if self._stop.is_set():
                report.interrupted = True
                break
            due_ns = 0
            if speed is not None:
                due_ns = start_ns + int(item.intended_offset_ns / speed)
                if not pace_until(due_ns, self._stop, clock, spin_ns=SPIN_NS):
                    report.interrupted = True
                    break
            headers = [*item.headers, (SENT_NS_HEADER, encode_sent_ns(time.time_ns()))]
            sent_at_ns = clock()
            future = self._producer.send(item.topic, key=item.key, value=item.value, headers=headers)
            if speed is not None:
                lateness.record_ns(sent_at_ns - due_ns)
            self._count(item, future, report)

    def _warm_up(self, topics: set[str]) -> None:
        """Fetch the target topics' metadata before the clock starts (the first send of a topic
        would otherwise block on it for up to hundreds of milliseconds)."""
        for topic in sorted(topics):
            if not self._producer.partitions_for(topic):
                raise ReplayError("bad_option", f"topic {topic!r} does not exist on the target cluster")

    def _count(self, item: PreparedSend, future: Any, report: ReplayReport) -> None:
        report.sent += 1
        report.by_kind[item.kind] = report.by_kind.get(item.kind, 0) + 1
        if item.decode_error:
            report.undecodable_sent[item.decode_error] = report.undecodable_sent.get(item.decode_error, 0) + 1

        def acked(_: Any) -> None:
            with self._lock:
                report.acknowledged += 1

        def failed(exc: BaseException) -> None:
            with self._lock:
                report.failed += 1
                if len(report.errors) < 20:
                    report.errors.append(f"{item.topic}: {exc!r}")

        future.add_callback(acked)
        future.add_errback(failed)

    def close(self, timeout_s: float = 10.0) -> None:
        self._producer.close(timeout=timeout_s)
