"""The load-test report: one typed document (:class:`LoadTestReport`, written as JSON by
``--report``; its JSON Schema is ``docs/schemas/loadtest-report.schema.json``) and the terminal
table made from it.

Its parts: ``run`` (ids, mode, wall time, interrupted, drained) and ``config`` (the spec);
``harness`` (target vs achieved send rate, schedule lag, ``saturated`` + reason, CPU per event:
when saturated the latency figures describe the harness); ``allies`` (per ally expected,
delivered, lost, duplicates, out of order, dead-lettered, withheld, throughput); ``latency`` (rows
per ally, hop, basis ``intended`` | ``actual`` | ``receive`` and kind, ``*`` = all kinds);
``service_hops`` (the ally services' own rows, whole run incl. warm-up); ``hub`` (the US hub's
own report in the hub topology: counts and its hops); ``objectives`` (one
verdict per ``--slo``); ``timeline`` (per second sent, delivered, p99); ``curves`` (end-to-end
percentile curves per ally); ``baseline``; ``capacity``.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from consumers.hub import HubReport
from consumers.ledger import AckSummary, AllyReport, LatencyFigures, LatencyRow, hop_table
from trilink.latency import percentile_of_sorted
from trilink.loadtest.accounting import (
    ACTUAL,
    ALL_KINDS,
    HOP_BASES,
    INTENDED,
    AllyTally,
)
from trilink.loadtest.baseline import BaselineResult
from trilink.loadtest.runner import CapacityResult, RunResult
from trilink.loadtest.workload import NS_PER_S
from trilink.monitoring.names import NO_CHANNEL

REPORT_FORMAT: Literal["trilink.loadtest/1"] = "trilink.loadtest/1"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RunInfo(_Strict):
    run_id: str
    mode: str
    started_at_unix_s: float
    wall_s: float
    interrupted: bool
    drained: bool
    clock_domain: Literal["host"] = "host"


class LoadConfig(_Strict):
    rate_per_s: float | None = Field(description="rate mode: events per second")
    salvo_launches: int | None = Field(description="salvo mode: simultaneous launches, simulated")
    duration_s: float
    warmup_s: float
    mix: dict[str, float] | None = Field(
        description="kind -> share (rate mode); a salvo's is the simulation's"
    )
    sensors: list[str] | Literal["all"]
    keys: int
    partitions: int | None = Field(description="only the first N partitions of each topic; None = all")
    producers: int
    acks: str
    linger_ms: int


class HarnessFigures(_Strict):
    target_rate_per_s: float
    achieved_rate_per_s: float
    planned: int
    sent: int
    acked: int
    send_failed: int
    schedule_lag: LatencyFigures
    max_schedule_lag_ms: float
    final_schedule_lag_ms: float
    saturated: bool
    saturation_reason: str | None
    stopped_for_lag: bool
    sender_cpu_us_per_event: float
    encode_cpu_us_per_event: float
    mean_value_bytes: float


class AllyOutcome(_Strict):
    """What one ally got, as the observer saw it (and, when its service reported, its own counts)."""

    expected: int
    delivered: int
    lost: int
    duplicates: int
    out_of_order: int
    dead_lettered: int | None
    withheld: int | None
    duplicates_suppressed_by_service: int | None
    throughput_per_s: float = Field(description="deliveries per second, first to last delivery")
    service_error: str | None
    acknowledgements: AckSummary | None = Field(
        default=None,
        description="the three-way acknowledgement as this ally's service saw it (per-warning list left out)",
    )


class LoadLatencyRow(LatencyFigures):
    ally: str
    hop: str
    basis: str = Field(description="where the clock starts: intended | actual | receive")
    kind: str


class ServiceHopRow(LatencyRow):
    """One of an ally service's own latency rows (:class:`consumers.ledger.LatencyRow`) with its ally."""

    ally: str


class Verdict(_Strict):
    objective: str
    percentile: float
    limit_ms: float
    observed_ms: float | None
    worst_ally: str | None
    met: bool


class AllyTimeline(_Strict):
    delivered_per_s: list[int]
    p99_ms: list[float | None]


