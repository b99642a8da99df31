"""Typed models of the warning events: the one place where a field of the contract is declared.

The Avro schema is derived from these classes (:mod:`schemas.avro`) and frozen per release in
``schemas/released/``; a test keeps the newest release equal to what the models derive. The
models also check what Avro cannot: coordinate bounds, finite numbers, non-negative
uncertainties, time order, releasability and bounded strings. SI units and WGS-84 throughout;
each field's unit is in its name or its description.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, ClassVar, Self, TypeVar
from uuid import UUID

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "AREA_PATTERN",
    "MAX_AREAS",
    "MAX_TEXT_CHARS",
    "Alert",
    "AlertLevel",
    "AlertMsgType",
    "AlertStatus",
    "EnuVelocity",
    "EventHeader",
    "EventKind",
    "EventPayload",
    "FlightPhase",
    "GeoPoint",
    "ImpactPrediction",
    "LaunchDetection",
    "MissileClass",
    "Nation",
    "SensorHealth",
    "SensorStatus",
    "TrackEnd",
    "TrackEndReason",
    "TrackUpdate",
    "UncertaintyEllipse",
    "WarningEvent",
]

#: Longest alert text (characters); short enough for a phone banner.
MAX_TEXT_CHARS = 280
#: Longest identifier (sensor id, correlation key).
MAX_ID_CHARS = 64
#: Most named areas one event may list.
MAX_AREAS = 16
#: Named area: upper-case words joined by underscores, e.g. ``JP_EEZ``.
AREA_PATTERN = r"^[A-Z][A-Z0-9_]{0,31}$"
#: Identifiers: printable ASCII without spaces, so they are safe as Kafka keys and log fields.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$"
#: Avro ``long`` bounds (sequence numbers travel as long).
LONG_MAX = 2**63 - 1

_T = TypeVar("_T")


class _Model(BaseModel):
    """Shared config: immutable, no unknown fields, no NaN or infinity anywhere."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False, strict=False)


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


def _unique(values: list[_T]) -> list[_T]:
    if len(set(values)) != len(values):
        raise ValueError("values must not repeat")
    return values


