"""The built-in rule-based supervisor for unattended operation (the default controller).

It keeps every unit producing: Stopped → Reset, Idle → Start; after a repaired fault, Held →
Unhold and Aborted → Clear (then Reset and Start as the unit passes Stopped and Idle). It acts
only on the units named by the events that woke it, and decides on the observed state, so a
command that has become illegal by the time it is applied (decision latency) is rejected and
logged by the plant, never applied. After a controller outage (a ``start`` event with detail
``resume``) or a lost command (``command_lost``) it re-synchronises from the observation: a Held
or Aborted unit without an active alarm has been repaired meanwhile and is recovered.

Fault recovery (issue #5), every command with its reason:

* **watchdog** (``watchdog`` events from the plant): a unit stuck Suspended with at least a
  batch in its input and room in every output buffer has lost a wake-up: it is retried
  (Stop, then Reset → Start as it passes Stopped and Idle); a unit still Held / Aborted without
  an active alarm is recovered (Unhold / Clear);
* **escalation** when no recovery exists: a unit down (an active alarm) for ``escalate_after_s``
  without a repair, or faulting more than ``max_faults`` times within ``window_s``, gets a
  *controlled shutdown* of its upstream segment — the sources and units feeding it are stopped,
  farthest upstream first, so that work in process drains into the buffers — and, for too many
  faults, the unit itself is stopped for ``lockout_s``. The segment is resumed (Start / Reset)
  when the unit is repaired (or the lockout ends); continuous lines upstream keep running (they
  block on a full output by themselves);
* **containment** (:mod:`.containment`): output lots of continuous lines with a suspect
  raw-material lot are quarantined, then released or diverted;
* **rerouting** (:mod:`.reroute`): work goes around a broken unit to its alternates, and with
  robots the work waiting for it is carried there.

Continuous lines (:mod:`.line_rate`, :mod:`.line_alarms`): the line rate is cut before a feeder
starves for want of a container and restored when it is there; the press is held on a critical
alarm of the line that persists, and resumed after recovery.

Scheduling: customer orders are released by a dispatching rule or a rolling-horizon CP-SAT
sequence (:mod:`.release`); feeder refills are requested just in time where they are the
controller's (:mod:`.refill`); punch changes are planned (:mod:`.maintenance`).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Sequence

from darkfab.factory.packml import Command, State

from .commands import PackMLCommand, PlantCommand, WakeUp
from .containment import CONTAINMENT_TOPICS, ContainmentPolicy
from .line_alarms import ALARM_HOLD_TOPICS, CRITICAL_HOLD_TOPICS, CriticalAlarmHold
from .line_rate import RATE_CUT_TOPICS, FeederRateCut
from .maintenance import MaintenancePlanner
from .observation import Event, Observation, PlantInfo
from .release import OrderRelease
from .refill import REFILL_TOPICS, RefillPlanner
from .reroute import REROUTE_TOPICS, Rerouting

__all__ = ["AutoRecoverySupervisor", "recovery_commands", "note_repairs", "RECOVERY_TOPICS",
           "FaultWindow", "Lockout", "Escalation"]

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
        o = obs.equipment[u]
        st = o.state
        if st is _STOPPED:
            out.append(PackMLCommand(u, Command.RESET, "back to production"))
        elif st is _IDLE:
            out.append(PackMLCommand(u, Command.START, "back to production"))
        elif u in repaired and st is _HELD:
            repaired.discard(u)
            out.append(PackMLCommand(u, Command.UNHOLD, _repaired_reason(o)))
        elif u in repaired and st is _ABORTED:
            repaired.discard(u)
            out.append(PackMLCommand(u, Command.CLEAR, _repaired_reason(o)))
    return out


def _repaired_reason(o) -> str:
    return f"repaired: recover from {o.state.value} (no active alarm)"


# --- escalation: fault counting, lockouts, controlled shutdowns (issue #5) --------------------
_NO_STOP = frozenset({State.STOPPING, State.STOPPED, State.ABORTING, State.ABORTED,
                      State.CLEARING})
"""States PackML does not leave by Stop."""
_DOWN = frozenset({State.HOLDING, State.HELD, State.ABORTING, State.ABORTED})


class FaultWindow:
    """Fault times of each unit within a sliding window of ``window_s`` seconds."""

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._t: dict[str, deque[float]] = {}

    def add(self, unit: str, t: float) -> int:
        """Record a fault at ``t``; the unit's number of faults within the window."""
        dq = self._t.setdefault(unit, deque())
        dq.append(t)
        while dq and dq[0] < t - self.window_s:
            dq.popleft()
        return len(dq)

    def forget(self, unit: str) -> None:
        self._t.pop(unit, None)