class Timeline(_Strict):
    interval_s: int
    second: list[int]
    warmup_s: float
    sent_per_s: list[int]
    allies: dict[str, AllyTimeline]


class BaselineTool(_Strict):
    avg_ms: float
    p50_ms: float
    p99_ms: float
    p99_9_ms: float
    num_records: int
    record_size_bytes: int
    acks: str
    kafka_version: str


class BaselineRatio(_Strict):
    trilink_ms: float | None
    kafka_ms: float
    ratio: float | None


class BaselineBlock(_Strict):
    tool: BaselineTool
    end_to_end_vs_tool: dict[str, dict[str, BaselineRatio]]


class CapacityStepRow(_Strict):
    rate_per_s: float
    passed: bool
    saturated: bool
    achieved_rate_per_s: float
    p99_ms: float | None
    why_not: str | None


class CapacityBlock(_Strict):
    highest_passing_rate_per_s: float | None
    limited_by_harness: bool
    steps: list[CapacityStepRow]


class LoadTestReport(_Strict):
    """The report of one ``trilink loadtest`` run (see the module docstring)."""

    format: Literal["trilink.loadtest/1"] = REPORT_FORMAT
    run: RunInfo
    config: LoadConfig
    harness: HarnessFigures
    allies: dict[str, AllyOutcome]
    latency: list[LoadLatencyRow]
    service_hops: list[ServiceHopRow]
    hub: HubReport | None = Field(
        default=None, description="the US hub's own report (hub topology; whole run incl. warm-up)"
    )
    objectives: list[Verdict]
    timeline: Timeline
    curves: dict[str, dict[str, list[tuple[float, float]]]] = Field(
        description="ally -> basis -> (percentile, ms) points of the end-to-end latency"
    )
    baseline: BaselineBlock | None
    capacity: CapacityBlock | None


def _summary(recorder: Any) -> LatencyFigures:
    return LatencyFigures.model_validate(recorder.summary().as_dict())


