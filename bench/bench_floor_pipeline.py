"""The architecture's floor for the demo: the demo's own records, at the demo's own pace, through
the hub topology built of plain kafka-python clients and nothing else, beside ``trilink run salvo``.

trilink's demo figures mix two things: what the architecture costs (three Kafka hops, a hub that
writes every record up to three times, acks=all, idempotence, TLS if secured) and what trilink's
own code adds. This bench measures the first alone, on the cluster ``TRILINK_BOOTSTRAP`` names:

1. the salvo is simulated and encoded exactly as ``trilink run salvo`` does (same records: key,
   Avro value, CloudEvents headers, partition; same emit times at the run's default speed);
2. five processes then play the pipeline on scratch topics with the real topics' partition
   counts, each a bare ``KafkaConsumer``/``KafkaProducer`` with trilink's client settings
   (``consumer_config``/``producer_config``: acks=all, idempotent, no linger, fetch wait 100 ms)
   and the services' poll linger (the hub and the allies also with the services' GIL switch
   interval, ``Settings.service_switch_interval_ms``):

   - *source*: sends each record to its nation's ingest topic at its due time, stamping the send
     time in the ``trilink_sent_ns`` header (as the sensors do);
   - *hub*: forwards every ingest record to the three feeds (the salvo's records are releasable to
     all three allies but for ~0.2 %), same key, same partition;
   - *ally US, JP, KR*: forwards its feed to its own downstream topic and, when the broker
     acknowledges the write, takes send -> acknowledged as the end-to-end latency (trilink's
     ``end_to_end [kafka]``).

   No decoding, validation, policy, de-duplication, audit file, SSE, acknowledgement record,
   consumer group, commit or metric: what is left is the Kafka work the topology needs
   (``--groups``: the hub and allies consume in consumer groups and commit every 0.2 s, the
   membership and commits at-least-once delivery needs);
3. every process's CPU (and the broker's) is sampled from ``/proc`` (``bench/_sampling.py``).
   Each process is pinned to the CPU trilink pins the service it stands for
   (``TRILINK_CPU_PINNING``, :func:`trilink.runtime.cpu_for`), so the two compare alike.

With ``--with-demo`` it then runs ``bench/bench_demo.py --no-floor`` on the same cluster and prints
both side by side: the demo's p50/p99 and CPU against the floor's, as ratios in one run.

With ``--rate R [--duration S]`` the source plays the scenario's records over and over at a
constant R events/s for S seconds after a 2 s warm-up, the shape of ``trilink loadtest --rate R
--duration S``, and the allies count latency as the load test does: from each record's due time,
warm-up excluded. That is the architecture's own capacity on this machine, to put beside the
load test's figures for the same rate.

Prints per process: CPU seconds, CPU per event, cores in the busiest 5 s; per ally: records,
end-to-end p50/p99, CPU per record. Asserts nothing; deletes its scratch topics.

Run: ``TRILINK_BOOTSTRAP=127.0.0.1:9092 .venv/bin/python bench/bench_floor_pipeline.py [--groups]
[--with-demo | --rate R [--duration S]]``
(on a secured cluster also ``TRILINK_CREDENTIALS_FILE``: the bench's clients connect as admin).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import signal
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

from _sampling import CpuSampler  # noqa: E402  (bench/, this script's directory)

from trilink.platform.clients import admin_config, consumer_config, producer_config  # noqa: E402
from trilink.platform.groups import delete_groups  # noqa: E402
from trilink.platform.topics import topic_name  # noqa: E402
from trilink.runtime import cpu_for, pin_process  # noqa: E402
from trilink.settings import get_settings  # noqa: E402

ALLIES = ("US", "JP", "KR")
NATIONS = ("US", "JP", "KR")


COMMIT_INTERVAL_S = 0.2  # the services' commit interval
#: With --rate: the first seconds are sent but not counted, as `trilink loadtest`'s default warm-up.
WARMUP_S = 2.0


def _consumer_at_end(bootstrap: str, topics: list[str], client_id: str, group: str | None) -> Any:
    """A consumer positioned at the end of ``topics``: assigned without a group, or (``group``)
    subscribed in a new group that starts at the end, as the services' groups do."""
    from kafka import KafkaConsumer, TopicPartition

    if group is not None:
        consumer = KafkaConsumer(**consumer_config(bootstrap, group, client_id, auto_offset_reset="latest"))
        consumer.subscribe(topics)
        while not consumer.assignment():
            consumer.poll(timeout_ms=100)
        for tp in consumer.assignment():
            consumer.position(tp)
        return consumer
    consumer = KafkaConsumer(**consumer_config(bootstrap, None, client_id))
    partitions = [
        TopicPartition(topic, n)
        for topic in topics
        for n in sorted(consumer.partitions_for_topic(topic) or ())
    ]
    consumer.assign(partitions)
    consumer.seek_to_end(*partitions)
    for tp in partitions:
        consumer.position(tp)
    return consumer


