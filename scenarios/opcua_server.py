"""An OPC UA server over a running :class:`~darkfab.scenarios.simulation.Simulation` (asyncua).

Address space (namespace ``urn:darkfab``), under ``Objects/Plant``:

- ``Plant``: ``PlantClock`` (simulated s), ``Horizon_s``, ``Speed`` (simulated s per wall s; 0
  in lockstep), ``Lag_s`` (wall seconds behind the wall clock), ``Done``; in lockstep the
  method ``Acknowledge()`` (advance one decision cycle, return the clock).
- ``Plant/Units/<unit>``, one object per unit (discrete equipment, every unit of a continuous
  line, sources), with PackTags after ISA-TR88.00.02 and OPC 30050 (PackML companion
  specification; ``Status`` and ``Admin`` are instances of its object types, with the
  type's mandatory variables in the PackML namespace: :mod:`.opcua_packml`):
  ``Status/StateCurrent`` (Int32, the PackTags state number, see
  :data:`STATE_NUMBER`), ``Status/StateCurrentName``, ``Status/UnitModeCurrent`` (1
  Production, 2 Maintenance, 3 Manual), ``Status/MachSpeed`` (the speed set-point; NaN when
  the unit has none), ``Status/CurMachSpeed`` (its present value), ``Admin/ProdProcessedCount``,
  ``Admin/ProdDefectiveCount``, ``Admin/StopReason`` (the first active alarm, or the unit's
  condition when it is not producing), ``Admin/Alarms``; ``ProcessValues/<name>`` (a line
  unit's readings); ``SetPoints/<name>`` (writable); ``LastCommandResult``; methods ``Reset
  Start Stop Hold Unhold Suspend Unsuspend Abort Clear`` (no arguments), ``SetMachSpeed(value)``
  and ``SetUnitMode(mode)``.
- ``Plant/Buffers/<buffer>``: ``Level``, ``Capacity``; ``Plant/Robots/<robot>``: ``Position``,
  ``State``, ``SoC``.

Every command (method call or set-point write) is a darkfab command applied with
:meth:`Simulation.command` (the validation of a controller's commands), issuer
``"opcua:<session name>"``. A rejected one answers ``BadInvalidState`` (PackML, interlock,
unknown mode), ``BadOutOfRange`` (a set-point out of its range) or ``BadNotSupported``; the
reason is in ``LastCommandResult`` and in ``events.parquet``. With ``read_only`` every command
answers ``BadUserAccessDenied`` and no set-point is writable. Alarms (ISA-18.2) are raised as
OPC UA Alarms & Conditions events of the ``Plant`` object (``AlarmConditionType``, with
the standard ``Acknowledge`` method: :mod:`.opcua_alarms`).

Variables are refreshed by :meth:`PlantServer.publish`, which the serving loop calls after
each advance of the clock (:mod:`darkfab.scenarios.serve`); every callback runs on the asyncio
thread that advances the simulation, so a client never sees the plant in the middle of an event.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

from asyncua import Server, ua

from darkfab.control import ChangeMode, PackMLCommand, SetPoint
from darkfab.factory.packml import Command

from .opcua_alarms import AlarmConditions
from .opcua_packml import PackMLTypes, packml_values
from .simulation import Simulation

__all__ = ["PlantServer", "STATE_NUMBER", "MODE_NUMBER", "SPEED_SETPOINTS", "NAMESPACE"]

NAMESPACE = "urn:darkfab"
STATE_NUMBER = {"Clearing": 1, "Stopped": 2, "Starting": 3, "Idle": 4, "Suspended": 5,
                "Execute": 6, "Stopping": 7, "Aborting": 8, "Aborted": 9, "Holding": 10,
                "Held": 11, "Unholding": 12, "Suspending": 13, "Unsuspending": 14,
                "Resetting": 15, "Completing": 16, "Complete": 17}
"""PackTags ``StateCurrent`` numbers (ISA-TR88.00.02 Table 10; 0 is Undefined)."""
MODE_NUMBER = {"Production": 1, "Maintenance": 2, "Manual": 3}
"""PackTags ``UnitModeCurrent`` numbers (ISA-TR88.00.02; other modes: 0)."""
SPEED_SETPOINTS = ("line_rate_kg_h", "setpoint_kg_h", "speed_rpm")
"""The set-point that ``MachSpeed`` / ``SetMachSpeed`` stand for, first found on a unit."""

_log = logging.getLogger("darkfab.opcua")


class _Unit:
    """The nodes of one unit object."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.vars: dict[str, Any] = {}  # key -> variable node
        self.values: dict[str, Any] = {}  # key -> last published value
        self.kinds: dict[str, ua.VariantType] = {}
        self.speed_sp: str | None = None
        self.obj: Any = None  # the unit's object node
        self.pv_folder: Any = None  # its ProcessValues folder, made with the first reading


