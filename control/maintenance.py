"""Maintenance planning of the built-in supervisor: punch changes of continuous lines whose
press has a punch-wear model (``darkfab.factory.wear``).

On each ``inspection`` event of a line (condition monitoring, every
``press.wear.inspection_interval_h``) the planner reads ``Observation.lines[line]`` and returns
a :class:`~darkfab.control.commands.Maintenance` command with its reason when

* ``policy = "preventive"``: the punches have run ``pm_interval_h`` operating hours or more
  (usage-based: the press's hour meter, exact);
* ``policy = "predictive"``: the remaining useful life estimated from the *measured*
  compression-force drift, RUL = max(0, threshold − Ŵ)/(a·b), is at most ``rul_threshold_h``
  operating hours;
* ``policy = "none"``: never (the punches run to breakage).

A line already Held (a breakdown or a maintenance under way) is left alone.
"""

from __future__ import annotations

from collections.abc import Sequence

from .commands import Maintenance
from .observation import Event, Observation

__all__ = ["MaintenancePlanner", "POLICIES"]

POLICIES = ("none", "preventive", "predictive")


class MaintenancePlanner:
    def __init__(self, policy: str = "none", pm_interval_h: float = 100.0,
                 rul_threshold_h: float = 10.0) -> None:
        if policy not in POLICIES:
            raise ValueError(f"maintenance policy {policy!r} is not one of {', '.join(POLICIES)}")
        if not pm_interval_h > 0 or not rul_threshold_h >= 0:
            raise ValueError("pm_interval_h must be > 0 and rul_threshold_h >= 0")
        self.policy = policy
        self.pm_interval_h = pm_interval_h
        self.rul_threshold_h = rul_threshold_h

    def decide(self, events: Sequence[Event], obs: Observation) -> list[Maintenance]:
        if self.policy == "none":
            return []
        out: list[Maintenance] = []
        for name in dict.fromkeys(e.source for e in events if e.kind == "inspection"):
            ln = obs.lines.get(name)
            if ln is None or ln.in_maintenance or ln.state == "Held":
                continue
            if self.policy == "preventive" and ln.operating_h >= self.pm_interval_h:
                out.append(Maintenance(name, "preventive",
                                       f"usage {ln.operating_h:.4g} h >= interval "
                                       f"{self.pm_interval_h:g} h"))
            elif self.policy == "predictive" and ln.rul_h <= self.rul_threshold_h:
                out.append(Maintenance(name, "predictive",
                                       f"RUL {ln.rul_h:.4g} h <= {self.rul_threshold_h:g} h "
                                       f"(force drift {ln.force_drift_kn:.4g} kN, wear estimate "
                                       f"{ln.wear_estimate:.4g}, {ln.operating_h:.4g} h on "
                                       "the punches)"))
        return out
