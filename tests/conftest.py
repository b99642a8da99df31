"""Shared fixtures. Integration tests talk to a real Kafka broker: one per test session,
started by trilink's own cluster code on free loopback ports in a temporary state
directory, or the cluster named by ``TRILINK_BOOTSTRAP`` (then nothing is started)."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from trilink.platform.connection import apply_declared_topics
from trilink.platform.scratch import scratch_cluster
from trilink.platform.scratch import scratch_settings as local_settings
from trilink.processes import thread_ids
from trilink.settings import get_settings

__all__ = ["local_settings", "thread_cpus"]


def thread_cpus(pid: int) -> dict[int, set[int]]:
    """The CPUs each live thread of ``pid`` may run on (a thread that ends meanwhile is left out)."""
    found = {}
    for tid in thread_ids(pid):
        try:
            found[tid] = os.sched_getaffinity(tid)
        except (ProcessLookupError, FileNotFoundError):
            continue
    return found


KIND_MARKERS = ("unit", "integration")

# The hub topology is trilink's default; tests that produce to the shared warning topics and
# start ally services themselves run in the direct topology unless they choose otherwise (the
# hub's own tests, tests/consumers/test_hub*.py, set TRILINK_TOPOLOGY=hub or pass topology="hub").
os.environ.setdefault("TRILINK_TOPOLOGY", "direct")

# The scenarios the suite's runs and load tests simulate are cached for this session only (in a
# temporary directory, not the user's ~/.cache/trilink/simulations): a second run of a scenario
# reads it back, as it would for a user, and no test depends on what an earlier session left.
_SIMULATION_CACHE = tempfile.mkdtemp(prefix="trilink-test-simulations-")
os.environ.setdefault("TRILINK_SIMULATION_CACHE_DIR", _SIMULATION_CACHE)
atexit.register(shutil.rmtree, _SIMULATION_CACHE, True)

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


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """host:port of a real broker with trilink's topics applied."""
    external = os.environ.get("TRILINK_BOOTSTRAP")
    if external:
        apply_declared_topics(external)
        yield external
        return
    with scratch_cluster(tmp_path_factory.mktemp("kafka")) as (_, state):
        yield state.bootstrap


@pytest.fixture
def run_broker(kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Point ``trilink run`` (``run_pipeline``) at the session broker, with its state files under
    ``tmp_path``, once the broker's group coordinator answers (a run pins its groups first)."""
    from tests.kafka_support import wait_for_group_coordinator

    monkeypatch.setenv("TRILINK_BOOTSTRAP", kafka_bootstrap)
    monkeypatch.setenv("TRILINK_STATE_DIR", str(tmp_path / "state"))
    get_settings.cache_clear()
    wait_for_group_coordinator(kafka_bootstrap)
    yield kafka_bootstrap
    get_settings.cache_clear()
