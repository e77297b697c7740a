"""A supervisory controller for the continuous line, written against the README alone.

It runs the plant as the built-in ``auto-recovery`` supervisor does and adds, for the line:

* every alarm is acknowledged when it arrives (``Acknowledge``);
* on a critical alarm of the line (the NIR sees API content out of spec) the press is Held —
  the feeders and the blender stop with it, the powder stays in place — and Unheld
  ``hold_s`` later (``WakeUp``), or later still while a failure of the press is under repair
  (its ``alarms``);
* from ``cut_from_h`` to ``cut_to_h`` (simulated hours) the line runs at ``cut_rate_kg_h``
  (a ``SetPoint`` of ``line_rate_kg_h``), then back at its nominal rate.

Run it on the default plant::

    darkfab run cdc-line --days 2 --controller examples/line_supervisor.py:LineSupervisor

(or ``controller.name = "line_supervisor:LineSupervisor"`` with ``examples/`` on the module
path and ``--allow-code``).
"""

from __future__ import annotations

from darkfab.control import PackMLCommand, WakeUp
from darkfab.control.commands import Acknowledge, SetPoint
from darkfab.control.supervisor import AutoRecoverySupervisor


class LineSupervisor(AutoRecoverySupervisor):
    """See the module docstring. ``line``: the continuous line's name."""

    def __init__(self, line: str = "cdc", hold_s: float = 600.0, cut_from_h: float = 6.0,
                 cut_to_h: float = 12.0, cut_rate_kg_h: float = 40.0, **kw) -> None:
        super().__init__(**kw)
        self.line, self.alarm_hold_s = line, hold_s
        self.cut = (cut_from_h * 3600.0, cut_to_h * 3600.0, cut_rate_kg_h)
        self.wakes_on = self.wakes_on | {"alarm", "timer", "start"}

    def reset(self, info):
        super().reset(info)
        self.nominal_kg_h = None
        self.holding = False
        self.press = f"{self.line}.press"
        self.rate_range = info.setpoints[self.line]["line_rate_kg_h"]

    def decide(self, events, obs):
        out = super().decide(events, obs)
        for e in events:
            if e.kind == "start" and e.detail != "resume":
                self.nominal_kg_h = obs.equipment[self.line].values["line_rate_kg_h"].value
                out += [WakeUp(self.cut[0], "rate-cut"), WakeUp(self.cut[1], "rate-restore")]
            elif e.kind == "start" and self.holding:  # back after an outage: timers missed
                out.append(WakeUp(obs.time_s, "unhold"))
            elif e.kind == "timer" and e.detail == "rate-cut":
                out.append(SetPoint(self.line, "line_rate_kg_h", self.cut[2],
                                    "planned reduced-rate period"))
            elif e.kind == "timer" and e.detail == "rate-restore":
                out.append(SetPoint(self.line, "line_rate_kg_h", self.nominal_kg_h,
                                    "back to the nominal rate"))
            elif e.kind == "timer" and e.detail == "unhold" and self.holding:
                press = obs.equipment[self.press]
                if press.state.value != "Held":
                    self.holding = False
                elif press.alarms:  # a failure of the press under repair: look again later
                    out.append(WakeUp(obs.time_s + self.alarm_hold_s, "unhold"))
                else:
                    self.holding = False
                    out.append(PackMLCommand(self.press, "Unhold", "alarm hold over"))
        for a in obs.alarms.values():
            if not a.acknowledged:
                out.append(Acknowledge(a.id, "seen by the line supervisor"))
            critical = a.priority == "critical" and a.source.startswith(self.line)
            if critical and not self.holding and a.raised_s == obs.time_s and \
                    obs.equipment[self.press].state.value == "Execute":
                self.holding = True
                out += [PackMLCommand(self.press, "Hold", f"critical alarm {a.id} {a.condition}"),
                        WakeUp(obs.time_s + self.alarm_hold_s, "unhold")]
        return out
