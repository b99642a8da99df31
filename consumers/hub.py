"""The US hub (hub topology): read every nation's ingest topic, release each record to the feeds
of the allies the sharing policy lets it reach, and nothing else.

The mechanism trilink models links Japan and Korea only through a US hub; here the hub is the
one process that reads the sensors' ingest topics (``ingest.<N>``) and writes the allies' feeds
(``feed.<N>``). An ally's service reads only its own feed, so Korean-only data never reaches a
Japanese process at all (with the broker's ACLs, no Japanese principal may read it either).

Per record (one poll's records in partition order):

1. Validate its headers (:func:`schemas.headers.parse_headers`: the kind from ``ce_type``).
2. With ``verify_body`` (the default) decode and validate the Avro body, check that the headers
   describe it and that its ``sensor_nation`` is the nation of the ingest topic it came from
   (the topic is what the broker authenticated; a body claiming another nation is dead-lettered,
   reason ``nation_mismatch``), and release it to an ally only when the policy allows that kind
   of that nation's data *and* the producer marked it releasable to that ally (the allies'
   own two conditions, :mod:`consumers.policy_filter`). Without ``verify_body`` the hub routes on
   the validated headers and the topic's nation alone (cheaper; a mislabelled kind would then
   be caught only at the ally, after the bytes reached its feed: hence not the default).
3. Write it to each feed it is released to: the same key, value and headers, the same partition
   number as on the ingest topic (one missile stays on one partition, in order, from sensor to
   ally), plus :data:`~schemas.headers.HUB_NS_HEADER` (when the hub received it) and
   :data:`~schemas.headers.INGEST_APPEND_NS_HEADER` (the ingest topic's append time). Headers of
   those names sent by a sensor are dropped: only the hub writes them.

Whatever is wrong with one record ends with that record dead-lettered with a reason code and
the loop going on. Delivery is at-least-once: ingest offsets are committed at durable points
(:class:`consumers.loop.ConsumeLoop`, the loop the ally services run too) once every feed write
and dead letter sent under the checkpoint was acknowledged (acks=all, idempotent producer); a
failed write re-reads from the failed checkpoint, so a feed may carry a record twice and the
allies suppress the duplicate by event id.

Measured (``/metrics``, names in :mod:`trilink.monitoring.names`, and :meth:`HubService.report`):
``send_to_append`` (sensor send -> ingest append), ``append_to_hub`` (ingest append -> hub
received) and ``hub_to_ack`` per feed (hub received -> the feed write acknowledged).
"""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import os
import re
import socket
import threading
import time
from array import array
from collections.abc import Iterable, Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from uuid import UUID

import numpy as np
from kafka.errors import KafkaTimeoutError
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from pydantic import BaseModel, ConfigDict, Field

from consumers import kafka_io
from consumers.channels import Checkpoint
from consumers.errors import (
    HUB_DLQ_REASONS,
    EmptyRecordError,
    HeaderMismatchError,
    NationMismatchError,
    UndeliverableError,
)
from consumers.ledger import HOP_TABLE_HEADER, LatencyFigures, hop_line
from consumers.loop import ConsumeLoop, LoopHooks, PrometheusTarget, check_offset_reset
from consumers.policy_filter import ReleaseCheck
from consumers.ports import ConsumerFactory, GroupLeaver, ProducerFactory, UnparseableLocator
from schemas import decode_event, parse_headers
from schemas.errors import BadHeaderError
from schemas.headers import (
    HUB_HEADERS,
    HUB_NS_HEADER,
    INGEST_APPEND_NS_HEADER,
    SENT_NS_HEADER,
    verify_headers_match,
)
from schemas.models import EventKind, Nation
from trilink.errors import TrilinkError
from trilink.latency import LATENCY_BUCKETS_S, BatchHistogram, decode_sent_ns, encode_sent_ns
from trilink.monitoring import names
from trilink.monitoring.discovery import HUB_JOB
from trilink.platform.clients import producer_config
from trilink.platform.topics import feed_role, ingest_role, topic_name
from trilink.policy import SharingPolicy, default_policy
from trilink.settings import Settings, get_settings

log = logging.getLogger(__name__)

