"""Releasability policy: which allies may receive an event of a given kind from a sensor of nation X.

One data file (``producers/data/sharing_policy.toml``) and this one loader serve both sides:
producers fill ``releasable_to`` from it, ally consumers check incoming events against it.
The policy models the public topology: Japan and South Korea exchange data only through the
US hub, only when ``hub_relay`` is on, and only for the event kinds the hub relays (those
carrying the three publicly named items: launch point, trajectory, impact point). Every
other kind from JP or KR stays bilateral with the US.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from schemas.models import EventKind, Nation
from trilink.errors import ConfigError
from trilink.resources import package_path
from trilink.tomlfile import parse_toml, read_toml

POLICY_FILE = package_path("producers", "data", "sharing_policy.toml")


class PolicyError(ConfigError):
    """The sharing-policy file is missing or invalid (reason ``invalid_policy``)."""


def _repeats(items: Iterable[StrEnum]) -> list[str]:
    counts = Counter(i.value for i in items)
    return sorted(value for value, n in counts.items() if n > 1)


class NationRule(BaseModel):
    """Where one nation's sensor data may go: directly (every kind), or through the hub.

    ``relayed_kinds``, when given, replaces the policy-wide list for this nation's data.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    direct: tuple[Nation, ...] = Field(min_length=1)
    via_hub: tuple[Nation, ...] = ()
    relayed_kinds: tuple[EventKind, ...] | None = None


class SharingPolicy(BaseModel):
    """The whole policy: the hub, whether and what it relays, and one rule per nation."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    hub: Nation
    hub_relay: bool
    relayed_kinds: tuple[EventKind, ...]
    nations: dict[Nation, NationRule]

    # (sensor nation, kind) -> recipients in Nation order; built once, read on every event.
    _table: dict[tuple[Nation, EventKind], tuple[Nation, ...]] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        repeated = _repeats(self.relayed_kinds)
        if repeated:
            raise ValueError(f"relayed_kinds repeats {repeated}")
        missing = set(Nation) - set(self.nations)
        if missing:
            raise ValueError(f"nations: no rule for {sorted(missing)}")
        for nation, rule in self.nations.items():
            where = f"nations.{nation.value}"
            if nation not in rule.direct:
                raise ValueError(f"{where}.direct must include the nation itself")
            if _repeats(rule.direct):
                raise ValueError(f"{where}.direct repeats {_repeats(rule.direct)}")
            if _repeats(rule.via_hub):
                raise ValueError(f"{where}.via_hub repeats {_repeats(rule.via_hub)}")
            if set(rule.direct) & set(rule.via_hub):
                raise ValueError(f"{where}: a nation is both direct and via_hub")
            if rule.via_hub and self.hub not in rule.direct:
                raise ValueError(f"{where}.via_hub needs the hub {self.hub.value} in direct")
            if rule.relayed_kinds is not None:
                if not rule.via_hub:
                    raise ValueError(f"{where}.relayed_kinds has no effect without via_hub")
                if _repeats(rule.relayed_kinds):
                    raise ValueError(f"{where}.relayed_kinds repeats {_repeats(rule.relayed_kinds)}")
        self._table = {(n, k): self._recipients(n, k) for n in Nation for k in EventKind}
        return self

    def _recipients(self, sensor_nation: Nation, kind: EventKind) -> tuple[Nation, ...]:
        rule = self.nations[sensor_nation]
        allowed = set(rule.direct)
        if self.hub_relay and kind in self.relayed_kinds_of(sensor_nation):
            allowed |= set(rule.via_hub)
        return tuple(n for n in Nation if n in allowed)

    def relayed_kinds_of(self, sensor_nation: Nation) -> tuple[EventKind, ...]:
        """The kinds the hub relays for ``sensor_nation``'s data (its override, else the default)."""
        own = self.nations[sensor_nation].relayed_kinds
        return self.relayed_kinds if own is None else own

    def releasable_to(self, sensor_nation: Nation, kind: EventKind) -> list[Nation]:
        """Who may receive ``kind`` events from a sensor of ``sensor_nation`` (in US, JP, KR order)."""
        return list(self._table[(sensor_nation, kind)])

    def relayed_by_hub(self, sensor_nation: Nation, recipient: Nation, kind: EventKind) -> bool:
        """True when ``recipient`` gets this kind of ``sensor_nation``'s data only through the hub."""
        rule = self.nations[sensor_nation]
        return recipient in rule.via_hub and recipient in self._table[(sensor_nation, kind)]

    def may_receive(self, sensor_nation: Nation, recipient: Nation, kind: EventKind) -> bool:
        """True when ``recipient`` may receive ``kind`` events from a sensor of ``sensor_nation``."""
        return recipient in self._table[(sensor_nation, kind)]


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        path = ".".join(str(p) for p in err["loc"])
        parts.append(f"{path or '<root>'}: {err['msg']}")
    return "; ".join(parts)


def parse_policy(text: str, origin: str = "sharing_policy.toml") -> SharingPolicy:
    """Validate a policy document given as TOML text."""
    return _validate(parse_toml(text, origin, PolicyError, invalid="invalid_policy"), origin)


def _validate(document: dict[str, Any], origin: str) -> SharingPolicy:
    try:
        return SharingPolicy.model_validate(document)
    except ValidationError as exc:
        raise PolicyError("invalid_policy", f"{origin}: {_describe(exc)}") from None


def load_policy(path: Path = POLICY_FILE) -> SharingPolicy:
    """Read and validate a sharing-policy file."""
    document = read_toml(path, PolicyError, missing="invalid_policy", invalid="invalid_policy")
    return _validate(document, str(path))


@lru_cache(maxsize=1)
def default_policy() -> SharingPolicy:
    """The shipped policy (read once)."""
    return load_policy()
