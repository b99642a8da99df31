"""The few kafka-python calls the ally service makes, behind small typed functions.

kafka-python has no type hints; ``Any`` stays at this boundary. Offsets are handled as plain
``{(topic, partition): next_offset}`` dicts everywhere else.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar
from uuid import UUID

from schemas.headers import CE_ID_HEADER
from trilink.errors import PlatformError
from trilink.latency import LOG_APPEND_TIME as LOG_APPEND_TIME  # noqa: PLC0414  # re-exported: kafka_io.LOG_APPEND_TIME
from trilink.platform.clients import admin_config, consumer_config, producer_config
from trilink.waiting import wait_until

Offsets = dict[tuple[str, int], int]
_A = TypeVar("_A")
_R = TypeVar("_R")


def new_consumer(
    bootstrap: str,
    group_id: str | None,
    client_id: str,
    *,
    offset_reset: str,
    max_poll_records: int,
    fetch_max_wait_ms: int | None = None,
    group_instance_id: str | None = None,
) -> Any:
    """A consumer with trilink's settings (auto-commit off); ``group_id`` None: group-less.
    ``fetch_max_wait_ms``: instead of the shared setting (``consumer_config``).
    ``group_instance_id``: a static member of its group (see ``ConsumeLoop``)."""
    from kafka import KafkaConsumer
    from kafka.errors import KafkaError

    overrides: dict[str, Any] = {} if fetch_max_wait_ms is None else {"fetch_max_wait_ms": fetch_max_wait_ms}
    if group_instance_id is not None:
        overrides["group_instance_id"] = group_instance_id
    try:
        return KafkaConsumer(
            **consumer_config(
                bootstrap,
                group_id,
                client_id,
                auto_offset_reset=offset_reset,
                max_poll_records=max_poll_records,
                **overrides,
            )
        )
    except KafkaError as exc:
        raise PlatformError(
            "bootstrap_unreachable", f"cannot connect a consumer to {bootstrap}: {exc!r}"
        ) from exc


def new_producer(bootstrap: str, client_id: str) -> Any:
    """An idempotent, acks=all producer with trilink's settings."""
    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    try:
        return KafkaProducer(**producer_config(bootstrap, client_id))
    except KafkaError as exc:
        raise PlatformError(
            "bootstrap_unreachable", f"cannot connect a producer to {bootstrap}: {exc!r}"
        ) from exc


def ensure_metadata(consumer: Any, topics: Iterable[str], timeout_s: float = 30.0) -> None:
    """Wait until the client knows the partitions of ``topics``: a group joined before that gets
    an empty assignment, and with ``latest`` it would skip what is produced meanwhile."""
    missing = list(topics)

    def known() -> bool:
        nonlocal missing
        missing = [t for t in missing if not consumer.partitions_for_topic(t)]
        return not missing

    if not wait_until(known, timeout_s, interval_s=0.1):
        raise PlatformError(
            "no_topic_metadata", f"no partitions known for {missing}; are the topics applied?"
        )


def pause(consumer: Any, partitions: list[tuple[str, int]]) -> None:
    if partitions:
        consumer.pause(*[topic_partition(t, p) for t, p in partitions])


def resume(consumer: Any, partitions: list[tuple[str, int]]) -> None:
    if partitions:
        consumer.resume(*[topic_partition(t, p) for t, p in partitions])


def topic_partition(topic: str, partition: int) -> Any:
    from kafka import TopicPartition

    return TopicPartition(topic, partition)


def make_listener(
    on_revoked: Callable[[list[tuple[str, int]]], Offsets],
    on_assigned: Callable[[list[tuple[str, int]]], None],
    on_lost: Callable[[list[tuple[str, int]]], None],
    consumer_ref: Callable[[], Any],
) -> Any:
    """A rebalance listener that commits what ``on_revoked`` returns before giving partitions up.

    kafka-python 3 runs listeners on the consumer's IO thread, where the blocking ``commit()``
    is not allowed; the async listener awaits ``commit_async`` instead, so the commit is
    acknowledged before the group moves on. ``on_revoked`` blocks (it flushes the producer),
    so it runs on a worker thread while the listener awaits it: the IO loop keeps heartbeating
    and serving the group protocol meanwhile (see :func:`_off_the_loop`). Lost partitions (the
    member was evicted) are not committed: the commit would be rejected.
    """
    from kafka import OffsetAndMetadata
    from kafka.consumer.subscription_state import AsyncConsumerRebalanceListener

    class _Listener(AsyncConsumerRebalanceListener):  # type: ignore[misc]
        async def on_partitions_revoked(self, revoked: Any) -> None:
            offsets = await _off_the_loop(
                consumer_ref(), on_revoked, [(tp.topic, tp.partition) for tp in revoked]
            )
            if offsets:
                consumer = consumer_ref()
                future = consumer.commit_async(
                    {topic_partition(t, p): OffsetAndMetadata(o, "", -1) for (t, p), o in offsets.items()}
                )
                await future

        async def on_partitions_assigned(self, assigned: Any) -> None:
            on_assigned([(tp.topic, tp.partition) for tp in assigned])

        async def on_partitions_lost(self, lost: Any) -> None:
            on_lost([(tp.topic, tp.partition) for tp in lost])

    return _Listener()


