"""The layer order of ``[tool.importlinter]`` covers the whole project, and the vocabulary the
ally side reads from shared data stays equal to the producers' own reading of it."""

from __future__ import annotations

import tomllib
from pathlib import Path

import grimp
import pytest

from producers.catalog import default_catalog
from tests import REPO_ROOT
from trilink.errors import ConfigError
from trilink.roster import read_sensor_ids, sensor_ids

pytestmark = pytest.mark.unit

PACKAGES = ("trilink", "schemas", "producers", "consumers")
#: Packages whose modules sit in different layers; their ``__init__`` only re-exports.
SPLIT_PACKAGES = frozenset({"trilink", "trilink.platform", "trilink.monitoring"})


def layer_modules() -> list[str]:
    config = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (layers,) = [c for c in config["contracts"] if c["type"] == "layers"]
    named: list[str] = []
    for layer in layers["layers"]:
        named += [m.strip() for m in layer.replace("|", ":").split(":")]
    return named


def test_every_module_of_the_project_is_in_a_layer() -> None:
    graph = grimp.build_graph(*PACKAGES)
    named = layer_modules()
    assert len(named) == len(set(named))
    unplaced = sorted(
        module
        for module in graph.modules
        if module not in SPLIT_PACKAGES and not any(module == m or module.startswith(m + ".") for m in named)
    )
    assert unplaced == [], "add these modules to a layer in pyproject.toml [tool.importlinter]"


def test_every_layer_names_an_existing_module() -> None:
    graph = grimp.build_graph(*PACKAGES)
    assert [m for m in layer_modules() if m not in graph.modules] == []


def test_the_roster_is_the_catalogs_ids() -> None:
    assert sensor_ids() == default_catalog().ids
    assert len(sensor_ids()) > 0


def test_a_sensor_without_an_id_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "sensors.toml"
    path.write_text('[[sensor]]\nid = "us-a"\n[[sensor]]\nname = "no id"\n')
    with pytest.raises(ConfigError) as err:
        read_sensor_ids(path)
    assert err.value.reason == "invalid_catalog"
