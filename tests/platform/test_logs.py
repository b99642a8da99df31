"""Log routing (trilink.logs): the Kafka client library's records go to a file under the state
directory, never to the terminal; trilink's own warnings reach the terminal as one line each;
one last line names the files when they hold warnings the terminal did not show."""

from __future__ import annotations

import io
import logging
import multiprocessing
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from trilink.logs import RUN_ENV, LogRouting, setup_logging, summarize

# The client library's two noisiest records in `make demo`, as kafka-python words them.
SLOW_TASK = (
    "Task <kafka.net.selector.Task object at 0x7f0> ran for 0.143s (>0.100s threshold). "
    "It is blocking the event loop -- likely a tight sync loop inside a coroutine."
)
RECV_ERROR = "<KafkaTCPTransport [none] (closed)>: Error receiving network data closing socket"


@pytest.fixture
def routed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[LogRouting, io.StringIO]]:
    """Logging set up as a command does it, with the terminal in a buffer; undone afterwards."""
    monkeypatch.delenv(RUN_ENV, raising=False)
    terminal = io.StringIO()
    routing = setup_logging("demo", state_dir=tmp_path, stream=terminal)
    try:
        yield routing, terminal
    finally:
        routing.close()


def _library_noise() -> None:
    logging.getLogger("kafka.net.selector").warning(SLOW_TASK)
    try:
        None.recv(4096)  # type: ignore[attr-defined]
    except AttributeError:
        logging.getLogger("kafka.net.transport").exception(RECV_ERROR)
    logging.getLogger("kafka.net.manager").info("Bootstrap complete")


@pytest.mark.unit
def test_library_records_go_to_the_file_and_not_to_the_terminal(
    routed: tuple[LogRouting, io.StringIO],
) -> None:
    routing, terminal = routed
    _library_noise()
    logging.getLogger("consumers.service").warning("ally US: acks missing at a durable point")
    logging.getLogger("trilink.pipeline").info("publishing")
    routing.close()

    shown = terminal.getvalue().splitlines()
    assert shown == [
        "trilink warning [consumers.service] ally US: acks missing at a durable point",
        f"trilink: 2 library warning(s) not shown here: see {routing.path.parent / 'demo-'}{os.getpid()}*.log",
    ]
    written = routing.path.read_text()
    assert routing.path.parent.name == "logs" and routing.path.name == f"demo-{os.getpid()}.log"
    for line in (SLOW_TASK, RECV_ERROR, "AttributeError: 'NoneType' object has no attribute 'recv'"):
        assert line in written
    assert "INFO kafka.net.manager [" in written and "INFO trilink.pipeline [" in written
    assert "acks missing at a durable point" in written


@pytest.mark.unit
def test_close_restores_the_loggers_and_a_quiet_run_prints_nothing(tmp_path: Path) -> None:
    kafka = logging.getLogger("kafka")
    before = (kafka.level, list(kafka.handlers), kafka.propagate, list(logging.getLogger().handlers))
    terminal = io.StringIO()
    routing = setup_logging("run", state_dir=tmp_path, stream=terminal)
    assert os.environ[RUN_ENV] == f"run-{os.getpid()}"
    logging.getLogger("kafka.conn").info("connected")  # INFO only: nothing to point at
    routing.close()
    assert terminal.getvalue() == ""
    assert routing.path.is_file()
    assert (kafka.level, kafka.handlers, kafka.propagate, logging.getLogger().handlers) == before
    assert RUN_ENV not in os.environ


@pytest.mark.unit
def test_own_error_is_one_line_on_the_terminal_with_its_traceback_in_the_file(
    routed: tuple[LogRouting, io.StringIO],
) -> None:
    routing, terminal = routed
    try:
        raise OSError("disk full")
    except OSError:
        logging.getLogger("consumers.audit").exception("ally JP: audit write failed")
    routing.close()
    first, note = terminal.getvalue().splitlines()
    assert first == "trilink error [consumers.audit] ally JP: audit write failed (OSError: disk full)"
    assert note.startswith("trilink: 1 traceback(s): see ")
    assert "Traceback (most recent call last):" in routing.path.read_text()


def _child(state_dir: str) -> None:
    """A process the command starts (as consumers.fleet starts an ally service)."""
    setup_logging("ally-us", state_dir=Path(state_dir))
    _library_noise()
    logging.getLogger("consumers.service").warning("ally US: poll failed (1 in a row)")


@pytest.mark.integration  # starts a process
def test_processes_a_command_starts_log_beside_it_and_the_command_reports_them(
    routed: tuple[LogRouting, io.StringIO], tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    routing, terminal = routed
    child = multiprocessing.get_context("spawn").Process(target=_child, args=(str(tmp_path),))
    child.start()
    child.join(60)
    assert child.exitcode == 0
    routing.close()

    child_terminal = capfd.readouterr().err
    assert "trilink warning [consumers.service] ally US: poll failed (1 in a row)" in child_terminal
    assert "ran for" not in child_terminal and "Traceback" not in child_terminal
    [child_file] = routing.files()  # the command itself logged nothing: no file of its own
    assert child_file.name == f"demo-{os.getpid()}.ally-us-{child.pid}.log"
    assert SLOW_TASK in child_file.read_text()
    assert terminal.getvalue().startswith("trilink: 2 library warning(s) not shown here: see ")


@pytest.mark.integration  # starts the CLI as a process
def test_cli_terminal_shows_trilink_lines_only_when_the_client_library_fails(tmp_path: Path) -> None:
    """Nothing listens on port 1: kafka-python logs a warning or an error per connection attempt."""
    env = {**os.environ, "TRILINK_STATE_DIR": str(tmp_path), "TRILINK_BOOTSTRAP": ""}
    env.pop(RUN_ENV, None)
    done = subprocess.run(
        [sys.executable, "-m", "trilink.cli", "replay", "single_srbm", "--bootstrap", "127.0.0.1:1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert lines[0].startswith("trilink: error [kafka_error]")
    assert lines[-1].startswith("trilink: ") and "library warning(s) not shown here" in lines[-1]
    assert len(lines) == 2, done.stderr
    [log] = (tmp_path / "logs").glob("replay-*.log")
    summary = summarize([log])
    assert summary.hidden_warnings > 0 and f"{summary.hidden_warnings} library warning(s)" in lines[-1]
    assert "ECONNREFUSED" in log.read_text()
