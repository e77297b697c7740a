"""Elaboration: turn a validated scenario into a wired plant, then start its processes.

This is the one place that wires the layers together (factory → agents → control).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from darkfab.agents.equipment import Equipment, FailureMode, Transform
from darkfab.agents.flow import Router, Sink, Source
from darkfab.agents.model import PlantModel
from darkfab.control import make_controller
from darkfab.factory.buffers import Buffer
from darkfab.factory.distributions import make_sampler
from darkfab.factory.kpis import TimeAverage
from darkfab.factory.packml import State
from darkfab.factory.random_streams import RandomStreams

from .schema import Scenario

__all__ = ["Plant", "build_plant"]


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
    started: bool = field(default=False)

    def start(self) -> None:
        """Start every process (after the whole tree is wired)."""
        env = self.model.env
        for src in self.sources.values():
            env.process(src.run())
        for eq in self.equipment.values():
            eq.start_processes()
        self.controller.reset(env, list(self.equipment.values()))  # type: ignore[attr-defined]
        self.started = True


def build_plant(s: Scenario, seed: int, replication: int, out_dir: Path, run_id: str,
                batch_rows: int = 65_536) -> Plant:
    streams = RandomStreams(seed, replication)
    warmup = s.scenario.warmup_s
    interval = s.scenario.series_interval_s or s.scenario.horizon_s / 500.0
    model = PlantModel(s.graph(), streams, out_dir, run_id, warmup, interval, batch_rows)

    def sampler(name, spec):
        return spec.sampler(name, streams.stream(name))

    def uniform(name):
        return make_sampler(name, "uniform", {"low": 0.0, "high": 1.0}, streams.stream(name))

    buffers, levels = {}, {}
    for name, b in s.buffers.items():
        lvl = TimeAverage(warmup)
        levels[name] = lvl
        buffers[name] = Buffer(model.env, name, b.node, b.capacity_units, on_level=lvl.update)
    sinks = {name: Sink(model, name, k.node, good=k.kind == "product") for name, k in
             s.sinks.items()}
    sources = {}
    for name, src in s.sources.items():
        if src.product is not None:
            products, choice = [src.product], None
        else:
            mix = src.product_mix or {}
            products = list(mix)
            choice = Router(products, list(mix.values()),  # type: ignore[arg-type]
                            uniform(f"sources.{name}.product_mix"))
        sources[name] = Source(model, name, src.node, buffers[src.to],
                               sampler(f"sources.{name}.interarrival", src.interarrival),
                               products, choice, src.lot_size_units, src.max_units)
    equipment = {}
    for name, e in s.equipment.items():
        p = f"equipment.{name}"
        branches = e.branches()
        router = Router([buffers.get(to) or sinks[to] for to, _ in branches],
                        [pr for _, pr in branches], uniform(f"{p}.next") if len(branches) > 1
                        else None)
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
        )
    controller = make_controller(s.controller.name, s.controller.decision_latency_s)
    return Plant(s, model, buffers, levels, sources, sinks, equipment, controller)
