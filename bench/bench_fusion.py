"""Fusion and alert authority figures (issue #12 item 3), printed per scenario:

* how honest the fused impact predictions' 1-sigma ellipses are: the share of predictions more
  than 3 sigma off, boost phase (the issue's target: about 5 % at most) and after burnout, and the
  median miss in ellipse units (an exact 2-D Gaussian gives 1.18; less means too wide);
* how many fused tracks each nation made of each launch (one is right), and fused tracks that
  match no launch;
* alert events per launch and nation (before fusion, one missile produced 8-62 alert events
  from the sensors themselves);
* the time simulate() takes with the fusion cells.

Usage: .venv/bin/python bench/bench_fusion.py [SCENARIO ...]   (default: every shipped scenario)
"""

from __future__ import annotations

import statistics
import sys
import time

from producers.scenario import load_scenario, shipped_scenarios, simulate
from producers.scenario_report import build_report
from schemas.models import Nation


def main(names: list[str]) -> int:
    names = names or [p.stem for p in shipped_scenarios()]
    total_boost = total_boost_out = total_after = total_after_out = 0
    misses: dict[str, list[float]] = {"boost": [], "after": []}
    for name in names:
        scenario = load_scenario(name)
        start = time.perf_counter()
        events = list(simulate(scenario))
        sim_s = time.perf_counter() - start
        report = build_report(scenario, events)
        boost = [p for launch in report.launches for p in launch.predictions if p.boost]
        after = [p for launch in report.launches for p in launch.predictions if not p.boost]
        boost_out = sum(p.normalised_miss > 3.0 for p in boost)
        after_out = sum(p.normalised_miss > 3.0 for p in after)
        misses["boost"] += [p.normalised_miss for p in boost]
        misses["after"] += [p.normalised_miss for p in after]
        total_boost += len(boost)
        total_boost_out += boost_out
        total_after += len(after)
        total_after_out += after_out
        counts = [len(launch.fused_tracks.get(n, [])) for launch in report.launches for n in Nation]
        alerts = [sum(a.nation is n for a in launch.alerts) for launch in report.launches for n in Nation]
        print(f"{name}: {len(report.launches)} launch(es), {len(events)} events, simulate {sim_s:.1f} s")
        print(
            f"  boost-phase predictions >3 sigma off: {boost_out}/{len(boost)}"
            f" ({100.0 * boost_out / max(1, len(boost)):.1f} %);"
            f" after burnout: {after_out}/{len(after)} ({100.0 * after_out / max(1, len(after)):.1f} %)"
        )
        print(
            f"  fused tracks per launch and nation: min {min(counts)} max {max(counts)};"
            f" unmatched: {sum(len(v) for v in report.unmatched_tracks.values())};"
            f" stray updates: {report.stray_updates};"
            f" alert events per launch and nation: max {max(alerts)}"
        )
    print(
        f"all: boost-phase >3 sigma {total_boost_out}/{total_boost}"
        f" ({100.0 * total_boost_out / max(1, total_boost):.1f} %),"
        f" after burnout {total_after_out}/{total_after} ({100.0 * total_after_out / max(1, total_after):.1f} %)"
    )
    for phase, values in misses.items():
        if values:
            print(
                f"median miss in 1-sigma ellipse units, {phase}: {statistics.median(values):.2f} (Gaussian: 1.18)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
