"""Fixtures of the monitoring tests: the promtool binary, free ports, and a real Prometheus
started by trilink's own code on a free loopback port in a temporary state directory."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from trilink.monitoring.prometheus import INSTALL_HINT, MonitoringSettings, start_prometheus, stop_prometheus
from trilink.platform.scratch import free_port_base
from trilink.settings import Settings


def free_port() -> int:
    return free_port_base(1)


@pytest.fixture(scope="session")
def promtool() -> str:
    """promtool's path. Missing is a failure, not a skip: CI installs it (.ci/run)."""
    found = shutil.which("promtool")
    if found is None:
        pytest.fail(f"promtool not found: {INSTALL_HINT}")
    return found


@pytest.fixture(scope="session")
def prometheus_binary() -> str:
    found = shutil.which("prometheus")
    if found is None:
        pytest.fail(f"prometheus not found: {INSTALL_HINT}")
    return found


def fast_monitoring(port: int) -> MonitoringSettings:
    """1 s scrape and evaluation intervals: the live tests wait for seconds, not minutes."""
    return MonitoringSettings(
        prometheus_port=port,
        prometheus_scrape_interval_s=1.0,
        prometheus_evaluation_interval_s=1.0,
        prometheus_ready_timeout_s=30.0,
    )


class RunningPrometheus:
    def __init__(self, url: str, settings: Settings, monitoring: MonitoringSettings) -> None:
        self.url = url
        self.settings = settings
        self.monitoring = monitoring


@pytest.fixture(scope="module")
def prometheus(
    prometheus_binary: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningPrometheus]:
    """A real Prometheus with the project's config and rules, 1 s intervals, private state dir."""
    state_dir: Path = tmp_path_factory.mktemp("monitoring")
    settings = Settings(state_dir=state_dir, bootstrap=None)
    monitoring = fast_monitoring(free_port())
    url = start_prometheus(settings, monitoring)
    try:
        yield RunningPrometheus(url, settings, monitoring)
    finally:
        stop_prometheus(settings, monitoring)
