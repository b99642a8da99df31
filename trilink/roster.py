"""The ids of the shipped sensors: the bounded set an ally service accepts as the ``sensor``
label of its metrics.

The ally side needs only the ids, not the producers' physical model of each sensor, so it
reads them here from the sensor catalogue file (``producers/data/sensors.toml``, the same
file :func:`producers.catalog.default_catalog` validates in full; a unit test keeps the two in
step) instead of importing the producing side.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from trilink.errors import ConfigError
from trilink.resources import package_path
from trilink.tomlfile import read_toml

__all__ = ["SENSORS_FILE", "read_sensor_ids", "sensor_ids"]

SENSORS_FILE = package_path("producers", "data", "sensors.toml")


def read_sensor_ids(path: Path = SENSORS_FILE) -> tuple[str, ...]:
    """The ``id`` of every ``[[sensor]]`` table of a sensors file, in file order."""
    document = read_toml(path, ConfigError, missing="missing_catalog", invalid="invalid_catalog")
    ids: list[str] = []
    for table in document.get("sensor", []):
        sensor_id = table.get("id") if isinstance(table, dict) else None
        if not isinstance(sensor_id, str) or not sensor_id:
            raise ConfigError("invalid_catalog", f"{path}: every [[sensor]] needs a string id")
        ids.append(sensor_id)
    return tuple(ids)


@lru_cache(maxsize=1)
def sensor_ids() -> tuple[str, ...]:
    """The shipped catalogue's sensor ids (read once)."""
    return read_sensor_ids()
