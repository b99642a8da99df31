"""Low-load latency: trilink's pipeline beside the floors of the same architecture, one run.

trilink's path is one Kafka hop per stage: in the hub topology (the default), sensor -> ingest
topic -> US hub -> the ally's feed -> ally service -> ally topic, three hops; in the direct
topology, sensor -> warnings topic -> ally service -> ally topic, two. At low load its latency is
what the clients and the broker allow plus what the services add. This script prints, from one
invocation on one broker, one phase after the other (each on a quiet machine):

1. kafka-python's floor for the same path, at the same rate, on topics shaped like trilink's
   (``PARTITIONS`` as deploy/topics.toml declares, LogAppendTime, 64 keys): a producer
   (``producer_config``) sends records stamped with ``time.time_ns()``; one relay process per
   service on the path (a group-less consumer with ``consumer_config`` and a producer: the hub's
   and the ally's clients without the services) forwards each record to the next topic and adds
   a header saying when it received it; an observer reads the last topic. ``one hop`` = first
   relay received - sent; ``to the last relay`` = last relay received - sent (trilink's
   ``send_to_receive``: the sensor's send to the ally service's receive); ``whole path`` = the
   last topic's append time - sent (trilink's ``end_to_end`` in the load test).
2. ``trilink loadtest --rate R --duration D --baseline``: the services, one process each, at the
   same rate; its ``send_to_receive`` (actual) and ``end_to_end`` (intended) rows.
3. Kafka's own ``EndToEndLatency`` tool (Java client, one hop, one record in flight), which the
   load test's ``--baseline`` runs after its senders. It prints whole milliseconds (truncated),
   so its p50 "1" means somewhere in [1, 2) ms; its average is exact.

Ratios are printed against the kafka-python floor (same client library, same path) and against
the Java tool (one hop). Prints numbers, asserts nothing; deletes its scratch topics.

Run: ``TRILINK_BOOTSTRAP=127.0.0.1:9092 .venv/bin/python bench/bench_latency.py [--rate 50]
[--seconds 15]``
"""

from __future__ import annotations

import argparse
import itertools
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
from trilink.platform.topics import load_topic_file  # noqa: E402
from trilink.settings import get_settings  # noqa: E402

#: As deploy/topics.toml declares the topics that carry warnings (the shared one stands for all).
PARTITIONS = next(
    t.partitions for t in load_topic_file(get_settings().topics_file).topics if t.role == "warnings"
)
KEYS = 64
RELAY_HEADER = "bench_relay_received_ns"  # one per relay, in path order


def _percentiles(values_ms: list[float]) -> dict[str, float]:
    ordered = sorted(values_ms)
    if not ordered:
        return {"count": 0}

    at = {f"p{q:g}": percentile_of_sorted(ordered, q) for q in (50, 90, 99)}
    return {"count": len(ordered), **at, "max": ordered[-1]}


def _relay(bootstrap: str, source: str, sink: str, ready: Any, stop: Any) -> None:
    """A service's two clients and nothing else: poll, forward each record with one more header
    (when this relay received it)."""
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
                producer.send(sink, value=r.value, key=r.key, headers=[*r.headers, (RELAY_HEADER, received)])
    producer.close(timeout=10)
    consumer.close()


