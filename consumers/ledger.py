"""The ledger of one ally service: every count and latency sample, behind both ``/metrics`` and
:meth:`consumers.service.AllyService.report` (one record, so the two never disagree).

Recording costs the hot path as little as Python allows: a count is one dict increment by the
one thread that owns that count (the consumer loop for what it reads, withholds, suppresses
and dead-letters and for the audit and SSE channels; the producer's IO thread for Kafka
acknowledgements), and a latency sample is one ``array.append`` of an int packing the series
and the nanoseconds. Samples are folded in batches (numpy) into a :class:`BatchHistogram` per
series for the report's percentiles and into cumulative Prometheus buckets whose boundaries
are exactly :data:`trilink.latency.LATENCY_BUCKETS_S`; the loop folds at every durable point
and a scrape or report folds what is pending, so every sample is counted, none sampled away.

Exposed families (names and labels as in :mod:`trilink.monitoring.names`):
``trilink_ally_hop_latency_seconds`` (histogram), ``trilink_ally_events_received_total``,
``trilink_ally_events_delivered_total``, ``trilink_ally_events_withheld_total``,
``trilink_ally_duplicates_suppressed_total``, ``trilink_dead_letters_total``.
"""

from __future__ import annotations

import threading
from array import array
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from pydantic import BaseModel, ConfigDict, Field

from consumers.errors import DLQ_REASONS
from schemas.acks import ACKNOWLEDGED_KINDS
from schemas.models import EventKind, Nation
from trilink.latency import LATENCY_BUCKETS_S, BatchHistogram
from trilink.monitoring import names
from trilink.monitoring.names import CHANNELS, NO_CHANNEL

#: ``kind`` of the report rows that merge every kind of one (hop, channel).
ALL_KINDS = "*"

_KINDS = tuple(k.value for k in EventKind)
_ACKNOWLEDGED = frozenset(k.value for k in ACKNOWLEDGED_KINDS)
_NS_BITS = 48
_NS_MASK = (1 << _NS_BITS) - 1
_BOUNDS_NS = np.array([round(b * 1e9) for b in LATENCY_BUCKETS_S], dtype=np.int64)
_BUCKET_LABELS = [*(repr(float(b)) for b in LATENCY_BUCKETS_S), "+Inf"]


@dataclass(frozen=True, slots=True)
class KindSeries:
    """Series numbers of every hop one event kind can be measured on (looked up once per event)."""

    send_to_append: int
    append_to_receive: int
    sensor_to_send: int
    append_to_hub: int  # hub topology only (exposed once sampled)
    hub_to_append: int
    receive_to_deliver: dict[str, int]
    end_to_end: dict[str, int]
    acknowledged_by_all: int