class _Committer:
    """With a group: commit the consumed positions once a commit interval, as the services do
    (they commit after delivery is durable; the floor commits what it has forwarded)."""

    def __init__(self, consumer: Any, group: str | None) -> None:
        self._consumer = consumer if group is not None else None
        self._last = time.monotonic()

    def maybe_commit(self) -> None:
        if self._consumer is not None and time.monotonic() - self._last >= COMMIT_INTERVAL_S:
            self._last = time.monotonic()
            self._consumer.commit_async()


def work_source(p: dict[str, Any]) -> None:
    """Send the prepared records at their due times (the sensors' part). The ``trilink_sent_ns``
    stamp is the actual send time (as the sensors stamp it), or with ``intended`` the due time (as
    the load test counts, so a late send shows as latency); records due in the first ``warmup_s``
    are stamped 0 and not counted by the allies."""
    from kafka import KafkaProducer

    from schemas.headers import SENT_NS_HEADER
    from trilink.latency import encode_sent_ns
    from trilink.pacing import pace_until

    records = pickle.loads(Path(p["records"]).read_bytes())
    producer = KafkaProducer(**producer_config(p["bootstrap"], "bench-floor-source"))
    send, speed, stop = producer.send, p["speed"], threading.Event()
    intended, warmup_s = p.get("intended", False), p.get("warmup_s", 0.0)
    uncounted = encode_sent_ns(0)
    print("ready", flush=True)
    start_ns = time.monotonic_ns()
    start_wall_ns = time.time_ns()
    for offset_s, topic, partition, key, value, headers in records:
        due_ns = round(offset_s / speed * 1e9)
        pace_until(start_ns + due_ns, stop)
        if offset_s < warmup_s:
            stamp = uncounted
        else:
            stamp = encode_sent_ns(start_wall_ns + due_ns if intended else time.time_ns())
        send(topic, value, key=key, headers=[*headers, (SENT_NS_HEADER, stamp)], partition=partition)
    producer.flush()
    print(json.dumps({"sent": len(records), "wall_s": (time.monotonic_ns() - start_ns) / 1e9}), flush=True)


def work_hub(p: dict[str, Any]) -> None:
    """Forward every ingest record to every feed, same key and partition (the hub's Kafka work)."""
    from kafka import KafkaProducer

    from trilink.pacing import linger_after_poll

    sys.setswitchinterval(p["switch_interval_ms"] / 1000)
    consumer = _consumer_at_end(
        p["bootstrap"], p["ingest"], "bench-floor-hub", p["group"] and f"{p['group']}-hub"
    )
    committer = _Committer(consumer, p["group"])
    producer = KafkaProducer(**producer_config(p["bootstrap"], "bench-floor-hub"))
    send, feeds, linger_ns = producer.send, p["feeds"], p["linger_ms"] * 1_000_000
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print("ready", flush=True)
    records = 0
    while not stop.is_set():
        batch = consumer.poll(timeout_ms=100, max_records=500)
        if not batch:
            continue
        polled_ns = time.monotonic_ns()
        for tp_records in batch.values():
            for r in tp_records:
                for feed in feeds:
                    send(feed, r.value, key=r.key, headers=r.headers, partition=r.partition)
                records += 1
        committer.maybe_commit()
        linger_after_poll(batch, polled_ns, linger_ns, stop)
    producer.flush()
    print(json.dumps({"records": records}), flush=True)
    consumer.close()  # leaves its group, which the driver then deletes


