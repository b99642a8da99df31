"""Topics as code: the declarative file ``deploy/topics.toml`` and its idempotent application.

The topic file is the one source of truth for topic names: code asks for a topic by role
(``topic_name("warnings")``), never spells a name itself.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from trilink.errors import ConfigError, TopicError
from trilink.settings import get_settings
from trilink.tomlfile import read_toml

TimestampType = Literal["LogAppendTime", "CreateTime"]


class TopicDefaults(BaseModel):
    model_config = ConfigDict(extra="forbid")

    replication_factor: int = Field(default=3, ge=1)
    min_insync_replicas: int = Field(default=2, ge=1)
    retention_ms: int = Field(default=604_800_000, ge=-1)
    timestamp_type: TimestampType = "LogAppendTime"


class TopicSpec(BaseModel):
    """One topic as declared in the file (optional fields fall back to ``[defaults]``)."""

    model_config = ConfigDict(extra="forbid")

    role: str = Field(min_length=1)
    name: str = Field(pattern=r"^[A-Za-z0-9._-]{1,249}$")
    partitions: int = Field(ge=1, le=10_000)
    doc: str = ""
    replication_factor: int | None = Field(default=None, ge=1)
    min_insync_replicas: int | None = Field(default=None, ge=1)
    retention_ms: int | None = Field(default=None, ge=-1)
    timestamp_type: TimestampType | None = None


class TopicFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    defaults: TopicDefaults = TopicDefaults()
    topics: list[TopicSpec]


@dataclass(frozen=True)
class ResolvedTopic:
    """A topic with every setting decided for a cluster of a given size."""

    role: str
    name: str
    partitions: int
    replication_factor: int
    configs: dict[str, str]


@dataclass
class ApplyReport:
    created: list[str] = field(default_factory=list)
    partitions_increased: list[str] = field(default_factory=list)
    configs_updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    drift: list[str] = field(default_factory=list)  # what could not be reconciled in place

    def lines(self) -> list[str]:
        out = [f"created {n}" for n in self.created]
        out += [f"partitions increased: {n}" for n in self.partitions_increased]
        out += [f"configs re-set: {n}" for n in self.configs_updated]
        out += [f"DRIFT (not reconciled): {d}" for d in self.drift]
        if self.unchanged:
            out.append(f"{len(self.unchanged)} topic(s) already as declared")
        return out


def load_topic_file(path: Path) -> TopicFile:
    raw = read_toml(path, ConfigError, missing="topics_file_missing", invalid="topics_file_invalid")
    try:
        parsed = TopicFile.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError("topics_file_invalid", f"{path}: {where}: {first['msg']}") from exc
    roles = [t.role for t in parsed.topics]
    names = [t.name for t in parsed.topics]
    for label, values in (("role", roles), ("name", names)):
        dupes = sorted({v for v in values if values.count(v) > 1})
        if dupes:
            raise ConfigError("topics_file_invalid", f"{path}: duplicate topic {label}(s): {dupes}")
    return parsed


@lru_cache(maxsize=4)
def _catalog(path: Path) -> TopicFile:
    return load_topic_file(path)


def topic_name(role: str) -> str:
    """The broker-side name of the topic with this role (from the topic file)."""
    for spec in _catalog(get_settings().topics_file).topics:
        if spec.role == role:
            return spec.name
    raise ConfigError("unknown_topic_role", f"no topic with role {role!r} in the topic file")


def ingest_role(nation: str) -> str:
    """The role of the ingest topic ``nation``'s sensors write in the hub topology (``ingest.JP``)."""
    return f"ingest.{nation}"


def feed_role(nation: str) -> str:
    """The role of the feed the hub writes for ``nation``'s ally service (``feed.JP``)."""
    return f"feed.{nation}"


def ally_input_roles(ally: str, topology: str) -> tuple[str, ...]:
    """The topics an ally's service reads: the shared warning topics (``direct``) or only its
    own feed (``hub``)."""
    return (feed_role(ally),) if topology == "hub" else ("warnings", "sensor_status")


def sensor_topic_role(nation: str, is_status: bool, topology: str) -> str:
    """Where a sensor of ``nation`` writes an event: its nation's ingest topic (``hub``), else
    the shared warnings or sensor-status topic (``direct``)."""
    if topology == "hub":
        return ingest_role(nation)
    return "sensor_status" if is_status else "warnings"


