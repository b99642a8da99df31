"""Load-test numbers: what the harness itself costs, and trilink's end-to-end latency at 1,000
and 10,000 events/s next to Kafka's own EndToEndLatency tool on the same broker.

Run: .venv/bin/python bench/bench_loadtest.py [--duration S] [--rates 1000,10000] [--skip-harness]
(needs a broker: `trilink up`, or TRILINK_BOOTSTRAP). Prints numbers and the commands that
produced them; asserts nothing (machines here are shared and noisy). A rate the harness could
not emit is printed as such, with the rate it did achieve.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from trilink.loadtest.runner import LoadTest, new_run_id
from trilink.loadtest.sender import ProducerSettings
from trilink.loadtest.workload import LoadSpec
from trilink.platform.connection import ensure_cluster

_CLI = [sys.executable, "-m", "trilink.cli", "loadtest"]


def harness_alone(bootstrap: str, rate_per_s: float, duration_s: float, producers: int) -> None:
    """Schedule + encode + send, no consumer: CPU per event and the rate actually emitted."""
    spec = LoadSpec(
        run_id=new_run_id(), duration_s=duration_s, warmup_s=1.0, rate_per_s=rate_per_s, producers=producers
    )
    quiet = io.StringIO()
    loadtest = LoadTest(
        bootstrap, ProducerSettings(), [], progress_interval_s=3600.0, abort_lag_s=0.0, out=quiet
    )
    figures = loadtest.send_only(spec)
    print(
        f"  target {rate_per_s:>8.0f}/s x{producers} sender(s): achieved {figures.achieved_rate_per_s:>8.0f}/s, "
        f"CPU {figures.cpu_us_per_event():6.1f} us/event (encode {figures.encode_cpu_s / max(figures.sent, 1) * 1e6:5.1f}), "
        f"schedule lag p99 {figures.schedule_lag.value_at_percentile_ms(99.0) or 0:8.2f} ms"
        + ("  [SATURATED]" if figures.saturated else "")
    )


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
    args = parser.parse_args(argv)
    bootstrap, _, _ = ensure_cluster()
    print(f"broker {bootstrap}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    if not args.skip_harness:
        print("\nharness alone (schedule + encode + send, acks=all, no consumer):")
        for rate, producers in ((1000.0, 1), (5000.0, 1), (20000.0, 1), (20000.0, 2)):
            harness_alone(bootstrap, rate, min(args.duration, 5.0), producers)
    with tempfile.TemporaryDirectory(prefix="trilink-bench-loadtest-") as tmp:
        for rate in (float(r) for r in args.rates.split(",")):
            pipeline(rate, args.duration, args.baseline_records, Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
