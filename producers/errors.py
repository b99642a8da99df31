"""Typed errors of the producing side, each with a bounded ``reason`` code."""

from __future__ import annotations

from trilink.errors import ConfigError, SimulationError


class TrajectoryError(SimulationError):
    """A flight cannot be produced as requested (too low an apogee, out of reach, off the map)."""


class SensorModelError(SimulationError):
    """A sensor cannot be modelled as asked (unknown sensor, impossible geometry)."""


class CatalogError(ConfigError):
    """A data file of the producing side (sensors, areas, policy) is invalid."""


class ScenarioError(ConfigError):
    """A scenario file is missing or invalid; the message names the field path."""
