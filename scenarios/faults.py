"""Fault campaigns: the scenario's ``[[faults]]`` injected into the running plant.

Each scripted fault is a SimPy process that waits for ``time_s``, logs ``fault_injected``,
acts on the plant through the component's own fault hooks, and logs ``fault_cleared`` after
``duration_s`` (battery fade is permanent; an out-of-spec lot clears when it has left the line).
The plant's side must *detect* every fault by itself — an alarm or a state change of the unit,
robot, line, charger, PAT watchdog or control loop — and the campaign records when
(``fault_detected``), then when the plant is back to normal operation:

================== ====================================== ======================================
mode               detected by                            recovered when
================== ====================================== ======================================
breakdown          the unit's / line's fault (Held)       the unit is producing or waiting for
                                                          material again (Execute, Suspend*) /
                                                          the line is back in Execute
robot_stall        the robot's stall alarm (on the next   the robot drives on
                   lane it enters)
battery_fade       the battery management system after    — (permanent; the fleet's thresholds
                   the robot's next charge                are relative to the capacity)
charger_outage     the charger's fault signal             the charger is back and no robot
                                                          waits for a charger
sensor_dropout     PAT watchdog: 3 readings lost in a row the first reading after the window
sensor_drift       a PAT reading out of spec              8 readings in a row in spec after the
                                                          recalibration
oos_raw_material_  a PAT reading out of spec (the model   8 readings in a row in spec (the lot
lot                is blind to potency)                   has been diluted / left the line)
supervisor_outage  the control loop's heartbeat           every unit is producing, waiting for
                                                          material or under repair
command_latency    a command acknowledged late            as for supervisor_outage, after the
                                                          window (and its last late command)
command_loss       a command not acknowledged within      as for supervisor_outage, after the
                   ``ACK_TIMEOUT_S``                      window
================== ====================================== ======================================

Counting (``finish``): a fault scheduled at or after the end of the run is *not reached*: never
injected, neither detected nor a failure. Only an injected fault can count as recovered
(battery fade, permanent, counts as recovered once injected). A ``command_loss`` window that
lost no command has *nothing to detect*: it passes (the commands lost in the window are counted
on the fault's own random stream: a draw below the probability loses the command).

Throughput lost per fault: good units into product sinks over the recovery window [injection,
recovery] (or the fault's window when it has no recovery time) compared with the completion
rate over the 24 h before the injection (after warm-up; ``None`` when there is no such history):
``max(0, rate × window − completed in the window)``; for plants with continuous lines the same
for the lines' accepted mass (``accepted_kg_lost``). Material that a fault keeps out of the
plant's output after its recovery window (a buffer refilling) is not counted.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from typing import Any

from darkfab.factory.pat import Readings

from .fault_modes import NORMAL_STATES, FaultModes

__all__ = ["FaultCampaign", "FaultRecord", "PatWatchdog"]

_SNAPSHOT_S = 600.0
_RATE_WINDOW_S = 86_400.0
_PAT_LOST_IN_ROW = 3


@dataclass
class FaultRecord:
    index: int
    mode: str
    target: str
    time_s: float
    duration_s: float | None
    params: dict[str, Any] = field(default_factory=dict)
    injected: bool = False
    manifested_s: float | None = None  # when it acted on the plant (a stall: the next lane)
    detected_s: float | None = None
    detected_by: str = ""
    cleared_s: float | None = None
    recovered_s: float | None = None
    commands_lost: int | None = None  # command_loss: commands lost to this fault so far
    _base: tuple | None = None  # (rate units/s, rate kg/s, units at injection, kg at injection)
    _end: tuple | None = None  # (units, kg) at the end of the recovery window
    _end_clear: tuple | None = None  # (units, kg) when the fault cleared

    def to_dict(self) -> dict[str, Any]:
        lost_units = lost_kg = None
        end_t, end = self.recovered_s, self._end
        if end_t is None:
            end_t, end = self.cleared_s, self._end_clear
        if self._base is not None and end is not None and end_t is not None:
            ru, rk, u0, k0 = self._base
            w = end_t - self.time_s
            if ru is not None:
                lost_units = max(0.0, ru * w - (end[0] - u0))
            if rk is not None:
                lost_kg = max(0.0, rk * w - (end[1] - k0))
        return {
            "index": self.index, "mode": self.mode, "target": self.target,
            "time_s": self.time_s, "duration_s": self.duration_s, **self.params,
            "injected": self.injected, "manifested_s": self.manifested_s,
            "detected": self.detected_s is not None, "detected_s": self.detected_s,
            "detected_by": self.detected_by,
            "detection_latency_s": None if self.detected_s is None
            else self.detected_s - self.time_s,
            "cleared_s": self.cleared_s, "recovered_s": self.recovered_s,
            "recovery_time_s": None if self.recovered_s is None
            else self.recovered_s - self.time_s,
            "throughput_lost_units": lost_units, "accepted_kg_lost": lost_kg,
            **({"commands_lost": self.commands_lost} if self.mode == "command_loss" else {}),
        }


class PatWatchdog:
    """Watches a line's NIR readings: ``pat_signal_lost`` after 3 lost readings in a row (an
    alarm of priority ``high`` in ``model.alarms``, source: the line; cleared by the next
    reading), and passes every reading's verdict to the campaign."""

    def __init__(self, line, campaign: "FaultCampaign") -> None:
        self.line = line
        self.campaign = campaign
        self.lost_in_row = 0
        self.ok_in_row = 0
        self.signal_lost = False
        q = line.quality_spec
        self.low, self.high = q.spec_low, q.spec_high
        line.sensor.listeners.append(self.on_readings)

    def on_readings(self, readings: Readings) -> None:
        n, vmin, vmax = readings.taken_range()
        if (n == len(readings) and -math.inf < vmin and vmax < math.inf
                and self.low <= vmin and vmax <= self.high and not self.signal_lost
                and not self.campaign.waiting(self.line.name, "pat_ok")):
            # the usual batch: none lost, every reading a number in spec (then of a finite
            # true value) and nobody waiting for the verdicts
            if n:
                self.lost_in_row = 0
                self.ok_in_row += n
            return
        alarms = self.line.model.alarms
        now = self.line.env.now
        for m in readings:
            if not math.isfinite(m.true_value):
                continue  # no reading possible (flow too low): the line ignores it too
            if m.value is None:
                self.lost_in_row += 1
                self.ok_in_row = 0
                if self.lost_in_row == _PAT_LOST_IN_ROW:
                    self.signal_lost = True
                    alarms.raise_alarm(now, self.line.name, "pat_signal_lost",
                                       f"{_PAT_LOST_IN_ROW} NIR readings lost in a row, the "
                                       f"last due at {m.available_s:.1f} s", "high")
                    self.campaign.notify(self.line.name, "pat_signal_lost", m.available_s)
                continue
            if self.signal_lost:
                self.signal_lost = False
                alarms.clear(now, self.line.name, "pat_signal_lost")
            self.lost_in_row = 0
            if self.low <= m.value <= self.high:
                self.ok_in_row += 1
                self.campaign.notify(self.line.name, "pat_ok", m.available_s, self.ok_in_row)
            else:
                self.ok_in_row = 0
                self.campaign.notify(self.line.name, "pat_oos", m.available_s)


