"""``trilink run SCENARIO`` and ``trilink demo``: the whole pipeline in one command.

Starts (or reuses) the broker, starts the three ally services (one process each,
:class:`consumers.fleet.AllyFleet`, and the US hub's process in the hub topology, each in a
consumer group of its own for this run so the report covers exactly this run), plays the scenario's sensors onto Kafka, waits until every ally has delivered every
event it may see, and reports per ally: events received, withheld as not releasable,
duplicates suppressed, dead-lettered, per-hop latency, and the first-warning times of each
launch with the sensor's share (simulated clock) and the pipeline's share (wall clock)
shown apart.

Simulated time is accelerated so a run takes about a minute of publishing by default;
pipeline latency is always measured on the real clock.
"""

from __future__ import annotations

import argparse
import bisect
import gc
import re
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from uuid import UUID
from wsgiref.simple_server import WSGIServer

from pydantic import BaseModel, ConfigDict, Field

from consumers.hub import HubReport
from consumers.ledger import AckSummary, AllyReport, FirstDeliveryReport, hop_table
from consumers.policy_filter import withhold_reason
from producers.publisher import PublishReport, Run, SensorPublisher, for_run
from producers.scenario import Scenario, ScheduledEvent, correlation_key, load_scenario
from producers.scenario_report import fused_tracks_by_launch
from producers.simulation_cache import simulate_cached
from schemas.models import WarningEvent
from trilink.errors import ConfigError, TrilinkError
from trilink.latency import datetime_ns
from trilink.monitoring import names
from trilink.platform.connection import ensure_cluster
from trilink.platform.groups import delete_groups_at
from trilink.platform.topics import input_roles_of_both_topologies, topic_name
from trilink.policy import default_policy
from trilink.progress import AllyFigures, AllyMetricsProbe, NullProgress, Progress, Status
from trilink.readback import AllyTopicReadback, TopicCheck
from trilink.runtime import cpu_for, gc_tuned, pinned
from trilink.settings import Settings, get_settings

#: Wall-clock seconds a scenario is squeezed into when no speed is given.
DEFAULT_PUBLISH_WALL_S = 90.0
#: How long to wait for the allies to deliver what was sent before reporting a shortfall.
DRAIN_TIMEOUT_S = 60.0
ALLIES = names.ALLY_NATIONS


class RunError(TrilinkError):
    """The pipeline run did not complete (reason ``ally_not_ready``, ``undelivered``...)."""


class PipelineShares(BaseModel):
    """Launch -> first warning of one kind at one ally, split by clock."""

    model_config = ConfigDict(extra="forbid")

    sensor_id: str
    sensor_share_s: float = Field(description="sensor emission - launch, on the simulated clock")
    pipeline_share_ms: float | None = Field(description="first delivery - send, on the wall clock")


class AllyFirstWarnings(BaseModel):
    """One ally's first launch detection and first alert of one launch (None: never delivered)."""

    model_config = ConfigDict(extra="forbid")

    first_launch_detection: PipelineShares | None
    first_alert: PipelineShares | None


class LaunchWarnings(BaseModel):
    """Per launch of the scenario: its first warnings at each ally."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, serialize_by_alias=True)

    launch: str
    correlation_key: str
    missile_class: str = Field(alias="class")
    US: AllyFirstWarnings | None = None
    JP: AllyFirstWarnings | None = None
    KR: AllyFirstWarnings | None = None

    def for_ally(self, ally: str) -> AllyFirstWarnings | None:
        value = getattr(self, ally, None)
        return value if isinstance(value, AllyFirstWarnings) else None


class PublishedFigures(BaseModel):
    """What the run's sensor publisher did."""

    model_config = ConfigDict(extra="forbid")

    sent: int
    acknowledged: int
    failed: int
    by_kind: dict[str, int]
    wall_s: float
    max_schedule_lag_s: float