def kafka_python_floor(bootstrap: str, rate: float, seconds: float, hops: int) -> dict[str, Any]:
    """``hops`` topics in a row with a relay process between each two; see the module's doc."""
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.admin import KafkaAdminClient, NewTopic

    from trilink.platform.clients import admin_config

    tag = uuid.uuid4().hex[:8]
    topics = [f"bench-latency-{i}-{tag}" for i in range(hops)]
    admin = KafkaAdminClient(**admin_config(bootstrap, "bench-latency-admin"))
    configs = {"message.timestamp.type": "LogAppendTime"}
    admin.create_topics([NewTopic(t, PARTITIONS, 1, topic_configs=configs) for t in topics])
    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    relays = []
    for source, sink in itertools.pairwise(topics):
        ready = ctx.Event()
        relay = ctx.Process(
            target=_relay,
            args=(bootstrap, source, sink, ready, stop),
            daemon=True,
        )
        relay.start()
        relays.append((relay, ready))
    try:
        for _, ready in relays:
            if not ready.wait(60):
                raise RuntimeError("a relay did not start")
        observer = KafkaConsumer(**consumer_config(bootstrap, None, "bench-latency-observer"))
        tps = [TopicPartition(topics[-1], p) for p in range(PARTITIONS)]
        observer.assign(tps)
        observer.seek_to_end()
        for tp in tps:
            observer.position(tp)
        total = int(rate * seconds)
        one_hop: list[float] = []
        to_last_relay: list[float] = []
        whole: list[float] = []
        done = threading.Event()

        def observe() -> None:
            deadline = None
            while len(whole) < total:
                if done.is_set():
                    deadline = deadline or time.monotonic() + 10
                    if time.monotonic() > deadline:
                        break
                for records in observer.poll(timeout_ms=100).values():
                    for r in records:
                        sent = int(r.value)
                        relayed = [int(v) for k, v in r.headers if k == RELAY_HEADER]
                        one_hop.append((relayed[0] - sent) / 1e6)
                        to_last_relay.append((relayed[-1] - sent) / 1e6)
                        whole.append((r.timestamp * 1_000_000 - sent) / 1e6)

        reader = threading.Thread(target=observe)
        reader.start()
        producer = KafkaProducer(**producer_config(bootstrap, "bench-latency-sender"))
        producer.partitions_for(topics[0])
        time.sleep(1.0)
        start = time.perf_counter()
        for i in range(total):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            producer.send(topics[0], key=f"k{i % KEYS}".encode(), value=str(time.time_ns()).encode())
        producer.flush()
        done.set()
        reader.join()
        producer.close()
        observer.close()
        return {
            "one_hop": _percentiles(one_hop),
            "to_last_relay": _percentiles(to_last_relay),
            "whole": _percentiles(whole),
            "sent": total,
        }
    finally:
        stop.set()
        for relay, _ in relays:
            relay.join(15)
            if relay.is_alive():
                relay.kill()
        admin.delete_topics(topics)
        admin.close()


def trilink_loadtest(rate: float, seconds: float) -> dict[str, Any]:
    """``trilink loadtest --baseline`` at ``rate`` for ``seconds``: its JSON report."""
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
        process = subprocess.run(
            command, cwd=REPO, env=os.environ, capture_output=True, text=True, check=False
        )
        if process.returncode != 0:
            raise RuntimeError(f"trilink loadtest failed ({process.returncode}): {process.stdout[-2000:]}")
        data: dict[str, Any] = json.loads(report.read_text())
    return data


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

    hops = 3 if get_settings().topology == "hub" else 2
    print(f"# topology: {get_settings().topology} ({hops} hops from the sensors to an ally topic)")
    floor = kafka_python_floor(bootstrap, args.rate, args.seconds, hops)
    report = trilink_loadtest(args.rate, args.seconds)
    tool = report["baseline"]["tool"]

    print(f"\n{'what':46} {'count':>6} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8}")
    print(
        f"{'Kafka EndToEndLatency (Java, 1 hop, whole ms)':46} {tool['num_records']:>6} "
        f"{tool['p50_ms']:>8.2f} {'':>8} {tool['p99_ms']:>8.2f}   avg {tool['avg_ms']:.2f} ms"
    )
    for name, key in (
        ("kafka-python one hop (send -> first relay)", "one_hop"),
        ("kafka-python send -> last relay", "to_last_relay"),
        (f"kafka-python {hops} hops (-> last topic)", "whole"),
    ):
        f = floor[key]
        print(f"{name:46} {f['count']:>6} {f['p50']:>8.2f} {f['p90']:>8.2f} {f['p99']:>8.2f}")
    for ally in ("US", "JP", "KR"):
        for label, hop, basis, key in (
            ("send_to_receive (actual)", "send_to_receive", "actual", "to_last_relay"),
            ("end_to_end (intended)", "end_to_end", "intended", "whole"),
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
