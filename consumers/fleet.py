"""The three ally services as subprocesses, one each, driven from one parent; in the hub
topology (``TRILINK_TOPOLOGY=hub``) the US hub (:mod:`consumers.hub`) runs as a fourth
process, started and ready before the allies.

Used by ``trilink run`` and ``trilink loadtest``. Subprocesses, not threads: each service
decodes, checks policy and produces in Python, so three of them (plus the sensors) in one
interpreter would measure the GIL rather than the pipeline; and kafka-python 3.0 has been
seen to leave a consumer-group rebalance hanging when several group consumers share one
process. Each child runs an unmodified :class:`consumers.service.AllyService` and answers
two messages on its pipe: ``settled`` (records it is done with: delivered and acknowledged
on its Kafka channel, withheld, suppressed as duplicates or dead-lettered) and ``stop``
(then it stops cleanly and sends its report).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from consumers.hub import HubReport
from consumers.ledger import AllyReport
from trilink.errors import TrilinkError
from trilink.runtime import cpu_for, pin_process
from trilink.settings import get_settings
from trilink.waiting import wait_until

_CONTEXT = multiprocessing.get_context("spawn")

log = logging.getLogger(__name__)


class FleetError(TrilinkError):
    """An ally service process did not start or become ready (reason ``allies_not_ready``)."""


def _serve(ally: str, bootstrap: str, options: dict[str, Any], cpu: int | None, conn: Any) -> None:
    """Child process: run one ally service until the parent says ``stop``, then send its report."""

    def make() -> Any:
        from consumers.service import AllyService

        return AllyService(ally, bootstrap, **options)

    _run_child(f"ally-{ally.lower()}", make, settled_count, cpu, conn)


def _serve_hub(bootstrap: str, options: dict[str, Any], cpu: int | None, conn: Any) -> None:
    """Child process: run the US hub until the parent says ``stop``, then send its report."""

    def make() -> Any:
        from consumers.hub import HubService

        return HubService(bootstrap, **options)

    _run_child("hub", make, lambda service: service.settled_count(), cpu, conn)


def _run_child(
    log_name: str, make: Callable[[], Any], settled: Callable[[Any], int], cpu: int | None, conn: Any
) -> None:
    """The child side of the pipe protocol, for an ally service and the hub alike: pin itself to
    ``cpu`` (None: as it is) before any of its threads start, start, say ``ready`` (or why
    not), answer ``settled`` with ``settled(service)``, and on ``stop`` (or when the service
    ends) stop and send ``report``."""
    pin_process(os.getpid(), cpu)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the parent, which stops us cleanly
    from trilink.logs import setup_logging

    setup_logging(log_name)  # the client library's records to a file, not the terminal
    from trilink.runtime import tune_service

    try:
        service = make()
        service.start()
        tune_service()
    except Exception as exc:
        conn.send(("ready", False, f"{type(exc).__name__}: {exc}", None))
        return
    ready = service.wait_ready(60.0)
    conn.send(
        (
            "ready",
            ready,
            None if ready else f"not ready in 60 s (error: {service.error!r})",
            service.http_port,
        )
    )
    while service.running:
        if not conn.poll(0.2):
            continue
        message = conn.recv()
        if message == "settled":
            conn.send(("settled", settled(service)))
        elif message == "stop":
            break
    service.stop()
    conn.send(("report", service.report()))


def settled_count(service: Any) -> int:
    """Records an ally service is done with: delivered (Kafka acks in), withheld, duplicate, dead."""
    return int(
        service.delivered_count("kafka")
        + service.count("withheld")
        + service.count("duplicates_suppressed")
        + service.count("dead_letters")
    )


@dataclass
class _Child:
    ally: str
    process: Any
    conn: Any
    http_port: int | None = None
    #: Said ``ready``: answers ``settled`` from now on.
    ready: bool = False
    #: The consumer group's committed offsets when this process started (supervised allies).
    committed_at_start: dict[Any, int] = field(default_factory=dict)


#: Name of the hub's process among the fleet's children (``kill(HUB)``, ``settled()``).
HUB = "HUB"


def _who(name: str) -> str:
    return "the hub" if name == HUB else f"ally {name}'s service"


#: How often the supervisor looks for a dead child.
_WATCH_INTERVAL_S = 0.5


class AllyFleet:
    """Start one service process per ally (and, in the hub topology, the US hub's process first),
    wait until each owns its partitions, stop, collect reports.

    ``supervise=True``: a thread of the parent restarts a service whose process dies (a crash,
    a kill -9) in its own consumer group, as an operator's process supervisor would, at most
    ``max_restarts`` times per service. The new process resumes from the group's committed
    offsets and rebuilds its de-duplication window from what it already delivered, so nothing is
    lost or delivered twice; :meth:`settled` adds what the dead processes had committed (which
    is why a supervised fleet's groups must have committed offsets when it starts: ``trilink
    run`` pins them). A dead process sends no report: the report :meth:`stop` returns for a
    restarted service covers its last process only (:attr:`restarts` says which)."""

    def __init__(
        self,
        bootstrap: str,
        group_ids: dict[str, str],
        instance_id: str,
        *,
        http: bool = False,
        audit_dir: Path | None = None,
        topology: str | None = None,
        hub_group_id: str | None = None,
        hub_options: dict[str, Any] | None = None,
        supervise: bool = False,
        max_restarts: int = 3,
        **service_options: Any,
    ) -> None:
        self.bootstrap = bootstrap
        self.group_ids = group_ids
        self.allies = tuple(group_ids)
        self.instance_id = instance_id
        self.topology = topology or get_settings().topology
        #: The hub's consumer group (hub topology; ``trilink-hub-<instance id>`` unless given).
        self.hub_group_id = hub_group_id or f"trilink-hub-{instance_id}"
        # Every service is a static member of its group, under the fleet's instance id: a
        # process started again after a crash (by the supervisor, or by :meth:`start_hub`) takes
        # its partitions back as soon as it joins, where a new member waited for the dead one's
        # session to expire (10 s) before the group rebalanced.
        self.options = {
            "instance_id": instance_id,
            "http_port": 0 if http else None,
            "audit_dir": audit_dir,
            "topology": self.topology,
            "static_member": True,
        }
        self.options.update(service_options)
        self.hub_options: dict[str, Any] = {
            "group_id": self.hub_group_id,
            "instance_id": instance_id,
            "http_port": 0 if http else None,
            "static_member": True,
            **({"policy": service_options["policy"]} if "policy" in service_options else {}),
            **(hub_options or {}),
        }
        self._children: list[_Child] = []
        # Placed now, while this process may still use every CPU (``trilink run`` pins itself
        # once the fleet is up, and a restarted hub is placed as the first one was).
        mode = get_settings().cpu_pinning
        self._cpus = {ally: cpu_for(f"ally-{ally}", mode) for ally in self.allies}
        self._cpus[HUB] = cpu_for("hub", mode)
        #: The hub's report once :meth:`stop` collected it (hub topology).
        self.hub_report: HubReport | None = None
        self.supervise = supervise
        self.max_restarts = max_restarts
        #: Per service (ally or ``HUB``): how many times the supervisor restarted its process.
        self.restarts: dict[str, int] = {}
        #: Services whose process died once more than ``max_restarts`` allowed: left dead.
        self.given_up: set[str] = set()
        #: Per ally: records its dead processes had committed (counted into :meth:`settled`).
        self._carried: dict[str, int] = dict.fromkeys(self.allies, 0)
        # One lock for the children and their pipes: the supervisor thread replaces a child
        # while the caller's thread may be asking the others for their counts.
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None
        self._admin: Any = None
        #: Told, in a sentence, when the supervisor finds a service dead and what it did about it.
        self.announce: Callable[[str], None] | None = None

    @property
    def with_hub(self) -> bool:
        return self.topology == "hub"

    def start(self, ready_timeout_s: float = 90.0) -> None:
        self._stopping.clear()
        if self.with_hub:
            self.start_hub(ready_timeout_s)
        started = [self._spawn(ally) for ally in self.allies]
        with self._lock:
            self._children.extend(started)
        deadline = time.monotonic() + ready_timeout_s
        for c in started:
            self._await_ready(c, max(deadline - time.monotonic(), 0.1), ready_timeout_s)
        if self.supervise and self._watcher is None:
            self._watcher = threading.Thread(target=self._watch, name="trilink-fleet-supervisor", daemon=True)
            self._watcher.start()

    def start_hub(self, ready_timeout_s: float = 90.0) -> None:
        """Start the hub's process (again, after :meth:`kill`) and wait until it owns its partitions."""
        hub = self._spawn(HUB)
        with self._lock:
            self._children = [c for c in self._children if c.ally != HUB]
            self._children.insert(0, hub)
        self._await_ready(hub, ready_timeout_s, ready_timeout_s)

    def _spawn(self, name: str) -> _Child:
        """Start the process of one service (an ally, or ``HUB``); not yet waited for."""
        parent, child = _CONTEXT.Pipe()
        if name == HUB:
            target: Callable[..., None] = _serve_hub
            args: tuple[Any, ...] = (self.bootstrap, self.hub_options, self._cpus[HUB], child)
            proc_name = "trilink-hub"
        else:
            target = _serve
            options = {**self.options, "group_id": self.group_ids[name]}
            args = (name, self.bootstrap, options, self._cpus[name], child)
            proc_name = f"trilink-ally-{name}"
        committed = self._committed(self.group_ids[name]) if self.supervise and name != HUB else {}
        proc = _CONTEXT.Process(target=target, args=args, name=proc_name, daemon=True)
        proc.start()
        return _Child(name, proc, parent, committed_at_start=committed)

    def _await_ready(self, c: _Child, wait_s: float, ready_timeout_s: float) -> None:
        """Wait for ``c``'s ``ready`` message; on failure stop the whole fleet and raise."""
        who = _who(c.ally)
        if not c.conn.poll(wait_s):
            self.stop()
            raise FleetError("allies_not_ready", f"{who} not ready in {ready_timeout_s:.0f} s")
        _, ok, error, port = c.conn.recv()
        c.http_port = port
        if not ok:
            self.stop()
            raise FleetError("allies_not_ready", f"{who} did not start: {error}")
        c.ready = True

    # ------------------------------------------------------------------------- supervision

    def _watch(self) -> None:
        """The supervisor thread: restart any service whose process died unasked, one at a time."""
        while not self._stopping.wait(_WATCH_INTERVAL_S):
            with self._lock:
                dead = [c for c in self._children if not c.process.is_alive() and c.ally not in self.given_up]
            for c in dead:
                if self._stopping.is_set():
                    return
                try:
                    fresh = self._revive(c)
                    if fresh is not None:
                        self._await_restarted(fresh)
                except Exception as exc:  # the admin client or a pipe: tried again next round
                    self._tell(f"{_who(c.ally)}: restarting it failed for now ({type(exc).__name__}: {exc})")

    def _revive(self, dead: _Child) -> _Child | None:
        """Replace ``dead`` by a new process of the same service (None: left down)."""
        name = dead.ally
        dead.process.join(1.0)
        who = _who(name)
        if self.restarts.get(name, 0) >= self.max_restarts:
            self.given_up.add(name)
            self._tell(
                f"{who}: process {dead.process.pid} died (exit {dead.process.exitcode}); restarted "
                f"{self.restarts.get(name, 0)} time(s) already, left down"
            )
            return None
        if name != HUB:
            # What the dead process made durable and committed is settled for good; the new
            # process starts from there and counts the rest, re-read records included.
            now = self._committed(self.group_ids[name])
            self._carried[name] += sum(
                max(offset - dead.committed_at_start.get(tp, offset), 0) for tp, offset in now.items()
            )
        self._tell(f"{who}: process {dead.process.pid} died (exit {dead.process.exitcode}); restarting it")
        self.restarts[name] = self.restarts.get(name, 0) + 1
        try:
            fresh = self._spawn(name)
        except Exception as exc:
            self.given_up.add(name)
            self._tell(f"{who}: restart failed ({type(exc).__name__}: {exc}), left down")
            return None
        with self._lock:
            self._children[self._children.index(dead)] = fresh
        return fresh

    def _await_restarted(self, fresh: _Child) -> None:
        """Wait (without the lock: the caller may ask the others meanwhile) for a restarted
        process's ``ready``; until then :meth:`settled` leaves it out."""
        who = _who(fresh.ally)
        if not fresh.conn.poll(90.0):
            # A process that never gets there is found dead by a later round, or makes the
            # caller's wait time out.
            self._tell(f"{who}: restarted process {fresh.process.pid} not ready in 90 s")
            return
        _, ok, error, port = fresh.conn.recv()
        fresh.http_port = port
        if ok:
            fresh.ready = True
            page = f"; its page is now on port {port}" if port and fresh.ally != HUB else ""
            self._tell(f"{who}: restarted as process {fresh.process.pid}, ready{page}")
        else:
            self._tell(f"{who}: restarted process did not start: {error}")

    def _tell(self, line: str) -> None:
        if self.announce is None:
            log.warning("%s", line)
        else:  # the caller shows it; the log file keeps it
            log.info("%s", line)
            self.announce(line)

    def _committed(self, group_id: str) -> dict[Any, int]:
        """The group's committed offsets, per partition (kafka-python's admin client)."""
        if self._admin is None:
            from kafka import KafkaAdminClient

            from trilink.platform.clients import admin_config

            self._admin = KafkaAdminClient(
                **admin_config(self.bootstrap, f"trilink-fleet-{self.instance_id}")
            )
        offsets = self._admin.list_group_offsets({group_id: None}).get(group_id, {})
        return {tp: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}

    @property
    def http_ports(self) -> dict[str, int | None]:
        """The allies' HTTP ports (the hub's is :attr:`hub_http_port`)."""
        return {c.ally: c.http_port for c in self._children if c.ally != HUB}

    @property
    def hub_http_port(self) -> int | None:
        return next((c.http_port for c in self._children if c.ally == HUB), None)

    def kill(self, ally: str) -> None:
        """SIGKILL one ally's process (or the hub's, ``HUB``), as a crash would: it withdraws
        nothing and sends no report (a supervised fleet then restarts it)."""
        with self._lock:
            victims = [c for c in self._children if c.ally == ally and c.process.is_alive()]
        for c in victims:
            c.process.kill()
            c.process.join(5.0)

    def pids(self) -> dict[str, int | None]:
        """Per ally (and ``HUB`` in the hub topology): its process id."""
        with self._lock:
            return {c.ally: c.process.pid for c in self._children}

    @property
    def placement(self) -> dict[str, int | None]:
        """Per ally (and ``HUB``): the CPU its process is pinned to (None: not pinned)."""
        return dict(self._cpus)

    def alive(self) -> dict[str, bool]:
        """Per ally (and ``HUB`` in the hub topology): whether its process runs."""
        with self._lock:
            return {c.ally: c.process.is_alive() for c in self._children}

    def settled(self, timeout_s: float = 10.0) -> dict[str, int]:
        """Per ally: records done with so far (see :func:`settled_count`), its dead processes'
        committed records included (a supervised fleet)."""
        out: dict[str, int] = {}
        with self._lock:
            for c in self._children:
                if not c.ready or not c.process.is_alive():
                    continue
                with contextlib.suppress(BrokenPipeError, OSError, EOFError):
                    c.conn.send("settled")
                    if c.conn.poll(timeout_s):
                        kind, value = c.conn.recv()
                        if kind == "settled":
                            out[c.ally] = int(value) + self._carried.get(c.ally, 0)
        return out

    def wait_settled(self, expected: dict[str, int], timeout_s: float) -> bool:
        """Block until every ally has settled at least its expected count (True) or time runs out
        (False; at once when a service's process died and no supervisor will restart it)."""

        def outcome() -> str | None:
            got = self.settled()
            if self.supervise and self.given_up:
                return "died"
            everyone = self._every_service_up()
            if everyone and all(got.get(ally, -1) >= want for ally, want in expected.items()):
                return "settled"  # (supervised: only with every service up, to report at stop)
            return None if everyone or self.supervise else "died"

        return wait_until(outcome, timeout_s, interval_s=0.2) == "settled"

    def _every_service_up(self) -> bool:
        with self._lock:
            return all(c.ready and c.process.is_alive() for c in self._children)

    def stop(self, timeout_s: float = 45.0) -> dict[str, AllyReport]:
        """Stop every service and return the reports that arrived (an ally that died has none)."""
        self._stopping.set()
        if self._watcher is not None:
            self._watcher.join()  # a restart under way finishes first: its process is stopped too
            self._watcher = None
        with self._lock:
            children, self._children = self._children, []
        for c in children:
            if c.process.is_alive():
                with contextlib.suppress(BrokenPipeError, OSError):
                    c.conn.send("stop")
        reports: dict[str, AllyReport] = {}
        deadline = time.monotonic() + timeout_s
        for c in children:
            try:
                while c.conn.poll(max(deadline - time.monotonic(), 0.1)):
                    message = c.conn.recv()
                    if message[0] == "report":
                        if c.ally == HUB:
                            self.hub_report = message[1]
                        else:
                            reports[c.ally] = message[1]
                        break
            except (EOFError, OSError):
                pass
            c.process.join(max(deadline - time.monotonic(), 1.0))
            if c.process.is_alive():
                c.process.terminate()
                c.process.join(5.0)
        if self._admin is not None:
            with contextlib.suppress(Exception):
                self._admin.close()
            self._admin = None
        return reports
