"""The plant's alarms (ISA-18.2, :mod:`darkfab.factory.alarms`) as OPC UA Alarms & Conditions.

Every change of an alarm (raised, cleared, acknowledged) is an event of type
``AlarmConditionType`` (OPC 10000-9) emitted by the ``Plant`` object: ``SourceName`` the alarm's
source, ``ConditionName`` its condition, ``Severity`` 900 critical / 700 high / 500 medium /
300 low, ``Message`` ``"<kind> <id> <condition>: <text>"``, ``ActiveState`` (``Id``: raised and
not cleared), ``AckedState`` (``Id``: acknowledged), ``Retain`` (active or not yet
acknowledged: still of interest, ISA-18.2's alarm list), and a fresh ``EventId``.

The conditions have no instances in the address space: the plant's alarms come and go by the
hundred. The standard ``Acknowledge(EventId, Comment)`` method of
``AcknowledgeableConditionType`` is called with the ``Plant`` object as the condition
(``ObjectId``); the ``EventId`` of any event of an alarm names it. It becomes the plant's
:class:`~darkfab.control.Acknowledge` command, validated and logged like a controller's
(issuer ``opcua:<n>``, the comment as the reason): ``BadEventIdUnknown`` for an event id this
server did not send, ``BadConditionBranchAlreadyAcked`` for an alarm already acknowledged,
``BadInvalidState`` for one already cleared (or the run over).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from asyncua import ua

from darkfab.control import Acknowledge

__all__ = ["AlarmConditions", "SEVERITY"]

SEVERITY = {"critical": 900, "high": 700, "medium": 500, "low": 300}
"""OPC UA Severity (1-1000) of the ISA-18.2 priorities."""
_MAX_EVENT_IDS = 100_000  # event ids remembered for Acknowledge (oldest forgotten first)


@dataclass(frozen=True)
class _Change:
    kind: str  # alarm, alarm_cleared, alarm_acknowledged
    id: int
    source: str
    condition: str
    priority: str
    text: str
    active: bool
    acked: bool


class AlarmConditions:
    """The Alarms & Conditions side of a :class:`~.opcua_server.PlantServer`."""

    def __init__(self, server: Any) -> None:
        self.server = server  # the PlantServer
        self._changes: list[_Change] = []
        self._event_ids: dict[bytes, int] = {}  # EventId -> alarm id
        self._gen: Any = None

    async def build(self, plant: Any) -> None:
        """The event generator on ``plant`` and the Acknowledge method's callback."""
        srv = self.server.server
        self._gen = await srv.get_event_generator(ua.ObjectIds.AlarmConditionType, plant)
        await plant.set_event_notifier([ua.EventNotifier.SubscribeToEvents])
        srv.link_method(srv.get_node(ua.ObjectIds.AcknowledgeableConditionType_Acknowledge),
                        self._acknowledge)

    def on_alarm(self, kind: str, a: Any) -> None:
        """An alarm changed (the plant's alarm-system subscriber): sent at the next publish."""
        self._changes.append(_Change(kind, a.id, a.source, a.condition, a.priority, a.text,
                                     kind != "alarm_cleared" and a.cleared_s is None,
                                     kind == "alarm_acknowledged"
                                     or a.acknowledged_s is not None))

    async def publish(self) -> None:
        changes, self._changes = self._changes, []
        ev = self._gen.event if self._gen is not None else None
        for c in changes:
            ev.SourceName = c.source
            ev.ConditionName = c.condition
            ev.Severity = SEVERITY.get(c.priority, 100)
            ev.Message = ua.LocalizedText(f"{c.kind} {c.id} {c.condition}: {c.text}")
            setattr(ev, "ActiveState/Id", c.active)
            ev.ActiveState = ua.LocalizedText("Active" if c.active else "Inactive")
            setattr(ev, "AckedState/Id", c.acked)
            ev.AckedState = ua.LocalizedText("Acknowledged" if c.acked else "Unacknowledged")
            setattr(ev, "EnabledState/Id", True)
            ev.EnabledState = ua.LocalizedText("Enabled")
            ev.Retain = c.active or not c.acked
            await self._gen.trigger()
            event_id = ev.EventId.Value if isinstance(ev.EventId, ua.Variant) else ev.EventId
            self._event_ids[bytes(event_id)] = c.id
            if len(self._event_ids) > _MAX_EVENT_IDS:
                self._event_ids.pop(next(iter(self._event_ids)))

    async def _acknowledge(self, parent, event_id, comment=None, *rest):
        eid = _plain(event_id)
        alarm_id = self._event_ids.get(bytes(eid or b""))
        if alarm_id is None:
            return ua.StatusCode(ua.StatusCodes.BadEventIdUnknown)
        text = _plain(comment)
        reason = getattr(text, "Text", text) or ""
        code = await self.server.answer(None, Acknowledge(alarm_id, str(reason)),
                                        ua.StatusCodes.BadInvalidState)
        note = self.server.last_note()
        if not code.is_good() and "already acknowledged" in note:
            return ua.StatusCode(ua.StatusCodes.BadConditionBranchAlreadyAcked)
        return code


def _plain(v: Any) -> Any:
    return v.Value if isinstance(v, ua.Variant) else v