class Ledger(Collector):
    """Counts and latency samples of one ally service (see the module docstring)."""

    def __init__(self, ally: str, channels: Iterable[str] = CHANNELS) -> None:
        self.ally = ally
        self.channels = tuple(channels)
        self._keys: list[tuple[str, str, str]] = []
        self._lazy: set[int] = set()  # series exposed only once sampled
        self.by_kind: dict[str, KindSeries] = {}
        for kind in _KINDS:
            self.by_kind[kind] = KindSeries(
                send_to_append=self._add(("send_to_append", kind, NO_CHANNEL)),
                append_to_receive=self._add(("append_to_receive", kind, NO_CHANNEL)),
                sensor_to_send=self._add(("sensor_to_send", kind, NO_CHANNEL), lazy=True),
                append_to_hub=self._add(("append_to_hub", kind, NO_CHANNEL), lazy=True),
                hub_to_append=self._add(("hub_to_append", kind, NO_CHANNEL), lazy=True),
                receive_to_deliver={
                    c: self._add(("receive_to_deliver", kind, c), lazy=c not in self.channels)
                    for c in CHANNELS
                },
                end_to_end={
                    c: self._add(("end_to_end", kind, c), lazy=c not in self.channels) for c in CHANNELS
                },
                # exposed from the start for the acknowledged kinds: a series that first appears
                # at its final count (one burst between two scrapes) has no rate() at all
                acknowledged_by_all=self._add(
                    ("acknowledged_by_all", kind, NO_CHANNEL), lazy=kind not in _ACKNOWLEDGED
                ),
            )
        self._index = {key: i for i, key in enumerate(self._keys)}
        n = len(self._keys)
        self._samples = array("q")
        self._fold_lock = threading.Lock()
        self._count_lock = threading.Lock()
        self._hist: list[BatchHistogram | None] = [None] * n
        self._buckets = np.zeros((n, len(_BOUNDS_NS) + 1), dtype=np.int64)
        self._sum_ns = np.zeros(n, dtype=np.float64)
        self._seen = np.zeros(n, dtype=bool)
        # Counts: each key has one writing thread (module docstring); readers copy.
        self.received = dict.fromkeys(_KINDS, 0)
        self.withheld = dict.fromkeys(_KINDS, 0)
        self.withheld_by_reason: dict[str, int] = {}
        self.delivered = {(k, c): 0 for k in _KINDS for c in CHANNELS}
        self.dead_letters = dict.fromkeys(sorted(DLQ_REASONS), 0)
        self.duplicates = 0
        # Written by the acknowledgement reader's thread only (consumers.acks.AckBook.sweep);
        # every missing-ally series exists from the start (a counter first seen at 1 is
        # invisible to increase()).
        self.unacknowledged: dict[str, int] = {n.value: 0 for n in Nation}

    def _add(self, key: tuple[str, str, str], *, lazy: bool = False) -> int:
        self._keys.append(key)
        if lazy:
            self._lazy.add(len(self._keys) - 1)
        return len(self._keys) - 1

    # ------------------------------------------------------------ recording (any thread)

    def sample(self, series: int, latency_ns: int) -> None:
        """Record one latency; a negative one (clocks that disagree) counts as 0."""
        self._samples.append((series << _NS_BITS) | min(max(latency_ns, 0), _NS_MASK))

    def record_ns(self, hop: str, kind: str, channel: str, latency_ns: int) -> None:
        """:meth:`sample` by name (tests, rare paths)."""
        self.sample(self._index[(hop, kind, channel)], latency_ns)

    def dead_letter(self, reason: str) -> None:
        with self._count_lock:  # the consumer loop and the acknowledgement reader both count
            self.dead_letters[reason] = self.dead_letters.get(reason, 0) + 1

    # ------------------------------------------------------------ folding

    def fold(self) -> None:
        """Move pending samples into the histograms (cheap; called often)."""
        with self._fold_lock:
            pending = len(self._samples)
            if not pending:
                return
            chunk = np.frombuffer(self._samples[:pending], dtype=np.int64)
            del self._samples[:pending]  # appends made meanwhile stay (they are after ``pending``)
            series = chunk >> _NS_BITS
            ns = chunk & _NS_MASK
            width = len(_BOUNDS_NS) + 1
            bucket = np.searchsorted(_BOUNDS_NS, ns, side="left")  # first bound >= value: "le"
            flat = np.bincount(series * width + bucket, minlength=self._buckets.size)
            self._buckets += flat.reshape(self._buckets.shape)
            self._sum_ns += np.bincount(series, weights=ns, minlength=len(self._keys))
            order = np.argsort(series, kind="stable")
            series_sorted = series[order]
            us_sorted = ns[order] // 1000
            present = np.unique(series_sorted)
            self._seen[present] = True
            starts = np.searchsorted(series_sorted, present, side="left")
            ends = np.searchsorted(series_sorted, present, side="right")
            for index, start, end in zip(present.tolist(), starts.tolist(), ends.tolist(), strict=True):
                hist = self._hist[index]
                if hist is None:
                    hist = self._hist[index] = BatchHistogram()
                hist.record_many_us(us_sorted[start:end])

    # ------------------------------------------------------------ reading

    def count(self, hop: str, kind: str, channel: str) -> int:
        self.fold()
        hist = self._hist[self._index[(hop, kind, channel)]]
        return 0 if hist is None else hist.count

    def rows(self) -> list[dict[str, Any]]:
        """One row per sampled (hop, kind, channel) plus merged rows with kind ``*``, in ms."""
        self.fold()
        with self._fold_lock:
            rows = []
            merged: dict[tuple[str, str], BatchHistogram] = {}
            for index in sorted(range(len(self._keys)), key=self._keys.__getitem__):
                hist = self._hist[index]
                if hist is None:
                    continue
                hop, kind, channel = self._keys[index]
                rows.append({"hop": hop, "kind": kind, "channel": channel, **_row(hist)})
                merged.setdefault((hop, channel), BatchHistogram()).merge(hist)
        rows += [
            {"hop": hop, "kind": ALL_KINDS, "channel": channel, **_row(hist)}
            for (hop, channel), hist in sorted(merged.items())
        ]
        return rows

    def describe(self) -> Iterable[Any]:
        return []  # collected at scrape time only: the registry need not call collect() early

    def collect(self) -> Iterator[Any]:
        self.fold()
        ally = self.ally
        with self._fold_lock:
            buckets = np.cumsum(self._buckets, axis=1).tolist()
            sums = (self._sum_ns / 1e9).tolist()
            seen = self._seen.tolist()
        latency = HistogramMetricFamily(
            names.ALLY_HOP_LATENCY.name, names.ALLY_HOP_LATENCY.help, labels=names.ALLY_HOP_LATENCY.labels
        )
        for index, (hop, kind, channel) in enumerate(self._keys):
            if index in self._lazy and not seen[index]:
                continue
            latency.add_metric(
                [ally, hop, kind, channel],
                buckets=list(zip(_BUCKET_LABELS, buckets[index], strict=True)),
                sum_value=sums[index],
            )
        yield latency
        yield _counter(
            names.ALLY_EVENTS_RECEIVED,
            (([ally, kind], n) for kind, n in list(self.received.items())),
        )
        yield _counter(
            names.ALLY_EVENTS_DELIVERED,
            (([ally, kind, channel], n) for (kind, channel), n in list(self.delivered.items())),
        )
        yield _counter(
            names.ALLY_EVENTS_WITHHELD,
            (([ally, kind], n) for kind, n in list(self.withheld.items())),
        )
        yield _counter(
            names.ALLY_DUPLICATES_SUPPRESSED,
            [([ally], self.duplicates)],
        )
        yield _counter(
            names.ALLY_WARNINGS_UNACKNOWLEDGED,
            (([ally, missing], n) for missing, n in sorted(self.unacknowledged.items())),
        )
        yield _counter(
            names.DEAD_LETTERS,
            (([ally, reason], n) for reason, n in sorted(self.dead_letters.items())),
        )


