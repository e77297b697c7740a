"""Hold a continuous line on a persisting critical alarm, resume after recovery (ISA-18.2).

A critical alarm whose source is a unit of a line (``cdc``, ``cdc.pat``, …; in cdc-line the
NIR's ``api_content_oos``) means product quality is at risk. The line's own control strategy
already diverts the material around an out-of-spec reading, and the alarm clears with the next
in-spec reading, which the line processes at its next scan (``control_interval_s``, 600 s in
cdc-line). Holding the press at every such alarm would stop the line some 15 times a day for
nothing the diversion does not already handle. The rule:

* **Hold** the line's press (``PackMLCommand(<line>.press, Hold)``, from Execute) when
  critical alarms of the line have been active without a gap for ``hold_after_s`` (default
  900 s: longer than a scan, so a single reading never holds the line; a *critical period*
  that lasts through a scan means readings out of spec scan after scan — a raw-material lot
  out of spec, a drifting instrument). The line clears an NIR alarm and raises a new one at the
  same scan when good and bad readings alternate, so the period, not one alarm id, is what
  must persist. ``0`` holds at once. One hold per critical period.
* **Unhold** when no critical alarm of the line is active any more (``alarm_cleared``), or
  after ``max_hold_s`` (default 1800 s) held: the NIR goes on reading the standing powder,
  which does not change while the line is held, so an excursion of the material does not clear
  by waiting; the line is resumed, its diversion protecting the product, and is not held again
  in the same critical period.
* **Acknowledge** (``acknowledge``): ``"acted"`` (default) the alarms the supervisor holds on,
  ``"all"`` every alarm as it is seen, ``"none"``.

Every command carries its reason (the alarm id, condition and how long it has been active).

Why 900 s: on cdc-line (2 days) all 30 NIR alarms lasted 75–588 s, so none holds the line. On
fault-campaign over 15 days (its NIR drift and 85 %-potency API drum; 3 paired replications,
``tests/benchmarks/bench_line_supervisor.py hold``) the rule holds 3.3 times, Held +1.2 ± 0.6 h
(95 % CI), state of control −0.002 ± 0.003, accepted tablets −0.09 ± 0.40 M of 69.7 M,
released out-of-spec material +0.17 ± 0.57 kg: no significant loss (nor gain: the diversion
does the quality work). Holding at every critical alarm (``hold_after_s = 0``) holds 191 times,
+38 ± 11 h Held, −7.6 ± 3.3 M tablets (−11 %).
"""

from __future__ import annotations

from collections.abc import Sequence

from darkfab.factory.packml import Command, State

from .commands import Acknowledge, PackMLCommand, PlantCommand, WakeUp
from .observation import AlarmObs, Event, Observation, PlantInfo

__all__ = ["CriticalAlarmHold", "ALARM_HOLD_TOPICS", "CRITICAL_HOLD_TOPICS", "ACKNOWLEDGE_MODES"]

ALARM_HOLD_TOPICS = frozenset({"start", "timer", "alarm", "alarm_cleared"})
"""What the rule wakes on when it acknowledges every alarm (``acknowledge = "all"``)."""
CRITICAL_HOLD_TOPICS = frozenset({"start", "timer", "alarm:critical", "alarm_cleared:critical"})
"""What it wakes on otherwise: only critical alarms start or end a critical period."""
ACKNOWLEDGE_MODES = ("acted", "all", "none")
_HOLD, _RELEASE = "critical-hold-check:", "critical-hold-end:"
_RETRY_S = 600.0  # an Unhold refused (a repair under way) is sent again this much later


