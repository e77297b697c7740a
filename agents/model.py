"""The plant model: SimPy clock + Mesa agent registry + plant graph + result recorders.

``model.alarms`` is the plant's alarm system (:class:`~darkfab.factory.alarms.AlarmSystem`,
ISA-18.2): every alarm source raises and clears its alarms there; it writes ``alarms.parquet``
and the ``alarm`` / ``alarm_acknowledged`` / ``alarm_cleared`` rows of the event log.

SimPy's ``Environment`` is the only clock; the Mesa ``Model`` only registers agents
(``model.agents``) and carries the ``Network`` space built over the networkx plant graph.
"""

from __future__ import annotations

import mesa
import networkx as nx
import simpy
from mesa.discrete_space import Network

from darkfab.factory.alarms import AlarmSystem
from darkfab.factory.kpis import LogHistogram, TimeAverage, Timeseries
from darkfab.factory.material import LotCounter, MaterialFactory, Unit
from darkfab.factory.random_streams import RandomStreams
from darkfab.factory.recorder import (ALARMS_SCHEMA, GENEALOGY_SCHEMA, STATES_SCHEMA,
                                      TIMESERIES_SCHEMA, EventLog, TableWriter)

__all__ = ["PlantModel"]


class PlantModel(mesa.Model):
    """Everything the agents share: clock, graph, streams, material ids, logs, alarms, plant
    KPIs. ``alarm_options``: keyword arguments of :class:`~darkfab.factory.alarms.AlarmSystem`
    (flood window and threshold, operator positions, standing-alarm age)."""

    def __init__(self, graph: nx.DiGraph, streams: RandomStreams, out_dir, run_id: str,
                 warmup_s: float, series_interval_s: float,
                 batch_rows: int = 65_536, alarm_options: dict | None = None) -> None:
        # Mesa's own RNG is seeded but never used for model randomness (named streams are).
        super().__init__(seed=streams.seed)
        self.env = simpy.Environment()
        self.graph = graph
        self.network = Network(graph.to_undirected(as_view=True), random=self.random)
        self.streams = streams
        self.run_id = run_id
        self.warmup_s = warmup_s
        rep = streams.replication
        self.log = EventLog(out_dir / "events.parquet", run_id, rep, batch_rows)
        self.states = TableWriter(out_dir / "states.parquet", STATES_SCHEMA, run_id, rep,
                                  batch_rows)
        self.genealogy = TableWriter(out_dir / "genealogy.parquet", GENEALOGY_SCHEMA, run_id,
                                     rep, batch_rows)
        self.series_table = TableWriter(out_dir / "timeseries.parquet", TIMESERIES_SCHEMA,
                                        run_id, rep, batch_rows)
        self.series = Timeseries(series_interval_s, self.series_table)
        self.alarm_table = TableWriter(out_dir / "alarms.parquet", ALARMS_SCHEMA, run_id, rep,
                                       batch_rows)
        self.alarms = AlarmSystem(self.alarm_table, warmup_s=warmup_s, events=self.log,
                                  **(alarm_options or {}))
        self.extra_writers: list[TableWriter] = []
        self.material = MaterialFactory(self._record_genealogy)
        self.wip = TimeAverage(warmup_s)
        self.lead_time = LogHistogram()
        self.units_completed = 0
        self.units_scrapped = 0
        self.lots: LotCounter | None = None  # set by an order book: units left per order lot

    def _record_genealogy(self, now: float, child: Unit, parents, equipment: str) -> None:
        for p in parents:
            self.genealogy.append(now, child.id, child.product, p.id, p.lot, equipment, None,
                                  None)

    # --- material accounting (called by agents) -------------------------------------------
    def units_entered(self, now: float, n: int) -> None:
        self.wip.add(now, n)
        self.series.level(now, self.wip.value)

    def unit_left(self, now: float, unit: Unit, good: bool) -> None:
        if self.lots is not None:
            self.lots.left(unit.lot, now, good)
        self.wip.add(now, -1)
        self.series.level(now, self.wip.value)
        if good:
            self.series.completed(now)
        if now >= self.warmup_s:
            if good:
                self.units_completed += 1
                self.lead_time.add(now - unit.created_s)
            else:
                self.units_scrapped += 1

    def unit_consumed(self, now: float, unit: Unit) -> None:
        """``unit`` is used up as raw material (e.g. a refill container emptied into a feeder):
        it leaves the WIP without counting as completed or scrapped."""
        if self.lots is not None:
            self.lots.left(unit.lot, now, None)
        self.wip.add(now, -1)
        self.series.level(now, self.wip.value)

    def node_cell(self, node: str):
        return self.network[node]

    def close(self) -> None:
        """Flush and close every table (safe to call twice, also after an interruption)."""
        for w in (self.log, self.states, self.genealogy, self.series_table, self.alarm_table,
                  *self.extra_writers):
            w.close()

    def finish(self, end: float) -> None:
        """Close the open intervals and buckets at the end of the run, then the tables."""
        for agent in self.agents:
            finish = getattr(agent, "finish", None)
            if finish is not None:
                finish(end)
        self.series.finish(end)
        self.alarms.finish(end)
        self.close()
