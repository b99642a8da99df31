"""Warm a broker that was just started, before anything is measured on it.

A freshly started Kafka broker runs its request handling in the JVM's interpreter until the
JIT has compiled the hot paths, which takes tens of thousands of requests. The first
``make demo`` on a new machine therefore measured a cold JVM. On the development machine
(2 cores, plaintext, each demo on a freshly started broker) the demo's end-to-end p99 was
256-1225 ms in four cold runs, 108-409 ms in five runs after 20 s of this warm-up, and
110-182 ms on a broker that had already carried one demo (README, Benchmarks, "fifth session").

:func:`warm_up` sends records shaped like trilink's (a 180-byte value, five headers, a key,
acks=all and idempotence: :func:`~trilink.platform.clients.producer_config`) at about the
demo's peak rate, in many small produce requests, to a scratch topic with LogAppendTime like
trilink's own topics, and reads them back with a consumer group that commits as the services
do. The topic and the group are deleted afterwards. Nothing of it is measured or reported
beyond the counts: the warm-up only moves the broker to the state a long-running deployment
is always in.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic

from trilink.platform.clients import admin_config, consumer_config, producer_config
from trilink.platform.groups import delete_groups
from trilink.platform.security import ClientSecurity

log = logging.getLogger(__name__)

__all__ = ["WARMUP_TOPIC_PREFIX", "WarmupResult", "warm_up"]

#: Scratch topics of a warm-up are named this plus a random suffix (deleted afterwards).
WARMUP_TOPIC_PREFIX = "trilink.warmup."
#: Records sent per round (one per partition) and the pause between rounds: about 1,500
#: records a second, the demo's peak, in produce requests of a few records each.
_PARTITIONS = 3
_ROUND_PAUSE_S = 0.002
_VALUE = b"w" * 180
_HEADERS = [(f"warmup_{i}", b"h" * (36 if i == 0 else 8)) for i in range(5)]
#: How long the consumer may take to read what was sent once the sending stops.
_DRAIN_S = 10.0


@dataclass(frozen=True, slots=True)
class WarmupResult:
    """What a warm-up did: records sent (acknowledged) and read back, its wall time, and the
    scratch topic and consumer group it used (deleted)."""

    sent: int
    read: int
    seconds: float
    topic: str
    group: str

    def line(self) -> str:
        return f"broker warmed up: {self.sent:,} records sent and {self.read:,} read back in {self.seconds:.0f} s"


def warm_up(
    bootstrap: str, seconds: float, security: ClientSecurity, *, replication: int = 1
) -> WarmupResult:
    """Send and read back scratch records for ``seconds`` (see the module docstring).

    ``security``: how to connect (a secured cluster's admin: only admin may create topics);
    ``replication``: the scratch topic's replication factor (a 3-node cluster's replication
    paths warm up too). Raises what the client library raises; the topic and the group are
    deleted whatever happens once they exist."""
    suffix = uuid.uuid4().hex[:12]
    topic = WARMUP_TOPIC_PREFIX + suffix
    group = f"trilink-warmup-{suffix}"
    client_id = "trilink-warmup"
    started = time.monotonic()
    admin: Any = KafkaAdminClient(**admin_config(bootstrap, client_id, security))
    try:
        admin.create_topics(
            [
                NewTopic(
                    topic,
                    _PARTITIONS,
                    replication,
                    topic_configs={"message.timestamp.type": "LogAppendTime"},
                )
            ]
        )
        try:
            sent, read = _traffic(
                bootstrap, topic, group=group, client_id=client_id, security=security, seconds=seconds
            )
        finally:
            _delete(admin, topic, group)
    finally:
        admin.close()
    return WarmupResult(sent, read, time.monotonic() - started, topic, group)


def _traffic(
    bootstrap: str, topic: str, *, group: str, client_id: str, security: ClientSecurity, seconds: float
) -> tuple[int, int]:
    producer: Any = KafkaProducer(**producer_config(bootstrap, client_id, security))
    consumer: Any = KafkaConsumer(**consumer_config(bootstrap, group, client_id, security))
    read = [0]
    expected: list[int] = []  # the number sent, once the sending is over

    def consume() -> None:
        drain_until = None
        try:
            while True:
                batch = consumer.poll(timeout_ms=100)
                count = sum(len(records) for records in batch.values())
                if count:
                    read[0] += count
                    consumer.commit_async()
                if expected:
                    drain_until = drain_until or time.monotonic() + _DRAIN_S
                    if read[0] >= expected[0] or time.monotonic() > drain_until:
                        return
        except Exception as exc:  # the sender stops when the reader does; the caller sees the counts
            log.warning("warm-up: its reader stopped: %r", exc)

    sent = 0
    reader = threading.Thread(target=consume, name="trilink-warmup-reader", daemon=True)
    try:
        consumer.subscribe([topic])
        reader.start()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and reader.is_alive():
            for partition in range(_PARTITIONS):
                producer.send(topic, value=_VALUE, key=b"warmup", headers=_HEADERS, partition=partition)
                sent += 1
            time.sleep(_ROUND_PAUSE_S)
        producer.flush(timeout=30)
    finally:
        expected.append(sent)  # the reader drains what was sent, at most _DRAIN_S more
        if reader.is_alive():
            reader.join(_DRAIN_S + 5)
        consumer.close()
        producer.close(timeout=10)
    return sent, read[0]


def _delete(admin: Any, topic: str, group: str) -> None:
    """Delete the scratch topic and group; a leftover is harmless, so a failure is logged only."""
    try:
        admin.delete_topics([topic])
    except Exception as exc:
        log.warning("warm-up: deleting topic %s failed: %r", topic, exc)
    delete_groups(admin, [group])
