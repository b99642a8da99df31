"""Scenarios: launches, active sensors, duration and seed, run as a pure event generator.

A scenario file is TOML validated by pydantic; errors name the field path
(``launch[2].apogee_km``). :func:`simulate` turns a scenario into the exact sequence of
contract events the sensors would emit, in emit-time order, with no Kafka and no wall clock:
the same scenario and seed always give the same events, byte for byte.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from producers.areas import AreaMap, default_areas
from producers.catalog import Catalog, SensorSpec, default_catalog, format_validation_error
from producers.errors import ScenarioError, TrajectoryError
from producers.national import NationalSetup, with_national_products
from producers.sensors import Draft, SensorModel, SimContext
from producers.trajectory import Flight, FlightRequest, MissileClass, Profile, fly
from schemas.models import EventHeader, WarningEvent
from trilink.policy import SharingPolicy, default_policy
from trilink.resources import package_path
from trilink.tomlfile import read_toml

SCENARIO_DIR = package_path("producers", "scenarios")

LaunchId = Annotated[str, Field(min_length=1, max_length=24, pattern=r"^[A-Za-z0-9][A-Za-z0-9-]*$")]


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class LaunchSpec(_Strict):
    """One launch: when, from where, what, and where to."""

    id: LaunchId
    offset_s: float = Field(ge=0.0, description="Launch time, seconds after scenario start.")
    site: tuple[float, float] = Field(description="Launch site [lat_deg, lon_deg].")
    missile_class: MissileClass = Field(alias="class")
    profile: Profile | None = None
    azimuth_deg: float | None = Field(default=None, ge=0.0, lt=360.0)
    range_km: float | None = Field(default=None, gt=0.0)
    impact: tuple[float, float] | None = Field(default=None, description="[lat_deg, lon_deg]")
    apogee_km: float | None = Field(default=None, gt=0.0)

    @model_validator(mode="after")
    def _one_target(self) -> Self:
        polar = self.azimuth_deg is not None or self.range_km is not None
        if self.impact is not None and polar:
            raise ValueError("give either impact or azimuth_deg+range_km, not both")
        if self.impact is None and (self.azimuth_deg is None or self.range_km is None):
            raise ValueError("give impact, or both azimuth_deg and range_km")
        return self

    def request(self) -> FlightRequest:
        return FlightRequest(
            site_lat_deg=self.site[0],
            site_lon_deg=self.site[1],
            missile_class=self.missile_class,
            profile=self.profile,
            range_m=None if self.range_km is None else self.range_km * 1e3,
            azimuth_deg=self.azimuth_deg,
            impact_lat_deg=None if self.impact is None else self.impact[0],
            impact_lon_deg=None if self.impact is None else self.impact[1],
            apogee_m=None if self.apogee_km is None else self.apogee_km * 1e3,
        )


class Scenario(_Strict):
    """A whole scenario file."""

    name: LaunchId
    description: str = ""
    seed: int = Field(ge=0)
    duration_s: float = Field(gt=0.0, le=86_400.0)
    start_time: AwareDatetime = Field(default=datetime(2024, 1, 1, tzinfo=UTC))
    exercise: bool = False
    prediction_interval_s: float = Field(default=10.0, gt=0.0, le=600.0)
    sensors: list[str] | Literal["all"] = "all"
    sensor_overrides: dict[str, dict[str, Any]] = Field(default_factory=dict)
    launches: list[LaunchSpec] = Field(alias="launch", min_length=1)

    @field_validator("start_time")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return value.astimezone(UTC)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        ids = [launch.id for launch in self.launches]
        if len(set(ids)) != len(ids):
            raise ValueError("launch ids must be unique")
        late = [launch.id for launch in self.launches if launch.offset_s >= self.duration_s]
        if late:
            raise ValueError(f"launches at or after duration_s: {late}")
        return self

    def sensor_specs(self, catalog: Catalog) -> list[SensorSpec]:
        """The active sensors with their overrides applied (validated like the catalog)."""
        ids = list(catalog.ids) if self.sensors == "all" else list(self.sensors)
        specs = []
        for i, sensor_id in enumerate(ids):
            try:
                spec = catalog.get(sensor_id)
            except KeyError:
                raise ScenarioError(
                    "invalid_scenario",
                    f"sensors[{i}]: unknown sensor {sensor_id!r} (known: {', '.join(catalog.ids)})",
                ) from None
            override = self.sensor_overrides.get(sensor_id)
            if override:
                try:
                    spec = SensorSpec.model_validate(spec.model_dump() | override)
                except ValidationError as exc:
                    detail = format_validation_error(exc, f"sensor_overrides.{sensor_id}")
                    raise ScenarioError("invalid_scenario", detail) from None
            specs.append(spec)
        unknown = set(self.sensor_overrides) - set(ids)
        if unknown:
            raise ScenarioError("invalid_scenario", f"sensor_overrides: not active sensors {sorted(unknown)}")
        return specs


def parse_scenario(document: dict[str, Any], origin: str = "<scenario>") -> Scenario:
    """Validate a parsed scenario document."""
    try:
        return Scenario.model_validate(document)
    except ValidationError as exc:
        raise ScenarioError("invalid_scenario", f"{origin}: {format_validation_error(exc)}") from None


def load_scenario(path: Path | str) -> Scenario:
    """Read a scenario file; a bare name (``salvo``) means a shipped scenario."""
    candidate = Path(path)
    if not candidate.exists() and not candidate.suffix:
        candidate = SCENARIO_DIR / f"{candidate.name}.toml"
    document = read_toml(candidate, ScenarioError, missing="missing_scenario", invalid="invalid_scenario")
    return parse_scenario(document, str(candidate))


def shipped_scenarios() -> list[Path]:
    return sorted(SCENARIO_DIR.glob("*.toml"))


@dataclass(frozen=True, slots=True)
class ScheduledEvent:
    """A contract event and when (seconds after scenario start) the sensor emits it."""

    emit_offset_s: float
    event: WarningEvent

    @property
    def measured_offset_s(self) -> float:
        return (
            self.emit_offset_s
            - (self.event.header.emitted_at - self.event.header.measured_at).total_seconds()
        )


def correlation_key(scenario: Scenario, launch: LaunchSpec) -> str:
    """The key every event about one missile shares (across sensors and allies)."""
    return f"TRK-{scenario.name}-{launch.id}"


def solve_flights(scenario: Scenario) -> dict[str, Flight]:
    """Fly every launch; a failure names the launch (``launch[3] (id=L4)``) and the parameter."""
    flights = {}
    for i, launch in enumerate(scenario.launches):
        try:
            flights[launch.id] = fly(launch.request())
        except TrajectoryError as exc:
            raise TrajectoryError(exc.reason, f"launch[{i}] (id={launch.id}): {exc.message}") from None
    return flights


def simulate(
    scenario: Scenario,
    *,
    catalog: Catalog | None = None,
    areas: AreaMap | None = None,
    policy: SharingPolicy | None = None,
) -> Iterator[ScheduledEvent]:
    """Every event of the scenario, in emit-time order (ties: sensor id, then key, then order):
    the sensors' own events, and each nation's fused tracks and alerts
    (:mod:`producers.national`).

    Pure and deterministic: randomness comes from generators seeded with the scenario seed and
    the names of the sensor and launch, so adding a sensor does not change another's events.
    Flights are solved up front (a failure raises before anything is yielded); events are then
    produced lazily.
    """
    catalog = catalog or default_catalog()
    areas = areas or default_areas()
    policy = policy or default_policy()
    specs = scenario.sensor_specs(catalog)
    flights = solve_flights(scenario)
    ctx = SimContext(
        start_time=scenario.start_time,
        areas=areas,
        exercise=scenario.exercise,
        prediction_interval_s=scenario.prediction_interval_s,
    )
    streams: list[Iterable[Draft]] = []
    for spec in specs:
        model = SensorModel(spec)
        clock = random.Random(f"{scenario.seed}:clock:{spec.id}")
        phase = clock.uniform(0.0, spec.update_interval_s)
        streams.append(
            model.status_drafts(scenario.duration_s, random.Random(f"{scenario.seed}:status:{spec.id}"), ctx)
        )
        for launch in scenario.launches:
            streams.append(
                _until(
                    model.track_drafts(
                        flights[launch.id],
                        launch_offset_s=launch.offset_s,
                        correlation_key=correlation_key(scenario, launch),
                        rng=random.Random(f"{scenario.seed}:track:{spec.id}:{launch.id}"),
                        ctx=ctx,
                        scan_phase_s=phase,
                    ),
                    scenario.duration_s,
                )
            )
    merged = heapq.merge(*streams, key=lambda d: (d.emit_offset_s, d.sensor.id, d.correlation_key, d.order))
    setup = NationalSetup(
        start_time=scenario.start_time,
        duration_s=scenario.duration_s,
        seed=scenario.seed,
        exercise=scenario.exercise,
        prediction_interval_s=scenario.prediction_interval_s,
        areas=areas,
        policy=policy,
    )
    sequences: dict[str, int] = {}
    for draft in with_national_products(merged, setup):
        # a sensor's event, or a product of a nation's fusion cell or alert authority
        source, nation = (
            (draft.sensor.id, draft.sensor.nation)
            if isinstance(draft, Draft)
            else (draft.source_id, draft.nation)
        )
        seq = sequences.get(source, 0)
        sequences[source] = seq + 1
        header = EventHeader(
            event_id=draft.event_id,
            correlation_key=draft.correlation_key,
            sensor_id=source,
            sensor_nation=nation,
            releasable_to=policy.releasable_to(nation, draft.payload.KIND),
            sequence=seq,
            measured_at=ctx.at(draft.measured_offset_s),
            emitted_at=ctx.at(draft.emit_offset_s),
            simulated=True,
            exercise=scenario.exercise,
        )
        yield ScheduledEvent(draft.emit_offset_s, WarningEvent(header=header, payload=draft.payload))


def _until(drafts: Iterator[Draft], duration_s: float) -> Iterator[Draft]:
    for draft in drafts:
        if draft.emit_offset_s > duration_s:
            return
        yield draft


def scenario_flights_summary(scenario: Scenario) -> list[dict[str, object]]:
    """Per-launch flight summaries (for CLIs and reports)."""
    flights = solve_flights(scenario)
    out = []
    for launch in scenario.launches:
        summary = flights[launch.id].summary()
        summary["id"] = launch.id
        summary["offset_s"] = launch.offset_s
        out.append(summary)
    return out
