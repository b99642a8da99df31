"""Valid example events of every kind, for tests and for other teams' tests.

Values are plausible but invented (a launch from the Sunan area with an impact in the Sea of
Japan, seen by a forward-based radar at Shariki); positions are public place names only.
Every function takes keyword overrides for the header so callers can vary ids and times.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from schemas.models import (
    Alert,
    AlertLevel,
    AlertMsgType,
    AlertStatus,
    EnuVelocity,
    EventHeader,
    EventKind,
    EventPayload,
    FlightPhase,
    GeoPoint,
    ImpactPrediction,
    LaunchDetection,
    MissileClass,
    Nation,
    SensorHealth,
    SensorStatus,
    TrackEnd,
    TrackEndReason,
    TrackUpdate,
    UncertaintyEllipse,
    WarningEvent,
)

__all__ = [
    "LAUNCH_TIME",
    "sample_alert",
    "sample_event",
    "sample_events",
    "sample_header",
    "sample_impact_prediction",
    "sample_launch_detection",
    "sample_sensor_status",
    "sample_track_end",
    "sample_track_update",
]

#: Invented launch instant every sample is relative to.
LAUNCH_TIME = datetime(2024, 1, 1, 0, 0, 0, tzinfo=UTC)
_SUNAN = GeoPoint(lat_deg=39.2, lon_deg=125.67, alt_m=30.0)
_SEA_OF_JAPAN = GeoPoint(lat_deg=40.6, lon_deg=135.2, alt_m=0.0)
_SHARIKI = GeoPoint(lat_deg=40.89, lon_deg=140.33, alt_m=20.0)


def sample_header(**overrides: Any) -> EventHeader:
    """A valid header from a US radar, releasable to all three allies, 40 s after launch."""
    fields: dict[str, Any] = {
        "event_id": UUID("6f1c2a4e-8d3b-4c1e-9a7f-2b5d8e0c1a23"),
        "correlation_key": "TRK-20240101-0001",
        "sensor_id": "us-tpy2-shariki",
        "sensor_nation": Nation.US,
        "releasable_to": [Nation.US, Nation.JP, Nation.KR],
        "sequence": 42,
        "measured_at": LAUNCH_TIME + timedelta(seconds=40),
        "emitted_at": LAUNCH_TIME + timedelta(seconds=40, microseconds=1500),
        "simulated": True,
        "exercise": False,
    }
    fields.update(overrides)
    return EventHeader(**fields)


def sample_launch_detection() -> LaunchDetection:
    """A launch from the Sunan area, estimated as an IRBM."""
    return LaunchDetection(
        launch_point=_SUNAN,
        launch_point_sigma_m=1500.0,
        launch_time=LAUNCH_TIME,
        confidence=0.9,
        missile_class=MissileClass.IRBM,
    )


def sample_track_update() -> TrackUpdate:
    """A boost-phase state estimate climbing east."""
    return TrackUpdate(
        position=GeoPoint(lat_deg=39.25, lon_deg=125.9, alt_m=52_000.0),
        velocity=EnuVelocity(east_m_s=1800.0, north_m_s=120.0, up_m_s=2100.0),
        position_sigma_m=350.0,
        velocity_sigma_m_s=25.0,
        phase=FlightPhase.BOOST,
        track_quality=0.8,
    )


def sample_impact_prediction() -> ImpactPrediction:
    """A predicted impact in the Sea of Japan inside Japan's EEZ."""
    return ImpactPrediction(
        impact_point=_SEA_OF_JAPAN,
        impact_time=LAUNCH_TIME + timedelta(minutes=30),
        launch_time=LAUNCH_TIME,
        ellipse=UncertaintyEllipse(semi_major_m=25_000.0, semi_minor_m=8_000.0, orientation_deg=80.0),
        impact_areas=["JP_EEZ"],
        overflown_areas=[],
    )


def sample_alert() -> Alert:
    """A new WARNING-level alert for Japan's EEZ."""
    return Alert(
        level=AlertLevel.WARNING,
        msg_type=AlertMsgType.ALERT,
        status=AlertStatus.ACTUAL,
        affected_areas=["JP_EEZ", "JP_TERRITORY"],
        text="Missile launch detected. Predicted impact in the Sea of Japan within JP EEZ.",
    )


def sample_track_end() -> TrackEnd:
    """The track ended with an impact."""
    return TrackEnd(reason=TrackEndReason.IMPACTED)


def sample_sensor_status() -> SensorStatus:
    """A healthy forward-based radar looking west (range is the public rough figure)."""
    return SensorStatus(
        health=SensorHealth.OK,
        site=_SHARIKI,
        max_range_m=2_000_000.0,
        sector_center_deg=270.0,
        sector_width_deg=120.0,
        heartbeat_interval_s=5.0,
    )


_PAYLOADS: dict[EventKind, Callable[[], EventPayload]] = {
    EventKind.LAUNCH_DETECTION: sample_launch_detection,
    EventKind.TRACK_UPDATE: sample_track_update,
    EventKind.IMPACT_PREDICTION: sample_impact_prediction,
    EventKind.ALERT: sample_alert,
    EventKind.TRACK_END: sample_track_end,
    EventKind.SENSOR_STATUS: sample_sensor_status,
}


def sample_event(kind: EventKind = EventKind.TRACK_UPDATE, **header: Any) -> WarningEvent:
    """A valid envelope with the sample payload of ``kind``; keywords override header fields."""
    payload: EventPayload = _PAYLOADS[kind]()
    return WarningEvent(header=sample_header(**header), payload=payload)


def sample_events() -> list[WarningEvent]:
    """One valid event of every kind, in EventKind order."""
    return [sample_event(kind) for kind in EventKind]
