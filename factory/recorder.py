"""Results tables written to Parquet in batches with explicit pyarrow schemas.

Rows are appended to column lists and flushed to a ``ParquetWriter`` every ``batch_rows`` rows,
so memory stays bounded whatever the horizon; closing (also on an interrupted run) writes the
rest and leaves a readable file. Columns ``run_id`` and ``replication`` are constant per run and
are added at flush time. Only few-valued columns (:data:`DICTIONARY_COLUMNS`) are
dictionary-encoded: for times, ids and free text a dictionary costs time and bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

__all__ = [
    "EVENTS_SCHEMA", "STATES_SCHEMA", "GENEALOGY_SCHEMA", "KPIS_SCHEMA", "TIMESERIES_SCHEMA",
    "TRANSPORT_SCHEMA", "ALARMS_SCHEMA", "LINE_UNITS_SCHEMA", "DICTIONARY_COLUMNS", "TableWriter",
    "EventLog", "write_table",
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
acknowledged it; detail ``"<condition>: <text>"`` when raised, else the condition). Units in
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
})
"""Columns with few distinct values (names, kinds, states), written dictionary-encoded in every
table; the others (times, ids, ``detail``, ``parent_lot``, values) are written plain."""


class TableWriter:
    """Batched, append-only Parquet writer for one schema."""

    def __init__(self, path: Path | str, schema: pa.Schema, run_id: str, replication: int,
                 batch_rows: int = 65_536) -> None:
        self.path = Path(path)
        self.schema = schema
        self._names = [f.name for f in schema][2:]
        self._types = [f.type for f in schema][2:]
        self.columns: list[list] = [[] for _ in self._names]
        self._run_id = run_id
        self._replication = replication
        self._run_scalars = (pa.scalar(run_id, schema.field(0).type),
                             pa.scalar(replication, schema.field(1).type))
        self._batch = batch_rows
        self._writer: pq.ParquetWriter | None = pq.ParquetWriter(
            self.path, schema, compression="zstd", write_statistics=True,
            use_dictionary=[n for n in schema.names if n in DICTIONARY_COLUMNS])
        self.rows_written = 0
        # called with each batch as it is written (an Arrow table): lets a consumer (the
        # verification) see the log once, without reading the file back
        self.batch_listeners: list[Callable[[pa.Table], None]] = []

    def __len__(self) -> int:
        return self.rows_written + len(self.columns[0])

    def append(self, *row) -> None:
        for col, v in zip(self.columns, row):
            col.append(v)
        if len(self.columns[0]) >= self._batch:
            self.flush()

    def flush(self) -> None:
        n = len(self.columns[0])
        if n == 0 or self._writer is None:
            return
        arrays = [pa.repeat(self._run_scalars[0], n), pa.repeat(self._run_scalars[1], n)]
        arrays += [pa.array(c, t) for c, t in zip(self.columns, self._types)]
        table = pa.Table.from_arrays(arrays, schema=self.schema)
        self._writer.write_table(table)
        for fn in self.batch_listeners:
            fn(table)
        self.rows_written += n
        for c in self.columns:
            c.clear()

    def close(self) -> None:
        if self._writer is None:
            return
        self.flush()
        self._writer.close()
        self._writer = None


class EventLog(TableWriter):
    """The event log; ``record`` is on the hot path and appends straight to the column lists."""

    def __init__(self, path: Path | str, run_id: str, replication: int,
                 batch_rows: int = 65_536) -> None:
        super().__init__(path, EVENTS_SCHEMA, run_id, replication, batch_rows)
        (self._t, self._kind, self._entity, self._unit, self._product, self._loc,
         self._detail) = self.columns

    def record(self, t: float, kind: str, entity: str, unit_id: int = -1, product: str = "",
               location: str = "", detail: str = "") -> None:
        self._t.append(t)
        self._kind.append(kind)
        self._entity.append(entity)
        self._unit.append(unit_id)
        self._product.append(product)
        self._loc.append(location)
        self._detail.append(detail)
        if len(self._t) >= self._batch:
            self.flush()


def write_table(path: Path | str, schema: pa.Schema, rows: list[tuple], run_id: str,
                replication: int) -> None:
    """Write a small table in one go (e.g. the KPI table)."""
    w = TableWriter(path, schema, run_id, replication, batch_rows=max(1, len(rows) + 1))
    for r in rows:
        w.append(*r)
    w.close()