async def _off_the_loop(consumer: Any, work: Callable[[_A], _R], arg: _A) -> _R:
    """``work(arg)`` on a worker thread, awaited from a coroutine on ``consumer``'s IO loop.

    Called inline there, blocking work (a producer flush) stalls the loop: no heartbeat, no
    group protocol, kafka-python's "Task ran for > 0.1 s" warning. Its result comes back as a
    client-library future resolved on the loop's own thread (``call_soon_threadsafe`` wakes
    it). kafka-python exposes no handle on a consumer's loop; without one (another client
    version, a test double) the work runs inline as before.
    """
    from kafka.future import Future

    net = getattr(getattr(consumer, "_client", None), "_net", None)
    if net is None or not callable(getattr(net, "call_soon_threadsafe", None)):
        return work(arg)
    future: Any = Future()

    def run() -> None:
        outcome: tuple[bool, Any]
        try:
            outcome = (True, work(arg))
        except BaseException as exc:
            outcome = (False, exc)

        def resolve() -> None:  # a plain function: the loop's tasks accept no partial
            ok, value = outcome
            if ok:
                future.success(value)
            else:
                future.failure(value)

        with contextlib.suppress(RuntimeError, ReferenceError):  # the loop closed meanwhile
            net.call_soon_threadsafe(resolve)

    threading.Thread(target=run, name="trilink-rebalance-listener", daemon=True).start()
    result: _R = await future
    return result


def commit(consumer: Any, offsets: Offsets, timeout_ms: int = 10_000) -> None:
    from kafka import OffsetAndMetadata

    if offsets:
        consumer.commit(
            {topic_partition(t, p): OffsetAndMetadata(o, "", -1) for (t, p), o in offsets.items()},
            timeout_ms=timeout_ms,
        )


def commit_async(
    consumer: Any, offsets: Offsets, on_failure: Callable[[Offsets, BaseException], None]
) -> None:
    """Commit without waiting for the coordinator; ``on_failure`` runs (IO thread) when it fails."""
    from kafka import OffsetAndMetadata

    def done(_offsets: Any, result: Any) -> None:
        if isinstance(result, BaseException):
            on_failure(offsets, result)

    if offsets:
        consumer.commit_async(
            {topic_partition(t, p): OffsetAndMetadata(o, "", -1) for (t, p), o in offsets.items()},
            callback=done,
        )


def committed(consumer: Any, topic: str, partition: int) -> int | None:
    value = consumer.committed(topic_partition(topic, partition))
    return None if value is None else int(value)


def position(consumer: Any, topic: str, partition: int) -> int:
    return int(consumer.position(topic_partition(topic, partition)))


def highwater(consumer: Any, topic: str, partition: int) -> int | None:
    try:
        value = consumer.highwater(topic_partition(topic, partition))
    except Exception:  # not assigned any more (a rebalance raced the lag probe)
        return None
    return None if value is None else int(value)


def seek(consumer: Any, topic: str, partition: int, offset: int) -> None:
    consumer.seek(topic_partition(topic, partition), offset)


def seek_to_beginning(consumer: Any, partitions: Iterable[tuple[str, int]]) -> None:
    tps = [topic_partition(t, p) for t, p in partitions]
    if tps:
        consumer.seek_to_beginning(*tps)


def header_value(headers: Iterable[tuple[str, bytes | None]] | None, name: str) -> bytes | None:
    for key, value in headers or ():
        if key == name:
            return value
    return None


