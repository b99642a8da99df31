"""The release check every event passes before an ally service delivers it.

Two independent conditions (defence in depth): the producer's own marking (the ally is in
``header.releasable_to``) and the sharing policy file read by this service (this kind of data
from ``header.sensor_nation`` may reach this ally). A producer with a stale or wrong policy
cannot make a service deliver what its own policy forbids, and a service cannot deliver what
the producer did not mark as releasable. The kind comes from the payload's type, not from
anything the producer declares, so a mislabelled header cannot widen what is released.
"""

from __future__ import annotations

from enum import StrEnum

from schemas.models import EventHeader, EventKind, Nation, WarningEvent
from trilink.policy import SharingPolicy


class WithholdReason(StrEnum):
    """Why an event was not delivered to an ally (a bounded report key)."""

    NOT_RELEASABLE = "not_releasable"  # the producer did not mark it for this ally
    POLICY_FORBIDS = "policy_forbids"  # this service's policy forbids this sensor nation and kind


def withhold_reason(ally: Nation, event: WarningEvent, policy: SharingPolicy) -> WithholdReason | None:
    """None when ``ally`` may receive ``event``, otherwise the first failed condition."""
    header = event.header
    return _first_failed(ally, header, policy.may_receive(header.sensor_nation, ally, event.kind))


class ReleaseCheck:
    """:func:`withhold_reason` for one ally's service: the policy's answer for every sensor
    nation and kind is looked up once, so the check costs two lookups per event."""

    def __init__(self, ally: Nation, policy: SharingPolicy) -> None:
        self.ally = ally
        self._allowed = {(n, k): policy.may_receive(n, ally, k) for n in Nation for k in EventKind}

    def reason(self, event: WarningEvent, kind: EventKind) -> WithholdReason | None:
        header = event.header
        return _first_failed(self.ally, header, self._allowed[(header.sensor_nation, kind)])


def _first_failed(ally: Nation, header: EventHeader, policy_allows: bool) -> WithholdReason | None:
    if ally not in header.releasable_to:
        return WithholdReason.NOT_RELEASABLE
    if not policy_allows:
        return WithholdReason.POLICY_FORBIDS
    return None
