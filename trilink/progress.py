"""Progress of a long command: one live status line on a terminal, plain periodic lines elsewhere.

``trilink run``/``demo``, ``replay``, ``record``, ``loadtest`` and ``up`` wrap their long step in
a :class:`Progress` fed by a *source*: a function returning a :class:`Status` (phase, events
sent of planned, delivered per ally, lag, free detail). A background thread samples it; the
rate (over the last few seconds of samples) and the ETA are worked out here, so every command
shows them the same way. On a terminal the line is redrawn in place (``\\r`` + erase to the end of
the line, cut to the terminal's width); when the output is a file or a pipe (CI, ``make demo |
tee``) a plain line is printed every ``interval_s`` instead, so logs stay readable.

Sources read what the command already observes (its own counters, the senders' shared
counters) or what the ally services expose anyway (:class:`AllyMetricsProbe` reads their
``/metrics``), so progress adds nothing to any service's hot path.

The line goes to stderr by default: stdout keeps the command's results (``--json`` and the like).
"""

from __future__ import annotations

import contextlib
import re
import shutil
import sys
import threading
import time
import urllib.request
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Self, TextIO

from trilink.monitoring.names import (
    ALLY_CONSUMER_LAG_SECONDS,
    ALLY_EVENTS_DELIVERED,
    ALLY_EVENTS_WITHHELD,
)

if TYPE_CHECKING:
    from trilink.settings import Settings

#: Seconds between redraws of the live line on a terminal.
LIVE_INTERVAL_S = 1.0
#: Seconds between plain lines when the output is not a terminal.
PLAIN_INTERVAL_S = 10.0
#: The rate is measured over the samples of this many last seconds.
RATE_WINDOW_S = 5.0

_ERASE_TO_EOL = "\x1b[K"


@dataclass(frozen=True)
class Status:
    """One sample of a command's progress; a field left None is not shown."""

    phase: str
    #: events sent (or records written) so far, and how many are planned in all
    sent: int | None = None
    total: int | None = None
    #: per ally: events delivered so far
    delivered: Mapping[str, int] = field(default_factory=dict)
    #: how far behind the consumers (or the send schedule) are
    lag_s: float | None = None
    #: when the source knows the time left better than rate x remaining (a paced schedule)
    eta_s: float | None = None
    #: anything else worth a glance ("12 jars", "p99 3.1 ms")
    detail: str = ""
    #: the word for what ``sent`` counts
    unit: str = "sent"


def _count(n: int) -> str:
    return f"{n:,}"


def _duration(seconds: float) -> str:
    seconds = max(seconds, 0.0)
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def render_status(
    status: Status, *, elapsed_s: float, rate_per_s: float | None, eta_s: float | None, label: str = ""
) -> str:
    """The text of one progress line (no newline, no terminal control characters)."""
    parts = [f"{label} {status.phase}".strip()]
    if status.sent is not None:
        done = _count(status.sent)
        if status.total is not None:
            done += f"/{_count(status.total)}"
            if status.total > 0:
                done += f" ({100.0 * min(status.sent / status.total, 1.0):.0f}%)"
        parts.append(f"{status.unit} {done}")
    if rate_per_s is not None:
        parts.append(f"{rate_per_s:,.0f}/s")
    if status.delivered:
        parts.append("delivered " + " ".join(f"{a} {_count(n)}" for a, n in status.delivered.items()))
    if status.lag_s is not None:
        parts.append(f"lag {status.lag_s * 1000:.0f} ms" if status.lag_s < 1 else f"lag {status.lag_s:.1f} s")
    if eta_s is not None:
        parts.append(f"ETA {_duration(eta_s)}")
    if status.detail:
        parts.append(status.detail)
    parts.append(f"{_duration(elapsed_s)} elapsed")
    return " | ".join(parts)


class RateMeter:
    """Events per second over the last :data:`RATE_WINDOW_S` of (time, count) samples."""

    def __init__(self, window_s: float = RATE_WINDOW_S) -> None:
        self.window_s = window_s
        self._samples: deque[tuple[float, int]] = deque()

    def add(self, now_s: float, count: int) -> float | None:
        samples = self._samples
        if samples and count < samples[-1][1]:
            samples.clear()  # a new phase counts from zero again
        samples.append((now_s, count))
        while len(samples) > 2 and now_s - samples[1][0] >= self.window_s:
            samples.popleft()
        first_s, first = samples[0]
        if now_s - first_s < 0.2:
            return None
        return (count - first) / (now_s - first_s)


