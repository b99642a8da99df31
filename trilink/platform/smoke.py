"""A smoke round trip: a few records through the broker and back, timed on one clock.

Proves the broker, the topics and the client settings work together, and gives a first
latency figure (producer send to consumer receive) before any scenario runs.
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass
from typing import Any

from trilink.errors import PlatformError
from trilink.latency import percentile_of_sorted
from trilink.platform.clients import consumer_config, producer_config
from trilink.platform.topics import topic_name

_PROBE = struct.Struct(">QQ")  # sequence number, perf_counter_ns at send


@dataclass(frozen=True)
class SmokeResult:
    count: int
    round_trip_us: list[int]

    def percentile_us(self, q: float) -> int:
        return percentile_of_sorted(sorted(self.round_trip_us), q)


def round_trip(
    bootstrap: str, count: int = 20, interval_s: float = 0.01, timeout_s: float = 30.0
) -> SmokeResult:
    """Send ``count`` probes one at a time and time each until a consumer reads it back."""
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    topic = topic_name("smoke")
    partition = TopicPartition(topic, 0)
    consumer: Any = KafkaConsumer(**consumer_config(bootstrap, None, "trilink-smoke-consumer"))
    producer: Any = KafkaProducer(**producer_config(bootstrap, "trilink-smoke-producer", linger_ms=0))
    try:
        consumer.assign([partition])
        consumer.seek_to_end(partition)
        consumer.position(partition)  # resolve the end offset now, before the first probe
        latencies: list[int] = []
        deadline = time.monotonic() + timeout_s
        for seq in range(count):
            producer.send(topic, value=_PROBE.pack(seq, time.perf_counter_ns()), partition=0)
            producer.flush()
            seen = False
            while not seen:
                if time.monotonic() > deadline:
                    raise PlatformError(
                        "smoke_timeout", f"probe {seq} did not come back within {timeout_s:.0f} s"
                    )
                for records in consumer.poll(timeout_ms=200).values():
                    for record in records:
                        got_seq, sent_ns = _PROBE.unpack(record.value)
                        if got_seq == seq:
                            latencies.append((time.perf_counter_ns() - sent_ns) // 1000)
                            seen = True
            time.sleep(interval_s)
        return SmokeResult(count, latencies)
    finally:
        producer.close(timeout=5)
        consumer.close()
