"""The Arrow schemas of a run's results tables (``events.parquet``, ``states.parquet``, …) and
the columns written dictionary-encoded. Every table starts with ``run_id`` and ``replication``
(constant per run). Written by :mod:`darkfab.factory.recorder`; read back by the reports, the
view, the verification and ``darkfab recover``."""

from __future__ import annotations

import pyarrow as pa

__all__ = [
    "EVENTS_SCHEMA", "STATES_SCHEMA", "GENEALOGY_SCHEMA", "KPIS_SCHEMA", "TIMESERIES_SCHEMA",
    "TRANSPORT_SCHEMA", "ALARMS_SCHEMA", "LINE_UNITS_SCHEMA", "NIR_READINGS_SCHEMA",
    "LOAD_CELLS_SCHEMA", "DICTIONARY_COLUMNS",
]

_RUN = [pa.field("run_id", pa.string(), nullable=False),
        pa.field("replication", pa.int32(), nullable=False)]

EVENTS_SCHEMA = pa.schema(_RUN + [
    pa.field("time_s", pa.float64(), nullable=False),
    pa.field("kind", pa.string(), nullable=False),
    pa.field("entity", pa.string(), nullable=False),
    pa.field("unit_id", pa.int64(), nullable=False),  # -1 when the event concerns no unit
    pa.field("product", pa.string(), nullable=False),
    pa.field("location", pa.string(), nullable=False),
    pa.field("detail", pa.string(), nullable=False),
])
"""Event log. ``kind`` is one of: create, load, consume, produce, unload, complete, scrap, state,
command, command_rejected, fault, repair, changeover, mode, controller_fault (the controller raised:
detail is the cause), alarm / alarm_acknowledged / alarm_cleared (written by the alarm system,
:mod:`darkfab.factory.alarms`: entity is the alarm's source; location is its priority, or who
acknowledged it; detail ``"<condition>: <text>"`` when raised, else the condition), tracer (a
calibration tracer's set-point change, :mod:`darkfab.agents.line.calibration_log`). Units in
the plant at any time =
create + produce − consume − complete − scrap so far."""

STATES_SCHEMA = pa.schema(_RUN + [
    pa.field("entity", pa.string(), nullable=False),
    pa.field("state", pa.string(), nullable=False),
    pa.field("start_s", pa.float64(), nullable=False),
    pa.field("end_s", pa.float64(), nullable=False),
    pa.field("duration_s", pa.float64(), nullable=False),
])
"""State intervals: one row per PackML state (and per equipment condition) interval."""

GENEALOGY_SCHEMA = pa.schema(_RUN + [
    pa.field("time_s", pa.float64(), nullable=False),
    pa.field("child_id", pa.int64(), nullable=False),
    pa.field("child_product", pa.string(), nullable=False),
    pa.field("parent_id", pa.int64(), nullable=False),
    pa.field("parent_lot", pa.string(), nullable=False),
    pa.field("equipment", pa.string(), nullable=False),
    # continuous lines: mass and mass fraction of each raw-material lot in the child (null for
    # discrete parents, which are whole units)
    pa.field("mass_kg", pa.float64(), nullable=True),
    pa.field("mass_fraction", pa.float64(), nullable=True),
])

TIMESERIES_SCHEMA = pa.schema(_RUN + [
    pa.field("start_s", pa.float64(), nullable=False),
    pa.field("end_s", pa.float64(), nullable=False),
    pa.field("wip_mean", pa.float64(), nullable=False),
    pa.field("completed", pa.int64(), nullable=False),
])
"""Plant WIP (time average) and completions per bucket of ``series_interval_s``."""

TRANSPORT_SCHEMA = pa.schema(_RUN + [
    pa.field("task_id", pa.int64(), nullable=False),
    pa.field("origin", pa.string(), nullable=False),
    pa.field("destination", pa.string(), nullable=False),
    pa.field("pickup_node", pa.string(), nullable=False),
    pa.field("drop_node", pa.string(), nullable=False),
    pa.field("units", pa.int64(), nullable=False),
    pa.field("requested_s", pa.float64(), nullable=False),
    pa.field("assigned_s", pa.float64(), nullable=False),   # -1: not yet
    pa.field("picked_up_s", pa.float64(), nullable=False),
    pa.field("delivered_s", pa.float64(), nullable=False),
    pa.field("robot", pa.string(), nullable=False),
    pa.field("status", pa.string(), nullable=False),
])
"""Transport tasks: one row per task when delivered, or at the end of the run if still open."""

