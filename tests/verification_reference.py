"""Reference for the verification tests: ``darkfab.scenarios.verification`` as of commit 5d4da8c
(before the vectorised command replay and the long waits taken from the state log's batches),
kept verbatim below this docstring apart from it. The row-by-row replay here is the
specification the faster implementation must match: same verdict, same verification.json.
Not part of the package; imported by tests only.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from darkfab.factory.packml import COMMAND_TRANSITIONS, Command, State
# the checks the vectorised scan did not change: shared, not copied
from darkfab.scenarios.verification import _faults, _mass, _oos, _units

__all__ = ["verify", "attach_event_scan"]

_COMMAND_WAIT = frozenset({"Stopped", "Idle", "Held", "Aborted", "Complete"})
_INTERLOCKED = frozenset({"Reset", "Start", "Unhold", "Unsuspend", "Clear"})


def attach_event_scan(plant) -> "_EventScan":
    """Let the verification see every batch of the event log as it is written (call before the
    run): no second pass over events.parquet at the end."""
    scan = _EventScan(plant)
    plant.model.log.batch_listeners.append(scan.add)
    return scan


def verify(plant, summary: dict[str, Any], out: Path, end: float,
           faults: list[dict[str, Any]], scan: "_EventScan | None" = None) -> dict[str, Any]:
    """Check the run's results in ``out`` (tables closed) against the rules above. ``scan``:
    the event log as seen while it was written (:func:`attach_event_scan`); without it the
    log is read back in batches."""
    spec = plant.scenario.verification
    if scan is None:
        scan = _EventScan(plant)
        # one pass over the event log in batches: memory does not grow with the run's length
        for batch in pq.ParquetFile(out / "events.parquet").iter_batches(
                batch_size=65_536, columns=["time_s", "kind", "entity", "unit_id", "location",
                                            "detail"]):
            scan.add(batch)
    checks = {
        "deadlock": _deadlock(plant, out, scan.excusals, faults, spec.deadlock_bound_s, end),
        "out_of_spec_released": _oos(summary),
        "unsafe_commands": scan.unsafe_report(),
        "faults": _faults(faults),
        "unit_balance": _units(plant, scan),
        "mass_balance": _mass(summary, spec.mass_balance_tolerance),
    }
    violations = [f"{name}: {v}" for name, c in checks.items() for v in c["violations"]]
    return {"ok": not violations, "violations": violations, "checks": checks}


class _EventScan:
    """Everything the checks need from the event log, gathered batch by batch: fault and
    maintenance records (to excuse waits), the replay of commands against PackML states, and
    unit counts by kind."""

    _EXCUSE = ("fault", "repair", "maintenance", "maintenance_done")

    def __init__(self, plant) -> None:
        self.plant = plant
        self.names = set(plant.equipment)
        self.excusals: list[dict] = []  # grows with faults and maintenance, not with events
        self.state = {n: "Stopped" for n in self.names}
        self.active: dict[str, set[str]] = {n: set() for n in self.names}
        self.executed = 0
        self.unsafe: list[dict] = []
        self.n_unsafe = 0
        self.counts = {k: 0 for k in ("create", "produce", "complete", "scrap", "consume")}
        self.refills = 0

    def add(self, batch) -> None:
        kinds = batch.column("kind")
        for item in pc.value_counts(kinds).to_pylist():
            if item["values"] in self.counts:
                self.counts[item["values"]] += item["counts"]
        self.refills += batch.filter(pc.and_(pc.equal(kinds, "refill"),
                                             pc.greater_equal(batch.column("unit_id"), 0))
                                     ).num_rows
        self.excusals += batch.filter(pc.is_in(kinds, value_set=_arr(
            list(self._EXCUSE)))).to_pylist()
        self._replay(batch, kinds)

    def _replay(self, batch, kinds) -> None:
        """Check each command against its unit's PackML state and active faults at that point
        of the log. Only command, fault and repair rows (few) become Python objects; a unit's
        latest state before a row is found by index search over the batch's state rows."""
        def np_mask(kind: str) -> np.ndarray:
            return pc.equal(kinds, kind).to_numpy(zero_copy_only=False)

        def col(name: str):
            c = batch.column(name)
            return c.combine_chunks() if isinstance(c, pa.ChunkedArray) else c

        is_state, is_cmd = np_mask("state"), np_mask("command")
        is_fault, is_repair = np_mask("fault"), np_mask("repair")
        enc = col("entity").dictionary_encode()
        codes = enc.indices.to_numpy(zero_copy_only=False)
        entities = enc.dictionary.to_pylist()
        detail = col("detail")
        names, state, active = self.names, self.state, self.active
        st_rows = np.flatnonzero(is_state)
        st_codes = codes[st_rows]
        rows_of: dict[int, np.ndarray] = {}

        def states_of(c: int) -> np.ndarray:
            if c not in rows_of:
                rows_of[c] = st_rows[st_codes == c]
            return rows_of[c]

        special = np.flatnonzero(is_cmd | is_fault | is_repair)
        if special.size:
            location, time_s = col("location"), col("time_s")
        for i in special:
            n = entities[codes[i]]
            if n not in names:
                continue
            rows = states_of(int(codes[i]))
            j = int(np.searchsorted(rows, i)) - 1
            if j >= 0:
                state[n] = detail[int(rows[j])].as_py()
            d = detail[int(i)].as_py()
            if is_cmd[i]:
                d = d.split(":", 1)[0]  # "<command>: <reason>"
            if is_fault[i]:
                active[n].add(d)
            elif is_repair[i]:
                active[n].discard(d)
            elif d not in {c.value for c in Command}:  # set-point etc.: no PackML guard
                continue
            else:
                self.executed += 1
                cmd, issuer = d, location[int(i)].as_py()
                legal = COMMAND_TRANSITIONS[Command(cmd)].get(State(state[n])) is not None
                why = None
                if not legal:
                    why = f"{cmd} executed in {state[n]}"
                elif cmd in _INTERLOCKED and active[n] and issuer not in (n, "safety"):
                    why = f"{cmd} by {issuer} with active fault {', '.join(sorted(active[n]))}"
                if why:
                    self.n_unsafe += 1
                    if len(self.unsafe) < 10:
                        self.unsafe.append({"time_s": time_s[int(i)].as_py(), "unit": n,
                                            "issuer": issuer, "reason": why})
        for c, n in enumerate(entities):  # carry each unit's last state into the next batch
            if n in names:
                rows = states_of(c)
                if rows.size:
                    state[n] = detail[int(rows[-1])].as_py()

    def unsafe_report(self) -> dict:
        control = self.plant.control
        return {"commands_executed": self.executed, "unsafe": self.n_unsafe,
                "controller": control.name if control is not None else None,
                "examples": self.unsafe,
                "violations": [f"t={u['time_s']:.1f} s {u['unit']}: {u['reason']}"
                               for u in self.unsafe]}


