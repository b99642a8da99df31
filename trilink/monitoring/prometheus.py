"""A local Prometheus for a trilink run: generated config, own TSDB, loopback only.

:func:`start_prometheus` copies ``deploy/prometheus/prometheus.yml`` and ``rules/`` into
``<state_dir>/prometheus/`` (rewriting only the global intervals and its own address),
starts the Debian package's ``prometheus`` binary there with its TSDB in ``data/``, waits
for ``/-/ready`` and records its pid in ``prometheus.json`` for :func:`stop_prometheus`.
Services announce themselves in ``targets/`` (:mod:`trilink.monitoring.discovery`), which
the config reads with ``file_sd``. Prometheus also renders trilink's console templates
(``deploy/prometheus/consoles/``, library ``console_libraries/``) straight from the config
folder, at the addresses :func:`console_urls` gives.

Prometheus is optional: when the binary is missing the caller gets a
:class:`PrometheusMissingError` saying how to install it, and nothing else is affected.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from trilink.errors import PlatformError
from trilink.monitoring.api import PrometheusAPI
from trilink.monitoring.discovery import TARGETS_DIR
from trilink.monitoring.names import ALLIES
from trilink.platform.cluster import is_port_free, log_tail
from trilink.processes import pid_runs, terminate
from trilink.resources import package_path
from trilink.settings import Settings, get_settings
from trilink.waiting import wait_until

#: The shipped configuration: ``prometheus.yml``, ``rules/``, ``consoles/``, ``console_libraries/``
#: (and, in the repository, the rule tests in ``tests/``).
CONFIG_DIR = package_path("deploy", "prometheus")
CONSOLES_DIR = "consoles"
CONSOLE_LIBRARIES_DIR = "console_libraries"
OVERVIEW_CONSOLE = "trilink-overview.html"
ALLY_CONSOLE = "trilink-ally.html"
HUB_CONSOLE = "trilink-hub.html"
STATE_FILE = "prometheus.json"
LOG_FILE = "prometheus.log"
INSTALL_HINT = (
    "install it with `apt-get install prometheus` (Debian/Ubuntu; provides prometheus and promtool)"
)


class MonitoringSettings(BaseSettings):
    """Settings of the local Prometheus, from ``TRILINK_*`` environment variables.

    Kept apart from :class:`trilink.settings.Settings` so monitoring stays an optional part:
    e.g. ``TRILINK_PROMETHEUS_PORT=19090`` moves it off the default port.
    """

    model_config = SettingsConfigDict(env_prefix="TRILINK_", extra="ignore")

    prometheus_port: int = Field(
        default=9090, ge=1024, le=65535, description="Loopback port of the web UI and API."
    )
    prometheus_bin: str = Field(
        default="prometheus", description="The Prometheus server binary (name or path)."
    )
    promtool_bin: str = Field(default="promtool", description="Prometheus' rule and config checker.")
    prometheus_config_dir: Path = Field(
        default=CONFIG_DIR, description="Template config, rules and rule tests."
    )
    prometheus_scrape_interval_s: float = Field(default=2.0, gt=0, le=300)
    prometheus_evaluation_interval_s: float = Field(default=2.0, gt=0, le=300)
    prometheus_retention: str = Field(default="2d", description="TSDB retention (a Prometheus duration).")
    prometheus_ready_timeout_s: float = Field(default=30.0, gt=0)
    prometheus_stop_timeout_s: float = Field(default=10.0, gt=0)


class PrometheusError(PlatformError):
    """The local Prometheus cannot be started, reached or stopped as asked."""


class PrometheusMissingError(PrometheusError):
    """The ``prometheus`` (or ``promtool``) binary is not installed (reason ``prometheus_missing``)."""

    def __init__(self, binary: str) -> None:
        super().__init__("prometheus_missing", f"{binary!r} not found on PATH; {INSTALL_HINT}")
        self.binary = binary


@dataclass
class PrometheusState:
    """What ``prometheus.json`` records about the running server."""

    pid: int
    url: str
    port: int
    config_file: str
    data_dir: str
    log_file: str
    started_at: float


@dataclass(frozen=True)
class PrometheusStatus:
    running: bool
    ready: bool
    state: PrometheusState | None
    state_dir: Path


def prometheus_dir(settings: Settings | None = None) -> Path:
    """``<state_dir>/prometheus``: generated config, rules copy, targets, TSDB, log, pid file."""
    s = settings if settings is not None else get_settings()
    return s.state_dir / "prometheus"


def find_binary(name: str) -> str:
    """Absolute path of a binary, or :class:`PrometheusMissingError`."""
    found = shutil.which(name)
    if found is None:
        raise PrometheusMissingError(name)
    return found


def prometheus_duration(seconds: float) -> str:
    """Seconds as a Prometheus duration string (millisecond resolution): 2.0 -> ``2s``."""
    ms = round(seconds * 1000)
    if ms <= 0:
        raise PrometheusError("invalid_config", f"duration {seconds} s rounds to 0 ms")
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def render_config(
    out_dir: Path,
    *,
    host: str,
    port: int,
    scrape_interval_s: float,
    evaluation_interval_s: float,
    config_dir: Path = CONFIG_DIR,
) -> Path:
    """Write ``prometheus.yml`` and ``rules/`` into ``out_dir``; returns the config file.

    The template is a valid config by itself (promtool checks it as shipped); only the
    global intervals and the self-scrape address are rewritten, so what runs is what was
    reviewed. Paths in it are relative, hence resolve inside ``out_dir``.
    """
    template = config_dir / "prometheus.yml"
    try:
        text = template.read_text(encoding="utf-8")
    except OSError as exc:
        raise PrometheusError("invalid_config", f"cannot read the template {template}: {exc}") from exc
    interval = prometheus_duration(scrape_interval_s)
    text = _set_global(text, "scrape_interval", interval, template)
    # scrape_timeout may not exceed scrape_interval
    text = _set_global(text, "scrape_timeout", interval, template)
    text = _set_global(text, "evaluation_interval", prometheus_duration(evaluation_interval_s), template)
    text = text.replace('"localhost:9090"', f'"{host}:{port}"')

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / TARGETS_DIR).mkdir(exist_ok=True)
    rules_out = out_dir / "rules"
    shutil.rmtree(rules_out, ignore_errors=True)
    rules_out.mkdir()
    for rule_file in sorted((config_dir / "rules").glob("*.yml")):
        shutil.copy2(rule_file, rules_out / rule_file.name)
    config_file = out_dir / "prometheus.yml"
    config_file.write_text(text, encoding="utf-8")
    return config_file


def console_urls(url: str, allies: Iterable[str] = ALLIES) -> dict[str, str]:
    """The console pages of the Prometheus at ``url``: ``overview``, ``hub`` (the US hub, hub
    topology), then one per ally code."""
    base = f"{url.rstrip('/')}/consoles"
    urls = {"overview": f"{base}/{OVERVIEW_CONSOLE}", "hub": f"{base}/{HUB_CONSOLE}"}
    urls.update({ally: f"{base}/{ALLY_CONSOLE}?ally={ally}" for ally in allies})
    return urls


def _set_global(text: str, key: str, value: str, template: Path) -> str:
    # two-space indentation = a key of the `global:` block (scrape configs are deeper)
    pattern = re.compile(rf"^  {key}: \S+$", re.MULTILINE)
    new, count = pattern.subn(f"  {key}: {value}", text)
    if count != 1:
        raise PrometheusError("invalid_config", f"{template}: expected one global {key}, found {count}")
    return new


# Children started by this process, so stop_prometheus can reap them (no zombies in tests).
_spawned: dict[int, subprocess.Popen[bytes]] = {}


def start_prometheus(
    settings: Settings | None = None,
    monitoring: MonitoringSettings | None = None,
    *,
    port: int | None = None,
) -> str:
    """Start the local Prometheus (or find it running) and return its URL once ready.

    Idempotent: when the Prometheus recorded in ``prometheus.json`` still runs, its URL is
    returned and nothing is started. Raises :class:`PrometheusMissingError` when the binary
    is not installed, :class:`PrometheusError` with reason ``port_in_use``,
    ``prometheus_exited`` or ``prometheus_not_ready`` (message ends with the log tail).
    """
    s = settings if settings is not None else get_settings()
    m = monitoring if monitoring is not None else MonitoringSettings()
    listen_port = port if port is not None else m.prometheus_port
    base = prometheus_dir(s)

    current = status(s)
    if current.running and current.state is not None:
        if current.state.port != listen_port:
            raise PrometheusError(
                "prometheus_running",
                f"the local Prometheus already runs on port {current.state.port} (pid "
                f"{current.state.pid}); `trilink monitoring down` first to move it to {listen_port}",
            )
        _wait_ready(current.state, m.prometheus_ready_timeout_s, None)
        return current.state.url

    binary = find_binary(m.prometheus_bin)
    if not is_port_free(s.host, listen_port):
        raise PrometheusError(
            "port_in_use",
            f"port {listen_port} on {s.host} is already in use (a system Prometheus? "
            "`systemctl stop prometheus`); or set TRILINK_PROMETHEUS_PORT",
        )
    config_file = render_config(
        base,
        host=s.host,
        port=listen_port,
        scrape_interval_s=m.prometheus_scrape_interval_s,
        evaluation_interval_s=m.prometheus_evaluation_interval_s,
        config_dir=m.prometheus_config_dir,
    )
    data_dir = base / "data"
    data_dir.mkdir(exist_ok=True)
    log_file = base / LOG_FILE
    url = f"http://{s.host}:{listen_port}"
    command = [
        binary,
        f"--config.file={config_file}",
        f"--storage.tsdb.path={data_dir}",
        f"--storage.tsdb.retention.time={m.prometheus_retention}",
        f"--web.listen-address={s.host}:{listen_port}",
        f"--web.external-url={url}",
        # lets `trilink monitoring` reload rules without a restart; the listener is loopback only
        "--web.enable-lifecycle",
        # read from the config folder on every request: an edited console shows on reload
        f"--web.console.templates={m.prometheus_config_dir / CONSOLES_DIR}",
        f"--web.console.libraries={m.prometheus_config_dir / CONSOLE_LIBRARIES_DIR}",
    ]
    with log_file.open("ab") as log:
        proc = subprocess.Popen(
            command,
            cwd=base,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # outlives the `trilink monitoring up` command
        )
    _spawned[proc.pid] = proc
    state = PrometheusState(
        pid=proc.pid,
        url=url,
        port=listen_port,
        config_file=str(config_file),
        data_dir=str(data_dir),
        log_file=str(log_file),
        started_at=time.time(),
    )
    (base / STATE_FILE).write_text(json.dumps(asdict(state), indent=2) + "\n", encoding="utf-8")
    try:
        _wait_ready(state, m.prometheus_ready_timeout_s, proc)
    except PrometheusError:
        _terminate(state, m.prometheus_stop_timeout_s)
        (base / STATE_FILE).unlink(missing_ok=True)
        raise
    return url


def _wait_ready(state: PrometheusState, timeout_s: float, proc: subprocess.Popen[bytes] | None) -> None:
    api = PrometheusAPI(state.url, timeout_s=1.0)

    def ready() -> bool:
        if api.ready():
            return True
        exited = proc.poll() is not None if proc is not None else not _runs_prometheus(state)
        if exited:
            raise PrometheusError(
                "prometheus_exited",
                f"Prometheus (pid {state.pid}) exited while starting; last lines of "
                f"{state.log_file}:\n{log_tail(Path(state.log_file))}",
            )
        return False

    if wait_until(ready, timeout_s, interval_s=0.1):
        return
    raise PrometheusError(
        "prometheus_not_ready",
        f"Prometheus at {state.url} not ready after {timeout_s:.0f} s; last lines of "
        f"{state.log_file}:\n{log_tail(Path(state.log_file))}",
    )


def load_state(settings: Settings | None = None) -> PrometheusState | None:
    path = prometheus_dir(settings) / STATE_FILE
    try:
        return PrometheusState(**json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None


def status(settings: Settings | None = None) -> PrometheusStatus:
    """Whether the recorded Prometheus runs and answers ``/-/ready``."""
    s = settings if settings is not None else get_settings()
    state = load_state(s)
    running = state is not None and _runs_prometheus(state)
    ready = running and state is not None and PrometheusAPI(state.url, timeout_s=1.0).ready()
    return PrometheusStatus(running=running, ready=ready, state=state, state_dir=prometheus_dir(s))


def stop_prometheus(settings: Settings | None = None, monitoring: MonitoringSettings | None = None) -> bool:
    """Stop the recorded Prometheus (SIGTERM, SIGKILL after the stop timeout); True if one ran.

    Its TSDB stays in ``<state_dir>/prometheus/data`` for the next start.
    """
    s = settings if settings is not None else get_settings()
    m = monitoring if monitoring is not None else MonitoringSettings()
    state = load_state(s)
    if state is None:
        return False
    was_running = _runs_prometheus(state)
    if was_running:
        _terminate(state, m.prometheus_stop_timeout_s)
    (prometheus_dir(s) / STATE_FILE).unlink(missing_ok=True)
    return was_running


def _terminate(state: PrometheusState, timeout_s: float) -> None:
    terminate([state.pid], lambda _pid: _runs_prometheus(state), timeout_s)
    proc = _spawned.pop(state.pid, None)
    if proc is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=timeout_s)


def _runs_prometheus(state: PrometheusState) -> bool:
    """True when the recorded pid is alive and is the Prometheus started with this config
    (a recycled pid belonging to another process is not ours to signal)."""
    proc = _spawned.get(state.pid)
    if proc is not None and proc.poll() is not None:
        return False
    return pid_runs(state.pid, f"--config.file={state.config_file}".encode())