#: A timezone-aware instant, normalised to UTC (the wire carries microseconds since the epoch).
UtcTime = Annotated[AwareDatetime, AfterValidator(_utc)]
Identifier = Annotated[str, Field(min_length=1, max_length=MAX_ID_CHARS, pattern=ID_PATTERN)]
AreaName = Annotated[str, Field(min_length=1, max_length=32, pattern=AREA_PATTERN)]
AreaList = Annotated[list[AreaName], Field(max_length=MAX_AREAS), AfterValidator(_unique)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
NonNegative = Annotated[float, Field(ge=0.0)]


class Nation(StrEnum):
    """One of the three allies sharing data."""

    US = "US"
    JP = "JP"
    KR = "KR"


class MissileClass(StrEnum):
    """Range class estimated from the early track (UNKNOWN until the sensor can tell)."""

    SRBM = "SRBM"
    MRBM = "MRBM"
    IRBM = "IRBM"
    ICBM = "ICBM"
    UNKNOWN = "UNKNOWN"


class FlightPhase(StrEnum):
    """Ballistic flight phase of a tracked object."""

    BOOST = "BOOST"
    MIDCOURSE = "MIDCOURSE"
    TERMINAL = "TERMINAL"


class AlertLevel(StrEnum):
    """How urgently the public or operators must act, lowest first."""

    ADVISORY = "ADVISORY"
    WARNING = "WARNING"
    EMERGENCY = "EMERGENCY"


class AlertMsgType(StrEnum):
    """CAP-like message type: a new alert, an update of one, or its cancellation."""

    ALERT = "ALERT"
    UPDATE = "UPDATE"
    CANCEL = "CANCEL"


class AlertStatus(StrEnum):
    """CAP-like status: real, part of an exercise, or a technical test."""

    ACTUAL = "ACTUAL"
    EXERCISE = "EXERCISE"
    TEST = "TEST"


class TrackEndReason(StrEnum):
    """Why a track stopped: it hit the ground or sea, the sensors lost it, or it merged."""

    IMPACTED = "IMPACTED"
    LOST = "LOST"
    MERGED = "MERGED"


class SensorHealth(StrEnum):
    """Self-reported sensor health."""

    OK = "OK"
    DEGRADED = "DEGRADED"
    DOWN = "DOWN"


class EventKind(StrEnum):
    """Kind of a warning event (one per payload type); used in CloudEvents types and metrics."""

    LAUNCH_DETECTION = "launch_detection"
    TRACK_UPDATE = "track_update"
    IMPACT_PREDICTION = "impact_prediction"
    ALERT = "alert"
    TRACK_END = "track_end"
    SENSOR_STATUS = "sensor_status"


class GeoPoint(_Model):
    """A WGS-84 geodetic position."""

    lat_deg: float = Field(ge=-90.0, le=90.0, description="Geodetic latitude, degrees north.")
    lon_deg: float = Field(ge=-180.0, le=180.0, description="Longitude, degrees east of Greenwich.")
    alt_m: float = Field(
        ge=-12_000.0,
        le=50_000_000.0,
        description="Height above the WGS-84 ellipsoid, metres.",
    )


class EnuVelocity(_Model):
    """A velocity in the local East-North-Up frame at the reported position."""

    east_m_s: float = Field(ge=-20_000.0, le=20_000.0, description="East component, m/s.")
    north_m_s: float = Field(ge=-20_000.0, le=20_000.0, description="North component, m/s.")
    up_m_s: float = Field(ge=-20_000.0, le=20_000.0, description="Up component, m/s.")


class UncertaintyEllipse(_Model):
    """A horizontal 1-sigma error ellipse around a ground point."""

    semi_major_m: NonNegative = Field(description="Semi-major axis, metres (1 sigma).")
    semi_minor_m: NonNegative = Field(description="Semi-minor axis, metres (1 sigma).")
    orientation_deg: float = Field(
        ge=0.0,
        lt=180.0,
        description="Azimuth of the semi-major axis, degrees clockwise from true north.",
    )

    @model_validator(mode="after")
    def _axes_ordered(self) -> Self:
        if self.semi_minor_m > self.semi_major_m:
            raise ValueError("semi_minor_m must not exceed semi_major_m")
        return self


class EventHeader(_Model):
    """Who measured what when, who may see it, and where it sits in its sensor's sequence."""

    event_id: UUID = Field(description="Unique id of this event (UUID).")
    correlation_key: Identifier = Field(
        description="Ties every event about one missile across sensors and allies; Kafka key."
    )
    sensor_id: Identifier = Field(description="Sensor (or fusion cell) that produced the event.")
    sensor_nation: Nation = Field(description="Nation operating the sensor.")
    releasable_to: Annotated[list[Nation], Field(min_length=1), AfterValidator(_unique)] = Field(
        description="Nations allowed to receive this event; non-empty, no repeats."
    )
    sequence: int = Field(ge=0, le=LONG_MAX, description="Per-sensor sequence number, from 0.")
    measured_at: UtcTime = Field(description="When the sensor measured (UTC, microseconds).")
    emitted_at: UtcTime = Field(description="When the event was emitted (UTC, microseconds).")
    simulated: bool = Field(description="True when the data comes from a simulated sensor.")
    exercise: bool = Field(description="True when the event belongs to an exercise.")

    @model_validator(mode="after")
    def _measured_before_emitted(self) -> Self:
        if self.measured_at > self.emitted_at:
            raise ValueError("measured_at must not be later than emitted_at")
        return self


class LaunchDetection(_Model):
    """First report of a launch: where and when it left the ground, and how sure we are."""

    KIND: ClassVar[EventKind] = EventKind.LAUNCH_DETECTION

    launch_point: GeoPoint = Field(description="Estimated launch point (WGS-84).")
    launch_point_sigma_m: NonNegative = Field(
        description="Horizontal 1-sigma uncertainty of the launch point, metres."
    )
    launch_time: UtcTime = Field(description="Estimated launch time (UTC, microseconds).")
    confidence: Fraction = Field(description="Confidence that this is a real launch, 0..1.")
    missile_class: MissileClass = Field(description="Estimated missile range class.")


class TrackUpdate(_Model):
    """One state estimate of a tracked object: position, velocity and their 1-sigma errors."""

    KIND: ClassVar[EventKind] = EventKind.TRACK_UPDATE

    position: GeoPoint = Field(description="Estimated position (WGS-84).")
    velocity: EnuVelocity = Field(description="Estimated velocity, local ENU frame, m/s.")
    position_sigma_m: NonNegative = Field(description="1-sigma position uncertainty, metres.")
    velocity_sigma_m_s: NonNegative = Field(description="1-sigma velocity uncertainty, m/s.")
    phase: FlightPhase = Field(description="Estimated flight phase.")
    track_quality: Fraction = Field(description="Track quality, 0 (poor) .. 1 (excellent).")
    missile_class: MissileClass = Field(
        default=MissileClass.UNKNOWN,
        description="Estimated missile range class, UNKNOWN until estimated (added in v2).",
    )


class ImpactPrediction(_Model):
    """Where and when the object is predicted to come down, and which named areas it touches."""

    KIND: ClassVar[EventKind] = EventKind.IMPACT_PREDICTION

    impact_point: GeoPoint = Field(description="Predicted impact point (WGS-84).")
    impact_time: UtcTime = Field(description="Predicted impact time (UTC, microseconds).")
    launch_time: UtcTime | None = Field(
        default=None, description="Estimated launch time if known (UTC, microseconds)."
    )
    ellipse: UncertaintyEllipse = Field(description="1-sigma ground error ellipse of the impact.")
    impact_areas: AreaList = Field(
        default_factory=list,
        description="Named areas the impact point falls in, e.g. JP_EEZ; no repeats.",
    )
    overflown_areas: AreaList = Field(
        default_factory=list,
        description="Named areas the remaining trajectory overflies, e.g. JP_TERRITORY.",
    )
    missile_class: MissileClass = Field(
        default=MissileClass.UNKNOWN,
        description="Estimated missile range class, UNKNOWN until estimated (added in v2).",
    )

    @model_validator(mode="after")
    def _launch_before_impact(self) -> Self:
        if self.launch_time is not None and self.launch_time >= self.impact_time:
            raise ValueError("launch_time must be earlier than impact_time")
        return self


class Alert(_Model):
    """A CAP-like warning for named areas: issued, updated or cancelled."""

    KIND: ClassVar[EventKind] = EventKind.ALERT

    level: AlertLevel = Field(description="Alert level.")
    msg_type: AlertMsgType = Field(description="ALERT (new), UPDATE or CANCEL.")
    status: AlertStatus = Field(description="ACTUAL, EXERCISE or TEST.")
    affected_areas: Annotated[
        list[AreaName], Field(min_length=1, max_length=MAX_AREAS), AfterValidator(_unique)
    ] = Field(description="Named areas the alert is for; non-empty, no repeats.")
    text: str = Field(
        min_length=1,
        max_length=MAX_TEXT_CHARS,
        description=f"Short human-readable text, at most {MAX_TEXT_CHARS} characters.",
    )
    references: Annotated[list[UUID], Field(max_length=MAX_AREAS), AfterValidator(_unique)] = Field(
        default_factory=list,
        description="event_id of the alert(s) this one updates or cancels.",
    )
    missile_class: MissileClass = Field(
        default=MissileClass.UNKNOWN,
        description="Estimated missile range class, UNKNOWN until estimated (added in v2).",
    )

    @model_validator(mode="after")
    def _references_match_type(self) -> Self:
        if self.msg_type is AlertMsgType.ALERT and self.references:
            raise ValueError("a new ALERT must not reference earlier alerts")
        if self.msg_type is not AlertMsgType.ALERT and not self.references:
            raise ValueError(f"{self.msg_type.value} must reference the alert it replaces")
        return self


class TrackEnd(_Model):
    """The last word on a track: why it ended, and what it merged into if it merged."""

    KIND: ClassVar[EventKind] = EventKind.TRACK_END

    reason: TrackEndReason = Field(description="Why the track ended.")
    merged_into: Identifier | None = Field(
        default=None,
        description="Correlation key the track merged into; set exactly when reason is MERGED.",
    )

    @model_validator(mode="after")
    def _merge_target(self) -> Self:
        if (self.reason is TrackEndReason.MERGED) != (self.merged_into is not None):
            raise ValueError("merged_into is required for MERGED and forbidden otherwise")
        return self


class SensorStatus(_Model):
    """Periodic heartbeat: the sensor is alive, how healthy it is and what it can see."""

    KIND: ClassVar[EventKind] = EventKind.SENSOR_STATUS

    health: SensorHealth = Field(description="Self-reported health.")
    site: GeoPoint = Field(description="Sensor position (WGS-84).")
    max_range_m: NonNegative = Field(description="Maximum detection range, metres.")
    sector_center_deg: float = Field(
        ge=0.0, lt=360.0, description="Centre of the azimuth sector, degrees clockwise from north."
    )
    sector_width_deg: float = Field(
        gt=0.0, le=360.0, description="Width of the azimuth sector, degrees (360 = all round)."
    )
    heartbeat_interval_s: float = Field(
        gt=0.0, le=3600.0, description="Seconds until the next heartbeat is due."
    )


#: The payload types, in Avro union order (append only: the branch index is on the wire).
EventPayload = LaunchDetection | TrackUpdate | ImpactPrediction | Alert | TrackEnd | SensorStatus


class WarningEvent(_Model):
    """The envelope of every event on the warning topics: a header and one payload."""

    header: EventHeader = Field(description="Provenance, releasability and timing.")
    payload: EventPayload = Field(description="What happened; its type gives the event kind.")

    @property
    def kind(self) -> EventKind:
        """The event kind given by the payload type."""
        return self.payload.KIND

    @model_validator(mode="after")
    def _cross_checks(self) -> Self:
        header, payload = self.header, self.payload
        if header.sensor_nation not in header.releasable_to:
            raise ValueError("releasable_to must include the sensor's own nation")
        if isinstance(payload, LaunchDetection) and payload.launch_time > header.measured_at:
            raise ValueError("launch_time must not be later than measured_at")
        if isinstance(payload, Alert) and (payload.status is AlertStatus.EXERCISE) != (header.exercise):
            raise ValueError("alert status EXERCISE must match header.exercise")
        if isinstance(payload, TrackEnd) and payload.merged_into == header.correlation_key:
            raise ValueError("a track cannot merge into itself")
        return self
