"""Runtime settings: one validated object, read from the environment and an optional TOML file.

Precedence (highest first): ``TRILINK_*`` environment variables, the TOML file named by
``TRILINK_CONFIG`` (or ``./trilink.toml`` when present), then the defaults below.
Every port, path and timeout the project uses has its one default here.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from trilink.resources import package_path


def _config_file() -> Path | None:
    named = os.environ.get("TRILINK_CONFIG")
    if named:
        return Path(named)
    local = Path("trilink.toml")
    return local if local.is_file() else None


class Settings(BaseSettings):
    """Where trilink finds Kafka, where it keeps state, and the ports it uses."""

    model_config = SettingsConfigDict(env_prefix="TRILINK_", extra="forbid")

    bootstrap: str | None = Field(
        default=None,
        description="host:port[,host:port] of an existing Kafka cluster; when set, trilink starts no broker.",
    )
    state_dir: Path = Field(
        default_factory=lambda: Path.cwd() / ".trilink",
        description="Where local broker data, logs and the cluster state file live: "
        "./.trilink in the directory trilink runs from (like ./trilink.toml), unless set.",
    )
    credentials_file: Path | None = Field(
        default=None,
        description="A secured cluster's client credentials (JSON: CA file and SCRAM passwords per "
        "principal, see README 'Identities and ACLs'); with TRILINK_BOOTSTRAP, for a cluster trilink "
        "did not start. A local `trilink up` cluster keeps its own in the state dir.",
    )
    kafka_home: Path | None = Field(
        default_factory=lambda: Path(os.environ["KAFKA_HOME"]) if os.environ.get("KAFKA_HOME") else None,
        description="An unpacked Apache Kafka release; its libs/ replace the Maven resolution.",
    )
    kafka_cache_dir: Path = Field(
        default=Path.home() / ".cache" / "trilink" / "kafka",
        description="Cache of the Kafka jars resolved from Maven Central (outside the work tree).",
    )
    simulation_cache_dir: Path | None = Field(
        default=Path.home() / ".cache" / "trilink" / "simulations",
        description="Where `trilink run` keeps the events of the scenarios it simulated, keyed by a digest "
        "of the scenario, the sharing policy and the simulator's code and data (producers.simulation_cache): "
        "the salvo costs half a minute to simulate and a few seconds to read back. Empty or 'off': no cache.",
    )
    kafka_port_base: int = Field(
        default=9092,
        ge=1024,
        le=65000,
        description="Node i (0-based) listens for clients on base+2i and for the controller on base+2i+1.",
    )
    broker_heap_mb: int = Field(default=768, ge=256, description="JVM heap per broker process.")
    broker_ready_timeout_s: float = Field(default=90.0, gt=0)
    broker_stop_timeout_s: float = Field(default=30.0, gt=0)
    topics_file: Path = Field(
        default=package_path("deploy", "topics.toml"),
        description="The declared topics (the shipped deploy/topics.toml unless set).",
    )
    host: str = Field(default="127.0.0.1", description="Loopback address every local service binds to.")
    topology: Literal["direct", "hub"] = Field(
        default="hub",
        description="hub (default): sensors write their nation's ingest topic, the US hub (`trilink "
        "hub`) releases each record to the feeds of the allies it may reach, each ally reads only its "
        "own feed; direct: sensors write the shared warning topics and every ally service reads them "
        "all and withholds what is not releasable to it.",
    )

    cpu_pinning: Literal["auto", "on", "off"] = Field(
        default="off",
        description="Pin each of the pipeline's processes (local broker nodes, the hub, the run's "
        "sensors, each ally service), every thread, to one CPU, dealt out over the CPUs this process "
        "may use (trilink.runtime.cpu_for). on: with 2 or more CPUs; auto: only with 2-4 CPUs; off "
        "(default): never. On 2 cores it cut the demo's broker CPU by a fifth and usually its p99, "
        "but the floor bench's pipeline, pinned the same way, stalled for 2 s (README, Benchmarks).",
    )

    service_switch_interval_ms: float = Field(
        default=20.0,
        gt=0.0,
        le=1000.0,
        description="The GIL switch interval of the hub's and the ally services' processes "
        "(sys.setswitchinterval; CPython's default is 5 ms): how long their consume loop may run "
        "before it must hand the interpreter to the Kafka client's IO threads. Longer means fewer "
        "forced hand-overs in the middle of a poll's records (trilink.runtime.tune_service).",
    )

    broker_warmup_s: float = Field(
        default=20.0,
        ge=0.0,
        le=600.0,
        description="When a command starts the local broker (`make demo`, `trilink run`, `trilink up`), "
        "first send and read back this many seconds of scratch records at about the demo's peak rate, "
        "so the first run is not measured on a cold JVM (trilink.platform.warmup; the scratch topic "
        "is deleted). 0: no warm-up. A broker that was already running is not warmed again.",
    )

    poll_linger_ms: int = Field(
        default=5,
        ge=0,
        le=1000,
        description="After a poll that returned several records, a consuming service (ally, hub) "
        "polls again no sooner than this, so its next fetch carries what arrived "
        "meanwhile: kafka-python spends about a millisecond of CPU per fetch round trip, so fetching one "
        "or two records at a time saturated 2 cores at the demo's peak. A poll that returned one record "
        "is followed at once (the service keeps up; no record waits at low load). 0: never wait (most "
        "CPU). Costs at most this much latency per hop, only under load.",
    )

    reader_linger_ms: int = Field(
        default=100,
        ge=0,
        le=5000,
        description="After a poll that returned records, a reader whose figures come from the records "
        "themselves waits this long before it polls again: the acknowledgement readers (the time "
        "is the acknowledgement's delivered time) and the load test's observer (the ally topic's "
        "append time). Reading later changes none of their figures, only how fresh their counts "
        "are, and each fetch costs kafka-python about a millisecond of CPU. 0: poll again at once.",
    )

    @field_validator("simulation_cache_dir", mode="before")
    @classmethod
    def _cache_off(cls, value: object) -> object:
        return None if isinstance(value, str) and value.strip().lower() in ("", "off") else value

    @field_validator("bootstrap")
    @classmethod
    def _bootstrap_form(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        for part in value.split(","):
            host, sep, port = part.strip().rpartition(":")
            if not sep or not host or not port.isdigit():
                raise ValueError(f"expected host:port[,host:port], got {value!r}")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = _config_file()
        if path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (read once)."""
    return Settings()
