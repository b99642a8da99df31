"""One load-test run (senders -> broker -> three ally services -> ally topics), and the capacity search.

The ally services and the observer live for a whole invocation; each run (one rate step of
``--find-capacity`` is one run) has its own run id, so its events, keys and accounting are
its own. Sender processes are started per run, report ready, and only then is the schedule's
zero chosen, so process start-up is never counted as lateness.
"""

from __future__ import annotations

import multiprocessing
import queue
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, TextIO

from consumers.fleet import AllyFleet
from consumers.hub import HubReport
from consumers.ledger import AllyReport
from trilink.loadtest.accounting import Accounting, CurveRecorder
from trilink.loadtest.errors import LoadtestError
from trilink.loadtest.observer import Observer
from trilink.loadtest.sender import ProducerSettings, SenderResult, run_sender
from trilink.loadtest.slo import Objective, Verdict, evaluate
from trilink.loadtest.workload import NS_PER_S, LoadSpec, PlannedEvent, Workload
from trilink.monitoring.names import ALLIES
from trilink.platform.groups import delete_groups_at
from trilink.progress import Progress, Status, is_terminal
from trilink.waiting import wait_until

_CONTEXT = multiprocessing.get_context("spawn")

#: The harness is saturated when it sends less than this share of the target rate...
MIN_ACHIEVED_RATIO = 0.95
#: ...or its p99 lateness behind the schedule exceeds this (default of --max-schedule-lag).
DEFAULT_MAX_SCHEDULE_LAG_MS = 100.0
#: A sender this far behind its schedule cannot catch up: the run stops there (an impossible
#: load would otherwise keep a small machine busy for many times its duration).
DEFAULT_ABORT_LAG_S = 5.0
#: Lead between "all senders ready" and the schedule's zero.
_START_LEAD_NS = 300_000_000
#: The progress line's p99 covers events intended in this many last seconds.
RECENT_P99_WINDOW_S = 6.0


def new_run_id() -> str:
    return uuid.uuid4().hex[:10]


@dataclass
class HarnessFigures:
    """Did the harness keep to its schedule? (achieved vs target, lateness)."""

    target_rate_per_s: float
    achieved_rate_per_s: float
    planned: int
    sent: int
    acked: int
    send_failed: int
    schedule_lag: CurveRecorder
    max_schedule_lag_ms: float
    final_schedule_lag_ms: float
    cpu_s: float
    encode_cpu_s: float
    mean_value_bytes: float
    sent_per_s: dict[int, int]
    saturated: bool
    reason: str
    aborted: bool = False

    def cpu_us_per_event(self) -> float:
        return self.cpu_s / self.sent * 1e6 if self.sent else 0.0


@dataclass
class RunResult:
    """Everything one run measured (turned into JSON and text by :mod:`trilink.loadtest.report`)."""

    spec: LoadSpec
    producer: ProducerSettings
    start_ns: int
    started_at_unix_s: float
    plan: list[PlannedEvent]
    accounting: Accounting
    harness: HarnessFigures
    expected: dict[str, set[int]]
    verdicts: list[Verdict] = field(default_factory=list)
    interrupted: bool = False
    drained: bool = True
    wall_s: float = 0.0

    def lost(self, ally: str) -> int:
        return len(self.expected[ally] - self.accounting.tallies[ally].seen.keys())

    @property
    def total_lost(self) -> int:
        return sum(self.lost(a) for a in self.accounting.allies)

    @property
    def objectives_met(self) -> bool:
        return all(v.met for v in self.verdicts)

    @property
    def clean(self) -> bool:
        """Nothing lost, duplicated or reordered."""
        return self.total_lost == 0 and all(
            t.duplicates == 0 and t.out_of_order == 0 for t in self.accounting.tallies.values()
        )

    @property
    def passed(self) -> bool:
        return self.objectives_met and self.clean and not self.harness.saturated and not self.interrupted