class FaultCampaign(FaultModes):
    """Injects a plant's scripted faults and records detection and recovery (module doc)."""

    def __init__(self, plant) -> None:
        self.plant = plant
        self.model = plant.model
        self.env = plant.model.env
        self.specs = list(plant.scenario.faults)
        self.records = [FaultRecord(i, f.mode, f.target, f.time_s,
                                    getattr(f, "duration_s", None), _params(f))
                        for i, f in enumerate(self.specs)]
        self._waiters: dict[tuple[str, str], list] = {}  # (source, signal) -> callbacks
        self._snap_t: list[float] = []
        self._snap_v: list[tuple[float, float]] = []
        self.watchdogs: list[PatWatchdog] = []
        self._loss_rngs = {i: _CountingDraws(self.model.streams.stream(f"faults.{i}.command_loss"),
                                             f.probability)
                           for i, f in enumerate(self.specs) if f.mode == "command_loss"}

    # --- wiring ---------------------------------------------------------------------------
    def start(self) -> None:
        if not self.specs:
            return
        env = self.env
        for line in self.plant.lines.values():
            if line.sensor is not None:
                self.watchdogs.append(PatWatchdog(line, self))
            line.listeners.append(self._on_line)
        for eq in self.plant.equipment.values():
            eq.subscribe(self._on_unit)
        for r in self.plant.robots.values():
            r.alarm_listeners.append(lambda robot, alarm, detail:
                                     self.notify(robot.name, alarm, self.env.now, detail))
        if self.plant.control is not None:
            self.plant.control.fault_listeners.append(
                lambda kind, detail: self.notify("controller", kind, self.env.now, detail))
        env.process(self._snapshots())
        for rec, spec in zip(self.records, self.specs):
            env.process(self._run(rec, spec))

    def notify(self, source: str, signal: str, t: float, *args) -> None:
        """A signal from the plant (alarm, state change, PAT verdict) at time ``t``."""
        fns = self._waiters.pop((source, signal), None)
        if not fns:
            return
        keep = [fn for fn in fns if not fn(t, *args)]
        if keep:  # before any added by the callbacks themselves
            self._waiters.setdefault((source, signal), [])[:0] = keep

    def waiting(self, source: str, signal: str) -> bool:
        """Whether a callback waits for the signal (else :meth:`notify` does nothing)."""
        return (source, signal) in self._waiters

    def wait_for(self, source: str, signal: str, fn) -> None:
        """Call ``fn(t, *args)`` on each signal until it returns ``True``."""
        self._waiters.setdefault((source, signal), []).append(fn)

    def _on_unit(self, eq, kind: str, detail: str) -> None:
        now = self.env.now
        if kind == "state":
            self.notify(eq.name, "state", now, detail)
            self.notify("*", "unit_state", now, eq.name)
        else:
            self.notify(eq.name, kind, now, detail)

    def _on_line(self, line, kind: str, detail: str) -> None:
        self.notify(line.name, kind, self.env.now, detail)

    # --- bookkeeping ----------------------------------------------------------------------
    def _counts(self) -> tuple[float, float]:
        kg = sum(line.accepted_kg - line.qc_samples_kg for line in self.plant.lines.values())
        return float(self.model.units_completed), kg

    def _snapshots(self):
        while True:
            self._snap_t.append(self.env.now)
            self._snap_v.append(self._counts())
            yield self.env.timeout(_SNAPSHOT_S)

    def _baseline(self) -> tuple:
        now = self.env.now
        units, kg = self._counts()
        t0 = max(now - _RATE_WINDOW_S, self.model.warmup_s)
        i = bisect.bisect_left(self._snap_t, t0)
        if now <= self.model.warmup_s or i >= len(self._snap_t) or now - self._snap_t[i] < 3600:
            return (None, None, units, kg)
        w = now - self._snap_t[i]
        u0, k0 = self._snap_v[i]
        return ((units - u0) / w, (kg - k0) / w if self.plant.lines else None, units, kg)

    def _log(self, kind: str, rec: FaultRecord, detail: str) -> None:
        self.model.log.record(self.env.now, kind, rec.target, -1, "", "faults",
                              f"{rec.mode}#{rec.index}: {detail}")

    def _detect(self, rec: FaultRecord, t: float, how: str) -> None:
        if rec.detected_s is None:
            rec.detected_s = t
            rec.detected_by = how
            self._log("fault_detected", rec, f"{how} after {t - rec.time_s:.1f} s")

    def _clear(self, rec: FaultRecord, t: float | None = None) -> None:
        if rec.cleared_s is None:
            rec.cleared_s = self.env.now if t is None else t
            rec._end_clear = self._counts()
            self._log("fault_cleared", rec, "cleared")

    def _recover(self, rec: FaultRecord, t: float | None = None) -> None:
        if rec.recovered_s is None:
            rec.recovered_s = self.env.now if t is None else t
            rec._end = self._counts()

    def _plant_normal(self) -> bool:
        """No unit waits for a command: each is producing or waiting for material, or under
        repair (an active alarm)."""
        control = self.plant.control
        return all(eq.sm.state in NORMAL_STATES
                   or (control is not None and control.active_faults(n))
                   for n, eq in self.plant.equipment.items())

    def _await_plant_normal(self, rec: FaultRecord) -> None:
        if self._plant_normal():
            self._recover(rec)
            return

        def check(t, unit) -> bool:
            if self._plant_normal():
                self._recover(rec, t)
                return True
            return False
        self.wait_for("*", "unit_state", check)

    # --- the faults -----------------------------------------------------------------------
    def _run(self, rec: FaultRecord, spec):
        if spec.time_s > self.env.now:
            yield self.env.timeout(spec.time_s - self.env.now)
        rec.injected = True
        rec._base = self._baseline()
        self._log("fault_injected", rec, ", ".join(f"{k}={v}" for k, v in rec.params.items())
                  or "injected")
        yield from getattr(self, f"_{spec.mode}")(rec, spec)

    def finish(self, end: float) -> list[dict[str, Any]]:
        """Every fault's record with its verdict (module doc, Counting): ``status`` is
        ``not_reached`` (scheduled at or after ``end``), ``nothing_to_detect`` (a command
        loss that lost no command), ``detected`` or ``undetected``; ``recovered`` only if
        injected."""
        out = []
        for rec in self.records:
            if rec.mode == "command_loss" and rec.injected:
                rec.commands_lost = self._loss_rngs[rec.index].lost
            d = rec.to_dict()
            d["recovered"] = rec.injected and (rec.recovered_s is not None
                                               or rec.mode == "battery_fade")
            if not rec.injected:
                d["status"] = "not_reached"
            elif rec.detected_s is not None:
                d["status"] = "detected"
            elif rec.mode == "command_loss" and rec.commands_lost == 0:
                d["status"] = "nothing_to_detect"
            else:
                d["status"] = "undetected"
            out.append(d)
        return out


class _CountingDraws:
    """A command-loss fault's random stream, counting the draws below the loss probability
    (the commands it lost); the draws themselves are the stream's, unchanged."""

    def __init__(self, rng, probability: float) -> None:
        self.rng = rng
        self.probability = probability
        self.lost = 0

    def random(self) -> float:
        x = self.rng.random()
        if x < self.probability:
            self.lost += 1
        return x


def _params(f) -> dict[str, Any]:
    skip = {"mode", "time_s", "target", "duration_s"}
    return {k: v for k, v in f.model_dump().items() if k not in skip}
