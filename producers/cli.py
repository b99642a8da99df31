"""Subcommands of the producing side: ``trilink trajectory`` (solve and summarise one flight)."""

from __future__ import annotations

import argparse
import json
import math

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
        description="Solve a flight (spherical Earth, inverse-square gravity, simplified boost) "
        "from a launch site to a target and print apogee, range, flight time and impact.",
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
        default=MissileClass.IRBM.value,
    )
    p.add_argument(
        "--profile",
        choices=[x.value for x in Profile],
        default=None,
        help="default: inferred from --apogee-km (minimum-energy without it)",
    )
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.set_defaults(handler=handler)


def handler(args: argparse.Namespace) -> int:
    """Run ``trilink trajectory``."""
    lat, lon = _lat_lon(args.site, "site")
    impact = _lat_lon(args.impact, "impact") if args.impact else (None, None)
    flight = fly(
        FlightRequest(
            site_lat_deg=lat,
            site_lon_deg=lon,
            missile_class=MissileClass(args.missile_class),
            profile=Profile(args.profile) if args.profile else None,
            range_m=args.range_km * 1e3 if args.range_km is not None else None,
            azimuth_deg=args.azimuth_deg,
            impact_lat_deg=impact[0],
            impact_lon_deg=impact[1],
            apogee_m=args.apogee_km * 1e3 if args.apogee_km is not None else None,
        )
    )
    summary = flight.summary()
    if args.json:
        print(json.dumps(summary, sort_keys=True))
    else:
        for key, value in summary.items():
            print(f"{key:>20}: {value}")
    return 0
