"""Elaboration: turn a validated scenario into a wired plant, then start its processes.

This is the one place that wires the layers together (factory → agents → control).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from darkfab.agents.line import ContinuousLine, FeederStation, LineFailure, QualitySpec
from darkfab.agents.line.calibration_log import CalibrationLog, TracerProgramme, TracerStep
from darkfab.agents.line.release import BatchRelease, ReleaseRules
from darkfab.agents.equipment import Equipment, FailureMode, Transform
from darkfab.agents.flow import Router, Sink, Source
from darkfab.agents.quality import Containment, QualityRecords
from darkfab.agents.model import PlantModel
from darkfab.agents.orders import Order, OrderBook, OrderStream
from darkfab.agents.robot import Amr, AmrSpec, RobotArm, StallMode
from darkfab.control import Controller, make_controller
from darkfab.control.fleet import FleetManager
from darkfab.control.traffic import Lane
from darkfab.factory.battery import Battery
from darkfab.factory.feeder import FeederParams, LossInWeightFeeder
from darkfab.factory.pat import NirSensor, NirSensorParams
from darkfab.factory.wear import PunchWear, WearParams
from darkfab.factory.pat_alarm import PatAlarmRule
from darkfab.factory.weight_control import ForceGauge
from darkfab.factory.level_control import LevelPI, simc_level_tuning
from darkfab.factory.unit_operations import unit_operation
from darkfab.factory.occupancy import Occupancy, lane_key
from darkfab.factory.transport_activity import TransportActivity
from darkfab.factory.recorder import (LINE_UNITS_SCHEMA, LOAD_CELLS_SCHEMA, NIR_READINGS_SCHEMA,
                                      TRANSPORT_SCHEMA, TableWriter)
from darkfab.factory.transport import Staging
from darkfab.factory.buffers import Buffer
from darkfab.factory.distributions import make_sampler
from darkfab.factory.kpis import TimeAverage
from darkfab.factory.packml import State
from darkfab.factory.random_streams import RandomStreams

from .batch_records import RECORDS_FILE, BatchRecordChain
from .control_loop import ControlLoop
from .line_models import line_models, true_line_rtds
from .schema import ContinuousLineSpec, OrderBookSpec, Scenario, transport_hops
from .twin_build import needs_twin, wire_twin

__all__ = ["Plant", "build_plant", "line_models"]


@dataclass
class Plant:
    scenario: Scenario
    model: PlantModel
    buffers: dict[str, Buffer]
    buffer_levels: dict[str, TimeAverage]
    sources: dict[str, Source]
    sinks: dict[str, Sink]
    equipment: dict[str, Equipment]
    controller: object
    fleet: FleetManager | None = None
    robots: dict[str, Amr] = field(default_factory=dict)
    arms: dict[str, RobotArm] = field(default_factory=dict)
    staging: dict[str, Staging] = field(default_factory=dict)
    lines: dict[str, ContinuousLine] = field(default_factory=dict)
    started: bool = field(default=False)
    control: ControlLoop | None = None  # set by start()
    faults: object = None  # the FaultCampaign, set by start()
    order_books: dict[str, OrderBook] = field(default_factory=dict)
    quality: QualityRecords | None = None  # lot records of continuous lines, set by start()
    containment: Containment | None = None  # lot disposition at product sinks, set by start()
    transport: TransportActivity | None = None  # active periods of fleet, lanes and chargers

    def start(self) -> None:
        """Start every process (after the whole tree is wired)."""
        env = self.model.env
        for src in self.sources.values():
            src.start()
        for book in self.order_books.values():
            book.start()
        for eq in self.equipment.values():
            eq.start_processes()
        self.quality = QualityRecords(self.model, self.lines) if self.lines else None
        self.containment = Containment(self.model, self.sinks, self.sources, self.quality)
        self.control = ControlLoop.for_plant(self)
        self.control.start()
        if self.fleet is not None:
            self.fleet.start()
        for line in self.lines.values():
            env.process(line.run())
        from .faults import FaultCampaign
        self.faults = FaultCampaign(self)
        self.faults.start()
        self.started = True


def build_plant(s: Scenario, seed: int, replication: int, out_dir: Path, run_id: str,
                batch_rows: int = 65_536, check_invariants: bool = False,
                controller: Controller | None = None) -> Plant:
    """The plant of ``s``, wired; ``controller``: the instance to use (default: the scenario's
    registered controller, built from ``controller.name`` and ``params``)."""
    streams = RandomStreams(seed, replication)
    warmup = s.scenario.warmup_s
    interval = s.scenario.series_interval_s or s.scenario.horizon_s / 500.0
    model = PlantModel(s.graph(), streams, out_dir, run_id, warmup, interval, batch_rows,
                       alarm_options=s.alarms.model_dump())

    def sampler(name, spec):
        return spec.sampler(name, streams.stream(name))

    def uniform(name):
        return make_sampler(name, "uniform", {"low": 0.0, "high": 1.0}, streams.stream(name))

    fleet = _build_fleet(s, model, out_dir, run_id, replication, batch_rows, check_invariants)
    hops = transport_hops(s) if fleet is not None else []
    destinations = {b for _, _, b in hops}
    buffers, levels = {}, {}
    for name, b in s.buffers.items():
        lvl = TimeAverage(warmup)
        levels[name] = lvl
        on_level = lvl.update
        if name in destinations:
            on_level = _notify_space(lvl, fleet, buffers, name)
        buffers[name] = Buffer(model.env, name, b.node, b.capacity_units, on_level=on_level)
    staging: dict[str, Staging] = {}
    remote: dict[tuple[str, str], Staging] = {}
    for origin, node, dest in hops:
        st = Staging(model.env, origin, node, buffers[dest], s.fleet.staging_capacity_units,
                     fleet.on_staged)
        staging[st.name] = st
        remote[(origin, dest)] = st

    def to(origin: str, target: str):
        """Where ``origin`` puts a unit for ``target``: a staging area if a robot carries it."""
        return remote.get((origin, target)) or buffers.get(target) or sinks[target]

    sinks = {name: Sink(model, name, k.node, good=k.kind == "product") for name, k in
             s.sinks.items()}
    sources = {}
    for name, src in s.sources.items():
        products, choice = _product_choice(src.product, src.product_mix,
                                           f"sources.{name}.product_mix", uniform)
        sources[name] = Source(model, name, src.node, to(name, src.to),
                               sampler(f"sources.{name}.interarrival", src.interarrival),
                               products, choice, src.lot_size_units, src.max_units)
    arms = {name: RobotArm(model, name, a.node,
                           a.cycle_time.sampler(f"arms.{name}.cycle_time",
                                                streams.stream(f"arms.{name}.cycle_time")))
            for name, a in s.arms.items()}
    arm_of = {e: arms[name] for name, a in s.arms.items() for e in a.equipment}
    equipment = {}
    for name, e in s.equipment.items():
        p = f"equipment.{name}"
        branches = e.branches()
        router = Router([to(name, target) for target, _ in branches],
                        [pr for _, pr in branches], uniform(f"{p}.next") if len(branches) > 1
                        else None, names=[target for target, _ in branches])
        failures = [FailureMode(f.name, sampler(f"{p}.failures.{f.name}.time_to_failure",
                                                f.time_to_failure),
                                sampler(f"{p}.failures.{f.name}.repair_time", f.repair_time),
                                f.reaction) for f in e.failures]
        equipment[name] = Equipment(
            model, name, e.node, buffers[e.input], sampler(f"{p}.process_time", e.process_time),
            router, servers=e.servers, batch_size=e.batch_size_units,
            ideal_cycle_time_s=e.ideal_cycle_time_s,
            transform=Transform(e.output.product, e.output.units, e.output.container)
            if e.output else None,
            changeover=sampler(f"{p}.changeover", e.changeover) if e.changeover else None,
            reject_probability=e.reject_probability,
            reject_to=sinks[e.reject_to] if e.reject_to else None,
            reject_draw=uniform(f"{p}.reject") if e.reject_probability > 0 else None,
            failures=failures,
            acting_state_s={State(k.capitalize()): v for k, v in e.acting_state_s.items()},
            disabled_states={m: [State(x) for x in v] for m, v in e.disabled_states.items()},
            arm=arm_of.get(name),
        )
    unit_table = None
    if s.continuous_lines:  # the IPC sample of every unit of tablets
        unit_table = TableWriter(out_dir / "line_units.parquet", LINE_UNITS_SCHEMA, run_id,
                                 replication, batch_rows)
        model.extra_writers.append(unit_table)
    lines = {name: _build_line(s, name, spec, model, streams, buffers, to(name, spec.output),
                               unit_table)
             for name, spec in s.continuous_lines.items()}
    _calibration_logs(s, lines, model, out_dir, run_id, replication, batch_rows)
    records = None  # the electronic batch records of every line: one chain per run
    for name, spec in s.continuous_lines.items():
        r = spec.release
        if r is None:
            continue
        if r.records and records is None:
            records = BatchRecordChain(out_dir / RECORDS_FILE, run_id)
            model.extra_writers.append(records)
        lines[name].set_release(BatchRelease(
            name, spec.product,
            ReleaseRules(r.test, r.sample_size, r.target_pct, r.k, r.c1, r.c2,
                         r.investigate_diverted_pct, tuple(r.investigate_alarm_priorities)),
            streams.stream(f"continuous_lines.{name}.release.sample"), model.alarms,
            records.append if r.records and records is not None else None))
    on_request = {f.refill_from for spec in s.continuous_lines.values()
                  for f in spec.feeders.values() if f.refill_request == "controller"}
    for st in staging.values():  # refills planned by the controller: robots wait to be asked
        st.on_request = st.destination.name in on_request
    books = {name: _build_order_book(s, name, spec, model, to(name, spec.to), uniform)
             for name, spec in s.order_books.items()}
    if controller is None:
        controller = make_controller(s.controller.name, s.controller.params)
    robots = {r.name: r for r in fleet.robots} if fleet is not None else {}
    transport = watch_transport(s, fleet, model) if fleet is not None else None
    return Plant(s, model, buffers, levels, sources, sinks, equipment, controller, fleet,
                 robots, arms, staging, lines, order_books=books, transport=transport)


def watch_transport(s: Scenario, fleet: FleetManager, model: PlantModel) -> TransportActivity:
    """Follow the active periods of the fleet, its lanes and chargers (bottleneck detection,
    :mod:`darkfab.factory.transport_activity`)."""
    occ, env = fleet.occ, model.env
    crossings = {("node", n) for n, spec in s.nodes.items() if spec.role in ("waypoint", "holding")}
    lanes = {k: c for k, c in occ.capacity.items() if k[0] == "lane" or k in crossings}
    chargers = sorted(n for n, spec in s.nodes.items() if spec.role == "charger")
    act = TransportActivity(model.warmup_s, [r.name for r in fleet.robots], lanes, chargers)
    for r in fleet.robots:
        r.subscribe(lambda robot, _kind, state: act.robot_state(env.now, robot.name, state,
                                                                robot.node))
    occ.subscribe(act.holders, lanes)
    fleet.subscribe_tasks(lambda task, what: act.trip(
        env.now, f"{task.staging.origin} → {task.staging.destination.name}",
        what == "requested"))
    return act


def _calibration_logs(s: Scenario, lines: dict[str, ContinuousLine], model: PlantModel,
                      out_dir: Path, run_id: str, replication: int, batch_rows: int) -> None:
    """The lines' sensor data for calibration (``nir_readings.parquet``, ``load_cells.parquet``,
    one table each for every line) and their tracer experiments."""
    specs = s.continuous_lines
    nir = cells = None
    if any(sp.pat is not None and sp.logging.nir for sp in specs.values()):
        nir = TableWriter(out_dir / "nir_readings.parquet", NIR_READINGS_SCHEMA, run_id,
                          replication, batch_rows)
        model.extra_writers.append(nir)
    if any(sp.logging.load_cells for sp in specs.values()):
        cells = TableWriter(out_dir / "load_cells.parquet", LOAD_CELLS_SCHEMA, run_id,
                            replication, batch_rows)
        model.extra_writers.append(cells)
    for name, sp in specs.items():
        lg, line = sp.logging, lines[name]
        if (sp.pat is not None and lg.nir) or lg.load_cells:
            line.calibration_log = CalibrationLog(
                line, nir if sp.pat is not None and lg.nir else None,
                cells if lg.load_cells else None, lg.load_cells_s if lg.load_cells else None)
        if sp.tracer:
            TracerProgramme(line, [TracerStep(t.time_s, t.feeder or sp.api_feeder(), t.kind,
                                              t.size_pct, t.duration_s) for t in sp.tracer])


def order_book_work(s: Scenario, spec: OrderBookSpec) -> tuple[float, float]:
    """Work per released unit and mean changeover time (s) of an order book: the given
    ``work_s_per_unit``, or the mean process time per unit and server of the equipment fed by
    its buffer; the changeover is that equipment's mean changeover (0 if none)."""
    eq = next((e for e in s.equipment.values() if e.input == spec.to), None)
    work = spec.work_s_per_unit
    if work is None:
        assert eq is not None  # the schema asks for work_s_per_unit otherwise
        work = _mean(eq.process_time) / (eq.batch_size_units * eq.servers)
    change = _mean(eq.changeover) if eq is not None and eq.changeover is not None else 0.0
    return float(work), float(change)


