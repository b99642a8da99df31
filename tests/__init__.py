"""trilink's test suite."""

from pathlib import Path

#: The repository root: tests that check repository-only material (Grafana dashboards, the
#: Prometheus rule tests) read it from here; the code itself finds its data as package resources.
REPO_ROOT = Path(__file__).resolve().parent.parent
