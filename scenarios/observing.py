"""What a controller sees: the :class:`~darkfab.control.Observation` of the plant at one
instant, through an optional sensor model, and the static plant facts behind ``PlantInfo``.

With a :class:`SensorModel`, numeric levels get normal noise and every reading may be lost to
dropout (named random streams ``controller.sensors.noise`` and ``controller.sensors.dropout``,
drawn in the order units, buffers, robots of the observation).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

import numpy as np

from darkfab.control import (AlarmObs, BufferObs, EquipmentInfo, EquipmentObs, Observation,
                             PlantInfo, QualityObs, RobotObs)
from darkfab.control.observation import FeederInfo, FeederObs, LineObs, OrderBookInfo, OrderObs

__all__ = ["SensorModel", "Observer", "plant_info", "material_flow", "feeder_infos"]


class SensorModel:
    """Noise (normal, sd in units) on numeric levels and per-reading dropout."""

    def __init__(self, noise_sd_units: float, dropout_probability: float,
                 noise: np.random.Generator | None, dropout: np.random.Generator | None) -> None:
        self.sd = noise_sd_units
        self.p = dropout_probability
        self._noise = noise
        self._dropout = dropout

    def level(self, x: float) -> float | None:
        if self.p > 0 and self._dropout.random() < self.p:  # type: ignore[union-attr]
            return None
        if self.sd > 0:
            return max(0.0, x + self.sd * self._noise.standard_normal())  # type: ignore[union-attr]
        return x

    def reading(self, x: float) -> float | None:
        """A non-level reading (state of charge): dropout only."""
        if self.p > 0 and self._dropout.random() < self.p:  # type: ignore[union-attr]
            return None
        return x


class Observer:
    """Builds observations of one plant for one control loop.

    Args:
        loop: the :class:`~darkfab.scenarios.control_loop.ControlLoop`; its public plant
            collections (``equipment``, ``buffers``, ``robots``, ``lines``, ``order_books``,
            ``feeders``, ``staging``, ``line_control``) and :meth:`active_faults` are read.
        sensors: the sensor model, or ``None`` for exact readings.
        stations: feeder name → (line, station) of the feeders observed.
        lots: the ``Observation.lots`` view.
    """

    def __init__(self, loop, sensors: SensorModel | None,
                 stations: Mapping[str, tuple[Any, Any]], lots: Any) -> None:
        self.loop = loop
        self.sensors = sensors
        self.stations = dict(stations)
        self.lots = lots

    def line_alarms(self, active: tuple) -> Callable[[str], tuple[str, ...]]:
        """``active``: the active alarms. Returns: line unit → conditions of its active alarms
        in raising order (the line's own name: its own, then its press's)."""
        by_source: dict[str, tuple[str, ...]] = {}
        for a in active:
            by_source[a.source] = by_source.get(a.source, ()) + (a.condition,)
        line_of = self.loop.line_control.line_of

        def conditions(unit: str) -> tuple[str, ...]:
            ln = line_of[unit]
            if unit == ln.name:
                return by_source.get(unit, ()) + by_source.get(ln.press_unit.name, ())
            return by_source.get(unit, ())
        return conditions

    def observe(self) -> Observation:
        """A snapshot of the plant now (through the sensor model, if any)."""
        loop = self.loop
        m = loop.model
        now = loop.env.now
        sens = self.sensors
        lvl: Callable[[float], float | None] = sens.level if sens is not None else _identity
        eq = {}
        for n, e in loop.equipment.items():
            eq[n] = EquipmentObs(n, e.sm.state, e.sm.mode, e.condition.state,
                                 lvl(float(e.input.level)), loop.active_faults(n), e.faults,
                                 e.units_out, e.units_good)
        active = m.alarms.active()
        eq.update(loop.line_control.observe(now, self.line_alarms(active)))
        bufs = {n: BufferObs(n, lvl(float(b.level)),
                             None if math.isinf(b.capacity) else int(b.capacity))
                for n, b in loop.buffers.items()}
        robots = {}
        if loop.robots:
            soc = sens.reading if sens is not None else _identity
            for n, r in loop.robots.items():
                pos = r.node if r.node is not None else f"lane:{r.lane[1]}-{r.lane[2]}"
                robots[n] = RobotObs(n, pos, r.state, soc(r.battery.soc),
                                     None if r.job is None else r.job.kind)
        lines = {}
        for n, ln in loop.lines.items():
            c = ln.condition()
            lines[n] = LineObs(n, ln.timer.state, c["operating_h"], c["force_drift_kn"],
                               c["wear_estimate"], c["rul_h"], c["in_maintenance"])
        orders = {}
        for bn, book in loop.order_books.items():
            for o in book.known.values():
                orders[o.id] = OrderObs(o.id, bn, o.product, o.quantity, o.weight, o.arrival_s,
                                        o.due_s, o.released, o.status, o.release_start_s)
        feeders = {}
        for fn, (ln, st) in self.stations.items():
            f, dock = st.feeder, st.refill_dock
            rate = f.setpoint_kg_s if ln.running and f.mode == "gravimetric" else 0.0
            mass = f.mass_kg if f.mode == "refill" else max(0.0, f.mass_kg - rate * (now - f.t))
            info = loop.feeders[fn]
            sg = loop.staging.get(f"{info.store}->{info.dock}")
            coming = dock.reserved + (sg.requested if sg is not None else 0)
            feeders[fn] = FeederObs(fn, mass, f.p.m_low_kg, f.p.m_high_kg, rate, f.mode,
                                    dock.level + (st.held_unit is not None), coming)
        alarms = {a.id: AlarmObs(a.id, a.source, a.condition, a.priority, a.text, a.raised_s,
                                 a.acknowledged_s is not None) for a in active}
        return Observation(now, MappingProxyType(eq), MappingProxyType(bufs),
                           MappingProxyType(robots),
                           QualityObs(m.units_completed, m.units_scrapped),
                           MappingProxyType(lines), orders=MappingProxyType(orders),
                           feeders=MappingProxyType(feeders), lots=self.lots,
                           alarms=MappingProxyType(alarms))


def plant_info(loop, feeds: Mapping[str, tuple[str, ...]],
               extra: Mapping[str, Any]) -> PlantInfo:
    """The static plant facts of ``loop``'s plant (``feeds``: what feeds what; ``extra``: the
    scenario's extra information for the controller)."""
    eq = {n: EquipmentInfo(n, e.input.name, e.servers, tuple(f.name for f in e.failures),
                           tuple(f.reaction for f in e.failures),
                           routes=tuple(zip(e.router.names, e.router.weights)),
                           alternative_routes=n in loop.alternative_routes,
                           outputs=tuple(x for x in feeds.get(n, ()) if x != n),
                           batch_size=e.batch_size)
          for n, e in loop.equipment.items()}
    eq.update(loop.line_control.equipment_info())
    books = {n: OrderBookInfo(n, b.to.name, b.work_s_per_unit, b.changeover_s,
                              b.max_in_process) for n, b in loop.order_books.items()}
    return PlantInfo(MappingProxyType(eq), tuple(loop.buffers), tuple(loop.robots),
                     tuple(loop.sources), loop.horizon_s, loop.model.warmup_s,
                     loop.model.streams.stream("controller.rng"),
                     MappingProxyType(dict(extra)),
                     order_books=MappingProxyType(books),
                     feeders=MappingProxyType(loop.feeders),
                     feeds=MappingProxyType(dict(feeds)),
                     setpoints=MappingProxyType(loop.line_control.setpoint_info()))


