"""``trilink monitoring up|down|status``: the local Prometheus and what it scrapes."""

from __future__ import annotations

import argparse
from typing import Any

from trilink.monitoring.api import PrometheusAPI, PrometheusUnreachableError
from trilink.monitoring.discovery import announced_targets, targets_dir
from trilink.monitoring.prometheus import (
    MonitoringSettings,
    console_urls,
    start_prometheus,
    status,
    stop_prometheus,
)
from trilink.settings import get_settings


def register(subparsers: Any) -> None:
    monitoring = subparsers.add_parser(
        "monitoring", help="the local Prometheus that scrapes trilink's services (rules, alerts)"
    )
    actions = monitoring.add_subparsers(dest="monitoring_command", required=True, metavar="ACTION")

    up = actions.add_parser("up", help="start Prometheus on loopback with trilink's config and rules")
    up.add_argument(
        "--port", type=int, default=None, help="listen port (default TRILINK_PROMETHEUS_PORT or 9090)"
    )
    up.set_defaults(handler=_up)

    down = actions.add_parser("down", help="stop the local Prometheus (its data stays)")
    down.set_defaults(handler=_down)

    st = actions.add_parser("status", help="is Prometheus running, what does it scrape, what fires")
    st.set_defaults(handler=_status)


def _up(args: argparse.Namespace) -> int:
    settings = get_settings()
    url = start_prometheus(settings, MonitoringSettings(), port=args.port)
    print(f"Prometheus ready at {url}  (config, rules and data in {settings.state_dir / 'prometheus'})")
    print(f"  services announce themselves in {targets_dir(settings)}")
    _print_consoles(url)
    return 0


def _print_consoles(url: str) -> None:
    """The console pages Prometheus renders from deploy/prometheus/consoles/."""
    urls = console_urls(url)
    print(f"  consoles: overview {urls.pop('overview')}")
    for ally, ally_url in urls.items():
        print(f"            {ally:8} {ally_url}")


def _down(args: argparse.Namespace) -> int:
    if stop_prometheus(get_settings(), MonitoringSettings()):
        print("Prometheus stopped")
    else:
        print("no local Prometheus was running")
    return 0


def _status(args: argparse.Namespace) -> int:
    settings = get_settings()
    st = status(settings)
    announced = announced_targets(settings)
    if not st.running or st.state is None:
        print(f"no local Prometheus running (state in {st.state_dir}); `trilink monitoring up` starts one")
        print(f"  {len(announced)} service target(s) announced in {targets_dir(settings)}")
        return 1
    word = "ready" if st.ready else "not ready"
    print(f"Prometheus {word} at {st.state.url} (pid {st.state.pid}), log {st.state.log_file}")
    _print_consoles(st.state.url)
    api = PrometheusAPI(st.state.url)
    try:
        targets = api.targets()
        alerts = api.alerts()
    except PrometheusUnreachableError as exc:
        print(f"  {exc}")
        return 1
    for target in sorted(
        targets, key=lambda t: (t["labels"].get("job", ""), t["labels"].get("instance", ""))
    ):
        labels = target["labels"]
        extra = ",".join(f"{k}={v}" for k, v in sorted(labels.items()) if k not in ("job", "instance"))
        error = f"  last error: {target['lastError']}" if target.get("lastError") else ""
        print(
            f"  target {labels.get('job')}/{labels.get('instance')} {target['scrapeUrl']} "
            f"{target['health']} {extra}{error}"
        )
    firing = [a for a in alerts if a.get("state") == "firing"]
    pending = [a for a in alerts if a.get("state") == "pending"]
    print(f"  alerts: {len(firing)} firing, {len(pending)} pending")
    for alert in firing + pending:
        labels = alert["labels"]
        where = ",".join(f"{k}={v}" for k, v in sorted(labels.items()) if k not in ("alertname", "severity"))
        print(f"    {alert['state']:8} {labels['alertname']} {where}")
    return 0 if st.ready else 1
