"""Process supervision (trilink/processes.py) on real child processes."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from trilink.processes import pid_runs, read_stat, terminate, thread_cpu_s

pytestmark = pytest.mark.integration

_IGNORES_SIGTERM = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"
_SLEEPS = "import time; print('ready', flush=True); time.sleep(60)"


@pytest.fixture
def spawn() -> Iterator[Callable[[str], subprocess.Popen[str]]]:
    children: list[subprocess.Popen[str]] = []

    def start(code: str) -> subprocess.Popen[str]:
        child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        children.append(child)
        assert child.stdout is not None and child.stdout.readline() == "ready\n"
        return child

    yield start
    for child in children:
        child.kill()
        child.wait(timeout=10)
        if child.stdout is not None:
            child.stdout.close()


def _ours(child: subprocess.Popen[str], code: str) -> bool:
    if child.poll() is not None:  # reaped: gone (a zombie counts as gone too)
        return False
    return pid_runs(child.pid, code.encode())


def test_pid_runs_checks_the_command_line(spawn: Callable[[str], subprocess.Popen[str]]) -> None:
    child = spawn(_SLEEPS)
    assert pid_runs(child.pid, b"-c", _SLEEPS.encode())
    assert not pid_runs(child.pid, b"kafka.Kafka")  # a recycled pid is not ours
    assert not pid_runs(None)


def test_terminate_stops_politely_then_kills(spawn: Callable[[str], subprocess.Popen[str]]) -> None:
    polite = spawn(_SLEEPS)
    stubborn = spawn(_IGNORES_SIGTERM)
    codes = {polite.pid: (polite, _SLEEPS), stubborn.pid: (stubborn, _IGNORES_SIGTERM)}
    killed = terminate(codes, lambda pid: _ours(*codes[pid]), timeout_s=1.0)
    assert killed == [stubborn.pid]
    assert polite.wait(timeout=10) != 0 and stubborn.wait(timeout=10) == -9
    assert not pid_runs(polite.pid, _SLEEPS.encode())


_SPINS_THEN_SLEEPS = (
    "import time; end = time.process_time() + 0.3\n"
    "while time.process_time() < end: pass\n"
    "print('ready', flush=True); time.sleep(60)"
)


def test_read_stat_gives_the_parent_and_the_cpu_time(spawn: Callable[[str], subprocess.Popen[str]]) -> None:
    child = spawn(_SPINS_THEN_SLEEPS)
    stat = read_stat(f"/proc/{child.pid}/stat")
    assert stat.ppid == os.getpid()
    assert 0.25 <= stat.cpu_s < 5.0  # it spun 0.3 s of CPU (clock ticks: 10 ms) and then slept
    time.sleep(0.05)
    assert read_stat(f"/proc/{child.pid}/stat").state == "S"
    child.kill()
    child.wait(timeout=10)
    with pytest.raises(FileNotFoundError):  # reaped: its /proc entry is gone
        read_stat(f"/proc/{child.pid}/stat")


def test_thread_cpu_s_names_each_thread_and_counts_its_cpu() -> None:
    spun, release = threading.Event(), threading.Event()

    def spin() -> None:
        end = time.thread_time() + 0.3  # this thread's own CPU clock
        while time.thread_time() < end:
            pass
        spun.set()
        release.wait(10)

    spinner = threading.Thread(target=spin, name="bench-spinner")
    spinner.start()
    try:
        assert spun.wait(10)
        cpu = thread_cpu_s()
    finally:
        release.set()
        spinner.join()
    assert 0.25 <= cpu["bench-spinner"] < 5  # /proc counts in clock ticks (10 ms)
    assert "MainThread" in cpu
