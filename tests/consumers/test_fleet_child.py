"""The fleet's child side (consumers.fleet._run_child) in a real spawned process: the service
process is tuned as the settings say (GIL switch interval, collector) before it reports ready.
The service is a stand-in (no broker needed): what is under test is the process set-up."""

from __future__ import annotations

import gc
import sys
from typing import Any

import pytest

from consumers import fleet
from trilink.runtime import GC_YOUNG_THRESHOLD, tune_service
from trilink.settings import get_settings

pytestmark = pytest.mark.integration


class _StandIn:
    """Answers what _run_child asks of a service; its report is the process's tuning."""

    running = True
    http_port = None

    def start(self) -> None:
        pass

    def wait_ready(self, timeout_s: float) -> bool:
        return True

    def stop(self) -> None:
        self.running = False

    def report(self) -> dict[str, Any]:
        return {"switch_interval_s": sys.getswitchinterval(), "gc_threshold": gc.get_threshold()}


def _make() -> _StandIn:
    return _StandIn()


def _settled(service: Any) -> int:
    return 0


def test_a_service_process_runs_with_the_configured_switch_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRILINK_SERVICE_SWITCH_INTERVAL_MS", "37")
    parent, child = fleet._CONTEXT.Pipe()
    process = fleet._CONTEXT.Process(
        target=fleet._run_child, args=("test-child", _make, _settled, None, child)
    )
    process.start()
    try:
        assert parent.poll(60), "the child never said ready"
        assert parent.recv()[:2] == ("ready", True)
        parent.send("stop")
        assert parent.poll(30), "the child never reported"
        kind, report = parent.recv()
    finally:
        process.join(30)
        if process.is_alive():
            process.kill()
    assert kind == "report"
    assert report["switch_interval_s"] == pytest.approx(0.037)
    assert report["gc_threshold"][0] == GC_YOUNG_THRESHOLD
    assert process.exitcode == 0


def test_the_default_switch_interval_is_longer_than_cpythons(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRILINK_SERVICE_SWITCH_INTERVAL_MS", raising=False)
    get_settings.cache_clear()
    try:
        assert get_settings().service_switch_interval_ms > 5.0  # CPython's default
    finally:
        get_settings.cache_clear()


def test_tune_service_sets_the_interval_it_is_given() -> None:
    interval, thresholds = sys.getswitchinterval(), gc.get_threshold()
    try:
        tune_service(12.5)
        assert sys.getswitchinterval() == pytest.approx(0.0125)
        assert gc.get_threshold()[0] == GC_YOUNG_THRESHOLD
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
        sys.setswitchinterval(interval)
