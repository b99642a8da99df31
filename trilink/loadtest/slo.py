"""Latency objectives: ``p99=50ms``-style text, parsed once and evaluated against a run.

An objective is judged on the pipeline figure, ``end_to_end`` counted from the intended send
time over all event kinds, for every ally: the worst ally decides.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from trilink.loadtest.errors import LoadtestConfigError

_SLO_RE = re.compile(
    r"^\s*(?:p(?P<pct>\d{1,2}(?:\.\d+)?|100)|(?P<max>max))\s*=\s*(?P<num>\d+(?:\.\d+)?)\s*(?P<unit>ns|us|µs|ms|s)\s*$"
)
_UNIT_TO_MS = {"ns": 1e-6, "us": 1e-3, "µs": 1e-3, "ms": 1.0, "s": 1000.0}


@dataclass(frozen=True)
class Objective:
    """``percentile`` (0 < p <= 100; 100 means max) of end-to-end latency at or below ``limit_ms``."""

    percentile: float
    limit_ms: float
    text: str

    @property
    def label(self) -> str:
        return "max" if self.percentile == 100.0 else f"p{self.percentile:g}"


def parse_objective(text: str) -> Objective:
    """``p99=50ms``, ``p99.9=200ms``, ``p50=800us``, ``max=1s`` -> :class:`Objective`."""
    match = _SLO_RE.match(text)
    if match is None:
        raise LoadtestConfigError(
            "bad_slo", f"objective {text!r} is not PERCENTILE=VALUE+UNIT, e.g. p99=50ms, p99.9=200ms, max=1s"
        )
    percentile = 100.0 if match["max"] else float(match["pct"])
    if not 0.0 < percentile <= 100.0:
        raise LoadtestConfigError("bad_slo", f"objective {text!r}: percentile must be in (0, 100]")
    limit_ms = float(match["num"]) * _UNIT_TO_MS[match["unit"]]
    if limit_ms <= 0.0:
        raise LoadtestConfigError("bad_slo", f"objective {text!r}: the limit must be positive")
    return Objective(percentile, limit_ms, text.strip())


def parse_objectives(texts: Iterable[str]) -> list[Objective]:
    objectives = [parse_objective(t) for t in texts]
    labels = [o.label for o in objectives]
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise LoadtestConfigError("bad_slo", f"objective given twice: {', '.join(repeated)}")
    return objectives


@dataclass(frozen=True)
class Verdict:
    """One objective judged: the worst ally's figure, and whether it is within the limit."""

    objective: Objective
    observed_ms: float | None  # None: that ally delivered nothing, so nothing can be claimed
    ally: str | None
    met: bool

    def message(self) -> str:
        o = self.objective
        if self.observed_ms is None:
            return f"{o.label} end-to-end: no events delivered{f' to {self.ally}' if self.ally else ''} (limit {o.limit_ms:g} ms)"
        sign = "<=" if self.met else ">"
        return f"{o.label} end-to-end {self.observed_ms:.3f} ms {sign} {o.limit_ms:g} ms (worst ally {self.ally})"

    def as_dict(self) -> dict[str, object]:
        return {
            "objective": self.objective.text,
            "percentile": self.objective.percentile,
            "limit_ms": self.objective.limit_ms,
            "observed_ms": self.observed_ms,
            "worst_ally": self.ally,
            "met": self.met,
        }


def evaluate(
    objectives: Iterable[Objective], allies: Iterable[str], value_ms: Callable[[str, float], float | None]
) -> list[Verdict]:
    """Judge each objective on every ally; ``value_ms(ally, percentile)`` is None without data."""
    ally_list = list(allies)
    verdicts = []
    for objective in objectives:
        worst_ms: float | None = None
        worst_ally: str | None = None
        missing: str | None = None
        for ally in ally_list:
            observed = value_ms(ally, objective.percentile)
            if observed is None:
                missing = missing or ally
                continue
            if worst_ms is None or observed > worst_ms:
                worst_ms, worst_ally = observed, ally
        if missing is not None:
            verdicts.append(Verdict(objective, None, missing, False))
        else:
            met = worst_ms is not None and worst_ms <= objective.limit_ms
            verdicts.append(Verdict(objective, worst_ms, worst_ally, met))
    return verdicts
