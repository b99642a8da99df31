"""Subcommands of the producing side: ``trilink trajectory`` (solve and summarise one flight),
``trilink sensors`` (play a scenario's sensors as Kafka producers) and ``trilink scenario report``
(truth against each nation's fused estimate)."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from producers.errors import TrajectoryError
from producers.trajectory import FlightRequest, MissileClass, Profile, fly


def _lat_lon(text: str, name: str) -> tuple[float, float]:
    parts = text.split(",")
    try:
        if len(parts) != 2:
            raise ValueError
        lat, lon = float(parts[0]), float(parts[1])
    except ValueError:
        raise TrajectoryError(
            "bad_site", f"{name}={text!r} must be LAT,LON in decimal degrees, e.g. 39.0,125.7"
        ) from None
    if not (math.isfinite(lat) and math.isfinite(lon)) or abs(lat) > 90 or abs(lon) > 180:
        raise TrajectoryError("bad_site", f"{name}={text!r} is not a valid latitude,longitude")
    return lat, lon


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the producing side's subcommands to ``trilink``."""
    p = subparsers.add_parser(
        "trajectory",
        help="solve one synthetic missile flight and print its summary",
        description="Solve a flight (rotating spherical Earth, inverse-square gravity, exponential "
        "atmosphere with drag, simplified boost, pull-up lift on depressed flights of lifting "
        "classes) from a launch site to a target and print apogee, range, flight time and impact. "
        "A flight beyond its class's public reach estimate is flown, with a warning on stderr.",
    )
    p.add_argument("--site", required=True, metavar="LAT,LON", help="launch site, degrees")
    target = p.add_argument_group("target (either --impact, or --range-km with --azimuth-deg)")
    target.add_argument("--impact", metavar="LAT,LON", help="impact point, degrees")
    target.add_argument("--range-km", type=float, help="ground range, km")
    target.add_argument("--azimuth-deg", type=float, help="launch azimuth, degrees from north")
    p.add_argument("--apogee-km", type=float, help="apogee height, km (lofted/depressed)")
    p.add_argument(
        "--class",
        dest="missile_class",
        choices=[c.value for c in MissileClass],
        default=None,
        help="missile class (default: inferred from the energy that range and apogee take)",
    )
    p.add_argument(
        "--profile",
        choices=[x.value for x in Profile],
        default=None,
        help="default: inferred from --apogee-km (minimum-energy without it)",
    )
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.set_defaults(handler=handler)

    s = subparsers.add_parser(
        "sensors",
        help="run a scenario's sensors as Kafka producers",
        description="Simulate the scenario's launches and sensors and publish their events to Kafka "
        "(acks=all, idempotent, keyed by correlation key), paced on the wall clock.",
    )
    s.add_argument("scenario", help="scenario file, or a shipped name: " + ", ".join(_shipped_names()))
    pace = s.add_mutually_exclusive_group()
    pace.add_argument(
        "--speed", type=float, default=1.0, help="simulated seconds per wall second (default 1)"
    )
    pace.add_argument("--fast", action="store_true", help="send as fast as possible, no pacing")
    s.add_argument("--metrics-port", type=int, default=0, help="Prometheus /metrics port (0: any free port)")
    s.add_argument("--no-metrics", action="store_true", help="serve no /metrics endpoint")
    s.set_defaults(handler=sensors_handler)

    sc = subparsers.add_parser("scenario", help="scenario tools: report")
    actions = sc.add_subparsers(dest="scenario_command", required=True, metavar="ACTION")
    r = actions.add_parser(
        "report",
        help="truth against each nation's fused estimate, per launch (table and PNG)",
        description="Simulate a scenario (no Kafka) and compare each nation's fused picture with the "
        "truth, per launch: detection time per sensor and nation, fused impact prediction error and "
        "its 1-sigma against time, alert times per nation, fused tracks per launch. Prints a table, "
        "writes a PNG (and JSON with --json).",
    )
    r.add_argument("scenario", help="scenario file, or a shipped name: " + ", ".join(_shipped_names()))
    r.add_argument(
        "--png", type=Path, default=None, help="PNG path (default: .trilink/reports/scenario-NAME.png)"
    )
    r.add_argument("--json", type=Path, default=None, help="also write the whole report as JSON here")
    r.set_defaults(handler=scenario_report_handler)


