"""The three ally services under test, one subprocess each.

Subprocesses, not threads: an ally service decodes Avro, checks policy and produces to its
own topic in Python, and three of them plus the senders in one interpreter would measure the
GIL rather than the pipeline (this machine has two cores). Each child runs an unmodified
:class:`consumers.AllyService` in its own consumer group (unique per load-test invocation,
starting at the end of the topics) and hands back ``service.report()`` when told to stop.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import signal
import time
from dataclasses import dataclass
from typing import Any

from trilink.loadtest.errors import LoadtestError

_CONTEXT = multiprocessing.get_context("spawn")

#: Ally-topic records per partition read back to rebuild each service's de-duplication window.
_REBUILD_TAIL_PER_PARTITION = 64


def _serve(ally: str, bootstrap: str, group_id: str, instance_id: str, conn: Any) -> None:
    """Child process: run one service until the parent says ``stop``, then send its report."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the parent, which stops us cleanly
    import logging

    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("kafka").setLevel(
        logging.ERROR
    )  # CPU-starved event-loop warnings would drown the progress lines
    from consumers.service import AllyService

    try:
        service = AllyService(
            ally,
            bootstrap,
            group_id=group_id,
            instance_id=instance_id,
            http_port=None,
            offset_reset="latest",
            # Load-test event ids are unique per run, so the de-duplication window needs no history;
            # a short tail keeps start-up quick on a broker whose ally topics hold other runs.
            rebuild_per_partition=_REBUILD_TAIL_PER_PARTITION,
        )
        service.start()
    except Exception as exc:
        conn.send(("ready", False, f"{type(exc).__name__}: {exc}"))
        return
    ready = service.wait_ready(60.0)
    conn.send(("ready", ready, None if ready else f"not ready in 60 s (error: {service.error!r})"))
    while service.running and not conn.poll(0.2):
        pass
    service.stop()
    conn.send(("report", service.report()))


@dataclass
class AllyProcess:
    ally: str
    process: Any
    conn: Any


class AllyFleet:
    """Start the three services, wait until they own their partitions, stop them, collect reports."""

    def __init__(
        self, bootstrap: str, invocation_id: str, allies: tuple[str, ...] = ("US", "JP", "KR")
    ) -> None:
        self.bootstrap = bootstrap
        self.invocation_id = invocation_id
        self.allies = allies
        self.instance_id = f"loadtest-{invocation_id}"
        self.group_ids = {a: f"trilink-loadtest-{invocation_id}-{a.lower()}" for a in allies}
        self._procs: list[AllyProcess] = []

    def start(self, ready_timeout_s: float = 90.0) -> None:
        for ally in self.allies:
            parent, child = _CONTEXT.Pipe()
            proc = _CONTEXT.Process(
                target=_serve,
                args=(ally, self.bootstrap, self.group_ids[ally], self.instance_id, child),
                name=f"trilink-loadtest-ally-{ally}",
                daemon=True,
            )
            proc.start()
            self._procs.append(AllyProcess(ally, proc, parent))
        deadline = time.monotonic() + ready_timeout_s
        for p in self._procs:
            remaining = max(deadline - time.monotonic(), 0.1)
            if not p.conn.poll(remaining):
                self.stop()
                raise LoadtestError(
                    "allies_not_ready", f"ally {p.ally} service not ready in {ready_timeout_s:.0f} s"
                )
            _, ok, error = p.conn.recv()
            if not ok:
                self.stop()
                raise LoadtestError("allies_not_ready", f"ally {p.ally} service did not start: {error}")

    def alive(self) -> dict[str, bool]:
        return {p.ally: p.process.is_alive() for p in self._procs}

    def stop(self, timeout_s: float = 45.0) -> dict[str, dict[str, Any]]:
        """Stop every service and return the reports that arrived (an ally that died has none)."""
        for p in self._procs:
            if p.process.is_alive():
                with contextlib.suppress(BrokenPipeError, OSError):
                    p.conn.send("stop")
        reports: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + timeout_s
        for p in self._procs:
            try:
                while p.conn.poll(max(deadline - time.monotonic(), 0.1)):
                    message = p.conn.recv()
                    if message[0] == "report":
                        reports[p.ally] = message[1]
                        break
            except (EOFError, OSError):
                pass
            p.process.join(max(deadline - time.monotonic(), 1.0))
            if p.process.is_alive():
                p.process.terminate()
                p.process.join(5.0)
        self._procs = []
        return reports