__all__ = ["HUB_DLQ_ALLY", "HubReport", "HubService", "default_hub_group_id"]

#: Value of the dead-letter header ``trilink_dlq_ally`` for records the hub refused.
HUB_DLQ_ALLY = "HUB"
#: The hub's hops, before fan-out (feed ``none``) and per feed.
SEND_TO_APPEND, APPEND_TO_HUB, HUB_TO_ACK = names.HUB_HOPS
NO_FEED = names.NO_CHANNEL

_instance_counter = itertools.count(1)
_SAFE_ID = re.compile(r"[^A-Za-z0-9._-]")
_NS_BITS = 48
_NS_MASK = (1 << _NS_BITS) - 1
_BOUNDS_NS = np.array([round(b * 1e9) for b in LATENCY_BUCKETS_S], dtype=np.int64)
_BUCKET_LABELS = [*(repr(float(b)) for b in LATENCY_BUCKETS_S), "+Inf"]
_KINDS = tuple(k.value for k in EventKind)
_ALLIES = names.ALLIES


def default_hub_group_id() -> str:
    """The hub's consumer group (the ``trilink-hub`` prefix is the hub principal's on a secured cluster)."""
    return "trilink-hub"


class HubError(TrilinkError):
    """The hub's loop stopped on an unexpected error (reason ``hub_loop_failed``)."""


# ------------------------------------------------------------------------------ the hub's ledger


