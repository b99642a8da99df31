"""CPU of a set of processes sampled from ``/proc`` while a benchmark runs (shared by the benches
that measure whole pipelines: ``bench_demo.py``, ``bench_floor_pipeline.py``).

Every ``SAMPLE_S`` the sampler reads each process's CPU time (all its threads) from
``/proc/<pid>/stat``. A process is sampled when its pid was named up front, when its command line
shows a Kafka broker, or when the ``classify`` callback gives it a role (the demo's bench uses
that to find the services ``trilink run`` spawns).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from trilink.processes import read_stat

SAMPLE_S = 0.5
WINDOW_S = 5.0

#: pid -> (parent pid, CPU seconds) of every live process at one sample
Stats = dict[int, tuple[int, float]]


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds of all threads) of ``pid``, None once it is gone."""
    try:
        stat = read_stat(f"/proc/{pid}/stat")
    except OSError:
        return None
    return stat.ppid, stat.cpu_s


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


class CpuSampler:
    """CPU time of the named processes, any Kafka broker, and what ``classify`` recognises."""

    def __init__(
        self,
        roles: dict[int, str],
        classify: Callable[[int, int, Stats], str | None] | None = None,
        default_role: str = "other",
    ) -> None:
        self.roles = dict(roles)
        #: what ``classify`` last said of each other process (it may change its mind, as a
        #: spawned service is recognised once it opens its files)
        self.found: dict[int, str] = {}
        self._classify = classify
        self._default_role = default_role
        self.samples: list[tuple[float, dict[int, float]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        t0 = time.monotonic()
        while not self._stop.wait(SAMPLE_S):
            stats = {
                int(d): s for d in os.listdir("/proc") if d.isdigit() and (s := _stat(int(d))) is not None
            }
            cpu: dict[int, float] = {}
            for pid, (ppid, seconds) in stats.items():
                role = self.roles.get(pid)
                if role is None and "kafka.Kafka" in cmdline(pid):
                    role = self.roles[pid] = f"broker {pid}"
                if role is None and self._classify is not None:
                    role = self._classify(pid, ppid, stats)
                    if role is not None:
                        self.found[pid] = role
                if role is not None:
                    cpu[pid] = seconds
            self.samples.append((time.monotonic() - t0, cpu))

    def role(self, pid: int) -> str:
        return self.roles.get(pid) or self.found.get(pid) or self._default_role

    def totals(self) -> dict[int, float]:
        """CPU seconds each process used while sampled (from 0 for one that started later)."""
        first: dict[int, float] = {}
        last: dict[int, float] = {}
        for i, (_, cpu) in enumerate(self.samples):
            for pid, seconds in cpu.items():
                first.setdefault(pid, seconds if i == 0 else 0.0)
                last[pid] = seconds
        return {pid: last[pid] - first[pid] for pid in last}

    def busiest(self) -> tuple[float, dict[int, float]]:
        """The 5 s window with the most CPU over all sampled processes: (start s, cores each)."""
        steps = max(int(WINDOW_S / SAMPLE_S), 1)
        best: tuple[float, float, dict[int, float]] = (-1.0, 0.0, {})
        for i in range(len(self.samples) - steps):
            (t_a, a), (t_b, b) = self.samples[i], self.samples[i + steps]
            cores = {pid: (b[pid] - a.get(pid, b[pid])) / (t_b - t_a) for pid in b}
            total = sum(cores.values())
            if total > best[0]:
                best = (total, t_a, cores)
        return best[1], best[2]

    def print_table(self, events: int) -> None:
        """Per process: CPU seconds, CPU per event, cores in the busiest 5 s; then the window."""
        totals = self.totals()
        start_s, busiest = self.busiest()
        print(f"{'process':<32} {'CPU s':>7} {'us/event':>9} {'cores, busiest 5 s':>19}")
        for pid, seconds in sorted(totals.items(), key=lambda item: -item[1]):
            if seconds < 0.05:
                continue
            print(
                f"{self.role(pid):<32} {seconds:>7.2f} {1e6 * seconds / max(events, 1):>9.0f} "
                f"{busiest.get(pid, 0.0):>19.2f}"
            )
        print(f"# busiest 5 s window from {start_s:.0f} s: {sum(busiest.values()):.2f} cores in all")
