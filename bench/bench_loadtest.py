"""Load-test numbers: what the harness itself costs, and trilink's end-to-end latency at 1,000
and 10,000 events/s next to Kafka's own EndToEndLatency tool on the same broker.

Harness phase, per target rate: the sender processes alone (no ally service), then kafka-python's
produce floor for the same records in the same run: a plain ``KafkaProducer`` (the project's
producer settings, default partitioner) in a process of its own per sender, sending the records
the senders prepared, encoded beforehand with their final headers, on the same open-loop
schedule, its records frozen out of the garbage collector's sight (the senders tune theirs as
every trilink producer process does). CPU per event is process CPU (every thread) from the
schedule's zero to the last acknowledgement, divided by the events sent; the ratio is
sender / floor.

Run: .venv/bin/python bench/bench_loadtest.py [--duration S] [--rates 1000,10000] [--skip-harness]
[--harness-only] [--harness 1000x1,5000x1,20000x1,20000x2]
(needs a broker: `trilink up`, or TRILINK_BOOTSTRAP). Prints numbers and the commands that
produced them; asserts nothing (machines here are shared and noisy). A rate the harness could
not emit is printed as such, with the rate it did achieve.
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import multiprocessing
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from schemas.headers import ACTUAL_SENT_NS_HEADER, SENT_NS_HEADER
from trilink.latency import encode_sent_ns
from trilink.loadtest.runner import HarnessFigures, LoadTest, new_run_id
from trilink.loadtest.sender import Partitions, ProducerSettings, prepare
from trilink.loadtest.workload import NS_PER_S, LoadSpec, Workload
from trilink.platform.clients import producer_config
from trilink.platform.connection import ensure_cluster

_CLI = [sys.executable, "-m", "trilink.cli", "loadtest"]


def harness_alone(bootstrap: str, rate_per_s: float, duration_s: float, producers: int) -> None:
    """Schedule + send, no consumer: CPU per event and the rate actually emitted, beside the
    produce floor for the same records on the same schedule."""
    spec = LoadSpec(
        run_id=new_run_id(), duration_s=duration_s, warmup_s=1.0, rate_per_s=rate_per_s, producers=producers
    )
    quiet = io.StringIO()
    loadtest = LoadTest(
        bootstrap, ProducerSettings(), [], progress_interval_s=3600.0, abort_lag_s=0.0, out=quiet
    )
    figures = loadtest.send_only(spec)
    floor_cpu_s, floor_sent, floor_lag_ms, floor_span_s = produce_floor(bootstrap, spec)
    sender_us = figures.cpu_us_per_event()
    floor_us = floor_cpu_s / max(floor_sent, 1) * 1e6
    print(
        f"  target {rate_per_s:>6.0f}/s x{producers}: senders {_harness_cells(figures)}"
        + ("  [SATURATED]" if figures.saturated else "")
    )
    print(
        f"  {'':>15}  floor   achieved {floor_sent / floor_span_s:>6.0f}/s, "
        f"CPU {floor_us:6.1f} us/event, schedule lag p99 {floor_lag_ms:8.2f} ms"
        f"  -> senders / floor {sender_us / floor_us if floor_us else float('nan'):.2f}x"
    )


def _harness_cells(figures: HarnessFigures) -> str:
    return (
        f"achieved {figures.achieved_rate_per_s:>6.0f}/s, CPU {figures.cpu_us_per_event():6.1f} us/event "
        f"(prepared before the clock: {figures.encode_cpu_s / max(figures.sent, 1) * 1e6:5.1f}), "
        f"schedule lag p99 {figures.schedule_lag.value_at_percentile_ms(99.0) or 0:8.2f} ms"
    )


def produce_floor(bootstrap: str, spec: LoadSpec) -> tuple[float, int, float, float]:
    """kafka-python's own cost for the senders' records: one plain producer process per sender,
    same records and schedule. Returns (CPU seconds, records sent, worst p99 lateness ms, seconds
    from the schedule's zero to the last send plus one interval)."""
    context = multiprocessing.get_context("spawn")
    results: Any = context.Queue()
    procs = [
        context.Process(target=_floor_process, args=(bootstrap, spec, worker, results), daemon=True)
        for worker in range(spec.producers)
    ]
    for proc in procs:
        proc.start()
    answers = [results.get(timeout=600) for _ in procs]
    for proc in procs:
        proc.join(30)
    cpu_s, sent = sum(a[0] for a in answers), sum(a[1] for a in answers)
    return cpu_s, sent, max(a[2] for a in answers), max(a[3] for a in answers)


def _floor_process(bootstrap: str, spec: LoadSpec, worker: int, results: Any) -> None:
    from kafka import KafkaProducer

    from trilink.loadtest.accounting import CurveRecorder

    settings = ProducerSettings()
    kafka: Any = KafkaProducer(
        **producer_config(bootstrap, f"bench-loadtest-floor-{spec.run_id}-{worker}", **settings.overrides())
    )
    partitions = Partitions(kafka, spec.partitions)
    start_ns = time.time_ns() + 60 * NS_PER_S  # stamped into the headers; only their size matters
    records = []
    for ready in prepare(Workload(spec), worker, time.time_ns(), partitions, spec.run_id.encode("ascii")):
        due = encode_sent_ns(start_ns + ready.planned.offset_ns)
        headers = [*ready.headers, (SENT_NS_HEADER, due), (ACTUAL_SENT_NS_HEADER, due)]
        # The default partitioner decides, as for any plain producer, unless the load is confined
        # to some partitions (then the partition is part of the record).
        partition = ready.partition if spec.partitions is not None else None
        records.append((ready.planned.offset_ns, ready.topic, ready.key, ready.value, headers, partition))
    gc.collect()
    gc.freeze()  # the records out of the collector's sight: the floor is the client library's cost
    lag = CurveRecorder()
    send = kafka.send
    start_ns = time.time_ns() + 300_000_000
    cpu0 = time.process_time()
    for offset_ns, topic, key, value, headers, partition in records:
        due_ns = start_ns + offset_ns
        wait_ns = due_ns - time.time_ns()
        if wait_ns > 0:
            time.sleep(wait_ns / NS_PER_S)
        lag.record_ns(time.time_ns() - due_ns)
        send(topic, value=value, key=key, headers=headers, partition=partition)
    last_ns = time.time_ns()
    kafka.flush()
    cpu = time.process_time() - cpu0
    kafka.close()
    span_s = (last_ns - start_ns) / NS_PER_S + 1.0 / (spec.rate_per_s or 1.0)
    results.put((cpu, len(records), lag.value_at_percentile_ms(99.0) or 0.0, span_s))


def pipeline(rate_per_s: float, duration_s: float, baseline_records: int, out_dir: Path) -> None:
    report_path = out_dir / f"loadtest-{rate_per_s:.0f}.json"
    command = [
        *_CLI,
        "--rate", f"{rate_per_s:g}", "--duration", f"{duration_s:g}", "--warmup", "2",
        "--baseline", "--baseline-records", str(baseline_records),
        "--progress-interval", "5", "--report", str(report_path),
    ]  # fmt: skip
    print(f"\n$ {' '.join(['trilink', *command[4:]])}")
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if not report_path.exists():
        print(f"  no report (exit {done.returncode}): {done.stderr.strip().splitlines()[-1:]}")
        return
    report = json.loads(report_path.read_text())
    h = report["harness"]
    print(
        f"  exit {done.returncode} in {time.monotonic() - started:.0f} s; harness: target {h['target_rate_per_s']:.0f}/s, "
        f"achieved {h['achieved_rate_per_s']:.0f}/s, schedule lag p99 {h['schedule_lag']['p99_ms']:.1f} ms"
        + (f"  [HARNESS SATURATED: {h['saturation_reason']}]" if h["saturated"] else "")
    )
    tool = (report.get("baseline") or {}).get("tool")
    for ally, counts in report["allies"].items():
        row = next(
            r for r in report["latency"]
            if (r["ally"], r["hop"], r["basis"], r["kind"]) == (ally, "end_to_end", "intended", "*")
        )  # fmt: skip
        actual = next(
            r for r in report["latency"]
            if (r["ally"], r["hop"], r["basis"], r["kind"]) == (ally, "end_to_end", "actual", "*")
        )  # fmt: skip
        ratio = ""
        if tool:
            ratio = f"  = {row['p50_ms'] / max(tool['p50_ms'], 1e-9):.1f}x / {row['p99_ms'] / max(tool['p99_ms'], 1e-9):.1f}x Kafka's tool"
        print(
            f"  {ally}: delivered {counts['delivered']}/{counts['expected']} ({counts['throughput_per_s']:.0f}/s), "
            f"lost {counts['lost']}; end-to-end from intended p50 {row['p50_ms']:.1f} p99 {row['p99_ms']:.1f} ms "
            f"(from actual send p50 {actual['p50_ms']:.1f} p99 {actual['p99_ms']:.1f}){ratio}"
        )
    if tool:
        print(
            f"  Kafka EndToEndLatency ({tool['num_records']} x {tool['record_size_bytes']} B, acks={tool['acks']}, "
            f"one record in flight): p50 {tool['p50_ms']:g} p99 {tool['p99_ms']:g} p99.9 {tool['p99_9_ms']:g} ms"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--rates", default="200,1000,10000")
    parser.add_argument("--baseline-records", type=int, default=1000)
    parser.add_argument("--skip-harness", action="store_true")
    parser.add_argument("--harness-only", action="store_true", help="skip the pipeline runs")
    parser.add_argument(
        "--harness",
        default="1000x1,5000x1,20000x1,20000x2",
        help="harness steps, RATExSENDERS, comma-separated",
    )
    args = parser.parse_args(argv)
    bootstrap, _, _ = ensure_cluster()
    print(f"$ {shlex.join([sys.executable, *sys.argv])}")
    print(f"broker {bootstrap}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    if not args.skip_harness:
        print(
            "\nharness alone (schedule + send, acks=all, no consumer; events prepared before the clock), "
            "and kafka-python's produce floor for the same records on the same schedule:"
        )
        for step in args.harness.split(","):
            rate, _, producers = step.strip().partition("x")
            harness_alone(bootstrap, float(rate), min(args.duration, 5.0), int(producers or 1))
    if args.harness_only:
        return 0
    with tempfile.TemporaryDirectory(prefix="trilink-bench-loadtest-") as tmp:
        for rate in (float(r) for r in args.rates.split(",")):
            pipeline(rate, args.duration, args.baseline_records, Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
