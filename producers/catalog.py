"""The producing side's catalogs: public sensor sites and types (``data/sensors.toml``) and the
missile classes with the atmosphere their flights cross (``data/missile_classes.toml``).

Each figure must either cite a public source or be listed as an assumption; the loaders refuse
anything else, so the files cannot quietly grow unsourced numbers. Errors name the field path
(``sensor[3].noise_sigma_m``, ``class[1].burn_time_s``) so a broken file is fixed in one look.
"""

from __future__ import annotations

import enum
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from producers.errors import CatalogError
from schemas.models import Nation
from trilink.resources import package_path
from trilink.tomlfile import read_toml

DATA_DIR = package_path("producers", "data")
SENSORS_FILE = DATA_DIR / "sensors.toml"
MISSILE_CLASSES_FILE = DATA_DIR / "missile_classes.toml"

Id = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9.-]*$")]


class MissileClass(enum.StrEnum):
    """Range classes of ballistic missiles (what a missile is, not a limit on a flight)."""

    SRBM = "SRBM"
    MRBM = "MRBM"
    IRBM = "IRBM"
    ICBM = "ICBM"


class SensorKind(enum.StrEnum):
    RADAR = "radar"
    SPACE_IR = "space_ir"


#: Figures that must each be cited (``sources``) or declared an assumption.
FIGURES: tuple[str, ...] = (
    "lat_deg",
    "lon_deg",
    "alt_m",
    "max_range_m",
    "min_elevation_deg",
    "sector_center_deg",
    "sector_width_deg",
    "update_interval_s",
    "noise_sigma_m",
    "detection_delay_s",
    "processing_delay_s",
)


def _check_provenance(figures: set[str], sources: dict[str, str], assumptions: list[str]) -> None:
    """Every figure cited in ``sources`` or named in ``assumptions``, never both, nothing else."""
    cited, assumed = set(sources), set(assumptions)
    unknown = (cited | assumed) - figures
    if unknown:
        raise ValueError(f"sources/assumptions name unknown fields: {sorted(unknown)}")
    both = cited & assumed
    if both:
        raise ValueError(f"fields both cited and assumed: {sorted(both)}")
    missing = figures - cited - assumed
    if missing:
        raise ValueError(f"fields neither cited in sources nor listed in assumptions: {sorted(missing)}")


class SensorSpec(BaseModel):
    """One sensor: where it is, what it can see, how often and how well it reports."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    id: Id
    name: str = Field(min_length=1, max_length=120)
    kind: SensorKind
    nation: Nation
    lat_deg: float = Field(ge=-90.0, le=90.0)
    lon_deg: float = Field(ge=-180.0, le=180.0)
    alt_m: float = Field(ge=-100.0, le=50_000_000.0)
    max_range_m: float = Field(gt=0.0)
    min_elevation_deg: float = Field(ge=-5.0, le=89.0)
    sector_center_deg: float = Field(ge=0.0, lt=360.0)
    sector_width_deg: float = Field(gt=0.0, le=360.0)
    update_interval_s: float = Field(gt=0.0, le=600.0)
    noise_sigma_m: float = Field(ge=0.0)
    detection_delay_s: float = Field(ge=0.0, le=600.0)
    processing_delay_s: float = Field(ge=0.0, le=600.0)
    status_interval_s: float = Field(default=60.0, gt=0.0, le=3600.0)
    #: Space IR only: the plume must be above this altitude (clouds) to be seen.
    min_target_alt_m: float = Field(default=0.0, ge=0.0)
    #: Space IR only: 1-sigma angular noise of a line-of-sight measurement, per axis, microradians.
    #: A space IR sensor measures directions only, so its ``noise_sigma_m`` (a range-sensor figure)
    #: must be 0.
    los_sigma_urad: float = Field(default=0.0, ge=0.0, le=10_000.0)
    sources: dict[str, str] = Field(default_factory=dict)
    assumptions: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _every_figure_cited_or_assumed(self) -> Self:
        figures = set(FIGURES) | ({"min_target_alt_m"} if self.min_target_alt_m else set())
        if self.kind is SensorKind.SPACE_IR:
            if self.los_sigma_urad <= 0.0 or self.noise_sigma_m != 0.0:
                raise ValueError(
                    "a space_ir sensor measures lines of sight: give los_sigma_urad > 0 and noise_sigma_m = 0"
                )
            figures = (figures - {"noise_sigma_m"}) | {"los_sigma_urad"}
        elif self.los_sigma_urad:
            raise ValueError("los_sigma_urad applies to space_ir sensors only")
        _check_provenance(figures, self.sources, self.assumptions)
        return self


class Catalog(BaseModel):
    """Every sensor of the model, by id."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sensors: tuple[SensorSpec, ...]

    @model_validator(mode="after")
    def _unique_ids(self) -> Self:
        ids = [s.id for s in self.sensors]
        if len(set(ids)) != len(ids):
            raise ValueError("sensor ids must be unique")
        return self

    def get(self, sensor_id: str) -> SensorSpec:
        for spec in self.sensors:
            if spec.id == sensor_id:
                return spec
        raise KeyError(sensor_id)

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(s.id for s in self.sensors)


