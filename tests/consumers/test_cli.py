"""The ``trilink ally`` command as a process: starts, reports its port, serves, stops on SIGTERM."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient

from consumers.cli import _static_member
from tests.consumers.support import http_get
from trilink.errors import ConfigError
from trilink.platform.clients import admin_config
from trilink.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.integration
def test_ally_command_serves_health_and_stops_cleanly_on_sigterm(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """With ``--static``: a static member named by its instance id while it runs, and out of the
    group once it stopped (it leaves; kafka-python's close() does not for a static member)."""
    env = {**os.environ, "TRILINK_BOOTSTRAP": kafka_bootstrap}
    group = f"test-ally-cli-{uuid.uuid4().hex[:8]}"
    command = [
        sys.executable, "-m", "trilink.cli", "ally", "jp", "--http-port", "0",
        "--group", group, "--instance-id", "cli-1", "--static",
        "--audit-dir", str(tmp_path),
    ]  # fmt: skip
    process = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        port = None
        for _ in range(5):
            line = process.stdout.readline()
            if line.startswith("http_port="):
                port = int(line.strip().split("=", 1)[1])
                break
        assert port, process.stderr.read() if process.poll() is not None else "no http_port line"
        answers: list[tuple[int, bytes]] = []

        def healthy() -> bool:
            answers.append(http_get(port, "/healthz"))
            return answers[-1][0] == 200

        wait_until(healthy, timeout_s=30, interval_s=0.1)
        status, body = answers[-1]
        assert status == 200, body
        assert json.loads(body)["ally"] == "JP"
        assert [m["group_instance_id"] for m in _members(kafka_bootstrap, group)] == ["trilink-ally-jp-cli-1"]
        process.send_signal(signal.SIGTERM)
        _out, err = process.communicate(timeout=30)
        assert process.returncode == 0, err
        assert "stopped cleanly" in err
        assert (tmp_path / "ally-jp-cli-1.jsonl").exists()
        assert _members(kafka_bootstrap, group) == []
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def _members(bootstrap: str, group: str) -> list[dict[str, Any]]:
    admin: Any = KafkaAdminClient(**admin_config(bootstrap, "test-ally-cli-admin"))
    try:
        members: list[dict[str, Any]] = admin.describe_groups([group])[group]["members"]
    finally:
        admin.close()
    return members


@pytest.mark.unit
def test_static_needs_an_instance_id() -> None:
    """A static identity must survive a restart: ``--static`` never makes one up."""
    with pytest.raises(ConfigError) as refused:
        _static_member(argparse.Namespace(static=True, instance_id=None))
    assert refused.value.reason == "static_needs_instance_id"
    assert _static_member(argparse.Namespace(static=True, instance_id="jp-1"))
    assert not _static_member(argparse.Namespace(static=False, instance_id=None))
