"""The audit channel: an append-only JSON-lines file, one line per delivered event.

Each line is written with one ``write`` system call on a file opened in append mode, so a
reader (``tail -f``) sees whole lines and a crash leaves at most one partial last line.
Durability policy: the file is ``fsync``-ed at every durable point of the service (every
``commit_interval_s``, when idle, on rebalance and shutdown), **before** the Kafka offsets of
the lines written so far are committed (group commit). So every committed event is on disk.
The fsync runs on the log's own thread (:meth:`AuditLog.request_sync`), so the consumer loop
goes on delivering while the disk catches up. Lines written but not yet committed when the
service dies belong to records Kafka hands out again after the restart: :func:`recover_ids`
reads the event ids the ally's audit files already hold, so the restarted service does not
write them twice. One fsync per durable point keeps the cost per event small at high rates.

Line fields: ``event_id``, ``kind``, ``correlation_key``, ``sensor_id``, ``sensor_nation``,
``source`` (topic/partition/offset), ``sent_ns`` (producer), ``append_ns`` (broker),
``received_ns`` (this service read it), ``delivered_ns`` (this line handed to the OS),
``ally``, ``instance_id``, ``event`` (the event as JSON).
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from uuid import UUID

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
        self._requested = 0
        self._synced = 0
        self._sync_error: ChannelDeliveryError | None = None
        self._wake = threading.Condition()
        self._closing = False
        self._syncer: threading.Thread | None = None

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

    def request_sync(self) -> int:
        """Ask the log's sync thread for an fsync of everything written so far; returns the
        generation :meth:`synced` reaches once it is done."""
        with self._wake:
            if self._syncer is None:
                self._syncer = threading.Thread(target=self._sync_loop, name="audit-sync", daemon=True)
                self._syncer.start()
            self._requested += 1
            self._wake.notify()
            return self._requested

    def synced(self) -> int:
        """The newest generation made durable; raises the sync thread's error once."""
        with self._wake:
            if self._sync_error is not None:
                error, self._sync_error = self._sync_error, None
                raise error
            return self._synced

    def _sync_loop(self) -> None:
        while True:
            with self._wake:
                while self._requested == self._synced and not self._closing:
                    self._wake.wait()
                if self._closing and self._requested == self._synced:
                    return
                target = self._requested
            try:
                self.sync()
            except ChannelDeliveryError as exc:
                with self._wake:
                    self._sync_error = exc
            with self._wake:
                self._synced = target

    def close(self) -> None:
        with self._wake:
            self._closing = True
            self._wake.notify()
        if self._syncer is not None:
            self._syncer.join(30)
        self.sync()
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


#: Bytes read from the end of one audit file when recovering (about 10,000 lines).
RECOVER_TAIL_BYTES = 16 * 1024 * 1024


def recover_ids(directory: Path, pattern: str, limit: int) -> set[UUID]:
    """Event ids of the newest ``limit`` lines over the audit files ``directory/pattern``
    (newest file first, each read from its last :data:`RECOVER_TAIL_BYTES`); a partial or
    damaged line (a crash mid-write) is skipped."""
    found: set[UUID] = set()
    try:
        files = sorted(directory.glob(pattern), key=lambda p: p.stat().st_mtime, reverse=True)
    except OSError:
        return found
    for path in files:
        try:
            with path.open("rb") as handle:
                size = handle.seek(0, os.SEEK_END)
                handle.seek(max(size - RECOVER_TAIL_BYTES, 0))
                lines = handle.read().split(b"\n")
        except OSError:
            continue
        for line in reversed(lines[1:] if len(lines) > 1 and size > RECOVER_TAIL_BYTES else lines):
            if len(found) >= limit:
                return found
            try:
                found.add(UUID(json.loads(line)["event_id"]))
            except (ValueError, KeyError, TypeError):
                continue
    return found