def read_tail_event_ids(
    bootstrap: str, topic: str, per_partition: int | None, timeout_s: float = 15.0, total: int = 10_000
) -> list[tuple[int, int, int, UUID]]:
    """``(append_ms, partition, offset, event_id)`` of the last ``per_partition`` records of each
    partition of ``topic``, the id taken from the ``ce_id`` header (records without one skipped).
    ``per_partition=None`` spreads ``total`` over the partitions (``ceil(total / partitions)``
    each), so the read is bounded by the window size however many partitions the topic has.

    Reads with no consumer group (nothing is committed). Raises :class:`PlatformError`
    (``tail_read_timeout``) when the tail cannot be read in ``timeout_s``.
    """
    from kafka import KafkaConsumer

    consumer: Any = KafkaConsumer(**consumer_config(bootstrap, None, f"{topic}-tail-reader"))
    try:
        partitions = sorted(consumer.partitions_for_topic(topic) or ())
        tps = [topic_partition(topic, p) for p in partitions]
        if not tps:
            return []
        if per_partition is None:
            per_partition = -(-total // len(tps))
        consumer.assign(tps)
        ends = consumer.end_offsets(tps)
        begins = consumer.beginning_offsets(tps)
        wanted = {}
        for tp in tps:
            start = max(begins[tp], ends[tp] - per_partition)
            if ends[tp] > start:
                consumer.seek(tp, start)
                wanted[tp] = ends[tp]
        consumer.pause(*[tp for tp in tps if tp not in wanted])
        out: list[tuple[int, int, int, UUID]] = []
        deadline = time.monotonic() + timeout_s
        while wanted:
            if time.monotonic() > deadline:
                raise PlatformError(
                    "tail_read_timeout", f"reading the tail of {topic} took over {timeout_s} s"
                )
            for tp, records in consumer.poll(timeout_ms=200).items():
                for record in records:
                    if record.offset >= wanted.get(tp, -1):
                        continue
                    raw = header_value(record.headers, CE_ID_HEADER)
                    if raw is not None:
                        with contextlib.suppress(ValueError, UnicodeDecodeError):
                            out.append(
                                (record.timestamp, tp.partition, record.offset, UUID(raw.decode("ascii")))
                            )
            for tp in list(wanted):
                if consumer.position(tp) >= wanted[tp]:
                    del wanted[tp]
                    consumer.pause(tp)
        return out
    finally:
        consumer.close()


def leave_group(bootstrap: str, group_id: str, group_instance_id: str, client_id: str) -> None:
    """Take a static member out of its group (LeaveGroup by ``group_instance_id``, as the
    service's own principal, which may read its group), so its partitions go to the others at
    once. kafka-python's ``close`` leaves for dynamic members only: a static member's partitions
    would wait for its session to expire. Raises what the admin client raises."""
    from kafka import KafkaAdminClient
    from kafka.admin import MemberToRemove
    from kafka.errors import NoError, UnknownMemberIdError

    admin: Any = KafkaAdminClient(**admin_config(bootstrap, client_id))
    try:
        member = MemberToRemove(group_instance_id=group_instance_id, reason="the service stopped")
        for error in admin.remove_group_members(group_id, [member]).values():
            if error not in (NoError, UnknownMemberIdError):  # not a member any more: nothing to do
                raise error(f"leaving group {group_id} as {group_instance_id}")
    finally:
        admin.close()


def locate_unparseable(
    bootstrap: str, topic: str, partition: int, offset: int, timeout_s: float = 10.0
) -> tuple[int, str] | None:
    """Whether the client library fails to parse the record at ``offset``; if so, the first
    offset after the batch it cannot parse (where reading can go on) and the error.

    kafka-python raises inside ``poll`` on a batch it cannot parse (a header name that is not
    UTF-8, a corrupt batch) without saying which partition, and fetching any offset inside that
    batch parses it again. A group-less probe reads the partition from ``offset`` and, when it
    fails there, finds the end of the bad batch by exponential then binary search over the
    offsets at which a fetch succeeds. Returns None when the record parses (the failure was
    elsewhere) or the partition has nothing at ``offset``.
    """
    from kafka import KafkaConsumer
    from kafka.errors import KafkaError

    probe: Any = KafkaConsumer(**consumer_config(bootstrap, None, f"trilink-probe-{topic}-{partition}"))
    tp = topic_partition(topic, partition)
    try:
        probe.assign([tp])
        end = int(probe.end_offsets([tp])[tp])

        def fails_at(at: int) -> str | None:
            probe.seek(tp, at)
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                try:
                    if probe.poll(timeout_ms=200, max_records=1):
                        return None
                except KafkaError:
                    raise
                except Exception as exc:
                    return f"{type(exc).__name__}: {exc}"
            return None  # nothing arrived: no verdict, treat as parseable

        if offset >= end:
            return None
        why = fails_at(offset)
        if why is None:
            return None
        good, step = end, 1  # smallest offset known to fetch cleanly (end: nothing left to parse)
        bad = offset
        while bad + step < end:
            if fails_at(bad + step) is None:
                good = bad + step
                break
            bad += step
            step *= 2
        while good - bad > 1:
            middle = (bad + good) // 2
            if fails_at(middle) is None:
                good = middle
            else:
                bad = middle
        return good, why
    finally:
        probe.close()


def lag_by_topic(
    consumer: Any, partitions: Iterable[tuple[str, int]], positions: Offsets, topics: Iterable[str]
) -> dict[str, int]:
    """Records between each partition's position and its high watermark, summed per topic
    (every topic in ``topics`` present, 0 when caught up or unknown)."""
    per_topic = dict.fromkeys(topics, 0)
    for topic, partition in partitions:
        end = highwater(consumer, topic, partition)
        position = positions.get((topic, partition))
        if end is not None and position is not None:
            per_topic[topic] = per_topic.get(topic, 0) + max(end - position, 0)
    return per_topic
