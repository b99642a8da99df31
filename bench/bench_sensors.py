"""Event generation without Kafka: events per second and CPU time per event for a scenario.

Run: .venv/bin/python bench/bench_sensors.py [SCENARIO] [--repeat N]
(default scenario: salvo). Prints numbers; asserts nothing (machines here are shared and noisy).
"""

from __future__ import annotations

import argparse
import collections
import statistics
import sys
import time

from producers.scenario import load_scenario, simulate, solve_flights


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("scenario", nargs="?", default="salvo")
    parser.add_argument("--repeat", type=int, default=3)
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
