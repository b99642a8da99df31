"""``trilink demo``: the main job of the README.

For now: start (or reuse) the broker, apply the topics and time a smoke round trip.
"""

from __future__ import annotations

import argparse
from typing import Any

from trilink.platform.connection import ensure_cluster
from trilink.platform.smoke import round_trip
from trilink.settings import get_settings


def register(subparsers: Any) -> None:
    demo = subparsers.add_parser("demo", help="the main job: broker up, topics, a measured round trip")
    demo.set_defaults(handler=_demo)


def _demo(args: argparse.Namespace) -> int:
    bootstrap, report, state = ensure_cluster(get_settings())
    where = f"local Kafka {state.kafka_version}" if state else "TRILINK_BOOTSTRAP"
    print(f"broker ready: {bootstrap} ({where})")
    for line in report.lines():
        print(f"  topics: {line}")
    result = round_trip(bootstrap, count=20)
    print(
        f"smoke round trip of {result.count} records: p50 {result.percentile_us(50) / 1000:.2f} ms, "
        f"p99 {result.percentile_us(99) / 1000:.2f} ms"
    )
    return 0
