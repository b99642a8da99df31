"""``trilink loadtest``: open-loop load through the three ally services, with objectives.

Exit status: 0 all good; 1 an objective missed or events lost/duplicated/reordered (the
message says which); 2 a typed error, including ``harness_saturated`` (the harness could not
emit the load, so nothing is claimed about the pipeline; missed objectives are still named
first); 130 interrupted (the report of what
ran is still printed and written).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trilink.loadtest.errors import LoadtestError

if TYPE_CHECKING:
    from trilink.loadtest.report import LoadTestReport

#: Events per second one sender process sends comfortably on a small machine (sets --producers auto).
_RATE_PER_SENDER = 2500.0


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "loadtest",
        help="open-loop load test through the three ally services (latency from the intended send time)",
        description=(
            "Send a fixed schedule of events (a rate, or a simulated salvo), run the US, JP and KR "
            "services, and report per ally, hop and event kind: throughput, p50..max, loss, "
            "duplicates, order and dead letters. Latency counts from each event's intended send "
            "time, so a stalled sender cannot hide latency."
        ),
    )
    load = parser.add_mutually_exclusive_group()
    load.add_argument("--rate", type=float, metavar="EVENTS_PER_S", help="constant target rate (default 500)")
    load.add_argument(
        "--salvo",
        type=int,
        metavar="N",
        help="N simultaneous simulated launches instead of a rate (tracks start about 40 s after launch: use --duration 60 or more)",
    )
    parser.add_argument(
        "--duration", type=float, default=10.0, metavar="SECONDS", help="measured time (default 10)"
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="sent first, excluded from latency (default 2)",
    )
    parser.add_argument(
        "--mix",
        metavar="KIND=W,...",
        help="event mix in rate mode, e.g. track_update=0.7,impact_prediction=0.2,alert=0.1",
    )
    parser.add_argument(
        "--sensors", metavar="ID,ID|all", default="all", help="sensors the events come from (default all)"
    )
    parser.add_argument(
        "--keys", type=int, default=64, help="concurrent tracks = Kafka keys in rate mode (default 64)"
    )
    parser.add_argument(
        "--partitions", type=int, metavar="N", help="confine the load to the first N partitions of each topic"
    )
    parser.add_argument(
        "--producers",
        type=int,
        metavar="N",
        help=f"sender processes (default: one per {_RATE_PER_SENDER:.0f}/s)",
    )
    parser.add_argument(
        "--linger-ms",
        type=int,
        help="producer linger.ms (default: the sensors' own, 0: a warning leaves as soon as it exists)",
    )
    parser.add_argument(
        "--acks", choices=("0", "1", "all"), default="all", help="producer acks (default all)"
    )
    parser.add_argument(
        "--slo",
        action="append",
        default=[],
        metavar="pNN=VALUE",
        help="objective on end-to-end latency, e.g. p99=50ms (repeatable)",
    )
    parser.add_argument(
        "--find-capacity",
        action="store_true",
        help="step the rate up (x1.5, then bisect) to the highest meeting the objectives",
    )
    parser.add_argument(
        "--capacity-steps", type=int, default=6, help="at most this many runs in --find-capacity (default 6)"
    )
    parser.add_argument(
        "--baseline", action="store_true", help="also run Kafka's EndToEndLatency tool on the same broker"
    )
    parser.add_argument(
        "--baseline-records", type=int, default=1000, help="records for the baseline tool (default 1000)"
    )
    parser.add_argument("--report", type=Path, metavar="FILE.json", help="write the JSON report here")
    parser.add_argument(
        "--plot", type=Path, metavar="FILE.png", help="write latency distribution and time series here"
    )
    parser.add_argument(
        "--progress-interval",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="seconds between progress lines when the output is not a terminal (default 5; a terminal gets a live line)",
    )
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=15.0,
        metavar="SECONDS",
        help="give up waiting for deliveries after this long without progress",
    )
    parser.add_argument(
        "--abort-lag",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="stop the run once a sender is this far behind its schedule (0 = never; default 5)",
    )
    parser.add_argument(
        "--max-schedule-lag",
        type=float,
        default=100.0,
        metavar="MS",
        help="p99 lateness beyond which the harness counts as saturated",
    )
    parser.set_defaults(handler=handler)


def handler(args: argparse.Namespace) -> int:
    from trilink.loadtest.baseline import run_baseline
    from trilink.loadtest.report import build_report, render_text, write_report
    from trilink.loadtest.runner import CapacityResult, LoadTest, RunResult, find_capacity, new_run_id
    from trilink.loadtest.sender import ProducerSettings
    from trilink.loadtest.slo import parse_objectives
    from trilink.loadtest.workload import LoadSpec, parse_mix
    from trilink.platform.connection import ensure_cluster

    objectives = parse_objectives(args.slo)
    if args.find_capacity and args.salvo is not None:
        raise LoadtestError("bad_option", "--find-capacity steps a rate; it cannot be combined with --salvo")
    rate = None if args.salvo is not None else (args.rate if args.rate is not None else 500.0)
    producers = args.producers or (max(1, math.ceil(rate / _RATE_PER_SENDER)) if rate is not None else 1)
    sensors = (
        ()
        if args.sensors.strip() in ("", "all")
        else tuple(s.strip() for s in args.sensors.split(",") if s.strip())
    )
    spec = LoadSpec(
        run_id=new_run_id(),
        duration_s=args.duration,
        warmup_s=args.warmup,
        rate_per_s=rate,
        salvo_launches=args.salvo,
        mix=parse_mix(args.mix),
        sensors=sensors,
        keys=args.keys,
        partitions=args.partitions,
        producers=producers,
    )
    producer = ProducerSettings(acks=args.acks)
    if args.linger_ms is not None:
        producer = ProducerSettings(acks=args.acks, linger_ms=args.linger_ms)
    bootstrap, _, _ = ensure_cluster(announce=lambda line: print(line, flush=True))
    loadtest = LoadTest(
        bootstrap,
        producer,
        objectives,
        drain_timeout_s=args.drain_timeout,
        progress_interval_s=args.progress_interval,
        max_schedule_lag_ms=args.max_schedule_lag,
        abort_lag_s=args.abort_lag,
    )
    result: RunResult | None = None
    capacity: CapacityResult | None = None
    interrupted = False
    try:
        loadtest.start()
        if args.find_capacity:
            capacity = find_capacity(
                loadtest,
                spec,
                max_steps=args.capacity_steps,
                on_step=lambda s: loadtest.say(
                    f"step {s.rate_per_s:.0f}/s: {'pass' if s.passed else 'fail'}"
                    + (f" ({s.why})" if s.why else "")
                ),
            )
            result = capacity.best or capacity.last
        else:
            result = loadtest.run(spec)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        loadtest.close()
    if result is None:
        print("trilink: loadtest interrupted before anything was sent", file=sys.stderr)
        return 130
    interrupted = interrupted or result.interrupted
    baseline = None
    if args.baseline and not interrupted:
        loadtest.say(
            f"running Kafka's EndToEndLatency ({args.baseline_records} records) on the same broker ..."
        )
        try:
            baseline = run_baseline(
                bootstrap,
                result.spec.run_id,
                num_records=args.baseline_records,
                record_size_bytes=max(round(result.harness.mean_value_bytes), 1),
                acks=args.acks,
            )
        except KeyboardInterrupt:
            interrupted = True
    report = build_report(result, loadtest.service_reports, baseline, capacity, loadtest.hub_report)
    report.run.interrupted = interrupted
    print(render_text(report))
    if args.report is not None:
        write_report(report, args.report)
        print(f"report written to {args.report}", file=sys.stderr)
    if args.plot is not None:
        from trilink.loadtest.plot import write_plot

        write_plot(report.model_dump(mode="json"), args.plot)
        print(f"plot written to {args.plot}", file=sys.stderr)
    return _exit_status(report, interrupted, capacity is not None)


def _exit_status(report: LoadTestReport, interrupted: bool, capacity_search: bool) -> int:
    if interrupted:
        print("trilink: loadtest interrupted; the report covers what ran", file=sys.stderr)
        return 130
    if capacity_search:
        if report.capacity is None or report.capacity.highest_passing_rate_per_s is None:
            print("trilink: loadtest [slo_missed] no tested rate met the objectives", file=sys.stderr)
            return 1
        return 0
    missed = [v for v in report.objectives if not v.met]
    for v in missed:
        observed = "nothing delivered" if v.observed_ms is None else f"{v.observed_ms:.3f} ms"
        print(
            f"trilink: loadtest [slo_missed] {v.objective}: end-to-end {observed} > {v.limit_ms:g} ms (ally {v.worst_ally})",
            file=sys.stderr,
        )
    bad = {a: c for a, c in report.allies.items() if c.lost or c.duplicates or c.out_of_order}
    for ally, c in bad.items():
        print(
            f"trilink: loadtest [events_lost] {ally}: lost {c.lost}, duplicates {c.duplicates}, out of order {c.out_of_order}",
            file=sys.stderr,
        )
    harness = report.harness
    if harness.saturated:
        raise LoadtestError(
            "harness_saturated",
            f"the harness could not emit the load ({harness.saturation_reason}); "
            "add --producers, lower --rate, or run on a bigger machine; latency figures describe the harness",
        )
    return 1 if missed or bad else 0