class RunReport(BaseModel):
    """The report of ``trilink run`` / ``trilink demo`` (``--report FILE.json``)."""

    model_config = ConfigDict(extra="forbid")

    scenario: str
    run_id: str
    bootstrap: str
    speed: float | None = Field(description="simulated seconds per wall second; None = as fast as possible")
    clock_domain: Literal["host"] = "host"
    complete: bool = Field(description="every ally settled every record within the drain timeout")
    published: PublishedFigures
    expected_deliveries: dict[str, int] = Field(description="per ally: events its release check lets through")
    allies: dict[str, AllyReport]
    launches: list[LaunchWarnings]
    topology: Literal["direct", "hub"] = "direct"
    hub: HubReport | None = Field(
        default=None, description="the US hub's counts and hop latencies (hub topology)"
    )
    ally_topics: dict[str, TopicCheck] = Field(
        default_factory=dict,
        description="per ally: what its ally topic holds of this run, read back after the run",
    )
    kills: list[str] = Field(default_factory=list, description="processes killed on purpose (--kill)")
    restarts: dict[str, int] = Field(
        default_factory=dict,
        description="per service (US, JP, KR, HUB): times its process died and was restarted; its "
        "counts and latencies above cover its last process only",
    )


@dataclass(frozen=True)
class Kill:
    """A fault the run injects: SIGKILL ``service``'s process ``at_s`` seconds after publishing
    starts (``--kill jp@5``). The run's supervisor restarts it, as an operator's would."""

    service: str  # "US", "JP", "KR" or "HUB"
    at_s: float

    @classmethod
    def parse(cls, text: str) -> Kill:
        match = re.fullmatch(r"(?i)(us|jp|kr|hub)@(\d+(?:\.\d+)?)s?", text.strip())
        if match is None:
            raise ConfigError(
                "bad_kill", f"--kill takes SERVICE@SECONDS, SERVICE one of us, jp, kr, hub; got {text!r}"
            )
        return cls(match.group(1).upper(), float(match.group(2)))

    def __str__(self) -> str:
        return f"{self.service}@{self.at_s:g}s"


@dataclass
class RunResult:
    """Everything a run measured; :meth:`report` is its typed, JSON-able form."""

    scenario: str
    run_id: str
    bootstrap: str
    speed: float | None
    publish: PublishReport
    expected: dict[str, int]
    allies: dict[str, AllyReport]
    launches: list[LaunchWarnings] = field(default_factory=list)
    complete: bool = True
    topology: Literal["direct", "hub"] = "direct"
    hub: HubReport | None = None
    ally_topics: dict[str, TopicCheck] = field(default_factory=dict)
    kills: list[Kill] = field(default_factory=list)
    restarts: dict[str, int] = field(default_factory=dict)

    def report(self) -> RunReport:
        return RunReport(
            scenario=self.scenario,
            run_id=self.run_id,
            bootstrap=self.bootstrap,
            speed=self.speed,
            complete=self.complete,
            published=PublishedFigures(
                sent=self.publish.sent,
                acknowledged=self.publish.acknowledged,
                failed=self.publish.failed,
                by_kind=self.publish.by_kind,
                wall_s=round(self.publish.wall_s, 3),
                max_schedule_lag_s=round(self.publish.late_s_max, 4),
            ),
            expected_deliveries=self.expected,
            allies=self.allies,
            launches=self.launches,
            topology=self.topology,
            hub=self.hub,
            ally_topics=self.ally_topics,
            kills=[str(k) for k in self.kills],
            restarts=self.restarts,
        )


