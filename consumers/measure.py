"""Launch bookkeeping of an ally service (the ``launches`` part of its report; counts and
latency live in :mod:`consumers.ledger`).

:class:`LaunchBook` remembers, per correlation key (one missile), the first launch detection
and the first alert delivered, with the wall-clock and simulated times an orchestrator needs to
split "launch -> first warning" into the sensors' share and the pipeline's share.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from consumers.ledger import FirstDeliveryReport
from schemas.models import EventKind, LaunchDetection, WarningEvent
from trilink.latency import datetime_ns

#: Most launches remembered (the oldest is forgotten first).
MAX_LAUNCHES = 10_000


class LaunchBook:
    """Per correlation key: the first launch detection and the first alert delivered (bounded)."""

    TRACKED = (EventKind.LAUNCH_DETECTION, EventKind.ALERT)

    def __init__(self, max_launches: int = MAX_LAUNCHES) -> None:
        self._lock = threading.Lock()
        self._max = max_launches
        self._launches: OrderedDict[str, dict[str, FirstDeliveryReport]] = OrderedDict()

    def note(
        self,
        event: WarningEvent,
        *,
        sent_ns: int | None,
        append_ns: int | None,
        received_ns: int,
    ) -> FirstDeliveryReport | None:
        """Start tracking ``event`` when it is the first of its kind for its launch; returns the
        entry to fill with channel delivery times, or None when the event is not tracked."""
        kind = event.kind
        if kind not in self.TRACKED:
            return None
        header = event.header
        with self._lock:
            entry = self._launches.get(header.correlation_key)
            if entry is None:
                entry = self._launches[header.correlation_key] = {}
                if len(self._launches) > self._max:
                    self._launches.popitem(last=False)
            if kind.value in entry:
                return None
            payload = event.payload
            first = FirstDeliveryReport(
                event_id=str(header.event_id),
                sensor_id=header.sensor_id,
                sensor_nation=header.sensor_nation.value,
                measured_at=header.measured_at.isoformat(),
                emitted_at=header.emitted_at.isoformat(),
                measured_at_ns=datetime_ns(header.measured_at),
                emitted_at_ns=datetime_ns(header.emitted_at),
                launch_time_ns=datetime_ns(payload.launch_time)
                if isinstance(payload, LaunchDetection)
                else None,
                sent_ns=sent_ns,
                append_ns=append_ns,
                received_ns=received_ns,
            )
            entry[kind.value] = first
            return first

    def delivered(self, first: FirstDeliveryReport, channel: str, when_ns: int) -> None:
        with self._lock:
            first.delivered_ns.setdefault(channel, when_ns)

    def as_dict(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {
                key: {
                    "first_launch_detection": (
                        entry["launch_detection"].snapshot().model_dump()
                        if "launch_detection" in entry
                        else None
                    ),
                    "first_alert": entry["alert"].snapshot().model_dump() if "alert" in entry else None,
                }
                for key, entry in self._launches.items()
            }
