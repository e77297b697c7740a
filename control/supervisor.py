"""The built-in rule-based supervisor for unattended operation (the default controller).

It keeps every unit producing: Stopped → Reset, Idle → Start; after a repaired fault, Held →
Unhold and Aborted → Clear (then Reset and Start as the unit passes Stopped and Idle). It acts
only on the units named by the events that woke it, and decides on the observed state, so a
command that has become illegal by the time it is applied (decision latency) is rejected and
logged by the plant, never applied.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from darkfab.factory.packml import Command, State

from .commands import PackMLCommand, PlantCommand
from .observation import Event, Observation, PlantInfo

__all__ = ["AutoRecoverySupervisor", "recovery_commands", "RECOVERY_TOPICS"]

_STOPPED, _IDLE, _HELD, _ABORTED = State.STOPPED, State.IDLE, State.HELD, State.ABORTED

RECOVERY_TOPICS = frozenset({"start", "repaired", "state:Stopped", "state:Idle", "state:Held",
                             "state:Aborted"})
"""The events auto-recovery needs (not the frequent Suspend/Unsuspend/Execute changes)."""


def touched_units(events: Sequence[Event], obs: Observation) -> list[str]:
    """Units named by ``events`` in order of first mention (all units on ``start``)."""
    seen: dict[str, None] = {}
    for e in events:
        if e.kind == "start":
            seen.update(dict.fromkeys(obs.equipment))
        elif e.source in obs.equipment:
            seen[e.source] = None
    return list(seen)


def recovery_commands(units: Iterable[str], obs: Observation,
                      repaired: set[str]) -> list[PlantCommand]:
    """Reset stopped units, start idle ones, Unhold / Clear repaired held / aborted ones
    (``repaired`` is updated: a unit leaves it when its recovery command is issued)."""
    out: list[PlantCommand] = []
    for u in units:
        st = obs.equipment[u].state
        if st is _STOPPED:
            out.append(PackMLCommand(u, Command.RESET))
        elif st is _IDLE:
            out.append(PackMLCommand(u, Command.START))
        elif u in repaired and st is _HELD:
            repaired.discard(u)
            out.append(PackMLCommand(u, Command.UNHOLD))
        elif u in repaired and st is _ABORTED:
            repaired.discard(u)
            out.append(PackMLCommand(u, Command.CLEAR))
    return out


class AutoRecoverySupervisor:
    """Start every unit and recover it after each repaired fault (no parameters)."""

    name = "auto-recovery"
    wakes_on = RECOVERY_TOPICS

    def reset(self, info: PlantInfo) -> None:
        self._repaired: set[str] = set()

    def decide(self, events: Sequence[Event], observation: Observation) -> list[PlantCommand]:
        for e in events:
            if e.kind == "repaired":
                self._repaired.add(e.source)
        return recovery_commands(touched_units(events, observation), observation,
                                 self._repaired)