def run_pipeline(
    scenario: Scenario,
    *,
    speed: float | None,
    brokers: int = 1,
    audit_dir: Path | None = None,
    progress: bool = True,
    status_line: bool = True,
    kills: Sequence[Kill] = (),
) -> RunResult:
    """Play ``scenario`` through the broker and the three ally services; see the module docstring.

    ``progress``: print the live pages and what happens (False: silent); ``status_line``: also
    the progress line (a live line on a terminal, periodic lines otherwise; stderr). ``kills``:
    processes to SIGKILL mid-run; the fleet's supervisor restarts every service that dies."""
    from consumers.fleet import AllyFleet

    settings = get_settings()
    announce = (lambda line: print(line, flush=True)) if progress else None
    run = Run.new()
    # Simulate first, publish after: the paced loop then only encodes and sends, so the
    # simulation's CPU cost cannot push sends behind their schedule. It runs while the cluster
    # and the services start (they wait on other processes), not before them.
    if announce is not None:
        announce(f"run {run.run_id}: simulating {scenario.name} ({len(scenario.launches)} launch(es)) ...")
    simulation = _simulate_in_background(scenario, run, settings.simulation_cache_dir)
    bootstrap, _, _ = ensure_cluster(settings, brokers=brokers, announce=announce)
    policy = default_policy()
    audit_root = audit_dir or Path(tempfile.mkdtemp(prefix=f"trilink-run-{run.run_id}-"))
    group_ids = {ally.value: f"trilink-ally-{ally.value.lower()}-run-{run.run_id}" for ally in ALLIES}
    fleet = AllyFleet(
        bootstrap,
        group_ids,
        f"run-{run.run_id}",
        http=True,
        audit_dir=audit_root,
        policy=policy,
        supervise=True,
    )
    if any(k.service == "HUB" for k in kills) and not fleet.with_hub:
        raise ConfigError("bad_kill", "--kill hub@...: this run has no hub (TRILINK_TOPOLOGY=direct)")
    # A run's groups (the hub's too) start exactly at today's end of the input topics: committed
    # up front, so no event of this run can slip past a consumer whose offset reset happens late.
    run_groups = [*group_ids.values(), fleet.hub_group_id]
    pin_groups_to_end(bootstrap, run_groups, tuple(topic_name(r) for r in input_roles_of_both_topologies()))
    expected = {ally.value: 0 for ally in ALLIES}
    released: dict[str, set[UUID]] = {ally.value: set() for ally in ALLIES}
    readback = AllyTopicReadback(bootstrap, expected, client_id=f"trilink-run-{run.run_id}-readback")
    timers: list[threading.Timer] = []
    complete = False
    events: list[ScheduledEvent] = []  # the simulation's, once the services are up
    #: per ally, the positions (send order) of the events released to it
    releases: dict[str, list[int]] = {}
    sent_at: list[float] = []  # monotonic send time of each event sent, in send order
    metrics_server = None
    sent = [0]
    phase = ["starting the ally services"]
    probe: AllyMetricsProbe | None = None

    publish_started = [0.0]

    probe_ports: list[dict[str, int | None]] = [{}]

    def status() -> Status:
        nonlocal probe
        if probe is not None and fleet.restarts and fleet.http_ports != probe_ports[0]:
            probe_ports[0] = fleet.http_ports  # a restarted service serves on a new port
            probe = AllyMetricsProbe(probe_ports[0], host=settings.host)
        figures = {} if probe is None else probe.read()
        # the allies' own consumer lag, or the wait of the oldest event sent and not delivered
        lag_s = (
            max(
                *(f.lag_s for f in figures.values()),
                _oldest_wait_s(figures, releases, sent_at, fleet.restarts),
            )
            if figures
            else None
        )
        eta_s = None
        if phase[0] == "publishing" and speed is not None:
            # a paced schedule: the time left is the scenario's, not remaining / recent rate
            eta_s = max(scenario.duration_s / speed - (time.monotonic() - publish_started[0]), 0.0)
        return Status(
            phase=phase[0],
            sent=sent[0],
            total=len(events),
            delivered={a: f.delivered for a, f in figures.items()},
            lag_s=lag_s,
            eta_s=eta_s,
        )

    display: Progress | NullProgress = (
        Progress(status, label=f"run {run.run_id}")
        if progress and status_line
        else NullProgress(quiet=not progress)
    )
    fleet.announce = display.say
    try:
        fleet.start()
        events, simulated_s, cached = simulation.result()
        if announce is not None:
            how = "read from the simulation cache" if cached else "simulated"
            announce(f"run {run.run_id}: {len(events):,} events {how} in {simulated_s:.1f} s")
        # The run's own release check, as the allies decide (the direct topology's allies
        # withhold the rest themselves).
        releases.update(
            (
                ally.value,
                [i for i, item in enumerate(events) if withhold_reason(ally, item.event, policy) is None],
            )
            for ally in ALLIES
        )
        # alerts come from each nation's fused tracks (own keys): matched to launches for the report
        fused = fused_tracks_by_launch(scenario, events)
        probe_ports[0] = fleet.http_ports
        probe = AllyMetricsProbe(probe_ports[0], host=settings.host)
        if progress:
            print(f"run {run.run_id}: allies ready, one process each", flush=True)
            print(live_pages_text(fleet.http_ports, settings.host), flush=True)

        def count_sent(event: WarningEvent) -> None:
            sent_at.append(time.monotonic())
            sent[0] += 1

        with display:
            publish_started[0] = time.monotonic()
            phase[0] = "publishing"
            for kill in kills:
                timer = threading.Timer(kill.at_s, _kill_now, args=(fleet, kill, display))
                timer.daemon = True
                timers.append(timer)
                timer.start()
            # The simulated events stay alive while they are published (a salvo's: ~440,000
            # objects the collector tracks). A full collection walked them all holding the GIL,
            # up to half a second, stalling the sensors' Kafka IO thread mid-salvo; frozen (before
            # that thread starts), they are not walked.
            # The sensors' process on its own CPU while it publishes (the fleet was placed
            # already; trilink.runtime.cpu_for says why).
            with gc_tuned(), pinned(cpu_for("run", settings.cpu_pinning)):
                publisher = SensorPublisher(bootstrap, client_id=f"trilink-sensors-{run.run_id}")
                # The run's producer /metrics, announced to the local Prometheus like `trilink
                # sensors`; kept up until the allies drained so the last counts are scraped too.
                metrics_server = serve_producer_metrics(publisher, run, scenario, settings)
                try:
                    # Encoded before the clock starts (~1 s for a salvo): the paced loop then
                    # only stamps and sends, and the salvo's peak carries no encoding.
                    outbound = publisher.prepare(events)
                    gc.freeze()  # the prepared records as well
                    report = publisher.publish(outbound, speed=speed, on_sent=count_sent)
                finally:
                    publisher.close()
            # Events leave in order, so the sent ones are the first ``report.sent``.
            for ally in ALLIES:
                sent_released = releases[ally.value][: bisect.bisect_left(releases[ally.value], report.sent)]
                expected[ally.value] = len(sent_released)
                released[ally.value] = {events[i].event.header.event_id for i in sent_released}
            display.say(
                f"run {run.run_id}: published {report.acknowledged}/{report.sent} events in "
                f"{report.wall_s:.1f} s; waiting for the allies to deliver"
            )
            phase[0] = "waiting for the allies"
            # Every record of the run reaches every ally, which delivers or withholds it; through
            # the hub, an ally's feed holds only what is released to it.
            complete = fleet.wait_settled(
                {ally.value: expected[ally.value] if fleet.with_hub else report.sent for ally in ALLIES},
                DRAIN_TIMEOUT_S,
            )
    finally:
        for timer in timers:
            timer.cancel()
        try:
            allies = fleet.stop()
        finally:
            if metrics_server is not None:
                stop_producer_metrics(metrics_server, run, settings)
            # The run's groups served this run only (its report is built from the services' own).
            delete_groups_at(bootstrap, run_groups, client_id=f"trilink-run-{run.run_id}")
    # Every ally topic read back (headers only): the run's own check, whatever its services
    # counted, that each ally got each event released to it exactly once.
    ally_topics = readback.check(fleet.instance_id, released)
    missing = [a.value for a in ALLIES if a.value not in allies]
    if fleet.with_hub and fleet.hub_report is None:
        missing.append("hub")
    if missing:
        raise RunError("ally_failed", f"no report from the {', '.join(missing)} service(s): the process died")
    result = RunResult(
        scenario=scenario.name,
        run_id=run.run_id,
        bootstrap=bootstrap,
        speed=speed,
        publish=report,
        expected=expected,
        allies=allies,
        complete=complete and all(check.clean for check in ally_topics.values()),
        topology="hub" if fleet.with_hub else "direct",
        hub=fleet.hub_report,
        ally_topics=ally_topics,
        kills=list(kills),
        restarts=dict(fleet.restarts),
    )
    result.launches = _first_warnings(scenario, run, allies, fused)
    return result