def _product_choice(product: str | None, mix: dict[str, float] | None, stream: str,
                    uniform) -> tuple[list[str], Router | None]:
    """The products of a source and how one is drawn: fixed, or by the mix's weights from
    the uniform stream ``stream``."""
    if product is not None:
        return [product], None
    products = list(mix or {})
    return products, Router(products, list((mix or {}).values()),  # type: ignore[arg-type]
                            uniform(stream))


def _mean(dist) -> float:
    """The mean of a distribution spec (a throw-away generator: no named stream is used)."""
    return dist.sampler("mean", np.random.Generator(np.random.PCG64(0))).mean


def _build_order_book(s: Scenario, name: str, spec: OrderBookSpec, model: PlantModel, to,
                      uniform) -> OrderBook:
    streams = model.streams
    p = f"order_books.{name}"
    work, change = order_book_work(s, spec)
    stream = None
    a = spec.arrivals
    if a is not None:
        products, choice = _product_choice(a.product, a.product_mix,
                                           f"{p}.arrivals.product_mix", uniform)
        rng = streams.stream(f"{p}.arrivals.quantity")
        lo, hi = a.quantity_min_units, a.quantity_max_units
        stream = OrderStream(
            a.interarrival.sampler(f"{p}.arrivals.interarrival",
                                   streams.stream(f"{p}.arrivals.interarrival")),
            lambda: int(rng.integers(lo, hi + 1)), products, choice, a.due_allowance,
            a.max_orders)
    script = [Order(o.id, o.product, o.quantity, o.arrival_s, o.due_s, o.weight)
              for o in spec.orders]
    return OrderBook(model, name, spec.node, to, script=script, stream=stream,
                     work_s_per_unit=work, changeover_s=change,
                     max_orders_in_process=spec.max_orders_in_process)


