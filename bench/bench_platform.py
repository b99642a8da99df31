"""Platform numbers: cold start of 1 and 3 brokers to ready, warm restart, smoke round trip.

Run: .venv/bin/python bench/bench_platform.py [--rounds N]
Starts private clusters on free ports in a temporary directory (the jars must be resolved
once beforehand, e.g. by `trilink up`; the first resolution from Maven Central is timed
separately when the cache is empty). Prints seconds and milliseconds; asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from trilink.platform.cluster import LocalCluster
from trilink.platform.connection import apply_declared_topics
from trilink.platform.scratch import scratch_settings
from trilink.platform.smoke import round_trip


def _time_up(cluster: LocalCluster, brokers: int) -> float:
    start = time.perf_counter()
    cluster.up(brokers=brokers)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--probes", type=int, default=200)
    args = parser.parse_args()
    print(f"command: {' '.join(sys.argv)}")
    results: dict[str, list[float]] = {"cold_1": [], "warm_1": [], "cold_3": [], "warm_3": []}
    smoke_p50: list[float] = []
    smoke_p99: list[float] = []
    for _ in range(args.rounds):
        for brokers in (1, 3):
            with tempfile.TemporaryDirectory() as tmp:
                cluster = LocalCluster(scratch_settings(Path(tmp), brokers=brokers))
                try:
                    results[f"cold_{brokers}"].append(_time_up(cluster, brokers))
                    state = cluster.load_state()
                    assert state is not None
                    apply_declared_topics(state.bootstrap, brokers, cluster.settings)
                    if brokers == 1:
                        smoke = round_trip(state.bootstrap, count=args.probes, interval_s=0.005)
                        smoke_p50.append(smoke.percentile_us(50) / 1000)
                        smoke_p99.append(smoke.percentile_us(99) / 1000)
                    cluster.down()
                    results[f"warm_{brokers}"].append(_time_up(cluster, brokers))
                finally:
                    cluster.down(purge=True)
    for key, values in results.items():
        kind, brokers = key.split("_")
        label = f"{'cold start' if kind == 'cold' else 'warm restart'} of {brokers} broker(s) to ready"
        print(
            f"{label:42s} median {statistics.median(values):6.2f} s  (runs: {', '.join(f'{v:.2f}' for v in values)})"
        )
    print(
        f"smoke round trip ({args.probes} probes, 1 broker, acks=all): "
        f"p50 {statistics.median(smoke_p50):.2f} ms  p99 {statistics.median(smoke_p99):.2f} ms"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
