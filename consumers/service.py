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

``report()`` returns a JSON-able dict::

    {
      "ally": "JP", "instance_id": "...", "group_id": "trilink-ally-jp", "clock_domain": "host",
      "counts": {
        "received": {kind: n}, "withheld": {kind: n}, "withheld_by_reason": {reason: n},
        "delivered": {"kafka"|"sse"|"audit": {kind: n}}, "duplicates_suppressed": n,
        "dead_letters": {reason: n}, "subscriber_drops": {"sse": n},
        "delivery_failures": {"<channel>/<reason>": n}
      },
      "latency": [  # one row per (hop, kind, channel); kind "*" rows merge all kinds
        {"hop": "end_to_end", "kind": "alert", "channel": "kafka", "count": n,
         "p50_ms": .., "p90_ms": .., "p99_ms": .., "p99_9_ms": .., "max_ms": .., "mean_ms": ..}, ...
      ],
      "launches": {  # per correlation key
        "<key>": {"first_launch_detection": FIRST | None, "first_alert": FIRST | None}
      },
      "dedup_window_ids": n, "assigned_partitions": ["topic/p", ...], "error": str | None
    }

where FIRST holds ``event_id``, ``sensor_id``, ``sensor_nation``, the simulated times
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
import json
import logging
import os
import re
import socket
import threading
import time
from collections import Counter as Tally
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import UUID

from prometheus_client import CollectorRegistry

from consumers import kafka_io
from consumers.audit import AuditLog
from consumers.dedup import DEFAULT_CAPACITY, DedupWindow, rebuild_order
from consumers.dlq import dead_letter_headers
from consumers.errors import (
    DLQ_REASONS,
    AllyServiceError,
    ChannelDeliveryError,
    EmptyRecordError,
    HeaderMismatchError,
)
from consumers.httpd import DEFAULT_WRITE_TIMEOUT_S, AllyHttpServer, HttpContext
from consumers.measure import FirstDelivery, LatencyBook, LaunchBook, datetime_ns
from consumers.metrics import NO_CHANNEL, AllyMetrics
from consumers.policy_filter import withhold_reason
from consumers.sse import DEFAULT_QUEUE_SIZE, SseHub, SseItem, sse_frame
from schemas import decode_event, parse_headers
from schemas.errors import BadHeaderError
from schemas.headers import verify_headers_match
from schemas.models import EventKind, Nation, WarningEvent
from trilink.errors import ConfigError, DeserializationError, TrilinkError
from trilink.latency import PACING_HEADER, REALTIME_PACING, SENT_NS_HEADER, decode_sent_ns, encode_sent_ns
from trilink.monitoring.discovery import ALLY_JOB, announce, withdraw
from trilink.platform.topics import topic_name
from trilink.policy import SharingPolicy, default_policy
from trilink.settings import Settings, get_settings

log = logging.getLogger(__name__)

#: Headers added to every record the service writes to its ally topic.
ALLY_HEADER = "trilink_ally"
INSTANCE_HEADER = "trilink_ally_instance"
RECEIVED_NS_HEADER = "trilink_received_ns"
SOURCE_HEADER = "trilink_source"

#: DLQ reason for a failure no contract error describes (a decoder bug, not bad input).
UNEXPECTED_REASON = "unexpected"

_instance_counter = itertools.count(1)
_SAFE_ID = re.compile(r"[^A-Za-z0-9._-]")


def default_group_id(ally: Nation) -> str:
    """The consumer group of an ally: every instance of one ally shares it."""
    return f"trilink-ally-{ally.value.lower()}"