class PlantServer:
    """The OPC UA view and command surface of a simulation (see the module docstring).

    Args:
        sim: an open :class:`Simulation`.
        host, port: the endpoint ``opc.tcp://host:port/darkfab/`` (port 0 is not supported
            by asyncua: pick a free port).
        read_only: refuse every command and set-point write.
        acknowledge: in lockstep, the coroutine behind ``Plant.Acknowledge()`` (it advances
            one decision cycle and returns the clock); ``None``: no such method.
        remote: the :class:`~.remote_control.RemoteController` of the run, if its controller
            is a client: ``Plant/Controller`` is served (:mod:`.opcua_controller`).
        security: an :class:`~.opcua_security.Security` (users, certificate); ``None``: no
            security, anonymous clients (bind to 127.0.0.1).
    """

    def __init__(self, sim: Simulation, host: str = "127.0.0.1", port: int = 4840, *,
                 read_only: bool = False,
                 acknowledge: Callable[[], Awaitable[float]] | None = None,
                 remote: Any = None, security: Any = None) -> None:
        self.sim = sim
        self.host = host
        self.port = port
        self.read_only = read_only
        self.acknowledge = acknowledge
        self.remote = remote
        self.security = security
        self.controller_nodes: Any = None
        self.server = Server(user_manager=None if security is None
                             else security.user_manager())
        self.units: dict[str, _Unit] = {}
        self.plant_vars: dict[str, Any] = {}
        self.other: dict[tuple[str, str], Any] = {}  # (buffer|robot, key) -> node
        self.alarms: Any = None  # AlarmConditions, made by start()
        self.packml = PackMLTypes()
        self._speed_rates: dict[str, tuple[float, int]] = {}
        self.speed = 0.0
        self.lag_s = 0.0
        self.commands = 0
        self._setpoint_nodes: dict[Any, tuple[str, str]] = {}  # node id -> (unit, set-point)
        self._sessions: dict[int, int] = {}  # id(session) -> its number at this server
        self._controller_note = ""

    @property
    def endpoint(self) -> str:
        return f"opc.tcp://{self.host}:{self.port}/darkfab/"

    # --- build ----------------------------------------------------------------------------
    async def start(self) -> None:
        """Build the address space from the plant's first observation and start serving."""
        srv = self.server
        await srv.init()
        iserver = srv.iserver
        iserver.attribute_service = _SetPointWrites(iserver.attribute_service, self)
        srv.set_endpoint(self.endpoint)
        if self.security is not None:  # users, certificate: :mod:`.opcua_security`
            await self.security.apply(srv)
        else:
            srv.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        srv.set_server_name("darkfab plant simulation")
        idx = await srv.register_namespace(NAMESPACE)
        await self.packml.load(srv)  # OPC 30050 types (after ours: urn:darkfab stays ns 2)
        self.idx = idx
        plant = await srv.nodes.objects.add_object(idx, "Plant")
        self.plant = plant
        for key, v, t in (("PlantClock", 0.0, ua.VariantType.Double),
                          ("Horizon_s", self.sim.horizon_s, ua.VariantType.Double),
                          ("Speed", 0.0, ua.VariantType.Double),
                          ("Lag_s", 0.0, ua.VariantType.Double),
                          ("Done", False, ua.VariantType.Boolean)):
            self.plant_vars[key] = await plant.add_variable(idx, key, ua.Variant(v, t))
        if self.acknowledge is not None:
            await plant.add_method(idx, "Acknowledge", self._on_acknowledge, [],
                                   [ua.VariantType.Double])
        loop = self.sim.plant.control
        assert loop is not None, "an open simulation has a control loop"
        setpoints = loop.line_control.setpoint_info()
        obs = self.sim.observe()
        units = await plant.add_object(idx, "Units")
        for name in [*obs.equipment, *loop.sources]:
            await self._add_unit(units, name, setpoints.get(name, {}))
        bufs = await plant.add_object(idx, "Buffers")
        for name, b in obs.buffers.items():
            o = await bufs.add_object(idx, name)
            self.other[(name, "Level")] = await o.add_variable(idx, "Level", 0.0)
            cap = -1.0 if b.capacity_units is None else float(b.capacity_units)
            await o.add_variable(idx, "Capacity", cap)
        robots = await plant.add_object(idx, "Robots")
        for name in obs.robots:
            o = await robots.add_object(idx, name)
            for key, v in (("Position", ""), ("State", ""), ("SoC", 0.0)):
                self.other[(name, key)] = await o.add_variable(idx, key, v)
        if self.remote is not None:
            from .opcua_controller import ControllerNodes
            self.controller_nodes = ControllerNodes(self, self.remote)
            await self.controller_nodes.build(plant, idx)
        self.alarms = AlarmConditions(self)
        await self.alarms.build(plant)
        self.sim.plant.model.alarms.subscribe(self.alarms.on_alarm)
        await srv.start()
        await self.publish()
        _log.info("OPC UA server at %s%s", self.endpoint, " (read-only)" if self.read_only
                  else "")

    async def _add_unit(self, parent, name: str, setpoints) -> None:
        idx = self.idx
        u = _Unit(name)
        self.units[name] = u
        obj = await parent.add_object(idx, name)
        status, spec_vars = await self.packml.status(obj, idx)
        admin = await self.packml.admin(obj, idx)
        for key, (node, kind) in spec_vars.items():
            u.vars[key], u.kinds[key] = node, kind
        D, I, S = ua.VariantType.Double, ua.VariantType.Int32, ua.VariantType.String
        for folder, key, v, t in ((status, "StateCurrent", 0, I),
                                  (status, "StateCurrentName", "", S),
                                  (status, "UnitModeCurrent", 0, I),
                                  (status, "MachSpeed", math.nan, D),
                                  (status, "CurMachSpeed", 0.0, D),
                                  (admin, "ProdProcessedCount", 0, ua.VariantType.Int64),
                                  (admin, "ProdDefectiveCount", 0, ua.VariantType.Int64),
                                  (admin, "StopReason", "", S),
                                  (obj, "LastCommandResult", "", S)):
            u.vars[key] = await folder.add_variable(idx, key, ua.Variant(v, t))
            u.kinds[key] = t
        u.vars["Alarms"] = await admin.add_variable(
            idx, "Alarms", ua.Variant([], ua.VariantType.String, is_array=True))
        u.kinds["Alarms"] = ua.VariantType.String
        u.speed_sp = next((k for k in SPEED_SETPOINTS if k in setpoints), None)
        if setpoints:
            sp = await obj.add_object(idx, "SetPoints")
            for key, rng in setpoints.items():
                var = await sp.add_variable(idx, key, ua.Variant(0.0, D))
                await var.write_attribute(ua.AttributeIds.Description, ua.DataValue(
                    ua.Variant(ua.LocalizedText(f"{rng.unit}, {rng.low:g} to {rng.high:g}"),
                               ua.VariantType.LocalizedText)))
                u.vars[f"SetPoints/{key}"] = var
                u.kinds[f"SetPoints/{key}"] = D
                if not self.read_only:
                    await var.set_writable()
                    self._setpoint_nodes[var.nodeid] = (name, key)
        u.obj = obj
        for cmd in Command:  # OPC 30050: no declared argument; an optional String reason
            await obj.add_method(idx, cmd.value, self._method(name, cmd), [], [])
        await obj.add_method(idx, "SetMachSpeed", self._set_speed(name), [D], [])
        await obj.add_method(idx, "SetUnitMode", self._set_mode(name), [S], [])
        if setpoints:
            await obj.add_method(idx, "SetPoint", self._set_point(name), [S, D], [])

    # --- commands -------------------------------------------------------------------------
    def issuer(self) -> str:
        """``opcua:<n>``: the n-th client session to command this server (deterministic, so
        that a scripted lockstep run logs the same bytes; the logger maps n to the peer)."""
        session = _session()
        if session is None:
            return "opcua:?"
        n = self._sessions.get(id(session))
        if n is None:
            n = self._sessions[id(session)] = len(self._sessions) + 1
            _log.info("OPC UA session %d: %s", n, getattr(session, "name", "?"))
        return f"opcua:{n}"

    def _apply(self, unit: str, cmd: Any, bad: int) -> ua.StatusCode:
        """Apply ``cmd`` through the simulation's validation; the status code to answer."""
        u = self.units[unit] if unit is not None else None
        if self.read_only:
            self._note(u, f"{type(cmd).__name__}: refused: the server is read-only")
            return ua.StatusCode(ua.StatusCodes.BadUserAccessDenied)
        if self.sim.result is not None:
            self._note(u, f"{type(cmd).__name__}: refused: the run is over")
            return ua.StatusCode(ua.StatusCodes.BadInvalidState)
        self.commands += 1
        issuer = self.issuer()
        cn = self.controller_nodes
        if cn is not None and cn.takes(issuer):  # part of the open decision's answer
            seq = cn.remote.add(cmd)
            self._note(u, f"{type(cmd).__name__}: answer of decision {seq}")
            return ua.StatusCode(ua.StatusCodes.Good)
        r = self.sim.command(cmd, issuer=issuer)
        if r.accepted:
            self._note(u, f"{type(cmd).__name__}: accepted at {self.sim.now:g} s")
            return ua.StatusCode(ua.StatusCodes.Good)
        self._note(u, r.reason)
        if "unsupported" in r.reason:
            bad = ua.StatusCodes.BadNotSupported
        return ua.StatusCode(bad)

    def _note(self, u: _Unit | None, text: str) -> None:
        """Set ``LastCommandResult`` of unit ``u`` (``None``: of ``Plant/Controller``), written
        at once: a client reads it after the answer."""
        if u is None:
            self._controller_note = text
            return
        u.values["LastCommandResult"] = text
        asyncio.get_running_loop().create_task(
            self._write(u.vars["LastCommandResult"], text, ua.VariantType.String))

    async def answer(self, unit: str | None, cmd: Any, bad: int) -> ua.StatusCode:
        """A method's answer: apply ``cmd`` (``unit``: where its result is noted, ``None``:
        ``Plant/Controller``), then publish its immediate effects."""
        code = self._apply(unit, cmd, bad)
        if unit is None:
            if self.controller_nodes is not None:
                await self.controller_nodes.note(self._controller_note)
        else:
            u = self.units[unit]
            await self._write(u.vars["LastCommandResult"], u.values["LastCommandResult"],
                              ua.VariantType.String)
        if code.is_good():
            await self.publish()
        return code

    def last_note(self) -> str:
        """The result of the latest command without a unit (``Plant/Controller``, alarms)."""
        return self._controller_note

    def _method(self, unit: str, command: Command):
        async def call(parent, *args):
            return await self.answer(unit, PackMLCommand(unit, command.value, _reason(args)),
                                     ua.StatusCodes.BadInvalidState)
        return call

    def _set_point(self, unit: str):
        async def call(parent, key, value, *args):
            key, value = _plain(key), _plain(value)
            return await self.answer(unit, SetPoint(unit, str(key), float(value),
                                                    _reason(args)),
                                     ua.StatusCodes.BadOutOfRange)
        return call

    def _set_speed(self, unit: str):
        async def call(parent, value, *args):
            u = self.units[unit]
            if u.speed_sp is None:
                self._note(u, f"SetMachSpeed: {unit} has no speed set-point")
                return ua.StatusCode(ua.StatusCodes.BadNotSupported)
            return await self.answer(unit, SetPoint(unit, u.speed_sp, float(_plain(value)),
                                                    _reason(args)),
                                     ua.StatusCodes.BadOutOfRange)
        return call

    def _set_mode(self, unit: str):
        async def call(parent, mode, *args):
            return await self.answer(unit, ChangeMode(unit, str(_plain(mode)), _reason(args)),
                                     ua.StatusCodes.BadInvalidState)
        return call

    def validate_write(self, nodeid, value: Any) -> ua.StatusCode | None:
        """A client writes ``value`` to ``nodeid``: ``None`` if it is not a set-point (the
        write goes ahead), else the answer after applying it as a :class:`SetPoint` (Good:
        the write goes ahead and shows the value until the next publication)."""
        where = self._setpoint_nodes.get(nodeid)
        if where is None:
            return None
        unit, key = where
        try:
            v = float(value)
        except (TypeError, ValueError):
            return ua.StatusCode(ua.StatusCodes.BadTypeMismatch)
        return self._apply(unit, SetPoint(unit, key, v), ua.StatusCodes.BadOutOfRange)

    async def _on_acknowledge(self, parent):
        assert self.acknowledge is not None
        t = await self.acknowledge()
        return [ua.Variant(t, ua.VariantType.Double)]

    # --- publish --------------------------------------------------------------------------
    async def publish(self) -> None:
        """Refresh every variable from the simulation's exact observation, and raise the
        alarm events seen since the last call."""
        sim = self.sim
        now = sim.now
        await self._write(self.plant_vars["PlantClock"], now, ua.VariantType.Double)
        await self._write(self.plant_vars["Speed"], float(self.speed), ua.VariantType.Double)
        await self._write(self.plant_vars["Lag_s"], float(self.lag_s), ua.VariantType.Double)
        await self._write(self.plant_vars["Done"], sim.done, ua.VariantType.Boolean)
        if sim.result is None:
            obs = sim.observe()
            for name, e in obs.equipment.items():
                await self._publish_unit(self.units[name], e, now)
            for name, b in obs.buffers.items():
                await self._write(self.other[(name, "Level")],
                                  -1.0 if b.level_units is None else float(b.level_units),
                                  ua.VariantType.Double)
            for name, r in obs.robots.items():
                for key, v in (("Position", r.position), ("State", r.state),
                               ("SoC", -1.0 if r.soc is None else float(r.soc))):
                    await self._write(self.other[(name, key)], v,
                                      ua.VariantType.Double if key == "SoC"
                                      else ua.VariantType.String)
        if self.controller_nodes is not None:
            await self.controller_nodes.publish()
        await self.alarms.publish()

    async def _publish_unit(self, u: _Unit, e, now: float) -> None:
        vals: dict[str, Any] = {
            "StateCurrent": STATE_NUMBER.get(e.state.value, 0),
            "StateCurrentName": e.state.value,
            "UnitModeCurrent": MODE_NUMBER.get(e.mode, 0),
            "ProdProcessedCount": int(e.units_out),
            "ProdDefectiveCount": int(e.units_out - e.units_good),
            "StopReason": (e.alarms[0] if e.alarms else
                           "" if e.condition == "producing" else e.condition),
            "Alarms": list(e.alarms),
        }
        if u.speed_sp is not None:
            sp = e.values.get(u.speed_sp)
            meas = e.values.get("feed_rate_kg_h", sp)
            vals["MachSpeed"] = float(sp.value) if sp is not None else math.nan
            vals["CurMachSpeed"] = float(meas.value) if meas is not None else 0.0
            if e.state.value != "Execute":
                vals["CurMachSpeed"] = 0.0
        else:  # discrete unit: units per hour since the last publication
            t0, n0 = self._speed_rates.get(u.name, (now, e.units_out))
            vals["CurMachSpeed"] = 3600.0 * (e.units_out - n0) / (now - t0) if now > t0 else 0.0
            self._speed_rates[u.name] = (now, e.units_out)
        vals.update(packml_values(e, vals))
        for key, r in e.values.items():
            sp_key = f"SetPoints/{key}"
            if sp_key in u.vars:
                vals[sp_key] = float(r.value)
            pv_key = f"ProcessValues/{key}"
            if pv_key not in u.vars:
                if u.pv_folder is None:
                    u.pv_folder = await u.obj.add_object(self.idx, "ProcessValues")
                u.vars[pv_key] = await u.pv_folder.add_variable(self.idx, key, float(r.value))
                u.kinds[pv_key] = ua.VariantType.Double
            vals[pv_key] = float(r.value)
        for key, v in vals.items():
            if u.values.get(key) != v or key not in u.values:
                u.values[key] = v
                await self._write(u.vars[key], v, u.kinds[key])

    async def write(self, node, value, kind: ua.VariantType) -> None:
        """Write a value as the server (not through the clients' write service)."""
        await self._write(node, value, kind)

    async def _write(self, node, value, kind: ua.VariantType) -> None:
        """Write a value as the server (not through the clients' write service)."""
        is_array = isinstance(value, list)
        await self.server.write_attribute_value(
            node.nodeid, ua.DataValue(ua.Variant(value, kind, is_array=is_array)))

    def clients(self) -> int:
        """Client connections open now."""
        bserver = getattr(self.server, "bserver", None)
        return len(getattr(bserver, "clients", ()))

    async def stop(self) -> None:
        await self.server.stop()


