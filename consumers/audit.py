"""The audit channel: an append-only JSON-lines file, one line per delivered event.

Each line is written with one ``write`` system call on a file opened in append mode, so a
reader (``tail -f``) sees whole lines and a crash leaves at most one partial last line.
Durability policy: the file is ``fsync``-ed at every durable point of the service (every
``commit_interval_s``, when idle, on rebalance and shutdown), **before** the Kafka offsets of
the lines written so far are committed (group commit). So every committed event is
on disk. Lines written but not yet synced when the host fails belong to uncommitted records:
Kafka hands them out again after the restart, and they are written again unless the rebuilt
de-duplication window shows the ally topic already has them. One fsync per durable point keeps the
cost per event small at high rates.

Line fields: ``event_id``, ``kind``, ``correlation_key``, ``sensor_id``, ``sensor_nation``,
``source`` (topic/partition/offset), ``sent_ns`` (producer), ``append_ns`` (broker),
``received_ns`` (this service read it), ``delivered_ns`` (this line handed to the OS),
``ally``, ``instance_id``, ``event`` (the event as JSON).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from consumers.errors import ChannelDeliveryError


class AuditLog:
    """Append-only JSON-lines file, made durable by :meth:`sync` (called at each durable point)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._fd: int | None = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            raise ChannelDeliveryError("audit_write_failed", f"cannot open {path}: {exc.strerror}") from exc
        self._dirty = False

    def append(self, line: bytes) -> None:
        """Write one line (``line`` must end with a newline and contain no other)."""
        with self._lock:
            if self._fd is None:
                raise ChannelDeliveryError("audit_write_failed", f"{self.path} is closed")
            try:
                written = os.write(self._fd, line)
                while written < len(line):  # short writes happen only on full disks or signals
                    written += os.write(self._fd, line[written:])
            except OSError as exc:
                raise ChannelDeliveryError("audit_write_failed", f"{self.path}: {exc.strerror}") from exc
            self._dirty = True

    def sync(self) -> None:
        """Make every line written so far durable (no-op when nothing was written since)."""
        with self._lock:
            if self._fd is None or not self._dirty:
                return
            try:
                os.fsync(self._fd)
            except OSError as exc:
                raise ChannelDeliveryError("audit_write_failed", f"{self.path}: {exc.strerror}") from exc
            self._dirty = False

    def close(self) -> None:
        self.sync()
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
