"""The built-in rule-based supervisor for unattended operation (the default controller).

It keeps every unit producing: Stopped → Reset, Idle → Start; after a repaired fault, Held →
Unhold and Aborted → Clear (then Reset and Start as the unit passes Stopped and Idle). It acts
only on the units named by the events that woke it, and decides on the observed state, so a
command that has become illegal by the time it is applied (decision latency) is rejected and
logged by the plant, never applied. After a controller outage (a ``start`` event with detail
``resume``) or a lost command (``command_lost``) it re-synchronises from the observation: a Held
or Aborted unit without an active alarm has been repaired meanwhile and is recovered.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from darkfab.factory.packml import Command, State

from .commands import PackMLCommand, PlantCommand
from .maintenance import MaintenancePlanner
from .observation import Event, Observation, PlantInfo
from .release import OrderRelease
from .refill import REFILL_TOPICS, RefillPlanner
from .reroute import REROUTE_TOPICS, Rerouting

__all__ = ["AutoRecoverySupervisor", "recovery_commands", "note_repairs", "RECOVERY_TOPICS"]

_STOPPED, _IDLE, _HELD, _ABORTED = State.STOPPED, State.IDLE, State.HELD, State.ABORTED

RECOVERY_TOPICS = frozenset({"start", "repaired", "state:Stopped", "state:Idle", "state:Held",
                             "state:Aborted", "command_lost"})
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


def note_repairs(events: Sequence[Event], obs: Observation, repaired: set[str]) -> None:
    """Add to ``repaired`` the units repaired according to ``events``: a ``repaired`` event, or,
    after a resume or a lost command, a Held / Aborted unit with no active alarm."""
    for e in events:
        if e.kind == "repaired":
            repaired.add(e.source)
        elif (e.kind == "start" and e.detail == "resume") or e.kind == "command_lost":
            units = obs.equipment if e.kind == "start" else [e.source]
            for u in units:
                o = obs.equipment.get(u)
                if o is not None and o.state in (_HELD, _ABORTED) and not o.alarms:
                    repaired.add(u)


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
    """Start every unit and recover it after each repaired fault; release customer orders of
    the plant's order books by ``release_rule`` (a dispatching rule, or ``cpsat``: rolling-
    horizon optimization with ``freeze_window_s`` and ``release_time_limit_s``;
    :mod:`darkfab.control.release`); with ``reroute``, send work around a broken unit to its
    alternates (:mod:`darkfab.control.reroute`); request raw-material containers for feeders
    whose refills are the controller's (``refill_request = "controller"``) just in time,
    ``refill_lead_s`` + ``refill_margin_s`` before the hopper's low level
    (:mod:`darkfab.control.refill`); plan punch changes of continuous lines by
    ``maintenance`` policy (``none``, ``preventive`` every ``pm_interval_h`` operating hours,
    ``predictive`` when the estimated RUL is at most ``rul_threshold_h``;
    :mod:`darkfab.control.maintenance`)."""

    name = "auto-recovery"
    wakes_on = RECOVERY_TOPICS
    planner = MaintenancePlanner()  # "none" (stateless); subclasses need not call __init__
    release = OrderRelease()  # FIFO; stateless until reset
    reroute = True

    def __init__(self, maintenance: str = "none", pm_interval_h: float = 100.0,
                 rul_threshold_h: float = 10.0, release_rule: str = "fifo",
                 freeze_window_s: float = 0.0, release_time_limit_s: float = 5.0,
                 reroute: bool = True, refill_lead_s: float = 900.0,
                 refill_margin_s: float = 300.0) -> None:
        self.planner = MaintenancePlanner(maintenance, pm_interval_h, rul_threshold_h)
        self.release = OrderRelease(release_rule, freeze_window_s, release_time_limit_s)
        self.reroute = reroute
        self.refills = RefillPlanner(refill_lead_s, refill_margin_s)
        wakes = (RECOVERY_TOPICS | self.release.topics | REFILL_TOPICS
                 | (REROUTE_TOPICS if reroute else set()))
        if maintenance != "none":
            wakes |= {"inspection"}
        self.wakes_on = wakes

    def reset(self, info: PlantInfo) -> None:
        self._repaired: set[str] = set()
        if "release" not in self.__dict__:  # a subclass that did not call __init__
            self.release = OrderRelease()
        self.release.reset(info)
        if "refills" not in self.__dict__:
            self.refills = RefillPlanner()
        self.refills.reset(info)
        self._rerouting = Rerouting(move_wip=True) if self.reroute else None
        if self._rerouting is not None:
            self._rerouting.reset(info)

    def decide(self, events: Sequence[Event], observation: Observation) -> list[PlantCommand]:
        note_repairs(events, observation, self._repaired)
        out: list[PlantCommand] = recovery_commands(touched_units(events, observation),
                                                    observation, self._repaired)
        if self._rerouting is not None:
            out += self._rerouting.decide(events, observation)
        return (out + self.release.decide(events, observation)
                + self.refills.decide(events, observation)
                + self.planner.decide(events, observation))
