"""The built-in rule-based supervisor for unattended operation.

It keeps every unit producing: Stopped → Reset, Idle → Start; after a repaired fault, Held →
Unhold and Aborted → Clear (then Reset and Start as the unit passes Stopped and Idle). Each
command takes effect after ``decision_latency_s``; a command that has become illegal by then is
rejected and logged by the unit, never applied.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

import simpy

from darkfab.factory.packml import Command, State

__all__ = ["Unit", "AutoRecoverySupervisor", "CONTROLLERS", "make_controller"]

# state names as plain strings, looked up once (``Enum.value`` is a slow property)
_STOPPED, _IDLE = State.STOPPED.value, State.IDLE.value
_RECOVERABLE = (State.HELD.value, State.ABORTED.value)


class Unit(Protocol):
    """What the supervisor needs of a unit: a name, its PackML state and a command input."""

    name: str

    @property
    def state(self) -> State: ...

    def command(self, command: Command, issuer: str = ...) -> bool: ...

    def subscribe(self, fn) -> None: ...


class AutoRecoverySupervisor:
    """Start every unit and recover it after each repaired fault."""

    name = "auto-recovery"

    def __init__(self, decision_latency_s: float = 0.0) -> None:
        self.decision_latency_s = decision_latency_s

    def reset(self, env: simpy.Environment, units: Iterable[Unit]) -> None:
        """Create run state and subscribe to the units (called once per run)."""
        self._env = env
        self._repaired: set[str] = set()
        self.commands_issued = 0
        for u in units:
            u.subscribe(self._on_event)
            if u.state is State.STOPPED:
                self._issue(u, Command.RESET)

    def _on_event(self, unit: Unit, kind: str, detail: str) -> None:
        if kind == "repaired":
            self._repaired.add(unit.name)
            self._recover(unit)
        elif kind == "state":
            if detail == _STOPPED:
                self._issue(unit, Command.RESET)
            elif detail == _IDLE:
                self._issue(unit, Command.START)
            elif detail in _RECOVERABLE:
                self._recover(unit)

    def _recover(self, unit: Unit) -> None:
        if unit.name not in self._repaired:
            return
        if unit.state is State.HELD:
            self._repaired.discard(unit.name)
            self._issue(unit, Command.UNHOLD)
        elif unit.state is State.ABORTED:
            self._repaired.discard(unit.name)
            self._issue(unit, Command.CLEAR)

    def _issue(self, unit: Unit, command: Command) -> None:
        self.commands_issued += 1
        if self.decision_latency_s <= 0:
            # defer to the end of the current instant, outside the unit's own callbacks
            ev = self._env.timeout(0)
        else:
            ev = self._env.timeout(self.decision_latency_s)
        ev.callbacks.append(lambda _e: unit.command(command, issuer=self.name))


CONTROLLERS = {AutoRecoverySupervisor.name: AutoRecoverySupervisor}


def make_controller(name: str, decision_latency_s: float = 0.0) -> AutoRecoverySupervisor:
    try:
        cls = CONTROLLERS[name]
    except KeyError:
        raise ValueError(f"unknown controller {name!r}; known: {', '.join(CONTROLLERS)}")
    return cls(decision_latency_s=decision_latency_s)
