"""The main job measured from outside: ``trilink run SCENARIO`` (the demo is ``run salvo``) with
the CPU of every process sampled, beside kafka-python's floor for the same records in real time.

In one run, on the cluster ``TRILINK_BOOTSTRAP`` names (``trilink up --insecure`` or secured):

1. a floor process starts first: ``bench_floor_pipeline.py``'s ally, a group-less
   ``KafkaConsumer`` (``consumer_config``) positioned at the end of the JP service's input (its
   feed in the hub topology, the shared warning topics in the direct one), forwards every record
   as it arrives (same key, value, headers and partition) to a scratch topic with
   ``producer_config``, lingering after a poll as the services do (``poll_linger_ms``,
   ``--floor-linger-ms`` to change). Its CPU per record is what kafka-python itself needs to
   receive and re-send the JP service's records at the run's pace;
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
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from _sampling import CpuSampler, Stats, cmdline  # noqa: E402  (bench/, this script's directory)
from bench_floor_pipeline import work_ally  # noqa: E402

from trilink.platform.clients import admin_config, consumer_config  # noqa: E402
from trilink.platform.topics import topic_name  # noqa: E402
from trilink.settings import get_settings  # noqa: E402

_AUDIT = re.compile(r"ally-([a-z]{2})-.*\.jsonl$")


def floor_topics(topology: str) -> list[str]:
    if topology == "hub":
        return [topic_name("feed.JP")]
    return [topic_name("warnings"), topic_name("sensor_status")]


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


def run_tree_classifier(run_pid: int) -> Callable[[int, int, Stats], str | None]:
    """Tells the services ``trilink run`` spawned apart: an ally holds its audit file open, the
    other spawned service is the hub."""

    def descends(pid: int, stats: Stats) -> bool:
        while pid in stats and pid > 1:
            pid = stats[pid][0]
            if pid == run_pid:
                return True
        return False

    allies: dict[int, str] = {}  # once seen holding its audit file, an ally stays one

    def classify(pid: int, ppid: int, stats: Stats) -> str | None:
        if pid in allies:
            return allies[pid]
        if not descends(pid, stats):
            return None
        ally = _ally_of(pid)
        if ally is not None:
            allies[pid] = f"ally {ally}"
            return allies[pid]
        if ppid == run_pid and "spawn_main" in cmdline(pid):
            return "hub"  # or an ally that has not opened its audit file yet
        return None

    return classify


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
        work_ally(json.loads(args.params))
        return 0
    if not args.bootstrap:
        parser.error("set TRILINK_BOOTSTRAP (or --bootstrap): start a cluster with `trilink up` first")

    from kafka import KafkaAdminClient, KafkaConsumer
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
            topics = floor_topics(settings.topology)
            probe = KafkaConsumer(**consumer_config(args.bootstrap, None, "bench-demo-probe"))
            partitions = max(len(probe.partitions_for_topic(t) or ()) for t in topics)
            probe.close()
            admin.create_topics([NewTopic(scratch, partitions, 1)])  # the floor keeps each record's partition
            params = {
                "bootstrap": args.bootstrap,
                "ally": "JP",
                "feeds": topics,
                "out": scratch,
                "linger_ms": linger_ms,
                "switch_interval_ms": settings.service_switch_interval_ms,
                "expected": None,
                "group": None,
            }
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
        roles = {run.pid: "run (sensors, orchestration)"}
        if floor is not None:
            roles[floor.pid] = "kafka-python floor (JP)"
        sampler = CpuSampler(roles, run_tree_classifier(run.pid))
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

    print(f"# machine: nproc {os.cpu_count()}, load {os.getloadavg()[0]:.2f}; {events} events published")
    sampler.print_table(events)
    floor_us = None
    if floor_result is not None:
        floor_us = 1e6 * floor_result["cpu_s"] / max(floor_result["records"], 1)
        per_poll = floor_result["records"] / max(floor_result["polls"], 1)
        print(
            f"# floor: {floor_result['records']} records, {per_poll:.1f} per poll, {floor_us:.0f} us CPU per record"
        )
        if floor_result.get("p99_ms") is not None:  # its input came through trilink's own hub (hub topology)
            print(
                f"# floor: send -> its forward acknowledged p50 {floor_result['p50_ms']:.2f} ms, "
                f"p99 {floor_result['p99_ms']:.2f} ms: the JP service's path with a bare forwarder in its place"
            )
    figures: dict[str, Any] = {
        "events": events,
        "floor_us_per_record": floor_us,
        "busiest_5s_cores": sum(sampler.busiest()[1].values()),
        "allies": {},
    }
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
