"""A continuous direct compression (CDC) line as one agent: loss-in-weight feeders → continuous
blender → tablet press (feed frame), an NIR PAT sensor, and a diversion gate, emitting discrete
units of accepted tablets (totes) to the downstream plant.

Hybrid integration (no global time step): the feeders are advanced exactly from event to event
(:mod:`darkfab.factory.feeder`); their piecewise-constant mass flows per component and per
raw-material lot are pushed into RTD predictors (:mod:`darkfab.factory.rtd_predictor`) of the
line (blender RTD in series with the feed-frame RTD), which give the output flow, API content
and lot composition at any time by exact convolution. The line wakes only at computed times:

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
is causal and a PAT reading out of spec can divert back to the last good reading. The model is taken as
exact (the feeders' load cells report their true flows); the PAT sensor measures the true
content with noise, delay, dropout and drift, and a measured value outside spec diverts from the
time the reading is available for ``pat_hold_s``. Mass balance:
fed = accepted + diverted + hold-up (+ QC samples), checked at the end of the run.
"""

from __future__ import annotations

import bisect
import math
import time
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

import numpy as np
from mesa.discrete_space import FixedAgent

from darkfab.factory.buffers import Buffer
from darkfab.factory.distributions import Sampler
from darkfab.factory.diversion import (DiversionGate, clear_of_limits, out_of_spec_intervals,
                                       scan_grid)
from darkfab.factory.feeder import LossInWeightFeeder
from darkfab.factory.kpis import StateTimer
from darkfab.factory.pat import NirSensor
from darkfab.factory.rtd import RTD
from darkfab.factory.rtd_predictor import RTDPredictor
from darkfab.factory.tablet_press import TabletPress

from .model import PlantModel

__all__ = ["ContinuousLine", "FeederStation", "LineFailure", "QualitySpec"]

EXECUTE, HELD, SUSPENDED = "Execute", "Held", "Suspended"
_NO_TIMES = np.zeros(0)


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


@dataclass(frozen=True)
class LineFailure:
    name: str
    time_to_failure: Sampler  # operating seconds
    repair_time: Sampler


@dataclass
class _Batch:
    id: str
    start_s: float
    accepted_kg: float = 0.0
    units: int = 0


@dataclass
class _Quality:
    """API content of each unit of accepted tablets (a composite assay: API mass / mass over
    the unit's interval, relative to label claim) and diverted mass by cause."""

    n: int = 0
    sum_c: float = 0.0
    sum_c2: float = 0.0
    by_cause: dict[str, float] = field(default_factory=dict)


