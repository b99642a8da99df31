"""The simulation cache: the same events as simulating, a new key for any change, and a damaged
or foreign file never used."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from producers import simulation_cache
from producers.scenario import ScheduledEvent, load_scenario, simulate
from producers.simulation_cache import KEEP_FILES, simulate_cached, simulation_key
from trilink.policy import default_policy
from trilink.settings import Settings

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def simulated() -> list[ScheduledEvent]:
    return list(simulate(load_scenario("single_srbm")))


def _same(a: list[ScheduledEvent], b: list[ScheduledEvent]) -> None:
    assert [e.emit_offset_s for e in a] == [e.emit_offset_s for e in b]
    assert [e.event for e in a] == [e.event for e in b]


def test_a_second_simulation_is_read_from_the_cache_and_equals_the_simulation(
    tmp_path: Path, simulated: list[ScheduledEvent]
) -> None:
    scenario = load_scenario("single_srbm")
    first = simulate_cached(scenario, tmp_path)
    assert not first.hit and first.path is not None and first.path.exists()
    second = simulate_cached(scenario, tmp_path)
    assert second.hit and second.path == first.path
    _same(first.events, simulated)
    _same(second.events, simulated)


def test_no_cache_dir_simulates_and_keeps_nothing(tmp_path: Path, simulated: list[ScheduledEvent]) -> None:
    result = simulate_cached(load_scenario("single_srbm"), None)
    assert not result.hit and result.path is None
    _same(result.events, simulated)


def test_the_key_changes_with_the_scenario_the_policy_and_the_simulator_s_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scenario = load_scenario("single_srbm")
    policy = default_policy()
    key = simulation_key(scenario, policy)
    assert simulation_key(load_scenario("single_srbm"), default_policy()) == key
    assert simulation_key(scenario.model_copy(update={"seed": scenario.seed + 1}), policy) != key
    assert simulation_key(scenario, policy.model_copy(update={"hub_relay": not policy.hub_relay})) != key

    files = {p.relative_to(p.parents[1]).as_posix() for p in simulation_cache._package_files()}
    for depended_on in (
        "producers/trajectory.py",
        "data/sensors.toml",
        "data/missile_classes.toml",
        "schemas/models.py",
        "trilink/policy.py",
    ):
        assert any(f.endswith(depended_on) for f in files), depended_on

    table = tmp_path / "sensors.toml"
    table.write_text("a = 1\n")
    monkeypatch.setattr(simulation_cache, "_package_files", lambda: iter([table]))
    before = simulation_key(scenario, policy)
    table.write_text("a = 2\n")
    assert simulation_key(scenario, policy) != before


@pytest.mark.parametrize(
    "damage",
    ["truncated", "garbage", "empty", "another_key", "an_event_flipped"],
)
def test_a_damaged_or_foreign_file_is_reported_and_simulated_again(
    tmp_path: Path, damage: str, simulated: list[ScheduledEvent], caplog: pytest.LogCaptureFixture
) -> None:
    scenario = load_scenario("single_srbm")
    path = simulate_cached(scenario, tmp_path).path
    assert path is not None
    data = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(data[: len(data) * 2 // 3])
    elif damage == "garbage":
        path.write_bytes(os.urandom(len(data)))
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "another_key":  # a whole file, of another simulation, under this name
        other = simulate_cached(scenario.model_copy(update={"seed": 7}), tmp_path).path
        assert other is not None
        path.write_bytes(other.read_bytes())
    else:  # one byte inside an event's body: it may well still decode, as another event
        middle = len(data) // 2
        path.write_bytes(data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :])
    with caplog.at_level(logging.WARNING, logger=simulation_cache.__name__):
        again = simulate_cached(scenario, tmp_path)
    assert not again.hit
    assert "not usable" in caplog.text
    if damage == "an_event_flipped":  # the case only the rows' digest catches
        assert "digest differs" in caplog.text
    _same(again.events, simulated)
    assert simulate_cached(scenario, tmp_path).hit  # and stored whole again


def test_an_unwritable_cache_dir_only_costs_the_cache(
    tmp_path: Path, simulated: list[ScheduledEvent]
) -> None:
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the cache dir should be\n")
    result = simulate_cached(load_scenario("single_srbm"), blocked)
    assert not result.hit and result.path is None
    _same(result.events, simulated)


def test_the_cache_keeps_the_most_recently_used_files(tmp_path: Path) -> None:
    for i in range(KEEP_FILES + 3):
        (tmp_path / f"old-{i}.avro").write_bytes(b"")
        os.utime(tmp_path / f"old-{i}.avro", (1_000_000 + i, 1_000_000 + i))
    kept = simulate_cached(load_scenario("single_srbm"), tmp_path).path
    left = sorted(p.name for p in tmp_path.glob("*.avro"))
    assert kept is not None and kept.name in left
    assert len(left) == KEEP_FILES
    assert f"old-{KEEP_FILES + 2}.avro" in left and "old-0.avro" not in left


@pytest.mark.parametrize("off", ["", "off", "OFF"])
def test_the_cache_can_be_turned_off(off: str) -> None:
    assert Settings(simulation_cache_dir=off).simulation_cache_dir is None