def input_roles_of_both_topologies() -> tuple[str, ...]:
    """Every topic an ally service or the hub may read, in either topology (to pin a run's groups)."""
    nations = ("US", "JP", "KR")
    return ("warnings", "sensor_status", *(ingest_role(n) for n in nations), *(feed_role(n) for n in nations))


def resolve(topic_file: TopicFile, broker_count: int) -> list[ResolvedTopic]:
    """Decide each topic's replication and configs for a cluster of ``broker_count`` brokers."""
    d = topic_file.defaults
    out = []
    for t in topic_file.topics:
        rf = min(t.replication_factor or d.replication_factor, broker_count)
        isr = min(t.min_insync_replicas or d.min_insync_replicas, rf)
        configs = {
            "min.insync.replicas": str(isr),
            "retention.ms": str(t.retention_ms if t.retention_ms is not None else d.retention_ms),
            "message.timestamp.type": t.timestamp_type or d.timestamp_type,
        }
        out.append(ResolvedTopic(t.role, t.name, t.partitions, rf, configs))
    return out


#: Creation attempts when the broker's metadata has not caught up with a topic it just created.
_CREATE_ATTEMPTS = 5


def apply_topics(admin: Any, topic_file: TopicFile, broker_count: int) -> ApplyReport:
    """Create missing topics and reconcile existing ones; ``admin`` is a KafkaAdminClient."""
    from kafka.admin import ConfigResource, ConfigResourceType, NewPartitions, NewTopic
    from kafka.errors import KafkaError, TopicAlreadyExistsError

    report = ApplyReport()
    wanted = resolve(topic_file, broker_count)
    try:
        existing = set(admin.list_topics())
        for attempt in range(_CREATE_ATTEMPTS):
            missing = [t for t in wanted if t.name not in existing]
            if not missing:
                break
            try:
                admin.create_topics(
                    [
                        NewTopic(t.name, t.partitions, t.replication_factor, topic_configs=t.configs)
                        for t in missing
                    ]
                )
            except TopicAlreadyExistsError:
                # The broker's metadata lags the controller for a moment after a creation (a
                # second apply right after the first): look again, then reconcile what is there.
                if attempt == _CREATE_ATTEMPTS - 1:
                    raise
                time.sleep(0.2 * (attempt + 1))
                existing = set(admin.list_topics())
                continue
            report.created += [t.name for t in missing]
            break
        present = [t for t in wanted if t.name in existing]
        if not present:
            return report
        described = {d["name"]: d for d in admin.describe_topics([t.name for t in present])}
        # "all": compare effective values, so a declared value that equals the broker default
        # is not mistaken for a missing one (and re-set on every run).
        configs = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, t.name) for t in present], config_filter="all"
        ).get("topic", {})
        for t in present:
            partitions = described[t.name]["partitions"]
            changed = False
            drifts_before = len(report.drift)
            if len(partitions) < t.partitions:
                admin.create_partitions({t.name: NewPartitions(total_count=t.partitions)})
                report.partitions_increased.append(f"{t.name} {len(partitions)} -> {t.partitions}")
                changed = True
            elif len(partitions) > t.partitions:
                report.drift.append(
                    f"{t.name} has {len(partitions)} partitions, the file says {t.partitions} "
                    "(Kafka cannot shrink a topic: recreate it or update the file)"
                )
            rf = len(partitions[0]["replica_nodes"]) if partitions else 0
            if rf != t.replication_factor:
                report.drift.append(
                    f"{t.name} has replication factor {rf}, expected {t.replication_factor} "
                    "(reassign partitions or recreate the topic)"
                )
            current = configs.get(t.name, {})
            differing = {
                key: value for key, value in t.configs.items() if _config_value(current.get(key)) != value
            }
            if differing:
                admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, t.name, configs=differing)])
                report.configs_updated.append(f"{t.name} {sorted(differing)}")
                changed = True
            if not changed and len(report.drift) == drifts_before:
                report.unchanged.append(t.name)
    except KafkaError as exc:
        raise TopicError("topic_apply_failed", f"applying {topic_file!r:.0}topics failed: {exc!r}") from exc
    return report


def _config_value(entry: Any) -> str | None:
    if entry is None:
        return None
    if isinstance(entry, dict):
        value = entry.get("value", entry.get("config_value"))
        return None if value is None else str(value)
    return str(entry)
