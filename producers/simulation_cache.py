"""A scenario's simulated events, kept on disk so the same simulation is done once.

:func:`producers.scenario.simulate` is pure and deterministic: the same scenario, sharing policy
and code give the same events. The salvo (the demo's scenario) costs half a minute of CPU to
simulate, which `make demo` spent again on every run before the first warning was published.
:func:`simulate_cached` keys a simulation by a digest of everything it depends on and keeps its
events in an Avro container file (fastavro) under ``cache_dir``: a second run of the same
scenario decodes them instead (a few seconds for the salvo).

The key covers the scenario (its whole model), the sharing policy (its table and
``trilink/policy.py``), and every file of the ``producers`` and ``schemas`` packages (code,
sensor and missile tables, the area map, the event schemas). Changing any of them makes a new key; nothing is ever invalidated by hand.
Each file also carries its key, a SHA-256 of its rows and the schema fingerprint in its
metadata, and its events are decoded by the contract's own decoder: a file that is truncated,
damaged (one flipped bit still decodes as an event, so the digest checks every byte) or written
for something else is reported, deleted and simulated again, never used.

Writes are atomic (a temporary file renamed into place), so concurrent runs at worst simulate
the same scenario twice. At most :data:`KEEP_FILES` simulations are kept, the least recently
used are deleted first.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import struct
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fastavro

from producers.scenario import Scenario, ScheduledEvent, simulate
from schemas.codec import decode_event, encode_event, writer_fingerprint
from trilink import policy as policy_module
from trilink.errors import DeserializationError
from trilink.policy import SharingPolicy, default_policy

log = logging.getLogger(__name__)

__all__ = ["KEEP_FILES", "CachedSimulation", "simulate_cached", "simulation_key"]

#: How many simulations a cache directory keeps (the salvo's file is about 7 MB).
KEEP_FILES = 8

#: Bumped when the file layout below changes.
_FORMAT = "1"

_SCHEMA = fastavro.parse_schema(
    {
        "type": "record",
        "name": "SimulatedEvent",
        "namespace": "trilink.simulation_cache",
        "doc": "One event of a cached simulation: when the sensor emits it, and the event as the "
        "contract encodes it (single-object Avro).",
        "fields": [
            {"name": "emit_offset_s", "type": "double"},
            {"name": "event", "type": "bytes"},
        ],
    }
)

#: The packages whose files a simulation depends on (code and data alike).
_PACKAGES = ("producers", "schemas")
_SUFFIXES = frozenset({".py", ".toml", ".json", ".avsc"})


@dataclass(frozen=True, slots=True)
class CachedSimulation:
    """A simulation's events, and whether they came from the cache (``path``: its file)."""

    events: list[ScheduledEvent]
    hit: bool
    path: Path | None


def _package_files() -> Iterator[Path]:
    yield Path(policy_module.__file__ or "")  # who receives what: each header's releasable_to
    for name in _PACKAGES:
        root = Path(__import__(name).__file__ or "").parent
        for path in sorted(root.rglob("*")):
            if path.suffix in _SUFFIXES and "__pycache__" not in path.parts and path.is_file():
                yield path


def simulation_key(scenario: Scenario, policy: SharingPolicy) -> str:
    """The digest of what ``simulate(scenario, policy=policy)`` depends on (hex, 64 chars)."""
    digest = hashlib.sha256(f"trilink-simulation-cache {_FORMAT}\n".encode())
    digest.update(scenario.model_dump_json().encode())
    digest.update(b"\0")
    digest.update(policy.model_dump_json().encode())
    for path in _package_files():
        digest.update(b"\0" + path.name.encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()


def simulate_cached(
    scenario: Scenario, cache_dir: Path | None, *, policy: SharingPolicy | None = None
) -> CachedSimulation:
    """``list(simulate(scenario, policy=policy))``, from ``cache_dir`` when it holds it (and
    stored there when it does not). ``cache_dir`` None: simulate, keep nothing. A cache that
    cannot be read or written is logged and bypassed; the simulation's own errors propagate."""
    policy = policy or default_policy()
    if cache_dir is None:
        return CachedSimulation(list(simulate(scenario, policy=policy)), hit=False, path=None)
    key = simulation_key(scenario, policy)
    path = cache_dir / f"{scenario.name[:40]}-{key[:24]}.avro"
    if path.exists():
        events = _read(path, key)
        if events is not None:
            with contextlib.suppress(OSError):
                os.utime(path)  # recently used: evicted last
            return CachedSimulation(events, hit=True, path=path)
    events = list(simulate(scenario, policy=policy))
    stored = _write(path, key, events)
    if stored:
        _evict(cache_dir, keep=path)
    return CachedSimulation(events, hit=False, path=path if stored else None)


def _read(path: Path, key: str) -> list[ScheduledEvent] | None:
    """The events of ``path``, or None (logged, file deleted) if it is not a whole, matching file."""
    try:
        with path.open("rb") as stream:
            reader = fastavro.reader(stream, reader_schema=_SCHEMA)
            meta = reader.metadata
            if meta.get("trilink.key") != key or meta.get("trilink.fingerprint") != str(writer_fingerprint()):
                raise ValueError("written for another simulation or schema")
            rows = [_row(record) for record in reader]
        if _digest(rows) != meta.get("trilink.digest"):
            raise ValueError("its events are not the ones it was written with (digest differs)")
        events = [ScheduledEvent(offset, decode_event(blob)) for offset, blob in rows]
    except FileNotFoundError:
        return None
    except (OSError, ValueError, EOFError, DeserializationError, KeyError, TypeError) as exc:
        log.warning(
            "simulation cache %s is not usable (%s: %s): simulating again", path, type(exc).__name__, exc
        )
        _unlink(path)
        return None
    return events


def _row(record: object) -> tuple[float, bytes]:
    if not isinstance(record, dict):
        raise ValueError("a row is not a record")
    offset, blob = record.get("emit_offset_s"), record.get("event")
    if not isinstance(offset, float) or not isinstance(blob, bytes):
        raise ValueError("a row is not (emit_offset_s, event)")
    return offset, blob


def _write(path: Path, key: str, events: Iterable[ScheduledEvent]) -> bool:
    records: list[dict[str, Any]] = [
        {"emit_offset_s": item.emit_offset_s, "event": encode_event(item.event)} for item in events
    ]
    metadata = {
        "trilink.key": key,
        "trilink.digest": _digest((r["emit_offset_s"], r["event"]) for r in records),
        "trilink.fingerprint": str(writer_fingerprint()),
    }
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        with os.fdopen(fd, "wb") as stream:
            fastavro.writer(stream, _SCHEMA, records, codec="null", metadata=metadata)
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("simulation cache %s not written (%s)", path, exc)
        if tmp is not None:
            _unlink(Path(tmp))
        return False
    return True


def _digest(rows: Iterable[tuple[float, bytes]]) -> str:
    """SHA-256 over every row (its offset's exact bits and its event's bytes), in order."""
    digest = hashlib.sha256()
    for offset, blob in rows:
        digest.update(struct.pack("<dI", offset, len(blob)))
        digest.update(blob)
    return digest.hexdigest()


def _evict(cache_dir: Path, keep: Path) -> None:
    """Delete all but the :data:`KEEP_FILES` most recently used files (never ``keep``)."""
    try:
        files = sorted(cache_dir.glob("*.avro"), key=lambda p: p.stat().st_mtime, reverse=True)
    except OSError:
        return
    for old in files[KEEP_FILES:]:
        if old != keep:
            _unlink(old)


def _unlink(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()
