"""How trilink measures latency: transport timestamps, hop names, histogram buckets, reports.

Every hop is timed on the wall clock of the host (``time.time_ns``); all processes of one
local run share that clock. Across hosts the clocks must be synchronised (PTP or chrony to
well under a millisecond) or the hop figures are meaningless; reports carry
``clock_domain`` so a reader can tell (see README, "Latency across hosts").

Hops (label ``hop``):

- ``sensor_to_send``  simulated measurement time -> producer send (the sensor's share; only
  meaningful in real-time pacing, reported, never mixed with the pipeline figures)
- ``send_to_append``  producer send -> broker log append (LogAppendTime)
- ``append_to_receive``  broker append -> ally service receives the record
- ``receive_to_deliver``  ally receives -> delivered to one channel (label ``channel``)
- ``end_to_end``  producer send -> delivered to a channel: the pipeline's latency
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from hdrh.histogram import HdrHistogram

#: Kafka header holding the producer's wall-clock send time, int64 big-endian nanoseconds.
SENT_NS_HEADER = "trilink_sent_ns"
_NS = struct.Struct(">q")

#: Kafka header saying how the producer paced its events; ``sensor_to_send`` is measured only
#: when its value is :data:`REALTIME_PACING` (a replay's send time has nothing to do with the
#: simulated ``measured_at``).
PACING_HEADER = "trilink_pacing"
REALTIME_PACING = b"realtime"

#: The pipeline latency objective: p99 of ``end_to_end`` at or below this.
PIPELINE_P99_OBJECTIVE_S = 0.050

#: Prometheus histogram buckets (seconds), with a boundary exactly at each objective
#: (5 ms delivery budget of one hop, 50 ms pipeline p99, 1 s "real time" outer bound).
LATENCY_BUCKETS_S: tuple[float, ...] = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.010,
    0.025,
    0.050,
    0.100,
    0.250,
    0.500,
    1.0,
    2.5,
    5.0,
)

HOPS = ("sensor_to_send", "send_to_append", "append_to_receive", "receive_to_deliver", "end_to_end")

#: HdrHistogram range: 1 µs .. 1 h at 3 significant digits.
_HDR_MIN_US = 1
_HDR_MAX_US = 3_600_000_000
_HDR_DIGITS = 3

PERCENTILES = (50.0, 90.0, 99.0, 99.9)


def encode_sent_ns(ns: int) -> bytes:
    return _NS.pack(ns)


def decode_sent_ns(raw: bytes) -> int | None:
    """The send time from the header bytes, or None when they are not 8 bytes."""
    if len(raw) != _NS.size:
        return None
    return int(_NS.unpack(raw)[0])


def sent_ns_from_headers(headers: Iterable[tuple[str, bytes]]) -> int | None:
    for key, value in headers:
        if key == SENT_NS_HEADER:
            return decode_sent_ns(value)
    return None


class LatencyRecorder:
    """An HdrHistogram at microsecond resolution (1 µs .. 1 h, 3 significant digits)."""

    def __init__(self) -> None:
        self._hist: Any = HdrHistogram(_HDR_MIN_US, _HDR_MAX_US, _HDR_DIGITS)
        self.count = 0

    def record_ns(self, latency_ns: int) -> None:
        # Clamp: a negative figure means clocks disagree (cross-host) and is counted as 1 µs.
        us = min(max(latency_ns // 1000, _HDR_MIN_US), _HDR_MAX_US)
        self._hist.record_value(us)
        self.count += 1

    def record_s(self, latency_s: float) -> None:
        self.record_ns(int(latency_s * 1e9))

    def percentiles_us(self, percentiles: Iterable[float] = PERCENTILES) -> dict[float, int]:
        """Values (µs) at several percentiles in one pass, and cheap enough to call while recording
        (``summary`` also computes the mean by walking every bucket, which takes tens of ms)."""
        values = self._hist.get_percentile_to_value_dict(list(percentiles))
        return {float(p): int(v) for p, v in values.items()}

    def max_us(self) -> int:
        return int(self._hist.get_max_value()) if self.count else 0

    def merge(self, other: LatencyRecorder) -> None:
        self._hist.add(other._hist)
        self.count += other.count

    def summary(self) -> LatencySummary:
        if self.count == 0:
            return LatencySummary(0, 0, 0, 0, 0, 0, 0.0)
        h = self._hist
        return LatencySummary(
            count=self.count,
            p50_us=int(h.get_value_at_percentile(50.0)),
            p90_us=int(h.get_value_at_percentile(90.0)),
            p99_us=int(h.get_value_at_percentile(99.0)),
            p999_us=int(h.get_value_at_percentile(99.9)),
            max_us=int(h.get_max_value()),
            mean_us=float(h.get_mean_value()),
        )


@dataclass(frozen=True)
class LatencySummary:
    count: int
    p50_us: int
    p90_us: int
    p99_us: int
    p999_us: int
    max_us: int
    mean_us: float

    def as_dict(self) -> dict[str, float]:
        return {
            "count": self.count,
            "p50_ms": self.p50_us / 1000,
            "p90_ms": self.p90_us / 1000,
            "p99_ms": self.p99_us / 1000,
            "p99_9_ms": self.p999_us / 1000,
            "max_ms": self.max_us / 1000,
            "mean_ms": round(self.mean_us / 1000, 3),
        }