def _counter(family: names.MetricFamily, values: Iterable[tuple[list[str], int]]) -> CounterMetricFamily:
    out = CounterMetricFamily(family.base_name, family.help, labels=family.labels)
    for label_values, n in values:
        out.add_metric(label_values, n)
    return out


def _row(hist: BatchHistogram) -> dict[str, Any]:
    return dict(hist.summary().as_dict())


# ---------------------------------------------------------------------------- the report's model


class LatencyFigures(BaseModel):
    """Percentiles of one latency series, in milliseconds (:meth:`trilink.latency.LatencySummary.as_dict`)."""

    model_config = ConfigDict(extra="forbid")

    count: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p99_9_ms: float
    max_ms: float
    mean_ms: float


#: The hops of an ally's report in the pipeline's order, as (hop, channel): what the run's and the
#: load test's text reports and the HTML report show.
HOP_ROWS = (
    ("send_to_append", NO_CHANNEL),
    ("append_to_hub", NO_CHANNEL),  # hub topology: ingest append -> hub received
    ("hub_to_append", NO_CHANNEL),  # hub topology: hub received -> feed append
    ("append_to_receive", NO_CHANNEL),
    ("receive_to_deliver", "kafka"),
    ("receive_to_deliver", "sse"),
    ("receive_to_deliver", "audit"),
    ("end_to_end", "kafka"),
    ("end_to_end", "audit"),
    ("acknowledged_by_all", NO_CHANNEL),  # sensor send -> the last ally's acknowledgement
)

#: The header line of a text hop table (:func:`hop_line` rows).
HOP_TABLE_HEADER = f"  {'hop':28s} {'p50 ms':>9s} {'p99 ms':>9s} {'max ms':>9s} {'count':>8s}"


def hop_line(hop: str, qualifier: str, row: LatencyFigures) -> str:
    """One row of a text hop table: the hop with its channel or feed (``qualifier``; none shown
    for :data:`NO_CHANNEL`), p50, p99 and max in ms, then the sample count."""
    label = hop if qualifier == NO_CHANNEL else f"{hop} [{qualifier}]"
    return f"  {label:28s} {row.p50_ms:9.2f} {row.p99_ms:9.2f} {row.max_ms:9.2f} {row.count:8d}"


def hop_table(row_of: Callable[[str, str], LatencyFigures | None]) -> list[str]:
    """An ally's text hop table in :data:`HOP_ROWS` order; ``row_of(hop, channel)`` gives the
    all-kinds row of a series, None when it has no sample (that row is left out)."""
    out = [HOP_TABLE_HEADER]
    for hop, channel in HOP_ROWS:
        row = row_of(hop, channel)
        if row is not None:
            out.append(hop_line(hop, channel, row))
    return out


class LatencyRow(LatencyFigures):
    """One row of :meth:`Ledger.rows`: a (hop, kind, channel) series; kind ``*`` merges every kind."""

    hop: str
    kind: str
    channel: str