def _simulate_in_background(
    scenario: Scenario, run: Run, cache_dir: Path | None
) -> Future[tuple[list[ScheduledEvent], float, bool]]:
    """Start simulating ``scenario`` for ``run`` on a thread (or reading its events from the
    simulation cache in ``cache_dir``, :mod:`producers.simulation_cache`); the future gives (the
    events, the seconds it took, whether they came from the cache), or raises what the
    simulation raised. The thread is a daemon (not an executor's, which the interpreter joins at
    exit): a run that fails before it needs the events does not wait for them."""
    future: Future[tuple[list[ScheduledEvent], float, bool]] = Future()

    def work() -> None:
        started = time.monotonic()
        try:
            simulated = simulate_cached(scenario, cache_dir)
            events = list(for_run(simulated.events, run, scenario.start_time))
        except BaseException as exc:  # raised where the run asks for the result
            future.set_exception(exc)
        else:
            future.set_result((events, time.monotonic() - started, simulated.hit))

    threading.Thread(target=work, name=f"trilink-simulate-{run.run_id}", daemon=True).start()
    return future


def _oldest_wait_s(
    figures: Mapping[str, AllyFigures],
    releases: Mapping[str, Sequence[int]],
    sent_at: Sequence[float],
    restarted: Mapping[str, int],
) -> float:
    """How long the oldest event sent but not yet delivered has waited, over the allies: the
    progress line's lag, from the sensors' send through every hop (the hub's queue included,
    which an ally's own consumer lag does not see). An ally's n-th delivery is taken as its
    n-th released event in send order; a restarted ally's count covers its last process only,
    so it is left out."""
    now = time.monotonic()
    worst = 0.0
    for ally, f in figures.items():
        order = releases.get(ally)
        if order is None or restarted.get(ally) or f.delivered >= len(order):
            continue
        position = order[f.delivered]
        if position < len(sent_at):
            worst = max(worst, now - sent_at[position])
    return worst