def material_flow(s) -> dict[str, tuple[str, ...]]:
    """What feeds what in scenario ``s`` (see ``PlantInfo.feeds``)."""
    out: dict[str, dict[str, None]] = {}

    def edge(a: str, b: str) -> None:
        out.setdefault(a, {})[b] = None
    for n, src in s.sources.items():
        edge(n, src.to)
    for n, e in s.equipment.items():
        edge(e.input, n)
        for target, _ in e.branches():
            edge(n, target)
        if e.reject_to:
            edge(n, e.reject_to)
    for n, ln in s.continuous_lines.items():
        edge(n, ln.output)
        for f in ln.feeders.values():
            edge(f.refill_from, n)
    return {a: tuple(bs) for a, bs in out.items()}


def feeder_infos(plant) -> dict[str, FeederInfo]:
    """The refill logistics of every feeder of the plant's continuous lines."""
    s = plant.scenario
    out = {}
    for ln, spec in s.continuous_lines.items():
        for fname, f in spec.feeders.items():
            st = next((x for x in plant.staging.values()
                       if x.destination.name == f.refill_from), None)
            store = st.origin if st is not None else ""
            src = s.sources.get(store)
            kg = s.products[src.product].mass_kg if src is not None and src.product else 0.0
            out[f"{ln}.{fname}"] = FeederInfo(f"{ln}.{fname}", ln, f.refill_from, store, kg,
                                              f.refill_request)
    return out


def _identity(x):
    return x
