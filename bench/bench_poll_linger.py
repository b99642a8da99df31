"""What the poll linger (``Settings.poll_linger_ms``) buys: kafka-python's CPU per forwarded
record at paced rates, with and without waiting after a poll that returned records.

For each ``--rates`` entry: one forwarding process per ``--lingers`` value (``bench_demo``'s
floor: a group-less consumer at the end of a scratch topic, each record re-sent to a second
scratch topic, trilink's client settings) starts, then three producers (``producer_config``,
as the sensors of three nations) send records shaped like trilink's (185 B value, five
headers, 22 keys) at the rate for ``--seconds``, paced. Every forwarder reads the same stream
at the same time, so all see the same machine. Prints records per poll and CPU per record
for each linger. Asserts nothing; deletes its scratch topics.

Run: ``TRILINK_BOOTSTRAP=127.0.0.1:9092 .venv/bin/python bench/bench_poll_linger.py
[--rates 400,1200] [--lingers 0,5,10] [--seconds 15]``
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from trilink.pacing import pace_until  # noqa: E402
from trilink.platform.clients import admin_config, producer_config  # noqa: E402

DEMO_BENCH = REPO / "bench" / "bench_demo.py"
KEYS = [f"TRK-salvo-L{i:02d}".encode() for i in range(22)]
HEADERS = [
    ("ce_id", b"0" * 36),
    ("ce_source", b"/trilink/sensors/US-TPY2-1"),
    ("ce_type", b"trilink.warning.v2"),
    ("ce_specversion", b"1.0"),
    ("trilink_sent_ns", b"1700000000000000000"),
]


def send_paced(bootstrap: str, topic: str, rate: float, seconds: float) -> int:
    """Three producers, round robin, one record every 1/rate s; returns how many were sent."""
    from kafka import KafkaProducer

    producers = [KafkaProducer(**producer_config(bootstrap, f"bench-linger-{i}")) for i in range(3)]
    value, stop = os.urandom(185), threading.Event()
    for producer in producers:
        producer.send(topic, value, key=b"warm-up", headers=HEADERS).get(timeout=30)
    count = int(rate * seconds)
    start_ns = time.monotonic_ns()
    for i in range(count):
        pace_until(start_ns + round(i / rate * 1e9), stop)
        producers[i % 3].send(topic, value, key=KEYS[i % len(KEYS)], headers=HEADERS)
    for producer in producers:
        producer.flush()
        producer.close()
    return count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="400,1200", help="records per second, comma-separated")
    parser.add_argument("--lingers", default="0,5,10", help="poll lingers in ms, comma-separated")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--bootstrap", default=os.environ.get("TRILINK_BOOTSTRAP", "127.0.0.1:9092"))
    args = parser.parse_args()

    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    lingers = [int(x) for x in args.lingers.split(",")]
    source, sink = (f"bench-linger-{name}-{uuid.uuid4().hex[:8]}" for name in ("in", "out"))
    admin = KafkaAdminClient(**admin_config(args.bootstrap, "bench-linger-admin"))
    admin.create_topics([NewTopic(source, 6, 1), NewTopic(sink, 6, 1)])
    print(f"# machine: nproc {os.cpu_count()}, load {os.getloadavg()[0]:.2f}, broker {args.bootstrap}")
    print(f"{'offered/s':>9} {'linger ms':>9} {'records':>8} {'per poll':>9} {'CPU us/record':>14}")
    try:
        for rate in (float(x) for x in args.rates.split(",")):
            floors = []
            for linger in lingers:
                params = {
                    "bootstrap": args.bootstrap,
                    "topics": [source],
                    "scratch": sink,
                    "linger_ms": linger,
                }
                floors.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            str(DEMO_BENCH),
                            "--worker",
                            "floor",
                            "--params",
                            json.dumps(params),
                        ],
                        stdout=subprocess.PIPE,
                        text=True,
                    )
                )
            for floor in floors:
                assert floor.stdout is not None
                if floor.stdout.readline().strip() != "ready":
                    raise SystemExit("a forwarding process did not start")
            send_paced(args.bootstrap, source, rate, args.seconds)
            time.sleep(1.0)
            for linger, floor in zip(lingers, floors, strict=True):
                floor.send_signal(signal.SIGTERM)
                out, _ = floor.communicate(timeout=60)
                r = json.loads(out.strip().splitlines()[-1])
                per_poll = r["records"] / max(r["polls"], 1)
                print(
                    f"{rate:>9.0f} {linger:>9} {r['records']:>8} {per_poll:>9.1f} "
                    f"{1e6 * r['cpu_s'] / max(r['records'], 1):>14.0f}"
                )
    finally:
        admin.delete_topics([source, sink])
        admin.close()
    print("# each forwarder: CPU of all its threads from its first record to the end of the stream")
    return 0


if __name__ == "__main__":
    sys.exit(main())
