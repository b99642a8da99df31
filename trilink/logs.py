"""Where log records go: trilink's own warnings to the terminal, everything else to a file.

The Kafka client library logs about its own machinery (connections opened and closed, its IO
loop timing its tasks, a socket read after another thread closed it). That helps when a run
misbehaves and is noise when it does not, so every process of a command (the CLI, each ally
service process, each load-test sender) writes its records to a file of its own under the
state directory, at INFO: ``logs/<command>-<pid>.log`` for the command, and
``logs/<command>-<pid>.<name>-<pid>.log`` for the processes it starts (they find the command's
name in :data:`RUN_ENV`). The terminal gets trilink's own records at WARNING and above only,
one line each (a traceback goes to the file); when the command ends, one line names the files
if they hold warnings the terminal did not show.
"""

from __future__ import annotations

import contextlib
import io
import logging
import multiprocessing.util
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

#: Top-level packages whose records are trilink's own (shown on the terminal from WARNING up).
OWN_PACKAGES: tuple[str, ...] = ("trilink", "schemas", "producers", "consumers")
#: Library loggers kept off the terminal altogether (they do not propagate to the root logger).
LIBRARY_LOGGERS: tuple[str, ...] = ("kafka",)
FILE_LEVEL = logging.INFO
TERMINAL_LEVEL = logging.WARNING
#: Log files kept in the logs directory; older ones are deleted when a process sets up logging.
KEEP_FILES = 200
#: Set by a command for the processes it starts: the stem their log files share with its own.
RUN_ENV = "TRILINK_LOG_RUN"

FILE_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(process)d %(threadName)s] %(message)s"
_RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ([A-Z]+) (\S+) ")
_TRACEBACK = "Traceback (most recent call last):"


def is_own(logger_name: str) -> bool:
    """Whether a record of ``logger_name`` comes from trilink's own code."""
    return logger_name.partition(".")[0] in OWN_PACKAGES


class _TerminalFormatter(logging.Formatter):
    """One line per record: an exception as ``Type: message`` (its traceback is in the file)."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"trilink {record.levelname.lower()} [{record.name}] {record.getMessage()}"
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            line += f" ({type(exc).__name__}: {exc})"
        return line


class _OwnRecords(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return is_own(record.name)


class _LazyFileHandler(logging.FileHandler):
    """A file handler that creates its file, and the directory, with the first record only."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, mode="a", encoding="utf-8", delay=True)

    def _open(self) -> io.TextIOWrapper:
        Path(self.baseFilename).parent.mkdir(parents=True, exist_ok=True)
        return super()._open()


@dataclass
class LogSummary:
    """What a command's log files hold that its terminal did not show in full."""

    files: list[Path] = field(default_factory=list)
    hidden_warnings: int = 0  # records at WARNING and above from libraries (never on the terminal)
    tracebacks: int = 0  # trilink's own records with a traceback (one line on the terminal)


def summarize(files: list[Path]) -> LogSummary:
    """Count, in log files written with :data:`FILE_FORMAT`, what the terminal did not show."""
    summary = LogSummary(files=files)
    for path in files:
        own = False
        try:
            with path.open(encoding="utf-8", errors="replace") as lines:
                for line in lines:
                    match = _RECORD.match(line)
                    if match is not None:
                        level, name = match.groups()
                        own = is_own(name)
                        if not own and level in ("WARNING", "ERROR", "CRITICAL"):
                            summary.hidden_warnings += 1
                    elif own and line.startswith(_TRACEBACK):
                        summary.tracebacks += 1
        except OSError:
            continue
    return summary


@dataclass
class _Saved:
    level: int
    handlers: list[logging.Handler]
    propagate: bool


