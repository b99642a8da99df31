"""The missile-classes data file: it loads, every figure is cited or assumed, bad files fail
with the field path."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest

from producers.catalog import (
    MISSILE_CLASSES_FILE,
    MissileClass,
    default_missile_classes,
    parse_missile_classes,
)
from producers.errors import CatalogError
from producers.trajectory import air_density_kg_m3

pytestmark = pytest.mark.unit


def _document() -> dict[str, Any]:
    return tomllib.loads(MISSILE_CLASSES_FILE.read_text(encoding="utf-8"))


def test_shipped_classes_cover_every_class_in_increasing_reach() -> None:
    classes = default_missile_classes()
    assert [c.name for c in classes.classes] == list(MissileClass)
    # the ICBM reach is the public estimate after the Nov 2022 lofted flight, cited
    icbm = classes.get(MissileClass.ICBM)
    assert icbm.reach_m >= 15_000e3
    assert "reach_m" in icbm.sources
    # only the KN-23-type SRBM lifts
    assert [c.name for c in classes.classes if c.lift_to_drag > 0.0] == [MissileClass.SRBM]


def test_the_atmosphere_is_the_standard_sea_level_density_falling_exponentially() -> None:
    assert air_density_kg_m3(0.0) == pytest.approx(1.225)
    # U.S. Standard Atmosphere 1976: 1.027e-3 kg/m^3 at 50 km; the fit is within a quarter
    assert air_density_kg_m3(50e3) == pytest.approx(1.027e-3, rel=0.25)
    assert air_density_kg_m3(200e3) == 0.0  # above the top: no drag


def test_an_unsourced_figure_is_refused_with_its_path() -> None:
    doc = _document()
    doc["class"][1]["assumptions"].remove("burn_time_s")
    with pytest.raises(CatalogError) as info:
        parse_missile_classes(doc)
    assert "class[1]" in info.value.message
    assert "burn_time_s" in info.value.message


def test_an_out_of_range_value_is_refused_with_its_field_path() -> None:
    doc = _document()
    doc["class"][3]["ballistic_coefficient_kg_m2"] = -1.0
    with pytest.raises(CatalogError) as info:
        parse_missile_classes(doc)
    assert "class[3].ballistic_coefficient_kg_m2" in info.value.message


def test_the_atmosphere_figures_need_a_source_too() -> None:
    doc = _document()
    del doc["atmosphere"]["sources"]["scale_height_m"]
    with pytest.raises(CatalogError) as info:
        parse_missile_classes(doc)
    assert "atmosphere" in info.value.message
    assert "scale_height_m" in info.value.message


def test_classes_out_of_order_are_refused() -> None:
    doc = _document()
    doc["class"][0], doc["class"][1] = doc["class"][1], doc["class"][0]
    with pytest.raises(CatalogError) as info:
        parse_missile_classes(doc)
    assert "SRBM" in info.value.message
