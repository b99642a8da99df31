"""The main job measured from outside: ``trilink run SCENARIO`` (the demo is ``run salvo``) with
the CPU of every process sampled, beside kafka-python's floor for the same records in real time.

In one run, on the cluster ``TRILINK_BOOTSTRAP`` names (``trilink up --insecure`` or secured):

1. a floor process starts first: a group-less ``KafkaConsumer`` (``consumer_config``) positioned
   at the end of the JP service's input (its feed in the hub topology, the shared warning topics
   in the direct one) forwards every record as it arrives (same key, value and headers) to a
   scratch topic with ``producer_config``, waiting ``poll_linger_ms`` after a poll that returned
   records as the services do (``--floor-linger-ms`` to change). Its CPU per record is what
   kafka-python itself needs to receive and re-send the JP service's records at the run's pace;
2. ``python -m trilink.cli run SCENARIO --no-progress --report ... --audit-dir ...`` runs as a
   child. Its descendants are told apart by the audit file each ally service holds open (the
   other spawned service is the hub); a broker it starts, or the one already running, is found
   by its command line;
3. every 0.5 s, ``/proc/<pid>/stat`` gives each process's CPU time (all its threads).

Prints per process: CPU seconds over the run, CPU per published event, and its share of the
busiest 5 s of the machine; the run's end-to-end p50/p99 per ally from its report; the JP
service's CPU per record beside the floor's. Asserts nothing; deletes its scratch topic.

Run: ``TRILINK_BOOTSTRAP=127.0.0.1:9092 .venv/bin/python bench/bench_demo.py [--scenario salvo] [--no-floor]``
"""

from __future__ import annotations

import argparse
import json
import os
import re
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

from trilink.platform.clients import admin_config, consumer_config, producer_config  # noqa: E402
from trilink.platform.topics import topic_name  # noqa: E402
from trilink.processes import read_stat  # noqa: E402
from trilink.settings import get_settings  # noqa: E402

SAMPLE_S = 0.5
WINDOW_S = 5.0
_AUDIT = re.compile(r"ally-([a-z]{2})-.*\.jsonl$")


def floor_topics(topology: str) -> list[str]:
    if topology == "hub":
        return [topic_name("feed.JP")]
    return [topic_name("warnings"), topic_name("sensor_status")]


