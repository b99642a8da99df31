"""The national alerts through the real pipeline: a ``trilink run`` of the IRBM over Japan, whose
report finds each ally's first alert on the fused tracks (issued under the nations' own keys)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from trilink.cli import main
from trilink.pipeline import RunError, RunReport, pin_groups_to_end
from trilink.platform.topics import topic_name
from trilink.settings import get_settings

pytestmark = pytest.mark.integration


@pytest.fixture
def on_test_broker(kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("TRILINK_BOOTSTRAP", kafka_bootstrap)
    monkeypatch.setenv("TRILINK_STATE_DIR", str(tmp_path / "state"))
    get_settings.cache_clear()
    from kafka.errors import KafkaError

    # a fresh broker answers "coordinator not available" until its offsets topic is loaded
    topics = (topic_name("warnings"), topic_name("sensor_status"))
    deadline = time.monotonic() + 60.0
    while True:
        try:
            pin_groups_to_end(kafka_bootstrap, [f"trilink-test-warmup-{uuid.uuid4().hex[:8]}"], topics)
            break
        except (KafkaError, RunError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    yield kafka_bootstrap
    get_settings.cache_clear()


def test_the_run_report_finds_japans_alert_on_its_fused_track(
    on_test_broker: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    json_path = tmp_path / "run.json"
    status = main(["run", "irbm_over_japan", "--fast", "--report", str(json_path)])
    out, err = capsys.readouterr()
    assert status == 0, (out, err)
    report = RunReport.model_validate_json(json_path.read_text())
    assert report.complete
    (launch,) = report.launches
    jp, us, kr = launch.for_ally("JP"), launch.for_ally("US"), launch.for_ally("KR")
    assert jp is not None and jp.first_alert is not None
    assert jp.first_alert.sensor_id == "JP-ALERT"  # Japan's authority, not a sensor
    # Japan's alerts are a national product: the US hub receives them, Korea does not
    assert us is not None and us.first_alert is not None and us.first_alert.sensor_id == "JP-ALERT"
    assert kr is not None and kr.first_alert is None