def _kill_now(fleet: Any, kill: Kill, display: Progress | NullProgress) -> None:
    pid = fleet.pids().get(kill.service)
    fleet.kill(kill.service)
    display.say(f"--kill {kill}: sent SIGKILL to the {kill.service} service's process {pid}")


def serve_producer_metrics(
    publisher: SensorPublisher, run: Run, scenario: Scenario, settings: Settings
) -> WSGIServer:
    """Serve the publisher's registry on a free loopback port and announce it to the local
    Prometheus (job ``trilink-sensors``, instance ``sensors-<run id>``), as ``trilink sensors`` does."""
    from prometheus_client import start_http_server

    from trilink.monitoring.discovery import SENSORS_JOB, announce

    server, _ = start_http_server(0, addr=settings.host, registry=publisher.registry)
    try:
        announce(
            SENSORS_JOB,
            f"sensors-{run.run_id}",
            int(server.server_port),
            {"scenario": scenario.name},
            settings,
        )
    except BaseException:
        server.shutdown()
        server.server_close()
        raise
    return server


def stop_producer_metrics(server: WSGIServer, run: Run, settings: Settings) -> None:
    """Withdraw the run's producer target, then stop serving its /metrics."""
    from trilink.monitoring.discovery import SENSORS_JOB, withdraw

    withdraw(SENSORS_JOB, f"sensors-{run.run_id}", settings)
    server.shutdown()
    server.server_close()


def live_pages_text(ports: dict[str, int | None], host: str) -> str:
    """The allies' live pages (``/`` of each service's HTTP port), one line each."""
    lines = ["live pages (one per ally, served by its service while the run lasts):"]
    lines += [f"  {ally}  http://{host}:{port}/" for ally, port in ports.items() if port]
    return "\n".join(lines)


def _alter_offsets_retrying(
    admin: Any, group_id: str, offsets: dict[Any, Any], timeout_s: float = 30.0
) -> Any:
    """``alter_group_offsets``, retried while the broker says so (a fresh broker's group
    coordinator needs a moment to load the offsets topic)."""
    from kafka.errors import KafkaError

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return admin.alter_group_offsets(group_id, offsets)
        except KafkaError as exc:
            if not getattr(exc, "retriable", False) or time.monotonic() > deadline:
                raise RunError(
                    "offset_pin_failed", f"could not set the start offsets of {group_id}: {exc!r}"
                ) from exc
            time.sleep(0.5)


def pin_groups_to_end(bootstrap: str, group_ids: list[str], topics: tuple[str, ...]) -> None:
    """Commit the current end offset of every partition of ``topics`` for each (new) group."""
    from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
    from kafka.structs import OffsetAndMetadata

    from trilink.platform.clients import admin_config, consumer_config

    consumer: Any = KafkaConsumer(**consumer_config(bootstrap, None, "trilink-run-offsets"))
    admin: Any = KafkaAdminClient(**admin_config(bootstrap, "trilink-run-offsets"))
    try:
        partitions = [
            TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())
        ]
        ends = consumer.end_offsets(partitions)
        offsets = {tp: OffsetAndMetadata(offset, "", -1) for tp, offset in ends.items()}
        for group_id in group_ids:
            errors = _alter_offsets_retrying(admin, group_id, offsets)
            failed = {
                f"{tp.topic}/{tp.partition}": err.__name__ for tp, err in errors.items() if err.errno != 0
            }
            if failed:
                raise RunError(
                    "offset_pin_failed", f"could not set the start offsets of {group_id}: {failed}"
                )
    finally:
        consumer.close()
        admin.close()


