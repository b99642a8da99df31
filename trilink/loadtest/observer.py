"""Read what the ally services delivered (their ally topics) and feed it to :class:`Accounting`.

Reads with ``assign`` (no consumer group, nothing committed) from the end offsets captured
when the observer is created, so only records written during the load test are looked at;
records of other runs (a concurrent load test, a demo) are recognised by the run header and
skipped, and so are deliveries by ally services other than the ones under test (any
service on the broker consumes the shared warning topics). Only headers are parsed, never the Avro body.

Every time it accounts comes from the record (the headers' send and receive times, the ally
topic's append time), so the observer reads in lingering polls (``Settings.reader_linger_ms``):
that changes no figure, only how fresh the progress line is, and keeps the measuring process's
own fetches from competing with the services it measures (at 500 events/s on 2 cores, polling
at once cost it about a fifth of a core).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from schemas.headers import (
    ACTUAL_SENT_NS_HEADER,
    INSTANCE_HEADER,
    LOADTEST_RUN_HEADER,
    LOADTEST_SLOT_HEADER,
    RECEIVED_NS_HEADER,
    SENT_NS_HEADER,
)
from trilink.latency import LOG_APPEND_TIME, decode_sent_ns
from trilink.loadtest.accounting import Accounting
from trilink.loadtest.sender import decode_slot
from trilink.monitoring.names import ALLIES
from trilink.pacing import linger_after_poll
from trilink.platform.clients import consumer_config
from trilink.platform.topics import topic_name
from trilink.settings import get_settings


class Observer:
    """A thread consuming the three ally topics into whichever :class:`Accounting` is current."""

    def __init__(
        self,
        bootstrap: str,
        instance_id: str,
        allies: tuple[str, ...] = ALLIES,
        *,
        read_linger_ms: int | None = None,
    ) -> None:
        from kafka import KafkaConsumer, TopicPartition

        #: None: ``Settings.reader_linger_ms`` (see the module docstring).
        linger_ms = get_settings().reader_linger_ms if read_linger_ms is None else read_linger_ms
        self._read_linger_ns = linger_ms * 1_000_000

        self._topics = {topic_name(f"ally.{a}"): a for a in allies}
        self._consumer: Any = KafkaConsumer(
            **consumer_config(bootstrap, None, "trilink-loadtest-observer", max_poll_records=2000)
        )
        partitions = [
            TopicPartition(t, p)
            for t in self._topics
            for p in sorted(self._consumer.partitions_for_topic(t) or ())
        ]
        self._consumer.assign(partitions)
        for tp, offset in self._consumer.end_offsets(partitions).items():
            self._consumer.seek(tp, offset)
        self._instance = instance_id.encode("utf-8")
        self._accounting: Accounting | None = None
        self._run_id = b""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="trilink-loadtest-observer", daemon=True)
        self.records_seen = 0
        self.other_runs = 0
        self.other_instances = 0  # this run's events delivered by a service that is not ours
        self.error: BaseException | None = None

    def start(self) -> None:
        self._thread.start()

    def follow(self, run_id: str, accounting: Accounting) -> None:
        """From now on, account records of ``run_id`` (one run at a time)."""
        self._run_id = run_id.encode("ascii")
        self._accounting = accounting

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10.0)
        self._consumer.close()

    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                batch = self._consumer.poll(timeout_ms=100)
                polled_ns = time.monotonic_ns()
                for tp, records in batch.items():
                    ally = self._topics[tp.topic]
                    for record in records:
                        self._one(ally, record)
                linger_after_poll(batch, polled_ns, self._read_linger_ns, self._stop, min_records=1)
        except BaseException as exc:  # reported by the runner; a dead observer must not look like loss
            self.error = exc

    def _one(self, fallback_ally: str, record: Any) -> None:
        self.records_seen += 1
        accounting = self._accounting
        values: dict[str, bytes] = {k: v for k, v in (record.headers or []) if v is not None}
        if accounting is None or values.get(LOADTEST_RUN_HEADER) != self._run_id:
            self.other_runs += 1
            return
        if values.get(INSTANCE_HEADER) != self._instance:
            # Another ally service on the same broker (a demo, a colleague's run) also consumed
            # our events; its deliveries say nothing about the services under test.
            self.other_instances += 1
            return
        slot = decode_slot(values.get(LOADTEST_SLOT_HEADER, b""))
        intended = decode_sent_ns(values.get(SENT_NS_HEADER, b""))
        actual = decode_sent_ns(values.get(ACTUAL_SENT_NS_HEADER, b""))
        if slot is None or intended is None or actual is None or record.timestamp_type != LOG_APPEND_TIME:
            self.other_runs += 1
            return
        received_raw = values.get(RECEIVED_NS_HEADER)
        received = None if received_raw is None else decode_sent_ns(received_raw)
        ally = fallback_ally  # the ally topic says whose delivery it is
        accounting.observe(
            ally,
            slot,
            intended_ns=intended,
            actual_ns=actual,
            received_ns=received,
            delivered_ns=record.timestamp * 1_000_000,
        )
