"""The rebalance listener against a real broker: the blocking part of a revocation (the ally
service flushes its producer there) runs off the consumer's IO loop, and what it returns is
committed before the partitions are given up."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import pytest

from consumers import kafka_io
from trilink.platform.topics import topic_name

pytestmark = pytest.mark.integration

TOPIC = topic_name("warnings")


def test_revocation_runs_off_the_io_loop_and_its_offsets_are_committed(kafka_bootstrap: str) -> None:
    group = f"test-listener-{uuid.uuid4().hex[:8]}"
    consumer: Any = kafka_io.new_consumer(
        kafka_bootstrap, group, f"{group}-a", offset_reset="latest", max_poll_records=10
    )
    revocations: list[tuple[str, list[tuple[str, int]]]] = []
    assigned: list[tuple[str, int]] = []
    # Commit the first offset of each partition: a group that never read anything holds none.
    commit_at = 0

    def on_revoked(partitions: list[tuple[str, int]]) -> kafka_io.Offsets:
        revocations.append((threading.current_thread().name, partitions))
        time.sleep(0.3)  # as a producer flush waiting for acks
        return dict.fromkeys(partitions, commit_at)

    listener = kafka_io.make_listener(on_revoked, assigned.extend, lambda _: None, lambda: consumer)
    try:
        kafka_io.ensure_metadata(consumer, [TOPIC])
        consumer.subscribe([TOPIC], listener=listener)
        deadline = time.monotonic() + 30
        while not assigned and time.monotonic() < deadline:
            consumer.poll(timeout_ms=200)
        assert assigned, "no partitions assigned in 30 s"
    finally:
        consumer.close()  # revokes the assignment before leaving the group

    # The join revokes the (empty) previous assignment, the close the partitions held; each time
    # on a worker thread, not on the consumer's IO thread (kafka-io-<client id>).
    assert {thread for thread, _ in revocations} == {"trilink-rebalance-listener"}
    assert sorted(revocations[-1][1]) == sorted(assigned)
    probe: Any = kafka_io.new_consumer(
        kafka_bootstrap, group, f"{group}-probe", offset_reset="latest", max_poll_records=10
    )
    try:
        assert {kafka_io.committed(probe, t, p) for t, p in assigned} == {commit_at}
    finally:
        probe.close()
