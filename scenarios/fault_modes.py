"""The fault modes of a fault campaign (:mod:`darkfab.scenarios.faults`), one SimPy process
each: how each fault acts on the plant through the component's own fault hooks, how its
detection is waited for, and when the plant counts as recovered (the table in that module's
docstring). :class:`~darkfab.scenarios.faults.FaultCampaign` inherits them."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from darkfab.factory.packml import State

from .control_loop import ACK_TIMEOUT_S

if TYPE_CHECKING:
    from .faults import FaultRecord

__all__ = ["FaultModes", "NORMAL_STATES", "PAT_OK_IN_ROW"]

NORMAL_STATES = frozenset({State.EXECUTE, State.SUSPENDING, State.SUSPENDED, State.UNSUSPENDING})
"""A unit in one of these is producing or waiting for material: recovered."""
PAT_OK_IN_ROW = 8
"""In-spec PAT readings in a row after which a PAT fault counts as recovered."""


class FaultModes:
    """Mixin of :class:`~darkfab.scenarios.faults.FaultCampaign`: ``_<mode>(rec, spec)`` for
    each fault mode, a generator run by the campaign's ``_run``. Uses the campaign's plant,
    clock and bookkeeping (``_detect``, ``_clear``, ``_recover``, ``_await_plant_normal``,
    ``wait_for``)."""

    def _breakdown(self, rec: FaultRecord, spec):
        name = f"breakdown#{rec.index}"
        if spec.target in self.plant.lines:
            line = self.plant.lines[spec.target]
            rec.manifested_s = self.env.now

            def executing(t, state) -> bool:
                if state == "Execute" and t >= rec.time_s + spec.duration_s - 1e-9:
                    self._recover(rec, t)
                    return True
                return False
            self.wait_for(line.name, "state", executing)
            line.inject_breakdown(name, spec.duration_s)
            self._detect(rec, self.env.now, "line Held")
            yield self.env.timeout(spec.duration_s)
            self._clear(rec)
            return
        eq = self.plant.equipment[spec.target]

        def fault(t, detail) -> bool:
            if detail == name:
                rec.manifested_s = t
                self._detect(rec, t, "unit fault alarm")
                return True
            return False

        def repaired(t, detail) -> bool:
            if detail != name:
                return False
            self._clear(rec, t)
            if eq.sm.state in NORMAL_STATES:
                self._recover(rec, t)
            else:
                def back(t2, state) -> bool:
                    if State(state) in NORMAL_STATES:
                        self._recover(rec, t2)
                        return True
                    return False
                self.wait_for(eq.name, "state", back)
            return True
        self.wait_for(eq.name, "fault", fault)
        self.wait_for(eq.name, "repaired", repaired)
        eq.breakdown(name, spec.duration_s, spec.reaction)
        yield from ()

    def _robot_stall(self, rec: FaultRecord, spec):
        robot = self.plant.robots[spec.target]

        def stalled(r) -> None:
            rec.manifested_s = self.env.now
            self._detect(rec, self.env.now, "robot stall alarm")

        def moving(r) -> None:
            self._clear(rec)
            self._recover(rec)
        robot.force_stall(f"stall#{rec.index}", spec.duration_s, stalled, moving)
        yield from ()

    def _battery_fade(self, rec: FaultRecord, spec):
        robot = self.plant.robots[spec.target]
        robot.battery.fade(self.env.now, spec.fraction)
        rec.manifested_s = self.env.now

        def alarm(t, detail) -> bool:
            self._detect(rec, t, f"battery management: {detail}")
            return True
        self.wait_for(robot.name, "battery_fade", alarm)
        yield from ()

    def _charger_outage(self, rec: FaultRecord, spec):
        fleet = self.plant.fleet
        rec.manifested_s = self.env.now
        fleet.set_charger_out(spec.target, True)
        self.model.alarms.raise_alarm(self.env.now, spec.target, "charger_fault",
                                      "charger out of service", "medium")
        self._detect(rec, self.env.now, "charger fault signal")
        yield self.env.timeout(spec.duration_s)
        fleet.set_charger_out(spec.target, False)
        self.model.alarms.clear(self.env.now, spec.target, "charger_fault")
        self._clear(rec)
        while fleet.charge_queue_length():
            yield self.env.timeout(60.0)
        self._recover(rec)

    def _sensor(self, line_name: str):
        return self.plant.lines[line_name].sensor

    def _sensor_dropout(self, rec: FaultRecord, spec):
        sensor = self._sensor(spec.target)
        t0, t1 = self.env.now, self.env.now + spec.duration_s
        sensor.p = replace(sensor.p, dropout_windows=sensor.p.dropout_windows + ((t0, t1),))
        rec.manifested_s = t0

        def lost(t) -> bool:
            if t >= t0:
                self._detect(rec, t, "PAT watchdog: signal lost")
                return True
            return False

        def reading(t, _n=0) -> bool:
            if t >= t1 + sensor.p.delay_s:
                self._recover(rec, t)
                return True
            return False
        self.wait_for(spec.target, "pat_signal_lost", lost)
        self.wait_for(spec.target, "pat_ok", reading)
        self.wait_for(spec.target, "pat_oos", reading)
        yield self.env.timeout(spec.duration_s)
        self._clear(rec)

    def _await_pat_back(self, rec: FaultRecord, line: str, after: float) -> None:
        def ok(t, n) -> bool:
            if t >= after and n >= PAT_OK_IN_ROW and rec.detected_s is not None:
                self._recover(rec, t)
                if rec.mode == "oos_raw_material_lot":
                    self._clear(rec, t)
                return True
            return False
        self.wait_for(line, "pat_ok", ok)

    def _sensor_drift(self, rec: FaultRecord, spec):
        sensor = self._sensor(spec.target)
        t0, t1 = self.env.now, self.env.now + spec.duration_s
        sensor.p = replace(sensor.p, drift_start_s=t0, drift_rate_per_s=spec.rate_per_h / 3600.0,
                           drift_end_s=t1)
        rec.manifested_s = t0

        def oos(t) -> bool:
            self._detect(rec, t, "PAT reading out of spec")
            return True
        self.wait_for(spec.target, "pat_oos", oos)
        yield self.env.timeout(spec.duration_s)
        self._clear(rec)
        self._await_pat_back(rec, spec.target, t1 + sensor.p.delay_s)

    def _feeder_refill_failure(self, rec: FaultRecord, spec):
        line_name, _, feeder = spec.target.partition(".")
        line = self.plant.lines[line_name]

        def alarm(t, detail) -> bool:
            if detail == f"{feeder}: refill_failed":
                rec.manifested_s = t
                self._detect(rec, t, "refill failed alarm")
                return True
            return False
        self.wait_for(line_name, "alarm", alarm)
        line.set_refill_blocked(feeder, True)
        yield self.env.timeout(spec.duration_s)
        line.set_refill_blocked(feeder, False)
        self._clear(rec)
        if line.running:
            self._recover(rec)
        else:
            def executing(t, state) -> bool:
                if state == "Execute":
                    self._recover(rec, t)
                    return True
                return False
            self.wait_for(line_name, "state", executing)

    def _oos_raw_material_lot(self, rec: FaultRecord, spec):
        line_name, _, feeder = spec.target.partition(".")
        line = self.plant.lines[line_name]

        def fed(t, lot) -> bool:
            rec.manifested_s = t
            rec.params["lot"] = lot

            def oos(t2) -> bool:
                self._detect(rec, t2, "PAT reading out of spec")
                self._await_pat_back(rec, line_name, t2)
                return True
            self.wait_for(line_name, "pat_oos", oos)
            return True
        self.wait_for(line_name, "oos_lot", fed)
        line.next_potency[feeder] = spec.potency
        yield from ()

    def _supervisor_outage(self, rec: FaultRecord, spec):
        loop = self.plant.control
        rec.manifested_s = self.env.now

        def offline(t, detail) -> bool:
            self._detect(rec, t, "control loop heartbeat")
            return True
        self.wait_for("controller", "controller_offline", offline)
        loop.set_offline(True)
        yield self.env.timeout(spec.duration_s)
        loop.set_offline(False)
        self._clear(rec)
        self._await_plant_normal(rec)

    def _command_latency(self, rec: FaultRecord, spec):
        loop = self.plant.control
        rec.manifested_s = self.env.now

        def late(t, detail) -> bool:
            self._detect(rec, t, "late command acknowledgement")
            return True
        self.wait_for("controller", "command_latency", late)
        loop.set_extra_latency(spec.extra_latency_s)
        yield self.env.timeout(spec.duration_s)
        loop.set_extra_latency(0.0)
        self._clear(rec)
        yield self.env.timeout(spec.extra_latency_s)  # the last late commands apply
        self._await_plant_normal(rec)

    def _command_loss(self, rec: FaultRecord, spec):
        loop = self.plant.control
        rec.manifested_s = self.env.now

        def lost(t, detail) -> bool:
            self._detect(rec, t, f"command not acknowledged ({detail})")
            return True
        self.wait_for("controller", "command_lost", lost)
        rec.commands_lost = 0
        loop.set_command_loss(spec.probability, self._loss_rngs[rec.index])
        yield self.env.timeout(spec.duration_s)
        loop.set_command_loss(0.0, None)
        self._clear(rec)
        yield self.env.timeout(ACK_TIMEOUT_S)
        self._await_plant_normal(rec)

    # --- results --------------------------------------------------------------------------
