"""Punch wear and maintenance of a continuous line's press (:mod:`darkfab.factory.wear`):
breakage at the wear threshold, condition monitoring readings, punch changes."""

from __future__ import annotations

import math

__all__ = ["PunchMaintenance"]

HELD = "Held"


class PunchMaintenance:
    """Mixin of :class:`~darkfab.agents.line.ContinuousLine`: punch wear and maintenance."""

    def set_wear(self, wear, maintenance_s: float, breakage_repair_s: float,
                 inspection_s: float) -> None:
        """Give the press a punch-wear model (:class:`darkfab.factory.wear.PunchWear`)."""
        self.wear = wear
        self.maintenance_s = maintenance_s
        self.breakage_repair_s = breakage_repair_s
        self.inspection_s = inspection_s

    def operating_s(self, now: float | None = None) -> float:
        """Operating time (in Execute) on the present punches."""
        now = self.env.now if now is None else now
        return self._op_base + (now - self._run_since if self.running else 0.0)

    def _break_punches(self, now: float) -> None:
        """Wear reached the threshold: the punches break, the line is Held for the repair
        (new punches are fitted: wear starts again from 0)."""
        self._stop(now, HELD, "punch breakage")
        self.breakages += 1
        self.wear_at_breakage.append(self.wear.wear_at(self._op_base))
        self.wear.replace()
        self._op_base = 0.0
        self._repair_until = now + self.breakage_repair_s
        self._repair_name = "punch breakage"
        self._publish_states(now)
        self.model.log.record(now, "fault", self.name, -1, "", self.node, "punch breakage")
        self._alarm(now, "press", "punch breakage", "punch breakage: the line is Held",
                    "high")

    def condition(self) -> dict | None:
        """A condition-monitoring reading now: operating hours on the punches, the measured
        compression-force drift, the wear and RUL estimated from it (``None`` without a wear
        model). Each call draws one measurement."""
        if self.wear is None:
            return None
        op = self.operating_s()
        drift = self.wear.measure_force_drift_kn(op)
        w, rul = self.wear.estimate(drift)
        return {"operating_h": op / 3600.0, "force_drift_kn": drift, "wear_estimate": w,
                "rul_h": rul, "in_maintenance": self._repair_name == "maintenance"
                and math.isfinite(self._repair_until)}

    def maintenance(self, kind: str, reason: str = "") -> str | None:
        """A punch change now (a controller's ``Maintenance`` command): the line is stopped
        Held (reason ``maintenance``) for ``maintenance_s``, the wear is reset to 0, then the
        line restarts. Returns why it is refused, or ``None`` when done."""
        if self.wear is None:
            return "the line has no punch-wear model"
        if math.isfinite(self._repair_until):
            return f"the line is under repair or maintenance ({self._repair_name or 'failure'})"
        now = self.env.now
        self._timed_sync(now)
        if self.running:
            self._stop(now, HELD, "maintenance")
        else:
            self.timer.change(now, HELD)
            self.model.log.record(now, "line", self.name, -1, "", self.node, f"{HELD}: maintenance")
            if self.listeners:
                self._notify("state", HELD)
        worn = self.wear.wear_at(self._op_base)
        self.maintenance_log.append((now, self.maintenance_s, kind, worn))
        self.model.log.record(now, "maintenance", self.name, -1, "", self.node,
                              f"{kind}: {reason}; true wear {worn:.4g}, operating "
                              f"{self._op_base / 3600.0:.4g} h")
        self.wear.replace()
        self._op_base = 0.0
        self._repair_until = now + self.maintenance_s
        self._repair_name = "maintenance"
        self._publish_states(now)
        self._kick()
        return None

    def maintenance_kpis(self, end: float) -> dict:
        log = self.maintenance_log
        return {"punch_breakages": self.breakages,
                "maintenance_actions": len(log),
                "maintenance_by_kind": {k: sum(1 for x in log if x[2] == k)
                                        for k in sorted({x[2] for x in log})},
                "time_in_maintenance_s": sum(max(0.0, min(t + d, end) - t)
                                             for t, d, _, _ in log),
                "mean_wear_at_maintenance": sum(x[3] for x in log) / len(log)
                if log else math.nan,
                "mean_wear_at_breakage": sum(self.wear_at_breakage) / self.breakages
                if self.breakages else math.nan,
                "wear_threshold": self.wear.p.threshold,
                "operating_h_on_punches": self.operating_s(end) / 3600.0}
