"""The metric contract: names follow Prometheus conventions, and every metric a rule,
rule test or dashboard refers to is one the services expose (or a recording rule makes)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests import REPO_ROOT
from trilink.latency import HOPS, LATENCY_BUCKETS_S, PIPELINE_P99_OBJECTIVE_S
from trilink.monitoring import names as n

pytestmark = [pytest.mark.unit, pytest.mark.monitoring]

PROM_DIR = REPO_ROOT / "deploy" / "prometheus"
RULE_FILES = sorted((PROM_DIR / "rules").glob("*.yml"))
RULE_TEST_FILES = sorted((PROM_DIR / "tests").glob("*.yml"))
DASHBOARDS = sorted((REPO_ROOT / "deploy" / "grafana" / "dashboards").glob("*.json"))

# Labels that would make the series count grow with the traffic.
UNBOUNDED_LABELS = {"event_id", "track_id", "correlation_id", "missile_id", "id", "key", "offset"}
# trilink_* names and level:metric:operations names of recording rules.
TRILINK_NAME = re.compile(r"\btrilink_[a-z0-9_]+\b")
RECORDED_NAME = re.compile(r"\b[a-z_]+:[a-z0-9_]+:[a-z0-9_]+\b")


def dashboard_queries() -> list[tuple[str, str, str]]:
    """(dashboard uid, panel title, expr) of every panel target and query variable."""
    found: list[tuple[str, str, str]] = []
    for path in DASHBOARDS:
        doc = json.loads(path.read_text())
        for panel in doc["panels"]:
            for target in panel.get("targets", []):
                found.append((doc["uid"], panel["title"], target["expr"]))
        for var in doc.get("templating", {}).get("list", []):
            if var.get("type") == "query":
                found.append((doc["uid"], f"variable {var['name']}", var["definition"]))
    return found


def referenced_names(text: str) -> set[str]:
    recorded = set(RECORDED_NAME.findall(text))
    # a recorded name contains the family name: take it out before looking for trilink_*
    rest = RECORDED_NAME.sub(" ", text)
    return recorded | set(TRILINK_NAME.findall(rest))


@pytest.mark.parametrize("family", n.FAMILIES, ids=lambda f: f.name)
def test_family_follows_prometheus_naming(family: n.MetricFamily) -> None:
    assert family.name.startswith("trilink_")
    assert (family.type == "counter") == family.name.endswith("_total")
    if family.type == "histogram":
        assert family.name.endswith("_seconds")
    assert not UNBOUNDED_LABELS & set(family.labels)
    assert family.help


def test_label_value_sets_match_the_project() -> None:
    assert n.ALLIES == ("US", "JP", "KR")
    assert set(n.ALLY_HOPS) <= set(HOPS)
    assert n.END_TO_END_HOP in n.ALLY_HOPS
    assert len(n.KINDS) == 6


def test_buckets_have_a_boundary_at_the_objective() -> None:
    assert n.BUCKETS_S == LATENCY_BUCKETS_S
    assert PIPELINE_P99_OBJECTIVE_S in n.BUCKETS_S
    assert list(n.BUCKETS_S) == sorted(n.BUCKETS_S)


@pytest.mark.parametrize("path", RULE_FILES + RULE_TEST_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_rules_and_rule_tests_use_only_known_names(path: Path) -> None:
    without_comments = re.sub(r"#.*$", "", path.read_text(), flags=re.MULTILINE)
    unknown = referenced_names(without_comments) - n.known_series_names()
    assert not unknown, f"{path.name} refers to metrics no trilink service exposes: {sorted(unknown)}"


def test_dashboards_use_only_known_names() -> None:
    known = n.known_series_names()
    for uid, title, expr in dashboard_queries():
        unknown = referenced_names(expr) - known
        assert not unknown, f"{uid} / {title}: unknown metric(s) {sorted(unknown)} in {expr}"


def test_recorded_series_and_alerts_match_the_rule_files() -> None:
    text = "\n".join(p.read_text() for p in RULE_FILES)
    records = re.findall(r"^\s*- record: (\S+)$", text, re.MULTILINE)
    alerts = re.findall(r"^\s*- alert: (\S+)$", text, re.MULTILINE)
    assert sorted(records) == sorted(n.RECORDED_SERIES)
    assert sorted(alerts) == sorted(n.ALERTS)
    assert len(set(records)) == len(records)
    assert len(set(alerts)) == len(alerts)


def test_every_rule_has_a_promtool_unit_test() -> None:
    tests_text = "\n".join(p.read_text() for p in RULE_TEST_FILES)
    expr_tests = set(re.findall(r"^\s*- expr: (\S+)", tests_text, re.MULTILINE))
    alert_tests = set(re.findall(r"^\s*- alertname: (\S+)$", tests_text, re.MULTILINE))
    assert set(n.RECORDED_SERIES) - expr_tests == set(), "recording rules without a promql_expr_test"
    assert set(n.ALERTS) - alert_tests == set(), "alerts without an alert_rule_test"
    # and each alert is tested firing at least once, not only silent
    for alert in n.ALERTS:
        block = re.search(
            rf"alertname: {alert}\n\s*eval_time: \S+\n\s*exp_alerts:\n\s*- exp_labels:", tests_text
        )
        assert block, f"{alert} is never tested firing"


def test_dashboards_have_fixed_uids_and_the_provisioned_datasource() -> None:
    docs = {json.loads(p.read_text())["uid"]: json.loads(p.read_text()) for p in DASHBOARDS}
    assert set(docs) == {"trilink-overview", "trilink-ally"}
    provisioning = (
        REPO_ROOT / "deploy" / "grafana" / "provisioning" / "datasources" / "trilink.yml"
    ).read_text()
    uid = re.search(r"^\s*uid: (\S+)", provisioning, re.MULTILINE)
    assert uid is not None
    for doc in docs.values():
        ids = [p["id"] for p in doc["panels"]]
        assert len(ids) == len(set(ids)), f"{doc['uid']}: panel ids repeat"
        for panel in doc["panels"]:
            if panel["type"] == "row":
                continue
            assert panel["datasource"]["uid"] == uid.group(1)
            assert panel["targets"], f"{doc['uid']} / {panel['title']} has no query"
            assert panel.get("description"), f"{doc['uid']} / {panel['title']} says nothing about itself"
    ally_vars = [v["name"] for v in docs["trilink-ally"]["templating"]["list"]]
    assert ally_vars == ["ally"]
    assert all(
        'ally="$ally"' in expr
        for uid_, _, expr in dashboard_queries()
        if uid_ == "trilink-ally" and "$" in expr
    )


def test_overview_shows_what_the_issue_asks_for() -> None:
    exprs = " ".join(expr for uid, _, expr in dashboard_queries() if uid == "trilink-overview")
    for needed in (
        "kind:trilink_producer_events:rate1m",
        "ally_hop:trilink_ally_hop_latency_seconds:p99_1m",
        "ally_hop:trilink_ally_hop_latency_seconds:p50_1m",
        "trilink_ally_hop_latency_seconds_bucket",
        "ally:trilink_ally_consumer_lag_records:sum",
        "trilink_dead_letters_total",
        "ally_sensor:trilink_ally_sensor_last_seen_timestamp_seconds:max",
        "up{",
    ):
        assert needed in exprs
