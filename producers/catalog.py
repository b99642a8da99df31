"""The sensor catalog: public sensor sites and types, loaded from ``data/sensors.toml``.

Each figure of a sensor must either cite a public source or be listed as an assumption; the
loader refuses anything else, so the file cannot quietly grow unsourced numbers. Errors name
the field path (``sensor[3].noise_sigma_m``) so a broken file is fixed in one look.
"""

from __future__ import annotations

import enum
import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from producers.errors import CatalogError
from schemas.models import Nation

DATA_DIR = Path(__file__).resolve().parent / "data"
SENSORS_FILE = DATA_DIR / "sensors.toml"

Id = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9.-]*$")]


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
    sources: dict[str, str] = Field(default_factory=dict)
    assumptions: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _every_figure_cited_or_assumed(self) -> Self:
        figures = set(FIGURES) | ({"min_target_alt_m"} if self.min_target_alt_m else set())
        cited, assumed = set(self.sources), set(self.assumptions)
        unknown = (cited | assumed) - figures
        if unknown:
            raise ValueError(f"sources/assumptions name unknown fields: {sorted(unknown)}")
        both = cited & assumed
        if both:
            raise ValueError(f"fields both cited and assumed: {sorted(both)}")
        missing = figures - cited - assumed
        if missing:
            raise ValueError(f"fields neither cited in sources nor listed in assumptions: {sorted(missing)}")
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
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CatalogError("missing_catalog", f"{path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise CatalogError("invalid_catalog", f"{path}: not TOML: {exc}") from None
    return parse_catalog(document, str(path))


@lru_cache(maxsize=1)
def default_catalog() -> Catalog:
    """The shipped catalog (read once)."""
    return load_catalog()