def _deadlock(plant, out: Path, ev: list[dict], faults, bound: float, end: float) -> dict:
    excused: dict[str, list[tuple[float, float]]] = defaultdict(list)
    open_: dict[tuple[str, str], float] = {}
    for e in ev:
        # planned maintenance (a punch change) is excused like a repair
        key = (e["entity"], "maintenance" if e["kind"].startswith("maintenance")
               else e["detail"])
        if e["kind"] in ("fault", "maintenance"):
            open_.setdefault(key, e["time_s"])
        elif key in open_:
            excused[e["entity"]].append((open_.pop(key), e["time_s"]))
    for (entity, _), t0 in open_.items():
        excused[entity].append((t0, math.inf))
    for f in faults:
        t1 = f["recovered_s"] if f["recovered_s"] is not None else (
            f["cleared_s"] if f["cleared_s"] is not None else math.inf)
        if f["mode"] == "battery_fade":
            continue
        target = f["target"].split(".")[0]
        excused[target].append((f["time_s"], t1))
        if f["mode"] in ("supervisor_outage", "command_latency", "command_loss"):
            for n in plant.equipment:
                excused[n].append((f["time_s"], t1))
    lines, robots = set(plant.lines), set(plant.robots)
    for k in excused:
        excused[k].sort()
    waits = []
    n_waits = 0
    longest = None
    for row in _rows(out / "states.parquet", ["entity", "state", "start_s", "end_s"],
                     longer_than=bound):
        name, st = row["entity"], row["state"]
        if name in plant.equipment:
            waiting = st in _COMMAND_WAIT
        elif name in robots:
            waiting = st == "waiting_traffic"
        elif name in lines:
            waiting = st in ("Suspended", "Held")
        else:
            waiting = False
        if not waiting:
            continue
        a, b = row["start_s"], row["end_s"]
        d = (b - a) - _overlap(a, b, excused.get(name, ()))
        if d > bound:
            w = {"entity": name, "state": st, "start_s": a, "end_s": b, "wait_s": d}
            n_waits += 1
            if len(waits) < 20:
                waits.append(w)
            if longest is None or d > longest["wait_s"]:
                longest = w
    return {"bound_s": bound, "long_waits": waits, "n_long_waits": n_waits, "longest": longest,
            "violations": [f"{w['entity']} {w['state']} for {w['wait_s']:.0f} s from "
                           f"t={w['start_s']:.0f} s (bound {bound:g} s)" for w in waits[:20]]}


def _rows(path: Path, columns: list[str], longer_than: float | None = None):
    """The rows of a state-interval table, read 64 Ki rows at a time (bounded memory); only
    intervals longer than ``longer_than`` seconds, if given (filtered in Arrow, not Python)."""
    for batch in pq.ParquetFile(path).iter_batches(batch_size=65_536, columns=columns):
        if longer_than is not None:
            dur = pc.subtract(batch.column("end_s"), batch.column("start_s"))
            batch = batch.filter(pc.greater(dur, longer_than))
        yield from batch.to_pylist()


def _overlap(a: float, b: float, windows) -> float:
    """Length of [a, b] covered by the union of ``windows``."""
    total, cur = 0.0, a
    for x, y in sorted(windows):
        x, y = max(x, cur), min(y, b)
        if y > x:
            total += y - x
            cur = y
    return total


def _arr(values):
    import pyarrow as pa
    return pa.array(values)
