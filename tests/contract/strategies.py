"""Hypothesis strategies producing valid events of every kind (shared by the contract tests)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import strategies as st

from schemas import models as m

_TIMES = st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC))
_IDS = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._:/-]{0,40}\Z")
_AREAS = st.lists(st.from_regex(r"\A[A-Z][A-Z0-9_]{0,15}\Z"), max_size=4, unique=True)


def _float(lo: float, hi: float) -> st.SearchStrategy[float]:
    return st.floats(min_value=lo, max_value=hi, allow_nan=False, allow_infinity=False)


_POINTS = st.builds(
    m.GeoPoint,
    lat_deg=_float(-90, 90),
    lon_deg=_float(-180, 180),
    alt_m=_float(-12_000, 50_000_000),
)


@st.composite
def headers(draw: st.DrawFn, measured: datetime | None = None) -> m.EventHeader:
    """A valid header; ``measured`` pins measured_at when a payload depends on it."""
    nation = draw(st.sampled_from(m.Nation))
    others = draw(st.lists(st.sampled_from(m.Nation), unique=True))
    measured_at = measured if measured is not None else draw(_TIMES)
    return m.EventHeader(
        event_id=draw(st.uuids()),
        correlation_key=draw(_IDS),
        sensor_id=draw(_IDS),
        sensor_nation=nation,
        releasable_to=[nation, *(n for n in others if n is not nation)],
        sequence=draw(st.integers(0, 2**63 - 1)),
        measured_at=measured_at,
        emitted_at=measured_at + draw(st.timedeltas(timedelta(0), timedelta(seconds=60))),
        simulated=draw(st.booleans()),
        exercise=draw(st.booleans()),
    )


@st.composite
def launch_detections(draw: st.DrawFn) -> m.WarningEvent:
    launch = draw(_TIMES)
    payload = m.LaunchDetection(
        launch_point=draw(_POINTS),
        launch_point_sigma_m=draw(_float(0, 1e6)),
        launch_time=launch,
        confidence=draw(_float(0, 1)),
        missile_class=draw(st.sampled_from(m.MissileClass)),
    )
    measured = launch + draw(st.timedeltas(timedelta(0), timedelta(hours=1)))
    return m.WarningEvent(header=draw(headers(measured)), payload=payload)


@st.composite
def track_updates(draw: st.DrawFn) -> m.WarningEvent:
    speed = _float(-20_000, 20_000)
    payload = m.TrackUpdate(
        position=draw(_POINTS),
        velocity=m.EnuVelocity(east_m_s=draw(speed), north_m_s=draw(speed), up_m_s=draw(speed)),
        position_sigma_m=draw(_float(0, 1e7)),
        velocity_sigma_m_s=draw(_float(0, 1e4)),
        phase=draw(st.sampled_from(m.FlightPhase)),
        track_quality=draw(_float(0, 1)),
    )
    return m.WarningEvent(header=draw(headers()), payload=payload)


@st.composite
def impact_predictions(draw: st.DrawFn) -> m.WarningEvent:
    impact = draw(_TIMES)
    launch = draw(st.none() | st.timedeltas(timedelta(microseconds=1), timedelta(hours=2)))
    major = draw(_float(0, 1e6))
    payload = m.ImpactPrediction(
        impact_point=draw(_POINTS),
        impact_time=impact,
        launch_time=None if launch is None else impact - launch,
        ellipse=m.UncertaintyEllipse(
            semi_major_m=major,
            semi_minor_m=draw(_float(0, major)),
            orientation_deg=draw(st.floats(0, 180, exclude_max=True)),
        ),
        impact_areas=draw(_AREAS),
        overflown_areas=draw(_AREAS),
    )
    return m.WarningEvent(header=draw(headers()), payload=payload)


@st.composite
def alerts(draw: st.DrawFn) -> m.WarningEvent:
    header = draw(headers())
    msg_type = draw(st.sampled_from(m.AlertMsgType))
    if header.exercise:
        status = m.AlertStatus.EXERCISE
    else:
        status = draw(st.sampled_from([m.AlertStatus.ACTUAL, m.AlertStatus.TEST]))
    refs: list[Any] = (
        []
        if msg_type is m.AlertMsgType.ALERT
        else draw(st.lists(st.uuids(), min_size=1, max_size=3, unique=True))
    )
    payload = m.Alert(
        level=draw(st.sampled_from(m.AlertLevel)),
        msg_type=msg_type,
        status=status,
        affected_areas=draw(_AREAS.filter(bool)),
        text=draw(st.text(min_size=1, max_size=m.MAX_TEXT_CHARS)),
        references=refs,
    )
    return m.WarningEvent(header=header, payload=payload)


@st.composite
def track_ends(draw: st.DrawFn) -> m.WarningEvent:
    header = draw(headers())
    reason = draw(st.sampled_from(m.TrackEndReason))
    target = None
    if reason is m.TrackEndReason.MERGED:
        target = draw(_IDS.filter(lambda key: key != header.correlation_key))
    return m.WarningEvent(header=header, payload=m.TrackEnd(reason=reason, merged_into=target))


@st.composite
def sensor_statuses(draw: st.DrawFn) -> m.WarningEvent:
    payload = m.SensorStatus(
        health=draw(st.sampled_from(m.SensorHealth)),
        site=draw(_POINTS),
        max_range_m=draw(_float(0, 1e8)),
        sector_center_deg=draw(st.floats(0, 360, exclude_max=True)),
        sector_width_deg=draw(st.floats(0, 360, exclude_min=True)),
        heartbeat_interval_s=draw(st.floats(0, 3600, exclude_min=True)),
    )
    return m.WarningEvent(header=draw(headers()), payload=payload)


#: One strategy per event kind.
BY_KIND: dict[m.EventKind, st.SearchStrategy[m.WarningEvent]] = {
    m.EventKind.LAUNCH_DETECTION: launch_detections(),
    m.EventKind.TRACK_UPDATE: track_updates(),
    m.EventKind.IMPACT_PREDICTION: impact_predictions(),
    m.EventKind.ALERT: alerts(),
    m.EventKind.TRACK_END: track_ends(),
    m.EventKind.SENSOR_STATUS: sensor_statuses(),
}
events = st.one_of(*BY_KIND.values())


def zigzag(value: int) -> bytes:
    """Avro long encoding (zig-zag varint), written independently of the codec under test."""
    n = (value << 1) ^ (value >> 63)
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)
