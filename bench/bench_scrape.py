"""Scrape cost of trilink's /metrics endpoints: duration, bytes and series per scrape.

Run: .venv/bin/python bench/bench_scrape.py [URL ...] [--scrapes N]
       [--events-per-phase N] [--phases N]

With URLs: scrapes each endpoint ``--scrapes`` times and prints the figures (point it at
the real ally services and producers). Without: starts the simulated services of
``trilink.monitoring.simulated`` in-process (three allies and the sensors, each on its own
loopback port) and feeds them in phases of ``--events-per-phase`` events (10,000 = one
second at 10,000 events/s), ten times more concurrent missiles each phase, scraping after
each phase. Every event has a fresh event id and a missile id; neither is a label, so the
series count must stay flat while events and missiles grow. Prints numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from trilink.monitoring.simulated import Endpoint, SimulatedRun


def scrape(url: str) -> tuple[float, int, int, int]:
    """One scrape: (seconds, bytes, series, of which ``_created`` series)."""
    start = time.perf_counter()
    with urllib.request.urlopen(url, timeout=10) as resp:
        body = resp.read()
    elapsed = time.perf_counter() - start
    series = created = 0
    for line in body.decode().splitlines():
        if not line or line.startswith("#"):
            continue
        series += 1
        if line.split("{", 1)[0].split(" ", 1)[0].endswith("_created"):
            created += 1
    return elapsed, len(body), series, created


def report(name: str, url: str, scrapes: int) -> int:
    durations: list[float] = []
    size = series = created = 0
    for _ in range(scrapes):
        seconds, size, series, created = scrape(url)
        durations.append(seconds)
    durations.sort()
    p50 = statistics.median(durations) * 1000
    worst = durations[-1] * 1000
    print(
        f"  {name:10} scrape p50 {p50:6.2f} ms  max {worst:6.2f} ms  {size / 1024:7.1f} KiB  "
        f"{series:5d} series ({created} of them _created)"
    )
    return series


def simulated(args: argparse.Namespace) -> None:
    run = SimulatedRun(seed=1)
    endpoints = {f"ally {a}": Endpoint(s.registry) for a, s in run.allies.items()}
    endpoints["sensors"] = Endpoint(run.sensors.registry)
    total_events = 0
    missiles = 1
    try:
        for phase in range(1, args.phases + 1):
            start = time.perf_counter()
            run.run_events(args.events_per_phase, missiles=missiles)
            spent = time.perf_counter() - start
            total_events += args.events_per_phase
            per_event_us = spent / args.events_per_phase * 1e6
            print(
                f"phase {phase}: {total_events:>9,} events so far, {missiles:>6,} concurrent missiles; "
                f"metric updates cost {per_event_us:.1f} us/event for 3 allies + sensors "
                f"({args.events_per_phase / spent:,.0f} events/s in one Python thread)"
            )
            counts = [report(name, e.url, args.scrapes) for name, e in endpoints.items()]
            print(f"  total series across endpoints: {sum(counts)}")
            missiles *= 10
    finally:
        for endpoint in endpoints.values():
            endpoint.close()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("urls", nargs="*", help="/metrics URLs to measure (default: simulated services)")
    parser.add_argument("--scrapes", type=int, default=20, help="scrapes per endpoint and phase")
    parser.add_argument("--events-per-phase", type=int, default=10_000)
    parser.add_argument("--phases", type=int, default=4)
    args = parser.parse_args()
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    if args.urls:
        for url in args.urls:
            report(url.split("//", 1)[-1][:30], url, args.scrapes)
    else:
        simulated(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
