"""Settings precedence: environment over the TOML file named by TRILINK_CONFIG over defaults."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from trilink.settings import Settings

pytestmark = pytest.mark.unit


def test_config_file_is_read_and_environment_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "trilink.toml"
    config.write_text('bootstrap = "kafka.example:9092"\nkafka_port_base = 19092\n')
    monkeypatch.setenv("TRILINK_CONFIG", str(config))
    monkeypatch.delenv("TRILINK_BOOTSTRAP", raising=False)
    monkeypatch.delenv("TRILINK_KAFKA_PORT_BASE", raising=False)
    from_file = Settings()
    assert from_file.bootstrap == "kafka.example:9092"
    assert from_file.kafka_port_base == 19092

    monkeypatch.setenv("TRILINK_BOOTSTRAP", "127.0.0.1:29092")
    assert Settings().bootstrap == "127.0.0.1:29092"


def test_kafka_home_comes_from_its_usual_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KAFKA_HOME", str(tmp_path))
    assert Settings().kafka_home == tmp_path


@pytest.mark.parametrize("value", ["localhost", "host:port", ":9092", "a:1,b"])
def test_a_malformed_bootstrap_is_refused(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRILINK_BOOTSTRAP", value)
    with pytest.raises(ValidationError, match="host:port"):
        Settings()


def test_unknown_keys_in_the_config_file_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "trilink.toml"
    config.write_text("kafka_prot_base = 1\n")
    monkeypatch.setenv("TRILINK_CONFIG", str(config))
    with pytest.raises(ValidationError, match="kafka_prot_base"):
        Settings()
