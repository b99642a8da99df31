"""Low-load latency: trilink's pipeline beside the floors of the same architecture, one run.

trilink's path is two Kafka hops with a service between them: sensor -> warnings topic -> ally
service -> ally topic. At low load its latency is what the clients and the broker allow plus what
the service adds. This script prints, from one run on one broker:

1. Kafka's own ``EndToEndLatency`` tool (Java client, one hop, one record in flight), as
   ``trilink loadtest --baseline`` runs it. It prints whole milliseconds (truncated), so its
   p50 "1" means somewhere in [1, 2) ms; its average is exact.
2. kafka-python's floor for the same architecture, at the same rate and on topics shaped like
   trilink's (12 partitions, LogAppendTime, 64 keys): a producer (``producer_config``) sends
   records stamped with ``time.time_ns()``; a relay process (a group-less consumer with
   ``consumer_config`` and a producer, the ally's clients without the ally) forwards each one
   as it is to a second topic and stamps when it received it; an observer reads the second
   topic. ``one hop`` = relay received - sent (trilink's ``send_to_receive``); ``two hops`` =
   the second topic's append time - sent (trilink's ``end_to_end`` in the load test).
3. ``trilink loadtest --rate R --duration D --baseline``: the three ally services, one process
   each, at the same rate; its ``send_to_receive`` (actual) and ``end_to_end`` (intended) rows.
   The kafka-python floor (2.) runs at the same time as the load test's senders (both at a low
   rate), so both see the same machine; the Java tool runs after them.

Ratios are printed against the kafka-python floor (same client library, same shape) and against
the Java tool. Prints numbers, asserts nothing; deletes its scratch topics.

Run: ``TRILINK_BOOTSTRAP=127.0.0.1:9092 .venv/bin/python bench/bench_latency.py [--rate 50]
[--seconds 15]``
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from trilink.latency import percentile_of_sorted  # noqa: E402
from trilink.platform.clients import consumer_config, producer_config  # noqa: E402

PARTITIONS = 12
KEYS = 64
RELAY_HEADER = "bench_relay_received_ns"


def _percentiles(values_ms: list[float]) -> dict[str, float]:
    ordered = sorted(values_ms)
    if not ordered:
        return {"count": 0}

    at = {f"p{q:g}": percentile_of_sorted(ordered, q) for q in (50, 90, 99)}
    return {"count": len(ordered), **at, "max": ordered[-1]}


def _relay(bootstrap: str, source: str, sink: str, ready: Any, stop: Any) -> None:
    """The ally's two clients and nothing else: poll, forward each record as it is, stamp it."""
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    consumer = KafkaConsumer(**consumer_config(bootstrap, None, "bench-latency-relay"))
    producer = KafkaProducer(**producer_config(bootstrap, "bench-latency-relay"))
    tps = [TopicPartition(source, p) for p in range(PARTITIONS)]
    consumer.assign(tps)
    consumer.seek_to_end()
    for tp in tps:
        consumer.position(tp)
    producer.partitions_for(sink)
    ready.set()
    while not stop.is_set():
        for records in consumer.poll(timeout_ms=100).values():
            received = str(time.time_ns()).encode()
            for r in records:
                producer.send(sink, value=r.value, key=r.key, headers=[(RELAY_HEADER, received)])
    producer.close(timeout=10)
    consumer.close()


def kafka_python_floor(bootstrap: str, rate: float, seconds: float) -> dict[str, Any]:
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.admin import KafkaAdminClient, NewTopic

    from trilink.platform.clients import admin_config

    tag = uuid.uuid4().hex[:8]
    source, sink = f"bench-latency-a-{tag}", f"bench-latency-b-{tag}"
    admin = KafkaAdminClient(**admin_config(bootstrap, "bench-latency-admin"))
    configs = {"message.timestamp.type": "LogAppendTime"}
    admin.create_topics([NewTopic(t, PARTITIONS, 1, topic_configs=configs) for t in (source, sink)])
    ctx = mp.get_context("spawn")
    ready, stop = ctx.Event(), ctx.Event()
    relay = ctx.Process(target=_relay, args=(bootstrap, source, sink, ready, stop), daemon=True)
    relay.start()
    try:
        if not ready.wait(60):
            raise RuntimeError("the relay did not start")
        observer = KafkaConsumer(**consumer_config(bootstrap, None, "bench-latency-observer"))
        tps = [TopicPartition(sink, p) for p in range(PARTITIONS)]
        observer.assign(tps)
        observer.seek_to_end()
        for tp in tps:
            observer.position(tp)
        total = int(rate * seconds)
        one_hop: list[float] = []
        two_hops: list[float] = []
        done = threading.Event()

        def observe() -> None:
            deadline = None
            while len(two_hops) < total:
                if done.is_set():
                    deadline = deadline or time.monotonic() + 10
                    if time.monotonic() > deadline:
                        break
                for records in observer.poll(timeout_ms=100).values():
                    for r in records:
                        sent = int(r.value)
                        received = int(dict(r.headers)[RELAY_HEADER])
                        one_hop.append((received - sent) / 1e6)
                        two_hops.append((r.timestamp * 1_000_000 - sent) / 1e6)

        reader = threading.Thread(target=observe)
        reader.start()
        producer = KafkaProducer(**producer_config(bootstrap, "bench-latency-sender"))
        producer.partitions_for(source)
        time.sleep(1.0)
        start = time.perf_counter()
        for i in range(total):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            producer.send(source, key=f"k{i % KEYS}".encode(), value=str(time.time_ns()).encode())
        producer.flush()
        done.set()
        reader.join()
        producer.close()
        observer.close()
        return {"one_hop": _percentiles(one_hop), "two_hops": _percentiles(two_hops), "sent": total}
    finally:
        stop.set()
        relay.join(15)
        if relay.is_alive():
            relay.kill()
        admin.delete_topics([source, sink])
        admin.close()


