"""The consume loop an ally service and the US hub share: poll, hand each record to the
service, and commit only what every channel made durable.

A :class:`ConsumeLoop` owns the consumer and the producer, the open :class:`Checkpoint` and the
closed ones waiting to be durable, the offsets to commit, the rebalance callbacks, what to do
when ``poll`` raises, the lag probe and the loop thread. What differs between the services
comes in as :class:`LoopHooks`: how to handle one record, what to count where, what to forget
before a re-read, and what to do once partitions are assigned.

Durable points (as :mod:`consumers.channels` describes them): the open checkpoint collects what
one or more polls fanned out; every ``commit_interval_s`` (and whenever a poll comes back
empty) it is closed, and once every send under it was answered, and the synced file (an ally's
audit log, when it has one) was fsync-ed past it, its offsets become committable, in order. A
checkpoint with a failure makes the loop re-read from its first offsets. Partition revoke and
shutdown wait for all of it (:meth:`ConsumeLoop.settle_all`).

The per-record path is the service's ``handle``, called directly from the loop over one poll's
records (no wrapper per record); everything else here runs once a poll at most.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any, Protocol

from kafka.errors import FencedInstanceIdError

from consumers import kafka_io
from consumers.channels import Checkpoint, DeadLetterCounter, DeadLetters, skip_unparseable
from consumers.errors import UNEXPECTED_REASON, ChannelDeliveryError, FencedMemberError
from consumers.ports import ConsumerFactory, GroupLeaver, ProducerFactory, UnparseableLocator
from trilink.errors import ConfigError, DeserializationError
from trilink.monitoring.discovery import announce, withdraw
from trilink.pacing import linger_after_poll
from trilink.settings import Settings

log = logging.getLogger(__name__)

#: How often the loop folds the ledger's pending samples into its histograms. A fold costs
#: about a millisecond whatever it holds (numpy per series), so folding at every commit
#: interval (0.2 s) cost the ally services 8 % of their loop thread at the demo's peak; the
#: pending samples of one second are a few hundred kB at most.
FOLD_INTERVAL_S = 1.0

__all__ = [
    "Batch",
    "ConsumeLoop",
    "LoopHooks",
    "Partition",
    "PrometheusTarget",
    "ServiceOptions",
    "SyncedLog",
    "check_offset_reset",
]

#: One poll's records: ``{TopicPartition: [record, ...]}`` as kafka-python returns them.
Batch = dict[Any, list[Any]]
Partition = tuple[str, int]


class ServiceOptions(Protocol):
    """The options of a service the loop takes over when it is made (the services' attributes)."""

    bootstrap: str
    group_id: str
    client_id: str
    #: Set: a static member of its group (see :class:`ConsumeLoop`).
    group_instance_id: str | None
    input_topics: tuple[str, ...]
    dead_letter_topic: str
    offset_reset: str
    max_poll_records: int
    poll_timeout_ms: int
    poll_linger_ms: int
    commit_interval_s: float
    flush_timeout_s: float
    unhealthy_poll_age_s: float


class SyncedLog(Protocol):
    """A file made durable at durable points (an ally's :class:`consumers.audit.AuditLog`)."""

    def request_sync(self) -> int: ...

    def synced(self) -> int: ...

    def sync(self) -> None: ...


def in_partition_order(batch: Batch, received_ns: int) -> Iterable[Any]:
    """The default order: partition by partition, each in offset order."""
    return chain.from_iterable(batch.values())


@dataclass(frozen=True, slots=True)
class LoopHooks:
    """What a service plugs into its :class:`ConsumeLoop` (loop thread unless said otherwise).

    - ``handle(record, received_ns, checkpoint)``: one record; raising dead-letters it.
    - ``count_failure(channel, reason)``: a failure the loop met (``consumer``/``poll_failed``,
      ``consumer``/``commit_failed`` (IO thread), ``consumer``/``rejoin``,
      ``kafka``/``kafka_flush_timeout`` and ``audit``/``audit_write_failed`` at a blocking
      durable point).
    - ``retrying(checkpoints)``: these will be read again (count their failures, forget ids).
    - ``lag(per_topic)``: records behind per input topic, every ``lag_interval_s``.
    - ``fold()``: fold the ledger's samples, once every :data:`FOLD_INTERVAL_S` (readers of
      the ledger fold on their own, so what they show is never older than they are).
    - ``order(batch, received_ns)``: one poll's records in the order to handle them.
    - ``end_batch(checkpoint)``: after one poll's records were handled.
    - ``abandoned(checkpoint)``: a blocking durable point could not make it durable (it is
      read again by whoever owns its partitions next).
    - ``assigned(partitions)``: after an assignment's positions are pinned; False holds back
      readiness until the service calls :meth:`ConsumeLoop.release`.
    - ``holding()``: each poll while partitions are held (:meth:`ConsumeLoop.hold`).
    - ``rebalanced(what)``: IO thread, ``assigned``, ``revoked`` or ``lost``.
    """

    handle: Callable[[Any, int, Checkpoint], None]
    count_failure: Callable[[str, str], None]
    retrying: Callable[[Sequence[Checkpoint]], None]
    lag: Callable[[dict[str, int]], None]
    fold: Callable[[], None]
    order: Callable[[Batch, int], Iterable[Any]] = in_partition_order
    end_batch: Callable[[Checkpoint], None] | None = None
    abandoned: Callable[[Checkpoint], None] | None = None
    assigned: Callable[[list[Partition]], bool] | None = None
    holding: Callable[[], None] | None = None
    rebalanced: Callable[[str], None] | None = None


def check_offset_reset(offset_reset: str) -> str:
    """``offset_reset`` as given, if it is ``latest`` or ``earliest`` (else a ConfigError)."""
    if offset_reset not in ("latest", "earliest"):
        raise ConfigError("invalid_option", f"offset_reset must be latest or earliest, got {offset_reset!r}")
    return offset_reset


class ConsumeLoop:
    """One consumer group member's loop thread, its checkpoints, commits and rebalancing.

    ``options`` are read once, here. ``who`` prefixes its log lines (``ally JP``, ``hub``),
    ``name`` is what health calls the loop (``consumer loop``). ``rejoin_after_s`` (None: never):
    leave and join the group again when no partition arrived that long after joining.
    ``from_beginning``: seek each newly assigned partition to its beginning once."""

    def __init__(
        self,
        hooks: LoopHooks,
        options: ServiceOptions,
        *,
        who: str,
        name: str,
        lag_interval_s: float,
        dead_letter_ally: str,
        dead_letter_counter: DeadLetterCounter,
        dead_letter_reasons: Collection[str],
        producer_factory: ProducerFactory | None = None,
        consumer_factory: ConsumerFactory | None = None,
        locate_unparseable: UnparseableLocator | None = None,
        leave_group: GroupLeaver | None = None,
        rejoin_after_s: float | None = None,
        from_beginning: bool = False,
    ) -> None:
        self.who = who
        self.name = name
        self.bootstrap = options.bootstrap
        self.group_id = options.group_id
        self.client_id = options.client_id
        self.group_instance_id = options.group_instance_id
        self.input_topics = options.input_topics
        self.offset_reset = options.offset_reset
        self.max_poll_records = options.max_poll_records
        self.poll_timeout_ms = options.poll_timeout_ms
        #: :func:`trilink.pacing.linger_after_poll` (``Settings.poll_linger_ms``).
        self.poll_linger_ns = options.poll_linger_ms * 1_000_000
        self.commit_interval_s = options.commit_interval_s
        self.flush_timeout_s = options.flush_timeout_s
        self.unhealthy_poll_age_s = options.unhealthy_poll_age_s
        self.lag_interval_s = lag_interval_s
        self.rejoin_after_s = rejoin_after_s
        self.from_beginning = from_beginning
        self._hooks = hooks
        self._consumer_factory = consumer_factory or kafka_io.new_consumer
        self._producer_factory = producer_factory or kafka_io.new_producer
        self._locate_unparseable = locate_unparseable or kafka_io.locate_unparseable
        self._leave_group = leave_group or kafka_io.leave_group
        self._dead_letter = (options.dead_letter_topic, dead_letter_ally, dead_letter_counter)
        self._dead_letter_reasons = dead_letter_reasons

        self.consumer: Any = None
        self.producer: Any = None
        self.dead: DeadLetters | None = None
        #: Made durable at every durable point before a commit (set before :meth:`start`).
        self.audit: SyncedLog | None = None
        self.error: BaseException | None = None
        self.ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()  # pending offsets, positions, assignment
        self._listener: Any = None
        self._pending_commit: kafka_io.Offsets = {}
        self.positions: kafka_io.Offsets = {}
        self.assigned: set[Partition] = set()
        #: Assigned partitions kept paused until the service calls :meth:`release`.
        self.held: set[Partition] = set()
        self._assignment_dirty = False
        self._reset_done: set[Partition] = set()
        self.last_poll_monotonic: float | None = None
        self._last_lag_monotonic = 0.0
        self._last_commit_monotonic = 0.0
        self._last_fold_monotonic = 0.0
        self._joined_monotonic = 0.0
        self._poll_failures = 0
        # Checkpoints: the open one collects what is fanned out; closed ones wait to be durable.
        self.open = Checkpoint()
        self._open_since = time.monotonic()
        self._closed: deque[Checkpoint] = deque()

    # ---------------------------------------------------------------- lifecycle

    def connect(self) -> None:
        """Create the producer and the consumer, subscribe, and set up the dead letters (the
        caller closes the clients with :meth:`close_clients` when this or its own set-up fails).
        A service whose loop started once cannot connect again."""
        if self._thread is not None:
            raise ConfigError("already_started", f"{self.who}: a service can be started once")
        self.producer = self._producer_factory(self.bootstrap, self.client_id)
        self.consumer = self._consumer_factory(
            self.bootstrap,
            self.group_id,
            self.client_id,
            offset_reset=self.offset_reset,
            max_poll_records=self.max_poll_records,
            group_instance_id=self.group_instance_id,
        )
        listener = kafka_io.make_listener(
            self._on_revoked, self._on_assigned, self._on_lost, lambda: self.consumer
        )
        kafka_io.ensure_metadata(self.consumer, self.input_topics)
        # Know every input topic's partitions before joining: a join on partial metadata is
        # followed at once by a second rebalance, which kafka-python 3.0 can leave hanging.
        for topic in self.input_topics:
            self.consumer.partitions_for_topic(topic)
        self._listener = listener
        self.consumer.subscribe(list(self.input_topics), listener=listener)
        self._joined_monotonic = time.monotonic()
        topic, ally, counter = self._dead_letter
        self.dead = DeadLetters(self.producer, topic, ally, counter)

    def start(self) -> None:
        """Start the loop thread."""
        self._thread = threading.Thread(target=self._run, name=f"{self.client_id}-loop", daemon=True)
        self._thread.start()

    def request_stop(self) -> None:
        """Ask the loop to stop after its current batch (safe from a signal handler)."""
        self._stop.set()

    def stop(self, timeout_s: float) -> None:
        """Stop after the current batch and wait for the loop's settle, commit and close."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wait_ready(self, timeout_s: float) -> bool:
        """True once partitions are assigned and the service let them go (False: timeout or the loop ended)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.ready.wait(0.05):
                return True
            if self._thread is not None and not self._thread.is_alive():
                return False
        return self.ready.is_set()

    def close_clients(self) -> None:
        if self.consumer is not None:
            try:
                self.consumer.close()
            except Exception:
                log.exception("%s: closing the consumer failed", self.who)
        if self.producer is not None:
            try:
                self.producer.close(timeout=self.flush_timeout_s)
            except Exception:
                log.exception("%s: closing the producer failed", self.who)

    # ---------------------------------------------------------------- health

    def assigned_partitions(self) -> list[Partition]:
        with self._lock:
            return sorted(self.assigned)

    def health(self) -> tuple[list[str], float | None]:
        """(problems, seconds since the last poll): the loop runs, partitions are set up, it polls."""
        age = None if self.last_poll_monotonic is None else time.monotonic() - self.last_poll_monotonic
        problems = []
        if not self.running:
            problems.append(f"{self.name} not running")
        if self.error is not None:
            problems.append(f"error: {self.error}")
        if not self.ready.is_set():
            problems.append("partitions not assigned yet")
        if age is None or age > self.unhealthy_poll_age_s:
            problems.append(f"no poll for over {self.unhealthy_poll_age_s} s")
        return problems, age

    # ---------------------------------------------------------------- the loop

    def _run(self) -> None:
        hooks = self._hooks
        clean = False
        try:
            while not self._stop.is_set():
                try:
                    batch = self.consumer.poll(
                        timeout_ms=self.poll_timeout_ms, max_records=self.max_poll_records
                    )
                except FencedInstanceIdError:  # a newer process holds this identity: give way
                    raise FencedMemberError(self.group_instance_id or "?", self.group_id) from None
                except Exception as exc:  # the library could not fetch or parse: never a reason to stop
                    self._on_poll_error(exc)
                    continue
                self._poll_failures = 0
                received_ns = time.time_ns()
                now = self.last_poll_monotonic = time.monotonic()
                if self._assignment_dirty:
                    self._after_assignment()
                if self.held:
                    batch = self._hold_back(batch)
                    if hooks.holding is not None:
                        hooks.holding()
                if batch:
                    self._process_batch(batch, received_ns)
                self._advance(now, idle=not batch)
                if (
                    self.rejoin_after_s is not None
                    and not self.assigned
                    and not self.ready.is_set()
                    and now - self._joined_monotonic > self.rejoin_after_s
                ):
                    self._rejoin()
                if now - self._last_lag_monotonic >= self.lag_interval_s:
                    self._last_lag_monotonic = now
                    self._update_lag()
                linger_after_poll(batch, int(now * 1e9), self.poll_linger_ns, self._stop)
            clean = True
        except BaseException as exc:
            self.error = exc
            log.exception("%s: %s failed", self.who, self.name)
        finally:
            self._shutdown(commit=clean)

    def _shutdown(self, commit: bool) -> None:
        try:
            if commit:
                offsets = self.settle_all()
                with self._lock:
                    self._pending_commit.update(offsets)
                self._commit_pending(sync=True)
        except BaseException as exc:
            self.error = self.error or exc
            log.exception("%s: final commit failed", self.who)
        finally:
            self.close_clients()
        if commit and self.group_instance_id is not None:
            self._leave()

    def _leave(self) -> None:
        """A static member that stops cleanly leaves its group itself (kafka-python's ``close``
        does not), so the partitions go to the group's other members at once. A crashed process
        never gets here (its successor takes its place), nor does a fenced one (its identity is
        a newer process's now)."""
        assert self.group_instance_id is not None
        try:
            self._leave_group(self.bootstrap, self.group_id, self.group_instance_id, self.client_id)
        except Exception as exc:
            log.warning(
                "%s: leaving group %s failed (its partitions move when the session expires): %r",
                self.who,
                self.group_id,
                exc,
            )

    def _process_batch(self, batch: Batch, received_ns: int) -> None:
        """Hand one poll's records to the service; they become committable once their checkpoint
        is durable. Whatever goes wrong with one record ends with that record dead-lettered (or
        withheld, or delivered) and the loop going on: no record can stop the service."""
        checkpoint = self.open
        first, after = checkpoint.first, checkpoint.next
        for tp, records in batch.items():
            if records:
                key = (tp.topic, tp.partition)
                first.setdefault(key, records[0].offset)
                after[key] = records[-1].offset + 1
        hooks = self._hooks
        handle = hooks.handle
        for record in hooks.order(batch, received_ns):
            try:
                handle(record, received_ns, checkpoint)
            except Exception as exc:
                self.isolate(record, exc, checkpoint)
        if hooks.end_batch is not None:
            hooks.end_batch(checkpoint)
        with self._lock:
            self.positions.update(after)

    def isolate(self, record: Any, exc: Exception, checkpoint: Checkpoint) -> None:
        """Dead-letter ``record`` for ``exc``: a typed reason for bad input, ``unexpected`` else.
        A dead letter the client cannot send even reduced fails the checkpoint (read again)."""
        if isinstance(exc, DeserializationError):
            reason = exc.reason if exc.reason in self._dead_letter_reasons else UNEXPECTED_REASON
            message = exc.message
        else:
            reason = UNEXPECTED_REASON
            message = f"{type(exc).__name__}: {exc}"
            log.warning(
                "%s: record %s/%s/%s dead-lettered: %s",
                self.who,
                record.topic,
                record.partition,
                record.offset,
                message,
            )
        assert self.dead is not None
        try:
            self.dead.send(
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
        """Close the open checkpoint when due, make closed ones committable in order, commit."""
        if self.open.next and (idle or now - self._open_since >= self.commit_interval_s):
            self._close_open(now)
        while self._closed:
            head = self._closed[0]
            if not head.settled():
                if head.closed_monotonic is not None and now - head.closed_monotonic > self.flush_timeout_s:
                    head.failed.append(("kafka", None, f"acks not received in {self.flush_timeout_s} s"))
                    self._retry()
                break
            if self.audit is not None:
                try:
                    if self.audit.synced() < head.audit_generation:
                        break
                except ChannelDeliveryError as exc:
                    head.failed.extend(("audit", event_id, exc.reason) for event_id in head.ids)
            if head.failed:
                self._retry()
                break
            self._closed.popleft()
            with self._lock:  # a partition lost or revoked meanwhile is its next owner's to commit
                self._pending_commit.update((tp, o) for tp, o in head.next.items() if tp in self.assigned)
        if now - self._last_commit_monotonic >= self.commit_interval_s:
            self._commit_pending(sync=False)  # at most once a commit interval
        if now - self._last_fold_monotonic >= FOLD_INTERVAL_S:
            self._last_fold_monotonic = now
            self._hooks.fold()

    def _close_open(self, now: float) -> None:
        checkpoint = self.open
        checkpoint.closed_monotonic = now
        if self.audit is not None:
            checkpoint.audit_generation = self.audit.request_sync()
        self._closed.append(checkpoint)
        self.open = Checkpoint()
        self._open_since = now

    def _retry(self) -> None:
        """A channel did not take some records: wait for every send in flight (so every failure
        is known), let the service count and forget, and read everything not yet durable again
        from the first failed checkpoint on."""
        if self.open.next:
            self._close_open(time.monotonic())
        try:
            self.producer.flush(timeout=self.flush_timeout_s)
        except Exception as exc:
            log.warning("%s: flush before a retry failed: %r", self.who, exc)
        rewind: kafka_io.Offsets = {}
        for checkpoint in self._closed:
            for tp, offset in checkpoint.first.items():
                rewind[tp] = min(offset, rewind.get(tp, offset))
        self._hooks.retrying(self._closed)
        for (topic, partition), offset in rewind.items():
            try:
                kafka_io.seek(self.consumer, topic, partition, offset)
            except Exception:  # no longer assigned: its next owner reads it again
                log.info("%s: %s/%s moved before its retry", self.who, topic, partition)
        self._closed.clear()
        self._stop.wait(0.5)  # back off before re-reading

    def settle_all(self) -> kafka_io.Offsets:
        """Blocking durable point (revoke, shutdown): the offsets every channel made durable."""
        if self.open.next:
            self._close_open(time.monotonic())
        count_failure = self._hooks.count_failure
        try:
            self.producer.flush(timeout=self.flush_timeout_s)
        except Exception as exc:
            count_failure("kafka", "kafka_flush_timeout")
            log.warning("%s: acks missing at a durable point: %r", self.who, exc)
        audit_ok = True
        if self.audit is not None:
            try:
                self.audit.sync()
            except ChannelDeliveryError:
                count_failure("audit", "audit_write_failed")
                audit_ok = False
        offsets: kafka_io.Offsets = {}
        while self._closed:
            checkpoint = self._closed.popleft()
            if checkpoint.failed or not checkpoint.settled() or not audit_ok:
                if self._hooks.abandoned is not None:
                    self._hooks.abandoned(checkpoint)
                self._closed.clear()
                break
            offsets.update(checkpoint.next)
        return offsets

    def _commit_pending(self, *, sync: bool) -> None:
        with self._lock:
            offsets, self._pending_commit = self._pending_commit, {}
        if offsets:
            if sync:
                kafka_io.commit(self.consumer, offsets)
            else:
                kafka_io.commit_async(self.consumer, offsets, self._on_commit_failed)
        self._last_commit_monotonic = time.monotonic()

    def _on_commit_failed(self, offsets: kafka_io.Offsets, exc: BaseException) -> None:
        """An asynchronous commit failed: the next commit covers the same offsets (or the
        partitions' next owner reads them again); count it."""
        log.info("%s: commit failed, the next one covers it: %r", self.who, exc)
        self._hooks.count_failure("consumer", "commit_failed")
        with self._lock:
            for tp, offset in offsets.items():
                if tp in self.assigned and self._pending_commit.get(tp, -1) < offset:
                    self._pending_commit[tp] = offset

    # ---------------------------------------------------------------- rebalancing

    def _on_revoked(self, partitions: list[Partition]) -> kafka_io.Offsets:
        """IO thread, before partitions are given up (the loop thread waits in ``poll``): make what
        was fanned out durable and hand over the delivered, uncommitted offsets to commit."""
        if self._hooks.rebalanced is not None:
            self._hooks.rebalanced("revoked")
        self._joined_monotonic = time.monotonic()
        durable = self.settle_all()
        gone = set(partitions)
        with self._lock:
            self._pending_commit.update(durable)
            offsets = {tp: o for tp, o in self._pending_commit.items() if tp in gone}
            for tp in offsets:
                del self._pending_commit[tp]
            self.assigned -= gone
        return offsets

    def _on_lost(self, partitions: list[Partition]) -> None:
        if self._hooks.rebalanced is not None:
            self._hooks.rebalanced("lost")
        self._joined_monotonic = time.monotonic()
        gone = set(partitions)
        with self._lock:
            for tp in gone:
                self._pending_commit.pop(tp, None)
            self.assigned -= gone

    def _on_assigned(self, partitions: list[Partition]) -> None:
        """IO thread, after a rebalance: note the new assignment (the loop thread does the work)."""
        if self._hooks.rebalanced is not None:
            self._hooks.rebalanced("assigned")
        with self._lock:
            self.assigned |= set(partitions)
            self._assignment_dirty = True
        if self.from_beginning:
            fresh = [tp for tp in partitions if tp not in self._reset_done]
            kafka_io.seek_to_beginning(self.consumer, fresh)
            self._reset_done.update(fresh)

    def _after_assignment(self) -> None:
        """Loop thread: resolve and pin starting positions, then let the service set up."""
        with self._lock:
            self._assignment_dirty = False
            assigned = sorted(self.assigned)
        initial: kafka_io.Offsets = {}
        for topic, partition in assigned:
            position = kafka_io.position(self.consumer, topic, partition)
            self.positions[(topic, partition)] = position
            if kafka_io.committed(self.consumer, topic, partition) is None:
                initial[(topic, partition)] = position
        # Pin where a fresh group starts, so a partition that moves to another instance before
        # anything is committed does not jump to that instance's "latest".
        kafka_io.commit(self.consumer, initial)
        hook = self._hooks.assigned
        if (hook is None or hook(assigned)) and assigned:
            self.ready.set()

    def hold(self, partitions: list[Partition]) -> None:
        """Loop thread: pause ``partitions`` (newly assigned) until :meth:`release`; what a poll
        still returns for them is rewound and fetched again after."""
        self.held = set(partitions)
        kafka_io.pause(self.consumer, partitions)

    def release(self) -> None:
        """Loop thread: resume the held partitions still assigned, and count as ready."""
        with self._lock:
            still = sorted(self.held & self.assigned)
        kafka_io.resume(self.consumer, still)
        self.held = set()
        if still:
            self.ready.set()

    def _hold_back(self, batch: Batch) -> Batch:
        kept: Batch = {}
        for tp, records in batch.items():
            if records and (tp.topic, tp.partition) in self.held:
                kafka_io.seek(self.consumer, tp.topic, tp.partition, records[0].offset)
            else:
                kept[tp] = records
        return kept

    def _rejoin(self) -> None:
        """No partitions long after joining: leave the group and join again.

        kafka-python 3.0 can leave a rebalance unfinished when a second one follows the first
        at once (the group leader's metadata changed while it assigned): the member never gets
        an assignment and the service never becomes ready. Seen in about one service start in
        a hundred here; a fresh join recovers it."""
        log.warning(
            "%s: no partitions %.0f s after joining; joining the group again", self.who, self.rejoin_after_s
        )
        self._hooks.count_failure("consumer", "rejoin")
        self._joined_monotonic = time.monotonic()
        try:
            self.consumer.unsubscribe()
            self.consumer.subscribe(list(self.input_topics), listener=self._listener)
        except Exception as exc:
            log.warning("%s: joining again failed: %r", self.who, exc)

    def _on_poll_error(self, exc: Exception) -> None:
        """``poll`` raised: find a batch the library cannot parse and skip past it (with a
        dead-letter entry naming it), else back off and poll again."""
        self._poll_failures += 1
        self._hooks.count_failure("consumer", "poll_failed")
        log.warning("%s: poll failed (%d in a row): %r", self.who, self._poll_failures, exc)
        with self._lock:
            assigned = sorted(self.assigned - self.held)
        assert self.dead is not None
        skipped = skip_unparseable(
            self.consumer,
            self.bootstrap,
            assigned,
            locate=self._locate_unparseable,
            dead=self.dead,
            checkpoint=self.open,
            who=self.who,
        )
        if skipped is not None:
            with self._lock:
                self.positions[skipped[0]] = skipped[1]
            return
        self._stop.wait(min(0.05 * 2 ** min(self._poll_failures, 6), 2.0))

    def _update_lag(self) -> None:
        with self._lock:
            assigned = sorted(self.assigned)
        self._hooks.lag(kafka_io.lag_by_topic(self.consumer, assigned, self.positions, self.input_topics))


class PrometheusTarget:
    """A service's ``/metrics`` announced to the local Prometheus (file-based discovery) until
    withdrawn (:mod:`trilink.monitoring.discovery`)."""

    def __init__(self, job: str, instance: str, settings: Settings, who: str) -> None:
        self.job = job
        self.instance = instance
        self._settings = settings
        self._who = who
        self._announced = False

    def announce(self, port: int, labels: dict[str, str] | None = None) -> None:
        announce(self.job, self.instance, port, labels, settings=self._settings)
        self._announced = True

    def withdraw(self) -> None:
        """Remove the target file, if announced (never raises: a shutdown path)."""
        if not self._announced:
            return
        self._announced = False
        try:
            withdraw(self.job, self.instance, settings=self._settings)
        except Exception:
            log.exception("%s: withdrawing the Prometheus target failed", self._who)
