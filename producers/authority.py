"""A nation's alert authority: that nation's public warnings, decided from its fused picture.

Each nation has one authority. It reads only its own fusion cell's impact predictions and
warns only for its own named areas (another nation's radar never warns for Japan). Per fused
track it keeps one alert per *channel*:

* ``territory`` (Japan's J-Alert; every nation's public warning): the nation's land territory is
  overflown or is where the missile comes down (EMERGENCY); for nations without a separate EEZ
  notice, an impact in their EEZ too (WARNING).
* ``eez`` (Japan only): a separate announcement that the missile is predicted to come down
  inside Japan's EEZ but not on its territory, as Japan's defence ministry announces such
  impacts apart from J-Alert; only once the impact is known to :data:`EEZ_NOTICE_MAX_SIGMA_M`.

A first alert goes out at once; a change (other areas, other level, or none any more: a CANCEL)
must be seen in two predictions in a row, so noise near an area's edge does not flap. Alerts
carry the missile class the fusion cell estimated. Each decision is issued
:data:`DECISION_DELAY_S` after the prediction it rests on.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import datetime

from producers.areas import AreaMap
from producers.fusion import FusedDraft
from producers.sensors import event_uuid
from schemas.models import (
    Alert,
    AlertLevel,
    AlertMsgType,
    AlertStatus,
    ImpactPrediction,
    Nation,
    TrackUpdate,
)

#: Seconds from a fused prediction to the alert decided on it (ASSUMPTION: an automated
#: decision; real authorities have announced 2-5 minutes after launch).
DECISION_DELAY_S = 1.0
#: An EEZ-impact notice waits for an impact known to this 1-sigma (semi-major axis), m: while the
#: motor burns the ellipse spans thousands of km and "inside the EEZ" means little. ASSUMPTION.
EEZ_NOTICE_MAX_SIGMA_M = 200_000.0
#: Nations whose EEZ impacts get a notice of their own, apart from the public alert.
EEZ_NOTICE_NATIONS = frozenset({Nation.JP})
TERRITORY = "territory"
EEZ = "eez"


@dataclass(slots=True)
class _Channel:
    last_id: uuid.UUID | None = None
    areas: tuple[str, ...] = ()
    level: AlertLevel | None = None
    pending: tuple[tuple[str, ...], AlertLevel | None] | None = None


@dataclass(slots=True)
class _TrackAlerts:
    channels: dict[str, _Channel] = field(default_factory=dict)
    #: own areas the fused track has been over: an overflight that has happened is not cancelled
    #: because the rest of the path no longer crosses the area
    overflown: set[str] = field(default_factory=set)


def authority_source_id(nation: Nation) -> str:
    """The ``sensor_id`` a nation's alert authority puts on its events."""
    return f"{nation.value}-ALERT"


