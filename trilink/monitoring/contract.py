"""Compare a real ``/metrics`` exposition with the metric contract of :mod:`names`.

The services declare their metrics themselves; this is how a test (or ``trilink monitoring``
user) finds out that one of them renamed a family, changed its type or its labels, which
would silently empty the rules and dashboards built on :mod:`trilink.monitoring.names`.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from trilink.monitoring.names import BUCKETS_S, FAMILIES, MetricFamily

# Labels Prometheus' text format adds to histogram samples.
_HISTOGRAM_LABELS = frozenset({"le"})


def exposition_problems(text: str, expected: Iterable[MetricFamily] = FAMILIES) -> list[str]:
    """Contract violations of one exposition: missing families, wrong types, wrong labels.

    Families the exposition has beyond ``expected`` are fine (a service may expose more);
    a family of ``expected`` missing from it is a problem, so pass only the families of the
    service being checked (e.g. ``[f for f in FAMILIES if f.exposed_by == "ally"]``).
    """
    problems: list[str] = []
    # the parser names a counter family without its _total suffix
    seen: dict[str, Metric] = {}
    for family in text_string_to_metric_families(text):
        full = f"{family.name}_total" if family.type == "counter" else family.name
        seen[full] = family
    for want in expected:
        got = seen.get(want.name)
        if got is None:
            problems.append(f"{want.name}: not exposed")
            continue
        if got.type != want.type:
            problems.append(f"{want.name}: type {got.type}, contract says {want.type}")
        label_sets = {frozenset(s.labels) - _HISTOGRAM_LABELS for s in got.samples}
        for labels in label_sets:
            if labels != frozenset(want.labels):
                problems.append(f"{want.name}: labels {sorted(labels)}, contract says {sorted(want.labels)}")
        if want.type == "histogram":
            bounds = sorted({float(s.labels["le"]) for s in got.samples if "le" in s.labels})
            if bounds and bounds[:-1] != list(BUCKETS_S):
                problems.append(f"{want.name}: buckets {bounds[:-1]}, contract says {list(BUCKETS_S)}")
    return problems
