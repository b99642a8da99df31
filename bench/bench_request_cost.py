"""What kafka-python itself costs per request at real time: why paced records are expensive.

Each case runs in its own process, one after another, so ``time.process_time()`` (all its
threads, the client's IO threads included) is that case's CPU alone; per-thread figures come
from ``/proc/self/task``. With trilink's client settings (``producer_config``,
``consumer_config``):

1. producer: a ``KafkaProducer`` sends 185-byte records with five headers to a scratch topic at
   ``--rate`` records per second for ``--seconds``, paced, ``--bursts`` records at a time
   (1: one record per send, as paced sensors do), with ``linger_ms`` 0 and, for one record at a
   time, 3. Prints CPU per record for the process and its network thread.
2. idle consumer: a group-less ``KafkaConsumer`` at the end of the scratch topic polls for
   ``--seconds`` with nothing arriving, at three pairs of ``fetch_max_wait_ms`` and poll
   ``timeout_ms``: 100/100 (the services' consume loops), 500/100 and 500/500 (the
   acknowledgement readers). Prints CPU per second.

Asserts nothing; deletes its scratch topic.

Run: ``TRILINK_BOOTSTRAP=127.0.0.1:9092 .venv/bin/python bench/bench_request_cost.py [--rate 850]
[--seconds 10] [--bursts 1,7]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from trilink.pacing import pace_until  # noqa: E402
from trilink.platform.clients import admin_config, consumer_config, producer_config  # noqa: E402
from trilink.processes import thread_cpu_s  # noqa: E402

HEADERS = [(f"trilink_h{i}", b"x" * 30) for i in range(5)]


def produce_case(p: dict[str, Any]) -> dict[str, Any]:
    from kafka import KafkaProducer

    producer = KafkaProducer(
        **producer_config(p["bootstrap"], "bench-request-cost", linger_ms=p["linger_ms"])
    )
    producer.send(p["topic"], b"warm-up").get(timeout=30)
    value, stop, burst = os.urandom(185), threading.Event(), p["burst"]
    sends = int(p["rate"] * p["seconds"] / burst)
    before, cpu0 = thread_cpu_s(), time.process_time()
    start_ns = time.monotonic_ns()
    for i in range(sends):
        pace_until(start_ns + round(i * burst / p["rate"] * 1e9), stop)
        for j in range(burst):
            producer.send(p["topic"], value, key=b"k%d" % ((i + j) % 22), headers=HEADERS)
    producer.flush()
    cpu, after = time.process_time() - cpu0, thread_cpu_s()
    records = sends * burst
    network = sum(after[n] - before.get(n, 0.0) for n in after if n.endswith("network-thread"))
    producer.close()
    return {"records": records, "us_per_record": cpu / records * 1e6, "network_us": network / records * 1e6}


def idle_case(p: dict[str, Any]) -> dict[str, Any]:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        **consumer_config(
            p["bootstrap"], None, "bench-request-cost", fetch_max_wait_ms=p["fetch_max_wait_ms"]
        )
    )
    partition = TopicPartition(p["topic"], 0)
    consumer.assign([partition])
    consumer.seek_to_end()
    consumer.position(partition)
    consumer.poll(timeout_ms=p["poll_timeout_ms"])
    cpu0, wall0 = time.process_time(), time.monotonic()
    while time.monotonic() - wall0 < p["seconds"]:
        consumer.poll(timeout_ms=p["poll_timeout_ms"])
    cpu_ms_per_s = (time.process_time() - cpu0) / (time.monotonic() - wall0) * 1e3
    consumer.close()
    return {"cpu_ms_per_s": cpu_ms_per_s}


CASES = {"produce": produce_case, "idle": idle_case}


def run_case(case: str, params: dict[str, Any]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "--case", case, json.dumps(params)],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=850.0, help="records per second the producer sends")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--bursts", default="1,7", help="records per send, comma-separated")
    parser.add_argument("--bootstrap", default=os.environ.get("TRILINK_BOOTSTRAP", "127.0.0.1:9092"))
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args()
    if args.case:  # a worker: one case, its JSON on stdout
        print(json.dumps(CASES[args.case](json.loads(rest[0]))))
        return 0

    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    topic = f"bench-request-cost-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(**admin_config(args.bootstrap, "bench-request-cost-admin"))
    admin.create_topics([NewTopic(topic, 1, 1)])
    base = {"bootstrap": args.bootstrap, "topic": topic, "seconds": args.seconds}
    print(f"# machine: nproc {os.cpu_count()}, load {os.getloadavg()[0]:.2f}, broker {args.bootstrap}")
    try:
        print(
            f"{'producer at':>11} {'per send':>8} {'linger ms':>9} {'records':>8} {'CPU us/record':>14} {'network thread':>15}"
        )
        bursts = [int(b) for b in args.bursts.split(",")]
        for burst, linger in [(b, 0) for b in bursts] + [(1, 3)]:
            r = run_case("produce", {**base, "rate": args.rate, "burst": burst, "linger_ms": linger})
            print(
                f"{args.rate:>9.0f}/s {burst:>8} {linger:>9} {r['records']:>8} "
                f"{r['us_per_record']:>14.1f} {r['network_us']:>15.1f}"
            )
        print(
            f"\n{'idle consumer':<14} {'fetch_max_wait_ms':>17} {'poll timeout_ms':>15} {'CPU ms per second':>18}"
        )
        for wait_ms, poll_ms in ((100, 100), (500, 100), (500, 500)):
            r = run_case("idle", {**base, "fetch_max_wait_ms": wait_ms, "poll_timeout_ms": poll_ms})
            print(f"{'':<14} {wait_ms:>17} {poll_ms:>15} {r['cpu_ms_per_s']:>18.1f}")
    finally:
        admin.delete_topics([topic])
        admin.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
