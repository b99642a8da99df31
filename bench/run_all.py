"""``make bench``: the headline benchmarks one after another on one cluster, each printing the
command it ran and its own floor beside trilink's figure.

The cluster is ``TRILINK_BOOTSTRAP`` when set; otherwise the local one, started *plaintext*
(``trilink up --insecure``): the hot-path bench's ally phase reads the shared warnings topics
(direct topology), which a secured cluster's ACLs leave to the hub. A secured local cluster
already set up is refused with its reason (``trilink down --purge`` first). TLS cost no CPU per
event we could measure (README, "What it costs"). A freshly started broker is JIT-cold, so a
short hot-path run warms it first.

The other scripts in ``bench/`` (platform start-up, replay, the load test's harness, scrape cost)
take longer or start their own brokers; run them by hand (the README lists them all).

Run: ``make bench`` or ``.venv/bin/python bench/run_all.py [--quick]``
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from trilink.platform.connection import ensure_cluster  # noqa: E402

BENCH = Path(__file__).resolve().parent


def benches(quick: bool) -> list[list[str]]:
    """(script, args...) in order: pure CPU first, then the hot path, low load, the demo."""
    events = "5000" if quick else "20000"
    return [
        ["bench_codec.py", *(["--number", "2000", "--repeat", "5"] if quick else [])],
        ["bench_hotpath.py", "--events", "2000", "--allies", "JP"],  # warms a cold broker
        ["bench_hotpath.py", "--events", events, "--allies", "JP"],
        ["bench_latency.py", "--seconds", "10" if quick else "15"],
        *([] if quick else [["bench_floor_pipeline.py", "--with-demo"]]),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs and no demo (a few minutes)")
    args = parser.parse_args()
    bootstrap, _, _ = ensure_cluster(secure=False)
    env = {**os.environ, "TRILINK_BOOTSTRAP": bootstrap}
    failed: list[str] = []
    for script, *script_args in benches(args.quick):
        command = [sys.executable, str(BENCH / script), *script_args]
        print(f"\n### {' '.join([f'bench/{script}', *script_args])}", flush=True)
        started = time.monotonic()
        if subprocess.call(command, env=env, cwd=REPO) != 0:
            failed.append(script)
        print(f"### ({time.monotonic() - started:.0f} s)", flush=True)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
