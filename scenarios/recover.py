"""Recover the results of a run that ended abnormally (SIGKILL, the OOM killer, a power cut).

A crash-safe run (every ``darkfab run``; :func:`darkfab.factory.recorder.staging`) writes each
table as an Arrow IPC stream ``<table>.parquet.arrows`` (and, as it goes, a temporary
``.<table>.parquet.tmp``), moves ``<table>.parquet`` into place and deletes the stream when it
closes; ``started.json`` holds the head of the summary until ``summary.json`` is
written. A folder that still has streams is *unfinished*: the run is going on, or it died.

:func:`recover_run` turns every stream of a dead run into its Parquet table (every complete
batch, that is every row up to the run's last flush) and writes a ``summary.json`` marked
``"partial": true`` with ``partial_reason`` "recovered after an abnormal end", the number of
events and the last simulated time (the last event's). The KPI table and ``verification.json``
need the simulated plant and are not written. A stream still locked by a live writer is left
alone (:class:`RecoverError`).

Reading never recovers by itself: ``darkfab report``, ``view`` and ``plot`` refuse an
unfinished folder and name ``darkfab recover`` (:func:`unfinished_message`), because a reader
cannot always tell a dead run from a live one, and a read should not rewrite a folder.
"""

from __future__ import annotations

import json
import re
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from darkfab.agents.orders import ORDERS_SCHEMA
from darkfab.factory.kpis import finite
from darkfab.factory.recorder import (ALARMS_SCHEMA, EVENTS_SCHEMA, GENEALOGY_SCHEMA,
                                      KPIS_SCHEMA, LINE_UNITS_SCHEMA, LOAD_CELLS_SCHEMA,
                                      NIR_READINGS_SCHEMA, STAGE_SUFFIX,
                                      STATES_SCHEMA, TIMESERIES_SCHEMA, TRANSPORT_SCHEMA, compact,
                                      stage_in_use)

__all__ = ["RecoverError", "recover_run", "unfinished_tables", "unfinished_message",
           "RECOVERED_REASON", "STARTED_FILE", "write_json"]

STARTED_FILE = "started.json"
"""Written at the start of a crash-safe run (the head of its summary: scenario, ids, resolved
scenario), deleted once ``summary.json`` is written."""

RECOVERED_REASON = "recovered after an abnormal end"

SCHEMAS: dict[str, pa.Schema] = {
    "events.parquet": EVENTS_SCHEMA, "states.parquet": STATES_SCHEMA,
    "genealogy.parquet": GENEALOGY_SCHEMA, "timeseries.parquet": TIMESERIES_SCHEMA,
    "transport.parquet": TRANSPORT_SCHEMA, "alarms.parquet": ALARMS_SCHEMA,
    "line_units.parquet": LINE_UNITS_SCHEMA, "kpis.parquet": KPIS_SCHEMA,
    "orders.parquet": ORDERS_SCHEMA, "nir_readings.parquet": NIR_READINGS_SCHEMA,
    "load_cells.parquet": LOAD_CELLS_SCHEMA,
}
"""Declared schemas of the tables a run writes: used when a stream lost even its schema."""

_RUN_ID = re.compile(r"^(?P<scenario>.+)-s(?P<seed>\d+)-r(?P<replication>\d+)-[0-9a-f]{8}$")


class RecoverError(ValueError):
    """The folder cannot be recovered (not a run folder, or its run is still writing)."""


def unfinished_tables(folder: Path | str) -> list[Path]:
    """The staging streams left in ``folder`` (empty: nothing to recover)."""
    return sorted(Path(folder).glob(f"*.parquet{STAGE_SUFFIX}"))


def unfinished_message(folder: Path | str) -> str | None:
    """A one-line explanation if ``folder`` has unfinished tables, else ``None``."""
    stages = unfinished_tables(folder)
    if not stages:
        return None
    names = ", ".join(p.name for p in stages[:3]) + (", ..." if len(stages) > 3 else "")
    return (f"{folder}: unfinished run folder ({names}): the run is still going or ended "
            f"abnormally; once it has stopped, run 'darkfab recover {folder}'")


