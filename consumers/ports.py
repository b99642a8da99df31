"""The two Kafka clients an ally service uses, as small typed protocols.

kafka-python's ``KafkaConsumer`` and ``KafkaProducer`` satisfy them as they are; tests inject
fakes that fail on cue (a flush that times out, a send the broker refuses, a ``poll`` that
raises, a record the library cannot parse), the failure paths a real broker cannot be made to
produce on demand. Offsets are ``{(topic, partition): next_offset}`` everywhere above this seam.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol


class SendFuture(Protocol):
    """What ``send`` returns: callbacks run on the producer's IO thread."""

    def add_callback(self, fn: Callable[..., Any], *args: Any) -> Any: ...

    def add_errback(self, fn: Callable[..., Any], *args: Any) -> Any: ...


class ProducerPort(Protocol):
    def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
        partition: int | None = None,
    ) -> SendFuture: ...

    def flush(self, timeout: float | None = None) -> None: ...

    def partitions_for(self, topic: str) -> set[int] | None: ...

    def close(self, timeout: float | None = None) -> None: ...


class ConsumerPort(Protocol):
    def poll(self, timeout_ms: int = 0, max_records: int | None = None) -> dict[Any, list[Any]]: ...

    def subscribe(self, topics: list[str], listener: Any = None) -> None: ...

    def unsubscribe(self) -> None: ...

    def partitions_for_topic(self, topic: str) -> set[int] | None: ...

    def position(self, partition: Any) -> int: ...

    def committed(self, partition: Any) -> int | None: ...

    def highwater(self, partition: Any) -> int | None: ...

    def seek(self, partition: Any, offset: int) -> None: ...

    def pause(self, *partitions: Any) -> None: ...

    def resume(self, *partitions: Any) -> None: ...

    def commit(self, offsets: Any = None, timeout_ms: int | None = None) -> None: ...

    def commit_async(self, offsets: Any = None, callback: Any = None) -> Any: ...

    def close(self) -> None: ...


ConsumerFactory = Callable[..., ConsumerPort]
"""``(bootstrap, group_id, client_id, *, offset_reset, max_poll_records, group_instance_id)``
-> a consumer (:func:`consumers.kafka_io.new_consumer`)."""
ProducerFactory = Callable[[str, str], ProducerPort]
"""``(bootstrap, client_id)`` -> a producer (:func:`consumers.kafka_io.new_producer`)."""
UnparseableLocator = Callable[[str, str, int, int], "tuple[int, str] | None"]
"""``(bootstrap, topic, partition, offset)`` -> where reading can go on past a batch the library
cannot parse, and why (:func:`consumers.kafka_io.locate_unparseable`)."""
GroupLeaver = Callable[[str, str, str, str], None]
"""``(bootstrap, group_id, group_instance_id, client_id)``: a static member leaves its group
(:func:`consumers.kafka_io.leave_group`)."""
