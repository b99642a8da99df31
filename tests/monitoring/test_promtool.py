"""promtool over the shipped config, rules, rule unit tests and a real /metrics exposition."""

from __future__ import annotations

import os
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import REPO_ROOT
from trilink.monitoring.contract import exposition_problems
from trilink.monitoring.names import FAMILIES, HUB_FAMILIES
from trilink.monitoring.prometheus import CONFIG_DIR, render_config
from trilink.monitoring.simulated import Endpoint, SimulatedRun

pytestmark = [pytest.mark.monitoring]


def run_promtool(promtool: str, *args: str, stdin: bytes | None = None) -> str:
    proc = subprocess.run([promtool, *args], input=stdin, capture_output=True, timeout=60, check=False)
    output = (proc.stdout + proc.stderr).decode(errors="replace")
    assert proc.returncode == 0, f"promtool {' '.join(args)} failed:\n{output}"
    return output


@pytest.mark.integration
def test_shipped_config_is_valid(promtool: str) -> None:
    out = run_promtool(promtool, "check", "config", str(CONFIG_DIR / "prometheus.yml"))
    assert "2 rule files found" in out


@pytest.mark.integration
def test_rendered_config_is_valid(promtool: str, tmp_path: Path) -> None:
    config = render_config(
        tmp_path, host="127.0.0.1", port=19999, scrape_interval_s=0.5, evaluation_interval_s=1.5
    )
    text = config.read_text()
    assert "scrape_interval: 500ms" in text
    assert "scrape_timeout: 500ms" in text
    assert "evaluation_interval: 1500ms" in text
    assert '"127.0.0.1:19999"' in text
    assert sorted(p.name for p in (tmp_path / "rules").iterdir()) == ["alerts.yml", "recording.yml"]
    run_promtool(promtool, "check", "config", str(config))


@pytest.mark.integration
def test_rules_are_valid(promtool: str) -> None:
    files = sorted(str(p) for p in (CONFIG_DIR / "rules").glob("*.yml"))
    assert files
    run_promtool(promtool, "check", "rules", *files)


@pytest.mark.integration
def test_rule_unit_tests_pass(promtool: str) -> None:
    files = sorted(str(p.relative_to(REPO_ROOT)) for p in (CONFIG_DIR / "tests").glob("*.yml"))
    assert len(files) >= 5
    # run from the repository root: the test files name their rule files relative to themselves
    proc = subprocess.run(
        [promtool, "test", "rules", *files], cwd=REPO_ROOT, capture_output=True, timeout=120, check=False
    )
    output = (proc.stdout + proc.stderr).decode(errors="replace")
    assert proc.returncode == 0, output
    assert output.count("SUCCESS") == len(files), output


@pytest.fixture
def simulated_endpoints() -> Iterator[dict[str, Endpoint]]:
    run = SimulatedRun(seed=7)
    run.run_events(3000, missiles=20)
    endpoints = {f"ally-{a}": Endpoint(s.registry) for a, s in run.allies.items()}
    endpoints["sensors"] = Endpoint(run.sensors.registry)
    endpoints["hub"] = Endpoint(run.hub.registry)
    try:
        yield endpoints
    finally:
        for endpoint in endpoints.values():
            endpoint.close()


@pytest.mark.integration
def test_exposition_passes_promtool_check_metrics(
    promtool: str, simulated_endpoints: dict[str, Endpoint]
) -> None:
    """The metric families of names.py, served over HTTP as a service serves them, lint clean
    and true to the contract. ``TRILINK_METRICS_URLS`` (space-separated ``kind=url`` pairs,
    kind ``ally``, ``producer`` or ``hub``) adds real service endpoints to the same checks."""
    kinds = {"sensors": "producer", "hub": "hub"}
    urls = [(kinds.get(name, "ally"), e.url) for name, e in simulated_endpoints.items()]
    for pair in os.environ.get("TRILINK_METRICS_URLS", "").split():
        kind, _, url = pair.partition("=")
        urls.append((kind, url))
    for kind, url in urls:
        with urllib.request.urlopen(url, timeout=5) as resp:
            body = resp.read()
        out = run_promtool(promtool, "check", "metrics", stdin=body)
        assert out.strip() == "", f"{url}: promtool check metrics complained:\n{out}"
        families = [f for f in FAMILIES + HUB_FAMILIES if f.exposed_by == kind]
        problems = exposition_problems(body.decode(), families)
        assert problems == [], f"{url} breaks the metric contract: {problems}"


@pytest.mark.unit
def test_contract_check_catches_a_renamed_or_relabelled_family() -> None:
    body = """# HELP trilink_ally_events_received_total x
# TYPE trilink_ally_events_received_total counter
trilink_ally_events_received_total{ally="US",event_kind="alert"} 1.0
# HELP trilink_ally_sse_subscribers x
# TYPE trilink_ally_sse_subscribers counter
trilink_ally_sse_subscribers_total{ally="US"} 1.0
"""
    wanted = [f for f in FAMILIES if f.name.startswith(("trilink_ally_events_", "trilink_ally_sse"))]
    problems = exposition_problems(body, wanted)
    assert "trilink_ally_events_delivered_total: not exposed" in problems
    assert any("trilink_ally_events_received_total: labels ['ally', 'event_kind']" in p for p in problems)
    assert any(p.startswith("trilink_ally_sse_subscribers: not exposed") for p in problems)
