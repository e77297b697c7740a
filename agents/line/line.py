"""A continuous direct compression (CDC) line: loss-in-weight feeders → continuous blender →
tablet press (feed frame), an NIR PAT sensor, and a diversion gate, emitting discrete units of
accepted tablets (totes) to the downstream plant.

This module holds the line's process (wake-ups, feeder events and refills, failures, stops and
restarts); its concerns live in their own modules: the hybrid integration engine (:mod:`.engine`),
the control strategy (:mod:`.strategy`), output units and batches (:mod:`.output`), punch wear
(:mod:`.wear`), units under supervision (:mod:`.units`, :mod:`.supervision`), the press's
regulation, IPC and hopper (:mod:`.regulation`, :mod:`.hopper`), logistics, results.

Hybrid integration (no global time step): the feeders are advanced exactly from event to event
(:mod:`darkfab.factory.feeder`); their piecewise-constant mass flows per component and per
raw-material lot are pushed into RTD predictors (:mod:`darkfab.factory.rtd_predictor`) of the
line (blender RTD in series with the feed-frame RTD), in flow time
(:mod:`darkfab.factory.flow_clock`), which give the output flow, API content and lot
composition at any time by exact convolution. The line wakes only at computed times:

* hopper low / empty / refill done (:meth:`LossInWeightFeeder.next_event`),
* the predicted API content or output flow leaving spec: the first exit of the content
  projected from the feed the feeders will deliver if nothing intervenes, up to the next due
  wake-up (:meth:`ContinuousLine._project`),
* the next unit of accepted tablets filling, the end of a batch, failures and repairs,
  a refill container arriving, room in the output buffer,
* at most ``control_interval_s`` apart (the supervisory control cycle that books diversion).

Control strategy (ICH Q13): the RTD model's API content c(t) (relative to label claim) and the
output flow are checked over every elapsed interval, sampled at σ_RTD/10 and refined by Brent's
method; material outside [``spec_low``, ``spec_high``] or leaving at less than
``min_flow_fraction`` of the nominal flow is diverted, padded by ``margin_s`` either side. The
gate sits downstream of the sensor point: it is booked ``lag`` = max(``margin_s``, PAT period +
delay) behind the present (the material's transport from the sensor to the gate), so the padding
is causal and a PAT reading out of spec can divert back to the last good reading. The model is
taken as exact (the feeders' load cells report their true flows); the PAT sensor measures the true
content with noise, delay, dropout and drift, and a measured value outside spec diverts from the
time the reading is available for ``pat_hold_s``. Mass balance:
fed = accepted + diverted + hold-up (+ QC samples), checked at the end of the run.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass

import numpy as np
from mesa.discrete_space import FixedAgent

from darkfab.factory.buffers import Buffer
from darkfab.factory.distributions import Sampler
from darkfab.factory.diversion import DiversionGate
from darkfab.factory.feeder import LossInWeightFeeder
from darkfab.factory.flow_clock import FlowClock
from darkfab.factory.kpis import StateTimer
from darkfab.factory.pat_alarm import PatAlarmRule
from darkfab.factory.pat import NirSensor
from darkfab.factory.rtd import RTD
from darkfab.factory.tablet_press import TabletPress
from darkfab.factory.weight_control import ForceGauge

from ..model import PlantModel
from .engine import HybridEngine
from .hopper import PressHopper
from .logistics import FeederLogistics
from .output import LineOutput, _Batch, _Quality
from .results import LineResults
from .regulation import Regulation
from .strategy import ControlStrategy
from .supervision import LineSupervision
from .wear import PunchMaintenance

__all__ = ["ContinuousLine", "FeederStation", "LineFailure", "QualitySpec"]

EXECUTE, HELD, SUSPENDED = "Execute", "Held", "Suspended"


@dataclass
class FeederStation:
    """One feeder with its component, recipe share, refill dock and refill rate."""

    name: str
    component: str  # "api", "excipient", "lubricant", ...
    feeder: LossInWeightFeeder
    setpoint_kg_s: float
    refill_dock: Buffer
    refill_rate_kg_s: float
    container_kg: Callable[[str], float]  # product -> container mass
    refills: int = 0
    delivered_kg: float = 0.0  # container mass brought to the feeder
    waiting_since: float | None = None
    refill_from: float | None = None  # start of the refill in progress
    _get: object = None  # pending get on the refill dock
    _next: tuple[float, str] | None = None  # cached next intrinsic event
    refill_blocked: bool = False  # a refill failure (fault campaign): containers wait
    held_unit: object = None  # the container waiting while refills fail


@dataclass(frozen=True)
class QualitySpec:
    spec_low: float = 0.95  # API content, fraction of label claim
    spec_high: float = 1.05
    min_flow_fraction: float = 0.8  # output below this share of nominal is diverted
    margin_s: float = 10.0  # padding of model-based diversion windows
    pat_hold_s: float = 60.0  # diversion after an out-of-spec PAT reading
    startup_divert_s: float = 0.0  # planned start-up transient (after each restart)
    # guarded acceptance (JCGM 106:2012 §8): the model's predicted content must lie within the
    # acceptance limits [spec_low + guard_band, spec_high − guard_band] (fraction of label claim)
    guard_band: float = 0.0

    @property
    def accept_low(self) -> float:
        """Lower acceptance limit of the model's predicted content."""
        return self.spec_low + self.guard_band

    @property
    def accept_high(self) -> float:
        """Upper acceptance limit of the model's predicted content."""
        return self.spec_high - self.guard_band