def format_validation_error(exc: ValidationError, root: str = "") -> str:
    """One line per problem, each led by its field path (``sensor[3].noise_sigma_m``)."""
    lines = []
    for err in exc.errors():
        path = root
        for part in err["loc"]:
            path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
        lines.append(f"{path or '<root>'}: {err['msg']}")
    return "; ".join(lines)


def parse_catalog(document: dict[str, Any], origin: str = "sensors.toml") -> Catalog:
    """Validate a parsed sensors document (``[defaults]`` + ``[[sensor]]``)."""
    defaults = document.get("defaults", {})
    raw = document.get("sensor", [])
    if not isinstance(defaults, dict) or not isinstance(raw, list):
        raise CatalogError("invalid_catalog", f"{origin}: expected [defaults] and [[sensor]]")
    extra = set(document) - {"defaults", "sensor"}
    if extra:
        raise CatalogError("invalid_catalog", f"{origin}: unknown top-level keys {sorted(extra)}")
    merged = [{**defaults, **item} if isinstance(item, dict) else item for item in raw]
    try:
        return Catalog.model_validate({"sensors": merged})
    except ValidationError as exc:
        detail = format_validation_error(exc).replace("sensors[", "sensor[")
        raise CatalogError("invalid_catalog", f"{origin}: {detail}") from None


def load_catalog(path: Path = SENSORS_FILE) -> Catalog:
    """Read and validate a sensors file."""
    document = read_toml(path, CatalogError, missing="missing_catalog", invalid="invalid_catalog")
    return parse_catalog(document, str(path))


@lru_cache(maxsize=1)
def default_catalog() -> Catalog:
    """The shipped catalog (read once)."""
    return load_catalog()


# --------------------------------------------------------------------------- missile classes


