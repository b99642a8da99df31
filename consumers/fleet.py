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
import multiprocessing
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from consumers.hub import HubReport
from consumers.ledger import AllyReport
from trilink.errors import TrilinkError
from trilink.runtime import cpu_for, pin_process
from trilink.settings import get_settings
from trilink.waiting import wait_until

_CONTEXT = multiprocessing.get_context("spawn")


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


#: Name of the hub's process among the fleet's children (``kill(HUB)``, ``settled()``).
HUB = "HUB"


class AllyFleet:
    """Start one service process per ally (and, in the hub topology, the US hub's process first),
    wait until each owns its partitions, stop, collect reports."""

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
        **service_options: Any,
    ) -> None:
        self.bootstrap = bootstrap
        self.group_ids = group_ids
        self.allies = tuple(group_ids)
        self.instance_id = instance_id
        self.topology = topology or get_settings().topology
        #: The hub's consumer group (hub topology; ``trilink-hub-<instance id>`` unless given).
        self.hub_group_id = hub_group_id or f"trilink-hub-{instance_id}"
        self.options = {
            "instance_id": instance_id,
            "http_port": 0 if http else None,
            "audit_dir": audit_dir,
            "topology": self.topology,
        }
        self.options.update(service_options)
        self.hub_options: dict[str, Any] = {
            "group_id": self.hub_group_id,
            "instance_id": instance_id,
            "http_port": 0 if http else None,
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

    @property
    def with_hub(self) -> bool:
        return self.topology == "hub"

    def start(self, ready_timeout_s: float = 90.0) -> None:
        if self.with_hub:
            self.start_hub(ready_timeout_s)
        for ally in self.allies:
            parent, child = _CONTEXT.Pipe()
            options = {**self.options, "group_id": self.group_ids[ally]}
            proc = _CONTEXT.Process(
                target=_serve,
                args=(ally, self.bootstrap, options, self._cpus[ally], child),
                name=f"trilink-ally-{ally}",
                daemon=True,
            )
            proc.start()
            self._children.append(_Child(ally, proc, parent))
        deadline = time.monotonic() + ready_timeout_s
        for c in self._children:
            if c.ally == HUB:
                continue  # waited for in start_hub
            if not c.conn.poll(max(deadline - time.monotonic(), 0.1)):
                self.stop()
                raise FleetError(
                    "allies_not_ready", f"ally {c.ally} service not ready in {ready_timeout_s:.0f} s"
                )
            _, ok, error, port = c.conn.recv()
            c.http_port = port
            if not ok:
                self.stop()
                raise FleetError("allies_not_ready", f"ally {c.ally} service did not start: {error}")

    def start_hub(self, ready_timeout_s: float = 90.0) -> None:
        """Start the hub's process (again, after :meth:`kill`) and wait until it owns its partitions."""
        self._children = [c for c in self._children if c.ally != HUB]
        parent, child = _CONTEXT.Pipe()
        proc = _CONTEXT.Process(
            target=_serve_hub,
            args=(self.bootstrap, self.hub_options, self._cpus[HUB], child),
            name="trilink-hub",
            daemon=True,
        )
        proc.start()
        hub = _Child(HUB, proc, parent)
        self._children.insert(0, hub)
        if not parent.poll(ready_timeout_s):
            self.stop()
            raise FleetError("allies_not_ready", f"the hub not ready in {ready_timeout_s:.0f} s")
        _, ok, error, port = parent.recv()
        hub.http_port = port
        if not ok:
            self.stop()
            raise FleetError("allies_not_ready", f"the hub did not start: {error}")

    @property
    def http_ports(self) -> dict[str, int | None]:
        """The allies' HTTP ports (the hub's is :attr:`hub_http_port`)."""
        return {c.ally: c.http_port for c in self._children if c.ally != HUB}

    @property
    def hub_http_port(self) -> int | None:
        return next((c.http_port for c in self._children if c.ally == HUB), None)

    def kill(self, ally: str) -> None:
        """SIGKILL one ally's process (or the hub's, ``HUB``), as a crash would: it withdraws
        nothing and sends no report."""
        for c in self._children:
            if c.ally == ally and c.process.is_alive():
                c.process.kill()
                c.process.join(5.0)

    def pids(self) -> dict[str, int | None]:
        """Per ally (and ``HUB`` in the hub topology): its process id."""
        return {c.ally: c.process.pid for c in self._children}

    @property
    def placement(self) -> dict[str, int | None]:
        """Per ally (and ``HUB``): the CPU its process is pinned to (None: not pinned)."""
        return dict(self._cpus)

    def alive(self) -> dict[str, bool]:
        """Per ally (and ``HUB`` in the hub topology): whether its process runs."""
        return {c.ally: c.process.is_alive() for c in self._children}

    def settled(self, timeout_s: float = 10.0) -> dict[str, int]:
        """Per ally: records done with so far (see :func:`settled_count`)."""
        out: dict[str, int] = {}
        for c in self._children:
            if not c.process.is_alive():
                continue
            with contextlib.suppress(BrokenPipeError, OSError, EOFError):
                c.conn.send("settled")
                if c.conn.poll(timeout_s):
                    kind, value = c.conn.recv()
                    if kind == "settled":
                        out[c.ally] = int(value)
        return out

    def wait_settled(self, expected: dict[str, int], timeout_s: float) -> bool:
        """Block until every ally has settled at least its expected count (True) or time runs out."""

        def outcome() -> str | None:
            got = self.settled()
            if all(got.get(ally, -1) >= want for ally, want in expected.items()):
                return "settled"
            return None if all(self.alive().values()) else "died"

        return wait_until(outcome, timeout_s, interval_s=0.2) == "settled"

    def stop(self, timeout_s: float = 45.0) -> dict[str, AllyReport]:
        """Stop every service and return the reports that arrived (an ally that died has none)."""
        for c in self._children:
            if c.process.is_alive():
                with contextlib.suppress(BrokenPipeError, OSError):
                    c.conn.send("stop")
        reports: dict[str, AllyReport] = {}
        deadline = time.monotonic() + timeout_s
        for c in self._children:
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
        self._children = []
        return reports
