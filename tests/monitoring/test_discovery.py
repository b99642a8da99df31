"""file_sd target files: what services write on start and remove on stop."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trilink.errors import ConfigError
from trilink.monitoring.discovery import (
    ALLY_JOB,
    SENSORS_JOB,
    announce,
    announced,
    announced_targets,
    targets_dir,
    withdraw,
)
from trilink.settings import Settings

pytestmark = [pytest.mark.unit, pytest.mark.monitoring]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(state_dir=tmp_path, bootstrap=None)


def test_announce_writes_a_file_sd_group(settings: Settings) -> None:
    path = announce(ALLY_JOB, "JP-0", 18001, {"ally": "JP"}, settings=settings)
    assert path == settings.state_dir / "prometheus" / "targets" / "trilink-ally-JP-0.json"
    assert json.loads(path.read_text()) == [
        {
            "targets": ["127.0.0.1:18001"],
            "labels": {"job": "trilink-ally", "instance": "JP-0", "ally": "JP"},
        }
    ]
    # no temporary file left next to it (Prometheus globs *.json; nothing else belongs there)
    assert [p.name for p in targets_dir(settings).iterdir()] == ["trilink-ally-JP-0.json"]


def test_announce_again_replaces_and_withdraw_removes(settings: Settings) -> None:
    announce(SENSORS_JOB, "sim", 18002, settings=settings)
    path = announce(SENSORS_JOB, "sim", 18003, settings=settings)
    assert json.loads(path.read_text())[0]["targets"] == ["127.0.0.1:18003"]
    assert withdraw(SENSORS_JOB, "sim", settings=settings) is True
    assert not path.exists()
    assert withdraw(SENSORS_JOB, "sim", settings=settings) is False


def test_target_uses_the_settings_host(tmp_path: Path) -> None:
    s = Settings(state_dir=tmp_path, bootstrap=None, host="127.0.0.2")
    path = announce(ALLY_JOB, "US-0", 18004, {"ally": "US"}, settings=s)
    assert json.loads(path.read_text())[0]["targets"] == ["127.0.0.2:18004"]


def test_announced_context_withdraws_on_error(settings: Settings) -> None:
    seen: list[int] = []

    def crashing_service() -> None:
        with announced(ALLY_JOB, "KR-0", 18005, {"ally": "KR"}, settings=settings):
            seen.append(len(announced_targets(settings)))
            raise RuntimeError("service crashed")

    with pytest.raises(RuntimeError):
        crashing_service()
    assert seen == [1]
    assert announced_targets(settings) == []


@pytest.mark.parametrize(
    ("target", "labels", "reason"),
    [
        (("trilink ally", "US-0", 1), None, "invalid_target_name"),
        (("trilink-ally", "../escape", 1), None, "invalid_target_name"),
        (("trilink-ally", "US-0", 0), None, "invalid_port"),
        (("trilink-ally", "US-0", 70000), None, "invalid_port"),
        (("trilink-ally", "US-0", 1), {"__address__": "x"}, "invalid_label"),
        (("trilink-ally", "US-0", 1), {"job": "other"}, "invalid_label"),
        (("trilink-ally", "US-0", 1), {"bad-name": "x"}, "invalid_label"),
    ],
)
def test_bad_announcements_are_typed_errors(
    settings: Settings,
    target: tuple[str, str, int],
    labels: dict[str, str] | None,
    reason: str,
) -> None:
    job, instance, port = target
    with pytest.raises(ConfigError) as info:
        announce(job, instance, port, labels, settings=settings)
    assert info.value.reason == reason
    assert not targets_dir(settings).exists() or list(targets_dir(settings).iterdir()) == []