class AtmosphereSpec(BaseModel):
    """An exponential atmosphere ``rho = rho0 exp(-h / H)``, co-rotating with the Earth, cut off at
    ``top_m`` (no drag above)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    sea_level_density_kg_m3: float = Field(gt=0.0, le=10.0)
    scale_height_m: float = Field(gt=1_000.0, le=20_000.0)
    top_m: float = Field(gt=20_000.0, le=500_000.0)
    sources: dict[str, str] = Field(default_factory=dict)
    assumptions: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _every_figure_cited_or_assumed(self) -> Self:
        _check_provenance(
            {"sea_level_density_kg_m3", "scale_height_m", "top_m"}, self.sources, self.assumptions
        )
        return self


#: Figures of a missile class that must each be cited or declared an assumption.
CLASS_FIGURES: tuple[str, ...] = (
    "reach_m",
    "burn_time_s",
    "boost_ballistic_coefficient_kg_m2",
    "ballistic_coefficient_kg_m2",
    "lift_to_drag",
    "pull_up_end_speed_m_s",
)


class MissileClassSpec(BaseModel):
    """One range class: its public reach estimate (for warnings and class inference, never a
    limit), its boost, and the aerodynamics of what flies after burnout."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    name: MissileClass
    reach_m: float = Field(gt=0.0, le=40_030_000.0)
    burn_time_s: float = Field(gt=1.0, le=1_000.0)
    #: Mass over drag area (m / (Cd A)) of the whole missile in powered flight, kg/m^2.
    boost_ballistic_coefficient_kg_m2: float = Field(gt=0.0)
    #: Mass over drag area of what flies after burnout (re-entry vehicle or whole body), kg/m^2.
    ballistic_coefficient_kg_m2: float = Field(gt=0.0)
    #: Lift over drag after apogee on a depressed (pull-up) flight; 0 for a ballistic body.
    lift_to_drag: float = Field(ge=0.0, le=5.0)
    #: A pull-up's lift ends (and its ballistic dive begins) once the body is this slow, m/s.
    pull_up_end_speed_m_s: float = Field(ge=0.0, le=10_000.0)
    sources: dict[str, str] = Field(default_factory=dict)
    assumptions: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _every_figure_cited_or_assumed(self) -> Self:
        _check_provenance(set(CLASS_FIGURES), self.sources, self.assumptions)
        return self


class PredictorSpec(BaseModel):
    """What an impact predictor assumes about an object it knows only from a track."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    ballistic_coefficient_kg_m2: float = Field(gt=0.0)
    sources: dict[str, str] = Field(default_factory=dict)
    assumptions: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _every_figure_cited_or_assumed(self) -> Self:
        _check_provenance({"ballistic_coefficient_kg_m2"}, self.sources, self.assumptions)
        return self


class MissileClasses(BaseModel):
    """Every missile class of the model (each exactly once, in increasing reach) and the
    atmosphere."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    atmosphere: AtmosphereSpec
    predictor: PredictorSpec
    classes: tuple[MissileClassSpec, ...]

    @model_validator(mode="after")
    def _each_class_once_by_reach(self) -> Self:
        if [c.name for c in self.classes] != list(MissileClass):
            raise ValueError(f"give each class exactly once, in the order {[c.value for c in MissileClass]}")
        reaches = [c.reach_m for c in self.classes]
        if reaches != sorted(reaches) or len(set(reaches)) != len(reaches):
            raise ValueError("reach_m must increase from class to class")
        return self

    def get(self, name: MissileClass) -> MissileClassSpec:
        for spec in self.classes:
            if spec.name is name:
                return spec
        raise KeyError(name)


def parse_missile_classes(document: dict[str, Any], origin: str = "missile_classes.toml") -> MissileClasses:
    """Validate a parsed missile-classes document (``[atmosphere]``, ``[predictor]``, ``[[class]]``)."""
    extra = set(document) - {"atmosphere", "predictor", "class"}
    if extra:
        raise CatalogError("invalid_catalog", f"{origin}: unknown top-level keys {sorted(extra)}")
    try:
        return MissileClasses.model_validate(
            {
                "atmosphere": document.get("atmosphere"),
                "predictor": document.get("predictor"),
                "classes": document.get("class"),
            }
        )
    except ValidationError as exc:
        detail = format_validation_error(exc).replace("classes[", "class[")
        raise CatalogError("invalid_catalog", f"{origin}: {detail}") from None


def load_missile_classes(path: Path = MISSILE_CLASSES_FILE) -> MissileClasses:
    """Read and validate a missile-classes file."""
    document = read_toml(path, CatalogError, missing="missing_catalog", invalid="invalid_catalog")
    return parse_missile_classes(document, str(path))


@lru_cache(maxsize=1)
def default_missile_classes() -> MissileClasses:
    """The shipped missile classes (read once)."""
    return load_missile_classes()
