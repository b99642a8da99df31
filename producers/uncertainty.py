"""The 1-sigma ground ellipse of an impact predicted from a track (sensors and fusion cells).

After burnout the error comes from the state's own errors: the velocity error times the time to
go, range being about twice as sensitive as cross-range, and from what the ballistic predictor
leaves out in the air (lift, the real drag): a share of the predicted path flown below 80 km. While the motor still burns the
ballistic impact point of the current state (the *instantaneous impact point*, IIP) lies short of
where the missile will come down, by however much range the rest of the burn adds. That is not
known from the track: it is bounded by what the missile could still be. A missile still burning
``elapsed_s`` after launch can only be of a class whose burn lasts at least that long, and it
comes down at most that class's reach from its launch point. So the along-track sigma is a third
of (largest such reach - distance from the launch point to the IIP): the whole interval the
impact can still move along lies within 3 sigma. Across the track, the direction of flight is
known only as well as the velocity's direction (poorly during the vertical rise).

Issue #12 found the earlier boost term measured "the distance still to be flown" from the missile
to the IIP, which early in the burn lies near the pad: a 941 km error with a 15.6 km 1-sigma.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

from producers.catalog import default_missile_classes
from producers.geometry import Vec3, enu_basis, from_model, great_circle_m, initial_azimuth_deg
from producers.trajectory import BallisticPrediction

#: Range error of a prediction per metre of its path flown in the air, as a share: the predictor
#: knows drag only through an assumed ballistic coefficient and lift not at all, and a KN-23-type
#: pull-up flies ~600 km where its ballistic extrapolation comes down at ~450 km
#: (``data/missile_classes.toml``, lift_to_drag): 0.3 of the path in the air. ASSUMPTION.
AIR_PATH_ERROR_FRACTION = 0.3
#: Range a lifting (KN-23-type) body may add to its ballistic range by pulling up, as a share:
#: ~600 km flown where the ballistic extrapolation comes down at ~450 km (see above).
LIFT_RANGE_FRACTION = 0.35
#: Speed at which the pull-up's lift has faded (the SRBM class's pull_up_end_speed_m_s), m/s.
PULL_UP_END_SPEED_M_S = 1_000.0
#: A body diving steeper than this is not gliding (a re-entry from space), degrees. ASSUMPTION.
MAX_GLIDE_DIVE_DEG = 20.0
#: Below this height the predicted path counts as flown in the air, m.
AIR_PATH_ALT_M = 80_000.0

#: Share of the still-reachable range added across the track while boosting: the Earth-fixed
#: ground track of a burning missile curves (Coriolis), ASSUMPTION sized from the 7-13 km
#: (SRBM) to ~355 km (4,600 km shot) rotation offsets measured in issue #12.
BOOST_CROSS_FRACTION = 0.08


@dataclass(frozen=True, slots=True)
class Ellipse:
    """A 1-sigma impact ellipse: axes in metres, major axis azimuth in degrees [0, 180)."""

    semi_major_m: float
    semi_minor_m: float
    orientation_deg: float


def reach_still_possible_m(elapsed_s: float, elapsed_sigma_s: float) -> float:
    """Largest public reach among the classes whose burn can still be going at ``elapsed_s``
    (3-sigma allowance on the elapsed time); the largest reach of all if none burns that long."""
    classes = default_missile_classes().classes
    earliest = elapsed_s - 3.0 * elapsed_sigma_s
    burning = [c.reach_m for c in classes if c.burn_time_s >= earliest]
    return max(burning) if burning else max(c.reach_m for c in classes)


def impact_ellipse(
    position_m: Vec3,
    velocity_m_s: Vec3,
    position_sigma_m: float,
    velocity_sigma_m_s: float,
    result: BallisticPrediction,
    *,
    boosting: bool,
    launch_point: tuple[float, float] | None,
    launch_point_sigma_m: float,
    elapsed_s: float,
    elapsed_sigma_s: float,
) -> Ellipse:
    """The 1-sigma ellipse of ``result`` (predicted from the given state and its errors)."""
    lat, lon, _ = from_model(result.impact_m)
    t_go = result.time_to_impact_s
    cross = math.hypot(position_sigma_m, velocity_sigma_m_s * t_go)
    along = 2.0 * cross
    path = result.path_m
    ground = [from_model(p) for p in path]
    total = air = 0.0
    for (lat0, lon0, alt0), (lat1, lon1, alt1) in itertools.pairwise(ground):
        step = great_circle_m(lat0, lon0, lat1, lon1)
        total += step
        if max(alt0, alt1) < AIR_PATH_ALT_M:
            air += step
    speed = math.sqrt(sum(v * v for v in velocity_m_s))
    up_lat, up_lon, _ = from_model(position_m)
    climb = sum(v * u for v, u in zip(velocity_m_s, enu_basis(up_lat, up_lon).up, strict=True))
    shallow = (
        speed > 0.0 and math.degrees(math.asin(max(-1.0, min(1.0, climb / speed)))) > -MAX_GLIDE_DIVE_DEG
    )
    in_air = bool(ground) and max(p[2] for p in ground) < AIR_PATH_ALT_M
    if in_air and shallow and launch_point is not None and not boosting:
        # a flight that stays in the air at a shallow angle (depressed): a lifting body may pull up
        # and fly on by a third of its ballistic range, until it has slowed to the end of its
        # pull-up (a steep re-entry from space is no glide)
        lift = min(1.0, max(0.0, (speed - PULL_UP_END_SPEED_M_S) / PULL_UP_END_SPEED_M_S))
        extension = LIFT_RANGE_FRACTION * great_circle_m(launch_point[0], launch_point[1], lat, lon) * lift
        along = math.hypot(along, extension)
        cross = math.hypot(cross, 0.1 * extension)
    elif total > 0.0 and air > 0.0:
        # drag only: weighted by the share in the air, so a steep re-entry at the end of a long
        # flight adds little
        drag = AIR_PATH_ERROR_FRACTION * air * air / total
        along = math.hypot(along, drag)
        cross = math.hypot(cross, 0.1 * drag)
    last_lat, last_lon, _ = from_model(path[max(0, len(path) - 2)])
    heading = initial_azimuth_deg(last_lat, last_lon, lat, lon) % 180.0
    if boosting:
        here_lat, here_lon, _ = from_model(position_m)
        enu = enu_basis(here_lat, here_lon)
        east = sum(v * e for v, e in zip(velocity_m_s, enu.east, strict=True))
        north = sum(v * n for v, n in zip(velocity_m_s, enu.north, strict=True))
        horizontal = math.hypot(east, north)
        origin = launch_point if launch_point is not None else (here_lat, here_lon)
        flown_m = great_circle_m(origin[0], origin[1], lat, lon)
        reach = reach_still_possible_m(elapsed_s, elapsed_sigma_s)
        remaining = max(0.0, reach - flown_m) + 3.0 * launch_point_sigma_m
        # direction of flight: known to atan(sigma_v / horizontal speed); unknown while vertical
        azimuth_sigma = min(1.0, math.atan2(velocity_sigma_m_s, max(horizontal, 1e-3)))
        along = math.hypot(along, remaining / 3.0)
        cross = math.hypot(cross, (flown_m + remaining) * azimuth_sigma, BOOST_CROSS_FRACTION * remaining)
        if horizontal > 1.0:
            heading = math.degrees(math.atan2(east, north)) % 180.0
    if cross > along:  # the major axis lies across the track
        return Ellipse(semi_major_m=cross, semi_minor_m=along, orientation_deg=(heading + 90.0) % 180.0)
    return Ellipse(semi_major_m=along, semi_minor_m=cross, orientation_deg=heading)
