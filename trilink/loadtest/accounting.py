"""Per-ally bookkeeping of what came out of the pipeline: loss, duplicates, order, latency.

Fed one delivered record at a time (by the observer reading the ally topics, or by a unit
test), it keeps, per ally:

- which slots of the plan arrived and how often (lost = expected but never seen,
  duplicates = seen more than once), and per key whether slots arrived in send order;
- latency per hop and event kind, both counted from the **intended** send time and from the
  **actual** one; the gap between the two is what a stalled sender adds (coordinated omission);
- a one-second timeline of deliveries and of the from-intended end-to-end latency.

Hops measured here (all clocks are the host's wall clock; see :mod:`trilink.latency`):

- ``schedule_lag``        intended -> actual send (the harness's own lateness)
- ``send_to_receive``     send -> the ally service polled the record (``trilink_received_ns``)
- ``receive_to_deliver``  service receive -> the record appended to the ally's topic
- ``end_to_end``          send -> appended to the ally's topic, i.e. readable by that ally's systems

"Appended" is the ally topic's LogAppendTime, which Kafka keeps in milliseconds: the last two
hops carry up to 1 ms of truncation. It is used rather than the time this harness reads the
record because it does not depend on how busy the harness is.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from trilink.latency import PERCENTILES, LatencyRecorder, LatencySummary, percentile_of_sorted
from trilink.loadtest.workload import NS_PER_S, PlannedEvent
from trilink.monitoring.names import ALLIES

ALL_KINDS = "*"
INTENDED = "intended"
ACTUAL = "actual"
RECEIVE = "receive"

#: (hop, basis) pairs in report order; ``basis`` says where the hop's clock starts.
HOP_BASES: tuple[tuple[str, str], ...] = (
    ("schedule_lag", INTENDED),
    ("send_to_receive", INTENDED),
    ("send_to_receive", ACTUAL),
    ("receive_to_deliver", RECEIVE),
    ("end_to_end", INTENDED),
    ("end_to_end", ACTUAL),
)

#: Percentiles of the distribution curve kept for the plot (HdrHistogram-style x axis).
CURVE_PERCENTILES: tuple[float, ...] = (
    0.0,
    25.0,
    50.0,
    75.0,
    90.0,
    95.0,
    99.0,
    99.5,
    99.9,
    99.95,
    99.99,
    100.0,
)


class CurveRecorder(LatencyRecorder):
    """A :class:`LatencyRecorder` that answers any percentile, summarises fast and crosses processes.

    hdrh computes a mean by walking every bucket in Python (about 0.1 s per histogram of this
    range); a report holds a hundred histograms, so the mean comes from a running sum instead
    and all percentiles of a summary from one walk.
    """

    def __init__(self) -> None:
        super().__init__()
        self.sum_us = 0

    def record_ns(self, latency_ns: int) -> None:
        super().record_ns(latency_ns)
        self.sum_us += max(latency_ns // 1000, 1)

    def merge(self, other: LatencyRecorder) -> None:
        super().merge(other)
        self.sum_us += other.sum_us if isinstance(other, CurveRecorder) else 0

    def summary(self) -> LatencySummary:
        if self.count == 0:
            return LatencySummary(0, 0, 0, 0, 0, 0, 0.0)
        values = self._hist.get_percentile_to_value_dict(list(PERCENTILES))
        return LatencySummary(
            count=self.count,
            p50_us=int(values[50.0]),
            p90_us=int(values[90.0]),
            p99_us=int(values[99.0]),
            p999_us=int(values[99.9]),
            max_us=int(self._hist.get_max_value()),
            mean_us=self.sum_us / self.count,
        )

    def value_at_percentile_ms(self, percentile: float) -> float | None:
        if self.count == 0:
            return None
        if percentile >= 100.0:
            return float(self._hist.get_max_value()) / 1000.0
        return float(self._hist.get_value_at_percentile(percentile)) / 1000.0

    def curve_ms(self) -> list[tuple[float, float]]:
        if self.count == 0:
            return []
        inner = [p for p in CURVE_PERCENTILES if 0.0 < p < 100.0]
        values = self._hist.get_percentile_to_value_dict(inner)
        points = [(0.0, float(self._hist.get_min_value()) / 1000.0)]
        points += [(p, float(values[p]) / 1000.0) for p in inner]
        points.append((100.0, float(self._hist.get_max_value()) / 1000.0))
        return points

    def encode(self) -> str:
        """``<sum_us>|<HdrHistogram V2 compressed text>``, for a result crossing a process boundary."""
        return f"{self.sum_us}|{self._hist.encode().decode('ascii')}" if self.count else ""

    @classmethod
    def decode(cls, text: str) -> CurveRecorder:
        from hdrh.histogram import HdrHistogram

        recorder = cls()
        if text:
            sum_us, _, encoded = text.partition("|")
            other: Any = HdrHistogram.decode(encoded.encode("ascii"))
            recorder._hist.add(other)
            recorder.count = int(other.get_total_count())
            recorder.sum_us = int(sum_us)
        return recorder


@dataclass
class AllyTally:
    """What one ally delivered (see the module docstring)."""

    seen: Counter[int] = field(default_factory=Counter)
    last_slot_by_key: dict[str, int] = field(default_factory=dict)
    out_of_order: int = 0
    foreign: int = 0  # records of this run whose slot is not in the plan (should never happen)
    recorders: dict[tuple[str, str, str], CurveRecorder] = field(default_factory=dict)
    delivered_per_s: Counter[int] = field(default_factory=Counter)
    e2e_by_intended_s: dict[int, list[int]] = field(default_factory=dict)
    first_delivered_ns: int | None = None
    last_delivered_ns: int | None = None
    measured_delivered: int = 0

    @property
    def delivered_unique(self) -> int:
        return len(self.seen)

    @property
    def duplicates(self) -> int:
        return sum(self.seen.values()) - len(self.seen)

    def recorder(self, hop: str, basis: str, kind: str) -> CurveRecorder:
        key = (hop, basis, kind)
        found = self.recorders.get(key)
        if found is None:
            found = self.recorders[key] = CurveRecorder()
        return found


class Accounting:
    """Thread-safe tally of every ally's deliveries against the plan of one run."""

    def __init__(self, plan: Sequence[PlannedEvent], start_ns: int, allies: Iterable[str] = ALLIES) -> None:
        self.plan = plan
        self.start_ns = start_ns
        self.allies = tuple(allies)
        self.tallies = {ally: AllyTally() for ally in self.allies}
        self._lock = threading.Lock()

    def observe(
        self,
        ally: str,
        slot: int,
        *,
        intended_ns: int,
        actual_ns: int,
        received_ns: int | None,
        delivered_ns: int,
    ) -> None:
        """One record seen on ``ally``'s topic."""
        tally = self.tallies.get(ally)
        if tally is None:
            return
        with self._lock:
            if not 0 <= slot < len(self.plan):
                tally.foreign += 1
                return
            planned = self.plan[slot]
            tally.seen[slot] += 1
            if tally.seen[slot] > 1:
                return  # a duplicate: counted, but its latency would count the same event twice
            last = tally.last_slot_by_key.get(planned.key)
            if last is not None and slot < last:
                tally.out_of_order += 1
            else:
                tally.last_slot_by_key[planned.key] = slot
            tally.delivered_per_s[max(delivered_ns - self.start_ns, 0) // NS_PER_S] += 1
            tally.first_delivered_ns = (
                delivered_ns if tally.first_delivered_ns is None else tally.first_delivered_ns
            )
            tally.last_delivered_ns = max(tally.last_delivered_ns or delivered_ns, delivered_ns)
            if not planned.measured:
                return
            tally.measured_delivered += 1
            hops: list[tuple[str, str, int]] = [
                ("schedule_lag", INTENDED, actual_ns - intended_ns),
                ("end_to_end", INTENDED, delivered_ns - intended_ns),
                ("end_to_end", ACTUAL, delivered_ns - actual_ns),
            ]
            if received_ns is not None:
                hops += [
                    ("send_to_receive", INTENDED, received_ns - intended_ns),
                    ("send_to_receive", ACTUAL, received_ns - actual_ns),
                    ("receive_to_deliver", RECEIVE, delivered_ns - received_ns),
                ]
            for hop, basis, latency_ns in hops:
                tally.recorder(hop, basis, planned.kind).record_ns(latency_ns)
                tally.recorder(hop, basis, ALL_KINDS).record_ns(latency_ns)
            second = (intended_ns - self.start_ns) // NS_PER_S
            tally.e2e_by_intended_s.setdefault(second, []).append(delivered_ns - intended_ns)

    # ------------------------------------------------------------ questions

    def expected(self, ally: str, sent_slots: Iterable[int] | None = None) -> set[int]:
        """Slots ``ally`` must receive: sent (all, unless ``sent_slots`` narrows it) and releasable."""
        slots = range(len(self.plan)) if sent_slots is None else sent_slots
        return {s for s in slots if ally in self.plan[s].allies}

    def delivered_total(self) -> dict[str, int]:
        with self._lock:
            return {ally: t.delivered_unique for ally, t in self.tallies.items()}

    def complete(self, expected: dict[str, set[int]]) -> bool:
        """Every expected slot arrived at every ally."""
        with self._lock:
            return all(expected[a] <= self.tallies[a].seen.keys() for a in self.allies)

    def end_to_end_ms(self, ally: str, percentile: float, basis: str = INTENDED) -> float | None:
        """The ``end_to_end`` percentile of ``ally`` over all kinds, in ms (None without data)."""
        with self._lock:
            recorder = self.tallies[ally].recorders.get(("end_to_end", basis, ALL_KINDS))
            return None if recorder is None else recorder.value_at_percentile_ms(percentile)

    def recent_p99_ms(self, since_ns: int) -> float | None:
        """p99 from-intended end-to-end over events intended after ``since_ns`` (progress lines)."""
        first_second = max(since_ns - self.start_ns, 0) // NS_PER_S
        with self._lock:
            values = sorted(
                v
                for t in self.tallies.values()
                for second, vs in t.e2e_by_intended_s.items()
                if second >= first_second
                for v in vs
            )
        return None if not values else percentile_of_sorted(values, 99.0) / 1e6

    def lock(self) -> threading.Lock:
        return self._lock
