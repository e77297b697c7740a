"""A cautious supervisor: auto-recovery, but a unit that fails too often is taken out.

After ``max_faults`` faults of one unit within ``window_s`` seconds it escalates: the unit is
commanded to a controlled Stop (from Held, Holding, Execute, ...; an aborted unit is cleared to
Stopped once repaired) and left stopped for ``lockout_s`` seconds (``None``: for the rest of the
run), after which its fault history is forgotten and it is reset and started again.
"""

from __future__ import annotations

from collections.abc import Sequence

from darkfab.factory.packml import Command, State

from .commands import PackMLCommand, PlantCommand
from .observation import Event, Observation, PlantInfo
from .supervisor import (RECOVERY_TOPICS, FaultWindow, Lockout, note_repairs, recovery_commands,
                         touched_units)

__all__ = ["CautiousSupervisor"]


class CautiousSupervisor:
    name = "cautious"
    wakes_on = RECOVERY_TOPICS | {"fault", "timer"}

    def __init__(self, max_faults: int = 3, window_s: float = 86_400.0,
                 lockout_s: float | None = None) -> None:
        self.max_faults = max_faults
        self.window_s = window_s
        self.lockout_s = lockout_s

    def reset(self, info: PlantInfo) -> None:
        if self.max_faults < 1 or not self.window_s > 0:
            raise ValueError("max_faults must be >= 1 and window_s > 0")
        self._repaired: set[str] = set()
        self._faults = FaultWindow(self.window_s)
        self._locked = Lockout()  # WakeUp tag: the unit's name
        self.escalations = 0

    def decide(self, events: Sequence[Event], observation: Observation) -> list[PlantCommand]:
        out: list[PlantCommand] = []
        released = []
        note_repairs(events, observation, self._repaired)
        for e in events:
            if e.kind == "fault":
                out += self._on_fault(e, observation)
            elif (u := self._locked.unlock(e)) is not None:
                self._faults.forget(u)
                released.append(u)
        units = touched_units(events, observation) + released
        active = [u for u in dict.fromkeys(units) if u not in self._locked]
        out += recovery_commands(active, observation, self._repaired)
        for u in dict.fromkeys(units):  # a locked unit is only cleared (to Stopped) after repair
            if u in self._locked and u in self._repaired and \
                    observation.equipment[u].state is State.ABORTED:
                self._repaired.discard(u)
                out.append(PackMLCommand(u, Command.CLEAR, "repaired: Clear to Stopped "
                                         "(locked out)"))
        return out

    def _on_fault(self, e: Event, obs: Observation) -> list[PlantCommand]:
        u = e.source
        n = self._faults.add(u, e.time_s)
        if n < self.max_faults or u in self._locked:
            return []
        self.escalations += 1
        return self._locked.lock(u, e.time_s, self.lockout_s, obs,
                                 f"escalation: {n} faults of {u} within {self.window_s:g} s; "
                                 + ("out for the rest of the run" if self.lockout_s is None
                                    else f"out for {self.lockout_s:g} s"))
