"""One handler per command type: how the plant validates and applies a controller's command.

:data:`HANDLERS` maps each command class of :data:`darkfab.control.commands.COMMAND_TYPES` (the
single list of command types) to its handler class; :func:`handlers_for` builds the table once
per :class:`~darkfab.scenarios.control_loop.ControlLoop`. A handler (:class:`CommandHandler`)

* ``target(cmd)``: the entity the command's log rows name (a unit, source, buffer, lot,
  alarm source or ``plant``);
* ``check(cmd)``: why the command is refused now, or ``None`` (no side effect);
* ``apply(cmd, issuer)``: applies it and logs the ``command`` row through
  :meth:`ControlLoop.log_command`, at the point of the effects where the log wants it; returns a
  refusal found only while applying (by lower layers that validate and apply in one call, such
  as a line's set-point or a lot disposition), else ``None``.

The loop rejects a refused command (``command_rejected``, detail ``"<Command>: <reason>"``),
except a :class:`UnitRefusal`, which the unit's PackML state model has logged itself (detail
``"<command> in <state>"``, as :meth:`~darkfab.agents.equipment.Equipment.command` does). A
command this plant cannot apply is refused with :data:`UNSUPPORTED` (counted in the summary's
``commands_unsupported``).

Adding a command type: its dataclass in :mod:`darkfab.control.commands` (and in
``PlantCommand``), and a handler class registered here in :data:`HANDLERS`.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

from darkfab.control import Event
from darkfab.control.commands import (COMMAND_TYPES, Acknowledge, ChangeMode, Charge, Dispatch,
                                      Divert, Maintenance, PackMLCommand, Quarantine, Release,
                                      Sequence, SetPoint, TransportRequest, WakeUp)
from darkfab.control.dispatching import RULES
from darkfab.control.release import RuleRelease
from darkfab.factory.packml import Command
from darkfab.factory.transport import Staging

__all__ = ["CommandHandler", "HANDLERS", "handlers_for", "UnitRefusal", "UNSUPPORTED",
           "INTERLOCKED"]

UNSUPPORTED = "unsupported by this plant"
"""The refusal of a command this plant cannot apply."""

INTERLOCKED = frozenset({Command.RESET, Command.START, Command.UNHOLD, Command.UNSUSPEND,
                         Command.CLEAR})
"""Commands that lead back towards Execute: refused while a fault of the unit is active."""


class UnitRefusal(str):
    """A refusal that the unit has already logged itself (its detail, e.g. ``"Hold in
    Stopped"``): the loop only counts it and reports it to the controller."""


class CommandHandler(Protocol):
    """Validates and applies one command type (see the module docstring)."""

    def target(self, cmd: Any) -> str: ...

    def check(self, cmd: Any) -> str | None: ...

    def apply(self, cmd: Any, issuer: str) -> str | None: ...


class _Handler:
    """Base: the loop, and the target of most commands (its unit, robot, lot or origin)."""

    def __init__(self, loop) -> None:
        self.loop = loop

    def target(self, cmd: Any) -> str:
        return str(getattr(cmd, "unit", None) or getattr(cmd, "robot", None)
                   or getattr(cmd, "lot", None) or getattr(cmd, "origin", None) or "plant")


def _parse(command: Command | str) -> Command | None:
    try:
        return Command(command)
    except ValueError:
        return None


class PackMLHandler(_Handler):
    """PackML commands to a unit, a line or a line unit (by the line), or a source (Stop and
    Start: it stops or resumes releasing material)."""

    def check(self, cmd: PackMLCommand) -> str | None:
        loop = self.loop
        if cmd.unit in loop.line_control:
            return loop.line_control.check(cmd)
        if cmd.unit not in loop.equipment:
            if cmd.unit in loop.sources:
                return self._check_source(cmd)
            return f"unknown unit {cmd.unit!r}"
        command = _parse(cmd.command)
        if command is None:
            return f"unknown PackML command {cmd.command!r}"
        faults = loop.active_faults(cmd.unit)
        if command in INTERLOCKED and faults:
            return f"interlock: {command.value} with active fault {', '.join(faults)}"
        return None

    def _check_source(self, cmd: PackMLCommand) -> str | None:
        stopped = self.loop.sources[cmd.unit].stopped
        command = _parse(cmd.command)
        if (command is Command.STOP and not stopped) or (command is Command.START and stopped):
            return None
        what = cmd.command.value if isinstance(cmd.command, Command) else cmd.command
        return (f"a source takes Stop (running) and Start (stopped), not {what} "
                f"({'stopped' if stopped else 'running'})")

    def apply(self, cmd: PackMLCommand, issuer: str) -> str | None:
        loop = self.loop
        if cmd.unit in loop.line_control:
            return loop.line_control.apply(cmd, issuer, loop.log_command)
        command = Command(cmd.command)
        eq = loop.equipment.get(cmd.unit)
        if eq is None:
            src = loop.sources[cmd.unit]
            if command is Command.STOP:
                src.stop()
            else:
                src.stopped = False
                src.start()
            loop.log_command(src.name, command.value, cmd, issuer)
            return None
        if eq.sm.target(command) is None:
            eq.command(command, issuer=issuer)  # the unit logs and counts its refusal
            return UnitRefusal(f"{command.value} in {eq.state.value}")
        loop.log_command(eq.name, command.value, cmd, issuer)  # before the state change
        eq.sm.command(command)
        return None


class ChangeModeHandler(_Handler):
    """A unit's PackML mode; the unit logs the ``mode`` row (or its refusal)."""

    def check(self, cmd: ChangeMode) -> str | None:
        return None if cmd.unit in self.loop.equipment else f"unknown unit {cmd.unit!r}"

    def apply(self, cmd: ChangeMode, issuer: str) -> str | None:
        eq = self.loop.equipment[cmd.unit]
        if eq.change_mode(cmd.mode, issuer=issuer):
            return None
        return UnitRefusal(f"mode {cmd.mode} in {eq.state.value}")


class AcknowledgeHandler(_Handler):
    """Acknowledge an active alarm (ISA-18.2); the row names the alarm's source."""

    def target(self, cmd: Acknowledge) -> str:
        a = self.loop.model.alarms.get(cmd.alarm_id)
        return a.source if a is not None else "plant"

    def check(self, cmd: Acknowledge) -> str | None:
        return self.loop.model.alarms.refusal(cmd.alarm_id)

    def apply(self, cmd: Acknowledge, issuer: str) -> str | None:
        alarms = self.loop.model.alarms
        a = alarms.get(cmd.alarm_id)
        self.loop.log_command(a.source, f"Acknowledge {a.id}", cmd, issuer)
        alarms.acknowledge(self.loop.env.now, a.id, issuer)
        return None


class WakeUpHandler(_Handler):
    """A ``timer`` event for the controller at ``at_s``."""

    def check(self, cmd: WakeUp) -> str | None:
        if not math.isfinite(cmd.at_s) or cmd.at_s < self.loop.env.now:
            return f"time {cmd.at_s} is in the past"
        return None

    def apply(self, cmd: WakeUp, issuer: str) -> str | None:
        loop = self.loop
        loop.log_command("plant", f"WakeUp {cmd.at_s:g} {cmd.tag}", cmd, issuer)
        tag = cmd.tag
        loop.env.timeout(cmd.at_s - loop.env.now).callbacks.append(
            lambda _e: loop.post_if_running(Event(loop.env.now, "timer", "plant", tag)))
        return None


class ReleaseRuleHandler(_Handler):
    """:class:`Dispatch` (a release rule) and :class:`Sequence` (an order priority) for an
    order book; dispatching at a unit's own input buffer is unsupported."""

    def check(self, cmd: Dispatch | Sequence) -> str | None:
        book = self.loop.order_books.get(cmd.unit)
        if book is None:
            if cmd.unit not in self.loop.equipment:
                return f"unknown unit {cmd.unit!r}"
            if isinstance(cmd, Dispatch) and cmd.rule not in RULES:
                return f"unknown dispatching rule {cmd.rule!r}"
            return UNSUPPORTED
        if isinstance(cmd, Dispatch):
            return None if cmd.rule in RULES else f"unknown dispatching rule {cmd.rule!r}"
        unknown = [lot for lot in cmd.lots if lot not in book.known]
        if unknown:
            return "unknown or completed orders: " + ", ".join(map(str, unknown[:5]))
        if len(set(cmd.lots)) != len(cmd.lots):
            return "an order appears twice"
        return None

    def apply(self, cmd: Dispatch | Sequence, issuer: str) -> str | None:
        book = self.loop.order_books[cmd.unit]
        if isinstance(cmd, Dispatch):
            book.set_policy(RuleRelease(cmd.rule, book.work_s_per_unit))
            self.loop.log_command(cmd.unit, f"Dispatch {cmd.rule}", cmd, issuer)
        else:
            book.set_priority(cmd.lots)
            self.loop.log_command(cmd.unit, "Sequence " + " ".join(cmd.lots), cmd, issuer)
        return None


class SetPointHandler(_Handler):
    """Set-points of a line's units (by the line) and branch weights ``route:<target>`` of a
    unit with ``next`` branches; others are unsupported."""

    def check(self, cmd: SetPoint) -> str | None:
        loop = self.loop
        if cmd.unit in loop.line_control:
            return loop.line_control.check(cmd)
        if cmd.unit in loop.equipment and cmd.name.startswith("route:"):
            return None
        return UNSUPPORTED

    def apply(self, cmd: SetPoint, issuer: str) -> str | None:
        loop = self.loop
        if cmd.unit in loop.line_control:
            return loop.line_control.apply(cmd, issuer, loop.log_command)
        why = loop.equipment[cmd.unit].router.set_weight(cmd.name[len("route:"):], cmd.value)
        if why is None:
            loop.log_command(cmd.unit, f"SetPoint {cmd.name}={cmd.value:g}", cmd, issuer)
        return why


class TransportHandler(_Handler):
    """Units carried by robot: from one buffer to another (the first ones, FIFO, through a
    staging area ``origin=>destination`` at the origin's node), or units a source or unit
    staged for a destination whose transports wait for the controller (``on_request``, e.g.
    planned feeder refills)."""

    def __init__(self, loop) -> None:
        super().__init__(loop)
        self._watched: set[str] = set()  # destination buffers that tell the fleet of space

    def target(self, cmd: TransportRequest) -> str:
        return str(cmd.origin or "plant")

    def _staged(self, cmd: TransportRequest) -> Staging | None:
        """The on-request staging area of ``cmd`` (origin not a buffer), if any."""
        loop = self.loop
        st = loop.staging.get(f"{cmd.origin}->{cmd.destination}")
        return st if st is not None and cmd.origin not in loop.buffers else None

    def _count(self, cmd: TransportRequest) -> int:
        o, d = self.loop.buffers[cmd.origin], self.loop.buffers[cmd.destination]
        return int(min(cmd.units, o.level, d.free))

    def check(self, cmd: TransportRequest) -> str | None:
        loop = self.loop
        if loop.fleet is None:
            return "no fleet in this plant" if not loop.robots else UNSUPPORTED
        st = self._staged(cmd)
        if st is not None:
            if not st.on_request:
                return (f"robots carry from {cmd.origin!r} to {cmd.destination!r} on their "
                        "own (kanban)")
            return f"units must be >= 1, got {cmd.units}" if cmd.units < 1 else None
        for name in (cmd.origin, cmd.destination):
            if name not in loop.buffers:
                return f"unknown buffer {name!r}"
        o, d = loop.buffers[cmd.origin], loop.buffers[cmd.destination]
        if o is d:
            return "origin and destination are the same"
        if cmd.units < 1:
            return f"units must be >= 1, got {cmd.units}"
        if self._count(cmd) < 1:
            return "origin is empty" if o.level == 0 else "no room at the destination"
        if o.node != d.node and not loop.fleet.has_path(o.node, d.node):
            return f"no lane from {o.node!r} to {d.node!r}"
        return None

    def apply(self, cmd: TransportRequest, issuer: str) -> str | None:
        loop = self.loop
        st = self._staged(cmd)
        if st is not None:
            st.requested += cmd.units
            loop.log_command(cmd.origin, f"TransportRequest {cmd.destination} {cmd.units}",
                             cmd, issuer)
            loop.transport_requests += 1
            loop.fleet.on_staged(st)
            return None
        o, d = loop.buffers[cmd.origin], loop.buffers[cmd.destination]
        n = self._count(cmd)
        st = loop.staging.get(f"{cmd.origin}=>{cmd.destination}")
        if st is None:
            st = Staging(loop.env, cmd.origin, o.node, d, 1 << 30, loop.fleet.on_staged)
            st.name = f"{cmd.origin}=>{cmd.destination}"
            loop.staging[st.name] = st
            if d.name not in self._watched:  # transports wait for room there
                self._watched.add(d.name)
                fleet = loop.fleet
                d.add_level_listener(lambda _now, _level: fleet.on_space(d))
        loop.log_command(cmd.origin, f"TransportRequest {cmd.destination} {n}", cmd, issuer)

        def stage(unit) -> None:
            if not st.try_put(unit):
                st.put(unit)
        o.take(n, stage)
        loop.transport_requests += 1
        return None


class MaintenanceHandler(_Handler):
    """A punch change of a continuous line with a punch-wear model."""

    def check(self, cmd: Maintenance) -> str | None:
        return None if cmd.unit in self.loop.lines else UNSUPPORTED

    def apply(self, cmd: Maintenance, issuer: str) -> str | None:
        loop = self.loop
        why = loop.lines[cmd.unit].maintenance(cmd.kind, cmd.reason)
        if why is None:
            loop.maintenance_commands += 1
            loop.log_command(cmd.unit, f"Maintenance {cmd.kind}", cmd, issuer)
        return why


class DispositionHandler(_Handler):
    """Lot dispositions at the product sinks, validated by the plant's containment."""

    def target(self, cmd: Quarantine | Release | Divert) -> str:
        return str(cmd.lot) if self.loop.containment is not None else str(cmd.lot or "plant")

    def check(self, cmd: Quarantine | Release | Divert) -> str | None:
        return None if self.loop.containment is not None else UNSUPPORTED

    def apply(self, cmd: Quarantine | Release | Divert, issuer: str) -> str | None:
        loop = self.loop
        c = loop.containment
        lot = str(cmd.lot)
        fn = {Quarantine: c.quarantine, Release: c.release, Divert: c.divert}[type(cmd)]

        def accepted() -> None:  # logged before the held units it completes or scraps
            loop.lot_commands += 1
            loop.log_command(lot, type(cmd).__name__, cmd, issuer)
        return fn(lot, cmd.reason, accepted)


class ChargeHandler(_Handler):
    """Sending a robot to a charger: validated, not supported yet (the fleet charges)."""

    def check(self, cmd: Charge) -> str | None:
        if cmd.robot not in self.loop.robots:
            return f"unknown robot {cmd.robot!r}"
        return UNSUPPORTED

    def apply(self, cmd: Charge, issuer: str) -> str | None:
        return UNSUPPORTED


HANDLERS: dict[type, type[_Handler]] = {
    PackMLCommand: PackMLHandler,
    ChangeMode: ChangeModeHandler,
    Acknowledge: AcknowledgeHandler,
    WakeUp: WakeUpHandler,
    Dispatch: ReleaseRuleHandler,
    Sequence: ReleaseRuleHandler,
    SetPoint: SetPointHandler,
    TransportRequest: TransportHandler,
    Maintenance: MaintenanceHandler,
    Quarantine: DispositionHandler,
    Release: DispositionHandler,
    Divert: DispositionHandler,
    Charge: ChargeHandler,
}
"""Command class → handler class: the one place a command type is registered."""

if set(HANDLERS) != set(COMMAND_TYPES):  # pragma: no cover - a developer's mistake
    raise ImportError("command types without a handler or handlers without a command type: "
                      + ", ".join(t.__name__ for t in set(HANDLERS) ^ set(COMMAND_TYPES)))


def handlers_for(loop) -> dict[type, CommandHandler]:
    """The handler table of one control loop (one instance per handler class)."""
    made: dict[type, _Handler] = {}
    out: dict[type, CommandHandler] = {}
    for t, h in HANDLERS.items():
        if h not in made:
            made[h] = h(loop)
        out[t] = made[h]
    return out
