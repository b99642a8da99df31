"""CPU placement of the pipeline's processes (trilink.runtime.cpu_for, pin_process, pinned)."""

from __future__ import annotations

import os
import threading

import pytest

from trilink.errors import ConfigError
from trilink.runtime import PINNED_ROLES, cpu_for, pinned

pytestmark = pytest.mark.unit


def test_two_cpus_are_dealt_out_in_role_order() -> None:
    placed = {role: cpu_for(role, "auto", cpus=[3, 5]) for role in PINNED_ROLES}
    # broker, run and JP on one CPU; hub, US and KR on the other (about a core each at the peak)
    assert placed == {"broker": 3, "hub": 5, "run": 3, "ally-US": 5, "ally-JP": 3, "ally-KR": 5}


def test_broker_nodes_take_the_next_cpus() -> None:
    assert [cpu_for("broker", "on", index=i, cpus=range(4)) for i in range(3)] == [0, 1, 2]


def test_auto_leaves_larger_machines_and_off_and_one_cpu_alone() -> None:
    assert cpu_for("hub", "auto", cpus=range(4)) == 1
    assert cpu_for("hub", "auto", cpus=range(8)) is None
    assert cpu_for("hub", "on", cpus=range(8)) == 1
    assert cpu_for("hub", "off", cpus=range(2)) is None
    assert cpu_for("hub", "on", cpus=[0]) is None


def test_an_unknown_role_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as caught:
        cpu_for("sensors", "on", cpus=range(2))
    assert caught.value.reason == "invalid_option"


def test_pinned_moves_every_thread_and_puts_them_back() -> None:
    before = os.sched_getaffinity(0)
    if len(before) < 2:
        pytest.skip("pinning needs 2 CPUs; this machine gives the process one")
    cpu = max(before)
    release = threading.Event()
    seen: dict[str, set[int]] = {}

    def worker() -> None:
        seen["inside"] = os.sched_getaffinity(0)
        release.wait(10)

    thread = threading.Thread(target=worker)
    with pinned(cpu):
        assert os.sched_getaffinity(0) == {cpu}
        thread.start()  # started inside: inherits the pinned mask
        while "inside" not in seen:
            release.wait(0.01)
    try:
        assert seen["inside"] == {cpu}
        assert os.sched_getaffinity(0) == before
        assert os.sched_getaffinity(thread.native_id or 0) == before  # put back, not only the caller
    finally:
        release.set()
        thread.join(10)


def test_pinned_none_changes_nothing() -> None:
    before = os.sched_getaffinity(0)
    with pinned(None):
        assert os.sched_getaffinity(0) == before