class AllyCounts(BaseModel):
    """The ledger's counters at report time (kinds and reasons with a zero count are left out)."""

    model_config = ConfigDict(extra="forbid")

    received: dict[str, int]
    withheld: dict[str, int]
    withheld_by_reason: dict[str, int]
    delivered: dict[str, dict[str, int]] = Field(description="channel -> kind -> events delivered")
    duplicates_suppressed: int
    dead_letters: dict[str, int]
    subscriber_drops: dict[str, int]
    delivery_failures: dict[str, int] = Field(description='"<channel>/<reason>" -> failures')


class FirstDeliveryReport(BaseModel):
    """The first delivered event of one kind for one launch (kept by
    :class:`consumers.measure.LaunchBook`, which fills ``delivered_ns`` as channels deliver):
    simulated times (``measured_at``, ``emitted_at``, ``launch_time_ns``) and wall-clock times
    (``sent_ns`` producer, ``append_ns`` broker at ms resolution, ``received_ns``, ``delivered_ns``
    per channel); ``pipeline_s`` = first delivery - send (both set by :meth:`snapshot`)."""

    model_config = ConfigDict(extra="forbid")

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
    delivered_ns: dict[str, int] = Field(default_factory=dict)
    first_delivered_ns: int | None = None
    pipeline_s: float | None = None

    def snapshot(self) -> FirstDeliveryReport:
        """A copy with the first delivery and the pipeline's share filled in."""
        first = min(self.delivered_ns.values()) if self.delivered_ns else None
        return self.model_copy(
            update={
                "delivered_ns": dict(self.delivered_ns),
                "first_delivered_ns": first,
                "pipeline_s": None if first is None or self.sent_ns is None else (first - self.sent_ns) / 1e9,
            }
        )


class LaunchFirsts(BaseModel):
    """Per launch (correlation key): its first launch detection and first alert delivered."""

    model_config = ConfigDict(extra="forbid")

    first_launch_detection: FirstDeliveryReport | None
    first_alert: FirstDeliveryReport | None


class UnacknowledgedWarning(BaseModel):
    """A warning this service delivered that some ally it was released to never acknowledged."""

    model_config = ConfigDict(extra="forbid")

    event_id: str
    correlation_key: str
    kind: str
    missing: list[str]


class AcknowledgedWarning(BaseModel):
    """One warning every ally it was released to acknowledged, and how long that took."""

    model_config = ConfigDict(extra="forbid")

    event_id: str
    correlation_key: str
    kind: str
    allies: list[str]
    acknowledged_by_all_ms: float | None = Field(description="sensor send -> last acknowledgement")


class AckSummary(BaseModel):
    """The three-way acknowledgement seen by one ally service (:class:`consumers.acks.AckBook`);
    the times to the last acknowledgement are the ``acknowledged_by_all`` latency rows."""

    model_config = ConfigDict(extra="forbid")

    acknowledged_by_all: int = Field(description="warnings every ally they were released to acknowledged")
    pending: int = Field(description="warnings still waiting for an acknowledgement at report time")
    unacknowledged: int = Field(description="warnings some ally did not acknowledge within the timeout")
    unacknowledged_by_ally: dict[str, int] = Field(description="missing ally -> warnings")
    unacknowledged_listed: list[UnacknowledgedWarning] = Field(description="the first ones, by id")
    acknowledged: list[AcknowledgedWarning] = Field(
        default_factory=list, description="per warning, the first ones (percentiles: latency rows)"
    )


class AllyReport(BaseModel):
    """What :meth:`consumers.service.AllyService.report` returns: counts, latency rows and
    per-launch first deliveries of one service instance, all from its ledger and launch book."""

    model_config = ConfigDict(extra="forbid")

    ally: str
    instance_id: str
    group_id: str
    clock_domain: Literal["host"] = "host"
    counts: AllyCounts
    latency: list[LatencyRow]
    launches: dict[str, LaunchFirsts]
    dedup_window_ids: int
    assigned_partitions: list[str] = Field(description='"topic/partition" owned at report time')
    error: str | None
    acknowledgements: AckSummary | None = None

    def delivered_total(self, channel: str = "kafka") -> int:
        """Events delivered on ``channel`` (every kind)."""
        return sum(self.counts.delivered.get(channel, {}).values())

    def latency_row(self, hop: str, channel: str, kind: str = ALL_KINDS) -> LatencyRow | None:
        """The row of one (hop, kind, channel), None when that series has no sample."""
        for row in self.latency:
            if row.hop == hop and row.kind == kind and row.channel == channel:
                return row
        return None