class Lockout:
    """Units taken out of production by a controlled Stop until a time (``inf``: for good);
    their end is signalled by a :class:`WakeUp` tagged ``tag_prefix + unit``."""

    def __init__(self, tag_prefix: str = "") -> None:
        self.prefix = tag_prefix
        self.until: dict[str, float] = {}

    def __contains__(self, unit: str) -> bool:
        return unit in self.until

    def lock(self, unit: str, now: float, lockout_s: float | None, obs: Observation,
             reason: str) -> list[PlantCommand]:
        until = math.inf if lockout_s is None else now + lockout_s
        self.until[unit] = until
        out: list[PlantCommand] = []
        if obs.equipment[unit].state not in _NO_STOP:
            out.append(PackMLCommand(unit, Command.STOP, reason))
        if math.isfinite(until):
            out.append(WakeUp(until, self.prefix + unit, f"end of lockout of {unit}"))
        return out

    def unlock(self, e: Event) -> str | None:
        """The unit whose lockout ends with timer event ``e``, if any."""
        if e.kind != "timer" or not e.detail.startswith(self.prefix):
            return None
        u = e.detail[len(self.prefix):]
        return u if self.until.pop(u, None) is not None else None


class Escalation:
    """Controlled shutdown of the segment upstream of a unit that cannot be recovered (see the
    module docstring); ``0`` turns a trigger off."""

    def __init__(self, escalate_after_s: float, max_faults: int, window_s: float,
                 lockout_s: float) -> None:
        self.escalate_after_s = escalate_after_s
        self.max_faults = max_faults
        self.lockout_s = lockout_s
        self.faults = FaultWindow(window_s)
        self.lockout = Lockout("lockout:")
        self._down: dict[str, float] = {}  # unit -> down since (first unrepaired fault)
        self._segments: dict[str, list[str]] = {}  # escalated unit -> what it stopped
        self._stopped_by: dict[str, set[str]] = {}  # stopped source / unit -> escalated units
        self.escalations = 0

    def blocked(self, unit: str) -> bool:
        """Kept stopped by an escalation: not to be reset and started."""
        return unit in self._stopped_by or unit in self.lockout

    def decide(self, events: Sequence[Event], obs: Observation, info: PlantInfo,
               repaired: set[str]) -> tuple[list[PlantCommand], list[str]]:
        """Commands, and the units to hand back to normal recovery (reset and start)."""
        out: list[PlantCommand] = []
        resumed: list[str] = []
        for e in events:
            u = e.source
            if e.kind == "fault" and u in obs.equipment:
                self._down.setdefault(u, e.time_s)
                if self.escalate_after_s > 0:
                    out.append(WakeUp(e.time_s + self.escalate_after_s, "escalate:" + u,
                                      f"escalation check: {u} down since {e.time_s:.0f} s"))
                n = self.faults.add(u, e.time_s)
                if self.max_faults > 0 and n > self.max_faults and u not in self.lockout:
                    why = f"escalation: {u} faulted {n} times in {self.faults.window_s:g} s"
                    out += self.lockout.lock(u, e.time_s, self.lockout_s, obs,
                                             why + f": lockout {self.lockout_s:g} s")
                    out += self._shutdown(u, obs, info, why)
            elif e.kind == "repaired" and u in obs.equipment and not obs.equipment[u].alarms:
                self._down.pop(u, None)
                if u not in self.lockout:
                    out += self._resume(u, obs, resumed, f"{u} repaired")
            elif e.kind == "timer" and e.detail.startswith("escalate:"):
                u = e.detail[len("escalate:"):]
                t0 = self._down.get(u)
                if t0 is not None and e.time_s - t0 >= self.escalate_after_s - 1e-6 \
                        and u not in self._segments and obs.equipment[u].alarms:
                    out += self._shutdown(u, obs, info, f"escalation: {u} down "
                                          f"{e.time_s - t0:.0f} s with no repair "
                                          f"({', '.join(obs.equipment[u].alarms)})")
            elif (v := self.lockout.unlock(e)) is not None:
                self.faults.forget(v)
                resumed.append(v)
                if not obs.equipment[v].alarms:
                    out += self._resume(v, obs, resumed, f"lockout of {v} over")
            elif e.kind == "watchdog" and u in obs.equipment:
                out += self._watchdog(e, obs, info, repaired)
        return out, resumed

    def _watchdog(self, e: Event, obs: Observation, info: PlantInfo,
                  repaired: set[str]) -> list[PlantCommand]:
        u = e.source
        o = obs.equipment[u]
        if self.blocked(u):
            return []
        if o.state in _DOWN and not o.alarms:
            repaired.add(u)  # repaired, but its recovery was lost: recover now
            return []
        if o.state is State.SUSPENDED and not o.alarms:
            ei = info.equipment[u]
            q = o.queue_units
            room = all(obs.buffers[b].capacity_units is None or (
                obs.buffers[b].level_units is not None
                and obs.buffers[b].level_units < obs.buffers[b].capacity_units)
                for b in ei.outputs if b in obs.buffers)
            if q is not None and q >= ei.batch_size and room:
                return [PackMLCommand(u, Command.STOP, f"watchdog: {e.detail} with {q:g} "
                                      "units in its input and room downstream (lost wake-up):"
                                      " retry Stop, Reset, Start")]
        return []

    def _shutdown(self, u: str, obs: Observation, info: PlantInfo,
                  why: str) -> list[PlantCommand]:
        if u in self._segments:
            return []
        self.escalations += 1
        seg = [x for x in info.upstream(u) if x in info.sources or x in obs.equipment]
        self._segments[u] = seg
        out: list[PlantCommand] = []
        for x in seg:  # farthest upstream first
            first = x not in self._stopped_by
            self._stopped_by.setdefault(x, set()).add(u)
            if not first:
                continue
            if x in info.sources:
                out.append(PackMLCommand(x, Command.STOP, f"{why}: controlled shutdown "
                                         "upstream (source)"))
            elif obs.equipment[x].state not in _NO_STOP:
                out.append(PackMLCommand(x, Command.STOP, f"{why}: controlled shutdown "
                                         "upstream"))
        return out

    def _resume(self, u: str, obs: Observation, resumed: list[str],
                why: str) -> list[PlantCommand]:
        out: list[PlantCommand] = []
        for x in reversed(self._segments.pop(u, [])):  # nearest first
            by = self._stopped_by.get(x)
            if by is None:
                continue
            by.discard(u)
            if by:
                continue  # still held by another escalation
            del self._stopped_by[x]
            if x in obs.equipment:
                resumed.append(x)
            else:
                out.append(PackMLCommand(x, Command.START, f"escalation over: {why}"))
        return out


