"""Monitoring of a trilink run: service discovery for Prometheus, the metric-name contract,
a local Prometheus process, and the rules and dashboards in ``deploy/prometheus`` and
``deploy/grafana``."""

from trilink.monitoring.discovery import ALLY_JOB, SENSORS_JOB, announce, announced, withdraw

__all__ = ["ALLY_JOB", "SENSORS_JOB", "announce", "announced", "withdraw"]