class Progress:
    """Show a command's progress while its ``with`` block runs (see the module docstring)."""

    def __init__(
        self,
        source: Callable[[], Status],
        *,
        label: str = "",
        out: TextIO | None = None,
        live: bool | None = None,
        interval_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.source = source
        self.label = label
        self.out = out if out is not None else sys.stderr
        self.live = is_terminal(self.out) if live is None else live
        self.interval_s = (
            interval_s if interval_s is not None else (LIVE_INTERVAL_S if self.live else PLAIN_INTERVAL_S)
        )
        self._clock = clock
        self._started = clock()
        self._rate = RateMeter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._shown = False  # a live line is on screen (not yet ended by a newline)
        self.last_line = ""

    # ------------------------------------------------------------ rendering

    def line(self) -> str:
        """Sample the source once and return the rendered line (also kept as :attr:`last_line`)."""
        status = self.source()
        now = self._clock()
        rate = None if status.sent is None else self._rate.add(now, status.sent)
        eta = status.eta_s
        if eta is None and rate and status.sent is not None and status.total is not None:
            eta = max(status.total - status.sent, 0) / rate
        text = render_status(
            status, elapsed_s=now - self._started, rate_per_s=rate, eta_s=eta, label=self.label
        )
        self.last_line = text
        return text

    def tick(self) -> str:
        """Sample and show one line (the thread calls this every ``interval_s``)."""
        text = self.line()
        with self._lock:
            if self.live:
                width = shutil.get_terminal_size((120, 24)).columns
                shown = text if len(text) < width else text[: max(width - 2, 10)] + "…"
                self.out.write(f"\r{shown}{_ERASE_TO_EOL}")
                self._shown = True
            else:
                self.out.write(text + "\n")
            self.out.flush()
        return text

    def say(self, message: str) -> None:
        """Print a message without tearing the live line (it is redrawn at the next tick)."""
        with self._lock:
            if self._shown:
                self.out.write(f"\r{_ERASE_TO_EOL}")
                self._shown = False
            self.out.write(message + "\n")
            self.out.flush()

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self._started = self._clock()
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="trilink-progress", daemon=True)
        self._thread.start()

    def stop(self, final: bool = True) -> None:
        """Stop the thread; leave the last state on screen as a finished line when ``final``."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None
        if final:
            with contextlib.suppress(Exception):
                text = self.line()
                with self._lock:
                    prefix = f"\r{_ERASE_TO_EOL}" if self.live else ""
                    self.out.write(f"{prefix}{text}\n")
                    self._shown = False
                    self.out.flush()
        elif self._shown:
            with self._lock:
                self.out.write("\n")
                self._shown = False
                self.out.flush()

    def _loop(self) -> None:
        # The first line comes soon on a terminal, after one interval elsewhere (no noise for
        # steps that finish quickly).
        first_wait = min(self.interval_s, 0.2) if self.live else self.interval_s
        if self._stop.wait(first_wait):
            return
        while True:
            # A source that fails once (a service busy or gone) must not end the display.
            with contextlib.suppress(Exception):
                self.tick()
            if self._stop.wait(self.interval_s):
                return

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop(final=exc_type is None)


def is_terminal(out: TextIO) -> bool:
    """True when ``out`` is an interactive terminal (a file, pipe or closed stream is not)."""
    try:
        return out.isatty()
    except (AttributeError, ValueError):
        return False


class NullProgress:
    """What a command uses when progress is off: ``say`` prints (unless ``quiet``), nothing else happens."""

    def __init__(self, out: TextIO | None = None, *, quiet: bool = False) -> None:
        self.out = out if out is not None else sys.stderr
        self.quiet = quiet

    def say(self, message: str) -> None:
        if not self.quiet:
            print(message, file=self.out, flush=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


# ---------------------------------------------------------------------------- ally services


_SAMPLE = re.compile(r"^(?P<name>[a-z_]+)\{(?P<labels>[^}]*)\}\s+(?P<value>\S+)")


@dataclass(frozen=True)
class AllyFigures:
    """What one ally service's ``/metrics`` says right now."""

    delivered: int
    withheld: int
    lag_s: float