def _first_warnings(
    scenario: Scenario, run: Run, allies: dict[str, AllyReport], fused: dict[str, list[str]] | None = None
) -> list[LaunchWarnings]:
    """Per launch and ally: launch -> first detection / first alert, sensor and pipeline shares.
    Alerts are issued on the nations' fused tracks: ``fused`` gives their keys per launch."""
    rows = []
    for launch in scenario.launches:
        key = run.key(correlation_key(scenario, launch))
        launch_ns = datetime_ns(run.start_time) + int(launch.offset_s * 1e9)
        cells: dict[str, AllyFirstWarnings] = {}
        for ally, rep in allies.items():
            firsts = rep.launches.get(key)
            alerts = [
                f.first_alert
                for k in [key, *(fused or {}).get(launch.id, [])]
                if (f := rep.launches.get(k)) is not None and f.first_alert is not None
            ]
            cells[ally] = AllyFirstWarnings(
                first_launch_detection=_shares(
                    None if firsts is None else firsts.first_launch_detection, launch_ns
                ),
                first_alert=_shares(min(alerts, key=lambda a: a.emitted_at_ns, default=None), launch_ns),
            )
        rows.append(
            LaunchWarnings.model_validate(
                {"launch": launch.id, "correlation_key": key, "class": launch.missile_class.value, **cells}
            )
        )
    return rows


def _shares(first: FirstDeliveryReport | None, launch_ns: int) -> PipelineShares | None:
    if first is None:
        return None
    return PipelineShares(
        sensor_id=first.sensor_id,
        sensor_share_s=round((first.emitted_at_ns - launch_ns) / 1e9, 3),
        pipeline_share_ms=None if first.pipeline_s is None else round(first.pipeline_s * 1000, 3),
    )


# ---------------------------------------------------------------------------------------- output


def _shares_text(shares: PipelineShares | None) -> str:
    if shares is None:
        return "-"
    pipeline = "-" if shares.pipeline_share_ms is None else f"{shares.pipeline_share_ms:.1f} ms"
    return f"{shares.sensor_share_s:.1f} s + {pipeline}"


def print_result(result: RunResult, out: Any = None) -> None:
    """The run's closing text: per ally counts and hops, first warnings, faults, ally topics.
    ``out``: where to (None: ``sys.stdout`` as it is when called)."""
    out = sys.stdout if out is None else out
    p = result.publish
    speed = "as fast as possible" if result.speed is None else f"x{result.speed:.3g}"
    print(
        f"\nscenario {result.scenario}, run {result.run_id} ({speed}): published {p.acknowledged} events "
        f"in {p.wall_s:.1f} s via {result.bootstrap}",
        file=out,
    )
    if result.hub is not None:
        print("", *result.hub.lines(), sep="\n", file=out)
    for ally, rep in result.allies.items():
        c = rep.counts
        delivered = {ch: sum(v.values()) for ch, v in c.delivered.items()}
        print(
            f"\n[{ally}] received {sum(c.received.values())}  withheld (not releasable) "
            f"{sum(c.withheld.values())}  duplicates suppressed {c.duplicates_suppressed}  "
            f"dead-lettered {sum(c.dead_letters.values())}  delivered "
            + " ".join(f"{ch} {n}" for ch, n in delivered.items())
            + f"  (expected {result.expected[ally]})",
            file=out,
        )
        print(*hop_table(rep.latency_row), sep="\n", file=out)
        acks = rep.acknowledgements
        if acks is not None:
            print(f"  {ack_line(acks)}", file=out)
            for warning in acks.unacknowledged_listed[:10]:
                print(
                    f"    never acknowledged by {','.join(warning.missing)}: {warning.kind} "
                    f"{warning.event_id} ({warning.correlation_key})",
                    file=out,
                )
    print(
        "\nfirst warnings per launch (sensor share on the simulated clock + pipeline share on the wall clock):",
        file=out,
    )
    for launch in result.launches:
        parts = []
        for ally in result.allies:
            cell = launch.for_ally(ally)
            det = None if cell is None else cell.first_launch_detection
            alert = None if cell is None else cell.first_alert
            parts.append(f"{ally}: detect {_shares_text(det)}, alert {_shares_text(alert)}")
        print(f"  {launch.launch:>4s} {launch.missile_class:5s} " + " | ".join(parts), file=out)
    if result.kills or result.restarts:
        restarted = ", ".join(f"{name} {n}x" for name, n in sorted(result.restarts.items())) or "none"
        print(
            f"\nfaults: killed {', '.join(map(str, result.kills)) or 'none on purpose'}; restarted by the "
            f"run's supervisor: {restarted} (a restarted service's counts and latencies above cover "
            "its last process only; the ally topics below cover the whole run)",
            file=out,
        )
    if result.ally_topics:
        print("\nally topics read back (this run's services, headers only):", file=out)
        for ally, check in result.ally_topics.items():
            print(f"  {check.line(ally)}", file=out)
            if check.missing_listed:
                print(f"    missing: {', '.join(check.missing_listed)}", file=out)
    if not result.complete:
        print(
            "\nINCOMPLETE: an ally did not deliver everything it was sent within the drain timeout, "
            "or its ally topic does not hold each released event exactly once",
            file=out,
        )