def work_ally(p: dict[str, Any]) -> None:
    """Forward ``feeds`` to the ``out`` topic; send -> acknowledged is the end-to-end latency.
    Ends after ``expected`` acknowledgements, or (``expected`` None) on SIGTERM; prints one JSON
    line (CPU from the first record on). ``bench_demo.py``'s floor is this too."""
    from kafka import KafkaProducer

    from schemas.headers import SENT_NS_HEADER
    from trilink.latency import decode_sent_ns, percentile_of_sorted
    from trilink.pacing import linger_after_poll

    sys.setswitchinterval(p["switch_interval_ms"] / 1000)
    consumer = _consumer_at_end(
        p["bootstrap"],
        p["feeds"],
        f"bench-floor-ally-{p['ally']}",
        p["group"] and f"{p['group']}-{p['ally']}",
    )
    committer = _Committer(consumer, p["group"])
    producer = KafkaProducer(**producer_config(p["bootstrap"], f"bench-floor-ally-{p['ally']}"))
    send, out, linger_ns, expected = producer.send, p["out"], p["linger_ms"] * 1_000_000, p["expected"]
    latencies_ns: list[int] = []
    acknowledged = [0]

    def acked(sent_ns: int, _metadata: Any) -> None:
        acknowledged[0] += 1
        if sent_ns:  # 0: a warm-up record, or none stamped
            latencies_ns.append(time.time_ns() - sent_ns)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print("ready", flush=True)
    records = polls = 0
    cpu_start: float | None = None
    while not stop.is_set() and (expected is None or acknowledged[0] < expected):
        batch = consumer.poll(timeout_ms=100, max_records=500)
        if not batch:
            continue
        polled_ns = time.monotonic_ns()
        if cpu_start is None:
            cpu_start = time.process_time()
        polls += 1
        for tp_records in batch.values():
            for r in tp_records:
                sent_ns = next((decode_sent_ns(v) for k, v in r.headers if k == SENT_NS_HEADER), None) or 0
                send(out, r.value, key=r.key, headers=r.headers, partition=r.partition).add_callback(
                    acked, sent_ns
                )
                records += 1
        committer.maybe_commit()
        linger_after_poll(batch, polled_ns, linger_ns, stop)
    producer.flush()
    cpu_s = time.process_time() - (cpu_start if cpu_start is not None else time.process_time())
    ordered = sorted(latencies_ns)
    print(
        json.dumps(
            {
                "records": records,
                "polls": polls,
                "cpu_s": cpu_s,
                "p50_ms": percentile_of_sorted(ordered, 50) / 1e6 if ordered else None,
                "p99_ms": percentile_of_sorted(ordered, 99) / 1e6 if ordered else None,
            }
        ),
        flush=True,
    )
    consumer.close()  # leaves its group, which the driver then deletes


WORKERS = {"source": work_source, "hub": work_hub, "ally": work_ally}


def prepare_records(
    scenario_name: str,
    topics: dict[str, str],
    counts: dict[str, int],
    rate: tuple[float, float] | None = None,
) -> tuple[list[Any], float]:
    """The run's records (offset s, scratch ingest topic, partition, key, value, headers) and its
    default speed, built as ``trilink run`` builds them. ``rate`` (events/s, seconds): instead,
    the scenario's records over and over at that constant rate for that long, at speed 1 (the
    load test's open-loop schedule; the floor does not decode, so repeated values cost the same)."""
    from kafka.partitioner.default import murmur2

    from producers.publisher import Run, for_run
    from producers.scenario import load_scenario, simulate
    from schemas.codec import encode_event
    from schemas.headers import PACING_HEADER, REALTIME_PACING, kafka_headers, message_key
    from trilink.pipeline import DEFAULT_PUBLISH_WALL_S

    scenario = load_scenario(scenario_name)
    speed = max(1.0, scenario.duration_s / DEFAULT_PUBLISH_WALL_S)
    records = []
    for item in for_run(simulate(scenario), Run.new(), scenario.start_time):
        event = item.event
        topic = topics[event.header.sensor_nation.value]
        key = message_key(event)
        headers = kafka_headers(event, f"/trilink/sensors/{event.header.sensor_id}")
        if speed == 1.0:
            headers.append((PACING_HEADER, REALTIME_PACING))
        partition = (murmur2(key) & 0x7FFFFFFF) % counts[topic]
        records.append((item.emit_offset_s, topic, partition, key, encode_event(event), tuple(headers)))
    if rate is not None:
        per_s, seconds = rate
        count = round(per_s * seconds)
        count += round(per_s * WARMUP_S)  # the warm-up comes first, as in the load test
        return [(i / per_s, *records[i % len(records)][1:]) for i in range(count)], 1.0
    return records, speed


def _start(role: str, params: dict[str, Any], env: dict[str, str], cpu: int | None) -> subprocess.Popen[str]:
    """One worker process; ``cpu``: pinned there as trilink pins the service it stands for."""
    command = [sys.executable, __file__, "--worker", role, "--params", json.dumps(params | {"cpu": cpu})]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    assert child.stdout is not None
    if child.stdout.readline().strip() != "ready":
        raise SystemExit(f"the {role} process did not start")
    return child