class HubLedger(Collector):
    """Counts and latency samples of the hub, behind both ``/metrics`` and :meth:`HubService.report`.

    As :class:`consumers.ledger.Ledger`: a sample is one ``array.append`` (series and ns packed in
    an int), folded in numpy batches into Prometheus buckets (boundaries exactly
    :data:`~trilink.latency.LATENCY_BUCKETS_S`) and a :class:`~trilink.latency.BatchHistogram`
    per series for the report; each count has one writing thread."""

    def __init__(self) -> None:
        self.keys: list[tuple[str, str]] = [(SEND_TO_APPEND, NO_FEED), (APPEND_TO_HUB, NO_FEED)]
        self.keys += [(HUB_TO_ACK, ally) for ally in _ALLIES]
        self.index = {key: i for i, key in enumerate(self.keys)}
        n = len(self.keys)
        self._samples = array("q")
        self._lock = threading.Lock()
        self._hist = [BatchHistogram() for _ in range(n)]
        self._buckets = np.zeros((n, len(_BOUNDS_NS) + 1), dtype=np.int64)
        self._sum_ns = np.zeros(n, dtype=np.float64)
        self.received = {(nation, kind): 0 for nation in _ALLIES for kind in _KINDS}
        self.released = {(ally, kind): 0 for ally in _ALLIES for kind in _KINDS}  # IO thread
        self.withheld = {(ally, kind): 0 for ally in _ALLIES for kind in _KINDS}
        self.dead_letters = dict.fromkeys(sorted(HUB_DLQ_REASONS), 0)
        self.failures: dict[str, int] = {}
        self.lag_records: dict[str, int] = {}

    def sample(self, series: int, latency_ns: int) -> None:
        self._samples.append((series << _NS_BITS) | min(max(latency_ns, 0), _NS_MASK))

    def dead_letter(self, reason: str) -> None:
        self.dead_letters[reason] = self.dead_letters.get(reason, 0) + 1

    def failure(self, reason: str) -> None:
        self.failures[reason] = self.failures.get(reason, 0) + 1

    def fold(self) -> None:
        with self._lock:
            pending = len(self._samples)
            if not pending:
                return
            chunk = np.frombuffer(self._samples[:pending], dtype=np.int64)
            del self._samples[:pending]
            series = chunk >> _NS_BITS
            ns = chunk & _NS_MASK
            width = len(_BOUNDS_NS) + 1
            bucket = np.searchsorted(_BOUNDS_NS, ns, side="left")
            flat = np.bincount(series * width + bucket, minlength=self._buckets.size)
            self._buckets += flat.reshape(self._buckets.shape)
            self._sum_ns += np.bincount(series, weights=ns, minlength=len(self.keys))
            for index in np.unique(series).tolist():
                self._hist[index].record_many_us(ns[series == index] // 1000)

    def rows(self) -> list[HubLatencyRow]:
        self.fold()
        with self._lock:
            return [
                HubLatencyRow(hop=hop, feed=feed, **hist.summary().as_dict())
                for (hop, feed), hist in zip(self.keys, self._hist, strict=True)
                if hist.count
            ]

    def describe(self) -> Iterable[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        self.fold()
        with self._lock:
            buckets = np.cumsum(self._buckets, axis=1).tolist()
            sums = (self._sum_ns / 1e9).tolist()
        latency = HistogramMetricFamily(
            names.HUB_HOP_LATENCY.name, names.HUB_HOP_LATENCY.help, labels=list(names.HUB_HOP_LATENCY.labels)
        )
        for index, (hop, feed) in enumerate(self.keys):
            latency.add_metric(
                [hop, feed],
                buckets=list(zip(_BUCKET_LABELS, buckets[index], strict=True)),
                sum_value=sums[index],
            )
        yield latency
        yield _counter(names.HUB_RECORDS_RECEIVED, ((list(k), n) for k, n in list(self.received.items())))
        yield _counter(names.HUB_RECORDS_RELEASED, ((list(k), n) for k, n in list(self.released.items())))
        yield _counter(names.HUB_RECORDS_WITHHELD, ((list(k), n) for k, n in list(self.withheld.items())))
        yield _counter(names.HUB_DEAD_LETTERS, (([r], n) for r, n in sorted(self.dead_letters.items())))
        yield _counter(names.HUB_DELIVERY_FAILURES, (([r], n) for r, n in sorted(self.failures.items())))
        lag = GaugeMetricFamily(
            names.HUB_CONSUMER_LAG_RECORDS.name,
            names.HUB_CONSUMER_LAG_RECORDS.help,
            labels=list(names.HUB_CONSUMER_LAG_RECORDS.labels),
        )
        for topic, n in sorted(self.lag_records.items()):
            lag.add_metric([topic], n)
        yield lag


def _counter(family: names.MetricFamily, values: Iterable[tuple[list[str], int]]) -> CounterMetricFamily:
    out = CounterMetricFamily(family.name.removesuffix("_total"), family.help, labels=list(family.labels))
    for label_values, n in values:
        out.add_metric(label_values, n)
    return out


# ------------------------------------------------------------------------------ the report


class HubLatencyRow(LatencyFigures):
    """One hop of the hub (``feed`` ``none`` before fan-out), in ms."""

    hop: str
    feed: str


class HubReport(BaseModel):
    """What :meth:`HubService.report` returns: the hub's counts and hop latencies."""

    model_config = ConfigDict(extra="forbid")

    instance_id: str
    group_id: str
    verify_body: bool
    received: dict[str, dict[str, int]] = Field(description="sensor nation -> kind -> records read")
    released: dict[str, dict[str, int]] = Field(description="feed (ally) -> kind -> writes acknowledged")
    withheld: dict[str, dict[str, int]] = Field(
        description="feed (ally) -> kind -> records not released to it"
    )
    dead_letters: dict[str, int]
    delivery_failures: dict[str, int]
    latency: list[HubLatencyRow]
    error: str | None

    def released_total(self, ally: str) -> int:
        return sum(self.released.get(ally, {}).values())

    def lines(self) -> list[str]:
        """The hub's part of a run's text report: counts, then its hops (p50/p99/max in ms)."""
        received = sum(n for kinds in self.received.values() for n in kinds.values())
        released = " ".join(f"{ally} {self.released_total(ally)}" for ally in _ALLIES)
        mode = "decoded body" if self.verify_body else "headers"
        out = [
            f"[hub] received {received}  released {released}  dead-lettered "
            f"{sum(self.dead_letters.values())}  (routing on the {mode})",
            HOP_TABLE_HEADER,
        ]
        for row in self.latency:
            out.append(hop_line(row.hop, row.feed, row))
        return out

    def latency_row(self, hop: str, feed: str = NO_FEED) -> HubLatencyRow | None:
        for row in self.latency:
            if row.hop == hop and row.feed == feed:
                return row
        return None


def _nested(table: dict[tuple[str, str], int]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for (outer, inner), n in list(table.items()):
        if n:
            out.setdefault(outer, {})[inner] = n
    return out


# ------------------------------------------------------------------------------ feed writes


class _FeedWrite:
    """One feed write until the broker answers it (the same object answers both outcomes)."""

    __slots__ = ("checkpoint", "event_id", "ledger", "received_ns", "released_key", "series")

    def __init__(
        self,
        checkpoint: Checkpoint,
        ledger: HubLedger,
        *,
        series: int,
        released_key: tuple[str, str],
        received_ns: int,
        event_id: Any,
    ) -> None:
        self.checkpoint = checkpoint
        self.ledger = ledger
        self.series = series
        self.released_key = released_key
        self.received_ns = received_ns
        self.event_id = event_id

    def __call__(self, result: Any) -> None:
        if isinstance(result, BaseException):
            self.checkpoint.refused("kafka", self.event_id, result)
            return
        ledger = self.ledger
        ledger.sample(self.series, time.time_ns() - self.received_ns)
        ledger.released[self.released_key] += 1
        self.checkpoint.acked += 1


# ------------------------------------------------------------------------------ the service


#: One released record waiting for the end of its poll (:meth:`HubService._send_batch`): the
#: record, the headers to write, its route, the allies it is released to, its kind, its receive
#: time and its event id.
_Released = tuple[
    Any, list[tuple[str, bytes]], tuple[tuple[str, str, ReleaseCheck, int], ...], set[str], str, int, UUID
]


class HubService:
    """The hub's consumer loop, its feeds, its durable points and its HTTP endpoints.

    ``start()`` connects and starts the loop thread, ``wait_ready()`` returns once partitions are
    assigned, ``stop()`` settles (every write acknowledged), commits and closes, ``report()``
    returns a :class:`HubReport`."""

    def __init__(
        self,
        bootstrap: str,
        *,
        group_id: str | None = None,
        instance_id: str | None = None,
        http_host: str | None = None,
        http_port: int | None = 0,
        offset_reset: str = "latest",
        policy: SharingPolicy | None = None,
        verify_body: bool = True,
        max_poll_records: int = 500,
        poll_timeout_ms: int = 100,
        poll_linger_ms: int | None = None,
        commit_interval_s: float = 0.2,
        flush_timeout_s: float = 30.0,
        linger_ms: int = 0,
        unhealthy_poll_age_s: float = 15.0,
        consumer_factory: ConsumerFactory | None = None,
        producer_factory: ProducerFactory | None = None,
        locate_unparseable: UnparseableLocator | None = None,
        leave_group: GroupLeaver | None = None,
        settings: Settings | None = None,
        static_member: bool = False,
    ) -> None:
        self.bootstrap = bootstrap
        self.group_id = group_id or default_hub_group_id()
        self.instance_id = instance_id or f"{socket.gethostname()}-{os.getpid()}-{next(_instance_counter)}"
        # "trilink-hub..." is the hub principal on a secured cluster (trilink.platform.security).
        self.client_id = f"trilink-hub-{_SAFE_ID.sub('_', self.instance_id)}"
        #: A static member (``static_member``) joins its group as its client id: see ConsumeLoop.
        self.group_instance_id = self.client_id if static_member else None
        self.policy = policy or default_policy()
        self.verify_body = verify_body
        self.offset_reset = check_offset_reset(offset_reset)
        self.max_poll_records = max_poll_records
        self.poll_timeout_ms = poll_timeout_ms
        self.commit_interval_s = commit_interval_s
        self.flush_timeout_s = flush_timeout_s
        self.unhealthy_poll_age_s = unhealthy_poll_age_s
        self.linger_ms = linger_ms
        self._settings = settings if settings is not None else get_settings()
        #: None: the settings' ``poll_linger_ms`` (see :func:`trilink.pacing.linger_after_poll`).
        self.poll_linger_ms = self._settings.poll_linger_ms if poll_linger_ms is None else poll_linger_ms
        self._http_host = http_host or self._settings.host
        self._http_port = http_port
        #: Instance label of the announced Prometheus target.
        self.target_instance = f"hub-{_SAFE_ID.sub('_', self.instance_id)}"[:100]

        self.nation_of_topic = {topic_name(ingest_role(n.value)): n for n in Nation}
        self.input_topics = tuple(self.nation_of_topic)
        self.feed_topics = {n.value: topic_name(feed_role(n.value)) for n in Nation}
        self.dead_letter_topic = topic_name("dead_letter")
        # (sensor nation, kind) -> the allies the policy releases it to, with their release check.
        checks = {n: ReleaseCheck(n, self.policy) for n in Nation}
        self._route: dict[tuple[Nation, EventKind], tuple[tuple[str, str, ReleaseCheck, int], ...]] = {}
        self.ledger = HubLedger()
        for nation in Nation:
            for kind in EventKind:
                self._route[(nation, kind)] = tuple(
                    (
                        ally.value,
                        self.feed_topics[ally.value],
                        checks[ally],
                        self.ledger.index[(HUB_TO_ACK, ally.value)],
                    )
                    for ally in Nation
                    if self.policy.may_receive(nation, ally, kind)
                )
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.ledger)

        self._producer: Any = None
        self._feed_partitions: dict[str, int] = {}
        self._http: ThreadingHTTPServer | None = None
        self._target = PrometheusTarget(HUB_JOB, self.target_instance, self._settings, "hub")
        self._hub_raw = b""
        self._hub_raw_ns = -1
        #: This poll's released records, written to the feeds at its end (:meth:`_send_batch`).
        self._outbox: list[_Released] = []
        self._loop = ConsumeLoop(
            LoopHooks(
                handle=self._relay,
                end_batch=self._send_batch,
                count_failure=self._count_failure,
                retrying=self._count_failed_writes,
                lag=self._on_lag,
                fold=self.ledger.fold,
                order=self._in_send_order,
            ),
            self,
            who="hub",
            name="hub loop",
            lag_interval_s=1.0,
            consumer_factory=consumer_factory,
            producer_factory=producer_factory or self._new_producer,
            locate_unparseable=locate_unparseable,
            leave_group=leave_group,
            dead_letter_ally=HUB_DLQ_ALLY,
            dead_letter_counter=self.ledger,
            dead_letter_reasons=HUB_DLQ_REASONS,
        )

    def _new_producer(self, bootstrap: str, client_id: str) -> Any:
        """An idempotent, acks=all producer with trilink's settings and the hub's linger."""
        if not self.linger_ms:
            return kafka_io.new_producer(bootstrap, client_id)
        from kafka import KafkaProducer

        return KafkaProducer(**producer_config(bootstrap, client_id, linger_ms=self.linger_ms))

    # ---------------------------------------------------------------- lifecycle

    @property
    def http_port(self) -> int | None:
        return None if self._http is None else int(self._http.server_address[1])

    @property
    def settings(self) -> Settings:
        """Where the hub announces its target (the state dir) and its default HTTP host."""
        return self._settings

    @property
    def running(self) -> bool:
        return self._loop.running

    @property
    def error(self) -> BaseException | None:
        """What stopped the hub's loop (None while it runs or after a clean stop)."""
        return self._loop.error

    def start(self) -> None:
        loop = self._loop
        try:
            loop.connect()
            self._producer = loop.producer
            for topic in self.feed_topics.values():
                self._feed_partitions[topic] = len(self._producer.partitions_for(topic) or ())
            if self._http_port is not None:
                self._http = _serve_http(self._http_host, self._http_port, self)
                # The local Prometheus scrapes it (job trilink-hub), as it does the allies.
                self._target.announce(self.http_port or 0)
        except BaseException:
            self._target.withdraw()
            if self._http is not None:
                self._http.shutdown()
                self._http.server_close()
            loop.close_clients()
            raise
        loop.start()

    def wait_ready(self, timeout_s: float = 30.0) -> bool:
        return self._loop.wait_ready(timeout_s)

    def request_stop(self) -> None:
        self._loop.request_stop()

    def stop(self, timeout_s: float = 30.0) -> None:
        try:
            self._loop.stop(timeout_s)
            if self._http is not None:
                self._http.shutdown()
                self._http.server_close()
        finally:
            self._target.withdraw()

    # ---------------------------------------------------------------- the loop's hooks

    def _in_send_order(self, batch: dict[Any, list[Any]], received_ns: int) -> Iterator[Any]:
        """One poll's records partition number by partition number, those of one number merged
        across the nations' ingest topics in send order (:func:`_merged`); and the hub's header
        for this poll's receive time, encoded once."""
        if received_ns != self._hub_raw_ns:
            self._hub_raw_ns = received_ns
            self._hub_raw = encode_sent_ns(received_ns)
        by_partition: dict[int, list[list[Any]]] = {}
        for tp, records in batch.items():
            if records:
                by_partition.setdefault(tp.partition, []).append(records)
        return itertools.chain.from_iterable(
            lists[0] if len(lists) == 1 else _merged(lists) for lists in by_partition.values()
        )

    def _relay(self, record: Any, received_ns: int, checkpoint: Checkpoint) -> None:
        value = record.value
        if value is None:
            raise EmptyRecordError("the record has no value")
        nation = self.nation_of_topic[record.topic]
        parsed = parse_headers(record.headers)
        kind = parsed.kind
        route = self._route[(nation, kind)]
        ledger = self.ledger
        event = None
        if self.verify_body:
            event = decode_event(value, (parsed.event_id_text, parsed.event_id))
            try:
                verify_headers_match(parsed, event)
            except BadHeaderError as exc:
                raise HeaderMismatchError(exc.message) from None
            if event.header.sensor_nation is not nation:
                raise NationMismatchError(
                    f"the body says sensor_nation {event.header.sensor_nation.value}, "
                    f"the record came from {nation.value}'s ingest topic"
                )
        ledger.received[(nation.value, kind.value)] += 1
        append_ns = None
        if record.timestamp_type == kafka_io.LOG_APPEND_TIME:
            append_ns = record.timestamp * 1_000_000
            ledger.sample(1, received_ns - append_ns)  # append_to_hub
            if parsed.sent_ns is not None:
                ledger.sample(0, append_ns - parsed.sent_ns)  # send_to_append
        forward = parsed.forward
        if parsed.hub_ns is not None or parsed.ingest_append_ns is not None:
            forward = tuple(h for h in forward if h[0] not in HUB_HEADERS)  # only the hub writes them
        headers = [*forward, (HUB_NS_HEADER, self._hub_raw)]
        if append_ns is not None:
            headers.append((INGEST_APPEND_NS_HEADER, encode_sent_ns(append_ns)))
        released = {ally for ally, _, check, _ in route if event is None or check.reason(event, kind) is None}
        for ally in _ALLIES:
            if ally not in released:
                ledger.withheld[(ally, kind.value)] += 1
        if released:
            self._outbox.append((record, headers, route, released, kind.value, received_ns, parsed.event_id))

    def _send_batch(self, checkpoint: Checkpoint) -> None:
        """Write the poll's released records to the feeds, back to back at the end of the poll.

        Not one record at a time between two decodes: the ally services' loop thread spent
        ~20 % less CPU per event that way (``bench/bench_hotpath.py``, 2026-12-05), and the
        hub's sends are the same calls. A record the Kafka client refuses at once is
        dead-lettered (the feeds written before the refusal keep their copy; the allies
        de-duplicate)."""
        outbox, self._outbox = self._outbox, []
        send = self._producer.send
        ledger = self.ledger
        for record, headers, route, released, kind, received_ns, event_id in outbox:
            partition = record.partition
            try:
                for ally, topic, _check, series in route:
                    if ally not in released:
                        continue
                    count = self._feed_partitions.get(topic) or 0
                    future = send(
                        topic,
                        value=record.value,
                        key=record.key,
                        headers=headers,
                        partition=partition % count if count else None,
                    )
                    checkpoint.sent += 1
                    answer = _FeedWrite(
                        checkpoint,
                        ledger,
                        series=series,
                        released_key=(ally, kind),
                        received_ns=received_ns,
                        event_id=event_id,
                    )
                    future.add_callback(answer)
                    future.add_errback(answer)
            except KafkaTimeoutError as exc:  # the client cannot send now (buffer full, no
                # metadata): not the record's fault, so it is read again, not dead-lettered
                checkpoint.failed.append(("kafka", event_id, f"KafkaTimeoutError: {exc}"))
            except Exception as exc:  # refused as it is: dead-lettered, the others go on
                refusal = UndeliverableError(f"the Kafka client refused it: {type(exc).__name__}: {exc}")
                self._loop.isolate(record, refusal, checkpoint)

    def _count_failed_writes(self, closed: Sequence[Checkpoint]) -> None:
        """A feed or dead-letter write failed: the loop reads ``closed`` again (the allies
        suppress what a feed then holds twice)."""
        for checkpoint in closed:
            for channel, _event_id, why in checkpoint.failed[:1]:
                self.ledger.failure("dead_letter_failed" if channel == "dead_letter" else "feed_write_failed")
                log.warning("hub: a write failed (%s); reading again", why)

    def _count_failure(self, channel: str, reason: str) -> None:
        """A failure the loop met, under the hub's reason name (a flush is the feeds')."""
        self.ledger.failure("feed_flush_timeout" if reason == "kafka_flush_timeout" else reason)

    def _on_lag(self, per_topic: dict[str, int]) -> None:
        self.ledger.lag_records = per_topic

    # ---------------------------------------------------------------- health and report

    def health(self) -> tuple[bool, dict[str, Any]]:
        problems, age = self._loop.health()
        return not problems, {
            "status": "ok" if not problems else "unhealthy",
            "problems": problems,
            "instance_id": self.instance_id,
            "group_id": self.group_id,
            "assigned_partitions": len(self._loop.assigned_partitions()),
            "last_poll_age_s": None if age is None else round(age, 3),
            "lag_records": dict(self.ledger.lag_records),
        }

    def settled_count(self) -> int:
        """Records the hub is done with: read and routed (every write acknowledged) or dead-lettered."""
        ledger = self.ledger
        return sum(list(ledger.received.values())) + sum(list(ledger.dead_letters.values()))

    def released_count(self, ally: str) -> int:
        return sum(n for (a, _k), n in list(self.ledger.released.items()) if a == ally)

    def report(self) -> HubReport:
        ledger = self.ledger
        return HubReport(
            instance_id=self.instance_id,
            group_id=self.group_id,
            verify_body=self.verify_body,
            received=_nested(ledger.received),
            released=_nested(ledger.released),
            withheld=_nested(ledger.withheld),
            dead_letters={r: n for r, n in list(ledger.dead_letters.items()) if n},
            delivery_failures=dict(ledger.failures),
            latency=ledger.rows(),
            error=None if self.error is None else str(self.error),
        )

    def raise_if_failed(self) -> None:
        if self.error is None:
            return
        if isinstance(self.error, TrilinkError):
            raise self.error
        raise HubError("hub_loop_failed", f"the hub's loop stopped: {self.error!r}") from self.error


def _merged(lists: list[list[Any]]) -> Iterator[Any]:
    """One poll's records of the same partition number on several nations' ingest topics, in the
    order their sensors sent them (``trilink_sent_ns``; the append time when a record has none;
    each topic's own order kept on ties).

    A missile seen by sensors of several nations has its events on the same partition number of
    several ingest topics. Neither the broker's appends (one produce request's partitions are
    appended in the request's order, within the same millisecond) nor kafka-python's poll
    (topic by topic) keep the order in which they were sent, so without this a KR report could
    pass a US report sent before it. Order across polls is arrival order: the hub waits for no
    topic."""
    return heapq.merge(*lists, key=_send_order)


def _send_order(record: Any) -> int:
    raw = kafka_io.header_value(record.headers, SENT_NS_HEADER)
    sent_ns = None if raw is None else decode_sent_ns(raw)
    return int(record.timestamp) * 1_000_000 if sent_ns is None else sent_ns


def _serve_http(host: str, port: int, hub: HubService) -> ThreadingHTTPServer:
    """``/metrics`` (the hub's registry) and ``/healthz`` (JSON; 200 healthy, 503 not)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                body, status, ctype = generate_latest(hub.registry), 200, CONTENT_TYPE_LATEST
            elif path == "/healthz":
                ok, detail = hub.health()
                body, status, ctype = json.dumps(detail).encode(), 200 if ok else 503, "application/json"
            else:
                body, status, ctype = b"not found\n", 404, "text/plain"
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="trilink-hub-http", daemon=True).start()
    return server
