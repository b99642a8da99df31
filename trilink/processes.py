"""Supervision of the processes trilink starts and leaves running (the Kafka brokers, Prometheus):
is a recorded pid still the process we started, and stopping it politely, then firmly.

A pid from a state file may have been recycled by an unrelated process since; a process is
taken to be ours only while it is alive (not a zombie) and its command line holds the arguments
we started it with.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import NamedTuple

from trilink.waiting import wait_until

__all__ = ["ProcStat", "pid_runs", "read_stat", "terminate", "thread_cpu_s", "thread_ids"]

_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


class ProcStat(NamedTuple):
    """What trilink reads from a ``/proc/<pid>/stat`` (or ``/proc/<pid>/task/<tid>/stat``) file."""

    state: str  # "R", "S", ... "Z" for a zombie
    ppid: int
    cpu_s: float  # user + system CPU time: all threads of a process, or the one thread of a task


def read_stat(path: str | Path) -> ProcStat:
    """Parse a ``stat`` file of ``/proc``; raises ``OSError`` when it is gone."""
    text = Path(path).read_text()
    fields = text[text.rfind(")") + 2 :].split()  # after the command name, which may hold anything
    return ProcStat(fields[0], int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICKS_PER_S)


def thread_ids(pid: int) -> list[int]:
    """The thread ids of ``pid`` now (``/proc/<pid>/task``); empty when the process is gone.
    A thread may end before its caller gets to it."""
    try:
        return [int(tid) for tid in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return []


def thread_cpu_s() -> dict[str, float]:
    """CPU seconds (user + system) of each live thread of this process, by Python thread name
    (``native-<tid>`` for a thread Python does not know); threads of one name are summed."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    out: dict[str, float] = {}
    for tid in thread_ids(os.getpid()):
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            name = names.get(tid, f"native-{tid}")
            out[name] = out.get(name, 0.0) + read_stat(f"/proc/self/task/{tid}/stat").cpu_s
    return out


def pid_runs(pid: int | None, *argv_items: bytes) -> bool:
    """True when ``pid`` is alive (not a zombie) and every one of ``argv_items`` is an argument
    of its command line (``/proc/<pid>/cmdline``)."""
    if pid is None:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        state = read_stat(f"/proc/{pid}/stat").state
    except OSError:
        return False
    if state == "Z":  # a zombie has exited already
        return False
    return all(item in cmdline for item in argv_items)


def terminate(
    pids: Iterable[int], still_ours: Callable[[int], bool], timeout_s: float, poll_s: float = 0.05
) -> list[int]:
    """Send SIGTERM to every pid, wait up to ``timeout_s`` until ``still_ours`` is false for all,
    then SIGKILL those still running. Returns the pids that had to be killed."""
    pids = list(pids)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    wait_until(lambda: not any(still_ours(pid) for pid in pids), timeout_s, poll_s)
    killed = [pid for pid in pids if still_ours(pid)]
    for pid in killed:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return killed