def _last_json(child: subprocess.Popen[str], timeout_s: float) -> dict[str, Any]:
    out, _ = child.communicate(timeout=timeout_s)
    return dict(json.loads(out.strip().splitlines()[-1]))


def run_floor(
    bootstrap: str,
    scenario: str,
    partitions: int | None,
    groups: bool,
    rate: tuple[float, float] | None = None,
) -> dict[str, Any]:
    from kafka import KafkaAdminClient, KafkaConsumer
    from kafka.admin import NewTopic

    settings = get_settings()
    tag = uuid.uuid4().hex[:8]
    real = {f"ingest.{n}": topic_name(f"ingest.{n}") for n in NATIONS}
    real |= {f"feed.{a}": topic_name(f"feed.{a}") for a in ALLIES}
    real |= {f"ally.{a}": topic_name(f"ally.{a}") for a in ALLIES}
    probe = KafkaConsumer(**consumer_config(bootstrap, None, "bench-floor-probe"))
    counts = {
        role: partitions or len(probe.partitions_for_topic(name) or ()) or 1 for role, name in real.items()
    }
    probe.close()
    scratch = {role: f"bench-floor-{tag}.{role}" for role in real}
    admin = KafkaAdminClient(**admin_config(bootstrap, "bench-floor-admin"))
    brokers = len(admin.describe_cluster()["brokers"])
    replication = min(3, brokers)
    configs = {"min.insync.replicas": str(min(2, replication)), "message.timestamp.type": "LogAppendTime"}
    admin.create_topics([NewTopic(scratch[r], counts[r], replication, topic_configs=configs) for r in real])
    work = Path(tempfile.mkdtemp(prefix="bench-floor-"))
    children: list[subprocess.Popen[str]] = []
    try:
        records, speed = prepare_records(
            scenario,
            {n: scratch[f"ingest.{n}"] for n in NATIONS},
            {scratch[r]: counts[r] for r in real},
            rate,
        )
        (work / "records.pickle").write_bytes(pickle.dumps(records))
        env = {**os.environ, "TRILINK_BOOTSTRAP": bootstrap}
        common = {
            "bootstrap": bootstrap,
            "linger_ms": settings.poll_linger_ms,
            # the services' process setting too (trilink.runtime.tune_service), not the sensors'
            "switch_interval_ms": settings.service_switch_interval_ms,
            "group": f"bench-floor-{tag}" if groups else None,
        }
        allies = {
            a: _start(
                "ally",
                common
                | {
                    "ally": a,
                    "feeds": [scratch[f"feed.{a}"]],
                    "out": scratch[f"ally.{a}"],
                    "expected": len(records),
                },
                env,
                cpu_for(f"ally-{a}", settings.cpu_pinning),
            )
            for a in ALLIES
        }
        hub = _start(
            "hub",
            common
            | {
                "ingest": [scratch[f"ingest.{n}"] for n in NATIONS],
                "feeds": [scratch[f"feed.{a}"] for a in ALLIES],
            },
            env,
            cpu_for("hub", settings.cpu_pinning),
        )
        children = [*allies.values(), hub]
        source = _start(
            "source",
            {
                "bootstrap": bootstrap,
                "records": str(work / "records.pickle"),
                "speed": speed,
                # at a rate, as the load test counts: from the due time, after its warm-up
                "intended": rate is not None,
                "warmup_s": 0.0 if rate is None else WARMUP_S,
            },
            env,
            cpu_for("run", settings.cpu_pinning),
        )
        children.append(source)
        roles = {source.pid: "source (the sensors' sends)", hub.pid: "hub floor"}
        roles |= {child.pid: f"ally {a} floor" for a, child in allies.items()}
        sampler = CpuSampler(roles)
        sampler.start()
        print(
            f"# {len(records)} records at speed {speed:.1f}, poll linger {settings.poll_linger_ms} ms, "
            f"switch interval {settings.service_switch_interval_ms:g} ms in the hub and allies",
            flush=True,
        )
        sent = _last_json(source, timeout_s=600)
        results = {a: _last_json(child, timeout_s=120) for a, child in allies.items()}
        sampler.stop()
        hub.send_signal(signal.SIGTERM)
        _last_json(hub, timeout_s=60)
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
        admin.delete_topics(list(scratch.values()))
        if groups:
            delete_groups(admin, [f"bench-floor-{tag}-{member}" for member in ("hub", *ALLIES)])
        admin.close()
    events = sent["sent"]
    print(
        f"# machine: nproc {os.cpu_count()}, load {os.getloadavg()[0]:.2f}; {events} records sent in {sent['wall_s']:.1f} s"
    )
    sampler.print_table(events)
    print(
        f"{'ally':<5} {'records':>9} {'e2e p50 ms':>10} {'e2e p99 ms':>10} {'us/record':>10} {'per poll':>9}"
    )
    for a, r in results.items():
        us = 1e6 * r["cpu_s"] / max(r["records"], 1)
        print(
            f"{a:<5} {r['records']:>9} {r['p50_ms'] or float('nan'):>10.2f} {r['p99_ms'] or float('nan'):>10.2f} "
            f"{us:>10.0f} {r['records'] / max(r['polls'], 1):>9.1f}"
        )
        r["us_per_record"] = us
    return {"events": events, "busiest_5s_cores": sum(sampler.busiest()[1].values()), "allies": results}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", default="salvo", help="scenario name or file (default salvo: the demo)")
    parser.add_argument("--bootstrap", default=os.environ.get("TRILINK_BOOTSTRAP"))
    parser.add_argument(
        "--partitions", type=int, help="partitions of every scratch topic (default: the real topics' counts)"
    )
    parser.add_argument(
        "--groups",
        action="store_true",
        help="the floor's hub and allies consume in consumer groups and commit every 0.2 s, as the services do",
    )
    parser.add_argument(
        "--with-demo", action="store_true", help="then run bench_demo.py --no-floor and compare"
    )
    parser.add_argument(
        "--rate",
        type=float,
        help="events/s: play the scenario's records over and over at this constant rate "
        "(the load test's shape: `trilink loadtest --rate R`) instead of at the scenario's pace",
    )
    parser.add_argument("--duration", type=float, default=20.0, help="seconds at --rate (default 20)")
    parser.add_argument("--json", type=Path, help="also write the numbers to this file")
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--params", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        params = json.loads(args.params)
        pin_process(os.getpid(), params["cpu"])  # before the clients start their threads
        WORKERS[args.worker](params)
        return 0
    if not args.bootstrap:
        parser.error("set TRILINK_BOOTSTRAP (or --bootstrap): start a cluster with `trilink up` first")
    if args.with_demo and args.rate is not None:
        parser.error(
            "--with-demo plays the demo at its own pace; compare --rate with `trilink loadtest --rate`"
        )
    shape = "the demo's records" if args.rate is None else f"{args.rate:g} events/s for {args.duration:g} s"
    print(f"## the floor: {shape} through plain kafka-python clients in the hub topology", flush=True)
    figures: dict[str, Any] = {
        "floor": run_floor(
            args.bootstrap,
            args.scenario,
            args.partitions,
            args.groups,
            None if args.rate is None else (args.rate, args.duration),
        )
    }
    if args.with_demo:
        print(f"\n## trilink run {args.scenario} (bench/bench_demo.py --no-floor)", flush=True)
        demo_json = Path(tempfile.mkdtemp(prefix="bench-floor-demo-")) / "demo.json"
        command = [sys.executable, str(Path(__file__).with_name("bench_demo.py")), "--no-floor"]
        command += ["--scenario", args.scenario, "--bootstrap", args.bootstrap, "--json", str(demo_json)]
        if subprocess.call(command) != 0:
            return 1
        demo = json.loads(demo_json.read_text())
        figures["demo"] = demo
        floor = figures["floor"]
        print("\n## trilink's demo against the architecture's floor, same records, same pace, one run")
        print(
            f"busiest 5 s: trilink {demo['busiest_5s_cores']:.2f} cores, floor {floor['busiest_5s_cores']:.2f} cores"
        )
        print(
            f"{'ally':<5} {'p50 ms trilink/floor':>22} {'p99 ms trilink/floor':>22} {'us/record trilink/floor':>25}"
        )
        for a in ALLIES:
            t, f = demo["allies"][a], floor["allies"][a]
            print(
                f"{a:<5} {t['p50_ms']:>8.1f} / {f['p50_ms']:<6.1f}={t['p50_ms'] / f['p50_ms']:>4.1f}x"
                f" {t['p99_ms']:>8.1f} / {f['p99_ms']:<6.1f}={t['p99_ms'] / f['p99_ms']:>4.1f}x"
                f" {t['us_per_record']:>9.0f} / {f['us_per_record']:<6.0f}={t['us_per_record'] / f['us_per_record']:>4.2f}x"
            )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
