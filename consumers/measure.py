"""In-process latency and launch bookkeeping of an ally service (what :meth:`report` returns).

:class:`LatencyBook` keeps one :class:`trilink.latency.LatencyRecorder` (HdrHistogram, µs) per
``(hop, kind, channel)`` and mirrors every sample into the Prometheus histogram, so the report
and ``/metrics`` never disagree about what was measured. It is thread-safe: samples arrive from
the consumer loop, the Kafka producer's callback thread and the SSE writer threads.

:class:`LaunchBook` remembers, per correlation key (one missile), the first launch detection
and the first alert delivered, with the wall-clock and simulated times an orchestrator needs to
split "launch -> first warning" into the sensors' share and the pipeline's share.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from consumers.metrics import AllyMetrics
from schemas.models import EventKind, LaunchDetection, WarningEvent
from trilink.latency import LatencyRecorder

#: ``kind`` of the rows that merge every kind of one (hop, channel).
ALL_KINDS = "*"
#: Most launches remembered (the oldest is forgotten first).
MAX_LAUNCHES = 10_000


class _Series:
    """One (hop, kind, channel): an HdrHistogram plus an exact running sum for the mean."""

    __slots__ = ("child", "lock", "recorder", "sum_us")

    def __init__(self, child: Any) -> None:
        self.lock = threading.Lock()
        self.recorder = LatencyRecorder()
        self.sum_us = 0
        self.child = child

    def row(self) -> dict[str, float]:
        with self.lock:
            count = self.recorder.count
            values = self.recorder.percentiles_us() if count else {}
            max_us = self.recorder.max_us()
            mean_us = self.sum_us / count if count else 0.0
        return {
            "count": count,
            "p50_ms": values.get(50.0, 0) / 1000,
            "p90_ms": values.get(90.0, 0) / 1000,
            "p99_ms": values.get(99.0, 0) / 1000,
            "p99_9_ms": values.get(99.9, 0) / 1000,
            "max_ms": max_us / 1000,
            "mean_ms": round(mean_us / 1000, 3),
        }


class LatencyBook:
    """HdrHistograms per (hop, kind, channel) plus the Prometheus histogram.

    Each series has its own lock, held only for one sample or one percentile pass, so a report
    taken while the service runs delays no delivery by more than a fraction of a millisecond.
    Rows with kind ``*`` merge the per-kind histograms of one (hop, channel) when a report is
    taken, so the hot path records each sample once.
    """

    def __init__(self, metrics: AllyMetrics) -> None:
        self._metrics = metrics
        self._lock = threading.Lock()  # only guards creating series
        self._series: dict[tuple[str, str, str], _Series] = {}

    def _get(self, key: tuple[str, str, str]) -> _Series:
        series = self._series.get(key)
        if series is None:
            with self._lock:
                series = self._series.get(key)
                if series is None:
                    hop, kind, channel = key
                    child = self._metrics.hop_latency.labels(self._metrics.ally, hop, kind, channel)
                    series = self._series[key] = _Series(child)
        return series

    def record_ns(self, hop: str, kind: str, channel: str, latency_ns: int) -> None:
        series = self._get((hop, kind, channel))
        with series.lock:
            series.recorder.record_ns(latency_ns)
            series.sum_us += max(latency_ns, 0) // 1000
        series.child.observe(max(latency_ns, 0) / 1e9)

    def rows(self) -> list[dict[str, Any]]:
        """One row per (hop, kind, channel) plus merged rows with kind ``*``, percentiles in ms."""
        with self._lock:
            keys = sorted(self._series)
        rows = [
            {"hop": hop, "kind": kind, "channel": channel, **self._series[(hop, kind, channel)].row()}
            for hop, kind, channel in keys
        ]
        merged: dict[tuple[str, str], _Series] = {}
        for hop, kind, channel in keys:
            source = self._series[(hop, kind, channel)]
            target = merged.setdefault((hop, channel), _Series(None))
            with source.lock:
                target.recorder.merge(source.recorder)
                target.sum_us += source.sum_us
        rows += [
            {"hop": hop, "kind": ALL_KINDS, "channel": channel, **series.row()}
            for (hop, channel), series in sorted(merged.items())
        ]
        return rows


@dataclass
class FirstDelivery:
    """The first delivered event of one kind for one launch, and when each channel had it."""

    event_id: str
    sensor_id: str
    sensor_nation: str
    measured_at: str
    emitted_at: str
    measured_at_ns: int
    emitted_at_ns: int
    launch_time_ns: int | None
    sent_ns: int | None
    append_ns: int | None
    received_ns: int
    delivered_ns: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        first = min(self.delivered_ns.values()) if self.delivered_ns else None
        return {
            "event_id": self.event_id,
            "sensor_id": self.sensor_id,
            "sensor_nation": self.sensor_nation,
            "measured_at": self.measured_at,
            "emitted_at": self.emitted_at,
            "measured_at_ns": self.measured_at_ns,
            "emitted_at_ns": self.emitted_at_ns,
            "launch_time_ns": self.launch_time_ns,
            "sent_ns": self.sent_ns,
            "append_ns": self.append_ns,
            "received_ns": self.received_ns,
            "delivered_ns": dict(self.delivered_ns),
            "first_delivered_ns": first,
            "pipeline_s": None if first is None or self.sent_ns is None else (first - self.sent_ns) / 1e9,
        }


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def datetime_ns(moment: datetime) -> int:
    """Nanoseconds since the epoch of an aware datetime, exactly (the wire carries µs)."""
    return (moment - _EPOCH) // _MICROSECOND * 1000


class LaunchBook:
    """Per correlation key: the first launch detection and the first alert delivered (bounded)."""

    TRACKED = (EventKind.LAUNCH_DETECTION, EventKind.ALERT)

    def __init__(self, max_launches: int = MAX_LAUNCHES) -> None:
        self._lock = threading.Lock()
        self._max = max_launches
        self._launches: OrderedDict[str, dict[str, FirstDelivery]] = OrderedDict()

    def note(
        self,
        event: WarningEvent,
        *,
        sent_ns: int | None,
        append_ns: int | None,
        received_ns: int,
    ) -> FirstDelivery | None:
        """Start tracking ``event`` when it is the first of its kind for its launch; returns the
        entry to fill with channel delivery times, or None when the event is not tracked."""
        kind = event.kind
        if kind not in self.TRACKED:
            return None
        header = event.header
        with self._lock:
            entry = self._launches.get(header.correlation_key)
            if entry is None:
                entry = self._launches[header.correlation_key] = {}
                if len(self._launches) > self._max:
                    self._launches.popitem(last=False)
            if kind.value in entry:
                return None
            payload = event.payload
            first = FirstDelivery(
                event_id=str(header.event_id),
                sensor_id=header.sensor_id,
                sensor_nation=header.sensor_nation.value,
                measured_at=header.measured_at.isoformat(),
                emitted_at=header.emitted_at.isoformat(),
                measured_at_ns=datetime_ns(header.measured_at),
                emitted_at_ns=datetime_ns(header.emitted_at),
                launch_time_ns=datetime_ns(payload.launch_time)
                if isinstance(payload, LaunchDetection)
                else None,
                sent_ns=sent_ns,
                append_ns=append_ns,
                received_ns=received_ns,
            )
            entry[kind.value] = first
            return first

    def delivered(self, first: FirstDelivery, channel: str, when_ns: int) -> None:
        with self._lock:
            first.delivered_ns.setdefault(channel, when_ns)

    def as_dict(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {
                key: {
                    "first_launch_detection": (
                        entry["launch_detection"].as_dict() if "launch_detection" in entry else None
                    ),
                    "first_alert": entry["alert"].as_dict() if "alert" in entry else None,
                }
                for key, entry in self._launches.items()
            }
