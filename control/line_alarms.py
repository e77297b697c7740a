"""Hold a continuous line on a persisting critical alarm, resume after recovery (ISA-18.2).

A critical alarm whose source is a unit of a line (``cdc``, ``cdc.pat``, …; in cdc-line the
NIR's ``api_content_oos``) means product quality is at risk. The line's own control strategy
already diverts the material around an out-of-spec reading, and the alarm clears with the next
in-spec reading, which the line processes at its next scan (``control_interval_s``, 600 s in
cdc-line). Holding the press at every such alarm would stop the line some 15 times a day for
nothing the diversion does not already handle. The rule:

* **Hold** the line's press (``PackMLCommand(<line>.press, Hold)``, from Execute) when a
  critical alarm of the line has stayed active ``hold_after_s`` (default 900 s: longer than a
  scan, so a single reading never holds the line; the alarm persisting through a scan means
  several readings out of spec in a row — a raw-material lot out of spec, a drifting
  instrument). ``0`` holds at once. One hold per alarm episode.
* **Unhold** when no critical alarm of the line is active any more (``alarm_cleared``), or
  after ``max_hold_s`` (default 1800 s) held: a reading needs powder flowing past the probe, so
  an NIR alarm cannot clear while the line stands; the line is resumed to measure again, its
  diversion protecting the product, and is not held again for the same alarm.
* **Acknowledge** (``acknowledge``): ``"acted"`` (default) the alarms the supervisor holds on,
  ``"all"`` every alarm as it is seen, ``"none"``.

Every command carries its reason (the alarm id, condition and how long it has been active).
"""

from __future__ import annotations

from collections.abc import Sequence

from darkfab.factory.packml import Command, State

from .commands import Acknowledge, PackMLCommand, PlantCommand, WakeUp
from .observation import AlarmObs, Event, Observation, PlantInfo

__all__ = ["CriticalAlarmHold", "ALARM_HOLD_TOPICS", "ACKNOWLEDGE_MODES"]

ALARM_HOLD_TOPICS = frozenset({"start", "timer", "alarm", "alarm_cleared"})
ACKNOWLEDGE_MODES = ("acted", "all", "none")
_HOLD, _RELEASE = "alarm-hold:", "alarm-release:"


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
        self._armed: set[int] = set()  # critical alarms with a hold check scheduled
        self._acted: set[int] = set()  # alarms held on (once per episode)
        self._acked: set[int] = set()  # acknowledgements sent
        self._held: dict[str, tuple[int, float]] = {}  # line -> (alarm id, held since)
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
        now = obs.time_s
        out: list[PlantCommand] = []
        for a in obs.alarms.values():  # arm a hold check for each new critical alarm
            if a.priority == "critical" and a.id not in self._armed and self.line_of(a.source):
                self._armed.add(a.id)
                if self.hold_after > 0:
                    out.append(WakeUp(max(now, a.raised_s + self.hold_after), f"{_HOLD}{a.id}",
                                      f"hold check: critical alarm {a.id} {a.condition}"))
        self._armed &= set(obs.alarms)  # cleared ones: forget (memory stays bounded)
        for line in self.lines:
            press = obs.equipment.get(f"{line}.press")
            if press is None:
                continue
            if line in self._held:
                out += self._release(line, press.state, obs)
            else:
                out += self._hold(line, press.state, obs)
        return out + self._ack_all(obs)

    def _hold(self, line: str, state: State, obs: Observation) -> list[PlantCommand]:
        now = obs.time_s
        if state is not State.EXECUTE:
            return []
        for a in self._critical(obs, line):
            age = now - a.raised_s
            if a.id in self._acted or age < self.hold_after - 1e-6:
                continue
            self._acted.add(a.id)
            self._held[line] = (a.id, now)
            self.holds += 1
            out: list[PlantCommand] = [
                PackMLCommand(f"{line}.press", Command.HOLD,
                              f"critical alarm {a.id} {a.condition} of {a.source} active "
                              f"{age:.0f} s (hold after {self.hold_after:g} s)"),
                WakeUp(now + self.max_hold, _RELEASE + line, f"longest hold of {line}")]
            if self.ack == "acted" and not a.acknowledged and a.id not in self._acked:
                self._acked.add(a.id)
                out.append(Acknowledge(a.id, f"{line} held on {a.condition}"))
            return out
        return []

    def _release(self, line: str, state: State, obs: Observation) -> list[PlantCommand]:
        aid, since = self._held[line]
        now = obs.time_s
        if state not in (State.HELD, State.HOLDING):  # recovered or stopped by something else
            del self._held[line]
            return []
        active = self._critical(obs, line)
        if active and now - since < self.max_hold - 1e-6:
            return []
        del self._held[line]
        self._acted.intersection_update(obs.alarms)
        why = (f"critical alarm {aid} cleared, no critical alarm of {line} active"
               if not active else
               f"held {now - since:.0f} s with critical alarm(s) "
               f"{', '.join(str(a.id) for a in active)} still active: resume so the NIR "
               "measures again (the line's diversion protects the product)")
        return [PackMLCommand(f"{line}.press", Command.UNHOLD, why)]

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