def recover_run(folder: Path | str) -> dict[str, Any]:
    """Recover ``folder`` in place (see the module docstring). Returns a report: ``tables``
    (file name -> rows recovered), ``problems`` (lines), ``summary`` (the summary written, or
    ``None`` if the folder had its summary already) and ``recovered`` (``False``: nothing was
    unfinished)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise RecoverError(f"{folder}: not a folder")
    stages = unfinished_tables(folder)
    live = [p.name for p in stages if stage_in_use(p)]
    if live:
        raise RecoverError(f"{folder}: {', '.join(live)} still written by a live run (it holds "
                           "the lock); stop the run first (Ctrl-C keeps its results)")
    has_summary = (folder / "summary.json").is_file()
    if not stages and not (folder / STARTED_FILE).is_file():
        if has_summary:
            return {"recovered": False, "tables": {}, "problems": [], "summary": None}
        raise RecoverError(f"{folder}: not a darkfab run folder (no summary.json, no "
                           f"{STARTED_FILE}, no *.parquet{STAGE_SUFFIX})")
    for tmp in folder.glob(".*.tmp"):  # a compaction or a JSON write cut short
        tmp.unlink()
    tables: dict[str, int] = {}
    problems: list[str] = []
    for stage in stages:
        final = stage.with_name(stage.name[:-len(STAGE_SUFFIX)])
        rows = _rows_if_readable(final)
        if rows is not None:  # compacted, killed before the stream was deleted
            stage.unlink()
            tables[final.name] = rows
            continue
        try:
            tables[final.name], found = compact(stage, final, schema=SCHEMAS.get(final.name))
        except ValueError as e:
            problems.append(str(e))
            continue
        problems += found
    for p in sorted(folder.glob("*.parquet")):
        if p.name not in tables and _rows_if_readable(p) is None:
            problems.append(f"{p.name}: unreadable and no stream to recover it from (a run "
                            "written without crash safety, flush=None)")
    summary = None
    if not has_summary:
        summary = _partial_summary(folder, tables, problems)
        write_json(folder / "summary.json", summary)
    (folder / STARTED_FILE).unlink(missing_ok=True)
    return {"recovered": True, "tables": tables, "problems": problems, "summary": summary}


def _rows_if_readable(path: Path) -> int | None:
    if not path.is_file():
        return None
    try:
        return pq.ParquetFile(path).metadata.num_rows
    except (pa.ArrowException, OSError):
        return None


def _partial_summary(folder: Path, tables: dict[str, int], problems: list[str]) -> dict:
    """The head of the run's summary (``started.json``, else what the run id tells), the event
    count and the last event's time."""
    head: dict[str, Any] = {}
    started = folder / STARTED_FILE
    if started.is_file():
        try:
            head = json.loads(started.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            problems.append(f"{STARTED_FILE}: not readable ({e})")
    events, last_s = 0, 0.0
    ev = folder / "events.parquet"
    if _rows_if_readable(ev):
        t = pq.read_table(ev, columns=["run_id", "time_s"])
        events = t.num_rows
        last_s = pc.max(t["time_s"]).as_py()
        if "run_id" not in head:
            head["run_id"] = t["run_id"][0].as_py()
    m = _RUN_ID.match(head.get("run_id", ""))
    if m is not None:
        for key in ("scenario", "seed", "replication"):
            head.setdefault(key, m[key] if key == "scenario" else int(m[key]))
    head.setdefault("run_id", folder.name)
    return {**head, "simulated_s": last_s, "partial": True, "partial_reason": RECOVERED_REASON,
            "events": events, "recovered_tables": tables, "recovery_problems": problems,
            "recovered_by": _version()}


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as JSON (non-finite numbers as null) via a temporary file and a rename:
    the file is complete or absent."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(_json_safe(data), indent=2) + "\n")
    tmp.replace(path)


def _json_safe(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_json_safe(v) for v in x]
    return finite(x)


def _version() -> str:
    try:
        return version("darkfab")
    except PackageNotFoundError:  # running from a source tree
        return "0+unknown"