class CriticalAlarmHold:
    """See the module docstring; times in seconds."""

    def __init__(self, hold_after_s: float = 900.0, max_hold_s: float = 1800.0,
                 acknowledge: str = "acted", hold: bool = True) -> None:
        if hold_after_s < 0 or not max_hold_s > 0:
            raise ValueError("need critical_hold_after_s >= 0 and critical_hold_max_s > 0")
        if acknowledge not in ACKNOWLEDGE_MODES:
            raise ValueError(f"acknowledge must be one of {', '.join(ACKNOWLEDGE_MODES)}")
        self.hold_after, self.max_hold, self.ack = hold_after_s, max_hold_s, acknowledge
        self.hold = hold  # False: acknowledge only
        self.lines: tuple[str, ...] = ()
        self.holds = 0

    def reset(self, info: PlantInfo) -> None:
        self.lines = tuple(u[: -len(".press")] for u in info.equipment
                           if u.endswith(".press") and u[: -len(".press")] in info.equipment)
        self._since: dict[str, float] = {}  # line -> critical alarms active without a gap since
        self._acted: set[str] = set()  # lines held in their present critical period
        self._acked: set[int] = set()  # acknowledgements sent
        self._held: dict[str, float] = {}  # line -> held by this strategy since
        self._unholding: dict[str, float] = {}  # line -> last Unhold sent
        self.holds = 0

    def line_of(self, source: str) -> str | None:
        for ln in self.lines:
            if source == ln or source.startswith(ln + "."):
                return ln
        return None

    def _critical(self, obs: Observation, line: str) -> list[AlarmObs]:
        return [a for a in obs.alarms.values()
                if a.priority == "critical" and self.line_of(a.source) == line]

    def decide(self, events: Sequence[Event], obs: Observation) -> list[PlantCommand]:
        if not self.lines or not self.hold:
            return self._ack_all(obs)
        out: list[PlantCommand] = []
        for line in self.lines:
            press = obs.equipment.get(f"{line}.press")
            if press is None:
                continue
            active = self._critical(obs, line)
            if not active:  # the critical period is over
                self._since.pop(line, None)
                self._acted.discard(line)
            elif line not in self._since:
                t0 = self._since[line] = min(a.raised_s for a in active)
                if self.hold_after > 0:
                    out.append(WakeUp(max(obs.time_s, t0 + self.hold_after), _HOLD + line,
                                      f"hold check: critical alarm {active[0].id} "
                                      f"{active[0].condition}"))
            if line in self._held:
                out += self._release(line, press.state, active, obs.time_s)
            elif active:
                out += self._hold(line, press.state, active, obs.time_s)
        return out + self._ack_all(obs)

    def _hold(self, line: str, state: State, active: list[AlarmObs],
              now: float) -> list[PlantCommand]:
        age = now - self._since[line]
        if state is not State.EXECUTE or line in self._acted or age < self.hold_after - 1e-6:
            return []
        self._acted.add(line)
        self._held[line] = now
        self.holds += 1
        a = active[-1]
        out: list[PlantCommand] = [
            PackMLCommand(f"{line}.press", Command.HOLD,
                          f"critical alarm {a.id} {a.condition} of {a.source}: critical alarms "
                          f"of {line} active {age:.0f} s (hold after {self.hold_after:g} s)"),
            WakeUp(now + self.max_hold, _RELEASE + line, f"longest hold of {line}")]
        if self.ack == "acted":
            for x in active:
                if not x.acknowledged and x.id not in self._acked:
                    self._acked.add(x.id)
                    out.append(Acknowledge(x.id, f"{line} held on {x.condition}"))
        return out

    def _release(self, line: str, state: State, active: list[AlarmObs],
                 now: float) -> list[PlantCommand]:
        since = self._held[line]
        if state not in (State.HELD, State.HOLDING):  # recovered or stopped by something else
            del self._held[line]
            self._unholding.pop(line, None)
            return []
        if active and now - since < self.max_hold - 1e-6:
            return []
        last = self._unholding.get(line)
        if last is not None and now - last < _RETRY_S:
            return []
        # kept until the press is seen out of Held: an Unhold refused (a repair or a punch
        # change under way) is sent again _RETRY_S later
        self._unholding[line] = now
        why = (f"no critical alarm of {line} active" if not active else
               f"held {now - since:.0f} s with critical alarm(s) "
               f"{', '.join(str(a.id) for a in active)} active: resume (the line's diversion "
               "protects the product; no second hold in this critical period)")
        return [PackMLCommand(f"{line}.press", Command.UNHOLD, why),
                WakeUp(now + _RETRY_S, _RELEASE + line, f"{line} out of Held?")]

    def _ack_all(self, obs: Observation) -> list[PlantCommand]:
        if self.ack != "all":
            return []
        out: list[PlantCommand] = []
        for a in obs.alarms.values():
            if not a.acknowledged and a.id not in self._acked:
                self._acked.add(a.id)
                out.append(Acknowledge(a.id, f"seen {a.condition}"))
        self._acked.intersection_update(obs.alarms)
        return out

