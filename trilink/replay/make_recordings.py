"""Make the shipped recordings: publish a scenario to a broker and record it.

``python -m trilink.replay.make_recordings [SCENARIO ...] [--speed 10] [--out recordings]``

Each scenario is simulated, published by :class:`producers.publisher.SensorPublisher` paced at
``--speed`` (the recording keeps that run's timing: at the default x10 a 600 s scenario is a
60 s recording; ``trilink replay --timeline event`` replays the simulated timing instead) and
recorded from the warning and sensor-status topics into ``<out>/<scenario>.NNNN.avro``.
Without ``--bootstrap`` a private single-node cluster is started in a temporary directory on
free ports and removed afterwards, so nothing else on the machine is touched. The run id is
derived from the scenario name, so repeated makes give the same event ids and keys.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from producers.publisher import PublishReport, Run, SensorPublisher, for_run
from producers.scenario import load_scenario, simulate
from trilink.errors import TrilinkError
from trilink.replay.errors import ReplayError
from trilink.replay.format import SHIPPED_DIR, RecordingWriter
from trilink.replay.recorder import Recorder, RecordReport

DEFAULT_SCENARIOS = ("single_srbm", "irbm_over_japan")
DEFAULT_SPEED = 10.0


def shipped_run(scenario_name: str) -> Run:
    """A run id that depends only on the scenario name (reproducible ids and keys)."""
    return Run(
        hashlib.sha256(f"trilink/recording/{scenario_name}".encode()).hexdigest()[:8], datetime.now(UTC)
    )


def record_scenario(
    bootstrap: str,
    scenario: str,
    out_dir: Path,
    *,
    speed: float | None = DEFAULT_SPEED,
    run: Run | None = None,
    name: str | None = None,
    timeout_s: float = 600.0,
) -> tuple[list[Path], PublishReport, RecordReport]:
    """Publish ``scenario`` to ``bootstrap`` and record exactly its events into ``out_dir``."""
    loaded = load_scenario(scenario)
    stem = name or Path(scenario).stem
    run = run or shipped_run(stem)
    events = list(for_run(simulate(loaded), run, loaded.start_time))
    for old in out_dir.glob(f"{stem}.[0-9][0-9][0-9][0-9].avro"):
        old.unlink()
    writer = RecordingWriter(
        out_dir,
        stem,
        metadata={
            "trilink.recorded_by": "trilink.replay.make_recordings",
            "trilink.scenario": loaded.name,
            "trilink.run_id": run.run_id,
            "trilink.publisher_speed": "fast" if speed is None else f"{speed:g}",
        },
    )
    recorder = Recorder(bootstrap, writer)  # positioned at the end before anything is published
    outcome: list[RecordReport] = []
    thread = threading.Thread(
        target=lambda: outcome.append(recorder.run(max_records=len(events), timeout_s=timeout_s)),
        name=f"record-{stem}",
    )
    thread.start()
    publisher = SensorPublisher(bootstrap, client_id=f"trilink-make-recording-{stem}")
    try:
        published = publisher.publish(events, speed=speed)
    finally:
        publisher.close()
        thread.join()
        recorder.close()
    recorded = outcome[0]
    if recorded.written != len(events):
        raise ReplayError(
            "incomplete_recording",
            f"{stem}: published {published.acknowledged} event(s), recorded {recorded.written} "
            f"({recorded.stopped_because})",
        )
    return writer.files, published, recorded


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trilink.replay.make_recordings", description=__doc__)
    parser.add_argument("scenarios", nargs="*", default=list(DEFAULT_SCENARIOS))
    parser.add_argument("--speed", type=float, default=DEFAULT_SPEED, help="publisher pacing (default 10)")
    parser.add_argument("--out", type=Path, default=SHIPPED_DIR)
    parser.add_argument("--bootstrap", help="use this cluster instead of a private one")
    args = parser.parse_args(argv)
    try:
        if args.bootstrap:
            return _make_all(args.bootstrap, args)
        from trilink.platform.scratch import scratch_cluster

        with scratch_cluster() as (_, state):
            return _make_all(state.bootstrap, args)
    except TrilinkError as exc:
        print(f"make_recordings: error {exc}", file=sys.stderr)
        return 2


def _make_all(bootstrap: str, args: argparse.Namespace) -> int:
    for scenario in args.scenarios:
        print(f"{scenario}: publishing at x{args.speed:g} to {bootstrap} and recording ...", flush=True)
        files, published, recorded = record_scenario(bootstrap, scenario, args.out, speed=args.speed)
        sizes = ", ".join(f"{p.name} {p.stat().st_size} bytes" for p in files)
        print(f"{scenario}: {published.acknowledged} published, {recorded.written} recorded: {sizes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
