"""Releasability policy: which allies may receive an event produced by a sensor of nation X.

One data file (``producers/data/sharing_policy.toml``) and this one loader serve both sides:
producers fill ``releasable_to`` from it, ally consumers check incoming events against it.
The policy models the public topology: Japan and South Korea exchange data only through the
US hub, and only when ``hub_relay`` is on.
"""

from __future__ import annotations

import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from schemas.models import Nation
from trilink import REPO_ROOT
from trilink.errors import ConfigError

POLICY_FILE = REPO_ROOT / "producers" / "data" / "sharing_policy.toml"


class PolicyError(ConfigError):
    """The sharing-policy file is missing or invalid (reason ``invalid_policy``)."""


class NationRule(BaseModel):
    """Where one nation's sensor data may go: directly, or through the hub."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    direct: tuple[Nation, ...] = Field(min_length=1)
    via_hub: tuple[Nation, ...] = ()


class SharingPolicy(BaseModel):
    """The whole policy: the hub, whether it relays, and one rule per nation."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    hub: Nation
    hub_relay: bool
    nations: dict[Nation, NationRule]

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        missing = set(Nation) - set(self.nations)
        if missing:
            raise ValueError(f"nations: no rule for {sorted(missing)}")
        for nation, rule in self.nations.items():
            where = f"nations.{nation.value}"
            if nation not in rule.direct:
                raise ValueError(f"{where}.direct must include the nation itself")
            if len(set(rule.direct)) != len(rule.direct):
                raise ValueError(f"{where}.direct repeats a nation")
            if set(rule.direct) & set(rule.via_hub):
                raise ValueError(f"{where}: a nation is both direct and via_hub")
            if rule.via_hub and self.hub not in rule.direct:
                raise ValueError(f"{where}.via_hub needs the hub {self.hub.value} in direct")
        return self

    def releasable_to(self, sensor_nation: Nation) -> list[Nation]:
        """Who may receive events from a sensor of ``sensor_nation`` (in US, JP, KR order)."""
        rule = self.nations[sensor_nation]
        allowed = set(rule.direct) | (set(rule.via_hub) if self.hub_relay else set())
        return [n for n in Nation if n in allowed]

    def relayed_by_hub(self, sensor_nation: Nation, recipient: Nation) -> bool:
        """True when ``recipient`` gets ``sensor_nation``'s data only through the hub."""
        rule = self.nations[sensor_nation]
        return self.hub_relay and recipient in rule.via_hub

    def may_receive(self, sensor_nation: Nation, recipient: Nation) -> bool:
        return recipient in self.releasable_to(sensor_nation)


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        path = ".".join(str(p) for p in err["loc"])
        parts.append(f"{path or '<root>'}: {err['msg']}")
    return "; ".join(parts)


def parse_policy(text: str, origin: str = "sharing_policy.toml") -> SharingPolicy:
    """Validate a policy document given as TOML text."""
    try:
        return SharingPolicy.model_validate(tomllib.loads(text))
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError("invalid_policy", f"{origin}: not TOML: {exc}") from None
    except ValidationError as exc:
        raise PolicyError("invalid_policy", f"{origin}: {_describe(exc)}") from None


def load_policy(path: Path = POLICY_FILE) -> SharingPolicy:
    """Read and validate a sharing-policy file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError("invalid_policy", f"{path}: {exc.strerror}") from None
    return parse_policy(text, str(path))


@lru_cache(maxsize=1)
def default_policy() -> SharingPolicy:
    """The shipped policy (read once)."""
    return load_policy()