def ack_line(acks: AckSummary) -> str:
    """One line on the three-way acknowledgement of the warnings one ally delivered."""
    missing = ", ".join(f"{a} {n}" for a, n in sorted(acks.unacknowledged_by_ally.items()))
    return (
        f"three-way acknowledgement: {acks.acknowledged_by_all} warning(s) acknowledged by every ally "
        f"they were released to, {acks.unacknowledged} not" + (f" (missing: {missing})" if missing else "")
    )


class AllySummary(BaseModel):
    """One line of the closing summary of a run: what an ally got and how fast."""

    ally: str
    delivered: int
    expected: int
    withheld: int
    end_to_end_p50_ms: float | None
    end_to_end_p99_ms: float | None
    #: launch -> first warning (first launch detection delivered on any channel): sensor share
    #: (simulated clock) + pipeline share (wall clock), median and worst over the launches
    first_warning_median_s: float | None
    first_warning_worst_s: float | None
    launches_warned: int
    launches: int


def summarize(report: RunReport) -> list[AllySummary]:
    """Per ally: delivered (Kafka channel), withheld, end-to-end p50/p99, launch-to-first-warning."""
    rows = []
    for ally, rep in report.allies.items():
        e2e = rep.latency_row("end_to_end", "kafka")
        firsts = []
        for launch in report.launches:
            cell = launch.for_ally(ally)
            det = None if cell is None else cell.first_launch_detection
            if det is not None:
                firsts.append(det.sensor_share_s + (det.pipeline_share_ms or 0.0) / 1000)
        firsts.sort()
        rows.append(
            AllySummary(
                ally=ally,
                # read back from the ally topic when the run did (a restarted service's own
                # count covers its last process only)
                delivered=check.found
                if (check := report.ally_topics.get(ally))
                else rep.delivered_total("kafka"),
                expected=report.expected_deliveries.get(ally, 0),
                withheld=sum(rep.counts.withheld.values()),
                end_to_end_p50_ms=None if e2e is None else e2e.p50_ms,
                end_to_end_p99_ms=None if e2e is None else e2e.p99_ms,
                first_warning_median_s=statistics.median(firsts) if firsts else None,
                first_warning_worst_s=firsts[-1] if firsts else None,
                launches_warned=len(firsts),
                launches=len(report.launches),
            )
        )
    return rows