def _shipped_names() -> list[str]:
    from producers.scenario import shipped_scenarios

    return [p.stem for p in shipped_scenarios()]


def sensors_handler(args: argparse.Namespace) -> int:
    """Run ``trilink sensors``: simulate, publish, flush, print what was sent."""
    from prometheus_client import start_http_server

    from producers.publisher import Run, SensorPublisher, for_run
    from producers.scenario import load_scenario, simulate
    from trilink.platform.state import bootstrap_servers
    from trilink.runtime import tune_gc
    from trilink.settings import get_settings

    if args.speed <= 0:
        raise TrajectoryError("bad_speed", f"--speed must be positive, got {args.speed}")
    scenario = load_scenario(args.scenario)
    # Simulate first, publish after (as `trilink run` does): the paced loop then only encodes
    # and sends, so the simulation's CPU cannot push a send behind its schedule.
    simulated = list(simulate(scenario))
    bootstrap = bootstrap_servers()
    publisher = SensorPublisher(bootstrap)
    publisher.install_signal_handlers()
    server = None
    run = Run.new()  # after simulating: the run's clock starts when its sends can
    if not args.no_metrics:
        from trilink.monitoring.discovery import SENSORS_JOB, announce

        server, _ = start_http_server(
            args.metrics_port, addr=get_settings().host, registry=publisher.registry
        )
        port = int(server.server_port)
        announce(SENSORS_JOB, f"sensors-{run.run_id}", port, {"scenario": scenario.name})
        print(f"metrics: http://{get_settings().host}:{port}/metrics")
    speed = None if args.fast else args.speed
    events = for_run(simulated, run, scenario.start_time)  # encoded by the publisher (see publish)
    tune_gc()  # a long-running producer: set-up done, the simulated events leave the collector's sight
    print(
        f"run {run.run_id}: scenario {scenario.name} ({len(scenario.launches)} launch(es)) -> {bootstrap}, "
        + ("as fast as possible" if speed is None else f"x{speed:g} real time")
    )
    try:
        report = publisher.publish(events, speed=speed)
    finally:
        publisher.close()
        if server is not None:
            from trilink.monitoring.discovery import SENSORS_JOB, withdraw

            withdraw(SENSORS_JOB, f"sensors-{run.run_id}")
            server.shutdown()
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(report.by_kind.items()))
    print(
        f"sent {report.sent}, acknowledged {report.acknowledged}, failed {report.failed} in {report.wall_s:.1f} s"
        f"{' (interrupted)' if report.interrupted else ''}: {kinds}"
    )
    for line in report.errors:
        print(f"  send error: {line}")
    return 0 if report.failed == 0 and not report.interrupted else 1


def scenario_report_handler(args: argparse.Namespace) -> int:
    """Run ``trilink scenario report``."""
    from producers.scenario import load_scenario
    from producers.scenario_report import build_report, render_png, render_table

    scenario = load_scenario(args.scenario)
    report = build_report(scenario)
    print(render_table(report))
    png = args.png or Path(".trilink") / "reports" / f"scenario-{scenario.name}.png"
    png.parent.mkdir(parents=True, exist_ok=True)
    render_png(report, png)
    print(f"plot: {png}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(report.model_dump_json(indent=2) + "\n", encoding="utf-8")
        print(f"json: {args.json}")
    return 0


def handler(args: argparse.Namespace) -> int:
    """Run ``trilink trajectory``."""
    lat, lon = _lat_lon(args.site, "site")
    impact = _lat_lon(args.impact, "impact") if args.impact else (None, None)
    flight = fly(
        FlightRequest(
            site_lat_deg=lat,
            site_lon_deg=lon,
            missile_class=MissileClass(args.missile_class) if args.missile_class else None,
            profile=Profile(args.profile) if args.profile else None,
            range_m=args.range_km * 1e3 if args.range_km is not None else None,
            azimuth_deg=args.azimuth_deg,
            impact_lat_deg=impact[0],
            impact_lon_deg=impact[1],
            apogee_m=args.apogee_km * 1e3 if args.apogee_km is not None else None,
        )
    )
    for warning in flight.warnings:
        print(f"trilink: warning: {warning}", file=sys.stderr)
    summary = flight.summary()
    if args.json:
        print(json.dumps(summary, sort_keys=True))
    else:
        for key, value in summary.items():
            print(f"{key:>20}: {value}")
    return 0
