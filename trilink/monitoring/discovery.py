"""Service discovery for the local Prometheus: one file_sd JSON target file per running service.

A trilink service with a ``/metrics`` endpoint calls :func:`announce` when it starts listening
and :func:`withdraw` when it stops. Each call writes or removes
``<state_dir>/prometheus/targets/<job>-<instance>.json``; the Prometheus started by
:mod:`trilink.monitoring.prometheus` watches that folder (``file_sd_configs``), so services
come and go without a config reload and without knowing whether Prometheus runs at all.

The file sets the ``job`` and ``instance`` target labels itself: the scrape config has one
catch-all job, and a target's own labels take precedence over the job name of its scrape
config, so ``up{job="trilink-ally", ally="JP"}`` works without one scrape config per job.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

from trilink.errors import ConfigError
from trilink.settings import Settings, get_settings

#: Job of the per-ally consumer services (label ``ally`` = US, JP or KR).
ALLY_JOB = "trilink-ally"
#: Job of the simulated sensor producers.
SENSORS_JOB = "trilink-sensors"
#: Job of the US hub (hub topology; no ``ally`` label).
HUB_JOB = "trilink-hub"
#: Every job the project's rules and dashboards know about.
KNOWN_JOBS: tuple[str, ...] = (ALLY_JOB, SENSORS_JOB, HUB_JOB)

#: Sub-folder of ``<state_dir>/prometheus`` that Prometheus reads target files from.
TARGETS_DIR = "targets"

# Job and instance become part of a file name: keep them to a portable, glob-safe set.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$")
# Prometheus label names; names starting with "__" are reserved for Prometheus itself.
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_RESERVED_LABELS = frozenset({"job", "instance"})


def targets_dir(settings: Settings | None = None) -> Path:
    """The folder holding the target files of all announced services."""
    s = settings if settings is not None else get_settings()
    return s.state_dir / "prometheus" / TARGETS_DIR


def target_file(job: str, instance: str, settings: Settings | None = None) -> Path:
    """Where the target file of one service instance lives (whether it exists or not)."""
    _check_name("job", job)
    _check_name("instance", instance)
    # ":" is legal in an instance name (host:port) but not in every file system's names.
    safe_instance = instance.replace(":", "_")
    return targets_dir(settings) / f"{job}-{safe_instance}.json"


def announce(
    job: str,
    instance: str,
    port: int,
    labels: dict[str, str] | None = None,
    settings: Settings | None = None,
) -> Path:
    """Tell Prometheus to scrape ``http://<settings.host>:<port>/metrics`` as ``job``/``instance``.

    The file is written atomically (temporary file in the same folder, then rename), so
    Prometheus never reads half a file. Announcing the same job and instance again replaces
    the earlier target. Returns the path of the target file.
    """
    s = settings if settings is not None else get_settings()
    path = target_file(job, instance, s)
    if not 0 < port < 65536:
        raise ConfigError("invalid_port", f"cannot announce {job}/{instance}: port {port} is not 1..65535")
    extra = dict(labels or {})
    for name, value in extra.items():
        if not _LABEL_NAME.match(name) or name.startswith("__") or name in _RESERVED_LABELS:
            raise ConfigError(
                "invalid_label",
                f"cannot announce {job}/{instance}: {name!r} is not a label a service may set "
                "(Prometheus label syntax, not reserved, not job/instance)",
            )
        if not isinstance(value, str):
            raise ConfigError("invalid_label", f"label {name!r} of {job}/{instance} must be a string")
    document = [
        {
            "targets": [f"{s.host}:{port}"],
            "labels": {"job": job, "instance": instance, **extra},
        }
    ]
    _write_atomically(path, json.dumps(document, indent=2, sort_keys=True) + "\n")
    return path


def withdraw(job: str, instance: str, settings: Settings | None = None) -> bool:
    """Stop Prometheus scraping ``job``/``instance``; True when a target file was removed.

    Withdrawing a service that was never announced is not an error (a service that failed
    to start still runs its shutdown path).
    """
    path = target_file(job, instance, settings)
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


@contextlib.contextmanager
def announced(
    job: str,
    instance: str,
    port: int,
    labels: dict[str, str] | None = None,
    settings: Settings | None = None,
) -> Iterator[Path]:
    """Announce for the duration of a ``with`` block, withdraw on the way out (also on errors)."""
    path = announce(job, instance, port, labels, settings)
    try:
        yield path
    finally:
        withdraw(job, instance, settings)


def announced_targets(settings: Settings | None = None) -> list[dict[str, object]]:
    """Every target currently announced (the parsed file_sd groups), for ``status`` output."""
    folder = targets_dir(settings)
    groups: list[dict[str, object]] = []
    if not folder.is_dir():
        return groups
    for path in sorted(folder.glob("*.json")):
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # being replaced right now, or not ours
        if isinstance(loaded, list):
            groups.extend(g for g in loaded if isinstance(g, dict))
    return groups


def _check_name(what: str, value: str) -> None:
    if not _NAME.match(value):
        raise ConfigError(
            "invalid_target_name",
            f"{what} {value!r} must be 1-100 characters of letters, digits, '_', '.', ':' or '-'",
        )


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Prometheus file_sd only reads files matching the *.json glob, so the temporary name
    # must not end in .json or a watcher could pick up a partial write.
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
