"""The models reject what Avro cannot: ranges, non-finite numbers, time order, releasability."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from schemas import models as m
from schemas.samples import LAUNCH_TIME, sample_alert, sample_event, sample_header

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    "overrides",
    [
        {"releasable_to": []},
        {"releasable_to": ["US", "US"]},
        {"releasable_to": ["XX"]},
        {"measured_at": LAUNCH_TIME + timedelta(hours=1)},
        {"measured_at": LAUNCH_TIME.replace(tzinfo=None)},
        {"sequence": -1},
        {"sequence": 2**63},
        {"correlation_key": ""},
        {"correlation_key": "x" * 65},
        {"sensor_id": "has space"},
        {"event_id": "nope"},
    ],
)
def test_bad_headers(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        sample_header(**overrides)


@pytest.mark.parametrize(
    "fields",
    [
        {"lat_deg": 90.0001, "lon_deg": 0.0, "alt_m": 0.0},
        {"lat_deg": 0.0, "lon_deg": 181.0, "alt_m": 0.0},
        {"lat_deg": math.nan, "lon_deg": 0.0, "alt_m": 0.0},
        {"lat_deg": 0.0, "lon_deg": 0.0, "alt_m": math.inf},
    ],
)
def test_bad_points(fields: dict[str, float]) -> None:
    with pytest.raises(ValidationError):
        m.GeoPoint(**fields)


def test_uncertainties_are_non_negative_and_ellipse_ordered() -> None:
    with pytest.raises(ValidationError):
        m.UncertaintyEllipse(semi_major_m=-1.0, semi_minor_m=0.0, orientation_deg=0.0)
    with pytest.raises(ValidationError):
        m.UncertaintyEllipse(semi_major_m=1.0, semi_minor_m=2.0, orientation_deg=0.0)
    with pytest.raises(ValidationError):
        m.UncertaintyEllipse(semi_major_m=1.0, semi_minor_m=1.0, orientation_deg=180.0)


def test_launch_after_measurement_is_rejected() -> None:
    event = sample_event(m.EventKind.LAUNCH_DETECTION)
    with pytest.raises(ValidationError, match="launch_time"):
        sample_event(
            m.EventKind.LAUNCH_DETECTION,
            measured_at=event.payload.launch_time - timedelta(seconds=1),  # type: ignore[union-attr]
        )


def test_impact_before_launch_is_rejected() -> None:
    point = m.GeoPoint(lat_deg=0.0, lon_deg=0.0, alt_m=0.0)
    ellipse = m.UncertaintyEllipse(semi_major_m=1.0, semi_minor_m=1.0, orientation_deg=0.0)
    with pytest.raises(ValidationError, match="launch_time"):
        m.ImpactPrediction(
            impact_point=point, impact_time=LAUNCH_TIME, launch_time=LAUNCH_TIME, ellipse=ellipse
        )


def test_alert_rules() -> None:
    alert = sample_alert()
    with pytest.raises(ValidationError):
        m.Alert(**{**dict(alert), "text": "x" * (m.MAX_TEXT_CHARS + 1)})
    with pytest.raises(ValidationError):
        m.Alert(**{**dict(alert), "affected_areas": []})
    with pytest.raises(ValidationError):
        m.Alert(**{**dict(alert), "affected_areas": ["jp eez"]})
    with pytest.raises(ValidationError, match="reference"):
        m.Alert(**{**dict(alert), "msg_type": m.AlertMsgType.CANCEL})
    with pytest.raises(ValidationError, match="EXERCISE"):
        m.WarningEvent(header=sample_header(exercise=True), payload=alert)


def test_track_end_merge_rules() -> None:
    with pytest.raises(ValidationError):
        m.TrackEnd(reason=m.TrackEndReason.MERGED)
    with pytest.raises(ValidationError):
        m.TrackEnd(reason=m.TrackEndReason.LOST, merged_into="TRK-2")
    with pytest.raises(ValidationError, match="itself"):
        m.WarningEvent(
            header=sample_header(),
            payload=m.TrackEnd(reason=m.TrackEndReason.MERGED, merged_into="TRK-20240101-0001"),
        )


def test_sensor_must_release_to_its_own_nation() -> None:
    with pytest.raises(ValidationError, match="own nation"):
        sample_event(releasable_to=[m.Nation.JP])


def test_times_are_normalised_to_utc() -> None:
    from datetime import timezone

    tokyo = timezone(timedelta(hours=9))
    header = sample_header(
        measured_at=LAUNCH_TIME.astimezone(tokyo), emitted_at=LAUNCH_TIME.astimezone(tokyo)
    )
    assert header.measured_at.utcoffset() == timedelta(0)
    assert header.measured_at == LAUNCH_TIME


def test_models_are_immutable() -> None:
    event = sample_event()
    with pytest.raises(ValidationError):
        event.header.sequence = 1  # type: ignore[misc]