def parse_ally_metrics(text: str, channel: str = "kafka") -> AllyFigures:
    """Delivered (on ``channel``), withheld and consumer lag from an ally's exposition text."""
    delivered = withheld = 0.0
    lag_s = 0.0
    wanted = (ALLY_EVENTS_DELIVERED.name, ALLY_EVENTS_WITHHELD.name, ALLY_CONSUMER_LAG_SECONDS.name)
    for raw in text.splitlines():
        if not raw.startswith(wanted):
            continue
        match = _SAMPLE.match(raw)
        if match is None:
            continue
        name, labels, value = match["name"], match["labels"], float(match["value"])
        if name == ALLY_EVENTS_DELIVERED.name and f'channel="{channel}"' in labels:
            delivered += value
        elif name == ALLY_EVENTS_WITHHELD.name:
            withheld += value
        elif name == ALLY_CONSUMER_LAG_SECONDS.name:
            lag_s = max(lag_s, value)
    return AllyFigures(int(delivered), int(withheld), lag_s)


class AllyMetricsProbe:
    """Reads the ally services' own ``/metrics`` (their ledgers) for the progress line."""

    def __init__(
        self,
        ports: Mapping[str, int | None] | None = None,
        host: str = "127.0.0.1",
        timeout_s: float = 1.0,
        *,
        targets: Mapping[str, list[str]] | None = None,
    ) -> None:
        """``ports``: one service per ally on ``host``; ``targets``: ally -> ``host:port`` list."""
        self.targets: dict[str, list[str]] = {ally: list(t) for ally, t in (targets or {}).items()}
        for ally, port in (ports or {}).items():
            if port:
                self.targets.setdefault(ally, []).append(f"{host}:{port}")
        self.timeout_s = timeout_s
        self._last: dict[str, AllyFigures] = {}  # per target

    @classmethod
    def announced(cls, settings: Settings | None = None) -> AllyMetricsProbe:
        """Every ally service announced to the local Prometheus (``trilink ally``, ``trilink run``)."""
        from trilink.monitoring.discovery import ALLY_JOB, announced_targets

        targets: dict[str, list[str]] = {}
        for group in announced_targets(settings):
            labels = group.get("labels")
            addresses = group.get("targets")
            if not isinstance(labels, dict) or not isinstance(addresses, list):
                continue
            if labels.get("job") == ALLY_JOB and isinstance(labels.get("ally"), str):
                targets.setdefault(labels["ally"], []).extend(str(a) for a in addresses)
        return cls(targets=targets)

    def read(self) -> dict[str, AllyFigures]:
        """Figures per ally, summed over its instances; one that does not answer keeps its last."""
        out: dict[str, AllyFigures] = {}
        for ally, addresses in self.targets.items():
            for address in addresses:
                try:
                    with urllib.request.urlopen(
                        f"http://{address}/metrics", timeout=self.timeout_s
                    ) as response:
                        text = response.read().decode("utf-8", "replace")
                    self._last[address] = parse_ally_metrics(text)
                except OSError:
                    pass
                figures = self._last.get(address)
                if figures is None:
                    continue
                before = out.get(ally)
                out[ally] = (
                    figures
                    if before is None
                    else AllyFigures(
                        before.delivered + figures.delivered,
                        before.withheld + figures.withheld,
                        max(before.lag_s, figures.lag_s),
                    )
                )
        return out


class DeliveredSince:
    """Deliveries per ally since this object was made (services counting from before a command)."""

    def __init__(self, probe: AllyMetricsProbe) -> None:
        self.probe = probe
        self.start = probe.read()

    def read(self) -> tuple[dict[str, int], float | None]:
        """(delivered per ally since the start, worst consumer lag in seconds or None)."""
        now = self.probe.read()
        delivered = {
            ally: f.delivered - (self.start[ally].delivered if ally in self.start else 0)
            for ally, f in now.items()
        }
        lag = max((f.lag_s for f in now.values()), default=None)
        return delivered, lag