def work_floor(p: dict[str, Any]) -> None:
    """The floor process: forward each record of ``topics`` as it arrives; on SIGTERM print
    ``{"records", "cpu_s", "polls"}`` as one JSON line (CPU from the first record on)."""
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    from trilink.pacing import pace_until

    consumer = KafkaConsumer(**consumer_config(p["bootstrap"], None, "bench-demo-floor"))
    partitions = [
        TopicPartition(topic, n)
        for topic in p["topics"]
        for n in sorted(consumer.partitions_for_topic(topic) or ())
    ]
    consumer.assign(partitions)
    consumer.seek_to_end(*partitions)
    for tp in partitions:
        consumer.position(tp)
    producer = KafkaProducer(**producer_config(p["bootstrap"], "bench-demo-floor"))
    send, scratch, linger_ns = producer.send, p["scratch"], p["linger_ms"] * 1_000_000
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print("ready", flush=True)
    records = polls = 0
    cpu_start: float | None = None
    while not stop.is_set():
        batch = consumer.poll(timeout_ms=100, max_records=500)
        if not batch:
            continue
        polled_ns = time.monotonic_ns()
        if cpu_start is None:
            cpu_start = time.process_time()
        polls += 1
        for tp_records in batch.values():
            for r in tp_records:
                send(scratch, r.value, key=r.key, headers=r.headers)
                records += 1
        if linger_ns:
            pace_until(polled_ns + linger_ns, stop)
    producer.flush()
    cpu_s = time.process_time() - (cpu_start if cpu_start is not None else time.process_time())
    print(json.dumps({"records": records, "cpu_s": cpu_s, "polls": polls}), flush=True)


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds of all threads) of ``pid``, None once it is gone."""
    try:
        stat = read_stat(f"/proc/{pid}/stat")
    except OSError:
        return None
    return stat.ppid, stat.cpu_s


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _ally_of(pid: int) -> str | None:
    """The ally whose audit file ``pid`` holds open."""
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            match = _AUDIT.search(os.readlink(fd))
            if match:
                return match.group(1).upper()
    except OSError:
        pass
    return None


class Sampler:
    """CPU time of the run's process tree, the broker and the floor, every ``SAMPLE_S``."""

    def __init__(self, run_pid: int, floor_pid: int | None) -> None:
        self.run_pid = run_pid
        self.roles: dict[int, str] = {run_pid: "run (sensors, orchestration)"}
        if floor_pid is not None:
            self.roles[floor_pid] = "kafka-python floor (JP)"
        self.samples: list[tuple[float, dict[int, float]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        t0 = time.monotonic()
        while not self._stop.wait(SAMPLE_S):
            stats = {
                int(d): s for d in os.listdir("/proc") if d.isdigit() and (s := _stat(int(d))) is not None
            }
            cpu: dict[int, float] = {}
            for pid, (ppid, seconds) in stats.items():
                role = self.roles.get(pid)
                if role is None and "kafka.Kafka" in _cmdline(pid):
                    role = self.roles[pid] = f"broker {pid}"
                if role is None and self._descends(pid, stats):
                    ally = _ally_of(pid)
                    if ally is not None:
                        role = self.roles[pid] = f"ally {ally}"
                    elif ppid == self.run_pid and "spawn_main" in _cmdline(pid):
                        role = "hub (or an ally not yet open)"
                if role is not None:
                    cpu[pid] = seconds
            self.samples.append((time.monotonic() - t0, cpu))

    def _descends(self, pid: int, stats: dict[int, tuple[int, float]]) -> bool:
        while pid in stats and pid > 1:
            pid = stats[pid][0]
            if pid == self.run_pid:
                return True
        return False

    def role(self, pid: int) -> str:
        return self.roles.get(pid, "hub")

    def totals(self) -> dict[int, float]:
        """CPU seconds each process used while sampled (from 0 for one that started later)."""
        first: dict[int, float] = {}
        last: dict[int, float] = {}
        for i, (_, cpu) in enumerate(self.samples):
            for pid, seconds in cpu.items():
                first.setdefault(pid, seconds if i == 0 else 0.0)
                last[pid] = seconds
        return {pid: last[pid] - first[pid] for pid in last}

    def busiest(self) -> tuple[float, dict[int, float]]:
        """The 5 s window with the most CPU over all sampled processes: (start s, cores each)."""
        steps = max(int(WINDOW_S / SAMPLE_S), 1)
        best: tuple[float, float, dict[int, float]] = (-1.0, 0.0, {})
        for i in range(len(self.samples) - steps):
            (t_a, a), (t_b, b) = self.samples[i], self.samples[i + steps]
            cores = {pid: (b[pid] - a.get(pid, b[pid])) / (t_b - t_a) for pid in b}
            total = sum(cores.values())
            if total > best[0]:
                best = (total, t_a, cores)
        return best[1], best[2]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", default="salvo", help="scenario name or file (default salvo: the demo)")
    parser.add_argument("--speed", type=float, help="passed to trilink run (default: the run's own)")
    parser.add_argument("--bootstrap", default=os.environ.get("TRILINK_BOOTSTRAP"))
    parser.add_argument(
        "--floor-linger-ms", type=int, help="the floor's poll linger (default: the services')"
    )
    parser.add_argument(
        "--no-floor", action="store_true", help="no floor process: the run's figures without its extra load"
    )
    parser.add_argument("--json", type=Path, help="also write the numbers to this file")
    parser.add_argument("--worker", choices=["floor"], help=argparse.SUPPRESS)
    parser.add_argument("--params", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        work_floor(json.loads(args.params))
        return 0
    if not args.bootstrap:
        parser.error("set TRILINK_BOOTSTRAP (or --bootstrap): start a cluster with `trilink up` first")

    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    from trilink.pipeline import RunReport

    settings = get_settings()
    linger_ms = settings.poll_linger_ms if args.floor_linger_ms is None else args.floor_linger_ms
    scratch = f"bench-demo-floor-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(**admin_config(args.bootstrap, "bench-demo-admin"))
    work = Path(tempfile.mkdtemp(prefix="bench-demo-"))
    env = {**os.environ, "TRILINK_BOOTSTRAP": args.bootstrap}
    floor: subprocess.Popen[str] | None = None
    floor_out = ""
    try:
        if not args.no_floor:
            admin.create_topics([NewTopic(scratch, 3, 1)])
            params = {
                "bootstrap": args.bootstrap,
                "topics": floor_topics(settings.topology),
                "scratch": scratch,
            }
            params |= {"linger_ms": linger_ms}
            worker = [sys.executable, __file__, "--worker", "floor", "--params", json.dumps(params)]
            floor = subprocess.Popen(worker, stdout=subprocess.PIPE, text=True, env=env)
            assert floor.stdout is not None
            if floor.stdout.readline().strip() != "ready":
                raise SystemExit("the floor process did not start")
        command = [sys.executable, "-m", "trilink.cli", "run", args.scenario, "--no-progress"]
        command += ["--report", str(work / "report.json"), "--audit-dir", str(work / "audit")]
        if args.speed is not None:
            command += ["--speed", str(args.speed)]
        print(f"# command: {' '.join(command)}", flush=True)
        print(
            f"# topology {settings.topology}, poll linger {settings.poll_linger_ms} ms (floor {linger_ms} ms)"
        )
        run = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        sampler = Sampler(run.pid, None if floor is None else floor.pid)
        sampler.start()
        _, stderr = run.communicate()
        sampler.stop()
        if floor is not None:
            floor.send_signal(signal.SIGTERM)
            floor_out, _ = floor.communicate(timeout=60)
    finally:
        if floor is not None:
            if floor.poll() is None:
                floor.kill()
            admin.delete_topics([scratch])
        admin.close()
    if run.returncode != 0:
        print(stderr[-2000:], file=sys.stderr)
        return run.returncode
    report = RunReport.model_validate_json((work / "report.json").read_text())
    floor_result = json.loads(floor_out.strip().splitlines()[-1]) if floor_out.strip() else None
    events = report.published.sent
    totals = sampler.totals()
    start_s, busiest = sampler.busiest()

    print(f"# machine: nproc {os.cpu_count()}, load {os.getloadavg()[0]:.2f}; {events} events published")
    print(f"{'process':<32} {'CPU s':>7} {'us/event':>9} {'cores, busiest 5 s':>19}")
    for pid, seconds in sorted(totals.items(), key=lambda item: -item[1]):
        if seconds < 0.05:
            continue
        print(
            f"{sampler.role(pid):<32} {seconds:>7.2f} {1e6 * seconds / max(events, 1):>9.0f} {busiest.get(pid, 0.0):>19.2f}"
        )
    print(f"# busiest 5 s window from {start_s:.0f} s: {sum(busiest.values()):.2f} cores in all")
    floor_us = None
    if floor_result is not None:
        floor_us = 1e6 * floor_result["cpu_s"] / max(floor_result["records"], 1)
        per_poll = floor_result["records"] / max(floor_result["polls"], 1)
        print(
            f"# floor: {floor_result['records']} records, {per_poll:.1f} per poll, {floor_us:.0f} us CPU per record"
        )
    figures: dict[str, Any] = {"events": events, "floor_us_per_record": floor_us, "allies": {}}
    print(
        f"{'ally':<5} {'delivered':>9} {'e2e p50 ms':>10} {'e2e p99 ms':>10} {'us/record':>10} {'vs floor':>9}"
    )
    for ally, ally_report in report.allies.items():
        row = ally_report.latency_row("end_to_end", "kafka")
        pids = [pid for pid in totals if sampler.role(pid) == f"ally {ally}"]
        received = sum(ally_report.counts.received.values())
        us = 1e6 * sum(totals[pid] for pid in pids) / max(received, 1)
        p50 = row.p50_ms if row else float("nan")
        p99 = row.p99_ms if row else float("nan")
        ratio = "-" if floor_us is None else f"{us / floor_us:.2f}x"
        print(
            f"{ally:<5} {ally_report.delivered_total():>9} {p50:>10.2f} {p99:>10.2f} {us:>10.0f} {ratio:>9}"
        )
        figures["allies"][ally] = {"p50_ms": p50, "p99_ms": p99, "us_per_record": us}
    print(
        "# us/record: the service's CPU over the records it received; the floor read the JP service's input"
    )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