class _SetPointWrites:
    """The server's attribute service, with clients' writes to set-points validated first.

    A value setter (asyncua's hook) can only refuse a write by raising, which fails the whole
    Write request; this answers each node of the request with its own status code instead
    (Good, or Bad with the reason in the unit's ``LastCommandResult``)."""

    def __init__(self, inner, server: PlantServer) -> None:
        self.inner = inner
        self.plant_server = server

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def write(self, params: ua.WriteParameters, user=None) -> list[ua.StatusCode]:
        out: list[ua.StatusCode] = []
        kw = {} if user is None else {"user": user}
        for wv in params.NodesToWrite:
            code = None
            if wv.AttributeId == ua.AttributeIds.Value and wv.Value.Value is not None:
                code = self.plant_server.validate_write(wv.NodeId, wv.Value.Value.Value)
            if code is not None and not code.is_good():
                out.append(code)
                continue
            one = ua.WriteParameters()
            one.NodesToWrite = [wv]
            out.extend(await self.inner.write(one, **kw))
        return out


def _plain(v: Any) -> Any:
    """A method argument's value (asyncua passes Variants)."""
    return v.Value if isinstance(v, ua.Variant) else v


def _reason(args: tuple) -> str:
    """The optional last String argument of a command method: why (goes to the event log)."""
    return str(_plain(args[0]) or "") if args else ""


def _session() -> Any:
    """The session of the OPC UA client whose request is being served, or ``None`` (asyncua
    passes no session to a method callback: each connection is served by its own task, whose
    coroutine belongs to the connection's protocol, which holds the session)."""
    try:
        task = asyncio.current_task()
        proto = task.get_coro().cr_frame.f_locals.get("self")  # type: ignore[union-attr]
        return getattr(getattr(proto, "processor", None), "session", None)
    except Exception:  # noqa: BLE001 - the command is still logged, as "opcua:?"
        return None
