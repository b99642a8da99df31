"""Starting, finding and stopping the local Prometheus; its errors; the CLI."""

from __future__ import annotations

import argparse
import socket
from pathlib import Path

import pytest

from tests.monitoring.conftest import RunningPrometheus, fast_monitoring, free_port
from trilink.monitoring import cli
from trilink.monitoring.api import PrometheusAPI, PrometheusUnreachableError, QueryError
from trilink.monitoring.prometheus import (
    MonitoringSettings,
    PrometheusError,
    PrometheusMissingError,
    prometheus_duration,
    start_prometheus,
    status,
    stop_prometheus,
)
from trilink.settings import Settings


@pytest.mark.unit
@pytest.mark.monitoring
@pytest.mark.parametrize(("seconds", "text"), [(2.0, "2s"), (0.5, "500ms"), (1.25, "1250ms"), (60, "60s")])
def test_durations(seconds: float, text: str) -> None:
    assert prometheus_duration(seconds) == text


@pytest.mark.unit
@pytest.mark.monitoring
def test_missing_binary_is_a_typed_error_with_the_install_hint(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path, bootstrap=None)
    monitoring = MonitoringSettings(prometheus_bin="trilink-no-such-prometheus", prometheus_port=free_port())
    with pytest.raises(PrometheusMissingError) as info:
        start_prometheus(settings, monitoring)
    assert info.value.reason == "prometheus_missing"
    assert "apt-get install prometheus" in str(info.value)
    assert not status(settings).running


@pytest.mark.unit
@pytest.mark.monitoring
def test_port_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRILINK_PROMETHEUS_PORT", "19123")
    assert MonitoringSettings().prometheus_port == 19123
    monkeypatch.delenv("TRILINK_PROMETHEUS_PORT")
    assert MonitoringSettings().prometheus_port == 9090


@pytest.mark.unit
@pytest.mark.monitoring
def test_unreachable_prometheus_is_a_typed_error() -> None:
    api = PrometheusAPI(f"http://127.0.0.1:{free_port()}", timeout_s=1)
    assert api.ready() is False
    with pytest.raises(PrometheusUnreachableError) as info:
        api.query("up")
    assert info.value.reason == "prometheus_unreachable"


@pytest.mark.unit
@pytest.mark.monitoring
def test_status_and_down_without_a_prometheus(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path, bootstrap=None)
    assert stop_prometheus(settings) is False
    assert status(settings).running is False


@pytest.mark.integration
@pytest.mark.monitoring
def test_start_is_idempotent_and_reports_ready(prometheus: RunningPrometheus) -> None:
    st = status(prometheus.settings)
    assert st.running and st.ready and st.state is not None
    assert st.state.url == prometheus.url
    assert (prometheus.settings.state_dir / "prometheus" / "data").is_dir()
    # a second start finds the running one
    assert start_prometheus(prometheus.settings, prometheus.monitoring) == prometheus.url
    # another port while it runs is refused, not silently ignored
    other = fast_monitoring(free_port())
    with pytest.raises(PrometheusError) as info:
        start_prometheus(prometheus.settings, other)
    assert info.value.reason == "prometheus_running"


@pytest.mark.integration
@pytest.mark.monitoring
def test_bad_query_is_http_400(prometheus: RunningPrometheus) -> None:
    api = PrometheusAPI(prometheus.url)
    with pytest.raises(QueryError) as info:
        api.query("sum by (ally (up)")
    assert info.value.status == 400
    assert info.value.reason == "promql_parse_error"
    assert api.query("vector(1)")[0]["value"][1] == "1"


@pytest.mark.integration
@pytest.mark.monitoring
def test_port_in_use_and_stop(prometheus_binary: str, tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path, bootstrap=None)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = int(squatter.getsockname()[1])
        with pytest.raises(PrometheusError) as info:
            start_prometheus(settings, fast_monitoring(taken))
        assert info.value.reason == "port_in_use"
    url = start_prometheus(settings, fast_monitoring(free_port()))
    assert PrometheusAPI(url).ready()
    assert stop_prometheus(settings) is True
    assert not status(settings).running
    assert not PrometheusAPI(url, timeout_s=1).ready()
    assert not (tmp_path / "prometheus" / "prometheus.json").exists()


@pytest.mark.integration
@pytest.mark.monitoring
def test_cli_status_lists_targets(
    prometheus: RunningPrometheus, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "get_settings", lambda: prometheus.settings)
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    args = parser.parse_args(["monitoring", "status"])
    assert args.handler(args) == 0
    out = capsys.readouterr().out
    assert f"Prometheus ready at {prometheus.url}" in out
    assert "alerts:" in out