@dataclass(frozen=True)
class LineFailure:
    name: str
    time_to_failure: Sampler  # operating seconds
    repair_time: Sampler


class ContinuousLine(PressHopper, FeederLogistics, ControlStrategy, LineOutput, PunchMaintenance,
                     LineSupervision, Regulation, LineResults, FixedAgent):
    """See the module docstring. ``emit`` is where accepted units go (a buffer, or a staging
    area when robots carry them)."""

    def __init__(self, model: PlantModel, name: str, node: str, stations: list[FeederStation],
                 blender_rtd: RTD, line_rtd: RTD, press: TabletPress, pressure_pa: float,
                 sensor: NirSensor | None, quality: QualitySpec, emit: Buffer, product: str,
                 tablets_per_unit: int, batch_s: float | None, batch_kg: float | None,
                 failures: list[LineFailure], control_interval_s: float = 600.0,
                 qc_tablets_per_unit: int = 0, blender_speed_rpm: float = 1.0,
                 blender_speed_exponent: float = 0.0,
                 setpoint_ranges: dict[str, tuple[float, float]] | None = None) -> None:
        super().__init__(model)
        self.cell = model.node_cell(node)
        self.name, self.node = name, node
        self.env = model.env
        self.stations = stations
        self.press = press
        self.quality_spec = quality
        self.tablet = press.quality(pressure_pa)
        self.sensor = sensor
        self.pat_rule = PatAlarmRule("single", quality.spec_low, quality.spec_high)
        self.emit = emit
        self.product = product
        self.tablets_per_unit = tablets_per_unit
        self.unit_kg = tablets_per_unit * self.tablet.weight_kg
        self.qc_kg = qc_tablets_per_unit * self.tablet.weight_kg
        self.batch_s, self.batch_kg = batch_s, batch_kg
        self.failures = failures
        self.control_interval_s = control_interval_s
        self.nominal_kg_s = sum(st.setpoint_kg_s for st in stations)
        nominal_h = 3600.0 * self.nominal_kg_s
        setpoint_ranges = {"line_rate_kg_h": (0.3 * nominal_h, 1.1 * nominal_h),
                           "feeder_pct": (50.0, 150.0),
                           "turret_speed_rpm": (0.3 * press.turret_speed_rpm,
                                                1.1 * press.turret_speed_rpm),
                           "blender_speed_rpm": (0.5 * blender_speed_rpm, 2.0 * blender_speed_rpm),
                           "fill_depth_mm": (0.9e3 * press.fill_depth_m,
                                             1.1e3 * press.fill_depth_m),
                           "target_weight_mg": (0.9e6 * press.tablet_weight_kg,
                                                1.1e6 * press.tablet_weight_kg),
                           **(setpoint_ranges or {})}
        self.api_share = sum(st.setpoint_kg_s for st in stations
                             if st.component == "api") / self.nominal_kg_s
        self.rtd = line_rtd
        self.blender_rtd = blender_rtd
        self._scan_step_s = line_rtd.std_s / 10.0  # σ/10: scan and audit grids
        self.lag_s = max(quality.margin_s, sensor.p.period_s + sensor.p.delay_s
                         if sensor is not None else 0.0)  # routing behind the present
        # scans and routing lag behind the present (clock time; the engine keeps the flow time
        # that passed in it)
        lookback = control_interval_s + self.lag_s + 60.0
        self.engine = HybridEngine(stations, line_rtd, FlowClock(0.0, 1.0), lookback,
                                   on_lot_released=self._lot_released,
                                   lots_from=lambda: self._pending_from)
        self.flow = self.engine.flow  # the feeders start at their set-points: rate 1
        self.comp, self.lots = self.engine.comp, self.engine.lots
        self._api_idx = self.engine.channels_of("api")
        self.gate = DiversionGate()
        self.timer = StateTimer(name, SUSPENDED, self.env.now, model.warmup_s, model.states)
        self.running = False
        self._reason = "start-up"
        self._scanned = 0.0
        self._routed = 0.0
        self._audit_samples: tuple | None = None  # (from, to, times, flow, content) by _scan
        self._last_wake = 0.0
        self._full_at = 0.0  # last wake-up that scanned and routed
        self._unit_eta = 0.0  # when the next unit can be complete (_eta)
        self._pending_kg = 0.0  # accepted mass not yet in a unit
        self._pending_api_kg = 0.0
        self._pending_from = 0.0
        self._wake = None
        self._fail_i = 0
        self._ttf = [f.time_to_failure() for f in failures]
        self._repair_until = math.inf
        self._run_since: float | None = None
        self._restarted = 0.0
        self._blocked = False
        self._refill_windows: deque[tuple[float, float]] = deque()
        self.batch = _Batch(model.material.new_lot(f"{name}-batch"), 0.0)
        self.batches: list[dict] = []
        self._closed_units: deque = deque()  # part-filled units closed at a batch end
        self.partial_units = 0
        self.tablets_in_units = 0.0  # tablets of the units made (their mass / mean weight)
        self.q = _Quality()
        # KPIs
        self.output_kg = 0.0
        self.accepted_kg = 0.0
        self.api_accepted_kg = 0.0
        self.units_out = 0
        self.qc_samples_kg = 0.0
        self.oos_events = 0
        self.refill_deviations = 0
        self.pat_samples = 0
        self.pat_dropouts = 0
        self.pat_alarms = 0
        self.stops = 0
        self.diverting_s = 0.0
        self.accepting_s = 0.0
        self.released_oos_kg = 0.0
        self.released_oos_samples = 0
        self._exit_at = math.inf  # the next predicted exit from spec (_project)
        self._oos_going_on = False  # an excursion under way at the end of the last scan
        self._reproject = False  # the feed changed by command: project again
        self.continuous_wall_s = 0.0  # wall and CPU time in the continuous models (s)
        self.continuous_cpu_s = 0.0
        self._apart_wall_s = 0.0  # time in listeners called from within the models (_apart)
        self._apart_cpu_s = 0.0
        # fault campaigns (darkfab.scenarios.faults): listeners fn(line, kind, detail) of
        # state changes and alarms, API potency of out-of-spec lots (the model is blind to it)
        self.listeners: list[Callable] = []
        self.lot_potency: dict[Hashable, float] = {}
        self.unit_listeners: list[Callable] = []  # fn(line, unit, lot fractions, content)
        self.next_potency: dict[str, float] = {}  # feeder -> potency of its next container
        self.calibration_log = None  # sensor data for calibration (.calibration_log), or None
        self._repair_name: str | None = None
        # punch wear (darkfab.factory.wear) and maintenance, set by set_wear()
        self.wear = None
        self._op_base = 0.0  # operating seconds on the present punches up to _run_since
        self.breakages = 0
        self.wear_at_breakage: list[float] = []
        self.maintenance_log: list[tuple[float, float, str, float]] = []  # start, dur, kind, wear
        self._build_units(setpoint_ranges, blender_speed_rpm, blender_speed_exponent,
                          press.turret_speed_rpm)
        self.set_regulation(ForceGauge(press, press.tablet_weight_kg, pressure_pa),
                            press.fill_depth_m, press.fill_density_kg_m3)

    # --- the process ------------------------------------------------------------------------
    def run(self):
        env = self.env
        self._restart(env.now, "start-up")
        w0 = self._clock()
        self._project(env.now)
        self._clocked(w0)
        last, same = -1.0, 0
        while True:
            t_next = self._next_wake()
            same = same + 1 if t_next == last else 0
            if same > 1000:  # a bug, not a plant state: fail loudly rather than spin
                raise RuntimeError(f"continuous line {self.name} makes no progress at "
                                   f"t={t_next} s")
            last = t_next
            self._wake = env.event()
            yield env.timeout(max(0.0, t_next - env.now)) | self._wake
            self._wake = None
            self._step(env.now)

    def _kick(self, _ev=None) -> None:
        if self._wake is not None and not self._wake.triggered:
            self._wake.succeed()

    def _clock(self) -> tuple[float, float, float, float]:
        return (time.perf_counter(), time.process_time(), self._apart_wall_s,
                self._apart_cpu_s)

    def _clocked(self, start: tuple[float, float, float, float]) -> None:
        """Book the time since ``start`` (:meth:`_clock`) to the continuous models, less the
        time spent meanwhile in code that is not theirs (:meth:`_apart`)."""
        self.continuous_wall_s += (time.perf_counter() - start[0]
                                   - (self._apart_wall_s - start[2]))
        self.continuous_cpu_s += (time.process_time() - start[1]
                                  - (self._apart_cpu_s - start[3]))

    def _apart(self, call: Callable[[], object]) -> object:
        """Make ``call`` (listeners: the quality agent, fault watchdogs) without booking its
        time to the continuous models."""
        w, c = time.perf_counter(), time.process_time()
        try:
            return call()
        finally:
            self._apart_wall_s += time.perf_counter() - w
            self._apart_cpu_s += time.process_time() - c

    def _next_wake(self) -> float:
        now = self.env.now
        times = [self._full_at + self.control_interval_s, self._exit_at]
        for st in self.stations:
            if st._next is None:
                w0 = self._clock()  # the feeder's next level event: a look-ahead run from now
                st.feeder.advance_state(now)
                st._next = st.feeder.next_event()
                self._clocked(w0)
            times.append(st._next[0])
        if self.running and self._ttf:
            times.append(self._run_since + min(self._ttf))
        if self.running and self.wear is not None:
            times.append(self._run_since + self.wear.life_s - self._op_base)
        times.append(self._repair_until)
        if self.running:
            times.append(self._unit_eta)
        if self.batch_s:
            times.append(self.batch.start_s + self.batch_s)
        return max(now, min(times))

    # --- one wake-up ------------------------------------------------------------------------
    def _step(self, now: float) -> None:
        """One wake-up. A wake-up that is due (:meth:`_quality_due`) advances the feeders into the
        predictors, scans, routes and projects the next exit from spec (:meth:`_project`; so does a
        wake-up at which a command changed the feed). The others (a hopper low, a refill done, a
        container arriving) act on the feeders alone and leave the elapsed interval to the next due
        one (the feeders keep their feed since the last sync, so nothing is lost). Syncing only
        there also means that a refill's noise cells (whose volumetric feed drifts within the cell:
        the mean over each piece depends on where the cell is split) are split only where a
        projection is made next (:meth:`_project`), so projections are exact."""
        w0 = self._clock()
        self._last_wake = now
        due = self._quality_due(now)
        if due:
            self.engine.sync(now)
            self._scan(now, route_until=now - self.lag_s)
            self._route(now - self.lag_s)
            self._full_at = now
        elif self._scan_every_wake:
            self._scan(now, ahead=self.engine.ahead_rows(now) if now > self.engine.synced else None)
        self._clocked(w0)
        self._feeder_events(now)
        self._failures(now)
        self._emit_units(now)
        if due:
            self._unit_eta = self._eta(now)
        if (self.batch_s and now >= self.batch.start_s + self.batch_s) or (
                self.batch_kg and self.batch.accepted_kg >= self.batch_kg):
            self._close_batch(now)
            self._emit_units(now)
        if due:
            self._api_trim_step(now)  # level 2: the NIR ratio trim, when it is on
        if due or self._reproject:
            w0 = self._clock()
            self._project(now)
            self._clocked(w0)

    #: Reference mode (tests): every wake-up scans, the feed since the last sync taken from
    #: the feeders' projection (the feed the next sync pushes); decisions must not change.
    _scan_every_wake = False

    def _quality_due(self, now: float) -> bool:
        """Whether this wake-up must sync, scan and route: at the supervisory cycle
        (``control_interval_s`` after the last one), at a predicted exit from spec, at the end
        of a batch, and when the next unit of accepted tablets can be complete
        (:meth:`_eta`). State changes that :meth:`_cause` depends on scan up to the last
        wake-up first (:meth:`_catch_up`), so causes are as if every wake-up scanned."""
        return (now >= self._full_at + self.control_interval_s - 1e-9
                or now >= self._exit_at - 1e-9
                or (self.running and now >= self._unit_eta - 1e-9)
                or bool(self.batch_s and now >= self.batch.start_s + self.batch_s))

    def _timed_sync(self, now: float) -> None:
        """:meth:`HybridEngine.sync` outside a wake-up (stops, restarts, commands), timed."""
        w0 = self._clock()
        self.engine.sync(now)
        self._clocked(w0)

    def _catch_up(self) -> None:
        """Scan up to the last wake-up if that wake-up did not (before a state change)."""
        if self._scanned < self._last_wake:
            w0 = self._clock()
            if self.engine.synced < self._last_wake:
                self.engine.sync(self._last_wake)
            self._scan(self._last_wake)
            self._clocked(w0)

    # --- failures, stops, restarts ----------------------------------------------------------
    def _failures(self, now: float) -> None:
        if (self.running and self.wear is not None
                and self.operating_s(now) >= self.wear.life_s - 1e-6):
            self._break_punches(now)
            return
        if self.running and self._ttf:
            i = int(np.argmin(self._ttf))
            # the same sum as the wake-up time in _next_wake: at t ~ 1e7 s, now − run_since
            # differs from ttf by more than any fixed tolerance
            if now >= self._run_since + self._ttf[i]:
                self._fail_i = i
                self._stop(now, HELD, self.failures[i].name)  # counts down every clock
                self._ttf[i] = self.failures[i].time_to_failure()
                self._repair_until = now + self.failures[i].repair_time()
                self.model.log.record(now, "fault", self.name, -1, "", self.node,
                                      self.failures[i].name)
                self._alarm(now, "press", self.failures[i].name,
                            f"line failure {self.failures[i].name}: the line is Held")
                self._publish_states(now)  # the cause is known now
                return
        if not self.running and now >= self._repair_until - 1e-9:
            name, self._repair_name = (self._repair_name
                                       or self.failures[self._fail_i].name), None
            done = "maintenance_done" if name == "maintenance" else "repair"
            self.model.log.record(now, done, self.name, -1, "", self.node, name)
            self._alarm_clear(now, "press", name)
            self._repair_until = math.inf
            self._maybe_restart(now, "repaired")
            if not self.running:  # starved, blocked or commanded meanwhile
                self.timer.change(now, self._standing_state())
                self._publish_states(now)

    def _stop(self, now: float, state: str, reason: str) -> None:
        self._catch_up()  # causes of what left spec before now: with the line running
        if self.running and self._ttf:
            up = now - self._run_since
            self._ttf = [x - up for x in self._ttf]
        if self.running:
            self._op_base += now - self._run_since
        self.running = False
        self._reason = reason
        self.stops += 1
        self._timed_sync(now)  # feed up to now into the predictors before the set-points change
        self._set_flow(now, False)  # the hold-up stays in place (flow time stands still)
        for st in self.stations:
            st._next = None
            st.feeder.set_setpoint(now, 0.0)  # the screws stop, a refill goes on filling
        self._timed_sync(now)
        self._reproject = True
        self.timer.change(now, state)
        self.model.log.record(now, "line", self.name, -1, "", self.node, f"{state}: {reason}")
        self._publish_states(now)
        if self.listeners:
            self._notify("state", state)

    def _restart(self, now: float, why: str) -> None:
        self._catch_up()  # causes of what left spec before now: before this restart
        self._timed_sync(now)  # feed up to now into the predictors before the set-points change
        self._set_flow(now, True)
        for st in self.stations:
            st._next = None
            st.feeder.set_setpoint(now, st.setpoint_kg_s)
        self._timed_sync(now)
        self.running = True
        self._reproject = True
        self._reason = ""
        self._run_since = now
        self._restarted = now
        self._unit_eta = self._eta(now)
        if self.quality_spec.startup_divert_s > 0:
            self.gate.add_window(now, now + self.quality_spec.startup_divert_s, "start-up")
        self.timer.change(now, EXECUTE)
        self.model.log.record(now, "line", self.name, -1, "", self.node, f"{EXECUTE}: {why}")
        self._publish_states(now)
        if self.listeners:
            self._notify("state", EXECUTE)

    # --- fault campaign hooks ---------------------------------------------------------------
    def _lot_released(self, lot: Hashable) -> None:
        """``lot`` has left the line: no content of it to correct any more."""
        self.lot_potency.pop(lot, None)

    def _notify(self, kind: str, detail: str) -> None:
        for fn in self.listeners:
            fn(self, kind, detail)

    def inject_breakdown(self, name: str, duration_s: float) -> None:
        """A scripted breakdown now: the line is Held until ``duration_s`` later (a failure in
        progress keeps the later of the two repair times)."""
        now = self.env.now
        self._timed_sync(now)  # feeders up to now before their set-points change
        if self.running:
            self._stop(now, HELD, name)
        else:
            self.timer.change(now, HELD)
            self.model.log.record(now, "line", self.name, -1, "", self.node, f"{HELD}: {name}")
            self._notify("state", HELD)
        base = self._repair_until if math.isfinite(self._repair_until) else now
        self._repair_until = max(base, now + duration_s)
        self._repair_name = name
        self.model.log.record(now, "fault", self.name, -1, "", self.node, name)
        self._alarm(now, "press", name, f"breakdown {name}: the line is Held")
        self._publish_states(now)
        self._kick()

    def set_refill_blocked(self, feeder: str, blocked: bool) -> None:
        """Refills of ``feeder`` fail (``True``) or work again."""
        st = next(x for x in self.stations if x.name == feeder)
        st.refill_blocked = blocked
        if not blocked:
            self._alarm_clear(self.env.now, st.name, "refill_failed")
            self._kick()

    # --- end of run -------------------------------------------------------------------------
    def finish(self, now: float) -> None:
        w0 = self._clock()
        self.engine.sync(now)
        self._scan(now, route_until=now)
        self._route(now)
        self._clocked(w0)
        self.pat_rule.finish()
        self.timer.finish(now)
