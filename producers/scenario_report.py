"""Scenario report (issue #12 item 4): per launch, the truth against each nation's fused estimate.

For each launch: when each sensor and each nation (its fusion cell) first reported it, each
nation's impact prediction error against time with its 1-sigma ellipse and the normalised miss
(the truth impact's distance from the predicted point in ellipse units: about 1 in 90 predictions
of an honest 2-D Gaussian lies beyond 3), when each nation's authority alerted, and how many fused
tracks each nation made of it (one is right).

The fusion cells never see which launch a report belongs to. The report, which may, matches each
fused track to a launch afterwards: every fused track update is compared with where each flight
truly was at that moment, and the track goes to the flight it was nearest to most often.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from producers.geometry import great_circle_m, initial_azimuth_deg, norm, sub, to_model
from producers.national import is_national_product
from producers.scenario import Scenario, ScheduledEvent, correlation_key, simulate, solve_flights
from producers.trajectory import Flight
from schemas.models import Alert, ImpactPrediction, LaunchDetection, Nation, TrackUpdate

__all__ = [
    "LaunchReport",
    "PredictionPoint",
    "ScenarioReport",
    "build_report",
    "fused_tracks_by_launch",
    "render_png",
    "render_table",
]

#: A fused track update farther than this from every flight matches none, m.
MATCH_LIMIT_M = 200_000.0


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PredictionPoint(_Model):
    """One fused impact prediction of one nation, against the truth."""

    nation: Nation
    t_s: float  # measurement time, s after launch
    boost: bool  # the missile was still burning
    error_m: float
    semi_major_m: float
    semi_minor_m: float
    normalised_miss: float  # the miss in ellipse units (Mahalanobis distance)


class AlertPoint(_Model):
    nation: Nation
    t_s: float  # emit time, s after launch
    msg_type: str
    level: str
    areas: list[str]
    missile_class: str


class LaunchReport(_Model):
    """Everything the report says about one launch."""

    launch_id: str
    missile_class: str
    flight_time_s: float
    burnout_s: float
    impact_lat_deg: float
    impact_lon_deg: float
    sensor_detection_s: dict[str, float]  # sensor id -> first launch detection (emit), s after launch
    nation_detection_s: dict[Nation, float]  # the nation's fused launch detection (emit)
    fused_tracks: dict[Nation, list[str]]  # the fused keys matched to this launch
    class_estimate: dict[Nation, str]  # the last class each nation's fused picture gave
    predictions: list[PredictionPoint]
    alerts: list[AlertPoint]


class ScenarioReport(_Model):
    scenario: str
    launches: list[LaunchReport]
    unmatched_tracks: dict[Nation, list[str]]  # fused tracks matching no launch
    stray_updates: int  # fused updates nearer another flight than their track's (swaps, merges)

    def boost_outside_3sigma(self) -> tuple[int, int]:
        """(boost-phase predictions more than 3 sigma off, all boost-phase predictions)."""
        boost = [p for launch in self.launches for p in launch.predictions if p.boost]
        return sum(p.normalised_miss > 3.0 for p in boost), len(boost)


def normalised_miss(prediction: ImpactPrediction, truth: tuple[float, float]) -> tuple[float, float]:
    """(miss distance in m, miss in units of the prediction's 1-sigma ellipse)."""
    p = prediction.impact_point
    d = great_circle_m(p.lat_deg, p.lon_deg, truth[0], truth[1])
    if d == 0.0:
        return 0.0, 0.0
    az = math.radians(initial_azimuth_deg(p.lat_deg, p.lon_deg, truth[0], truth[1]))
    off = az - math.radians(prediction.ellipse.orientation_deg)
    along, cross = d * math.cos(off), d * math.sin(off)
    e = prediction.ellipse
    major, minor = max(e.semi_major_m, 1.0), max(e.semi_minor_m, 1.0)
    return d, math.hypot(along / major, cross / minor)


def _match(
    events: Sequence[ScheduledEvent], scenario: Scenario, flights: dict[str, Flight]
) -> tuple[dict[tuple[Nation, str], str], int]:
    """(nation, fused key) -> launch id, by nearest true position, majority over the updates; and
    how many fused updates were nearest to another flight than their track's (0: no swaps)."""
    votes: dict[tuple[Nation, str], collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for e in events:
        h, payload = e.event.header, e.event.payload
        if not (is_national_product(h.sensor_id) and isinstance(payload, TrackUpdate)):
            continue
        t = e.measured_offset_s
        where = to_model(payload.position.lat_deg, payload.position.lon_deg, payload.position.alt_m)
        best, best_d = None, MATCH_LIMIT_M
        for launch in scenario.launches:
            flight = flights[launch.id]
            tf = t - launch.offset_s
            if not 0.0 <= tf <= flight.flight_time_s:
                continue
            d = norm(sub(where, flight.model_state_at(tf)[0]))
            if d < best_d:
                best, best_d = launch.id, d
        if best is not None:
            votes[(h.sensor_nation, h.correlation_key)][best] += 1
    matched = {k: c.most_common(1)[0][0] for k, c in votes.items()}
    strays = sum(sum(c.values()) - c[matched[k]] for k, c in votes.items())
    return matched, strays


def fused_tracks_by_launch(scenario: Scenario, events: Sequence[ScheduledEvent]) -> dict[str, list[str]]:
    """Launch id -> the correlation keys of every nation's fused tracks of it (matched afterwards
    by true position, as in the report), for reports keyed by launch such as ``trilink run``'s."""
    matched, _ = _match(events, scenario, solve_flights(scenario))
    out: dict[str, list[str]] = {launch.id: [] for launch in scenario.launches}
    for (_, key), launch_id in sorted(matched.items()):
        out[launch_id].append(key)
    return out


def build_report(scenario: Scenario, events: Sequence[ScheduledEvent] | None = None) -> ScenarioReport:
    """Simulate ``scenario`` (unless its events are given) and compare it with the truth."""
    events = list(simulate(scenario)) if events is None else events
    flights = solve_flights(scenario)
    matched, strays = _match(events, scenario, flights)
    offsets = {launch.id: launch.offset_s for launch in scenario.launches}
    truth_keys = {correlation_key(scenario, launch): launch.id for launch in scenario.launches}
    detections: dict[str, dict[str, float]] = collections.defaultdict(dict)
    nation_det: dict[str, dict[Nation, float]] = collections.defaultdict(dict)
    classes: dict[str, dict[Nation, str]] = collections.defaultdict(dict)
    predictions: dict[str, list[PredictionPoint]] = collections.defaultdict(list)
    alerts: dict[str, list[AlertPoint]] = collections.defaultdict(list)
    for e in events:
        h, payload = e.event.header, e.event.payload
        if not is_national_product(h.sensor_id):
            launch_id = truth_keys.get(h.correlation_key)
            if launch_id is not None and isinstance(payload, LaunchDetection):
                detections[launch_id].setdefault(h.sensor_id, e.emit_offset_s - offsets[launch_id])
            continue
        nation = h.sensor_nation
        matched_id = matched.get((nation, h.correlation_key))
        if matched_id is None:
            continue
        since = e.emit_offset_s - offsets[matched_id]
        if isinstance(payload, LaunchDetection):
            nation_det[matched_id].setdefault(nation, since)
        elif isinstance(payload, ImpactPrediction):
            flight = flights[matched_id]
            t = e.measured_offset_s - offsets[matched_id]
            error, miss = normalised_miss(payload, flight.impact_point)
            predictions[matched_id].append(
                PredictionPoint(
                    nation=nation,
                    t_s=t,
                    boost=t < flight.burnout_time_s,
                    error_m=error,
                    semi_major_m=payload.ellipse.semi_major_m,
                    semi_minor_m=payload.ellipse.semi_minor_m,
                    normalised_miss=miss,
                )
            )
            classes[matched_id][nation] = payload.missile_class.value
        elif isinstance(payload, Alert):
            alerts[matched_id].append(
                AlertPoint(
                    nation=nation,
                    t_s=since,
                    msg_type=payload.msg_type.value,
                    level=payload.level.value,
                    areas=list(payload.affected_areas),
                    missile_class=payload.missile_class.value,
                )
            )
    tracks: dict[str, dict[Nation, list[str]]] = collections.defaultdict(
        lambda: collections.defaultdict(list)
    )
    for (nation, key), launch_id in sorted(matched.items()):
        tracks[launch_id][nation].append(key)
    fused_keys = {
        (e.event.header.sensor_nation, e.event.header.correlation_key)
        for e in events
        if e.event.header.sensor_id.endswith("-FUSION")
    }
    unmatched: dict[Nation, list[str]] = collections.defaultdict(list)
    for nation, key in sorted(fused_keys - set(matched)):
        unmatched[nation].append(key)
    launches = []
    for launch in scenario.launches:
        flight = flights[launch.id]
        lat, lon = flight.impact_point
        launches.append(
            LaunchReport(
                launch_id=launch.id,
                missile_class=launch.missile_class.value,
                flight_time_s=flight.flight_time_s,
                burnout_s=flight.burnout_time_s,
                impact_lat_deg=lat,
                impact_lon_deg=lon,
                sensor_detection_s=dict(sorted(detections[launch.id].items(), key=lambda kv: kv[1])),
                nation_detection_s=nation_det[launch.id],
                fused_tracks=dict(tracks[launch.id]),
                class_estimate=classes[launch.id],
                predictions=predictions[launch.id],
                alerts=alerts[launch.id],
            )
        )
    return ScenarioReport(
        scenario=scenario.name, launches=launches, unmatched_tracks=dict(unmatched), stray_updates=strays
    )


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:6.1f}"


def render_table(report: ScenarioReport) -> str:
    """The report as plain-text tables, one block per launch, then the honesty summary."""
    lines = [f"scenario {report.scenario}: {len(report.launches)} launch(es)"]
    for launch in report.launches:
        lines.append("")
        lines.append(
            f"launch {launch.launch_id} ({launch.missile_class}): flight {launch.flight_time_s:.0f} s, "
            f"burnout {launch.burnout_s:.0f} s, impact {launch.impact_lat_deg:.2f} N {launch.impact_lon_deg:.2f} E"
        )
        firsts = ", ".join(f"{s} {t:.1f}" for s, t in list(launch.sensor_detection_s.items())[:6])
        lines.append(f"  first sensor launch detections, s after launch: {firsts or 'none'}")
        lines.append(
            f"  {'nation':6s} {'tracks':>6s} {'detect s':>8s} {'alert s':>8s} {'class':>7s} "
            f"{'err@60s km':>10s} {'1sig km':>7s} {'last err km':>11s} {'1sig km':>7s} {'>3sig':>6s}"
        )
        for nation in Nation:
            preds = [p for p in launch.predictions if p.nation is nation]
            first_alert = next((a.t_s for a in launch.alerts if a.nation is nation), None)
            at60 = next((p for p in preds if p.t_s >= 60.0), None)
            last = preds[-1] if preds else None
            outside = sum(p.normalised_miss > 3.0 for p in preds)
            lines.append(
                f"  {nation.value:6s} {len(launch.fused_tracks.get(nation, [])):6d} "
                f"{_s(launch.nation_detection_s.get(nation)):>8s} {_s(first_alert):>8s} "
                f"{launch.class_estimate.get(nation, '-'):>7s} "
                f"{_s(None if at60 is None else at60.error_m / 1e3):>10s} "
                f"{_s(None if at60 is None else at60.semi_major_m / 1e3):>7s} "
                f"{_s(None if last is None else last.error_m / 1e3):>11s} "
                f"{_s(None if last is None else last.semi_major_m / 1e3):>7s} "
                f"{outside:3d}/{len(preds):<3d}"
            )
        for a in launch.alerts:
            lines.append(
                f"  alert {a.nation.value} {a.t_s:7.1f} s {a.msg_type:6s} {a.level:9s} {','.join(a.areas)} ({a.missile_class})"
            )
    outside, total = report.boost_outside_3sigma()
    share = 0.0 if total == 0 else 100.0 * outside / total
    lines.append("")
    lines.append(f"boost-phase fused predictions more than 3 sigma off: {outside} of {total} ({share:.1f} %)")
    lines.append(f"fused track updates nearer another launch than their track's: {report.stray_updates}")
    if report.unmatched_tracks:
        extra = ", ".join(f"{n.value}: {len(keys)}" for n, keys in report.unmatched_tracks.items())
        lines.append(f"fused tracks matching no launch: {extra}")
    return "\n".join(lines)


_COLOURS = {Nation.US: "tab:blue", Nation.JP: "tab:red", Nation.KR: "tab:green"}


def render_png(report: ScenarioReport, path: Path) -> None:
    """One panel per launch: each nation's prediction error and 1-sigma against time (log scale),
    with its detection (dotted) and first alert (dashed) times."""
    from matplotlib.figure import Figure

    n = len(report.launches)
    cols = min(n, 4)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(max(8.0, 4.2 * cols), 3.4 * rows + 0.4), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for i, launch in enumerate(report.launches):
        ax = axes[i // cols][i % cols]
        for nation in Nation:
            preds = [p for p in launch.predictions if p.nation is nation]
            colour = _COLOURS[nation]
            if preds:
                ts = [p.t_s for p in preds]
                ax.plot(
                    ts,
                    [max(p.error_m, 1.0) / 1e3 for p in preds],
                    color=colour,
                    label=f"{nation.value} error",
                )
                ax.plot(
                    ts,
                    [p.semi_major_m / 1e3 for p in preds],
                    color=colour,
                    linestyle=":",
                    label=f"{nation.value} 1 sigma",
                )
            det = launch.nation_detection_s.get(nation)
            if det is not None:
                ax.axvline(det, color=colour, linestyle=(0, (1, 3)), linewidth=0.8)
            alert = next((a.t_s for a in launch.alerts if a.nation is nation), None)
            if alert is not None:
                ax.axvline(alert, color=colour, linestyle="--", linewidth=0.9)
        ax.axvspan(0.0, launch.burnout_s, color="0.92", zorder=0)
        ax.set_yscale("log")
        ax.set_title(f"{launch.launch_id} {launch.missile_class}", fontsize=9)
        ax.set_xlabel("s after launch", fontsize=8)
        ax.set_ylabel("impact error, km", fontsize=8)
        ax.tick_params(labelsize=7)
    for j in range(n, rows * cols):
        axes[j // cols][j % cols].set_visible(False)
    axes[0][0].legend(fontsize=6, loc="upper right")
    fig.suptitle(
        f"{report.scenario}: each nation's fused impact error (solid) and 1 sigma (dotted)\n"
        "grey: boost phase; dotted line: the nation's launch detection; dashed: its first alert",
        fontsize=9,
    )
    fig.savefig(path, dpi=90)
