"""Helpers of the tests that run against the session's real broker."""

from __future__ import annotations

import uuid

from kafka import KafkaAdminClient
from kafka.errors import KafkaError

from trilink.pipeline import RunError, pin_groups_to_end
from trilink.platform.clients import admin_config
from trilink.platform.topics import topic_name
from trilink.waiting import wait_until


def wait_for_group_coordinator(bootstrap: str, timeout_s: float = 60.0) -> None:
    """A fresh broker creates its offsets topic on first use and answers "not available" or
    "load in progress" until it is loaded; ``trilink run`` and ``run_pipeline`` pin their groups
    at once and do not retry, so let a throwaway group go first (the last error is raised when
    the broker never gets there)."""
    topics = (topic_name("warnings"), topic_name("sensor_status"))
    last: list[BaseException] = []

    def pinned() -> bool:
        try:
            pin_groups_to_end(bootstrap, [f"trilink-test-warmup-{uuid.uuid4().hex[:8]}"], topics)
        except (KafkaError, RunError) as exc:
            last[:] = [exc]
            return False
        return True

    if not wait_until(pinned, timeout_s, interval_s=0.5):
        raise last[0]


def group_ids(bootstrap: str, containing: str) -> set[str]:
    """The broker's consumer groups whose id contains ``containing``."""
    admin = KafkaAdminClient(**admin_config(bootstrap, "trilink-test-groups"))
    try:
        return {g["group_id"] for g in admin.list_groups() if containing in g["group_id"]}
    finally:
        admin.close()