class ContinuousLine(FixedAgent):
    """See the module docstring. ``emit`` is where accepted units go (a buffer, or a staging
    area when robots carry them)."""

    def __init__(self, model: PlantModel, name: str, node: str, stations: list[FeederStation],
                 blender_rtd: RTD, line_rtd: RTD, press: TabletPress, pressure_pa: float,
                 sensor: NirSensor | None, quality: QualitySpec, emit: Buffer, product: str,
                 tablets_per_unit: int, batch_s: float | None, batch_kg: float | None,
                 failures: list[LineFailure], control_interval_s: float = 600.0,
                 qc_tablets_per_unit: int = 0) -> None:
        super().__init__(model)
        self.cell = model.node_cell(node)
        self.name, self.node = name, node
        self.env = model.env
        self.stations = stations
        self.press = press
        self.quality_spec = quality
        self.tablet = press.quality(pressure_pa)
        self.sensor = sensor
        self.emit = emit
        self.product = product
        self.tablets_per_unit = tablets_per_unit
        self.unit_kg = tablets_per_unit * self.tablet.weight_kg
        self.qc_kg = qc_tablets_per_unit * self.tablet.weight_kg
        self.batch_s, self.batch_kg = batch_s, batch_kg
        self.failures = failures
        self.control_interval_s = control_interval_s
        self.nominal_kg_s = sum(st.setpoint_kg_s for st in stations)
        self.api_share = sum(st.setpoint_kg_s for st in stations
                             if st.component == "api") / self.nominal_kg_s
        self.rtd = line_rtd
        self.blender_rtd = blender_rtd
        self._scan_step_s = line_rtd.std_s / 10.0  # σ/10: scan and audit grids
        self._one_cell_grid = len({st.feeder.p.noise_period_s for st in stations}) == 1
        self.lag_s = max(quality.margin_s, sensor.p.period_s + sensor.p.delay_s
                         if sensor is not None else 0.0)  # routing behind the present
        retain = control_interval_s + self.lag_s + 60.0  # scans and routing lag behind
        self.comp = RTDPredictor(line_rtd, t0=0.0, retain_s=retain)
        for c in sorted({st.component for st in stations}):
            self.comp._channel(c)  # fixed channel order
        self._api_idx = [i for i, c in enumerate(self.comp.channels) if c == "api"]
        self._comp_col = [self.comp.channels.index(st.component) for st in stations]
        self.lots = RTDPredictor(line_rtd, t0=0.0, retain_s=retain)
        self._slot_of: dict[Hashable, int] = {}
        self._slot_lot: dict[int, Hashable] = {}
        self._slot_seen: dict[int, float] = {}  # slot -> last time its lot was fed
        self._lot_pushes: list[tuple[float, dict[int, float]]] = []  # by _push_lots
        self._lots_key: tuple[int, ...] = (-1,) * len(stations)  # composition per feeder
        self.gate = DiversionGate()
        self.timer = StateTimer(name, SUSPENDED, self.env.now, model.warmup_s, model.states)
        self.running = False
        self._reason = "start-up"
        self._synced = 0.0
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
        self._repair_name: str | None = None
        # punch wear (darkfab.factory.wear) and maintenance, set by set_wear()
        self.wear = None
        self._op_base = 0.0  # operating seconds on the present punches up to _run_since
        self.breakages = 0
        self.wear_at_breakage: list[float] = []
        self.maintenance_log: list[tuple[float, float, str, float]] = []  # start, dur, kind, wear

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
            self._sync(now)
            self._scan(now, route_until=now - self.lag_s)
            self._route(now - self.lag_s)
            self._full_at = now
        elif self._scan_every_wake:
            self._scan(now, ahead=self._ahead_rows(now) if now > self._synced else None)
        self._clocked(w0)
        self._feeder_events(now)
        self._failures(now)
        self._emit_units(now)
        if due:
            self._unit_eta = self._eta(now)
        if (self.batch_s and now >= self.batch.start_s + self.batch_s) or (
                self.batch_kg and self.batch.accepted_kg >= self.batch_kg):
            self._close_batch(now)
        if due or self._reproject:
            w0 = self._clock()
            self._project(now)
            self._clocked(w0)

    #: Reference mode (tests): every wake-up scans, the feed since the last sync taken from
    #: the feeders' projection (the feed the next sync pushes); decisions must not change.
    _scan_every_wake = False

    def _eta(self, now: float) -> float:
        """When the next unit of accepted tablets can be complete: the output from the routed
        time on (now − lag at a due wake-up) at the nominal rate, skipping the diversion
        windows already booked, must reach what the unit still needs; it is routed lag after it
        leaves, and another lag is kept as a margin for flows below nominal (a unit goes out
        at the wake-up after it fills)."""
        left = max(self.unit_kg + self.qc_kg - self._pending_kg, 0.0)
        rate = self.nominal_kg_s
        t = max(self._routed, now - self.lag_s)
        for a, b, _ in self.gate.windows:  # sorted by start
            if b <= t:
                continue
            if a > t:
                if (a - t) * rate >= left:
                    break
                left -= (a - t) * rate
            t = max(t, b)
        return t + left / rate + 2.0 * self.lag_s + 1e-6

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
        """:meth:`_sync` outside a wake-up (stops, restarts, commands), timed."""
        w0 = self._clock()
        self._sync(now)
        self._clocked(w0)

    def _catch_up(self) -> None:
        """Scan up to the last wake-up if that wake-up did not (before a state change)."""
        if self._scanned < self._last_wake:
            w0 = self._clock()
            if self._synced < self._last_wake:
                self._sync(self._last_wake)
            self._scan(self._last_wake)
            self._clocked(w0)

    def _sync(self, now: float) -> None:
        """Advance every feeder to ``now`` and push their flows into the predictors: the
        component predictor at every breakpoint of any feeder's piecewise-constant flow, the lot
        predictor whenever a hopper's lot composition changes (it carries each lot's share of
        the feeder's set-point flow, so feed noise does not enter the lot split); then the
        present flows, assumed to persist until the next sync replaces them. The feeders'
        segments arrive as arrays (:class:`~darkfab.factory.feeder.FeedBlock`); the rates at
        all breakpoints are found by binary search and pushed as one matrix."""
        stations = self.stations
        feeds = []
        simple = True  # every feeder one block
        for st in stations:
            blocks = st.feeder.advance_blocks(now)
            if not blocks:
                feeds.append(None)
                simple = False
            elif len(blocks) == 1:
                b0 = blocks[0]
                feeds.append((b0.starts, b0.ends, b0.rates, blocks, None))
            else:
                simple = False
                feeds.append((np.concatenate([b.starts for b in blocks]),
                              np.concatenate([b.ends for b in blocks]),
                              np.concatenate([b.rates for b in blocks]), blocks,
                              np.cumsum([b.starts.size for b in blocks])))
        # the common case: every feeder gravimetric on the same noise-cell grid up to now
        # (compared as Python lists: a few elements, cheaper than numpy comparisons)
        f0 = feeds[0]
        same = False
        if simple:
            s0, e0 = f0[0].tolist(), f0[1].tolist()
            same = e0[-1] == now and s0[1:] == e0[:-1] and all(
                f[0].tolist() == s0 and f[1].tolist() == e0 for f in feeds[1:])
        if same:
            cuts = f0[0]  # every start is a cut, and no end before now that is not a start
        else:
            live = [f for f in feeds if f is not None]
            if live:
                cuts = np.unique(np.concatenate([x for f in live for x in f[:2]]))
                cuts = cuts[cuts < now]
            else:
                cuts = _NO_TIMES
        # the present flows (noise cell at now), assumed to persist until the next sync
        comp_now = np.zeros(len(self.comp.channels))
        key = [-1] * len(stations)
        for k, st in enumerate(stations):
            f = st.feeder
            r = f.current_rate_kg_s()
            if r <= 0.0:
                continue
            comp_now[self._comp_col[k]] += r
            key[k] = f.composition
        if same and all(min(f[2].tolist()) > 0.0 for f in feeds):
            # every feeder feeds from one hopper composition at every cut: the lot predictor
            # changes at most at the first cut
            comp = np.zeros((cuts.size + 1, len(self.comp.channels)))
            comp[-1] = comp_now
            for k, f in enumerate(feeds):
                comp[:-1, self._comp_col[k]] += f[2]
            self.comp.push_many(np.append(cuts, now), comp)
            key0 = tuple(f[3][0].composition for f in feeds)
            if key0 != self._lots_key:
                self._push_lots(float(cuts[0]), {
                    (k, lot): x / f[2][0] for k, f in enumerate(feeds)
                    for lot, x in f[3][0].lots_at(0).items()})
            self._lots_key = key0
        elif cuts.size:
            self._sync_cuts(now, feeds, cuts, comp_now, same)
        else:
            self.comp.push_many([now], comp_now[None, :])
        key_t = tuple(key)
        if key_t != self._lots_key:
            self._lots_key = key_t
            self._push_lots(now, {(k, lot): x for k in range(len(stations)) if key[k] >= 0
                                  for lot, x in stations[k].feeder.hopper_fractions().items()})
        if self._lot_pushes:
            self._flush_lots()
        self._synced = now

    def _sync_cuts(self, now: float, feeds: list, cuts: np.ndarray, comp_now: np.ndarray,
                   same: bool) -> None:
        """:meth:`_sync` at the breakpoints ``cuts`` (< now) when the feeders' segments do not
        share one grid or one hopper composition (a refill: a new composition every noise cell):
        each feeder's rate and composition at every cut by binary search over its segments,
        the component flows pushed as one matrix, lot flows wherever a composition changes.
        Python lists and floats (a handful of cuts and segments per sync): the same additions
        in the same order as an array form, so the same values."""
        cl = cuts.tolist()
        m = len(cl)
        nst = len(self.stations)
        comp = [[0.0] * len(comp_now) for _ in range(m)]
        keys = [[-1] * nst for _ in range(m)]
        rows: list[list[int] | None] = []
        offl: list[list[int] | None] = []
        for k, f in enumerate(feeds):
            if f is None:
                rows.append(None)
                offl.append(None)
                continue
            starts, ends, rates, blocks, offs = f
            col = self._comp_col[k]
            rl = rates.tolist()
            ol = None if offs is None else offs.tolist()
            offl.append(ol)
            c0 = blocks[0].composition
            comps = [b.composition for b in blocks]
            nb = len(blocks)
            if same:  # segment j of every feeder starts at cut j (one block each)
                for j in range(m):
                    r = rl[j]
                    comp[j][col] += r
                    if r > 0:
                        keys[j][k] = c0
                rows.append(None)
                continue
            sl, el = starts.tolist(), ends.tolist()
            n = len(sl)
            ics = []
            for j, c in enumerate(cl):
                i = bisect.bisect_right(el, c)  # the first segment ending after c
                ic = i if i < n - 1 else n - 1
                cov = i < n and sl[ic] <= c
                r = rl[ic] if cov else 0.0
                comp[j][col] += r
                if cov and r > 0:
                    keys[j][k] = c0 if ol is None else comps[
                        min(bisect.bisect_right(ol, ic), nb - 1)]
                ics.append(ic)
            rows.append(ics)
        comp.append(comp_now.tolist())
        self.comp.push_many(np.append(cuts, now), np.array(comp))
        prev = list(self._lots_key)
        for j in range(m):
            kj = keys[j]
            if kj == prev:
                continue
            prev = kj
            fractions: dict[tuple[int, Hashable], float] = {}
            for k, f in enumerate(feeds):
                if kj[k] < 0:
                    continue
                blocks, ol = f[3], offl[k]
                i = j if rows[k] is None else rows[k][j]
                bi = 0 if ol is None else bisect.bisect_right(ol, i)
                blk = blocks[bi]
                ii = i - (0 if bi == 0 else ol[bi - 1])
                rate = blk.rates[ii]
                for lot, x in blk.lots_at(ii).items():
                    fractions[(k, lot)] = x / rate
            self._push_lots(cl[j], fractions)
        self._lots_key = tuple(keys[-1])

    def _push_lots(self, t: float, fractions: dict[tuple[int, Hashable], float]) -> None:
        """Lot flows = set-point flow × hopper fraction (called when they change), collected
        during a sync and pushed by :meth:`_flush_lots` in one call."""
        flows: dict[Hashable, float] = {}
        for (k, lot), x in fractions.items():
            slot = self._slot(lot, t)
            flows[slot] = flows.get(slot, 0.0) + self.stations[k].setpoint_kg_s * x
        self._lot_pushes.append((t, flows))

    def _flush_lots(self) -> None:
        """Push the lot flows collected by :meth:`_push_lots` (a refill changes the hopper
        composition at every noise cell): one ``push_many`` gives the predictor the same
        segments as one ``push`` each, so the same outputs."""
        pushes = self._lot_pushes
        if len(pushes) == 1:
            self.lots.push(*pushes[0])
        elif pushes:
            self.lots.push_many([t for t, _ in pushes], [f for _, f in pushes])
        pushes.clear()

    def _slot(self, lot: Hashable, now: float) -> int:
        """Predictor channel for ``lot``: channels are reused once their lot has left every
        hopper and the line (bounded cost over a year of refills)."""
        s = self._slot_of.get(lot)
        if s is None:
            live = {lt for st in self.stations for lt in st.feeder.lots}
            horizon = now - self.rtd.tail_s - self.lots.retain_s
            for slot, old in sorted(self._slot_lot.items()):
                if old not in live and self._slot_seen.get(slot, 0.0) < horizon:
                    del self._slot_of[old]
                    self.lot_potency.pop(old, None)  # it has left the line: no content to correct
                    s = slot
                    break
            if s is None:
                s = len(self._slot_lot)
            self._slot_of[lot], self._slot_lot[s] = s, lot
        self._slot_seen[s] = now
        return s

    # --- quality: scan, divert, route -------------------------------------------------------
    def _content(self, y: np.ndarray) -> np.ndarray:
        """API content (fraction of label claim) of the output rows ``y`` (kg/s per channel);
        NaN where the flow is below ``min_flow_fraction`` of nominal."""
        tot = y.sum(axis=1)
        thr = self.quality_spec.min_flow_fraction * self.nominal_kg_s
        api = y[:, self._api_idx[0]] if len(self._api_idx) == 1 else \
            y[:, self._api_idx].sum(axis=1)
        if thr > 0:  # dividing by NaN where the flow is too low: no 0/0
            return api / np.where(tot >= thr, tot, np.nan) / self.api_share
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(tot >= thr, api / tot / self.api_share, np.nan)

    def _scan(self, now: float, route_until: float | None = None,
              ahead: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        """Book diversion windows for the elapsed interval: model-predicted content and flow out
        of spec, and out-of-spec PAT readings available by now. The scan grid, the PAT sample
        times and (with ``route_until``) the audit grid of the output to be routed next, up to
        ``route_until``, are evaluated in one predictor call (Brent's refinement of a crossing
        evaluates single points). ``ahead``: rows of the feed since the last sync
        (:meth:`_ahead_rows`; the reference mode's scans between syncs)."""
        q = self.quality_spec
        a = max(self._scanned, self.comp.valid_from)
        scan = now > a
        step = self._scan_step_s  # the output cannot vary faster: its RTD smooths it
        sensor = self.sensor
        ts = scan_grid(a, now, step) if scan else _NO_TIMES
        pat_ts = (sensor.sample_times(now - sensor.p.delay_s) if scan and sensor is not None
                  else _NO_TIMES)
        r0 = self._routed
        audit = route_until is not None and route_until > r0
        au_ts = scan_grid(r0, route_until, step) if audit else _NO_TIMES
        if not (scan or audit):
            return
        n1, n2 = ts.size, ts.size + pat_ts.size
        all_t = np.concatenate([ts, pat_ts, au_ts])
        out = self.comp.output if ahead is None else (
            lambda t: self.comp.output_with(t, *ahead))
        y = out(all_t)
        c_all = self._content(y)
        if n2 < all_t.size or pat_ts.size:  # what the sensor and the audit see
            true = self._true_content(all_t[n1:], c_all[n1:])
        if audit:
            self._audit_samples = (r0, route_until, au_ts, y[n2:].sum(axis=1), true[n2 - n1:])
        if not scan:
            return
        g = lambda ts: self._content(out(ts))  # noqa: E731
        going_on, self._oos_going_on = self._oos_going_on, False
        for lo, hi in out_of_spec_intervals(g, a, now, q.spec_low, q.spec_high, step,
                                            xtol_s=1e-3, values=c_all[:n1], grid=ts):
            cause, more = self._cause(lo), ""
            if going_on and lo <= a:  # the excursion under way at the last scan goes on
                more = " (continued)"
            else:
                self.oos_events += 1
                if cause == "refill":
                    self.refill_deviations += 1
            going_on = False
            self.gate.add_window(lo - q.margin_s, hi + q.margin_s, cause)
            self.model.log.record(now, "divert", self.name, -1, "", self.node,
                                  f"{cause}{more} [{lo:.3f}, {hi:.3f}]")
            if hi >= now:
                self._oos_going_on = True
        if pat_ts.size:
            x_pat = true[:n2 - n1]  # NaN: flow too low to read
            readable = np.isfinite(x_pat)
            t_s, t_av, val = sensor.measure_array(x_pat, notify=self._apart)
            lost = np.isnan(val)
            self.pat_samples += int(readable.sum())
            self.pat_dropouts += int((readable & lost).sum())
            with np.errstate(invalid="ignore"):
                oos = readable & ~lost & ((val < q.spec_low) | (val > q.spec_high))
            for i in np.flatnonzero(oos).tolist():  # in sample order
                if not self.gate.is_diverting(float(t_av[i])):
                    self.pat_alarms += 1
                    self.model.log.record(now, "pat_alarm", self.name, -1, "",
                                          self.node, f"{float(val[i]):.4f} at "
                                          f"{float(t_s[i]):.1f}")
                # back to the last good reading: that material has not reached the
                # gate yet (lag_s ≥ period + delay)
                self.gate.add_window(float(t_s[i]) - sensor.p.period_s,
                                     float(t_av[i]) + q.pat_hold_s, "pat")
        self._scanned = now

    def _cause(self, t: float) -> str:
        """Why the output at ``t`` left spec: the line stopped or restarting, a refill in the
        RTD's reach (its volumetric feed drifts), or another disturbance (feed noise)."""
        if not self.running:
            return "stop"
        if t < self._restarted + self.rtd.tail_s:
            return "start-up"
        lag = self.rtd.tail_s
        while self._refill_windows and self._refill_windows[0][1] < t - 2 * lag:
            self._refill_windows.popleft()
        if any(a <= t and b >= t - lag for a, b in self._refill_windows) or any(
                st.refill_from is not None and st.refill_from <= t for st in self.stations):
            return "refill"
        return "disturbance"

    def _route(self, until: float) -> None:
        """Send the output up to ``until`` to accepted or diverted by the gate's windows (the
        masses between all window boundaries from one predictor evaluation)."""
        a = self._routed
        if until <= a:
            return
        cuts = sorted({a, until, *(x for w in self.gate.windows for x in w[:2] if a < x < until)})
        masses = self.comp.output_masses(cuts)
        tots = masses.sum(axis=1).tolist()
        apis = (masses[:, self._api_idx[0]] if len(self._api_idx) == 1
                else masses[:, self._api_idx].sum(axis=1)).tolist()
        acc_mask = np.zeros(len(cuts) - 1, dtype=bool)
        for k, (x, y) in enumerate(zip(cuts[:-1], cuts[1:])):
            tot = tots[k]
            self.output_kg += tot
            cause = self.gate.cause_at(0.5 * (x + y))
            if cause is None:
                self.accepted_kg += tot
                self.api_accepted_kg += apis[k]
                if self._pending_kg <= 0:
                    self._pending_from = x
                self._pending_kg += tot
                self._pending_api_kg += apis[k]
                self.batch.accepted_kg += tot
                self.accepting_s += y - x
                acc_mask[k] = True
            else:
                self.q.by_cause[cause] = self.q.by_cause.get(cause, 0.0) + tot
                self.diverting_s += y - x
        if acc_mask.any():
            self._audit(cuts, acc_mask)
        self._routed = until
        self.gate.prune(until)

    def _audit(self, cuts: list[float], accepted: np.ndarray) -> None:
        """Independent check of accepted material: the content sampled every σ/10 over the
        routed interval [cuts[0], cuts[-1]] (its own grid, not the scan's; evaluated with the
        scan, :meth:`_scan`); the mass of every sample that falls in accepted material
        (the pieces between ``cuts`` with ``accepted`` set) and is outside spec
        (or at too low a flow) is booked as released out of spec (sample flow × grid step).
        The control strategy should keep this at zero."""
        q = self.quality_spec
        smp = self._audit_samples
        self._audit_samples = None
        if smp is None or smp[0] != cuts[0] or smp[1] != cuts[-1]:  # not sampled by the scan
            ts = scan_grid(cuts[0], cuts[-1], self._scan_step_s)
            y = self.comp.output(ts)
            smp = (cuts[0], cuts[-1], ts, y.sum(axis=1),
                   self._true_content(ts, self._content(y)))
        _, _, ts, flow, c = smp
        bad = ~((c >= q.spec_low - 1e-9) & (c <= q.spec_high + 1e-9))
        if not bad.any():
            return
        piece = np.clip(np.searchsorted(cuts, ts, side="right") - 1, 0, len(cuts) - 2)
        bad &= accepted[piece]
        if bad.any():
            dt = (cuts[-1] - cuts[0]) / (ts.size - 1)
            self.released_oos_kg += float(flow[bad].sum()) * dt
            self.released_oos_samples += int(bad.sum())

    def _horizon(self, now: float) -> float:
        """The latest time of the next due wake-up (:meth:`_quality_due`) as known now."""
        h = self._full_at + self.control_interval_s
        if self.running:
            h = min(h, self._unit_eta)
        if self.batch_s:
            h = min(h, self.batch.start_s + self.batch_s)
        return h

    def _ahead_rows(self, h: float) -> tuple[np.ndarray, np.ndarray]:
        """The component flows from the last sync up to ``h`` that the feeders will deliver with
        no further command (:meth:`LossInWeightFeeder.projected_blocks`), as rows for
        :meth:`RTDPredictor.output_with`: breakpoints and flows per channel."""
        t0 = self._synced
        if self._one_cell_grid:  # the usual case: every feeder gravimetric since the sync
            cells = []
            for st in self.stations:
                c = st.feeder.projected_cells(h)
                if c is None or c[0][0] != t0:
                    break
                cells.append(c)
            else:  # every feeder's edges: the same cell period (frozen parameters), start, end
                edges = cells[0][0]
                comp = np.zeros((edges.size - 1, len(self.comp.channels)))
                for k, c in enumerate(cells):
                    comp[:, self._comp_col[k]] += c[1]
                return edges[:-1], comp
        cuts_l: list[np.ndarray] = [np.array([t0])]
        rates = []
        for st in self.stations:
            blocks = st.feeder.projected_blocks(h)
            if blocks:
                a = np.concatenate([blk.starts for blk in blocks])
                b = np.concatenate([blk.ends for blk in blocks])
                rates.append((a, b, np.concatenate([blk.rates for blk in blocks])))
                cuts_l += [a, b]
            else:
                rates.append(None)
        # every feeder's rate at every breakpoint (a refill, feed pending since the sync)
        cuts = np.unique(np.concatenate(cuts_l))
        cuts = cuts[(cuts >= t0) & (cuts < h)]
        comp = np.zeros((cuts.size, len(self.comp.channels)))
        for k, r in enumerate(rates):
            if r is None:
                continue
            a, b, x = r
            i = np.minimum(np.searchsorted(b, cuts, side="right"), a.size - 1)
            comp[:, self._comp_col[k]] += np.where(a[i] <= cuts, x[i], 0.0) * (b[i] > cuts)
        return cuts, comp

    def _project(self, now: float) -> None:
        """Schedule the next exit from spec as a wake-up at its computed time: the content predicted
        from the feed the feeders will deliver with no further command (their own dynamics: noise
        cells, refills ending, hoppers running down; :meth:`LossInWeightFeeder.projected_blocks`)
        from the last sync up to the next due wake-up (:meth:`_horizon`), scanned as :meth:`_scan`
        scans the elapsed interval (σ/10 grid, crossings refined to 1e-3 s). An excursion under way
        now was booked by the last scan (if not, the exit is now); the first one that begins later
        is the exit. Run at every due wake-up and whenever the feed changes by command (a refill
        starting, a stop, a restart: ``_reproject``), so every instant is covered by a projection
        made before it. The feeders are synced only at due wake-ups and commands, each followed by
        a projection, so the projected feed is the feed the next sync pushes (exactly, or to
        rounding in gravimetric mode) and the exit is where the next scan finds it."""
        self._exit_at = math.inf
        self._reproject = False
        h = self._horizon(now)
        if not h > now:
            return
        cuts, comp = self._ahead_rows(h)
        q = self.quality_spec

        def g(ts: np.ndarray) -> np.ndarray:
            return self._content(self.comp.output_with(ts, cuts, comp))

        ts = scan_grid(now, h, self._scan_step_s)
        v = g(ts)
        if clear_of_limits(v, q.spec_low, q.spec_high):
            return
        ok = (v >= q.spec_low) & (v <= q.spec_high)  # NaN: flow too low, out of spec
        if not ok[0] and not self._oos_going_on and self._scanned < now:
            # out of spec now and not booked by the last scan: scan now (a due wake-up)
            self._exit_at = now
            return
        j = int(np.argmax(ok))  # past an excursion under way now
        if not ok[j]:
            return
        bad = np.flatnonzero(~ok[j:])
        k = j + int(bad[0]) if bad.size else ts.size - 1
        # refine only up to the first sample out of spec (and narrower excursions before it)
        for lo, _hi in out_of_spec_intervals(g, float(ts[j]), float(ts[k]), q.spec_low,
                                             q.spec_high, self._scan_step_s, xtol_s=1e-3,
                                             values=v[j:k + 1], grid=ts[j:k + 1]):
            if lo > now:
                self._exit_at = lo + 1e-3  # the scan then sees it out of spec
                break

    # --- feeders and refills ----------------------------------------------------------------
    def _feeder_events(self, now: float) -> None:
        for st in self.stations:
            f = st.feeder
            if (st.held_unit is not None and not st.refill_blocked) or (
                    st._get is not None and st._get.triggered) or (
                    st._next is not None and st._next[0] <= now + 1e-9):
                w0 = self._clock()
                f.advance_state(now)  # its event is due: the hopper now
                self._clocked(w0)
            if st.held_unit is not None and not st.refill_blocked:  # a refill failure cleared
                unit, st.held_unit = st.held_unit, None
                self._refill(st, unit, now)
            if st._get is not None and st._get.triggered:  # a container arrived
                unit = st._get.value
                st._get = None
                self._refill(st, unit, now)
            if st._next is None or st._next[0] > now + 1e-9:
                continue
            kind = st._next[1]
            st._next = None
            if kind == "low" and st._get is None and f.mode == "gravimetric":
                st.waiting_since = now
                self.model.log.record(now, "hopper_low", st.name, -1, "", self.node,
                                      f"{f.mass_kg:.3f} kg")
                ev = st.refill_dock.get()
                if ev.triggered:
                    st._get = None
                    self._refill(st, ev.value, now)
                else:
                    st._get = ev
                    ev.callbacks.append(self._kick)
            elif kind == "refill_done":
                self._refill_windows.append((st.refill_from if st.refill_from is not None
                                             else now, now))
                st.refill_from = None
                # older refills can no longer explain a deviation (_cause): keep the deque short
                while self._refill_windows[0][1] < self._scanned - 2 * self.rtd.tail_s:
                    self._refill_windows.popleft()
                self.model.log.record(now, "refill_done", st.name, -1, "", self.node,
                                      f"{f.mass_kg:.3f} kg")
            elif kind == "empty" or f.mode == "starved":
                if self.running:
                    self._stop(now, SUSPENDED, f"{st.name} empty")
        self._maybe_restart(now, "refilled")

    def _maybe_restart(self, now: float, why: str) -> None:
        if (not self.running and self._repair_until == math.inf and not self._blocked
                and all(st.feeder.mode != "starved" for st in self.stations)):
            self._restart(now, why)

    def _refill(self, st: FeederStation, unit, now: float) -> None:
        if st.refill_blocked:  # the refill fails: the container waits at the feeder
            st.held_unit = unit
            st._next = None
            self.model.log.record(now, "alarm", st.name, unit.id, unit.product, self.node,
                                  "refill_failed")
            self._notify("alarm", f"{st.name}: refill_failed")
            return
        potency = self.next_potency.pop(st.name, None)
        if potency is not None:
            self.lot_potency[unit.lot] = potency
            self._notify("oos_lot", str(unit.lot))
        f = st.feeder
        mass = st.container_kg(unit.product)
        w0 = self._clock()
        f.start_refill(now, mass, st.refill_rate_kg_s, unit.lot)
        self._clocked(w0)
        st.refills += 1
        st.delivered_kg += mass
        st._next = None
        st.waiting_since = None
        st.refill_from = now
        self._reproject = True
        m = self.model
        m.log.record(now, "refill", st.name, unit.id, unit.product, self.node, unit.lot)
        m.unit_consumed(now, unit)

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
                return
        if not self.running and now >= self._repair_until - 1e-9:
            name, self._repair_name = (self._repair_name
                                       or self.failures[self._fail_i].name), None
            done = "maintenance_done" if name == "maintenance" else "repair"
            self.model.log.record(now, done, self.name, -1, "", self.node, name)
            self._repair_until = math.inf
            self._maybe_restart(now, "repaired")
            if not self.running and name == "maintenance":  # starved or blocked meanwhile
                self.timer.change(now, SUSPENDED)

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
        for st in self.stations:
            st._next = None
            st.feeder.set_setpoint(now, 0.0)  # a refill under way finishes at its frozen speed
        self._timed_sync(now)
        self._reproject = True
        self.timer.change(now, state)
        self.model.log.record(now, "line", self.name, -1, "", self.node, f"{state}: {reason}")
        if self.listeners:
            self._notify("state", state)

    def _restart(self, now: float, why: str) -> None:
        self._catch_up()  # causes of what left spec before now: before this restart
        self._timed_sync(now)  # feed up to now into the predictors before the set-points change
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
        if self.listeners:
            self._notify("state", EXECUTE)

    # --- punch wear and maintenance ----------------------------------------------------------
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
        self.model.log.record(now, "fault", self.name, -1, "", self.node, "punch breakage")

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

    # --- fault campaign hooks ---------------------------------------------------------------
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
        self._kick()

    def set_refill_blocked(self, feeder: str, blocked: bool) -> None:
        """Refills of ``feeder`` fail (``True``) or work again."""
        st = next(x for x in self.stations if x.name == feeder)
        st.refill_blocked = blocked
        if not blocked:
            self._kick()

    def _true_content(self, ts: np.ndarray, c: np.ndarray) -> np.ndarray:
        """The true API content at ``ts`` given the model's ``c``: lots with a potency other
        than 1 (``lot_potency``) carry (1 − potency) × their mass less API than the model
        (which knows only the feeders' mass flows) assumes."""
        if not self.lot_potency:
            return c
        idx = {k: i for i, k in enumerate(self.lots.channels)}
        y = self.lots.output(ts)
        tot = y.sum(axis=1)
        short = np.zeros_like(tot)
        for lot, p in self.lot_potency.items():
            i = idx.get(self._slot_of.get(lot, -1))
            if i is not None:
                short += (1.0 - p) * y[:, i]
        with np.errstate(invalid="ignore", divide="ignore"):
            return c - np.where(tot > 0, short / tot, 0.0) / self.api_share

    # --- output units and batches -----------------------------------------------------------
    def _emit_units(self, now: float) -> None:
        m = self.model
        while self._pending_kg >= self.unit_kg + self.qc_kg and not self._blocked:
            a, b = self._pending_from, self._routed
            fractions = self.lot_fractions(max(a, self.lots.valid_from), b)
            unit = m.material.new_unit(self.product, self.batch.id, a)
            c = self._pending_api_kg / self._pending_kg / self.api_share
            self.q.n += 1
            self.q.sum_c += c
            self.q.sum_c2 += c * c
            share = (self.unit_kg + self.qc_kg) / self._pending_kg
            self._pending_api_kg *= 1.0 - share
            self._pending_kg -= self.unit_kg + self.qc_kg
            self.qc_samples_kg += self.qc_kg
            self._pending_from = b
            self.units_out += 1
            self.batch.units += 1
            m.units_entered(now, 1)
            for lot, frac in sorted(fractions.items(), key=lambda kv: str(kv[0])):
                m.genealogy.append(now, unit.id, self.product, -1, str(lot), self.name,
                                   frac * self.unit_kg, frac)
            for fn in self.unit_listeners:  # quality records (darkfab.agents.quality)
                fn(self, unit, fractions, c)
            m.log.record(now, "create", self.name, unit.id, self.product, self.emit.name,
                         self.batch.id)
            if not self.emit.try_put(unit):
                ev = self.emit.put(unit)
                if not ev.triggered:
                    # the output is full: the line is blocked until the unit goes in
                    self._blocked = True
                    if self.running:
                        self._stop(now, SUSPENDED, "blocked")
                    ev.callbacks.append(self._unblocked)
                    return

    def _unblocked(self, _ev) -> None:
        self._blocked = False
        self._maybe_restart(self.env.now, "unblocked")
        self._kick()

    def lot_fractions(self, a: float, b: float) -> dict[Hashable, float]:
        """Mass fraction of each raw-material lot in the output leaving in [a, b] (s), for
        times within the retained history (the last ``control_interval_s`` + margins; a unit's
        lots are written to genealogy.parquet when it is made)."""
        if b <= a:
            return {}
        w0 = self._clock()
        fr = self.lots.lot_fractions(a, b)
        self._clocked(w0)
        return {self._slot_lot[s]: x for s, x in fr.items()}

    def _close_batch(self, now: float) -> None:
        b = self.batch
        self.batches.append({"batch": b.id, "start_s": b.start_s, "end_s": now,
                             "accepted_kg": b.accepted_kg, "units": b.units})
        self.model.log.record(now, "batch", self.name, -1, "", self.node,
                              f"{b.id}: {b.accepted_kg:.3f} kg, {b.units} units")
        self.batch = _Batch(self.model.material.new_lot(f"{self.name}-batch"), now)

    # --- end of run -------------------------------------------------------------------------
    def finish(self, now: float) -> None:
        w0 = self._clock()
        self._sync(now)
        self._scan(now, route_until=now)
        self._route(now)
        self._clocked(w0)
        self.timer.finish(now)

    def kpis(self, end: float) -> dict:
        """Line KPIs over the whole run (start-up included): tablets, API content of the units
        made, state of control, diversion by cause, refills, PAT, mass balance."""
        w = self.tablet.weight_kg
        q = self.q
        mean = q.sum_c / q.n if q.n else math.nan
        var = (q.sum_c2 - q.n * mean * mean) / (q.n - 1) if q.n > 1 else math.nan
        diverted = sum(q.by_cause.values())
        batches = self.batches + [{"batch": self.batch.id, "start_s": self.batch.start_s,
                                   "end_s": end, "accepted_kg": self.batch.accepted_kg,
                                   "units": self.batch.units, "open": True}]
        t = self.tablet
        return {
            "line_rate_kg_h": self.nominal_kg_s * 3600.0,
            "tablets_produced": self.output_kg / w,
            "tablets_accepted": (self.accepted_kg - self.qc_samples_kg) / w,
            "tablets_diverted": diverted / w,
            "qc_sample_tablets": self.qc_samples_kg / w,
            "units_out": self.units_out,
            "api_content_mean_pct": 100.0 * mean,
            "api_content_accepted_pct": 100.0 * self.api_accepted_kg / self.accepted_kg
            / self.api_share if self.accepted_kg > 0 else math.nan,
            "api_content_rsd_pct": 100.0 * math.sqrt(max(var, 0.0)) / mean if q.n > 1 else math.nan,
            "state_of_control_fraction": self.accepting_s / end if end > 0 else math.nan,
            "diverted_kg": diverted,
            "released_out_of_spec_kg": self.released_oos_kg,
            "released_out_of_spec_samples": self.released_oos_samples,
            "diverted_kg_by_cause": dict(sorted(q.by_cause.items())),
            "out_of_spec_events": self.oos_events,
            "refills": {st.name: st.refills for st in self.stations},
            # what a container still held when the hopper reached its high level (returned)
            "container_leftover_kg": {
                st.name: st.delivered_kg - st.feeder.refilled_kg - st.feeder.refill_leftover_kg
                for st in self.stations},
            "refill_induced_deviations": self.refill_deviations,
            "line_stops": self.stops,
            "time_in_state_s": dict(sorted(self.timer.time_s.items())),
            "pat": {"samples": self.pat_samples, "dropouts": self.pat_dropouts,
                    "alarms": self.pat_alarms},
            "tablet": {"weight_mg": t.weight_kg * 1e6, "relative_density": t.rel_density,
                       "porosity": t.porosity, "thickness_mm": t.thickness_m * 1e3,
                       "tensile_strength_mpa": t.tensile_strength_pa / 1e6,
                       "breaking_force_n": t.breaking_force_n},
            "rtd": {"mean_s": self.rtd.mean_s, "std_s": self.rtd.std_s,
                    "tail_s": self.rtd.tail_s, "blender_mean_s": self.blender_rtd.mean_s},
            "batches": batches,
            "mass_balance": self.mass_balance(end),
            "continuous_model_wall_s": self.continuous_wall_s,
            "continuous_model_cpu_s": self.continuous_cpu_s,
            **({"punch_wear": self.maintenance_kpis(end)} if self.wear is not None else {}),
        }

    def mass_balance(self, now: float) -> dict[str, float]:
        """fed = accepted + diverted + hold-up + QC samples (kg) and the relative error."""
        fed = sum(st.feeder.fed_kg for st in self.stations)
        holdup = float(self.comp.holdup(now).sum())
        diverted = sum(self.q.by_cause.values())
        out = self.accepted_kg + diverted
        err = fed - (out + holdup)
        return {"fed_kg": fed, "accepted_kg": self.accepted_kg - self.qc_samples_kg,
                "diverted_kg": diverted, "holdup_kg": holdup, "qc_samples_kg": self.qc_samples_kg,
                "rel_error": abs(err) / fed if fed > 0 else 0.0}