def _parse_ally(ally: Nation | str) -> Nation:
    try:
        return Nation(str(ally).upper())
    except ValueError:
        raise ConfigError("unknown_ally", f"ally must be one of US, JP, KR; got {ally!r}") from None


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
        commit_interval_s: float = 0.2,
        flush_timeout_s: float = 30.0,
        unhealthy_poll_age_s: float = 15.0,
        settings: Settings | None = None,
    ) -> None:
        if offset_reset not in ("latest", "earliest"):
            raise ConfigError(
                "invalid_option", f"offset_reset must be latest or earliest, got {offset_reset!r}"
            )
        self.ally = _parse_ally(ally)
        self.bootstrap = bootstrap
        self.group_id = group_id or default_group_id(self.ally)
        self.instance_id = instance_id or f"{socket.gethostname()}-{os.getpid()}-{next(_instance_counter)}"
        self.client_id = f"trilink-ally-{self.ally.value.lower()}-{_SAFE_ID.sub('_', self.instance_id)}"
        self.input_topics = (topic_name("warnings"), topic_name("sensor_status"))
        self.output_topic = topic_name(f"ally.{self.ally.value}")
        self.dead_letter_topic = topic_name("dead_letter")
        self.policy = policy or default_policy()
        self.from_beginning = from_beginning
        self.offset_reset = offset_reset
        self.rebuild_dedup = rebuild_dedup
        # None: the window's capacity spread over the output topic's partitions (bounded read).
        self.rebuild_per_partition = rebuild_per_partition
        self.max_poll_records = max_poll_records
        self.poll_timeout_ms = poll_timeout_ms
        self.commit_interval_s = commit_interval_s
        self.flush_timeout_s = flush_timeout_s
        self.unhealthy_poll_age_s = unhealthy_poll_age_s

        label = self.ally.value
        self.metrics = AllyMetrics(
            label,
            registry,
            input_topics=self.input_topics,
            channels=("kafka", "sse") if audit_dir is None else ("kafka", "sse", "audit"),
        )
        self.latency = LatencyBook(self.metrics)
        self.launches = LaunchBook()
        self.window = DedupWindow(dedup_capacity)
        self.hub = SseHub(
            sse_queue_size,
            on_drop=self._count_drop,
            on_count=lambda n: self.metrics.sse_subscribers.labels(label).set(n),
        )
        self.audit_path = (
            None
            if audit_dir is None
            else Path(audit_dir) / f"ally-{label.lower()}-{_SAFE_ID.sub('_', self.instance_id)}.jsonl"
        )
        # Where discovery writes the target file (state_dir) and the default HTTP host.
        self._settings = settings if settings is not None else get_settings()
        self._http_host = http_host or self._settings.host
        #: Instance label of the announced target: unique per ally even when the instance id is shared.
        self.target_instance = f"{label}-{_SAFE_ID.sub('_', self.instance_id)}"[:100]
        self._announced = False
        self._http_port = http_port
        self._sse_send_buffer_bytes = sse_send_buffer_bytes
        self._sse_write_timeout_s = sse_write_timeout_s

        self.audit: AuditLog | None = None
        self.http: AllyHttpServer | None = None
        self._consumer: Any = None
        self._producer: Any = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._lock = threading.Lock()  # counts, pending offsets, assignment, send errors
        self.error: BaseException | None = None

        self._counts: dict[str, Tally[str]] = {
            "received": Tally(),
            "withheld": Tally(),
            "withheld_by_reason": Tally(),
            "delivered.kafka": Tally(),
            "delivered.sse": Tally(),
            "delivered.audit": Tally(),
            "dead_letters": Tally(),
            "delivery_failures": Tally(),
        }
        self._duplicates = 0
        self._drops = 0
        self._pending_commit: kafka_io.Offsets = {}
        self._positions: kafka_io.Offsets = {}
        self._assigned: set[tuple[str, int]] = set()
        self._assignment_dirty = False
        self._reset_done: set[tuple[str, int]] = set()
        self._send_errors: list[tuple[str, BaseException]] = []
        self._last_poll_monotonic: float | None = None
        self._last_append_ns: int | None = None
        self._lag_records: dict[str, int] = {}
        self._lag_seconds = 0.0
        self._last_commit_monotonic = 0.0
        # De-duplication window rebuild (see _after_assignment): partitions paused meanwhile.
        self._held: set[tuple[str, int]] = set()
        self._rebuild_generation = 0
        self._rebuild_result: (
            tuple[int, list[tuple[int, int, int, UUID]] | None, BaseException | None] | None
        ) = None
        # Fanned out since the last durable point (loop thread; the listener runs while it polls).
        self._undurable_first: kafka_io.Offsets = {}
        self._undurable_next: kafka_io.Offsets = {}
        self._undurable_ids: list[UUID] = []
        self._last_durable_monotonic = 0.0

    # ---------------------------------------------------------------- lifecycle

    @property
    def http_port(self) -> int | None:
        """The bound HTTP port (after :meth:`start`), or None without an HTTP server."""
        return None if self.http is None else self.http.port

    def start(self) -> None:
        """Connect, subscribe, open the audit file, serve HTTP and start the consumer loop."""
        if self._thread is not None:
            raise ConfigError("already_started", "an AllyService can be started once")
        self._producer = kafka_io.new_producer(self.bootstrap, self.client_id)
        try:
            self._consumer = kafka_io.new_consumer(
                self.bootstrap,
                self.group_id,
                self.client_id,
                offset_reset=self.offset_reset,
                max_poll_records=self.max_poll_records,
            )
            listener = kafka_io.make_listener(
                self._on_revoked, self._on_assigned, self._on_lost, lambda: self._consumer
            )
            kafka_io.ensure_metadata(self._consumer, self.input_topics)
            # Know every input topic's partitions before joining: a join on partial metadata is
            # followed at once by a second rebalance, which kafka-python 3.0 can leave hanging.
            for topic in self.input_topics:
                self._consumer.partitions_for_topic(topic)
            self._consumer.subscribe(list(self.input_topics), listener=listener)
            if self.audit_path is not None:
                self.audit = AuditLog(self.audit_path)
            if self._http_port is not None:
                context = HttpContext(
                    hub=self.hub,
                    registry=self.metrics.registry,
                    health=self.health,
                    on_sse_written=self._on_sse_written,
                    on_disconnect=self._on_sse_disconnect,
                    write_timeout_s=self._sse_write_timeout_s,
                    send_buffer_bytes=self._sse_send_buffer_bytes,
                )
                self.http = AllyHttpServer(self._http_host, self._http_port, context)
                self.http.start(f"{self.client_id}-http")
                announce(
                    ALLY_JOB,
                    self.target_instance,
                    self.http.port,
                    {"ally": self.ally.value},
                    settings=self._settings,
                )
                self._announced = True
        except BaseException:
            self._withdraw()
            if self.http is not None:
                self.http.stop()
            self._close_clients()
            raise
        self._thread = threading.Thread(target=self._run, name=f"{self.client_id}-loop", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Finish the in-flight batch, flush, fsync, commit, leave the group and close everything."""
        self._stop.set()
        try:
            if self._thread is not None:
                self._thread.join(timeout_s)
            if self.http is not None:
                self.http.stop()
        finally:
            self._withdraw()
        if self.audit is not None:
            self.audit.close()

    def _withdraw(self) -> None:
        """Remove the Prometheus target file, if announced (never raises: a shutdown path)."""
        if not self._announced:
            return
        self._announced = False
        try:
            withdraw(ALLY_JOB, self.target_instance, settings=self._settings)
        except Exception:
            log.exception("ally %s: withdrawing the Prometheus target failed", self.ally.value)

    def request_stop(self) -> None:
        """Ask the loop to stop after its current batch (safe from a signal handler)."""
        self._stop.set()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wait_ready(self, timeout_s: float = 30.0) -> bool:
        """True once at least one partition is assigned, positions are pinned and the window rebuilt."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._ready.wait(0.05):
                return True
            if self._thread is not None and not self._thread.is_alive():
                return False
        return self._ready.is_set()

    def run_until(
        self, predicate: Callable[[AllyService], bool] | None = None, timeout_s: float | None = None
    ) -> bool:
        """Block until ``predicate(self)`` holds (True), the loop ends or ``timeout_s`` passes (False)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            if predicate is not None and predicate(self):
                return True
            if not self.running:
                return predicate is not None and predicate(self)
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(0.02)

    # ---------------------------------------------------------------- consumer loop

    def _run(self) -> None:
        clean = False
        try:
            while not self._stop.is_set():
                batch = self._consumer.poll(
                    timeout_ms=self.poll_timeout_ms, max_records=self.max_poll_records
                )
                received_ns = time.time_ns()
                self._last_poll_monotonic = time.monotonic()
                if self._assignment_dirty:
                    self._after_assignment()
                if self._held:
                    batch = self._hold_back(batch)
                    self._finish_rebuild()
                if batch:
                    self._process_batch(batch, received_ns)
                due = time.monotonic() - self._last_durable_monotonic >= self.commit_interval_s
                if (due or not batch) and not self._durable_point(retry=True):
                    time.sleep(0.5)  # a channel failed: back off before re-reading
                self._maybe_commit()
                self._update_lag()
            clean = True
        except BaseException as exc:
            self.error = exc
            log.exception("ally %s: consumer loop failed", self.ally.value)
        finally:
            self._shutdown(commit=clean)

    def _shutdown(self, commit: bool) -> None:
        try:
            if commit and self._durable_point(retry=False):
                self._commit_pending()
        except BaseException as exc:
            self.error = self.error or exc
            log.exception("ally %s: final commit failed", self.ally.value)
        finally:
            self._close_clients()

    def _close_clients(self) -> None:
        if self._consumer is not None:
            try:
                self._consumer.close()
            except Exception:
                log.exception("ally %s: closing the consumer failed", self.ally.value)
        if self._producer is not None:
            try:
                self._producer.close(timeout=self.flush_timeout_s)
            except Exception:
                log.exception("ally %s: closing the producer failed", self.ally.value)

    def _process_batch(self, batch: dict[Any, list[Any]], received_ns: int) -> None:
        """Fan out one poll's records; they become committable at the next durable point."""
        for tp, records in batch.items():
            if not records:
                continue
            key = (tp.topic, tp.partition)
            self._undurable_first.setdefault(key, records[0].offset)
            self._undurable_next[key] = records[-1].offset + 1
            for record in records:
                self._handle(record, received_ns, self._undurable_ids)
        with self._lock:
            self._positions.update({k: v for k, v in self._undurable_next.items()})
        self.metrics.dedup_window_ids.labels(self.ally.value).set(len(self.window))

    def _durable_point(self, *, retry: bool) -> bool:
        """Wait until every channel has what was fanned out since the last durable point, then
        make those offsets committable. On a channel failure forget the ids (so the records are
        delivered again) and, when ``retry``, seek back to re-read them; returns success."""
        if not self._undurable_next:
            return True
        try:
            self._make_durable()
        except ChannelDeliveryError as exc:
            log.warning("ally %s: records not delivered, retrying: %s", self.ally.value, exc)
            for event_id in self._undurable_ids:
                self.window.discard(event_id)
            if retry:
                for (topic, partition), offset in self._undurable_first.items():
                    try:
                        kafka_io.seek(self._consumer, topic, partition, offset)
                    except Exception:  # no longer assigned: its next owner reads it again
                        log.info("ally %s: %s/%s moved before its retry", self.ally.value, topic, partition)
            self._clear_undurable()
            return False
        with self._lock:
            self._pending_commit.update(self._undurable_next)
        self._clear_undurable()
        return True

    def _clear_undurable(self) -> None:
        self._undurable_first = {}
        self._undurable_next = {}
        self._undurable_ids = []
        self._last_durable_monotonic = time.monotonic()

    def _make_durable(self) -> None:
        """Wait for the batch's Kafka acks and fsync the audit file; raise when a channel failed."""
        from kafka.errors import KafkaTimeoutError

        try:
            self._producer.flush(timeout=self.flush_timeout_s)
        except KafkaTimeoutError as exc:
            self._count_failure("kafka", "kafka_flush_timeout")
            raise ChannelDeliveryError(
                "kafka_flush_timeout", f"acks not received in {self.flush_timeout_s} s"
            ) from exc
        with self._lock:
            errors, self._send_errors = self._send_errors, []
        if errors:
            channel, first = errors[0]
            reason = "dead_letter_failed" if channel == "dead_letter" else "kafka_send_failed"
            self._count_failure(channel, reason)
            raise ChannelDeliveryError(reason, f"{len(errors)} record(s) refused: {first!r}")
        if self.audit is not None:
            try:
                self.audit.sync()
            except ChannelDeliveryError as exc:
                self._count_failure("audit", exc.reason)
                raise

    def _handle(self, record: Any, received_ns: int, new_ids: list[UUID]) -> None:
        try:
            event = self._decode(record)
        except DeserializationError as exc:
            reason = exc.reason if exc.reason in DLQ_REASONS else UNEXPECTED_REASON
            self._dead_letter(record, reason, exc.message)
            return
        except Exception as exc:  # a bug in decoding must not stop the service
            self._dead_letter(record, UNEXPECTED_REASON, f"{type(exc).__name__}: {exc}")
            return
        kind = event.kind.value
        headers = record.headers or []
        sent_ns = self._sent_ns(headers)
        append_ns = (
            record.timestamp * 1_000_000 if record.timestamp_type == kafka_io.LOG_APPEND_TIME else None
        )
        metrics = self.metrics
        metrics.received_by_kind[kind].inc()
        with self._lock:
            self._counts["received"][kind] += 1
            if append_ns is not None:
                self._last_append_ns = append_ns
        if sent_ns is not None and append_ns is not None:
            self.latency.record_ns("send_to_append", kind, NO_CHANNEL, append_ns - sent_ns)
        if append_ns is not None:
            self.latency.record_ns("append_to_receive", kind, NO_CHANNEL, received_ns - append_ns)
        if sent_ns is not None and kafka_io.header_value(headers, PACING_HEADER) == REALTIME_PACING:
            self.latency.record_ns(
                "sensor_to_send", kind, NO_CHANNEL, sent_ns - datetime_ns(event.header.measured_at)
            )

        withheld = withhold_reason(self.ally, event, self.policy)
        if withheld is not None:
            metrics.withheld_by_kind[kind].inc()
            with self._lock:
                self._counts["withheld"][kind] += 1
                self._counts["withheld_by_reason"][withheld.value] += 1
            return
        if event.kind is EventKind.SENSOR_STATUS:
            metrics.sensor_seen(event.header.sensor_id, received_ns / 1e9)
        if not self.window.check_and_add(event.header.event_id):
            metrics.duplicates_child.inc()
            with self._lock:
                self._duplicates += 1
            return
        new_ids.append(event.header.event_id)
        first = self.launches.note(event, sent_ns=sent_ns, append_ns=append_ns, received_ns=received_ns)
        self._deliver_kafka(record, event.kind, received_ns, sent_ns, first)
        need_json = self.audit is not None or self.hub.subscriber_count > 0
        event_json = event.model_dump_json().encode() if need_json else b""
        if self.hub.subscriber_count:
            frame = sse_frame(str(event.header.event_id), kind, event_json)
            if self.hub.publish(SseItem(event.kind, frame, received_ns, sent_ns)):
                now_ns = time.time_ns()
                metrics.delivered_by[(kind, "sse")].inc()
                with self._lock:
                    self._counts["delivered.sse"][kind] += 1
                if first is not None:
                    self.launches.delivered(first, "sse", now_ns)
        if self.audit is not None:
            self._deliver_audit(
                record,
                event=event,
                event_json=event_json,
                received_ns=received_ns,
                sent_ns=sent_ns,
                append_ns=append_ns,
                first=first,
            )

    def _decode(self, record: Any) -> WarningEvent:
        if record.value is None:
            raise EmptyRecordError("the record has no value")
        parsed = parse_headers(record.headers or [])
        event = decode_event(record.value)
        try:
            verify_headers_match(parsed, event)
        except BadHeaderError as exc:
            raise HeaderMismatchError(exc.message) from None
        return event

    @staticmethod
    def _sent_ns(headers: list[tuple[str, bytes]]) -> int | None:
        raw = kafka_io.header_value(headers, SENT_NS_HEADER)
        return None if raw is None else decode_sent_ns(raw)

    def _deliver_kafka(
        self, record: Any, kind: EventKind, received_ns: int, sent_ns: int | None, first: FirstDelivery | None
    ) -> None:
        headers = [
            *(record.headers or []),
            (ALLY_HEADER, self.ally.value.encode("ascii")),
            (INSTANCE_HEADER, self.instance_id.encode("utf-8")),
            (RECEIVED_NS_HEADER, encode_sent_ns(received_ns)),
            (SOURCE_HEADER, f"{record.topic}/{record.partition}/{record.offset}".encode()),
        ]
        future = self._producer.send(self.output_topic, value=record.value, key=record.key, headers=headers)
        future.add_callback(self._on_kafka_ack, kind.value, received_ns, sent_ns, first)
        future.add_errback(self._on_send_error, "kafka")

    def _on_kafka_ack(
        self, kind: str, received_ns: int, sent_ns: int | None, first: FirstDelivery | None, _metadata: Any
    ) -> None:
        now_ns = time.time_ns()
        self.latency.record_ns("receive_to_deliver", kind, "kafka", now_ns - received_ns)
        if sent_ns is not None:
            self.latency.record_ns("end_to_end", kind, "kafka", now_ns - sent_ns)
        self.metrics.delivered_by[(kind, "kafka")].inc()
        with self._lock:
            self._counts["delivered.kafka"][kind] += 1
        if first is not None:
            self.launches.delivered(first, "kafka", now_ns)

    def _on_send_error(self, channel: str, exc: BaseException) -> None:
        with self._lock:
            self._send_errors.append((channel, exc))

    def _deliver_audit(
        self,
        record: Any,
        *,
        event: WarningEvent,
        event_json: bytes,
        received_ns: int,
        sent_ns: int | None,
        append_ns: int | None,
        first: FirstDelivery | None,
    ) -> None:
        assert self.audit is not None
        kind = event.kind.value
        header = event.header
        meta = {
            "ally": self.ally.value,
            "instance_id": self.instance_id,
            "event_id": str(header.event_id),
            "kind": kind,
            "correlation_key": header.correlation_key,
            "sensor_id": header.sensor_id,
            "sensor_nation": header.sensor_nation.value,
            "source": f"{record.topic}/{record.partition}/{record.offset}",
            "sent_ns": sent_ns,
            "append_ns": append_ns,
            "received_ns": received_ns,
            "delivered_ns": time.time_ns(),
        }
        line = json.dumps(meta, separators=(",", ":")).encode()[:-1] + b',"event":' + event_json + b"}\n"
        try:
            self.audit.append(line)
        except ChannelDeliveryError as exc:
            self._count_failure("audit", exc.reason)
            raise
        now_ns = time.time_ns()
        self.latency.record_ns("receive_to_deliver", kind, "audit", now_ns - received_ns)
        if sent_ns is not None:
            self.latency.record_ns("end_to_end", kind, "audit", now_ns - sent_ns)
        self.metrics.delivered_by[(kind, "audit")].inc()
        with self._lock:
            self._counts["delivered.audit"][kind] += 1
        if first is not None:
            self.launches.delivered(first, "audit", now_ns)

    def _dead_letter(self, record: Any, reason: str, message: str) -> None:
        headers = dead_letter_headers(
            record.headers,
            reason=reason,
            error=message,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            ally=self.ally.value,
        )
        future = self._producer.send(
            self.dead_letter_topic, value=record.value, key=record.key, headers=headers
        )
        future.add_errback(self._on_send_error, "dead_letter")
        self.metrics.dead_letters.labels(self.ally.value, reason).inc()
        with self._lock:
            self._counts["dead_letters"][reason] += 1

    # ---------------------------------------------------------------- SSE callbacks (writer threads)

    def _on_sse_written(self, items: list[SseItem], written_ns: int) -> None:
        for item in items:
            kind = item.kind.value
            self.latency.record_ns("receive_to_deliver", kind, "sse", written_ns - item.received_ns)
            if item.sent_ns is not None:
                self.latency.record_ns("end_to_end", kind, "sse", written_ns - item.sent_ns)

    def _on_sse_disconnect(self, reason: str) -> None:
        self.metrics.subscriber_disconnects.labels(self.ally.value, "sse", reason).inc()

    def _count_drop(self, dropped: int) -> None:
        self.metrics.sse_drops_child.inc(dropped)
        with self._lock:
            self._drops += dropped

    def _count_failure(self, channel: str, reason: str) -> None:
        self.metrics.delivery_failures.labels(self.ally.value, channel, reason).inc()
        with self._lock:
            self._counts["delivery_failures"][f"{channel}/{reason}"] += 1

    # ---------------------------------------------------------------- offsets and rebalancing

    def _on_revoked(self, partitions: list[tuple[str, int]]) -> kafka_io.Offsets:
        """IO thread, before partitions are given up (the loop thread waits in ``poll``): make what
        was fanned out durable and hand over the delivered, uncommitted offsets to commit."""
        self.metrics.rebalances.labels(self.ally.value, "revoked").inc()
        self._durable_point(retry=True)
        gone = set(partitions)
        with self._lock:
            offsets = {tp: o for tp, o in self._pending_commit.items() if tp in gone}
            for tp in offsets:
                del self._pending_commit[tp]
            self._assigned -= gone
        return offsets

    def _on_lost(self, partitions: list[tuple[str, int]]) -> None:
        self.metrics.rebalances.labels(self.ally.value, "lost").inc()
        gone = set(partitions)
        with self._lock:
            for tp in gone:
                self._pending_commit.pop(tp, None)
            self._assigned -= gone

    def _on_assigned(self, partitions: list[tuple[str, int]]) -> None:
        """IO thread, after a rebalance: note the new assignment (the loop thread does the work)."""
        self.metrics.rebalances.labels(self.ally.value, "assigned").inc()
        with self._lock:
            self._assigned |= set(partitions)
            self._assignment_dirty = True
        if self.from_beginning:
            fresh = [tp for tp in partitions if tp not in self._reset_done]
            kafka_io.seek_to_beginning(self._consumer, fresh)
            self._reset_done.update(fresh)

    def _after_assignment(self) -> None:
        """Loop thread: resolve and pin starting positions, then rebuild the de-duplication window.

        The rebuild reads the ally topic's tail on a worker thread while the newly assigned
        partitions stay paused: the loop keeps polling (so the group's join and sync complete
        and heartbeats flow) but delivers nothing until the window knows what was delivered.
        """
        with self._lock:
            self._assignment_dirty = False
            assigned = sorted(self._assigned)
        initial: kafka_io.Offsets = {}
        for topic, partition in assigned:
            position = kafka_io.position(self._consumer, topic, partition)
            self._positions[(topic, partition)] = position
            if kafka_io.committed(self._consumer, topic, partition) is None:
                initial[(topic, partition)] = position
        # Pin where a fresh group starts, so a partition that moves to another instance before
        # anything is committed does not jump to that instance's "latest".
        kafka_io.commit(self._consumer, initial)
        if not self.rebuild_dedup:
            if assigned:
                self._ready.set()
            return
        self._rebuild_generation += 1
        generation = self._rebuild_generation
        self._held = set(assigned)
        kafka_io.pause(self._consumer, assigned)
        self._rebuild_result = None
        worker = threading.Thread(
            target=self._rebuild_worker, args=(generation,), name=f"{self.client_id}-rebuild", daemon=True
        )
        worker.start()

    def _rebuild_worker(self, generation: int) -> None:
        try:
            tail = kafka_io.read_tail_event_ids(
                self.bootstrap, self.output_topic, self.rebuild_per_partition, total=self.window.capacity
            )
            result: tuple[int, list[tuple[int, int, int, UUID]] | None, BaseException | None] = (
                generation,
                tail,
                None,
            )
        except BaseException as exc:
            result = (generation, None, exc)
        with self._lock:
            self._rebuild_result = result

    def _hold_back(self, batch: dict[Any, list[Any]]) -> dict[Any, list[Any]]:
        """Records a poll returned for partitions still paused for the rebuild are not delivered
        yet: rewind to the first of them so they are fetched again after the rebuild."""
        kept: dict[Any, list[Any]] = {}
        for tp, records in batch.items():
            if records and (tp.topic, tp.partition) in self._held:
                kafka_io.seek(self._consumer, tp.topic, tp.partition, records[0].offset)
            else:
                kept[tp] = records
        return kept

    def _finish_rebuild(self) -> None:
        """Loop thread: once the worker of the current generation is done, load and resume."""
        with self._lock:
            result = self._rebuild_result
        if result is None:
            return
        generation, tail, error = result
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
            assert tail is not None
            held = self.window.load(rebuild_order(tail, self.window.capacity))
            log.info("ally %s: de-duplication window rebuilt with %d ids", self.ally.value, held)
        with self._lock:
            still = sorted(self._held & self._assigned)
        kafka_io.resume(self._consumer, still)
        self._held = set()
        if still:
            self._ready.set()

    def _maybe_commit(self) -> None:
        if time.monotonic() - self._last_commit_monotonic >= self.commit_interval_s:
            self._commit_pending()

    def _commit_pending(self) -> None:
        with self._lock:
            offsets, self._pending_commit = self._pending_commit, {}
        if offsets:
            kafka_io.commit(self._consumer, offsets)
        self._last_commit_monotonic = time.monotonic()

    def _update_lag(self) -> None:
        now_ns = time.time_ns()
        with self._lock:
            assigned = sorted(self._assigned)
        per_topic: dict[str, int] = dict.fromkeys(self.input_topics, 0)
        for topic, partition in assigned:
            end = kafka_io.highwater(self._consumer, topic, partition)
            position = self._positions.get((topic, partition))
            if end is not None and position is not None:
                per_topic[topic] = per_topic.get(topic, 0) + max(end - position, 0)
        for topic, lag in per_topic.items():
            self.metrics.lag_records.labels(self.ally.value, topic).set(lag)
        behind = sum(per_topic.values()) > 0 and self._last_append_ns is not None
        lag_s = max(now_ns - (self._last_append_ns or now_ns), 0) / 1e9 if behind else 0.0
        self.metrics.lag_seconds.labels(self.ally.value).set(lag_s)
        with self._lock:
            self._lag_records = per_topic
            self._lag_seconds = lag_s

    # ---------------------------------------------------------------- health and report

    def health(self) -> tuple[bool, dict[str, Any]]:
        """(healthy, detail): the loop runs, partitions are set up and poll was called recently."""
        age = None if self._last_poll_monotonic is None else time.monotonic() - self._last_poll_monotonic
        problems = []
        if not self.running:
            problems.append("consumer loop not running")
        if self.error is not None:
            problems.append(f"error: {self.error}")
        if not self._ready.is_set():
            problems.append("partitions not assigned yet")
        if age is None or age > self.unhealthy_poll_age_s:
            problems.append(f"no poll for over {self.unhealthy_poll_age_s} s")
        with self._lock:
            assigned = [f"{t}/{p}" for t, p in sorted(self._assigned)]
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
        with self._lock:
            return [f"{t}/{p}" for t, p in sorted(self._assigned)]

    def delivered_count(self, channel: str = "kafka") -> int:
        """Events delivered on ``channel`` so far (kafka counts acknowledged records)."""
        with self._lock:
            return sum(self._counts[f"delivered.{channel}"].values())

    def count(self, name: str) -> int:
        """Total of one report counter: received, withheld, dead_letters, duplicates_suppressed..."""
        with self._lock:
            if name == "duplicates_suppressed":
                return self._duplicates
            if name == "subscriber_drops":
                return self._drops
            return sum(self._counts[name].values())

    def report(self) -> dict[str, Any]:
        """Counts, latency percentiles and per-launch first deliveries (format: module docstring)."""
        with self._lock:
            counts: dict[str, Any] = {
                "received": dict(self._counts["received"]),
                "withheld": dict(self._counts["withheld"]),
                "withheld_by_reason": dict(self._counts["withheld_by_reason"]),
                "delivered": {
                    channel: dict(self._counts[f"delivered.{channel}"])
                    for channel in ("kafka", "sse", "audit")
                },
                "duplicates_suppressed": self._duplicates,
                "dead_letters": dict(self._counts["dead_letters"]),
                "subscriber_drops": {"sse": self._drops},
                "delivery_failures": dict(self._counts["delivery_failures"]),
            }
            assigned = [f"{t}/{p}" for t, p in sorted(self._assigned)]
        return {
            "ally": self.ally.value,
            "instance_id": self.instance_id,
            "group_id": self.group_id,
            "clock_domain": "host",
            "counts": counts,
            "latency": self.latency.rows(),
            "launches": self.launches.as_dict(),
            "dedup_window_ids": len(self.window),
            "assigned_partitions": assigned,
            "error": None if self.error is None else str(self.error),
        }

    def raise_if_failed(self) -> None:
        """Re-raise the loop's error as a :class:`TrilinkError` (for the CLI)."""
        if self.error is None:
            return
        if isinstance(self.error, TrilinkError):
            raise self.error
        raise AllyServiceError(
            "consumer_loop_failed", f"the consumer loop stopped: {self.error!r}"
        ) from self.error