def build_report(
    result: RunResult,
    service_reports: dict[str, AllyReport] | None = None,
    baseline: BaselineResult | None = None,
    capacity: CapacityResult | None = None,
    hub: HubReport | None = None,
) -> LoadTestReport:
    """The report of one run (plus the services' and the hub's reports, baseline and capacity
    search)."""
    spec = result.spec
    acc = result.accounting
    services = service_reports or {}
    harness = result.harness
    allies: dict[str, AllyOutcome] = {}
    for ally, tally in acc.tallies.items():
        service = services.get(ally)
        counts = None if service is None else service.counts
        allies[ally] = AllyOutcome(
            expected=len(result.expected[ally]),
            delivered=tally.delivered_unique,
            lost=result.lost(ally),
            duplicates=tally.duplicates,
            out_of_order=tally.out_of_order,
            dead_lettered=None if counts is None else sum(counts.dead_letters.values()),
            withheld=None if counts is None else sum(counts.withheld.values()),
            duplicates_suppressed_by_service=None if counts is None else counts.duplicates_suppressed,
            throughput_per_s=_throughput_per_s(result, tally),
            service_error=None if service is None else service.error,
            acknowledgements=(
                None
                if service is None or service.acknowledgements is None
                else service.acknowledgements.model_copy(update={"acknowledged": []})
            ),
        )
    rows = []
    for ally, tally in acc.tallies.items():
        kinds = sorted({kind for (_, _, kind) in tally.recorders if kind != ALL_KINDS})
        for hop, basis in HOP_BASES:
            for kind in (ALL_KINDS, *kinds):
                recorder = tally.recorders.get((hop, basis, kind))
                if recorder is not None:
                    rows.append(
                        LoadLatencyRow(
                            ally=ally,
                            hop=hop,
                            basis=basis,
                            kind=kind,
                            **_summary(recorder).model_dump(),
                        )
                    )
    service_rows = [
        ServiceHopRow(ally=ally, **row.model_dump())
        for ally, report in services.items()
        for row in report.latency
    ]
    return LoadTestReport(
        run=RunInfo(
            run_id=spec.run_id,
            mode=spec.mode,
            started_at_unix_s=round(result.started_at_unix_s, 3),
            wall_s=round(result.wall_s, 3),
            interrupted=result.interrupted,
            drained=result.drained,
        ),
        config=LoadConfig(
            rate_per_s=spec.rate_per_s,
            salvo_launches=spec.salvo_launches,
            duration_s=spec.duration_s,
            warmup_s=spec.warmup_s,
            mix=dict(spec.mix) if spec.mode == "rate" else None,
            sensors=list(spec.sensors) or "all",
            keys=spec.keys,
            partitions=spec.partitions,
            producers=spec.producers,
            acks=result.producer.acks,
            linger_ms=result.producer.linger_ms,
        ),
        harness=HarnessFigures(
            target_rate_per_s=round(harness.target_rate_per_s, 1),
            achieved_rate_per_s=round(harness.achieved_rate_per_s, 1),
            planned=harness.planned,
            sent=harness.sent,
            acked=harness.acked,
            send_failed=harness.send_failed,
            schedule_lag=_summary(harness.schedule_lag),
            max_schedule_lag_ms=round(harness.max_schedule_lag_ms, 3),
            final_schedule_lag_ms=round(harness.final_schedule_lag_ms, 3),
            saturated=harness.saturated,
            saturation_reason=harness.reason or None,
            stopped_for_lag=harness.aborted,
            sender_cpu_us_per_event=round(harness.cpu_us_per_event(), 1),
            encode_cpu_us_per_event=round(harness.encode_cpu_s / harness.sent * 1e6, 1)
            if harness.sent
            else 0.0,
            mean_value_bytes=round(harness.mean_value_bytes, 1),
        ),
        allies=allies,
        latency=rows,
        service_hops=service_rows,
        hub=hub,
        objectives=[Verdict.model_validate(v.as_dict()) for v in result.verdicts],
        timeline=_timeline(result),
        curves={
            ally: {
                basis: tally.recorders[("end_to_end", basis, ALL_KINDS)].curve_ms()
                for basis in (INTENDED, ACTUAL)
                if ("end_to_end", basis, ALL_KINDS) in tally.recorders
            }
            for ally, tally in acc.tallies.items()
        },
        baseline=None if baseline is None else _baseline_block(baseline, result),
        capacity=None if capacity is None else _capacity_block(capacity),
    )


def _throughput_per_s(result: RunResult, tally: AllyTally) -> float:
    """Events this ally delivered per second from its first delivery to its last (at least the
    schedule's length): the planned rate when it keeps up, its real processing rate when it
    falls behind and delivers late."""
    if tally.first_delivered_ns is None or tally.last_delivered_ns is None:
        return 0.0
    span_s = max((tally.last_delivered_ns - tally.first_delivered_ns) / NS_PER_S, result.spec.total_s)
    return round(tally.delivered_unique / span_s, 1)


def _timeline(result: RunResult) -> Timeline:
    acc = result.accounting
    last_second = int(result.spec.total_s) + 1
    for tally in acc.tallies.values():
        if tally.delivered_per_s:
            last_second = max(last_second, *tally.delivered_per_s)
    seconds = list(range(last_second + 1))
    allies: dict[str, AllyTimeline] = {}
    for ally, tally in acc.tallies.items():
        p99: list[float | None] = []
        for s in seconds:
            values = sorted(tally.e2e_by_intended_s.get(s, ()))
            p99.append(None if not values else round(percentile_of_sorted(values, 99.0) / 1e6, 3))
        allies[ally] = AllyTimeline(
            delivered_per_s=[tally.delivered_per_s.get(s, 0) for s in seconds], p99_ms=p99
        )
    return Timeline(
        interval_s=1,
        second=seconds,
        warmup_s=result.spec.warmup_s,
        sent_per_s=[result.harness.sent_per_s.get(s, 0) for s in seconds],
        allies=allies,
    )


