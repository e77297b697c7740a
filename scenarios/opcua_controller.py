"""``Plant/Controller``: the decision-cycle handshake on the OPC UA server (lockstep serving with
``--remote-controller``, see :mod:`.remote_control`).

Variables (all read-only): ``Name`` (the controller's, the issuer of its commands in the event
log), ``Spec`` (JSON: the scenario's ``[controller]`` name and params), ``PlantInfo`` (JSON:
the static plant, :class:`~darkfab.control.PlantInfo`), ``DecisionSequence`` (Int64: 0 before
the first decision, then 1, 2, ...), ``DecisionOpen`` (Boolean), ``DecisionTime_s``,
``Events`` (JSON: ``[[time_s, kind, source, detail], ...]``, the events that woke the
controller), ``Observation`` (JSON: the :class:`~darkfab.control.Observation` it is given),
``LastCommandResult``. Encoding: :mod:`.wire`.

Methods: ``Attach()`` (this session is the controller: its commands while a decision is open
are that decision's answer, in the order sent; returns ``Spec`` and ``PlantInfo``),
``Advance()`` (``Plant/Acknowledge()`` that also returns, in the same round trip, the plant
clock, ``Done`` and the open decision: its sequence number, 0 if none, events and
observation) and one
method per command type that is not a unit's (``WakeUp(at_s, tag, reason)``,
``Acknowledge(alarm_id, reason)``, ``Quarantine(lot, reason)``, ``Release``, ``Divert``,
``TransportRequest(origin, destination, units, reason)``, ``Maintenance(unit, kind,
reason)``, ``Dispatch(unit, rule, reason)``, ``Sequence(unit, lots, reason)``,
``Charge(robot, reason)``): arguments are the command's fields in order
(:func:`darkfab.scenarios.wire.command_fields`). Outside a decision (or from another session)
such a command is applied at once, like a unit method's.
"""

from __future__ import annotations

import json
import typing
from typing import Any

from asyncua import ua

from .remote_control import RemoteController
from .wire import CONTROLLER_COMMANDS, command_fields

__all__ = ["ControllerNodes"]

_D, _I, _S, _B = (ua.VariantType.Double, ua.VariantType.Int64, ua.VariantType.String,
                  ua.VariantType.Boolean)


def _variant_type(tp: Any) -> tuple[ua.VariantType, bool]:
    """OPC UA type (and whether an array) of a command field's type hint."""
    if tp is float:
        return _D, False
    if tp is int:
        return _I, False
    if typing.get_origin(tp) is tuple:
        return _S, True
    return _S, False


def _argument(name: str, tp: Any) -> ua.Argument:
    vt, is_array = _variant_type(tp)
    arg = ua.Argument()
    arg.Name = name
    arg.DataType = ua.NodeId(vt.value)
    arg.ValueRank = 1 if is_array else -1
    if is_array:
        arg.ArrayDimensions = [0]
    return arg


def plain(v: Any) -> Any:
    """A method argument's value (asyncua passes Variants)."""
    return v.Value if isinstance(v, ua.Variant) else v


class ControllerNodes:
    """The ``Plant/Controller`` object of a :class:`~.opcua_server.PlantServer`."""

    def __init__(self, server: Any, remote: RemoteController) -> None:
        self.server = server  # the PlantServer
        self.remote = remote
        self.vars: dict[str, Any] = {}
        self.session: str | None = None  # issuer of the attached session
        self._published = -1

    async def build(self, plant: Any, idx: int) -> None:
        obj = await plant.add_object(idx, "Controller")
        r = self.remote
        for key, v, t in (("Name", r.name, _S),
                          ("Spec", json.dumps(r.spec), _S),
                          ("PlantInfo", r.info_json, _S),
                          ("DecisionSequence", 0, _I),
                          ("DecisionOpen", False, _B),
                          ("DecisionTime_s", 0.0, _D),
                          ("Events", "[]", _S),
                          ("Observation", "", _S),
                          ("LastCommandResult", "", _S)):
            self.vars[key] = await obj.add_variable(idx, key, ua.Variant(v, t))
        await obj.add_method(idx, "Attach", self._attach, [], [_S, _S])
        if self.server.acknowledge is not None:
            await obj.add_method(idx, "Advance", self._advance, [], [_D, _B, _I, _S, _S])
        for cls in CONTROLLER_COMMANDS:
            fields = command_fields(cls)
            await obj.add_method(idx, cls.__name__, self._command(cls),
                                 [_argument(n, tp) for n, tp in fields], [])

    async def _attach(self, parent):
        self.session = self.server.issuer()
        r = self.remote
        return [ua.Variant(json.dumps(r.spec), _S), ua.Variant(r.info_json, _S)]

    async def _advance(self, parent):
        """``Plant/Acknowledge()``, answering in the same round trip the plant clock, Done, and
        the open decision (sequence number, events, observation; 0 and empty strings when
        none is open)."""
        t = await self.server.acknowledge()
        req = self.remote.request
        seq, events, obs = (0, "", "") if req is None else \
            (req.seq, req.events_json, req.observation_json)
        return [ua.Variant(float(t), _D), ua.Variant(bool(self.server.sim.done), _B),
                ua.Variant(seq, _I), ua.Variant(events, _S), ua.Variant(obs, _S)]

    def takes(self, issuer: str) -> bool:
        """A command from ``issuer`` is part of the open decision's answer."""
        return self.remote.pending() and issuer == self.session

    def _command(self, cls: type):
        fields = command_fields(cls)

        async def call(parent, *args):
            values = [plain(a) for a in args]
            if len(values) < len(fields) and fields[-1][0] == "reason":
                values.append("")
            try:
                kw = {}
                for (n, tp), v in zip(fields, values):
                    if tp is float:
                        v = float(v)
                    elif tp is int:
                        v = int(v)
                    elif typing.get_origin(tp) is tuple:
                        v = tuple(v or ())
                    kw[n] = v
                cmd = cls(**kw)
            except (TypeError, ValueError) as e:
                await self.note(f"{cls.__name__}: bad arguments: {e}")
                return ua.StatusCode(ua.StatusCodes.BadInvalidArgument)
            return await self.server.answer(None, cmd, ua.StatusCodes.BadInvalidState)
        return call

    async def note(self, text: str) -> None:
        await self.server.write(self.vars["LastCommandResult"], text, _S)

    async def publish(self) -> None:
        """Write the open decision request, if it is new."""
        req = self.remote.request
        w = self.server.write
        await w(self.vars["DecisionOpen"], req is not None, _B)
        if req is None or req.seq == self._published:
            return
        self._published = req.seq
        await w(self.vars["Events"], req.events_json, _S)
        await w(self.vars["Observation"], req.observation_json, _S)
        await w(self.vars["DecisionTime_s"], float(self.server.sim.now), _D)
        await w(self.vars["DecisionSequence"], req.seq, _I)
