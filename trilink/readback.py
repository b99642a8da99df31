"""Read back what each ally service of one run wrote on its ally topic: the run's own check that
nothing was lost and nothing delivered twice, independent of the services' counts.

A service's counts live in its process and die with it; the ally topic is what the ally's
downstream systems actually receive. :class:`AllyTopicReadback` notes the ally topics' end
offsets before the run's services start and, after they stop, reads every record written since
(headers only, never the Avro body). Records delivered by other services on the same broker (a
colleague's run, a demo) carry another ``trilink_ally_instance`` header and are skipped.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any
from uuid import UUID

from kafka import TopicPartition
from pydantic import BaseModel, ConfigDict, Field

from schemas.headers import CE_ID_HEADER, INSTANCE_HEADER
from trilink.platform.clients import consumer_config
from trilink.platform.topics import topic_name

__all__ = ["AllyTopicReadback", "TopicCheck"]

#: How many missing event ids a check lists (the count is always whole).
LISTED_MISSING = 10


class TopicCheck(BaseModel):
    """What one ally topic holds of one run, against what the ally's release check let through."""

    model_config = ConfigDict(extra="forbid")

    expected: int = Field(description="events of the run released to this ally")
    found: int = Field(description="distinct expected events on the ally topic")
    missing: int = Field(description="expected events not on the ally topic")
    twice: int = Field(description="records on the ally topic beyond the first of their event")
    unexpected: int = Field(description="events of this run's services not expected for this ally")
    missing_listed: list[str] = Field(default_factory=list, description=f"up to {LISTED_MISSING} ids")

    @property
    def clean(self) -> bool:
        return self.missing == 0 and self.twice == 0 and self.unexpected == 0

    def line(self, ally: str) -> str:
        verdict = "nothing lost, nothing twice" if self.clean else "NOT CLEAN"
        return (
            f"{ally}: {self.found:,} of {self.expected:,} expected events on its ally topic, "
            f"{self.missing} missing, {self.twice} twice, {self.unexpected} unexpected: {verdict}"
        )


class AllyTopicReadback:
    """Note the ally topics' ends now (:meth:`__init__`); :meth:`check` reads what came after.
    Each holds a client only while it runs."""

    def __init__(self, bootstrap: str, allies: Iterable[str], client_id: str) -> None:
        self._bootstrap = bootstrap
        self._client_id = client_id
        self._topics = {ally: topic_name(f"ally.{ally}") for ally in allies}
        consumer = self._consumer()
        try:
            every = [
                TopicPartition(t, p)
                for t in self._topics.values()
                for p in sorted(consumer.partitions_for_topic(t) or ())
            ]
            self._starts: dict[Any, int] = dict(consumer.end_offsets(every))
        finally:
            consumer.close()

    def _consumer(self) -> Any:
        from kafka import KafkaConsumer

        return KafkaConsumer(**consumer_config(self._bootstrap, None, self._client_id, max_poll_records=5000))

    def check(
        self, instance_id: str, expected: Mapping[str, set[UUID]], timeout_s: float = 60.0
    ) -> dict[str, TopicCheck]:
        """Per ally: read its topic from the noted start to today's end, keep the records
        ``instance_id``'s services wrote, and compare their event ids with ``expected``."""
        instance = instance_id.encode("utf-8")
        seen: dict[str, dict[bytes, int]] = {ally: {} for ally in self._topics}
        ally_of = {t: ally for ally, t in self._topics.items()}
        consumer = self._consumer()
        try:
            ends = consumer.end_offsets(list(self._starts))
            consumer.assign(list(self._starts))
            for tp, start in self._starts.items():
                consumer.seek(tp, start)
            left = {tp for tp, start in self._starts.items() if ends[tp] > start}
            deadline = time.monotonic() + timeout_s
            while left and time.monotonic() < deadline:
                for tp, records in consumer.poll(timeout_ms=500).items():
                    counts = seen[ally_of[tp.topic]]
                    for record in records:
                        headers = dict(record.headers or ())
                        event_id = headers.get(CE_ID_HEADER)
                        if headers.get(INSTANCE_HEADER) == instance and event_id is not None:
                            counts[event_id] = counts.get(event_id, 0) + 1
                left = {tp for tp in left if consumer.position(tp) < ends[tp]}
        finally:
            consumer.close()
        out: dict[str, TopicCheck] = {}
        for ally in self._topics:
            want = {str(event_id).encode("ascii") for event_id in expected.get(ally, set())}
            got = seen[ally]
            missing = sorted(want - got.keys())
            out[ally] = TopicCheck(
                expected=len(want),
                found=len(want & got.keys()),
                missing=len(missing),
                twice=sum(n - 1 for n in got.values()),
                unexpected=len(got.keys() - want),
                missing_listed=[m.decode("ascii", "replace") for m in missing[:LISTED_MISSING]],
            )
        return out
