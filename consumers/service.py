"""One ally's service: consume the shared warning topics, filter, de-duplicate, fan out, commit.

Use it in-process (the ``trilink run`` orchestrator runs three in threads) or through
``trilink ally US|JP|KR``::

    service = AllyService(
        "JP",                      # Nation or "US" / "JP" / "KR"
        bootstrap,                 # host:port[,host:port]
        group_id=None,             # default trilink-ally-<nation>; one group per ally
        instance_id=None,          # default <host>-<pid>-<n>; names the audit file and client id
        http_port=0,               # 0 = a free port (see .http_port); None = no HTTP server
        audit_dir=None,            # None = no audit channel; else <dir>/ally-<nation>-<instance>.jsonl
        from_beginning=False,      # True: start each newly assigned partition at its beginning
        offset_reset="latest",     # where a group without committed offsets starts
        dedup_capacity=10_000,     # event ids remembered (see consumers.dedup)
        sse_queue_size=1024,       # per live subscriber, drop-oldest (see consumers.sse)
        commit_interval_s=0.2,     # durable point + commit at most this often (0 = every poll)
    )
    service.start()                # connects, subscribes, serves HTTP, announces it; returns at once
    service.wait_ready(30)         # partitions assigned, positions known, window rebuilt
    service.run_until(lambda s: s.delivered_count("kafka") >= 100, timeout_s=60)
    service.stop()                 # finish the batch, flush, fsync, commit, withdraw, close
    report = service.report()

``report()`` returns a :class:`consumers.ledger.AllyReport` (pydantic; its JSON Schema is
``docs/schemas/ally-report.schema.json``): ``counts`` (received, withheld, withheld_by_reason,
delivered per channel and kind, duplicates_suppressed, dead_letters, subscriber_drops,
delivery_failures), ``latency`` rows per (hop, kind, channel) in ms with kind ``*`` merging all
kinds, ``launches`` per correlation key (first launch detection and first alert), the dedup
window size, the assigned partitions and the loop's error.

A first delivery holds ``event_id``, ``sensor_id``, ``sensor_nation``, the simulated times
(``measured_at``/``emitted_at`` as ISO text and ``*_ns``, ``launch_time_ns`` for a launch
detection) and the wall-clock times ``sent_ns`` (producer), ``append_ns`` (broker, ms
resolution), ``received_ns``, ``delivered_ns`` per channel and ``first_delivered_ns``, plus
``pipeline_s`` = first delivery - send (``delivered_ns["sse"]`` and the ``sse`` delivered count mean
"queued for the live subscribers"; the ``sse`` latency rows are taken at each socket write). Sensor share = ``emitted_at - launch time`` (simulated
clock), pipeline share = ``pipeline_s`` (wall clock).

Delivery semantics: at-least-once from Kafka. Records are fanned out as soon as they are polled
(Kafka sends are asynchronous, so delivery latency does not wait for the bookkeeping). At a
*durable point* — every ``commit_interval_s``, when idle, on partition revoke and on shutdown —
the service waits for every Kafka ack and fsyncs the audit file, and only then commits the
offsets of everything fanned out before it.
Event ids seen are remembered in a bounded window rebuilt from the ally topic's tail on every
assignment, so a redelivered batch, a re-sent event or a restart does not reach subscribers
twice. Records are fanned out in partition order; per-missile order (one key, one partition) is
kept on every channel. Where a channel measures "delivered": kafka = the broker acknowledged the
record on the ally topic; sse = the frame was written to that subscriber's socket; audit = the
line was written to the file.

With an HTTP server the service announces its ``/metrics`` to the local Prometheus
(:func:`trilink.monitoring.discovery.announce`, job ``trilink-ally``, label ``ally``, instance
``<ally>-<instance_id>``) once it listens, and withdraws it when it stops or fails to start.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple
from uuid import UUID

from kafka.errors import KafkaTimeoutError
from prometheus_client import CollectorRegistry

from consumers import kafka_io
from consumers.acks import IDLE_WAIT_MS, AckBook, AckReader, AckSender
from consumers.audit import AuditLog, recover_ids
from consumers.channels import (
    AuditChannel,
    Checkpoint,
    Delivery,
    KafkaChannel,
    SseChannel,
)
from consumers.dedup import DEFAULT_CAPACITY, DedupWindow, rebuild_order
from consumers.errors import (
    DLQ_REASONS,
    AllyServiceError,
    EmptyRecordError,
    HeaderMismatchError,
    ImplausibleEventError,
    UndeliverableError,
)
from consumers.httpd import DEFAULT_WRITE_TIMEOUT_S, AllyHttpServer, HttpContext
from consumers.ledger import AllyCounts, AllyReport, Ledger
from consumers.loop import ConsumeLoop, LoopHooks, PrometheusTarget, check_offset_reset
from consumers.measure import LaunchBook
from consumers.metrics import AllyMetrics
from consumers.policy_filter import ReleaseCheck
from consumers.ports import ConsumerFactory, GroupLeaver, ProducerFactory, UnparseableLocator
from consumers.sse import DEFAULT_QUEUE_SIZE, SseHub
from schemas import decode_event, parse_headers
from schemas.errors import BadHeaderError
from schemas.headers import INSTANCE_HEADER, RECEIVED_NS_HEADER, SENT_NS_HEADER, verify_headers_match
from schemas.models import EventKind, ImpactPrediction, Nation, WarningEvent
from trilink.errors import ConfigError, DeserializationError, TrilinkError
from trilink.latency import EPOCH, datetime_from_ns, datetime_ns
from trilink.monitoring.discovery import ALLY_JOB
from trilink.platform.topics import ally_input_roles, topic_name
from trilink.policy import SharingPolicy, default_policy
from trilink.settings import Settings, get_settings
from trilink.waiting import wait_until

log = logging.getLogger(__name__)

__all__ = ["INSTANCE_HEADER", "RECEIVED_NS_HEADER", "AllyService", "Plausibility", "default_group_id"]

_instance_counter = itertools.count(1)
_SAFE_ID = re.compile(r"[^A-Za-z0-9._-]")
_NS_PER_S = 1_000_000_000
#: Longest a predicted impact may lie after the measurement (the longest ICBM flight is under
#: an hour; two leave room for any trajectory trilink simulates).
_MAX_FLIGHT = timedelta(hours=2)
#: At shutdown, how long to wait for the acknowledgements still missing before counting them
#: unacknowledged (the others' are on the topic already when they delivered before).
ACK_DRAIN_S = 5.0


class _Bounds(NamedTuple):
    """The plausibility window for one poll's records, as ns and as datetimes."""

    received_ns: int
    earliest_ns: int
    latest_ns: int
    earliest: datetime
    latest: datetime


