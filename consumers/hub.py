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
(:class:`consumers.channels.Checkpoint`, as the ally services do) once every feed write and
dead letter sent under the checkpoint was acknowledged (acks=all, idempotent producer); a
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
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from pydantic import BaseModel, ConfigDict, Field

from consumers import kafka_io
from consumers.channels import Checkpoint, DeadLetters, skip_unparseable
from consumers.errors import (
    HUB_DLQ_REASONS,
    UNEXPECTED_REASON,
    EmptyRecordError,
    HeaderMismatchError,
    NationMismatchError,
)
from consumers.ledger import LatencyFigures
from consumers.policy_filter import ReleaseCheck
from consumers.ports import ConsumerPort, ProducerPort
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
from trilink.errors import ConfigError, DeserializationError, TrilinkError
from trilink.latency import LATENCY_BUCKETS_S, BatchHistogram, decode_sent_ns, encode_sent_ns
from trilink.monitoring import names
from trilink.monitoring.discovery import HUB_JOB, announce, withdraw
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

ConsumerFactory = Callable[..., ConsumerPort]
ProducerFactory = Callable[[str, str], ProducerPort]


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
            f"  {'hop':28s} {'p50 ms':>9s} {'p99 ms':>9s} {'max ms':>9s} {'count':>8s}",
        ]
        for row in self.latency:
            label = row.hop if row.feed == NO_FEED else f"{row.hop} [{row.feed}]"
            out.append(f"  {label:28s} {row.p50_ms:9.2f} {row.p99_ms:9.2f} {row.max_ms:9.2f} {row.count:8d}")
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
        commit_interval_s: float = 0.2,
        flush_timeout_s: float = 30.0,
        linger_ms: int = 0,
        unhealthy_poll_age_s: float = 15.0,
        consumer_factory: ConsumerFactory | None = None,
        producer_factory: ProducerFactory | None = None,
        locate_unparseable: Callable[[str, str, int, int], tuple[int, str] | None] | None = None,
        settings: Settings | None = None,
    ) -> None:
        if offset_reset not in ("latest", "earliest"):
            raise ConfigError(
                "invalid_option", f"offset_reset must be latest or earliest, got {offset_reset!r}"
            )
        self.bootstrap = bootstrap
        self.group_id = group_id or default_hub_group_id()
        self.instance_id = instance_id or f"{socket.gethostname()}-{os.getpid()}-{next(_instance_counter)}"
        # "trilink-hub..." is the hub principal on a secured cluster (trilink.platform.security).
        self.client_id = f"trilink-hub-{_SAFE_ID.sub('_', self.instance_id)}"
        self.policy = policy or default_policy()
        self.verify_body = verify_body
        self.offset_reset = offset_reset
        self.max_poll_records = max_poll_records
        self.poll_timeout_ms = poll_timeout_ms
        self.commit_interval_s = commit_interval_s
        self.flush_timeout_s = flush_timeout_s
        self.unhealthy_poll_age_s = unhealthy_poll_age_s
        self._consumer_factory = consumer_factory or kafka_io.new_consumer
        self.linger_ms = linger_ms
        self._producer_factory = producer_factory or self._new_producer
        self._locate_unparseable = locate_unparseable or kafka_io.locate_unparseable
        self._settings = settings if settings is not None else get_settings()
        self._http_host = http_host or self._settings.host
        self._http_port = http_port
        #: Instance label of the announced Prometheus target.
        self.target_instance = f"hub-{_SAFE_ID.sub('_', self.instance_id)}"[:100]
        self._announced = False

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

        self._consumer: Any = None
        self._producer: Any = None
        self._dead: DeadLetters | None = None
        self._feed_partitions: dict[str, int] = {}
        self._thread: threading.Thread | None = None
        self._http: ThreadingHTTPServer | None = None
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._lock = threading.Lock()
        self.error: BaseException | None = None
        self._assigned: set[tuple[str, int]] = set()
        self._assignment_dirty = False
        self._pending_commit: kafka_io.Offsets = {}
        self._positions: kafka_io.Offsets = {}
        self._open = Checkpoint()
        self._open_since = time.monotonic()
        self._closed: deque[Checkpoint] = deque()
        self._last_commit_monotonic = 0.0
        self._last_lag_monotonic = 0.0
        self._last_poll_monotonic: float | None = None
        self._poll_failures = 0
        self._hub_raw = b""
        self._hub_raw_ns = -1

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
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self._thread is not None:
            raise ConfigError("already_started", "a HubService can be started once")
        self._producer = self._producer_factory(self.bootstrap, self.client_id)
        try:
            self._consumer = self._consumer_factory(
                self.bootstrap,
                self.group_id,
                self.client_id,
                offset_reset=self.offset_reset,
                max_poll_records=self.max_poll_records,
            )
            kafka_io.ensure_metadata(self._consumer, self.input_topics)
            for topic in self.feed_topics.values():
                self._feed_partitions[topic] = len(self._producer.partitions_for(topic) or ())
            listener = kafka_io.make_listener(
                self._on_revoked, self._on_assigned, self._on_lost, lambda: self._consumer
            )
            self._consumer.subscribe(list(self.input_topics), listener=listener)
            self._dead = DeadLetters(self._producer, self.dead_letter_topic, HUB_DLQ_ALLY, self.ledger)
            if self._http_port is not None:
                self._http = _serve_http(self._http_host, self._http_port, self)
                # The local Prometheus scrapes it (job trilink-hub), as it does the allies.
                announce(HUB_JOB, self.target_instance, self.http_port or 0, settings=self._settings)
                self._announced = True
        except BaseException:
            self._withdraw()
            if self._http is not None:
                self._http.shutdown()
                self._http.server_close()
            self._close_clients()
            raise
        self._thread = threading.Thread(target=self._run, name=f"{self.client_id}-loop", daemon=True)
        self._thread.start()

    def wait_ready(self, timeout_s: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._ready.wait(0.05):
                return True
            if self._thread is not None and not self._thread.is_alive():
                return False
        return self._ready.is_set()

    def request_stop(self) -> None:
        self._stop.set()

    def stop(self, timeout_s: float = 30.0) -> None:
        self._stop.set()
        try:
            if self._thread is not None:
                self._thread.join(timeout_s)
            if self._http is not None:
                self._http.shutdown()
                self._http.server_close()
        finally:
            self._withdraw()

    def _withdraw(self) -> None:
        """Remove the Prometheus target file, if announced (never raises: a shutdown path)."""
        if not self._announced:
            return
        self._announced = False
        try:
            withdraw(HUB_JOB, self.target_instance, settings=self._settings)
        except Exception:
            log.exception("hub: withdrawing the Prometheus target failed")

    # ---------------------------------------------------------------- the loop

    def _run(self) -> None:
        clean = False
        try:
            while not self._stop.is_set():
                try:
                    batch = self._consumer.poll(
                        timeout_ms=self.poll_timeout_ms, max_records=self.max_poll_records
                    )
                except Exception as exc:  # never a reason to stop: find what cannot be parsed
                    self._on_poll_error(exc)
                    continue
                self._poll_failures = 0
                received_ns = time.time_ns()
                now = self._last_poll_monotonic = time.monotonic()
                if self._assignment_dirty:
                    self._after_assignment()
                if batch:
                    self._process_batch(batch, received_ns)
                self._advance(now, idle=not batch)
                if now - self._last_lag_monotonic >= 1.0:
                    self._last_lag_monotonic = now
                    self._update_lag()
            clean = True
        except BaseException as exc:
            self.error = exc
            log.exception("hub: loop failed")
        finally:
            try:
                if clean:
                    offsets = self._settle_all()
                    with self._lock:
                        self._pending_commit.update(offsets)
                    self._commit_pending(sync=True)
            except BaseException as exc:
                self.error = self.error or exc
                log.exception("hub: final commit failed")
            finally:
                self._close_clients()

    def _close_clients(self) -> None:
        for client, what in ((self._consumer, "consumer"), (self._producer, "producer")):
            if client is None:
                continue
            try:
                client.close() if what == "consumer" else client.close(timeout=self.flush_timeout_s)
            except Exception:
                log.exception("hub: closing the %s failed", what)

    def _process_batch(self, batch: dict[Any, list[Any]], received_ns: int) -> None:
        checkpoint = self._open
        if received_ns != self._hub_raw_ns:
            self._hub_raw_ns = received_ns
            self._hub_raw = encode_sent_ns(received_ns)
        by_partition: dict[int, list[list[Any]]] = {}
        for tp, records in batch.items():
            if not records:
                continue
            key = (tp.topic, tp.partition)
            checkpoint.first.setdefault(key, records[0].offset)
            checkpoint.next[key] = records[-1].offset + 1
            by_partition.setdefault(tp.partition, []).append(records)
        for lists in by_partition.values():
            for record in lists[0] if len(lists) == 1 else _merged(lists):
                try:
                    self._handle(record, received_ns, checkpoint)
                except Exception as exc:
                    self._isolate(record, exc, checkpoint)
        with self._lock:
            self._positions.update(checkpoint.next)

    def _handle(self, record: Any, received_ns: int, checkpoint: Checkpoint) -> None:
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
            event = decode_event(value)
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
        send = self._producer.send
        partition = record.partition
        for ally, topic, _check, series in route:
            if ally not in released:
                continue
            count = self._feed_partitions.get(topic) or 0
            future = send(
                topic,
                value=value,
                key=record.key,
                headers=headers,
                partition=partition % count if count else None,
            )
            checkpoint.sent += 1
            answer = _FeedWrite(
                checkpoint,
                ledger,
                series=series,
                released_key=(ally, kind.value),
                received_ns=received_ns,
                event_id=parsed.event_id,
            )
            future.add_callback(answer)
            future.add_errback(answer)

    def _isolate(self, record: Any, exc: Exception, checkpoint: Checkpoint) -> None:
        """Dead-letter ``record`` for ``exc``: a typed reason for bad input, ``unexpected`` else."""
        if isinstance(exc, DeserializationError):
            reason = exc.reason if exc.reason in HUB_DLQ_REASONS else UNEXPECTED_REASON
            message = exc.message
        else:
            reason = UNEXPECTED_REASON
            message = f"{type(exc).__name__}: {exc}"
            log.warning(
                "hub: record %s/%s/%s dead-lettered: %s",
                record.topic,
                record.partition,
                record.offset,
                message,
            )
        assert self._dead is not None
        try:
            self._dead.send(
                checkpoint,
                reason=reason,
                error=message,
                topic=record.topic,
                partition=record.partition,
                offset=record.offset,
                value=record.value if type(record.value) is bytes else None,
                key=record.key if type(record.key) is bytes else None,
                headers=record.headers,
            )
        except Exception as dead_exc:  # the client cannot send even the reduced form right now
            checkpoint.failed.append(("dead_letter", None, f"{type(dead_exc).__name__}: {dead_exc}"))

    # ---------------------------------------------------------------- durable points

    def _advance(self, now: float, *, idle: bool) -> None:
        if self._open.next and (idle or now - self._open_since >= self.commit_interval_s):
            self._close_open(now)
        while self._closed:
            head = self._closed[0]
            if not head.settled():
                if head.closed_monotonic is not None and now - head.closed_monotonic > self.flush_timeout_s:
                    head.failed.append(("kafka", None, f"acks not received in {self.flush_timeout_s} s"))
                    self._retry()
                break
            if head.failed:
                self._retry()
                break
            self._closed.popleft()
            with self._lock:
                self._pending_commit.update((tp, o) for tp, o in head.next.items() if tp in self._assigned)
        if now - self._last_commit_monotonic >= self.commit_interval_s:
            self._commit_pending(sync=False)
            self.ledger.fold()

    def _close_open(self, now: float) -> None:
        self._open.closed_monotonic = now
        self._closed.append(self._open)
        self._open = Checkpoint()
        self._open_since = now

    def _retry(self) -> None:
        """A feed or dead-letter write failed: wait for every write in flight, then read again
        from the first failed checkpoint (the allies suppress what a feed then holds twice)."""
        if self._open.next:
            self._close_open(time.monotonic())
        try:
            self._producer.flush(timeout=self.flush_timeout_s)
        except Exception as exc:
            log.warning("hub: flush before a retry failed: %r", exc)
        rewind: kafka_io.Offsets = {}
        for checkpoint in self._closed:
            for channel, _event_id, why in checkpoint.failed[:1]:
                self.ledger.failure("dead_letter_failed" if channel == "dead_letter" else "feed_write_failed")
                log.warning("hub: a write failed (%s); reading again", why)
            for tp, offset in checkpoint.first.items():
                rewind[tp] = min(offset, rewind.get(tp, offset))
        for (topic, partition), offset in rewind.items():
            try:
                kafka_io.seek(self._consumer, topic, partition, offset)
            except Exception:
                log.info("hub: %s/%s moved before its retry", topic, partition)
        self._closed.clear()
        self._stop.wait(0.5)

    def _settle_all(self) -> kafka_io.Offsets:
        """Blocking durable point (revoke, shutdown): the offsets whose writes were all acknowledged."""
        if self._open.next:
            self._close_open(time.monotonic())
        try:
            self._producer.flush(timeout=self.flush_timeout_s)
        except Exception as exc:
            self.ledger.failure("feed_flush_timeout")
            log.warning("hub: acks missing at a durable point: %r", exc)
        offsets: kafka_io.Offsets = {}
        while self._closed:
            checkpoint = self._closed.popleft()
            if checkpoint.failed or not checkpoint.settled():
                self._closed.clear()
                break
            offsets.update(checkpoint.next)
        return offsets

    def _commit_pending(self, *, sync: bool) -> None:
        with self._lock:
            offsets, self._pending_commit = self._pending_commit, {}
        if offsets:
            if sync:
                kafka_io.commit(self._consumer, offsets)
            else:
                kafka_io.commit_async(self._consumer, offsets, self._on_commit_failed)
        self._last_commit_monotonic = time.monotonic()

    def _on_commit_failed(self, offsets: kafka_io.Offsets, exc: BaseException) -> None:
        log.info("hub: commit failed, the next one covers it: %r", exc)
        self.ledger.failure("commit_failed")
        with self._lock:
            for tp, offset in offsets.items():
                if tp in self._assigned and self._pending_commit.get(tp, -1) < offset:
                    self._pending_commit[tp] = offset

    # ---------------------------------------------------------------- rebalancing

    def _on_revoked(self, partitions: list[tuple[str, int]]) -> kafka_io.Offsets:
        durable = self._settle_all()
        gone = set(partitions)
        with self._lock:
            self._pending_commit.update(durable)
            offsets = {tp: o for tp, o in self._pending_commit.items() if tp in gone}
            for tp in offsets:
                del self._pending_commit[tp]
            self._assigned -= gone
        return offsets

    def _on_lost(self, partitions: list[tuple[str, int]]) -> None:
        gone = set(partitions)
        with self._lock:
            for tp in gone:
                self._pending_commit.pop(tp, None)
            self._assigned -= gone

    def _on_assigned(self, partitions: list[tuple[str, int]]) -> None:
        with self._lock:
            self._assigned |= set(partitions)
            self._assignment_dirty = True

    def _after_assignment(self) -> None:
        """Pin where a fresh group starts (as the allies do), then count as ready."""
        with self._lock:
            self._assignment_dirty = False
            assigned = sorted(self._assigned)
        initial: kafka_io.Offsets = {}
        for topic, partition in assigned:
            position = kafka_io.position(self._consumer, topic, partition)
            self._positions[(topic, partition)] = position
            if kafka_io.committed(self._consumer, topic, partition) is None:
                initial[(topic, partition)] = position
        kafka_io.commit(self._consumer, initial)
        if assigned:
            self._ready.set()

    def _on_poll_error(self, exc: Exception) -> None:
        """``poll`` raised: skip a batch the client library cannot parse (dead-lettered by
        offsets), else back off and poll again."""
        self._poll_failures += 1
        self.ledger.failure("poll_failed")
        log.warning("hub: poll failed (%d in a row): %r", self._poll_failures, exc)
        with self._lock:
            assigned = sorted(self._assigned)
        assert self._dead is not None
        skipped = skip_unparseable(
            self._consumer,
            self.bootstrap,
            assigned,
            locate=self._locate_unparseable,
            dead=self._dead,
            checkpoint=self._open,
            who="hub",
        )
        if skipped is not None:
            with self._lock:
                self._positions[skipped[0]] = skipped[1]
            return
        self._stop.wait(min(0.05 * 2 ** min(self._poll_failures, 6), 2.0))

    def _update_lag(self) -> None:
        with self._lock:
            assigned = sorted(self._assigned)
        self.ledger.lag_records = kafka_io.lag_by_topic(
            self._consumer, assigned, self._positions, self.input_topics
        )

    # ---------------------------------------------------------------- health and report

    def health(self) -> tuple[bool, dict[str, Any]]:
        age = None if self._last_poll_monotonic is None else time.monotonic() - self._last_poll_monotonic
        problems = []
        if not self.running:
            problems.append("hub loop not running")
        if self.error is not None:
            problems.append(f"error: {self.error}")
        if not self._ready.is_set():
            problems.append("partitions not assigned yet")
        if age is None or age > self.unhealthy_poll_age_s:
            problems.append(f"no poll for over {self.unhealthy_poll_age_s} s")
        with self._lock:
            assigned = len(self._assigned)
        return not problems, {
            "status": "ok" if not problems else "unhealthy",
            "problems": problems,
            "instance_id": self.instance_id,
            "group_id": self.group_id,
            "assigned_partitions": assigned,
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
