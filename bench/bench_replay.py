"""Replay benchmark: timing fidelity at x1 and x10, and the fastest replay rate.

    .venv/bin/python bench/bench_replay.py [--bootstrap HOST:PORT] [--recording single_srbm]
        [--x1-window-s 60] [--fast-copies 10]

Timing fidelity is the lateness of each send against its schedule (actual minus intended emit
offset, the same figure ``trilink replay`` reports); the target is p99 <= 2 ms. The fast rate
is events/s with no pacing, until every record is acknowledged (acks=all, idempotent), over
``--fast-copies`` back-to-back copies of the recording. The ``x10 null`` row sends the same
schedule to a producer that does nothing: what is left is the host's scheduling noise. Without ``--bootstrap`` (or
``TRILINK_BOOTSTRAP``) a private single-node cluster is started in a temporary directory.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import sys
from typing import Any

from trilink.replay.format import read_recording, resolve_recordings
from trilink.replay.replayer import PreparedSend, Replayer, ReplayReport, plan_replay, prepare_sends

FIDELITY_TARGET_P99_US = 2_000


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class _NullFuture:
    def add_callback(self, callback: Any) -> None:
        callback(None)

    def add_errback(self, errback: Any) -> None:
        pass


class _NullProducer:
    """Accepts sends and does nothing: isolates the pacing loop from Kafka (the control row)."""

    def send(self, *args: Any, **kwargs: Any) -> _NullFuture:
        return _NullFuture()

    def partitions_for(self, topic: str) -> set[int]:
        return {0}

    def flush(self, timeout: float | None = None) -> None:
        pass

    def close(self, timeout: float | None = None) -> None:
        pass


def _run(
    bootstrap: str, sends: list[PreparedSend], speed: float | None, producer: Any = None
) -> tuple[ReplayReport, float]:
    replayer = Replayer(bootstrap, client_id="bench-replay", producer=producer)
    cpu_before = _cpu_s()
    try:
        report = replayer.replay(sends, speed)
    finally:
        replayer.close()
    return report, _cpu_s() - cpu_before


def bench(bootstrap: str, args: argparse.Namespace) -> None:
    recordings = [read_recording(p) for p in resolve_recordings([args.recording])]
    sends = prepare_sends(plan_replay(recordings))
    span_s = sends[-1].intended_offset_ns / 1e9
    print(f"recording {args.recording}: {len(sends)} records over {span_s:.1f} s of original time")
    print(
        f"{'run':<10} {'events':>7} {'wall s':>7} {'ev/s':>8} {'p50 us':>7} {'p99 us':>7} {'max us':>7} {'cpu s':>6}"
    )
    window_ns = int(args.x1_window_s * 1e9)
    for label, speed, selected, producer in (
        ("x1", 1.0, [s for s in sends if s.intended_offset_ns <= window_ns], None),
        ("x10", 10.0, sends, None),
        ("x10 null", 10.0, sends, _NullProducer()),  # same schedule, no Kafka: the host's share
    ):
        report, cpu_s = _run(bootstrap, selected, speed, producer)
        f = report.fidelity
        assert f is not None
        verdict = "meets" if f.p99_us <= FIDELITY_TARGET_P99_US else "MISSES"
        print(
            f"{label:<10} {report.sent:>7} {report.wall_s:>7.2f} {report.rate_per_s:>8.0f} "
            f"{f.p50_us:>7} {f.p99_us:>7} {f.max_us:>7} {cpu_s:>6.2f}  ({verdict} p99 <= 2 ms)"
        )
    copies = []
    for n in range(args.fast_copies):
        copies += [dataclasses.replace(s, intended_offset_ns=s.intended_offset_ns + n) for s in sends]
    report, cpu_s = _run(bootstrap, copies, None)
    print(
        f"{'fast':<10} {report.sent:>7} {report.wall_s:>7.2f} {report.rate_per_s:>8.0f} "
        f"{'-':>7} {'-':>7} {'-':>7} {cpu_s:>6.2f}  (acknowledged {report.acknowledged}, failed {report.failed})"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bootstrap", default=os.environ.get("TRILINK_BOOTSTRAP"))
    parser.add_argument("--recording", default="single_srbm")
    parser.add_argument("--x1-window-s", type=float, default=60.0, help="replay only this much at x1")
    parser.add_argument("--fast-copies", type=int, default=10)
    args = parser.parse_args()
    print("command: .venv/bin/python bench/bench_replay.py " + " ".join(sys.argv[1:]))
    print(f"host: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    if args.bootstrap:
        bench(args.bootstrap, args)
        return 0
    from trilink.platform.scratch import scratch_cluster

    with scratch_cluster() as (_, state):
        print(f"private broker: {state.bootstrap}")
        bench(state.bootstrap, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