def _baseline_block(baseline: BaselineResult, result: RunResult) -> BaselineBlock:
    ratios: dict[str, dict[str, BaselineRatio]] = {}
    for ally in result.accounting.allies:
        ratios[ally] = {}
        for label, percentile, theirs in (
            ("p50", 50.0, baseline.p50_ms),
            ("p99", 99.0, baseline.p99_ms),
            ("p99_9", 99.9, baseline.p99_9_ms),
        ):
            ours = result.accounting.end_to_end_ms(ally, percentile)
            ratios[ally][label] = BaselineRatio(
                trilink_ms=ours,
                kafka_ms=theirs,
                ratio=None if ours is None or theirs <= 0 else round(ours / theirs, 2),
            )
    return BaselineBlock(tool=BaselineTool.model_validate(baseline.as_dict()), end_to_end_vs_tool=ratios)


def _capacity_block(capacity: CapacityResult) -> CapacityBlock:
    return CapacityBlock(
        highest_passing_rate_per_s=capacity.highest_passing_rate_per_s,
        limited_by_harness=capacity.limited_by_harness,
        steps=[
            CapacityStepRow(
                rate_per_s=round(s.rate_per_s, 1),
                passed=s.passed,
                saturated=s.saturated,
                achieved_rate_per_s=round(s.achieved_rate_per_s, 1),
                p99_ms=s.p99_ms,
                why_not=s.why or None,
            )
            for s in capacity.steps
        ],
    )


