"""A bounded window of recently delivered event ids, so subscribers see each event once.

Kafka gives at-least-once: a batch delivered but not committed (crash, lost group membership,
a producer retry upstream) comes back. The window remembers the last ``capacity`` delivered
ids (least recently seen evicted first), so memory is bounded (≈ 100 bytes per id) and a
duplicate is suppressed as long as it arrives within ``capacity`` deliveries of the original.

After a restart or a rebalance the window is rebuilt from the tail of the ally's own output
topic (:func:`consumers.kafka_io.read_tail_event_ids`): that topic is exactly what was
delivered, by this instance or by another instance of the same ally, so no separate state
store is needed. :func:`rebuild_order` decides which tail ids make it into the window.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from uuid import UUID

#: Default window size: at 1,000 events/s, ten seconds of history (≈ 1 MB).
DEFAULT_CAPACITY = 10_000


class DedupWindow:
    """The last ``capacity`` event ids, least recently seen evicted first."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._ids: OrderedDict[UUID, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._ids

    def check_and_add(self, event_id: UUID) -> bool:
        """True when the id is new (and now remembered); False for a duplicate (refreshed)."""
        if event_id in self._ids:
            self._ids.move_to_end(event_id)
            return False
        self._ids[event_id] = None
        if len(self._ids) > self.capacity:
            self._ids.popitem(last=False)
        return True

    def discard(self, event_id: UUID) -> None:
        """Forget an id (its delivery failed and will be retried)."""
        self._ids.pop(event_id, None)

    def load(self, ids_oldest_first: Iterable[UUID]) -> int:
        """Remember ids in the given order (the newest last); returns how many are now held."""
        for event_id in ids_oldest_first:
            self.check_and_add(event_id)
        return len(self._ids)


def rebuild_order(tail: Iterable[tuple[int, int, int, UUID]], capacity: int) -> list[UUID]:
    """Order ids read from the output topic's tail for :meth:`DedupWindow.load`.

    ``tail`` holds ``(append_ms, partition, offset, event_id)``; the result is the newest
    ``capacity`` distinct ids, oldest first (by broker append time, then partition and offset,
    which keeps each partition's own order).
    """
    ordered = sorted(tail, key=lambda item: (item[0], item[1], item[2]))
    newest: OrderedDict[UUID, None] = OrderedDict()
    for _ts, _partition, _offset, event_id in reversed(ordered):
        if event_id not in newest:
            newest[event_id] = None
            if len(newest) >= capacity:
                break
    return list(reversed(newest))
