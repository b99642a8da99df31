"""The ``trilink ally`` command as a process: starts, reports its port, serves, stops on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.consumers.support import http_get
from trilink.waiting import wait_until

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def test_ally_command_serves_health_and_stops_cleanly_on_sigterm(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    env = {**os.environ, "TRILINK_BOOTSTRAP": kafka_bootstrap}
    command = [
        sys.executable, "-m", "trilink.cli", "ally", "jp", "--http-port", "0",
        "--group", f"test-ally-cli-{uuid.uuid4().hex[:8]}", "--instance-id", "cli-1",
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
        process.send_signal(signal.SIGTERM)
        _out, err = process.communicate(timeout=30)
        assert process.returncode == 0, err
        assert "stopped cleanly" in err
        assert (tmp_path / "ally-jp-cli-1.jsonl").exists()
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
