"""Event generation without Kafka, then producing into the broker: events/s and CPU per event.

Run: .venv/bin/python bench/bench_sensors.py [SCENARIO] [--repeat N] [--no-kafka]
(default scenario: salvo). The Kafka phase publishes the pre-generated events as fast as
possible with the project's producer settings (acks=all, idempotence) into the broker named
by TRILINK_BOOTSTRAP, or the local one `trilink up` started (it starts one if none runs).
Prints numbers; asserts nothing (machines here are shared and noisy).
"""

from __future__ import annotations

import argparse
import collections
import statistics
import sys
import time

from producers.scenario import Scenario, load_scenario, simulate, solve_flights


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("scenario", nargs="?", default="salvo")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-kafka", action="store_true", help="skip the produce-rate phase")
    args = parser.parse_args(argv)
    scenario = load_scenario(args.scenario)

    cpu0, wall0 = time.process_time(), time.perf_counter()
    solve_flights(scenario)
    solve_cpu, solve_wall = time.process_time() - cpu0, time.perf_counter() - wall0

    rates, cpu_per_event, count = [], [], 0
    kinds: collections.Counter[str] = collections.Counter()
    for i in range(args.repeat):
        cpu0, wall0 = time.process_time(), time.perf_counter()
        count = 0
        for scheduled in simulate(scenario):
            count += 1
            if i == 0:
                kinds[scheduled.event.kind.value] += 1
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        rates.append(count / wall)
        cpu_per_event.append(cpu / count)

    cmd = " ".join([".venv/bin/python", "bench/bench_sensors.py", *sys.argv[1:]])
    print(f"command: {cmd}")
    print(
        f"scenario: {scenario.name} ({len(scenario.launches)} launches, {scenario.duration_s:g} s simulated)"
    )
    print(
        f"flight solving (first run, cached after): {solve_wall * 1e3:.0f} ms wall, "
        f"{solve_cpu * 1e3:.0f} ms CPU"
    )
    print(f"events per run: {count}  by kind: {dict(sorted(kinds.items()))}")
    print(
        f"generation rate: median {statistics.median(rates):,.0f} events/s "
        f"(min {min(rates):,.0f}, max {max(rates):,.0f}, {args.repeat} runs, wall clock)"
    )
    print(
        f"CPU per event: median {statistics.median(cpu_per_event) * 1e6:,.0f} us "
        f"(min {min(cpu_per_event) * 1e6:,.0f} us)"
    )
    if not args.no_kafka:
        _produce_rate(scenario)
    return 0


def _produce_rate(scenario: Scenario) -> None:
    """Publish the scenario's events (generated beforehand) as fast as possible, acks=all."""
    from producers.publisher import Run, SensorPublisher, for_run
    from trilink.platform.connection import ensure_cluster

    bootstrap, _, _ = ensure_cluster()
    run = Run.new()
    events = list(for_run(simulate(scenario), run, scenario.start_time))
    publisher = SensorPublisher(bootstrap, client_id="bench-sensors")
    try:
        cpu0, wall0 = time.process_time(), time.perf_counter()
        report = publisher.publish(iter(events), speed=None)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    finally:
        publisher.close()
    print(
        f"produce into {bootstrap} (acks=all, idempotent, as fast as possible): {report.acknowledged} of "
        f"{report.sent} acknowledged in {wall:.2f} s = {report.acknowledged / wall:,.0f} events/s; "
        f"CPU (encode + send + client IO thread) {cpu / max(report.sent, 1) * 1e6:,.0f} us per event"
    )


if __name__ == "__main__":
    sys.exit(main())