def write_report(report: LoadTestReport, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(report.model_dump_json(indent=2) + "\n")


# ---------------------------------------------------------------- terminal table


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if value < 100 else f"{value:.0f}"


def render_text(report: LoadTestReport, kinds: bool = True) -> str:
    """A readable summary: harness verdict, per-ally counts, latency per hop (and kind), objectives."""
    out: list[str] = []
    run, h = report.run, report.harness
    flags = [f for f, on in (("INTERRUPTED", run.interrupted), ("NOT DRAINED", not run.drained)) if on]
    out.append(f"trilink loadtest {run.run_id} ({run.mode}) {' '.join(flags)}".rstrip())
    out.append(
        f"harness: target {h.target_rate_per_s:.0f}/s, achieved {h.achieved_rate_per_s:.0f}/s, "
        f"sent {h.sent}/{h.planned}, send failures {h.send_failed}, schedule lag p99 "
        f"{_ms(h.schedule_lag.p99_ms)} ms max {_ms(h.max_schedule_lag_ms)} ms, "
        f"{h.sender_cpu_us_per_event:.0f} us CPU/event"
    )
    if h.saturated:
        out.append(
            f"  !! HARNESS SATURATED ({h.saturation_reason}): latency below describes the harness, not the pipeline"
        )
    out.append("")
    header = f"{'ally':<4} {'expected':>9} {'delivered':>9} {'lost':>6} {'dup':>5} {'order':>5} {'dlq':>5} {'withheld':>8} {'events/s':>9}"
    out.append(header)
    for ally, a in report.allies.items():
        dlq = "-" if a.dead_lettered is None else str(a.dead_lettered)
        withheld = "-" if a.withheld is None else str(a.withheld)
        out.append(
            f"{ally:<4} {a.expected:>9} {a.delivered:>9} {a.lost:>6} {a.duplicates:>5} "
            f"{a.out_of_order:>5} {dlq:>5} {withheld:>8} {a.throughput_per_s:>9.1f}"
        )
    out.append("")
    out.append("latency (ms), measured window only; basis = where the clock starts")
    out.append(
        f"{'ally':<4} {'hop':<19} {'basis':<9} {'kind':<18} {'count':>7} {'p50':>8} {'p90':>8} {'p99':>8} {'p99.9':>8} {'max':>8}"
    )
    for row in report.latency:
        if row.kind != ALL_KINDS and not (kinds and row.hop == "end_to_end" and row.basis == INTENDED):
            continue
        out.append(
            f"{row.ally:<4} {row.hop:<19} {row.basis:<9} {row.kind:<18} {row.count:>7} "
            f"{_ms(row.p50_ms):>8} {_ms(row.p90_ms):>8} {_ms(row.p99_ms):>8} "
            f"{_ms(row.p99_9_ms):>8} {_ms(row.max_ms):>8}"
        )
    out.extend(_service_hop_lines(report))
    acked = [(ally, a.acknowledgements) for ally, a in report.allies.items() if a.acknowledgements]
    if acked:
        out.append("")
        out.append("three-way acknowledgement (sensor send -> the last acknowledgement among the allies a")
        out.append("launch detection or alert was released to; each service's own figures, whole run, ms)")
        for ally, acks in acked:
            assert acks is not None
            hop_row = _service_row(report, ally, "acknowledged_by_all", NO_CHANNEL)
            figures = (
                ""
                if hop_row is None
                else f" p50 {_ms(hop_row.p50_ms)} p99 {_ms(hop_row.p99_ms)} max {_ms(hop_row.max_ms)}"
            )
            missing = ", ".join(f"{m} {n}" for m, n in sorted(acks.unacknowledged_by_ally.items()))
            out.append(
                f"{ally:<4} acknowledged by all {acks.acknowledged_by_all}{figures}; "
                f"never acknowledged {acks.unacknowledged}" + (f" (missing: {missing})" if missing else "")
            )
            for warning in acks.unacknowledged_listed[:5]:
                out.append(f"       {warning.kind} {warning.event_id} missing {','.join(warning.missing)}")
    baseline = report.baseline
    if baseline:
        tool = baseline.tool
        out.append("")
        out.append(
            f"Kafka EndToEndLatency ({tool.num_records} records x {tool.record_size_bytes} B, acks={tool.acks}): "
            f"p50 {_ms(tool.p50_ms)} p99 {_ms(tool.p99_ms)} p99.9 {_ms(tool.p99_9_ms)} ms (whole ms)"
        )
        for ally, r in baseline.end_to_end_vs_tool.items():
            parts = [
                f"{label} {_ms(v.trilink_ms)} ms = {v.ratio if v.ratio is not None else '-'}x"
                for label, v in r.items()
            ]
            out.append(f"  trilink {ally} end-to-end (intended): " + ", ".join(parts))
    capacity = report.capacity
    if capacity:
        out.append("")
        out.append("capacity search:")
        for step in capacity.steps:
            verdict = "pass" if step.passed else f"FAIL ({step.why_not})"
            out.append(
                f"  {step.rate_per_s:>9.0f}/s achieved {step.achieved_rate_per_s:>8.0f}/s p99 {_ms(step.p99_ms):>8} ms  {verdict}"
            )
        best = capacity.highest_passing_rate_per_s
        limit = " (limited by the harness, not the pipeline)" if capacity.limited_by_harness else ""
        out.append(
            f"  highest rate meeting the objectives: {'none' if best is None else f'{best:.0f}/s'}{limit}"
        )
    if report.objectives:
        out.append("")
        for v in report.objectives:
            mark = "met   " if v.met else "MISSED"
            out.append(f"objective {v.objective:<14} {mark} {_describe_verdict(v)}")
    return "\n".join(out)


def _service_hop_lines(report: LoadTestReport) -> list[str]:
    """Every hop as the hub and the services measured it (whole run, warm-up included), in the
    pipeline's order: the hub hop appears here, between the sensors' append and the feeds'."""
    allies = [a for a in report.allies if any(r.ally == a for r in report.service_hops)]
    if not allies and report.hub is None:
        return []
    out = ["", "every hop as the hub and the services measured it (whole run, warm-up included)"]
    if report.hub is not None:
        out.extend(report.hub.lines())
    for ally in allies:
        out.append(f"[{ally}]")
        out.extend(hop_table(functools.partial(_service_row, report, ally)))
    return out


def _service_row(report: LoadTestReport, ally: str, hop: str, channel: str) -> ServiceHopRow | None:
    """One of ``ally``'s service rows (all kinds), None when that series had no sample."""
    return next(
        (
            r
            for r in report.service_hops
            if r.ally == ally and r.hop == hop and r.channel == channel and r.kind == ALL_KINDS
        ),
        None,
    )


def _describe_verdict(v: Verdict) -> str:
    if v.observed_ms is None:
        return f"no events delivered to {v.worst_ally}"
    return f"observed {_ms(v.observed_ms)} ms (worst ally {v.worst_ally}), limit {v.limit_ms:g} ms"
