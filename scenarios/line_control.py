"""Continuous lines in the policy API: their units as equipment a controller observes and
commands (PackML commands and set-points), for :class:`~darkfab.scenarios.control_loop.ControlLoop`.

Every unit of a line (``cdc``, ``cdc.api_feeder``, ``cdc.blender``, ``cdc.press``, ``cdc.pat``,
``cdc.gate``) appears in ``Observation.equipment`` with its PackML state, its process values as
:class:`~darkfab.control.Reading` (``EquipmentObs.values``) and in ``PlantInfo.equipment`` and
``PlantInfo.setpoints``; ``PackMLCommand`` and ``SetPoint`` to them are validated and applied by
the line (:mod:`darkfab.agents.line.supervision`) through the loop's command handlers
(:mod:`darkfab.scenarios.commanding`). State changes of the units reach the
controller as ``state`` events.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from darkfab.control import EquipmentInfo, EquipmentObs, Event
from darkfab.control.commands import PackMLCommand, SetPoint
from darkfab.control.observation import ProcessValues, SetPointInfo
from darkfab.factory.packml import Command

__all__ = ["LineControl"]


class LineControl:
    """The continuous lines of a plant as seen and commanded by one controller.

    Args:
        lines: line name → :class:`~darkfab.agents.line.ContinuousLine`.
        post: the control loop's ``fn(event)`` that queues an event for the controller.
    """

    def __init__(self, lines: Mapping[str, Any], post: Callable[[Event], None]) -> None:
        self.lines = dict(lines)
        self._post = post
        self.line_of: dict[str, Any] = {}
        for ln in self.lines.values():
            self.line_of[ln.name] = ln
            for u in ln.units:
                self.line_of[u.name] = ln

    def __contains__(self, unit: str) -> bool:
        return unit in self.line_of

    def start(self, now: Callable[[], float]) -> None:
        """Forward the units' state events to the controller."""
        for ln in self.lines.values():
            ln.unit_subscribers.append(
                lambda unit, kind, detail: self._post(Event(now(), kind, unit, detail)))

    # --- static plant ---------------------------------------------------------------------
    def equipment_info(self) -> dict[str, EquipmentInfo]:
        out = {}
        for ln in self.lines.values():
            modes = tuple(f.name for f in ln.failures)
            names = [ln.name, *(u.name for u in ln.units)]
            for n in names:
                press = n in (ln.name, ln.press_unit.name)
                out[n] = EquipmentInfo(n, "", 1, modes if press else (),
                                       ("hold",) * len(modes) if press else ())
        return out

    def setpoint_info(self) -> dict[str, Mapping[str, SetPointInfo]]:
        out = {}
        for ln in self.lines.values():
            for unit, sps in ln.setpoint_ranges().items():
                out[unit] = MappingProxyType({k: SetPointInfo(r.name, r.unit, r.low, r.high)
                                              for k, r in sps.items()})
        return out

    # --- observation ----------------------------------------------------------------------
    def observe(self, now: float, alarms: Callable[[str], tuple[str, ...]]
                ) -> dict[str, EquipmentObs]:
        """Every line unit's :class:`EquipmentObs`; ``alarms(unit)``: its active alarms."""
        out = {}
        for ln in self.lines.values():
            values = ln.readings(now)
            state = ln.press_unit.state
            out[ln.name] = self._obs(ln.name, state, ln, values[ln.name], alarms, ln.units_out)
            for u in ln.units:
                out[u.name] = self._obs(u.name, u.state, ln, values.get(u.name, {}), alarms,
                                        ln.units_out if u.kind == "press" else 0)
        return out

    @staticmethod
    def _obs(name: str, state, ln, values, alarms, units: int) -> EquipmentObs:
        condition = ("producing" if ln.running else
                     "down" if state.value in ("Held", "Aborted") else
                     "stopped" if state.value in ("Stopped", "Idle") else "starved")
        return EquipmentObs(name, state, "Production", condition, None, alarms(name),
                            ln.stops if name == ln.name else 0, units, units,
                            ProcessValues(values))

    # --- commands -------------------------------------------------------------------------
    def check(self, cmd: PackMLCommand | SetPoint) -> str | None:
        """Why a command to a line unit is refused now, or ``None`` (a set-point is validated
        by the line as it is applied)."""
        if isinstance(cmd, SetPoint):
            return None
        try:
            command = Command(cmd.command)
        except ValueError:
            return f"unknown PackML command {cmd.command!r}"
        return self.line_of[cmd.unit].check_command(cmd.unit, command)

    def apply(self, cmd: PackMLCommand | SetPoint, issuer: str,
              log_command: Callable[[str, str, Any, str], None]) -> str | None:
        """Apply a command to a line unit that passed :meth:`check`; returns why the line
        refuses it, or ``None``. ``log_command(entity, what, cmd, issuer)`` logs the
        ``command`` row (before the state changes it causes)."""
        ln = self.line_of[cmd.unit]
        if isinstance(cmd, PackMLCommand):
            command = Command(cmd.command)
            log_command(cmd.unit, command.value, cmd, issuer)
            return ln.command(cmd.unit, command, issuer)
        why = ln.set_point(cmd.unit, cmd.name, cmd.value)
        if why is None:
            log_command(cmd.unit, f"SetPoint {cmd.name}={cmd.value:g}", cmd, issuer)
        return why
