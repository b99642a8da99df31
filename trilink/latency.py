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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from hdrh.histogram import HdrHistogram

T = TypeVar("T", int, float)

#: A time in a Kafka header (``trilink_sent_ns`` and the other ``*_ns`` headers named in
#: :mod:`schemas.headers`): int64 big-endian nanoseconds.
_NS = struct.Struct(">q")

#: kafka-python's ``record.timestamp_type``: the producer's CreateTime, or the broker's
#: LogAppendTime (a broker-stamped record: its timestamp is the append, in ms).
CREATE_TIME = 0
LOG_APPEND_TIME = 1

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

HOPS = (
    "sensor_to_send",
    "send_to_append",
    "append_to_hub",  # hub topology: ingest append -> the hub received it
    "hub_to_append",  # hub topology: the hub received it -> the ally's feed appended it
    "append_to_receive",
    "receive_to_deliver",
    "end_to_end",
    "acknowledged_by_all",  # the three-way acknowledgement: send -> the last ally's acknowledgement
)

#: HdrHistogram range: 1 µs .. 1 h at 3 significant digits.
_HDR_MIN_US = 1
_HDR_MAX_US = 3_600_000_000
_HDR_DIGITS = 3

PERCENTILES = (50.0, 90.0, 99.0, 99.9)


#: The Unix epoch, aware (UTC).
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def epoch_us(moment: datetime) -> int:
    """Microseconds since the Unix epoch of an aware datetime, exactly (no float rounding)."""
    return (moment - EPOCH) // _MICROSECOND


def datetime_ns(moment: datetime) -> int:
    """Nanoseconds since the epoch of an aware datetime, exactly (the wire carries µs)."""
    return (moment - EPOCH) // _MICROSECOND * 1000


def datetime_from_ns(ns: int) -> datetime:
    """The aware UTC datetime of ``ns`` nanoseconds since the epoch (truncated to µs)."""
    return EPOCH + timedelta(microseconds=ns // 1000)


def percentile_of_sorted(values: Sequence[T], percentile: float) -> T:
    """Nearest-rank percentile of an ascending sequence (the smallest value with at least
    ``percentile`` % of the values at or below it): for short windows and small samples; the
    long series go through :class:`LatencyRecorder` (HdrHistogram)."""
    if not values:
        raise ValueError("no values")
    rank = max(int(-(-percentile * len(values) // 100.0)) - 1, 0)
    return values[min(rank, len(values) - 1)]


def encode_sent_ns(ns: int) -> bytes:
    return _NS.pack(ns)


def decode_sent_ns(raw: bytes) -> int | None:
    """The send time from the header bytes, or None when they are not 8 bytes."""
    if len(raw) != _NS.size:
        return None
    return int(_NS.unpack(raw)[0])


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


class BatchHistogram:
    """Latencies (µs, 1 µs .. 1 h) in log-linear buckets with 3 significant digits, filled in batches.

    The bucket layout is HdrHistogram's (1 µs buckets below 2,048 µs, then 1,024 buckets per
    power of two), so percentiles agree with :class:`LatencyRecorder` to its precision; but a
    batch of samples is bucketed with one vectorised numpy pass instead of a Python call per
    sample, which is what a service recording several hops of every event can afford.
    Percentiles report the highest value equivalent to their bucket (as HdrHistogram does).
    """

    _EXACT = 2048  # values below are their own bucket
    _HALF = 1024  # buckets per power of two above
    _SIZE = 2048 + (_HDR_MAX_US.bit_length() - 11) * 1024

    def __init__(self) -> None:
        import numpy as np

        self._np = np
        self.counts = np.zeros(self._SIZE, dtype=np.int64)
        self.count = 0
        self.sum_us = 0
        self.max_seen_us = 0

    def record_many_us(self, values_us: Any) -> None:
        """Add a numpy integer array of latencies in µs (clamped into 1 µs .. 1 h)."""
        np = self._np
        if len(values_us) == 0:
            return
        v = np.clip(values_us, _HDR_MIN_US, _HDR_MAX_US).astype(np.int64)
        shift = np.maximum(np.frexp(v.astype(np.float64))[1] - 11, 0)
        index = np.where(shift == 0, v, self._EXACT + (shift - 1) * self._HALF + (v >> shift) - self._HALF)
        # A fold of a few samples (a quiet commit interval) adds its buckets alone: a full-size
        # bincount allocates and adds all ~23,500 buckets, ~0.1 ms whatever the batch holds.
        if len(index) < 4096:
            buckets, counts = np.unique(index, return_counts=True)
            self.counts[buckets] += counts
        else:
            self.counts += np.bincount(index, minlength=self._SIZE)
        self.count += len(v)
        self.sum_us += int(v.sum())
        self.max_seen_us = max(self.max_seen_us, int(v.max()))

    def merge(self, other: BatchHistogram) -> None:
        self.counts += other.counts
        self.count += other.count
        self.sum_us += other.sum_us
        self.max_seen_us = max(self.max_seen_us, other.max_seen_us)

    def _highest_equivalent(self, index: int) -> int:
        if index < self._EXACT:
            return index
        shift = (index - self._EXACT) // self._HALF + 1
        mantissa = (index - self._EXACT) % self._HALF + self._HALF
        return ((mantissa + 1) << shift) - 1

    def percentiles_us(self, percentiles: Iterable[float] = PERCENTILES) -> dict[float, int]:
        """Values (µs) at several percentiles, from one cumulative pass."""
        if self.count == 0:
            return {float(p): 0 for p in percentiles}
        cumulative = self._np.cumsum(self.counts)
        out = {}
        for p in percentiles:
            rank = max(int(p / 100.0 * self.count + 0.5), 1)
            index = int(self._np.searchsorted(cumulative, rank))
            out[float(p)] = min(self._highest_equivalent(index), self.max_seen_us)
        return out

    def summary(self) -> LatencySummary:
        if self.count == 0:
            return LatencySummary(0, 0, 0, 0, 0, 0, 0.0)
        values = self.percentiles_us()
        return LatencySummary(
            count=self.count,
            p50_us=values[50.0],
            p90_us=values[90.0],
            p99_us=values[99.0],
            p999_us=values[99.9],
            max_us=self.max_seen_us,
            mean_us=self.sum_us / self.count,
        )
