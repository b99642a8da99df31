"""Live fan-out to Server-Sent-Events subscribers: one bounded queue per subscriber.

Overflow policy: **drop-oldest**. Live viewers want the newest picture, so when a subscriber's
queue is full the oldest queued event is dropped to make room, the drop is counted
(``trilink_ally_subscriber_drops_total{channel="sse"}``) and the consumer loop never waits.
Each subscriber's events keep their order (drops remove from the front, nothing is reordered),
so per-missile order holds for what a subscriber does receive. A subscriber's writer thread
blocks only itself; a socket that accepts nothing for the write timeout disconnects that
subscriber alone.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from schemas.models import EventKind

#: Default per-subscriber queue length (events).
DEFAULT_QUEUE_SIZE = 1024


@dataclass(frozen=True, slots=True)
class SseItem:
    """One event ready to send: the SSE frame plus what its latency sample needs."""

    kind: EventKind
    frame: bytes
    received_ns: int
    sent_ns: int | None


def sse_frame(event_id: str, kind: str, data_json: bytes) -> bytes:
    """An SSE message: ``id`` = event id, ``event`` = kind, ``data`` = the event as one JSON line."""
    return (
        b"id: "
        + event_id.encode("ascii")
        + b"\nevent: "
        + kind.encode("ascii")
        + b"\ndata: "
        + data_json
        + b"\n\n"
    )


class SubscriberQueue:
    """A bounded FIFO with drop-oldest overflow, read by exactly one writer thread."""

    def __init__(self, capacity: int, kinds: frozenset[EventKind] | None = None) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self.kinds = kinds
        self.dropped = 0
        self.closed = False
        self._items: deque[SseItem] = deque()
        self._cond = threading.Condition()

    def wants(self, kind: EventKind) -> bool:
        return self.kinds is None or kind in self.kinds

    def offer(self, item: SseItem) -> int:
        """Queue ``item``; returns how many old items were dropped to make room (0 or 1)."""
        with self._cond:
            if self.closed:
                return 0
            dropped = 0
            if len(self._items) >= self.capacity:
                self._items.popleft()
                dropped = 1
                self.dropped += 1
            self._items.append(item)
            self._cond.notify()
            return dropped

    def offer_many(self, items: list[SseItem]) -> int:
        """Queue ``items`` (those of a kind this subscriber wants) with one wake-up of its
        writer; returns how many old items were dropped to make room."""
        wanted = items if self.kinds is None else [item for item in items if item.kind in self.kinds]
        if not wanted:
            return 0
        with self._cond:
            if self.closed:
                return 0
            self._items.extend(wanted)
            dropped = max(len(self._items) - self.capacity, 0)
            for _ in range(dropped):
                self._items.popleft()
            self.dropped += dropped
            self._cond.notify()
            return dropped

    def take(self, timeout_s: float) -> list[SseItem]:
        """Everything queued, waiting up to ``timeout_s`` for the first item; [] on timeout or close."""
        with self._cond:
            if not self._items and not self.closed:
                self._cond.wait(timeout_s)
            items = list(self._items)
            self._items.clear()
            return items

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()


class SseHub:
    """The set of live subscribers; :meth:`publish` never blocks on any of them."""

    def __init__(
        self,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        on_drop: Callable[[int], None] | None = None,
        on_count: Callable[[int], None] | None = None,
    ) -> None:
        self.queue_size = queue_size
        self._on_drop = on_drop
        self._on_count = on_count
        self._lock = threading.Lock()
        self._subscribers: tuple[SubscriberQueue, ...] = ()
        self.closed = False

    def subscribe(self, kinds: frozenset[EventKind] | None = None) -> SubscriberQueue:
        queue = SubscriberQueue(self.queue_size, kinds)
        with self._lock:
            if self.closed:
                queue.close()
            self._subscribers = (*self._subscribers, queue)
            count = len(self._subscribers)
        if self._on_count:
            self._on_count(count)
        return queue

    def unsubscribe(self, queue: SubscriberQueue) -> None:
        queue.close()
        with self._lock:
            self._subscribers = tuple(q for q in self._subscribers if q is not queue)
            count = len(self._subscribers)
        if self._on_count:
            self._on_count(count)

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def publish(self, item: SseItem) -> int:
        """Queue ``item`` for every interested subscriber; returns how many subscribers want it."""
        wanted = 0
        dropped = 0
        for queue in self._subscribers:  # a tuple snapshot: (un)subscribing never blocks this loop
            if queue.wants(item.kind):
                wanted += 1
                dropped += queue.offer(item)
        if dropped and self._on_drop:
            self._on_drop(dropped)
        return wanted

    def publish_many(self, items: list[SseItem]) -> None:
        """Queue a batch for every subscriber (one wake-up each)."""
        dropped = 0
        for queue in self._subscribers:
            dropped += queue.offer_many(items)
        if dropped and self._on_drop:
            self._on_drop(dropped)

    def close(self) -> None:
        with self._lock:
            self.closed = True
            subscribers = self._subscribers
        for queue in subscribers:
            queue.close()