class AlertAuthority:
    """One nation's alert authority (see the module docstring)."""

    def __init__(self, nation: Nation, *, areas: AreaMap, exercise: bool, rng: random.Random) -> None:
        self.nation = nation
        self.source_id = authority_source_id(nation)
        self.areas = areas
        self.exercise = exercise
        self.rng = rng
        self._own = frozenset(name for name, area in areas.areas.items() if area.nation is nation)
        self._tracks: dict[str, _TrackAlerts] = {}

    def channels_for(
        self, prediction: ImpactPrediction, overflown: frozenset[str] = frozenset()
    ) -> dict[str, tuple[tuple[str, ...], AlertLevel | None]]:
        """What each channel should say about ``prediction`` (and the areas already overflown):
        its areas and level (none: quiet)."""
        impact = {a for a in prediction.impact_areas if a in self._own}
        over = {a for a in prediction.overflown_areas if a in self._own} | (overflown & self._own)
        territory = {a for a in impact | over if a.endswith("_TERRITORY")}
        eez_impact = {a for a in impact if not a.endswith("_TERRITORY")}
        out: dict[str, tuple[tuple[str, ...], AlertLevel | None]] = {}
        if self.nation in EEZ_NOTICE_NATIONS:
            out[TERRITORY] = (tuple(sorted(territory)), AlertLevel.EMERGENCY if territory else None)
            settled = prediction.ellipse.semi_major_m <= EEZ_NOTICE_MAX_SIGMA_M
            notice = eez_impact if settled and not (territory & impact) else set()
            out[EEZ] = (tuple(sorted(notice)), AlertLevel.WARNING if notice else None)
        else:
            areas = territory | eez_impact
            level = AlertLevel.EMERGENCY if territory else AlertLevel.WARNING if eez_impact else None
            out[TERRITORY] = (tuple(sorted(areas)), level)
        return out

    def consider(self, fused: FusedDraft) -> list[FusedDraft]:
        """The alerts (if any) this nation issues on one of its fusion cell's products."""
        if fused.nation is not self.nation:
            return []
        state = self._tracks.setdefault(fused.correlation_key, _TrackAlerts())
        prediction = fused.payload
        if isinstance(prediction, TrackUpdate):
            where = (prediction.position.lat_deg, prediction.position.lon_deg)
            # only while the alert for the area is up: a track born over the area has not flown over it
            state.overflown.update(
                a
                for a in self.areas.areas_at(where)
                if a in self._own and any(a in c.areas for c in state.channels.values())
            )
            return []
        if not isinstance(prediction, ImpactPrediction):
            return []
        out = []
        for name, (areas, level) in self.channels_for(prediction, frozenset(state.overflown)).items():
            channel = state.channels.setdefault(name, _Channel())
            alert = self._change(channel, name, areas, level, prediction)
            if alert is None:
                continue
            event_id = event_uuid(self.rng)
            channel.last_id = None if alert.msg_type is AlertMsgType.CANCEL else event_id
            emit = fused.emit_offset_s + DECISION_DELAY_S
            out.append(
                FusedDraft(
                    emit_offset_s=emit,
                    measured_offset_s=fused.measured_offset_s,
                    source_id=self.source_id,
                    nation=self.nation,
                    correlation_key=fused.correlation_key,
                    event_id=event_id,
                    payload=alert,
                )
            )
        return out

    def _change(
        self,
        channel: _Channel,
        name: str,
        areas: tuple[str, ...],
        level: AlertLevel | None,
        prediction: ImpactPrediction,
    ) -> Alert | None:
        if channel.last_id is None:
            if not areas:
                channel.pending = None
                return None
            channel.areas, channel.level, channel.pending = areas, level, None
            return self._alert(
                name, AlertMsgType.ALERT, level=level, areas=areas, prediction=prediction, references=[]
            )
        if areas == channel.areas and level == channel.level:
            channel.pending = None
            return None
        if channel.pending != (areas, level):
            channel.pending = (areas, level)
            return None
        previous = [channel.last_id]
        channel.pending = None
        if not areas:
            cancelled = channel.areas
            channel.areas, channel.level = (), None
            return self._alert(
                name,
                AlertMsgType.CANCEL,
                level=AlertLevel.ADVISORY,
                areas=cancelled,
                prediction=prediction,
                references=previous,
            )
        channel.areas, channel.level = areas, level
        return self._alert(
            name, AlertMsgType.UPDATE, level=level, areas=areas, prediction=prediction, references=previous
        )

    def _alert(
        self,
        channel: str,
        msg_type: AlertMsgType,
        *,
        level: AlertLevel | None,
        areas: tuple[str, ...],
        prediction: ImpactPrediction,
        references: list[uuid.UUID],
    ) -> Alert:
        return Alert(
            level=level or AlertLevel.ADVISORY,
            msg_type=msg_type,
            status=AlertStatus.EXERCISE if self.exercise else AlertStatus.ACTUAL,
            affected_areas=list(areas),
            text=_text(self.nation, channel, msg_type, areas, prediction),
            references=references,
            missile_class=prediction.missile_class,
        )


def _text(
    nation: Nation,
    channel: str,
    msg_type: AlertMsgType,
    areas: tuple[str, ...],
    prediction: ImpactPrediction,
) -> str:
    when = _hhmmss(prediction.impact_time)
    cls = prediction.missile_class.value
    if channel == EEZ:
        if msg_type is AlertMsgType.CANCEL:
            return "EEZ notice withdrawn: the missile is no longer predicted to come down in Japan's EEZ."
        return f"EEZ notice: a {cls} missile is predicted to come down inside Japan's EEZ about {when}."
    if msg_type is AlertMsgType.CANCEL:
        return f"{nation.value} missile warning cancelled: the predicted path no longer touches these areas."
    if prediction.impact_areas and any(a in areas for a in prediction.impact_areas):
        return f"Missile launch ({cls}). Predicted impact in {', '.join(areas)} about {when}."
    return f"Missile launch ({cls}). Predicted overflight of {', '.join(areas)}; impact about {when}."


def _hhmmss(moment: datetime) -> str:
    return moment.strftime("%H:%M:%SZ")