def render_summary(rows: list[AllySummary]) -> str:
    """The closing table of ``trilink run`` / ``make demo``."""

    def num(value: float | None, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    lines = [
        f"{'ally':<4} {'delivered':>9} {'expected':>8} {'withheld':>8} {'e2e p50 ms':>10} {'e2e p99 ms':>10} "
        f"{'first warning (median / worst, launches)':>40}",
    ]
    for r in rows:
        warning = (
            f"{num(r.first_warning_median_s, '.1f')} s / {num(r.first_warning_worst_s, '.1f')} s, "
            f"{r.launches_warned}/{r.launches}"
        )
        lines.append(
            f"{r.ally:<4} {r.delivered:>9} {r.expected:>8} {r.withheld:>8} "
            f"{num(r.end_to_end_p50_ms, '.2f'):>10} {num(r.end_to_end_p99_ms, '.2f'):>10} {warning:>40}"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------- CLI


def register(subparsers: Any) -> None:
    run = subparsers.add_parser(
        "run",
        help="play a scenario through the broker, the sensors and the three ally services",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument(
        "scenario",
        nargs="?",
        default="single_srbm",
        help="scenario file or shipped name (default single_srbm)",
    )
    _run_options(run)
    run.set_defaults(handler=_run)

    demo = subparsers.add_parser("demo", help="the main job of `make demo`: `trilink run salvo`")
    _run_options(demo)
    demo.set_defaults(handler=_demo, scenario="salvo")


def _run_options(parser: argparse.ArgumentParser) -> None:
    pace = parser.add_mutually_exclusive_group()
    pace.add_argument(
        "--speed",
        type=float,
        help=f"simulated seconds per wall second (default: fit the scenario into {DEFAULT_PUBLISH_WALL_S:.0f} s)",
    )
    pace.add_argument("--fast", action="store_true", help="publish as fast as possible")
    parser.add_argument(
        "--brokers", type=int, choices=(1, 3), default=1, help="size of a local cluster started for the run"
    )
    parser.add_argument("--report", type=Path, metavar="FILE.json", help="also write the report as JSON")
    parser.add_argument(
        "--audit-dir", type=Path, help="where the allies' audit files go (default: a temp dir)"
    )
    parser.add_argument(
        "--monitoring",
        action="store_true",
        help="also start a local Prometheus scraping the run (if installed)",
    )
    parser.add_argument(
        "--html",
        type=Path,
        metavar="FILE.html",
        help="write the HTML report (plots inline) here (demo default: .trilink/reports/<scenario>-<run>.html)",
    )
    parser.add_argument(
        "--kill",
        type=_kill_argument,
        action="append",
        default=[],
        metavar="SERVICE@SECONDS",
        help="SIGKILL a service's process (us, jp, kr or hub) this many seconds after publishing "
        "starts, as a crash would; the run restarts it and checks the ally topics (repeatable)",
    )
    parser.add_argument(
        "--no-progress",
        action="store_true",
        help="no live status line or periodic progress lines (the other lines stay)",
    )


def _kill_argument(text: str) -> Kill:
    try:
        return Kill.parse(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


def default_html_path(report: RunReport, settings: Settings | None = None) -> Path:
    """Where ``trilink demo`` writes its HTML report: ``<state dir>/reports/<scenario>-<run id>.html``."""
    state_dir = (settings or get_settings()).state_dir
    return state_dir / "reports" / f"{report.scenario}-{report.run_id}.html"


def _run(args: argparse.Namespace, *, html_by_default: bool = False) -> int:
    scenario = load_scenario(args.scenario)
    if args.speed is not None and args.speed <= 0:
        raise ConfigError("bad_speed", f"--speed must be positive, got {args.speed}")
    speed = None if args.fast else args.speed or max(1.0, scenario.duration_s / DEFAULT_PUBLISH_WALL_S)
    if args.monitoring:
        from trilink.platform.cli import start_monitoring_or_explain

        print(f"Prometheus: {start_monitoring_or_explain()}")
    result = run_pipeline(
        scenario,
        speed=speed,
        brokers=args.brokers,
        audit_dir=args.audit_dir,
        status_line=not args.no_progress,
        kills=args.kill,
    )
    print_result(result)
    report = result.report()
    print(
        "\nsummary (delivered = this run's events on the ally topic; first warning = launch -> first detection):"
    )
    print(render_summary(summarize(report)))
    restarted = sorted(a for a in report.restarts if a in report.allies)
    if restarted:
        print(
            f"({', '.join(restarted)} restarted during the run: delivered is read back from the ally "
            "topic; the latency and first-warning columns cover the last process only)"
        )
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(report.model_dump_json(indent=2))
        print(f"\nreport: {args.report}")
    html_path: Path | None = args.html or (default_html_path(report) if html_by_default else None)
    if html_path is not None:
        from trilink.report_html import write_html

        write_html(report, html_path)
        print(f"\nHTML report: {html_path.resolve()}")
    return 0 if result.complete and result.publish.failed == 0 else 1


def _demo(args: argparse.Namespace) -> int:
    return _run(args, html_by_default=True)