ALARMS_SCHEMA = pa.schema(_RUN + [
    pa.field("id", pa.int64(), nullable=False),  # 1, 2, 3 ... in order of raising
    pa.field("source", pa.string(), nullable=False),
    pa.field("condition", pa.string(), nullable=False),
    pa.field("priority", pa.string(), nullable=False),  # critical, high, medium or low
    pa.field("text", pa.string(), nullable=False),
    pa.field("raised_s", pa.float64(), nullable=False),
    pa.field("acknowledged_s", pa.float64(), nullable=True),  # null: never acknowledged
    pa.field("acknowledged_by", pa.string(), nullable=True),
    pa.field("cleared_s", pa.float64(), nullable=True),  # null: still active at the end
])
"""Alarm records (ISA-18.2, :mod:`darkfab.factory.alarms`): one row per alarm, written when it
clears (rows are in order of clearing), or at the end of the run if it is still active."""

LINE_UNITS_SCHEMA = pa.schema(_RUN + [
    pa.field("line", pa.string(), nullable=False),
    pa.field("unit_id", pa.int64(), nullable=False),
    pa.field("batch", pa.string(), nullable=False),
    pa.field("time_s", pa.float64(), nullable=False),  # when the unit was made
    pa.field("tablets", pa.float64(), nullable=False),  # its mass / its mean tablet weight
    pa.field("weight_mean_mg", pa.float64(), nullable=False),
    pa.field("weight_rsd_pct", pa.float64(), nullable=True),
    pa.field("weight_min_mg", pa.float64(), nullable=False),
    pa.field("weight_max_mg", pa.float64(), nullable=False),
    pa.field("content_mean_pct", pa.float64(), nullable=False),  # API, % of label claim
    pa.field("content_rsd_pct", pa.float64(), nullable=True),
    pa.field("content_min_pct", pa.float64(), nullable=False),
    pa.field("content_max_pct", pa.float64(), nullable=False),
])
"""In-process control of a continuous line's units of tablets: the IPC sample of each unit
(:mod:`darkfab.agents.line.regulation`), one row per unit."""

NIR_READINGS_SCHEMA = pa.schema(_RUN + [
    pa.field("line", pa.string(), nullable=False),
    pa.field("sample_s", pa.float64(), nullable=False),  # when the material was sensed
    pa.field("available_s", pa.float64(), nullable=False),  # when the reading was known
    pa.field("flow_time_s", pa.float64(), nullable=False),  # the line's flow time θ at sample_s
    pa.field("api_content", pa.float64(), nullable=True),  # fraction of label claim; null: lost
])
"""A continuous line's NIR readings (one row per sample, :mod:`darkfab.agents.line.calibration_log`).
``flow_time_s`` is the throughput time of :mod:`darkfab.factory.flow_clock` (clock time while
the line runs at its nominal rate; it stands still while the line is paused)."""

LOAD_CELLS_SCHEMA = pa.schema(_RUN + [
    pa.field("line", pa.string(), nullable=False),
    pa.field("feeder", pa.string(), nullable=False),
    pa.field("time_s", pa.float64(), nullable=False),
    pa.field("flow_time_s", pa.float64(), nullable=False),
    pa.field("event", pa.string(), nullable=False),  # sample, setpoint, refill, refill_done, ...
    pa.field("mode", pa.string(), nullable=False),  # gravimetric, refill, starved
    pa.field("hopper_mass_kg", pa.float64(), nullable=False),
    pa.field("setpoint_kg_s", pa.float64(), nullable=False),
    pa.field("screw_speed_rev_s", pa.float64(), nullable=False),
    pa.field("flow_kg_s", pa.float64(), nullable=False),  # measured feed rate
])
"""A continuous line's feeder load cells: one row per feeder at every set-point change, refill
start and end, and every ``logging.load_cells_s`` when asked for
(:mod:`darkfab.agents.line.calibration_log`)."""

KPIS_SCHEMA = pa.schema(_RUN + [
    pa.field("scope", pa.string(), nullable=False),   # "plant" or an equipment/buffer name
    pa.field("kpi", pa.string(), nullable=False),
    pa.field("value", pa.float64(), nullable=True),
    pa.field("unit", pa.string(), nullable=False),
])

DICTIONARY_COLUMNS = frozenset({
    "run_id", "replication", "kind", "entity", "product", "location", "state",
    "child_product", "equipment", "origin", "destination", "pickup_node", "drop_node", "robot",
    "status", "scope", "kpi", "unit", "source", "condition", "priority", "acknowledged_by",
    "feeder", "event", "mode",
})
"""Columns with few distinct values (names, kinds, states), written dictionary-encoded in every
table; the others (times, ids, ``detail``, ``parent_lot``, values) are written plain."""
