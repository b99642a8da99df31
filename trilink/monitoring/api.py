"""A small client of the Prometheus HTTP API (``/api/v1``), standard library only.

Used by ``trilink monitoring status``, by the tests that check rules and dashboard queries
against a real Prometheus, and by the live integration tests. It returns the decoded
``data`` member of the API's JSON answer and turns failures into the project's errors:
an unparsable or unevaluable query is a :class:`QueryError` (HTTP 400/422), an unreachable
server a :class:`PrometheusUnreachableError`.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, cast

from trilink.errors import PlatformError, TrilinkError


class PrometheusUnreachableError(PlatformError):
    """Nothing answers at the Prometheus URL (reason ``prometheus_unreachable``)."""

    retriable = True

    def __init__(self, url: str, detail: str) -> None:
        super().__init__(
            "prometheus_unreachable",
            f"no Prometheus answers at {url} ({detail}); `trilink monitoring up` starts one",
        )


class QueryError(TrilinkError):
    """Prometheus rejected a query: ``status`` is the HTTP code (400 = does not parse)."""

    def __init__(self, status: int, error_type: str, detail: str, query: str) -> None:
        reason = "promql_parse_error" if status == 400 else "promql_error"
        super().__init__(reason, f"HTTP {status} {error_type}: {detail} (query: {query})")
        self.status = status
        self.error_type = error_type
        self.query = query


class PrometheusAPI:
    """Calls against one Prometheus server, e.g. ``PrometheusAPI("http://127.0.0.1:9090")``."""

    def __init__(self, url: str, timeout_s: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s

    def ready(self) -> bool:
        """True when ``/-/ready`` answers 200 (TSDB open, config loaded)."""
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=self.timeout_s) as resp:
                return int(resp.status) == 200
        except (urllib.error.URLError, OSError):
            return False

    def query(self, expr: str, time_s: float | None = None) -> list[dict[str, Any]]:
        """An instant query; the result list (vector samples, or one scalar/string entry)."""
        params = {"query": expr}
        if time_s is not None:
            params["time"] = f"{time_s:.3f}"
        data = self._get("/api/v1/query", params, query=expr)
        result = data.get("result", [])
        if data.get("resultType") in ("scalar", "string"):
            return [{"metric": {}, "value": result}]
        return cast(list[dict[str, Any]], result)

    def values(self, expr: str) -> dict[tuple[tuple[str, str], ...], float]:
        """An instant vector query as ``{sorted label pairs: value}`` (NaN kept as NaN)."""
        out: dict[tuple[tuple[str, str], ...], float] = {}
        for sample in self.query(expr):
            labels = tuple(sorted(sample.get("metric", {}).items()))
            out[labels] = float(sample["value"][1])
        return out

    def series(self, match: str) -> list[dict[str, str]]:
        """Label sets of the series a selector matches (``/api/v1/series``)."""
        return cast(list[dict[str, str]], self._get("/api/v1/series", {"match[]": match}, query=match))

    def targets(self) -> list[dict[str, Any]]:
        """The active scrape targets with their health and last error."""
        data = self._get("/api/v1/targets", {"state": "active"})
        return cast(list[dict[str, Any]], data.get("activeTargets", []))

    def alerts(self) -> list[dict[str, Any]]:
        """Pending and firing alerts."""
        return cast(list[dict[str, Any]], self._get("/api/v1/alerts", {}).get("alerts", []))

    def rule_groups(self) -> list[dict[str, Any]]:
        """Loaded rule groups with each rule's health and last evaluation error."""
        return cast(list[dict[str, Any]], self._get("/api/v1/rules", {}).get("groups", []))

    def _get(self, path: str, params: dict[str, str], query: str = "") -> dict[str, Any]:
        url = f"{self.url}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=self.timeout_s) as resp:
                body = json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            try:
                detail = json.loads(exc.read())
            except ValueError:
                detail = {}
            raise QueryError(
                exc.code,
                str(detail.get("errorType", "http_error")),
                str(detail.get("error", exc.reason)),
                query,
            ) from exc
        except (urllib.error.URLError, OSError) as exc:
            raise PrometheusUnreachableError(self.url, str(exc)) from exc
        return cast(dict[str, Any], body.get("data", {}))
