"""Shared fixtures. Integration tests talk to a real Kafka broker: one per test session,
started by trilink's own cluster code on free loopback ports in a temporary state
directory, or the cluster named by ``TRILINK_BOOTSTRAP`` (then nothing is started)."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from trilink.platform.cluster import LocalCluster
from trilink.platform.connection import apply_declared_topics
from trilink.settings import Settings

KIND_MARKERS = ("unit", "integration")

# The headless-Chromium fixture ``browser`` (tests/browser.py), available to every test.
pytest_plugins = ("tests.browser",)


@pytest.hookimpl(tryfirst=True)  # before ``-m`` deselects anything: `make unit` checks every test too
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test carries exactly one of the markers ``unit`` and ``integration``: an unmarked
    test would run in neither `make unit` nor `make integration`."""
    wrong = []
    for item in items:
        kinds = [name for name in KIND_MARKERS if item.get_closest_marker(name) is not None]
        if len(kinds) != 1:
            wrong.append(f"{item.nodeid} ({' and '.join(kinds) or 'no marker'})")
    if wrong:
        raise pytest.UsageError(
            f"{len(wrong)} test(s) need exactly one of @pytest.mark.unit (pure logic, starts no process) "
            "or @pytest.mark.integration (starts a process or server, or needs Kafka/Prometheus): "
            + ", ".join(wrong)
        )


def free_port_base(count: int) -> int:
    """A base port such that ``count`` consecutive loopback ports are free right now."""
    for _ in range(200):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = int(probe.getsockname()[1])
        if base + count > 65000:
            continue
        socks = []
        try:
            for port in range(base, base + count):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no block of free loopback ports found")


def local_settings(state_dir: Path, brokers: int = 1) -> Settings:
    """Settings for a private cluster of the tests (own ports, own state, no external bootstrap)."""
    return Settings(state_dir=state_dir, kafka_port_base=free_port_base(2 * brokers), bootstrap=None)


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """host:port of a real broker with trilink's topics applied."""
    external = os.environ.get("TRILINK_BOOTSTRAP")
    if external:
        apply_declared_topics(external)
        yield external
        return
    settings = local_settings(tmp_path_factory.mktemp("kafka"))
    cluster = LocalCluster(settings)
    state, _ = cluster.up(brokers=1)
    try:
        apply_declared_topics(state.bootstrap, 1, settings)
        yield state.bootstrap
    finally:
        cluster.down(purge=True)
