"""Fixtures of the ally-service tests: services started against the session's real broker."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from consumers.service import AllyService
from trilink.settings import Settings


@pytest.fixture
def make_service(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Callable[..., AllyService]]:
    """Start an :class:`AllyService` (own consumer group unless given, audit under tmp_path),
    wait until it is ready; every service is stopped at teardown."""
    started: list[AllyService] = []
    group = f"test-ally-{uuid.uuid4().hex[:8]}"

    def make(ally: str, **options: Any) -> AllyService:
        options.setdefault("group_id", f"{group}-{ally.lower()}")
        options.setdefault("audit_dir", tmp_path / "audit")
        # Prometheus target files go to the test's own state dir, not the repo's .trilink/
        options.setdefault("settings", Settings(state_dir=tmp_path / "state", bootstrap=None))
        service = AllyService(ally, kafka_bootstrap, **options)
        started.append(service)
        service.start()
        assert service.wait_ready(30), service.health()
        return service

    yield make
    for service in started:
        service.stop()