SUPERVISOR_TOPICS = RECOVERY_TOPICS | {"fault", "watchdog"} | CONTAINMENT_TOPICS
"""What the full supervisor wakes on (recovery, escalation, watchdog, containment)."""


class AutoRecoverySupervisor:
    """Start every unit and recover it after each repaired fault; escalate to a controlled
    shutdown of the upstream segment when no recovery exists (``escalate_after_s`` down with no
    repair, more than ``max_faults`` faults within ``window_s``: the unit out for
    ``lockout_s``; ``0`` turns a trigger off); react to the plant's watchdog; contain suspect
    raw-material lots (``containment``, ``quarantine_min_fraction``, ``hold_s``; see
    :mod:`.containment`); with ``reroute``, send work around a broken unit to its alternates
    (:mod:`.reroute`); release customer orders of the plant's order books by ``release_rule``
    (a dispatching rule, or ``cpsat``: rolling-horizon optimization with ``freeze_window_s``
    and ``release_time_limit_s``; :mod:`.release`); request raw-material containers for
    feeders whose refills are the controller's (``refill_request = "controller"``) just in
    time, ``refill_lead_s`` + ``refill_margin_s`` before the hopper's low level
    (:mod:`.refill`); plan punch changes of continuous lines by ``maintenance`` policy
    (``none``, ``preventive`` every ``pm_interval_h`` operating hours, ``predictive`` when the
    estimated RUL is at most ``rul_threshold_h``; :mod:`.maintenance`).

    Continuous lines:

    * ``rate_cut`` (default true): cut a line's rate (``SetPoint(line, "line_rate_kg_h")``)
      when a feeder would reach its low level before its next container can be at the dock
      plus ``rate_cut_margin_s`` (300 s), to the rate at which the hopper lasts that long, and
      restore the nominal rate when the container is there. The container's lead time is the
      ``rate_cut_lead_quantile`` (0.8) of the refill delays observed in the run
      (``refill_lead_s`` until there are some); see :mod:`.line_rate`.
    * ``critical_hold`` (default true): hold the press of a line whose critical alarm has been
      active ``critical_hold_after_s`` (900 s: longer than a scan of the line, so a single
      out-of-spec NIR reading, which the line diverts and clears by itself, never holds it);
      Unhold when no critical alarm of the line is active, or after ``critical_hold_max_s``
      (1800 s: an NIR alarm cannot clear while no powder flows); see :mod:`.line_alarms`.
    * ``acknowledge``: ``"acted"`` (default; the alarms it holds on), ``"all"`` or ``"none"``.
    * ``refill_stagger`` (default false): where refills are the controller's, a refill that
      would start within ``refill_stagger_window_s`` (300 s) of another feeder's is deferred
      (its container asked for later; a refill cannot be advanced); see :mod:`.refill`. Off by
      default: on cdc-line it removes nearly all overlaps but the deferred refills, started
      below the low level, disturb the feed more than the overlaps did."""

    name = "auto-recovery"
    wakes_on = SUPERVISOR_TOPICS
    # class defaults: subclasses need not call __init__
    planner = MaintenancePlanner()  # "none" (stateless)
    containment: bool | ContainmentPolicy = True
    quarantine_min_fraction = 1e-3
    hold_s = 3600.0
    escalate_after_s = 14_400.0
    max_faults = 10
    window_s = 3600.0
    lockout_s = 3600.0
    reroute = True
    release_rule, freeze_window_s, release_time_limit_s = "fifo", 0.0, 5.0
    refill_lead_s, refill_margin_s = 900.0, 300.0
    rate_cut, rate_cut_margin_s, rate_cut_lead_quantile = True, 300.0, 0.8
    rate_cut_reserve_used = 0.5
    critical_hold, critical_hold_after_s, critical_hold_max_s = True, 900.0, 1800.0
    acknowledge = "acted"
    refill_stagger, refill_stagger_window_s = False, 300.0

    def __init__(self, maintenance: str = "none", pm_interval_h: float = 100.0,
                 rul_threshold_h: float = 10.0, containment: bool = True,
                 quarantine_min_fraction: float = 1e-3, hold_s: float = 3600.0,
                 escalate_after_s: float = 14_400.0, max_faults: int = 10,
                 window_s: float = 3600.0, lockout_s: float = 3600.0, reroute: bool = True,
                 release_rule: str = "fifo", freeze_window_s: float = 0.0,
                 release_time_limit_s: float = 5.0, refill_lead_s: float = 900.0,
                 refill_margin_s: float = 300.0, rate_cut: bool = True,
                 rate_cut_margin_s: float = 300.0, rate_cut_lead_quantile: float = 0.8,
                 rate_cut_reserve_used: float = 0.5,
                 critical_hold: bool = True, critical_hold_after_s: float = 900.0,
                 critical_hold_max_s: float = 1800.0, acknowledge: str = "acted",
                 refill_stagger: bool = False, refill_stagger_window_s: float = 300.0) -> None:
        self.planner = MaintenancePlanner(maintenance, pm_interval_h, rul_threshold_h)
        self.containment = containment
        self.quarantine_min_fraction = quarantine_min_fraction
        self.hold_s = hold_s
        self.escalate_after_s = escalate_after_s
        self.max_faults = max_faults
        self.window_s = window_s
        self.lockout_s = lockout_s
        self.reroute = reroute
        self.release_rule, self.freeze_window_s = release_rule, freeze_window_s
        self.release_time_limit_s = release_time_limit_s
        self.refill_lead_s, self.refill_margin_s = refill_lead_s, refill_margin_s
        release = OrderRelease(release_rule, freeze_window_s, release_time_limit_s)
        self.refill_stagger, self.refill_stagger_window_s = refill_stagger, refill_stagger_window_s
        self._refill_planner()  # checks the parameters now
        self.rate_cut, self.rate_cut_margin_s = rate_cut, rate_cut_margin_s
        self.rate_cut_lead_quantile = rate_cut_lead_quantile
        self.rate_cut_reserve_used = rate_cut_reserve_used
        self.critical_hold, self.critical_hold_after_s = critical_hold, critical_hold_after_s
        self.critical_hold_max_s, self.acknowledge = critical_hold_max_s, acknowledge
        self._line_strategies()  # checks the parameters now
        wakes = SUPERVISOR_TOPICS | release.topics | REFILL_TOPICS
        if rate_cut:
            wakes |= RATE_CUT_TOPICS
        if acknowledge == "all":
            wakes |= ALARM_HOLD_TOPICS
        elif critical_hold or acknowledge != "none":
            wakes |= CRITICAL_HOLD_TOPICS
        if reroute:
            wakes |= REROUTE_TOPICS
        if maintenance != "none":
            wakes |= {"inspection"}
        self.wakes_on = wakes

    def _refill_planner(self) -> RefillPlanner:
        return RefillPlanner(self.refill_lead_s, self.refill_margin_s,
                             stagger=self.refill_stagger, window_s=self.refill_stagger_window_s)

    def _line_strategies(self) -> list:
        out: list = []
        if self.rate_cut:
            out.append(FeederRateCut(self.rate_cut_margin_s, prior_lead_s=self.refill_lead_s,
                                     lead_quantile=self.rate_cut_lead_quantile,
                                     reserve_used=self.rate_cut_reserve_used))
        if self.critical_hold or self.acknowledge != "none":
            out.append(CriticalAlarmHold(self.critical_hold_after_s, self.critical_hold_max_s,
                                         self.acknowledge, hold=self.critical_hold))
        return out

    def reset(self, info: PlantInfo) -> None:
        if self.escalate_after_s < 0 or self.max_faults < 0 or not self.window_s > 0 \
                or not self.lockout_s > 0:
            raise ValueError("escalate_after_s, max_faults >= 0; window_s, lockout_s > 0")
        self._info = info
        self._repaired: set[str] = set()
        self._escalation = Escalation(self.escalate_after_s, self.max_faults, self.window_s,
                                      self.lockout_s)
        self._containment = ContainmentPolicy(self.quarantine_min_fraction, self.hold_s) \
            if self.containment else None
        if self._containment is not None:
            self._containment.reset()
        self._release = OrderRelease(self.release_rule, self.freeze_window_s,
                                     self.release_time_limit_s)
        self._release.reset(info)
        self._refills = self._refill_planner()
        self._refills.reset(info)
        self._rerouting = Rerouting(move_wip=True) if self.reroute else None
        if self._rerouting is not None:
            self._rerouting.reset(info)
        self._lines = self._line_strategies()
        for strategy in self._lines:
            strategy.reset(info)
            if isinstance(strategy, FeederRateCut):
                strategy.deferred = self._refills.deferred  # deferred on purpose: no cut

    def decide(self, events: Sequence[Event], observation: Observation) -> list[PlantCommand]:
        note_repairs(events, observation, self._repaired)
        esc = self._escalation
        out, resumed = esc.decide(events, observation, self._info, self._repaired)
        units = [u for u in dict.fromkeys(touched_units(events, observation) + resumed)
                 if not esc.blocked(u)]
        out += recovery_commands(units, observation, self._repaired)
        for u in dict.fromkeys(touched_units(events, observation)):  # locked: only cleared
            if u in esc.lockout and u in self._repaired and \
                    observation.equipment[u].state is _ABORTED:
                self._repaired.discard(u)
                out.append(PackMLCommand(u, Command.CLEAR, "repaired: Clear to Stopped "
                                         "(locked out)"))
        if self._containment is not None:
            out += self._containment.decide(events, observation)
        if self._rerouting is not None:
            out += self._rerouting.decide(events, observation)
        for strategy in self._lines:
            out += strategy.decide(events, observation)
        return (out + self._release.decide(events, observation)
                + self._refills.decide(events, observation)
                + self.planner.decide(events, observation))