@dataclass(frozen=True)
class Plausibility:
    """How far an event's times may be from the receiving clock before it is dead-lettered
    (reason ``implausible_time``): ``measured_at``, ``emitted_at`` and the producer's send time
    at most ``max_future_s`` ahead, and (when set) at most ``max_age_s`` behind.

    The future bound is hours, not seconds, on purpose: a scenario played faster than real time
    (``--speed``, ``--fast``) runs its simulated clock ahead of the wall clock by up to its whole
    duration (a lofted ICBM flight: about an hour). An event from next year is still refused.
    There is no past bound by default: replaying a recording as it was recorded (without
    ``--rebase``) delivers events of its own, older, time."""

    max_future_s: float = 6 * 3600.0
    max_age_s: float | None = None


#: ``(bootstrap, topic, per_partition, total=...)`` -> ``(append_ms, partition, offset, event_id)``
#: of the topic's last records (:func:`consumers.kafka_io.read_tail_event_ids`).
TailReader = Callable[..., list[tuple[int, int, int, UUID]]]


def default_group_id(ally: Nation) -> str:
    """The consumer group of an ally: every instance of one ally shares it."""
    return f"trilink-ally-{ally.value.lower()}"


def _parse_ally(ally: Nation | str) -> Nation:
    try:
        return Nation(str(ally).upper())
    except ValueError:
        raise ConfigError("unknown_ally", f"ally must be one of US, JP, KR; got {ally!r}") from None


#: What the de-duplication rebuild's worker hands the loop: (generation, (ids on the ally topic
#: oldest first, ids in the audit files, id -> append ns of its record on the topic), error).
_RebuildResult = tuple[int, tuple[list[UUID], set[UUID], dict[UUID, int]] | None, BaseException | None]