class LoadTest:
    """The ally services and the observer for one invocation; :meth:`run` once per rate."""

    def __init__(
        self,
        bootstrap: str,
        producer: ProducerSettings,
        objectives: list[Objective],
        *,
        drain_timeout_s: float = 15.0,
        progress_interval_s: float = 5.0,
        max_schedule_lag_ms: float = DEFAULT_MAX_SCHEDULE_LAG_MS,
        abort_lag_s: float = DEFAULT_ABORT_LAG_S,
        out: TextIO | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.producer = producer
        self.objectives = objectives
        self.drain_timeout_s = drain_timeout_s
        self.progress_interval_s = progress_interval_s
        self.max_schedule_lag_ms = max_schedule_lag_ms
        self.abort_lag_s = abort_lag_s
        self.out = out or sys.stderr
        self.invocation_id = new_run_id()
        self.fleet = AllyFleet(
            bootstrap,
            # trilink-ally-<xx>-...: on a secured cluster an ally may use only groups with its prefix.
            {a: f"trilink-ally-{a.lower()}-loadtest-{self.invocation_id}" for a in ("US", "JP", "KR")},
            f"loadtest-{self.invocation_id}",
            # Load-test event ids are unique per run, so the window needs little history.
            rebuild_per_partition=64,
        )
        self.observer: Observer | None = None
        self.service_reports: dict[str, AllyReport] = {}
        #: The hub's own report once :meth:`close` collected it (hub topology).
        self.hub_report: HubReport | None = None
        self._display: Progress | None = None

    def say(self, text: str) -> None:
        if self._display is not None:
            self._display.say(f"[loadtest] {text}")
        else:
            print(f"[loadtest] {text}", file=self.out, flush=True)

    def _show_progress(
        self, spec: LoadSpec, planned: int, senders: list[Any], accounting: Accounting, phase: list[str]
    ) -> Progress:
        """Start the progress display of one run: sent (the senders' shared counters), delivered
        per ally (what the observer already counts), schedule lag, recent p99, ETA."""
        end_ns = accounting.start_ns + int(spec.total_s * NS_PER_S)

        def status() -> Status:
            now_ns = time.time_ns()
            p99 = accounting.recent_p99_ms(now_ns - int(RECENT_P99_WINDOW_S * NS_PER_S))
            return Status(
                phase=phase[0],
                sent=sum(int(p[0]) for p in senders),
                total=planned,
                delivered=accounting.delivered_total(),
                lag_s=max(int(p[1]) for p in senders) / NS_PER_S,
                eta_s=max(end_ns - now_ns, 0) / NS_PER_S if phase[0] == "sending" else None,
                detail="p99(recent) " + ("-" if p99 is None else f"{p99:.1f} ms"),
            )

        live = is_terminal(self.out)
        display = Progress(
            status,
            label=f"[loadtest] {spec.run_id}",
            out=self.out,
            live=live,
            interval_s=None if live else self.progress_interval_s,
        )
        display.start()
        self._display = display
        return display

    def _hide_progress(self) -> None:
        if self._display is not None:
            display, self._display = self._display, None
            display.stop()

    def start(self) -> None:
        hub = "the US hub and " if self.fleet.with_hub else ""
        self.say(f"starting {hub}the US, JP and KR ally services (one process each) ...")
        self.fleet.start()
        self.observer = Observer(self.bootstrap, self.fleet.instance_id)
        self.observer.start()
        self.say(f"ally services ready (consumer groups {', '.join(self.fleet.group_ids.values())})")

    def close(self) -> None:
        """Stop the observer and the services; keep the services' own reports."""
        if self.observer is not None:
            self.observer.stop()
        self.service_reports = self.fleet.stop()
        self.hub_report = self.fleet.hub_report
        fleet = self.fleet  # its groups served this invocation only
        groups = [*fleet.group_ids.values(), *([fleet.hub_group_id] if fleet.with_hub else [])]
        delete_groups_at(self.bootstrap, groups, client_id=f"trilink-loadtest-{self.invocation_id}")

    # ------------------------------------------------------------ one run

    def run(self, spec: LoadSpec) -> RunResult:
        """Send ``spec``'s schedule, wait for the allies to deliver it, return what was measured.

        A Ctrl-C (KeyboardInterrupt) stops the senders, drains briefly and returns what ran,
        marked ``interrupted``; it is not re-raised.
        """
        assert self.observer is not None, "start() first"
        plan = Workload(spec).plan
        group = _SenderGroup(spec, self.bootstrap, self.producer)
        procs, progress, stop = group.procs, group.progress, group.stop
        interrupted = False
        aborted = False
        sender_results: list[SenderResult] = []
        accounting: Accounting | None = None
        started = time.monotonic()
        start_ns = 0
        phase = ["sending"]
        try:
            group.start()
            self._wait_senders_ready(procs, progress)
            start_ns = time.time_ns() + _START_LEAD_NS
            accounting = Accounting(plan, start_ns, ALLIES)
            self.observer.follow(spec.run_id, accounting)
            group.go(start_ns)
            self.say(
                f"run {spec.run_id}: {len(plan)} events over {spec.total_s:g} s "
                f"({spec.warmup_s:g} s warm-up), {spec.producers} sender process(es)"
            )
            self._show_progress(spec, len(plan), progress, accounting, phase)
            aborted = self._watch_senders(procs, progress=progress, stop=stop)
        except KeyboardInterrupt:
            interrupted = True
            self.say("interrupted: stopping the senders, then writing the report of what ran")
            stop.set()
        try:
            phase[0] = "collecting the senders' results"
            sender_results = self._collect(procs, group.results, stop)
            if accounting is None:
                accounting = Accounting(plan, start_ns or time.time_ns(), ALLIES)
            expected = self._expected(plan, sender_results, accounting)
            phase[0] = "draining"
            drained = self._drain(accounting, expected, short=interrupted)
        finally:
            self._hide_progress()
        harness = self._harness_figures(spec, plan, sender_results, aborted=aborted)
        result = RunResult(
            spec=spec,
            producer=self.producer,
            start_ns=start_ns,
            started_at_unix_s=start_ns / NS_PER_S,
            plan=plan,
            accounting=accounting,
            harness=harness,
            expected=expected,
            interrupted=interrupted,
            drained=drained,
            wall_s=time.monotonic() - started,
        )
        result.verdicts = evaluate(self.objectives, ALLIES, accounting.end_to_end_ms)
        fatal = [r.fatal for r in sender_results if r.fatal]
        if fatal:
            raise LoadtestError("sender_failed", f"a sender process failed: {fatal[0]}")
        if self.observer.error is not None:
            raise LoadtestError("observer_failed", f"reading the ally topics failed: {self.observer.error!r}")
        return result

    def send_only(self, spec: LoadSpec) -> HarnessFigures:
        """The harness alone: schedule, encode and send ``spec`` with no ally service running
        (what the harness itself costs, and the highest rate it can emit)."""
        plan = Workload(spec).plan
        group = _SenderGroup(spec, self.bootstrap, self.producer)
        group.start()
        self._wait_senders_ready(group.procs, group.progress)
        start_ns = time.time_ns() + _START_LEAD_NS
        group.go(start_ns)
        accounting = Accounting(plan, start_ns, ())
        self._show_progress(spec, len(plan), group.progress, accounting, ["sending (no allies)"])
        try:
            aborted = self._watch_senders(group.procs, progress=group.progress, stop=group.stop)
            results = self._collect(group.procs, group.results, group.stop)
        finally:
            self._hide_progress()
        return self._harness_figures(spec, plan, results, aborted=aborted)

    def _wait_senders_ready(self, procs: list[Any], progress: list[Any], timeout_s: float = 60.0) -> None:
        failed = LoadtestError("sender_failed", "sender processes did not get ready (see their errors above)")

        def ready() -> bool:
            if all(p[2] == 1 for p in progress):
                return True
            if not all(p.is_alive() for p in procs):
                raise failed
            return False

        if not wait_until(ready, timeout_s, interval_s=0.05):
            raise failed

    def _watch_senders(self, procs: list[Any], *, progress: list[Any], stop: Any) -> bool:
        """Wait until the senders finish; True when they were stopped for hopeless lag."""
        while any(p.is_alive() for p in procs):
            time.sleep(0.1)
            worst_lag_s = max(int(p[1]) for p in progress) / NS_PER_S
            if self.abort_lag_s > 0 and worst_lag_s > self.abort_lag_s:
                self.say(
                    f"a sender is {worst_lag_s:.1f} s behind its schedule (> {self.abort_lag_s:g} s): "
                    "the harness cannot emit this load; stopping the run"
                )
                stop.set()
                return True
        return False

    def _collect(self, procs: list[Any], results: Any, stop: Any) -> list[SenderResult]:
        collected: list[SenderResult] = []
        deadline = time.monotonic() + 120.0
        while len(collected) < len(procs) and time.monotonic() < deadline:
            try:
                collected.append(results.get(timeout=0.5))
            except queue.Empty:
                if not any(p.is_alive() for p in procs):
                    try:
                        collected.append(results.get(timeout=2.0))
                    except queue.Empty:
                        break
            except KeyboardInterrupt:
                stop.set()
        for p in procs:
            p.join(5.0)
            if p.is_alive():
                p.terminate()
        if len(collected) < len(procs):
            raise LoadtestError(
                "sender_failed", f"{len(procs) - len(collected)} sender process(es) gave no result"
            )
        return sorted(collected, key=lambda r: r.worker)

    @staticmethod
    def _expected(
        plan: list[PlannedEvent], senders: list[SenderResult], accounting: Accounting
    ) -> dict[str, set[int]]:
        upto = {r.worker: r.sent_slots_upto for r in senders}
        failed = {s for r in senders for s in r.failed_slots}
        sent = [p.slot for p in plan if p.slot <= upto.get(p.worker, -1) and p.slot not in failed]
        return {ally: accounting.expected(ally, sent) for ally in accounting.allies}

    def _drain(self, accounting: Accounting, expected: dict[str, set[int]], short: bool) -> bool:
        """Wait until every expected event arrived, or nothing new arrived for the drain timeout."""
        limit_s = min(self.drain_timeout_s, 3.0) if short else self.drain_timeout_s
        last_total = -1
        last_change = time.monotonic()
        while True:
            try:
                if accounting.complete(expected):
                    return True
                total = sum(accounting.delivered_total().values())
                now = time.monotonic()
                if total != last_total:
                    last_total, last_change = total, now
                elif now - last_change > limit_s:
                    return False
                time.sleep(0.05)
            except KeyboardInterrupt:
                short, limit_s = True, 0.0

    def _harness_figures(
        self, spec: LoadSpec, plan: list[PlannedEvent], senders: list[SenderResult], *, aborted: bool = False
    ) -> HarnessFigures:
        lag = CurveRecorder()
        for r in senders:
            lag.merge(CurveRecorder.decode(r.lag_hist))
        measured = [p for p in plan if p.measured]
        duration_s = spec.duration_s
        target = spec.rate_per_s if spec.rate_per_s is not None else len(measured) / duration_s
        firsts = [r.measured_first_due_ns for r in senders if r.measured_first_due_ns is not None]
        lasts = [r.measured_last_actual_ns for r in senders if r.measured_last_actual_ns is not None]
        measured_sent = sum(r.measured_sent for r in senders)
        if firsts and lasts and measured_sent:
            span_s = (max(lasts) - min(firsts)) / NS_PER_S + (1.0 / target if target > 0 else 0.0)
            achieved = measured_sent / span_s if span_s > 0 else 0.0
        else:
            achieved = 0.0
        sent = sum(r.sent for r in senders)
        lag_p99_ms = lag.value_at_percentile_ms(99.0) or 0.0
        reasons = []
        if target > 0 and achieved < MIN_ACHIEVED_RATIO * target:
            reasons.append(
                f"achieved {achieved:.0f}/s of a {target:.0f}/s target (< {MIN_ACHIEVED_RATIO:.0%})"
            )
        if lag_p99_ms > self.max_schedule_lag_ms:
            reasons.append(f"p99 schedule lag {lag_p99_ms:.1f} ms > {self.max_schedule_lag_ms:g} ms")
        if aborted:
            reasons.append(f"stopped when a sender fell over {self.abort_lag_s:g} s behind its schedule")
        per_s: dict[int, int] = {}
        for r in senders:
            for second, n in r.sent_per_s.items():
                per_s[second] = per_s.get(second, 0) + n
        return HarnessFigures(
            target_rate_per_s=target,
            achieved_rate_per_s=achieved,
            planned=len(plan),
            sent=sent,
            acked=sum(r.acked for r in senders),
            send_failed=sum(len(r.failed_slots) for r in senders),
            schedule_lag=lag,
            max_schedule_lag_ms=max((r.max_lag_ns for r in senders), default=0) / 1e6,
            final_schedule_lag_ms=max((r.final_lag_ns for r in senders), default=0) / 1e6,
            cpu_s=sum(r.cpu_s for r in senders),
            encode_cpu_s=sum(r.encode_cpu_s for r in senders),
            mean_value_bytes=sum(r.value_bytes for r in senders) / sent if sent else 0.0,
            sent_per_s=per_s,
            saturated=aborted or (bool(reasons) and measured_sent > 0),
            reason="; ".join(reasons),
            aborted=aborted,
        )


def _sender_process(spec: LoadSpec, worker: int, **kwargs: Any) -> None:
    """A sender process: its client library's log records go to a file, then :func:`run_sender`."""
    from trilink.logs import setup_logging

    setup_logging(f"loadtest-sender-{worker}")
    run_sender(spec, worker, **kwargs)


class _SenderGroup:
    """The sender processes of one run and the shared objects they are driven with."""

    def __init__(self, spec: LoadSpec, bootstrap: str, producer: ProducerSettings) -> None:
        self.stop = _CONTEXT.Event()
        self._go = _CONTEXT.Event()
        self._start_value = _CONTEXT.Value("q", 0)
        self.results: Any = _CONTEXT.Queue()
        self.progress = [_CONTEXT.Array("q", 3) for _ in range(spec.producers)]
        self.procs = [
            _CONTEXT.Process(
                target=_sender_process,
                args=(spec, w),
                kwargs={
                    "start_value": self._start_value,
                    "go": self._go,
                    "bootstrap": bootstrap,
                    "producer": producer,
                    "stop": self.stop,
                    "progress": self.progress[w],
                    "results": self.results,
                },
                name=f"trilink-loadtest-sender-{w}",
                daemon=True,
            )
            for w in range(spec.producers)
        ]

    def start(self) -> None:
        for p in self.procs:
            p.start()

    def go(self, start_ns: int) -> None:
        """Fix the schedule's zero and let every sender begin."""
        self._start_value.value = start_ns
        self._go.set()


@dataclass
class CapacityStep:
    rate_per_s: float
    passed: bool
    saturated: bool
    achieved_rate_per_s: float
    p99_ms: float | None
    why: str


@dataclass
class CapacityResult:
    steps: list[CapacityStep]
    highest_passing_rate_per_s: float | None
    limited_by_harness: bool
    best: RunResult | None
    last: RunResult | None


def find_capacity(
    loadtest: LoadTest,
    base: LoadSpec,
    max_steps: int = 6,
    growth: float = 1.5,
    on_step: Callable[[CapacityStep], None] | None = None,
) -> CapacityResult:
    """Raise the rate by ``growth`` until a step fails, then bisect; at most ``max_steps`` runs.

    A step passes when every objective is met, nothing is lost/duplicated/reordered and the
    harness kept to its schedule. A step where the *harness* saturated ends the search: the
    pipeline's capacity is then "at least the highest passing rate".
    """
    assert base.rate_per_s is not None
    rate = base.rate_per_s
    best: RunResult | None = None
    last: RunResult | None = None
    low: float | None = None
    high: float | None = None
    steps: list[CapacityStep] = []
    limited = False
    for _ in range(max_steps):
        spec = replace(base, rate_per_s=rate, run_id=new_run_id())
        result = loadtest.run(spec)
        last = result
        why = (
            "interrupted"
            if result.interrupted
            else "harness saturated: " + result.harness.reason
            if result.harness.saturated
            else "; ".join(v.message() for v in result.verdicts if not v.met)
            or ("" if result.clean else "events lost, duplicated or out of order")
        )
        p99 = max(
            (v for a in ALLIES if (v := result.accounting.end_to_end_ms(a, 99.0)) is not None), default=None
        )
        step = CapacityStep(
            rate, result.passed, result.harness.saturated, result.harness.achieved_rate_per_s, p99, why
        )
        steps.append(step)
        if on_step is not None:
            on_step(step)
        if result.interrupted:
            break
        if result.passed:
            low, best = rate, result
        else:
            high = rate
            if result.harness.saturated:
                limited = True
                break
        if high is None:
            rate = rate * growth
        elif low is None:
            rate = rate / growth
        else:
            if high / low < 1.1:
                break
            rate = (low + high) / 2.0
    return CapacityResult(steps, low, limited, best, last)