def _build_line(s: Scenario, name: str, spec: ContinuousLineSpec, model: PlantModel,
                streams: RandomStreams, buffers: dict[str, Buffer], emit,
                unit_table: TableWriter | None = None) -> ContinuousLine:
    """A continuous line from its spec: the press sets the mass flow, the recipe the feeders'
    set-points; the line RTD is the blender's in series with the press feed frame's."""
    p = f"continuous_lines.{name}"
    if spec.mismatch.scale != 1.0:  # the plant the scaled mismatch describes (docs/twin.md)
        spec = spec.model_copy(update={"mismatch": spec.mismatch.scaled()})
    ps = spec.press
    press, blender, line_rtd = line_models(spec)
    model_rtds = None
    if needs_twin(spec):  # the plant runs on the true RTD, the soft sensor on the nominal one
        model_rtds, (blender, line_rtd) = (blender, line_rtd), true_line_rtds(spec)
    flow = press.mass_flow_kg_s
    stations = []
    for fname, f in spec.feeders.items():
        params = FeederParams(f.ff_max_kg_rev, f.ff_min_kg_rev, f.beta_per_kg, f.low_level_kg,
                              f.high_level_kg, f.noise_sd, f.noise_corr, f.noise_period_s)
        feeder = LossInWeightFeeder(
            params, streams.stream(f"{p}.feeders.{fname}.noise"),
            mass_kg=f.high_level_kg if f.initial_kg is None else f.initial_kg,
            setpoint_kg_s=f.mass_fraction * flow, lot=f"{name}-{fname}-initial",
            residual_lot=f"{name}-{fname}-older-lots",
            purge_fraction=spec.lot_trace_min_fraction)
        stations.append(FeederStation(
            fname, f.component, feeder, f.mass_fraction * flow, buffers[f.refill_from],
            f.refill_rate_kg_s, lambda prod: s.products[prod].mass_kg))
    sensor = None
    if spec.pat is not None:
        pa = spec.pat
        sensor = NirSensor(NirSensorParams(
            period_s=pa.period_s, noise_sd=pa.noise_sd, delay_s=pa.delay_s,
            dropout_prob=pa.dropout_probability,
            drift_start_s=math.inf if pa.drift_start_s is None else pa.drift_start_s,
            drift_rate_per_s=pa.drift_per_h / 3600.0,
            sampling_rsd=pa.sampling_rsd_1g_pct / 100.0 / math.sqrt(pa.sample_mass_g),
            bias=pa.bias_pct / 100.0, bias_rate_per_s=pa.drift_pct_per_day / 100.0 / 86400.0),
            streams.stream(f"{p}.pat"))
    q = spec.quality
    quality = QualitySpec(q.spec_low_pct / 100.0, q.spec_high_pct / 100.0, q.min_flow_pct / 100.0,
                          q.margin_s, q.pat_hold_s, q.startup_divert_s,
                          q.guard_band_pct / 100.0)
    failures = [LineFailure(f.name,
                            f.time_to_failure.sampler(f"{p}.failures.{f.name}.time_to_failure",
                                                      streams.stream(f"{p}.failures.{f.name}"
                                                                     ".time_to_failure")),
                            f.repair_time.sampler(f"{p}.failures.{f.name}.repair_time",
                                                  streams.stream(f"{p}.failures.{f.name}"
                                                                 ".repair_time")))
                for f in spec.failures]
    line = ContinuousLine(
        model, name, spec.node, stations, blender, line_rtd, press,
        ps.compaction_pressure_mpa * 1e6, sensor, quality, emit, spec.product,
        spec.tablets_per_unit, spec.batch_hours * 3600.0 if spec.batch_hours else None,
        spec.batch_kg, failures, spec.control_interval_s,
        spec.qc_tablets_per_unit, spec.blender.speed_rpm,  # the plant's (true) speed law
        spec.blender.speed_exponent + spec.mismatch.blender_speed_exponent_delta)
    if model_rtds is not None:
        wire_twin(line, spec, streams, p, *model_rtds)
    lp = spec.loops
    line.set_regulation(
        ForceGauge(press, press.tablet_weight_kg, ps.compaction_pressure_mpa * 1e6),
        press.fill_depth_m, ps.fill_density_kg_m3, ps.weight_rsd_pct / 100.0, ps.ipc_tablets,
        streams.stream(f"{p}.press.ipc"), streams.stream(f"{p}.press.force"),
        {"kp": lp.weight_kp, "ti_s": lp.weight_ti_s, "period_s": lp.weight_period_s,
         "deadband": lp.weight_deadband_pct / 100.0} if lp.weight_control else None,
        [(d.time_s, d.bulk_density_factor) for d in spec.disturbances], unit_table)
    ins = spec.instruments
    if ins.force_noise_pct > 0 or ins.force_bias_pct != 0:
        line.set_force_gauge(ins.force_noise_pct / 100.0, ins.force_bias_pct / 100.0,
                             streams.stream(f"{p}.press.force_gauge"))
    if spec.pat is not None and spec.pat.alarm_rule != "single":
        line.pat_rule = PatAlarmRule(spec.pat.alarm_rule, quality.spec_low, quality.spec_high,
                                     spec.pat.alarm_k, spec.pat.alarm_n)
    for kind, section in spec.unit_operations.items():  # registered unit operations
        line.add_unit_operation(kind, unit_operation(kind).build(section, line))
    hp = spec.press_hopper
    loop = None
    if hp.level_control:
        kc, ti = ((hp.kc_per_h / 3600.0, hp.ti_s) if hp.kc_per_h is not None
                  else simc_level_tuning(hp.tau_c_s, hp.period_s))
        lo, hi = line.line_setpoints["line_rate_kg_h"].low, line.line_setpoints[
            "line_rate_kg_h"].high
        loop = LevelPI(hp.setpoint_kg, kc, ti, hp.period_s, hp.deadband_kg, lo / 3600.0,
                       hi / 3600.0)
    line.set_press_hopper(hp.capacity_kg, hp.setpoint_kg, hp.low_alarm_kg, hp.high_alarm_kg,
                          loop, hp.initial_kg)
    if lp.api_trim:
        line.set_api_trim(lp.api_trim_gain, lp.api_trim_max_pct / 100.0)
    if ps.wear is not None:
        w = ps.wear
        line.set_wear(PunchWear(
            WearParams(w.shape_per_h, w.scale, w.threshold, w.step_h, w.force_per_wear_kn,
                       w.noise_sd_kn),
            streams.stream(f"{p}.press.wear"),
            streams.stream(f"{p}.press.wear.measurement") if w.noise_sd_kn > 0 else None),
            w.maintenance_h * 3600.0, w.breakage_repair_h * 3600.0,
            w.inspection_interval_h * 3600.0)
    return line