def trilink_loadtest_with_floor(
    bootstrap: str, rate: float, seconds: float
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The load test, with the kafka-python floor measured while its senders run (same noise)."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        command = [
            str(Path(sys.executable).parent / "trilink"),
            "loadtest",
            "--rate",
            str(rate),
            "--duration",
            str(seconds),
            "--baseline",
            "--report",
            str(report),
        ]
        process = subprocess.Popen(
            command,
            cwd=REPO,
            env=os.environ,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        assert process.stdout is not None
        floor: dict[str, Any] = {}
        for line in process.stdout:
            if not floor and "events over" in line:  # the senders start now
                floor = kafka_python_floor(bootstrap, rate, seconds)
        if process.wait() != 0:
            raise RuntimeError(f"trilink loadtest failed ({process.returncode})")
        if not floor:
            raise RuntimeError("the load test never said it started sending")
        data: dict[str, Any] = json.loads(report.read_text())
    return data, floor


def _row(report: dict[str, Any], ally: str, hop: str, basis: str) -> dict[str, Any] | None:
    for row in report["latency"]:
        if row["ally"] == ally and row["hop"] == hop and row["basis"] == basis and row["kind"] == "*":
            return row
    return None


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=50.0, help="events per second (default 50)")
    parser.add_argument("--seconds", type=float, default=15.0, help="measured seconds of each phase")
    args = parser.parse_args()
    bootstrap = os.environ.get("TRILINK_BOOTSTRAP", "127.0.0.1:9092")
    print(f"# command: {' '.join(sys.argv)}")
    print(f"# machine: nproc {os.cpu_count()}, load {os.getloadavg()[0]:.2f}, broker {bootstrap}")

    report, floor = trilink_loadtest_with_floor(bootstrap, args.rate, args.seconds)
    tool = report["baseline"]["tool"]

    print(f"\n{'what':46} {'count':>6} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8}")
    print(
        f"{'Kafka EndToEndLatency (Java, 1 hop, whole ms)':46} {tool['num_records']:>6} "
        f"{tool['p50_ms']:>8.2f} {'':>8} {tool['p99_ms']:>8.2f}   avg {tool['avg_ms']:.2f} ms"
    )
    for name, key in (
        ("kafka-python one hop (send -> relay)", "one_hop"),
        ("kafka-python two hops (-> relay topic)", "two_hops"),
    ):
        f = floor[key]
        print(f"{name:46} {f['count']:>6} {f['p50']:>8.2f} {f['p90']:>8.2f} {f['p99']:>8.2f}")
    for ally in ("US", "JP", "KR"):
        for label, hop, basis, key in (
            ("send_to_receive (actual)", "send_to_receive", "actual", "one_hop"),
            ("end_to_end (intended)", "end_to_end", "intended", "two_hops"),
        ):
            row = _row(report, ally, hop, basis)
            if row is None:
                continue
            f = floor[key]
            print(
                f"{'trilink ' + ally + ' ' + label:46} {row['count']:>6} {row['p50_ms']:>8.2f} {row['p90_ms']:>8.2f} "
                f"{row['p99_ms']:>8.2f}   p50 {row['p50_ms'] / f['p50']:.2f}x / p99 {row['p99_ms'] / f['p99']:.2f}x kafka-python"
                + (
                    f", p50 {row['p50_ms'] / tool['p50_ms']:.2f}x Java p50"
                    if hop == "end_to_end" and tool["p50_ms"]
                    else ""
                )
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