class AllyService:
    """One instance of one ally's service (see the module docstring for the API and report)."""

    def __init__(
        self,
        ally: Nation | str,
        bootstrap: str,
        *,
        group_id: str | None = None,
        instance_id: str | None = None,
        http_host: str | None = None,
        http_port: int | None = 0,
        audit_dir: Path | None = None,
        from_beginning: bool = False,
        offset_reset: str = "latest",
        policy: SharingPolicy | None = None,
        dedup_capacity: int = DEFAULT_CAPACITY,
        rebuild_dedup: bool = True,
        rebuild_per_partition: int | None = None,
        sse_queue_size: int = DEFAULT_QUEUE_SIZE,
        sse_send_buffer_bytes: int | None = None,
        sse_write_timeout_s: float = DEFAULT_WRITE_TIMEOUT_S,
        registry: CollectorRegistry | None = None,
        max_poll_records: int = 500,
        poll_timeout_ms: int = 100,
        poll_linger_ms: int | None = None,
        commit_interval_s: float = 0.2,
        flush_timeout_s: float = 30.0,
        unhealthy_poll_age_s: float = 15.0,
        rejoin_after_s: float = 20.0,
        plausibility: Plausibility | None = None,
        consumer_factory: ConsumerFactory | None = None,
        producer_factory: ProducerFactory | None = None,
        locate_unparseable: UnparseableLocator | None = None,
        leave_group: GroupLeaver | None = None,
        read_tail: TailReader | None = None,
        acknowledge: bool = True,
        ack_timeout_s: float = 30.0,
        settings: Settings | None = None,
        topology: str | None = None,
        static_member: bool = False,
    ) -> None:
        self.ally = _parse_ally(ally)
        self.bootstrap = bootstrap
        self.group_id = group_id or default_group_id(self.ally)
        self.instance_id = instance_id or f"{socket.gethostname()}-{os.getpid()}-{next(_instance_counter)}"
        self.client_id = f"trilink-ally-{self.ally.value.lower()}-{_SAFE_ID.sub('_', self.instance_id)}"
        #: A static member (``static_member``) joins its group as its client id: see ConsumeLoop.
        self.group_instance_id = self.client_id if static_member else None
        # Where discovery writes the target file (state_dir), the default HTTP host, the topology.
        self._settings = settings if settings is not None else get_settings()
        #: direct: the shared warning topics; hub: only this ally's feed (written by the US hub).
        self.topology = topology or self._settings.topology
        self.input_topics = tuple(topic_name(r) for r in ally_input_roles(self.ally.value, self.topology))
        self.output_topic = topic_name(f"ally.{self.ally.value}")
        self.dead_letter_topic = topic_name("dead_letter")
        self.ack_topic = topic_name("acks")
        self.policy = policy or default_policy()
        self._release = ReleaseCheck(self.ally, self.policy)
        self.from_beginning = from_beginning
        self.offset_reset = check_offset_reset(offset_reset)
        self.rebuild_dedup = rebuild_dedup
        # None: the window's capacity spread over the output topic's partitions (bounded read).
        self.rebuild_per_partition = rebuild_per_partition
        self.max_poll_records = max_poll_records
        self.poll_timeout_ms = poll_timeout_ms
        #: None: the settings' ``poll_linger_ms`` (see :func:`trilink.pacing.linger_after_poll`).
        self.poll_linger_ms = self._settings.poll_linger_ms if poll_linger_ms is None else poll_linger_ms
        self.commit_interval_s = commit_interval_s
        self.flush_timeout_s = flush_timeout_s
        self.unhealthy_poll_age_s = unhealthy_poll_age_s
        self.rejoin_after_s = rejoin_after_s
        self.plausibility = plausibility or Plausibility()
        self._bounds = _Bounds(-1, 0, 0, EPOCH, EPOCH)
        self._read_tail = read_tail or kafka_io.read_tail_event_ids

        label = self.ally.value
        channels = ("kafka", "sse") if audit_dir is None else ("kafka", "sse", "audit")
        self.metrics = AllyMetrics(label, registry, input_topics=self.input_topics)
        self.ledger = Ledger(label, channels)
        self.metrics.registry.register(self.ledger)
        self.launches = LaunchBook()
        self.window = DedupWindow(dedup_capacity)
        #: The three-way acknowledgement (None: this service neither sends nor reads them).
        self.acks = AckBook(self.ally, self.policy, self.ledger, ack_timeout_s) if acknowledge else None
        self._ack_reader: AckReader | None = None
        self.hub = SseHub(
            sse_queue_size,
            on_drop=self._count_drop,
            on_count=lambda n: self.metrics.sse_subscribers.labels(label).set(n),
        )
        self.audit_dir = None if audit_dir is None else Path(audit_dir)
        self._audit_glob = f"ally-{label.lower()}-*.jsonl"
        self.audit_path = (
            None
            if self.audit_dir is None
            else self.audit_dir / f"ally-{label.lower()}-{_SAFE_ID.sub('_', self.instance_id)}.jsonl"
        )
        self._http_host = http_host or self._settings.host
        #: Instance label of the announced target: unique per ally even when the instance id is shared.
        self.target_instance = f"{label}-{_SAFE_ID.sub('_', self.instance_id)}"[:100]
        self._http_port = http_port
        self._sse_send_buffer_bytes = sse_send_buffer_bytes
        self._sse_write_timeout_s = sse_write_timeout_s

        self.audit: AuditLog | None = None
        self.http: AllyHttpServer | None = None
        self._target = PrometheusTarget(ALLY_JOB, self.target_instance, self._settings, f"ally {label}")
        self._producer: Any = None
        self._kafka: KafkaChannel | None = None
        self._sse = SseChannel(self.hub, self.ledger, self.launches)
        self._audit_channel: AuditChannel | None = None
        self._channels: tuple[Any, ...] = ()
        #: This poll's events to fan out, in order (see :meth:`_end_batch`).
        self._outbox: list[Delivery] = []
        self._lock = threading.Lock()  # rebuild result, lag figures

        self._drops = 0
        self._last_append_ns: int | None = None
        self._lag_records: dict[str, int] = {}
        self._lag_seconds = 0.0
        # De-duplication window rebuild (see _on_assignment): partitions held meanwhile.
        self._rebuild_generation = 0
        self._rebuild_result: _RebuildResult | None = None
        # Ids a channel already holds although the event is not fully delivered (recovered from
        # the ally topic's and the audit files' tails, or left by a failed checkpoint).
        self._already: dict[str, set[UUID]] = {}
        # Event id -> append time (ns) of its record on the ally topic, for the records the last
        # rebuild read (as many as the window holds): read again, they are acknowledged again
        # (_ack_again).
        self._on_topic_ns: dict[UUID, int] = {}
        self._loop = ConsumeLoop(
            LoopHooks(
                handle=self._handle,
                count_failure=self._count_failure,
                retrying=self._forget_failed,
                lag=self._on_lag,
                fold=self.ledger.fold,
                end_batch=self._end_batch,
                abandoned=self._abandoned,
                assigned=self._on_assignment,
                holding=self._finish_rebuild,
                rebalanced=self._count_rebalance,
            ),
            self,
            who=f"ally {label}",
            name="consumer loop",
            lag_interval_s=self.commit_interval_s,
            consumer_factory=consumer_factory,
            producer_factory=producer_factory,
            locate_unparseable=locate_unparseable,
            leave_group=leave_group,
            dead_letter_ally=label,
            dead_letter_counter=self.ledger,
            dead_letter_reasons=DLQ_REASONS,
            rejoin_after_s=self.rejoin_after_s,
            from_beginning=self.from_beginning,
        )

    @property
    def error(self) -> BaseException | None:
        """What stopped the consumer loop (None while it runs or after a clean stop)."""
        return self._loop.error

    # ---------------------------------------------------------------- lifecycle

    @property
    def http_port(self) -> int | None:
        """The bound HTTP port (after :meth:`start`), or None without an HTTP server."""
        return None if self.http is None else self.http.port

    def start(self) -> None:
        """Connect, subscribe, open the audit file, serve HTTP and start the consumer loop."""
        loop = self._loop
        try:
            loop.connect()
            self._producer = loop.producer
            sender = None
            if self.acks is not None:
                # Known before the first acknowledgement: it is sent from the producer's IO thread,
                # which must never wait for metadata.
                self._producer.partitions_for(self.ack_topic)
                sender = AckSender(self._producer, self.ack_topic, self.ally, self.instance_id, self.acks)
                self._ack_reader = AckReader(
                    kafka_io.new_consumer(
                        self.bootstrap,
                        None,
                        f"{self.client_id}-acks",
                        offset_reset="latest",
                        max_poll_records=self.max_poll_records,
                        fetch_max_wait_ms=IDLE_WAIT_MS,
                    ),
                    self.ack_topic,
                    self.acks,
                    self._dead_letter_ack,
                    read_linger_ms=self._settings.reader_linger_ms,
                )
                self._ack_reader.start()
            self._kafka = KafkaChannel(
                self._producer, self.output_topic, self.instance_id, self.ledger, self.launches, acks=sender
            )
            channels: list[Any] = [self._kafka]
            if self.audit_path is not None:
                self.audit = loop.audit = AuditLog(self.audit_path)
                self._audit_channel = AuditChannel(
                    self.audit, self.ally.value, self.instance_id, self.ledger, self.launches
                )
                channels.append(self._audit_channel)
            channels.append(self._sse)
            self._channels = tuple(channels)
            if self._http_port is not None:
                context = HttpContext(
                    hub=self.hub,
                    registry=self.metrics.registry,
                    health=self.health,
                    on_sse_written=self._sse.on_written,
                    on_disconnect=self._on_sse_disconnect,
                    write_timeout_s=self._sse_write_timeout_s,
                    send_buffer_bytes=self._sse_send_buffer_bytes,
                    latency=self.ledger.rows,
                )
                self.http = AllyHttpServer(self._http_host, self._http_port, context)
                self.http.start(f"{self.client_id}-http")
                self._target.announce(self.http.port, {"ally": self.ally.value})
        except BaseException:
            self._target.withdraw()
            if self.http is not None:
                self.http.stop()
            if self._ack_reader is not None:
                self._ack_reader.stop()
            loop.close_clients()
            raise
        loop.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Finish the in-flight batch, flush, fsync, commit, leave the group and close everything."""
        try:
            self._loop.stop(timeout_s)
            if self._ack_reader is not None:
                self._ack_reader.drain(min(self.acks.timeout_s if self.acks else 0.0, ACK_DRAIN_S))
                self._ack_reader.stop()
            if self.http is not None:
                self.http.stop()
        finally:
            self._target.withdraw()
        if self.audit is not None:
            self.audit.close()

    def _dead_letter_ack(self, record: Any, exc: DeserializationError) -> None:
        """A record on the acknowledgement topic that is not an acknowledgement (reader thread):
        dead-lettered as the loop isolates any bad record. The reader commits nothing, so its
        checkpoint is a throwaway and a dead letter that could not be sent is only logged."""
        evidence = Checkpoint()
        self._loop.isolate(record, exc, evidence)
        for _, _, why in evidence.failed:
            log.error("ally %s: dead-lettering a bad acknowledgement record failed: %s", self.ally.value, why)

    def request_stop(self) -> None:
        """Ask the loop to stop after its current batch (safe from a signal handler)."""
        self._loop.request_stop()

    @property
    def running(self) -> bool:
        return self._loop.running

    def wait_ready(self, timeout_s: float = 30.0) -> bool:
        """True once at least one partition is assigned, positions are pinned and the window rebuilt."""
        return self._loop.wait_ready(timeout_s)

    def run_until(
        self, predicate: Callable[[AllyService], bool] | None = None, timeout_s: float | None = None
    ) -> bool:
        """Block until ``predicate(self)`` holds (True), the loop ends or ``timeout_s`` passes (False)."""

        def outcome() -> str | None:
            if predicate is not None and predicate(self):
                return "held"
            if not self.running:
                return "held" if predicate is not None and predicate(self) else "ended"
            return None

        return wait_until(outcome, math.inf if timeout_s is None else timeout_s, interval_s=0.02) == "held"

    # ---------------------------------------------------------------- one record (the loop thread)

    def _handle(self, record: Any, received_ns: int, checkpoint: Checkpoint) -> None:
        value = record.value
        if value is None:
            raise EmptyRecordError("the record has no value")
        parsed = parse_headers(record.headers)
        event = decode_event(value, (parsed.event_id_text, parsed.event_id))
        try:
            verify_headers_match(parsed, event)
        except BadHeaderError as exc:
            raise HeaderMismatchError(exc.message) from None
        sent_ns = parsed.sent_ns
        self._check_plausible(event, sent_ns, received_ns)
        event_kind = event.kind
        kind = event_kind.value
        ledger = self.ledger
        series = ledger.by_kind[kind]
        ledger.received[kind] += 1
        append_ns = None
        if record.timestamp_type == kafka_io.LOG_APPEND_TIME:
            append_ns = record.timestamp * 1_000_000
            self._last_append_ns = append_ns
            ledger.sample(series.append_to_receive, received_ns - append_ns)
            hub_ns = parsed.hub_ns
            if hub_ns is None:
                if sent_ns is not None:
                    ledger.sample(series.send_to_append, append_ns - sent_ns)
            else:  # relayed by the hub: this append is the feed's, the ingest append is a header
                ledger.sample(series.hub_to_append, append_ns - hub_ns)
                ingest_ns = parsed.ingest_append_ns
                if ingest_ns is not None:
                    ledger.sample(series.append_to_hub, hub_ns - ingest_ns)
                    if sent_ns is not None:
                        ledger.sample(series.send_to_append, ingest_ns - sent_ns)
        if parsed.realtime and sent_ns is not None:
            ledger.sample(series.sensor_to_send, sent_ns - datetime_ns(event.header.measured_at))

        withheld = self._release.reason(event, event_kind)
        if withheld is not None:
            ledger.withheld[kind] += 1
            ledger.withheld_by_reason[withheld.value] = ledger.withheld_by_reason.get(withheld.value, 0) + 1
            return
        if event_kind is EventKind.SENSOR_STATUS:
            self.metrics.sensor_seen(event.header.sensor_id, received_ns / 1e9)
        event_id = parsed.event_id
        if not self.window.check_and_add(event_id):
            ledger.duplicates += 1
            if self._on_topic_ns:
                self._ack_again(event, event_id, sent_ns)
            return
        checkpoint.ids.append(event_id)
        first = self.launches.note(event, sent_ns=sent_ns, append_ns=append_ns, received_ns=received_ns)
        self._outbox.append(Delivery(record, parsed, event, kind, series, received_ns, append_ns, first))

    def _fan_out(self, checkpoint: Checkpoint) -> None:
        """Deliver the poll's events channel by channel: every Kafka send, then every audit line,
        then every SSE frame, each in the poll's order.

        Channel by channel, not event by event: the ally service's loop thread spent ~20 % less
        CPU per event when its sends came back to back instead of between two decodes
        (``bench/bench_hotpath.py --hub none --allies JP``, three alternated pairs, 2026-12-05).
        The first event of a poll waits for the rest of the poll's decoding, tens of microseconds
        per event. An event the Kafka client refuses goes to no channel: it is dead-lettered."""
        outbox, self._outbox = self._outbox, []
        already = self._already
        for channel in self._channels:
            held = already.get(channel.name) if already else None
            is_kafka = channel is self._kafka
            refused: set[int] = set()  # id() of the deliveries the client refused
            for delivery in outbox:
                if held is not None and delivery.parsed.event_id in held:
                    held.discard(delivery.parsed.event_id)
                    if is_kafka and self._on_topic_ns:
                        self._ack_again(delivery.event, delivery.parsed.event_id, delivery.parsed.sent_ns)
                    continue
                try:
                    if is_kafka:
                        if not self._deliver_kafka(delivery, checkpoint):
                            refused.add(id(delivery))
                    else:
                        channel.deliver(delivery, checkpoint)
                except Exception as exc:  # one event's failure must not stop the others
                    self._loop.isolate(delivery.record, exc, checkpoint)
            if refused:
                outbox = [d for d in outbox if id(d) not in refused]

    def _ack_again(self, event: WarningEvent, event_id: UUID, sent_ns: int | None) -> None:
        """An event read again after a restart that the ally topic already holds: a previous
        process delivered it and may have died before acknowledging it, so acknowledge it now
        (once per recovered id) with the time it was delivered."""
        delivered_ns = self._on_topic_ns.pop(event_id, None)
        if delivered_ns is not None and self._kafka is not None:
            self._kafka.acknowledge_again(event, event_id, sent_ns, delivered_ns)

    def _deliver_kafka(self, delivery: Delivery, checkpoint: Checkpoint) -> bool:
        """Send on the ally topic (True). A record the client refuses as it is becomes a dead
        letter (False: no other channel gets it); a client that cannot send right now (buffer
        full, no metadata) fails the checkpoint, and the event is read again."""
        assert self._kafka is not None
        try:
            self._kafka.deliver(delivery, checkpoint)
        except KafkaTimeoutError as exc:
            checkpoint.failed.append(("kafka", delivery.parsed.event_id, f"KafkaTimeoutError: {exc}"))
        except Exception as exc:
            self.window.discard(delivery.parsed.event_id)
            refusal = UndeliverableError(f"the Kafka client refused it: {type(exc).__name__}: {exc}")
            self._loop.isolate(delivery.record, refusal, checkpoint)
            return False
        return True

    def _check_plausible(self, event: WarningEvent, sent_ns: int | None, received_ns: int) -> None:
        bounds = self._bounds_for(received_ns)
        header = event.header
        for name, moment in (("measured_at", header.measured_at), ("emitted_at", header.emitted_at)):
            if not bounds.earliest <= moment <= bounds.latest:
                self._implausible(name, datetime_ns(moment), received_ns)
        if sent_ns is not None and not bounds.earliest_ns <= sent_ns <= bounds.latest_ns:
            self._implausible(SENT_NS_HEADER, sent_ns, received_ns)
        payload = event.payload
        if isinstance(payload, ImpactPrediction) and payload.impact_time - header.measured_at > _MAX_FLIGHT:
            raise ImplausibleEventError("impact_time is more than 2 h after measured_at")

    def _bounds_for(self, received_ns: int) -> _Bounds:
        """The accepted time window for records received at ``received_ns`` (one per poll)."""
        if self._bounds.received_ns != received_ns:
            plausibility = self.plausibility
            latest_ns = received_ns + int(plausibility.max_future_s * _NS_PER_S)
            earliest_ns = (
                0 if plausibility.max_age_s is None else received_ns - int(plausibility.max_age_s * _NS_PER_S)
            )
            self._bounds = _Bounds(
                received_ns,
                earliest_ns,
                latest_ns,
                datetime_from_ns(earliest_ns),
                datetime_from_ns(latest_ns),
            )
        return self._bounds

    def _implausible(self, name: str, moment_ns: int, received_ns: int) -> None:
        bounds = self.plausibility
        raise ImplausibleEventError(
            f"{name} is {(moment_ns - received_ns) / _NS_PER_S:+.0f} s from the receiving clock "
            f"(accepted: at most {bounds.max_future_s:.0f} s ahead"
            f"{'' if bounds.max_age_s is None else f', {bounds.max_age_s:.0f} s behind'})"
        )

    # ---------------------------------------------------------------- the loop's hooks

    def _forget_failed(self, closed: Sequence[Checkpoint]) -> None:
        """The loop reads ``closed`` again: count what failed, forget the failed ids (each channel
        that did take one remembers it holds it, so it is not delivered there twice)."""
        lost: dict[UUID, set[str]] = {}
        for checkpoint in closed:
            blind = False  # a send failure without an id: the whole checkpoint is re-sent
            for channel, event_id, why in checkpoint.failed:
                self._count_failure(channel, _failure_reason(channel, why))
                if event_id is None:
                    blind = blind or channel == "kafka"
                else:
                    lost.setdefault(event_id, set()).add(channel)
            if blind:
                for event_id in checkpoint.ids:
                    lost.setdefault(event_id, set()).add("kafka")
        log.warning(
            "ally %s: %d event(s) not delivered on every channel (%s); reading again",
            self.ally.value,
            len(lost),
            "; ".join(why for checkpoint in closed for _, _, why in checkpoint.failed[:1]),
        )
        names = [channel.name for channel in self._channels if channel.name != "sse"]
        for event_id, channels in lost.items():
            self.window.discard(event_id)
            for name in names:
                if name not in channels:
                    self._already.setdefault(name, set()).add(event_id)

    def _abandoned(self, checkpoint: Checkpoint) -> None:
        """A blocking durable point could not make ``checkpoint`` durable: its events are read
        again (here or by the partitions' next owner), so the window must not suppress them."""
        for channel, _event_id, why in checkpoint.failed[:1]:
            self._count_failure(channel, _failure_reason(channel, why))
        for event_id in checkpoint.ids:
            self.window.discard(event_id)

    def _end_batch(self, checkpoint: Checkpoint) -> None:
        self._fan_out(checkpoint)
        if self._audit_channel is not None:
            self._audit_channel.end_batch(checkpoint)
        self._sse.end_batch(checkpoint)

    def _count_rebalance(self, what: str) -> None:
        self.metrics.rebalances.labels(self.ally.value, what).inc()

    def _count_failure(self, channel: str, reason: str) -> None:
        self.metrics.delivery_failures.labels(self.ally.value, channel, reason).inc()

    def _on_lag(self, per_topic: dict[str, int]) -> None:
        now_ns = time.time_ns()
        self.metrics.dedup_window_ids.labels(self.ally.value).set(len(self.window))
        for topic, lag in per_topic.items():
            self.metrics.lag_records.labels(self.ally.value, topic).set(lag)
        behind = sum(per_topic.values()) > 0 and self._last_append_ns is not None
        lag_s = max(now_ns - (self._last_append_ns or now_ns), 0) / 1e9 if behind else 0.0
        self.metrics.lag_seconds.labels(self.ally.value).set(lag_s)
        with self._lock:
            self._lag_records = per_topic
            self._lag_seconds = lag_s

    # ---------------------------------------------------------------- SSE callbacks (writer threads)

    def _on_sse_disconnect(self, reason: str) -> None:
        self.metrics.subscriber_disconnects.labels(self.ally.value, "sse", reason).inc()

    def _count_drop(self, dropped: int) -> None:
        self.metrics.sse_drops_child.inc(dropped)
        self._drops += dropped

    # ---------------------------------------------------------------- de-duplication rebuild

    def _on_assignment(self, assigned: list[tuple[str, int]]) -> bool:
        """Loop thread, positions pinned: rebuild the de-duplication window (False: not ready yet).

        The rebuild reads the ally topic's tail on a worker thread while the newly assigned
        partitions stay paused: the loop keeps polling (so the group's join and sync complete
        and heartbeats flow) but delivers nothing until the window knows what was delivered.
        """
        if not self.rebuild_dedup:
            return True
        self._rebuild_generation += 1
        generation = self._rebuild_generation
        self._loop.hold(assigned)
        self._rebuild_result = None
        worker = threading.Thread(
            target=self._rebuild_worker, args=(generation,), name=f"{self.client_id}-rebuild", daemon=True
        )
        worker.start()
        return False

    def _rebuild_worker(self, generation: int) -> None:
        """Read what the channels already hold: the ally topic's tail and the audit files' tails."""
        try:
            tail = self._read_tail(
                self.bootstrap, self.output_topic, self.rebuild_per_partition, total=self.window.capacity
            )
            on_topic = rebuild_order(tail, self.window.capacity)  # oldest first
            in_audit = (
                set()
                if self.audit_dir is None
                else recover_ids(self.audit_dir, self._audit_glob, self.window.capacity)
            )
            delivered_ns: dict[UUID, int] = {}
            for append_ms, _, _, event_id in tail:  # read as many as the window holds
                delivered_ns[event_id] = max(append_ms * 1_000_000, delivered_ns.get(event_id, 0))
            result: _RebuildResult = (generation, (on_topic, in_audit, delivered_ns), None)
        except BaseException as exc:
            result = (generation, None, exc)
        with self._lock:
            self._rebuild_result = result

    def _finish_rebuild(self) -> None:
        """Loop thread: once the worker of the current generation is done, load and resume."""
        with self._lock:
            result = self._rebuild_result
        if result is None:
            return
        generation, held, error = result
        if generation != self._rebuild_generation:
            return  # a newer assignment started another rebuild
        with self._lock:
            self._rebuild_result = None
        if error is not None:
            # Availability first: deliver with the window as it is (duplicates of the last
            # uncommitted batch may then reach subscribers) and say so.
            log.warning("ally %s: de-duplication window not rebuilt: %s", self.ally.value, error)
            self.metrics.delivery_failures.labels(self.ally.value, "dedup", "rebuild_failed").inc()
        else:
            assert held is not None
            on_topic, in_audit, self._on_topic_ns = held
            # Fully delivered: on every durable channel. Held by one only: deliver to the others.
            # Loaded oldest first: the window evicts its oldest ids as new events arrive, and the
            # newest are the ones a restarted service reads again.
            everywhere = [i for i in on_topic if i in in_audit] if self.audit is not None else on_topic
            loaded = self.window.load(everywhere)
            held_everywhere = set(everywhere)
            self._already = {"kafka": set(on_topic) - held_everywhere}
            if self.audit is not None:
                self._already["audit"] = in_audit - held_everywhere
            log.info(
                "ally %s: de-duplication window rebuilt with %d ids (%d held by one channel only)",
                self.ally.value,
                loaded,
                sum(len(ids) for ids in self._already.values()),
            )
        self._loop.release()

    # ---------------------------------------------------------------- health and report

    def health(self) -> tuple[bool, dict[str, Any]]:
        """(healthy, detail): the loop runs, partitions are set up and poll was called recently."""
        problems, age = self._loop.health()
        assigned = self.assigned_partitions()
        with self._lock:
            lag_records = dict(self._lag_records)
            lag_s = self._lag_seconds
        detail = {
            "status": "ok" if not problems else "unhealthy",
            "problems": problems,
            "ally": self.ally.value,
            "instance_id": self.instance_id,
            "group_id": self.group_id,
            "assigned_partitions": assigned,
            "last_poll_age_s": None if age is None else round(age, 3),
            "lag_records": lag_records,
            "lag_seconds": round(lag_s, 3),
            "sse_subscribers": self.hub.subscriber_count,
        }
        return not problems, detail

    def assigned_partitions(self) -> list[str]:
        """``topic/partition`` of every partition this instance owns right now."""
        return [f"{t}/{p}" for t, p in self._loop.assigned_partitions()]

    def delivered_count(self, channel: str = "kafka") -> int:
        """Events delivered on ``channel`` so far (kafka counts acknowledged records)."""
        return sum(n for (_kind, c), n in list(self.ledger.delivered.items()) if c == channel)

    def count(self, name: str) -> int:
        """Total of one report counter: received, withheld, dead_letters, duplicates_suppressed..."""
        ledger = self.ledger
        if name == "duplicates_suppressed":
            return ledger.duplicates
        if name == "subscriber_drops":
            return self._drops
        table: dict[str, int] = {
            "received": ledger.received,
            "withheld": ledger.withheld,
            "dead_letters": ledger.dead_letters,
            "withheld_by_reason": ledger.withheld_by_reason,
        }[name]
        return sum(list(table.values()))

    def report(self) -> AllyReport:
        """Counts, latency percentiles and per-launch first deliveries (:class:`consumers.ledger.AllyReport`)."""
        ledger = self.ledger
        delivered: dict[str, dict[str, int]] = {"kafka": {}, "sse": {}, "audit": {}}
        for (kind, channel), n in list(ledger.delivered.items()):
            if n:
                delivered[channel][kind] = n
        failures = {
            f"{sample.labels['channel']}/{sample.labels['reason']}": int(sample.value)
            for family in self.metrics.delivery_failures.collect()
            for sample in family.samples
            if sample.name.endswith("_total") and sample.value
        }
        counts = AllyCounts(
            received={k: n for k, n in list(ledger.received.items()) if n},
            withheld={k: n for k, n in list(ledger.withheld.items()) if n},
            withheld_by_reason=dict(ledger.withheld_by_reason),
            delivered=delivered,
            duplicates_suppressed=ledger.duplicates,
            dead_letters={r: n for r, n in list(ledger.dead_letters.items()) if n},
            subscriber_drops={"sse": self._drops},
            delivery_failures=failures,
        )
        assigned = self.assigned_partitions()
        return AllyReport.model_validate(
            {
                "ally": self.ally.value,
                "instance_id": self.instance_id,
                "group_id": self.group_id,
                "counts": counts,
                "latency": ledger.rows(),
                "launches": self.launches.as_dict(),
                "dedup_window_ids": len(self.window),
                "assigned_partitions": assigned,
                "error": None if self.error is None else str(self.error),
                "acknowledgements": None if self.acks is None else self.acks.summary(),
            }
        )

    def raise_if_failed(self) -> None:
        """Re-raise the loop's error as a :class:`TrilinkError` (for the CLI)."""
        if self.error is None:
            return
        if isinstance(self.error, TrilinkError):
            raise self.error
        raise AllyServiceError(
            "consumer_loop_failed", f"the consumer loop stopped: {self.error!r}"
        ) from self.error


def _failure_reason(channel: str, why: str) -> str:
    """The bounded reason label of a channel failure (``why`` is free text or a reason code)."""
    if channel == "audit":
        return "audit_write_failed"
    if channel == "dead_letter":
        return "dead_letter_failed"
    return "kafka_flush_timeout" if why.startswith("acks not received") else "kafka_send_failed"