def _notify_space(lvl: TimeAverage, fleet: FleetManager, buffers: dict, name: str):
    def on_level(now: float, level: int) -> None:
        lvl.update(now, level)
        fleet.on_space(buffers[name])
    return on_level


def _build_fleet(s: Scenario, model: PlantModel, out_dir: Path, run_id: str, replication: int,
                 batch_rows: int, check_invariants: bool) -> FleetManager | None:
    f = s.fleet
    if f is None:
        return None
    streams = model.streams
    lanes, directed, lane_cap = [], {}, {}
    for link in s.links:
        if link.conveyor:
            continue
        key = lane_key(link.a, link.b, link.directed)
        if key in lane_cap:  # a second link between the same nodes widens the lane
            lane_cap[key] += link.capacity_robots
            continue
        lane_cap[key] = link.capacity_robots
        directed[key] = link.directed
        lanes.append(Lane(key, link.a, link.b, s.link_length(link),
                          link.speed_limit_m_s or float("inf")))
    occupancy = Occupancy(model.env, {n: spec.capacity_robots for n, spec in s.nodes.items()},
                          lane_cap)
    writer = TableWriter(out_dir / "transport.parquet", TRANSPORT_SCHEMA, run_id, replication,
                         batch_rows)
    model.extra_writers.append(writer)
    chargers = sorted(n for n, spec in s.nodes.items() if spec.role == "charger")
    spots = sorted(n for n, spec in s.nodes.items() if spec.role in ("parking", "holding"))
    fleet = FleetManager(model.env, lanes, directed, occupancy, chargers, spots,
                         allocation=f.task_allocation, traffic=f.traffic == "reservations",
                         charge_below_soc=f.charge_below_soc,
                         charge_target_soc=f.charge_target_soc,
                         opportunistic_below_soc=f.opportunistic_below_soc,
                         check_invariants=check_invariants, transport_writer=writer,
                         warmup_s=s.scenario.warmup_s)
    robots = []
    for i in range(f.count):
        name = f"amr-{i + 1}"
        p = f"fleet.{name}"
        spec = AmrSpec(
            f.speed_empty_m_s, f.speed_loaded_m_s, f.payload_units,
            f.payload_kg if f.payload_kg is not None else float("inf"),
            f.load_time.sampler(f"{p}.load_time", streams.stream(f"{p}.load_time")),
            f.unload_time.sampler(f"{p}.unload_time", streams.stream(f"{p}.unload_time")),
            tuple(StallMode(m.name,
                            m.time_to_failure.sampler(f"{p}.stalls.{m.name}.ttf",
                                                      streams.stream(f"{p}.stalls.{m.name}.ttf")),
                            m.recovery_time.sampler(f"{p}.stalls.{m.name}.recovery",
                                                    streams.stream(f"{p}.stalls.{m.name}.recovery")))
                  for m in f.stalls))
        b = f.battery
        battery = Battery(b.capacity_kwh, b.initial_soc * b.capacity_kwh,
                          b.consumption_empty_kwh_per_m, b.consumption_loaded_kwh_per_m,
                          b.base_kw, b.charging_kw, model.env.now)
        robots.append(Amr(model, name, f.homes[i], spec, battery, occupancy, fleet))
    fleet.attach(robots)
    fleet.unit_mass_kg = {p: spec.mass_kg for p, spec in s.products.items()}
    return fleet