@dataclass
class LogRouting:
    """What :func:`setup_logging` installed; :meth:`close` names the files and undoes it."""

    path: Path
    stream: TextIO
    leads_run: bool  # this process set RUN_ENV: its processes' files are its to report
    file: logging.FileHandler
    _saved: dict[str, _Saved] = field(default_factory=dict)
    _finalizer: multiprocessing.util.Finalize | None = None
    _closed: bool = False

    def files(self) -> list[Path]:
        """This process's log file and, for a command, those of the processes it started."""
        own = [self.path] if self.path.exists() else []
        if not self.leads_run:
            return own
        return own + sorted(self.path.parent.glob(f"{self.path.stem}.*.log"))

    def note(self) -> str | None:
        """The line naming the files, when they hold what the terminal did not show."""
        if not self.leads_run:
            return None  # the command that started this process reports for it
        summary = summarize(self.files())
        parts = []
        if summary.hidden_warnings:
            parts.append(f"{summary.hidden_warnings} library warning(s) not shown here")
        if summary.tracebacks:
            parts.append(f"{summary.tracebacks} traceback(s)")
        if not parts:
            return None
        where = _display(self.path.parent / f"{self.path.stem}*.log")
        return f"trilink: {', '.join(parts)}: see {where}"

    def close(self) -> None:
        """Print the note (once), detach the handlers and restore the loggers as they were."""
        if self._closed:
            return
        self._closed = True
        if self._finalizer is not None:
            self._finalizer.cancel()
        self.file.flush()
        note = self.note()
        if note is not None:
            with contextlib.suppress(OSError, ValueError):  # the terminal is gone (closed pipe)
                print(note, file=self.stream, flush=True)
        for name, saved in self._saved.items():
            logger = logging.getLogger(name or None)
            logger.setLevel(saved.level)
            logger.handlers[:] = saved.handlers
            logger.propagate = saved.propagate
        self.file.close()
        if self.leads_run:
            os.environ.pop(RUN_ENV, None)


def setup_logging(name: str, *, state_dir: Path | None = None, stream: TextIO | None = None) -> LogRouting:
    """Route this process's log records as the module docstring says; the terminal is ``stream``
    (standard error by default). The file is created with its first record.

    :meth:`LogRouting.close` runs at the latest when the process exits (a ``multiprocessing``
    child included, which skips ``atexit``).
    """
    if state_dir is None:
        from trilink.settings import get_settings

        state_dir = get_settings().state_dir
    directory = state_dir / "logs"
    _prune(directory, KEEP_FILES - 1)
    run = os.environ.get(RUN_ENV)
    stem = f"{_safe(name)}-{os.getpid()}"
    path = directory / (f"{run}.{stem}.log" if run else f"{stem}.log")
    out = stream if stream is not None else sys.stderr

    terminal = logging.StreamHandler(out)
    terminal.setLevel(TERMINAL_LEVEL)
    terminal.addFilter(_OwnRecords())
    terminal.setFormatter(_TerminalFormatter())
    file = _LazyFileHandler(path)
    file.setLevel(FILE_LEVEL)
    file.setFormatter(logging.Formatter(FILE_FORMAT))

    routing = LogRouting(path=path, stream=out, leads_run=run is None, file=file)
    root = logging.getLogger()
    routing._saved[""] = _Saved(root.level, list(root.handlers), root.propagate)
    root.setLevel(FILE_LEVEL)
    root.addHandler(terminal)
    root.addHandler(file)
    for library in LIBRARY_LOGGERS:
        logger = logging.getLogger(library)
        routing._saved[library] = _Saved(logger.level, list(logger.handlers), logger.propagate)
        logger.setLevel(FILE_LEVEL)
        logger.handlers[:] = [file]
        logger.propagate = False
    if routing.leads_run:
        os.environ[RUN_ENV] = stem  # inherited by the processes this one starts
    # multiprocessing runs its finalizers on a child's exit too, where atexit handlers do not run.
    routing._finalizer = multiprocessing.util.Finalize(routing, routing.close, exitpriority=0)
    return routing


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in name) or "trilink"


def _display(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _prune(directory: Path, keep: int) -> None:
    """Delete all but the ``keep`` newest log files (another process may be pruning too)."""
    aged: list[tuple[float, Path]] = []
    try:
        for path in directory.glob("*.log"):
            with contextlib.suppress(OSError):
                aged.append((path.stat().st_mtime, path))
    except OSError:
        return
    aged.sort(reverse=True)
    for _, old in aged[keep:]:
        with contextlib.suppress(OSError):
            old.unlink()
