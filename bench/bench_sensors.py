"""Event generation without Kafka, then producing into the broker: events/s and CPU per event.

Run: .venv/bin/python bench/bench_sensors.py [SCENARIO] [--repeat N] [--no-kafka]
(default scenario: salvo). The Kafka phase, each step in a process of its own (so process CPU,
kafka-python's IO thread included, is that step's alone), publishes the scenario's events,
generated beforehand, as fast as possible with the project's producer settings (acks=all,
idempotence) into the broker named by TRILINK_BOOTSTRAP, or the local one `trilink up` started
(it starts one if none runs):

- publish, prepared: ``SensorPublisher.prepare`` before the clock, then ``publish``;
- publish, encoding inside: ``publish`` given the scheduled events (as ``trilink sensors
  --fast`` does), which it encodes before its first send, on the clock;
- produce floor: the same records (value, key, headers, send time) re-sent by a plain
  ``KafkaProducer`` with the same settings and the default partitioner.

Publishing processes tune the garbage collector after set-up, as ``trilink sensors`` does; the
floor process holds only its records, frozen out of the collector's sight. Ratios are to the
floor of the same run. Prints numbers; asserts nothing (machines here are shared and noisy).
"""

from __future__ import annotations

import argparse
import collections
import gc
import multiprocessing
import statistics
import sys
import time
from typing import Any

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
    """Publish the scenario's events (generated beforehand) as fast as possible, acks=all: the
    publisher two ways and kafka-python's floor for the same records, in one run."""
    from trilink.platform.connection import ensure_cluster

    bootstrap, _, _ = ensure_cluster()
    context = multiprocessing.get_context("spawn")
    rows = []
    for step in ("publish, prepared", "publish, encoding inside", "produce floor"):
        results: Any = context.Queue()
        proc = context.Process(target=_produce_step, args=(step, scenario.name, bootstrap, results))
        proc.start()
        sent, acked, cpu_s, wall_s = results.get(timeout=600)
        proc.join(30)
        rows.append((step, sent, acked, cpu_s / max(sent, 1) * 1e6, sent / wall_s))
    floor_us = rows[-1][3]
    print(f"produce into {bootstrap} (acks=all, idempotent, as fast as possible):")
    print(f"  {'step':<26} {'sent':>7} {'acked':>7} {'CPU us/event':>13} {'events/s':>9} {'to floor':>9}")
    for step, sent, acked, cpu_us, rate in rows:
        print(f"  {step:<26} {sent:>7} {acked:>7} {cpu_us:>13.1f} {rate:>9,.0f} {cpu_us / floor_us:>8.2f}x")


def _produce_step(step: str, scenario_name: str, bootstrap: str, results: Any) -> None:
    """One step of the Kafka phase in its own process; puts (sent, acked, CPU s, wall s)."""
    from producers.publisher import Run, SensorPublisher, for_run
    from trilink.runtime import tune_gc

    scenario = load_scenario(scenario_name)
    events = list(for_run(simulate(scenario), Run.new(), scenario.start_time))
    publisher = SensorPublisher(bootstrap, client_id="bench-sensors")
    try:
        if step == "produce floor":
            results.put(_floor(publisher, events, bootstrap))
            return
        source: list[Any] = publisher.prepare(events) if step == "publish, prepared" else events
        tune_gc()  # as `trilink sensors` does after set-up
        cpu0, wall0 = time.process_time(), time.perf_counter()
        report = publisher.publish(iter(source), speed=None)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    finally:
        publisher.close()
    results.put((report.sent, report.acknowledged, cpu, wall))


def _floor(publisher: Any, events: list[Any], bootstrap: str) -> tuple[int, int, float, float]:
    """The publisher's records, with a send-time header as it stamps them, re-sent by a plain
    producer that holds nothing else (the events and the publisher are gone before timing)."""
    from kafka import KafkaProducer

    from schemas.headers import SENT_NS_HEADER
    from trilink.latency import encode_sent_ns
    from trilink.platform.clients import producer_config

    stamp = encode_sent_ns(time.time_ns())
    records = [
        (out.topic, out.key, out.value, [*out.headers, (SENT_NS_HEADER, stamp)])
        for out in publisher.prepare(events)
    ]
    topics = {topic for topic, _, _, _ in records}
    del events[:]
    gc.collect()
    gc.freeze()  # the records out of the collector's sight: the floor is the client library's cost
    producer = KafkaProducer(**producer_config(bootstrap, "bench-sensors-floor"))
    for topic in topics:
        producer.partitions_for(topic)  # metadata before timing
    acked = [0]

    def on_ack(_metadata: Any) -> None:
        acked[0] += 1

    cpu0, wall0 = time.process_time(), time.perf_counter()
    for topic, key, value, headers in records:
        producer.send(topic, key=key, value=value, headers=headers).add_callback(on_ack)
    producer.flush()
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    producer.close()
    return len(records), acked[0], cpu, wall


if __name__ == "__main__":
    sys.exit(main())
