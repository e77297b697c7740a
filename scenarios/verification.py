"""The verification report of a run (``verification.json``): rules a control engineer's CI can
gate on (``darkfab run --strict`` exits with code 4 when one is broken).

* ``deadlock``: nothing waits beyond ``verification.deadlock_bound_s`` without progress — a
  unit in a state only a command leaves (Stopped, Idle, Held, Aborted, Complete), a robot
  waiting for traffic, a continuous line Suspended or Held — not counting the time a fault of
  that unit, robot or line is active (from its fault to its repair, or an injected fault's
  window up to its recovery);
* ``out_of_spec_released``: every continuous line's ``released_out_of_spec_kg`` is 0, not
  counting what is in lots diverted or still quarantined (not released product:
  ``containment.out_of_spec_kg_contained``);
* ``unsafe_commands``: the event log replayed through the PackML command table: a command
  *executed* in a state where it is illegal, or (issued by the controller) a Reset, Start,
  Unhold, Unsuspend or Clear executed while a fault of the unit was active, is unsafe; rejected
  commands are not;
* ``faults``: every injected fault was detected by the plant (alarm or state change), with
  detection latency, recovery time and throughput lost (:mod:`darkfab.scenarios.faults`); a
  fault that never acted on the plant (a stall of a robot that did not drive again) counts as
  undetected; faults scheduled at or after the end of the run are *not reached* (neither
  detected nor failed), and only injected faults count as recovered; a ``command_loss``
  window that lost no command has *nothing to detect* and passes;
* ``unit_balance``: units created (``create`` + ``produce``) = completed + scrapped + consumed
  (``consume``, refill containers emptied) + in the plant, the last equal to the plant's online
  WIP count and at least the units counted in buffers, staging areas and on robots;
* ``mass_balance``: every continuous line's relative mass-balance error below
  ``verification.mass_balance_tolerance`` (1e-9).
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

__all__ = ["verify", "format_verification", "attach_event_scan"]

_COMMAND_WAIT = frozenset({"Stopped", "Idle", "Held", "Aborted", "Complete"})
_INTERLOCKED = frozenset({"Reset", "Start", "Unhold", "Unsuspend", "Clear"})
_PACKML_COMMANDS = frozenset(c.value for c in Command)


def attach_event_scan(plant) -> "_EventScan":
    """Let the verification see every batch of the event log, and the long intervals of the
    state log, as they are written (call before the run): no second pass over events.parquet
    or states.parquet at the end."""
    scan = _EventScan(plant)
    plant.model.log.batch_listeners.append(scan.add)
    states = plant.model.states
    if states.rows_written == 0:  # else a batch went by unseen: states.parquet is read back
        scan.long_states = []
        states.batch_listeners.append(scan.add_states)
    return scan


def verify(plant, summary: dict[str, Any], out: Path, end: float,
           faults: list[dict[str, Any]], scan: "_EventScan | None" = None) -> dict[str, Any]:
    """Check the run's results in ``out`` (tables closed) against the rules above. ``scan``:
    the event and state logs as seen while they were written (:func:`attach_event_scan`);
    without it both are read back in batches."""
    spec = plant.scenario.verification
    if scan is None:
        scan = _EventScan(plant)
        # one pass over the event log in batches: memory does not grow with the run's length
        for batch in pq.ParquetFile(out / "events.parquet").iter_batches(
                batch_size=65_536, columns=["time_s", "kind", "entity", "unit_id", "location",
                                            "detail"]):
            scan.add(batch)
    if scan.long_states is not None:
        intervals = (r for t in scan.long_states for r in t.to_pylist())
    else:
        intervals = _rows(out / "states.parquet", ["entity", "state", "start_s", "end_s"],
                          longer_than=spec.deadlock_bound_s)
    checks = {
        "deadlock": _deadlock(plant, intervals, scan.excusals, faults, spec.deadlock_bound_s,
                              end),
        "out_of_spec_released": _oos(summary),
        "unsafe_commands": scan.unsafe_report(),
        "faults": _faults(faults),
        "unit_balance": _units(plant, scan),
        "mass_balance": _mass(summary, spec.mass_balance_tolerance),
    }
    violations = [f"{name}: {v}" for name, c in checks.items() for v in c["violations"]]
    return {"ok": not violations, "violations": violations, "checks": checks}


_WAIT_STATES = pa.array(sorted(_COMMAND_WAIT | {"waiting_traffic", "Suspended", "Held"}))


def _plain(column) -> pa.Array:
    """One array for a column (a table's columns are chunked; a batch's from the recorder have
    one chunk, taken without a copy)."""
    if isinstance(column, pa.ChunkedArray):
        return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
    return column


class _EventScan:
    """Everything the checks need from the event log, gathered batch by batch: fault and
    maintenance records (to excuse waits), the replay of commands against PackML states, and
    unit counts by kind; optionally (``long_states`` not ``None``) the state intervals longer
    than the deadlock bound in a waiting state, from the state log's batches.

    The work per batch is vectorised (Arrow and numpy, proportional to the batch, not to the
    history): the only rows turned into Python objects are fault and maintenance records,
    commands and faults of units with an active fault, and at most ten unsafe commands."""

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
        # intervals longer than the deadlock bound in a waiting state (few: at most the run's
        # length / bound per entity); None: read states.parquet back at the end
        self.long_states: list[pa.Table] | None = None
        self._legal: dict[tuple[str, str], bool] = {}  # (command, state) -> legal, memo

    def add(self, batch) -> None:
        """Take one batch of the event log (a table with at least ``time_s``, ``kind``,
        ``entity``, ``unit_id``, ``location``, ``detail``), in log order."""
        kinds = _plain(batch.column("kind")).dictionary_encode()
        k = kinds.indices.to_numpy(zero_copy_only=False)
        code = {v: i for i, v in enumerate(kinds.dictionary.to_pylist())}
        n_of = np.bincount(k, minlength=len(code))
        for kind in self.counts:
            if kind in code:
                self.counts[kind] += int(n_of[code[kind]])
        if "refill" in code:
            unit = _plain(batch.column("unit_id")).to_numpy(zero_copy_only=False)
            self.refills += int(np.count_nonzero((k == code["refill"]) & (unit >= 0)))
        excuse = [code[x] for x in self._EXCUSE if x in code]
        if excuse:
            self.excusals += batch.take(np.flatnonzero(np.isin(k, excuse))).to_pylist()
        self._replay(batch, k, code)

    def add_states(self, batch) -> None:
        """Take one batch of the state log: keep the waiting intervals longer than the bound
        (the entity decides at the end whether the state counts as waiting)."""
        bound = self.plant.scenario.verification.deadlock_bound_s
        dur = pc.subtract(batch.column("end_s"), batch.column("start_s"))
        long_ = batch.filter(pc.greater(dur, bound))
        if long_.num_rows:
            long_ = long_.filter(pc.is_in(long_.column("state"), value_set=_WAIT_STATES))
        if long_.num_rows:
            self.long_states.append(long_.select(["entity", "state", "start_s", "end_s"]))

    def _replay(self, batch, k: np.ndarray, code: dict[str, int]) -> None:
        """Check each command of a unit against the unit's PackML state and active faults at
        that point of the log. A command's state is the unit's latest state row before it in
        the batch (a running maximum over the unit's rows in log order) or the state carried
        from the earlier batches; legality is looked up once per distinct (command, state)."""
        def kind(name: str) -> np.ndarray:
            return k == code.get(name, -1)

        is_fault, is_repair = kind("fault"), kind("repair")
        rows = np.flatnonzero(kind("state") | kind("command") | is_fault | is_repair)
        if not rows.size:
            return
        ent = pc.take(_plain(batch.column("entity")), rows).dictionary_encode()
        e = ent.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        names = ent.dictionary.to_pylist()
        ours = np.fromiter((n in self.names for n in names), bool, len(names))
        keep = ours[e]
        if not keep.all():
            rows, e = rows[keep], e[keep]
            if not rows.size:
                return
        det = pc.take(_plain(batch.column("detail")), rows).dictionary_encode()
        # a command's detail is "<command>[: <reason>][; decided <t> s]"; states and fault
        # names have neither colon nor semicolon
        words = [w.split(":", 1)[0].split(";", 1)[0] for w in det.dictionary.to_pylist()]
        kr = k[rows]
        order = np.argsort(e, kind="stable")  # by unit, log order within a unit
        es = e[order]
        ds = det.indices.to_numpy(zero_copy_only=False).astype(np.int64)[order]
        is_st = (kr == code.get("state", -1))[order]
        # set-point, routing and release commands have no PackML guard: not replayed
        packml = np.fromiter((w in _PACKML_COMMANDS for w in words), bool, len(words))
        is_cmd = ((kr == code.get("command", -1)) & packml[det.indices.to_numpy(
            zero_copy_only=False)])[order]
        pos = np.arange(order.size)
        last = np.maximum.accumulate(np.where(is_st, pos, -1))  # latest state row so far
        first = np.searchsorted(es, es)  # where each row's unit starts
        seen = last >= first
        # state words: the batch's details, then each unit's carried state at len(words) + e
        carried = [self.state[n] if ours[i] else "" for i, n in enumerate(names)]
        vocab = words + carried
        before = np.where(seen, ds[np.maximum(last, 0)], len(words) + es)
        for g in np.flatnonzero(np.append(es[1:] != es[:-1], True)):  # carry into next batch
            if seen[g]:
                self.state[names[es[g]]] = words[ds[last[g]]]

        cp = np.flatnonzero(is_cmd)
        self.executed += int(cp.size)
        legal = np.ones(order.size, bool)
        if cp.size:
            pairs, inv = np.unique(ds[cp] * len(vocab) + before[cp], return_inverse=True)
            ok = np.array([self._is_legal(words[p // len(vocab)], vocab[p % len(vocab)])
                           for p in pairs.tolist()], bool)
            legal[cp] = ok[inv.reshape(-1)]
        bad: dict[int, tuple[str, str]] = {}  # row -> (unit, reason)
        for p in np.flatnonzero(~legal).tolist():
            bad[int(rows[order[p]])] = (names[es[p]], f"{words[ds[p]]} executed in "
                                        f"{vocab[before[p]]}")
        # interlocks: only units with a fault or repair in this batch or an active fault
        fr = (is_fault | is_repair)[rows][order]
        hot = set(es[fr].tolist()) | {i for i, n in enumerate(names)
                                      if ours[i] and self.active[n]}
        if hot:
            location = _plain(batch.column("location"))
            fault = is_fault[rows][order]
            for u in sorted(hot):
                n, active = names[u], self.active[names[u]]
                lo, hi = np.searchsorted(es, [u, u + 1])
                for p in range(int(lo), int(hi)):
                    if is_st[p]:
                        continue
                    w = words[ds[p]]
                    if fr[p]:
                        if fault[p]:
                            active.add(w)
                        else:
                            active.discard(w)
                    elif legal[p] and w in _INTERLOCKED and active:
                        r = int(rows[order[p]])
                        issuer = location[r].as_py()
                        if issuer not in (n, "safety"):
                            bad[r] = (n, f"{w} by {issuer} with active fault "
                                         f"{', '.join(sorted(active))}")
        if bad:
            self.n_unsafe += len(bad)
            location, time_s = _plain(batch.column("location")), _plain(batch.column("time_s"))
            for r in sorted(bad)[:max(0, 10 - len(self.unsafe))]:
                n, why = bad[r]
                self.unsafe.append({"time_s": time_s[r].as_py(), "unit": n,
                                    "issuer": location[r].as_py(), "reason": why})

    def _is_legal(self, command: str, state: str) -> bool:
        key = (command, state)
        if key not in self._legal:
            self._legal[key] = COMMAND_TRANSITIONS[Command(command)].get(State(state)) is not None
        return self._legal[key]

    def unsafe_report(self) -> dict:
        control = self.plant.control
        return {"commands_executed": self.executed, "unsafe": self.n_unsafe,
                "controller": control.name if control is not None else None,
                "examples": self.unsafe,
                "violations": [f"t={u['time_s']:.1f} s {u['unit']}: {u['reason']}"
                               for u in self.unsafe]}


def _deadlock(plant, intervals, ev: list[dict], faults, bound: float, end: float) -> dict:
    """Long waits among ``intervals`` (state-interval rows longer than ``bound``, in log
    order), net of the time a fault or maintenance of the entity was active."""
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
    for row in intervals:
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


def _oos(summary) -> dict:
    lines = summary.get("continuous_lines", {})
    contained = summary.get("containment", {}).get("out_of_spec_kg_contained", {})
    kg = {n: max(0.0, k["released_out_of_spec_kg"] - contained.get(n, 0.0))
          for n, k in lines.items()}
    return {"released_out_of_spec_kg": kg, "contained_kg": contained,
            "violations": [f"line {n}: {v:.6g} kg out of spec released" for n, v in kg.items()
                           if v > 0]}


def _faults(faults) -> dict:
    """Counts by verdict (``status`` of :meth:`FaultCampaign.finish`): ``scheduled`` =
    ``injected`` + ``not_reached``; ``injected`` = ``detected`` + ``nothing_to_detect`` +
    ``undetected``; ``recovered`` counts injected faults only."""
    status = [f.get("status") or _status(f) for f in faults]
    undetected = [f for f, st in zip(faults, status) if st == "undetected"]
    unrecovered = [f for f, st in zip(faults, status) if st == "detected" and not f["recovered"]]
    by_mode: dict[str, list[float]] = defaultdict(list)
    for f in faults:
        if f["recovery_time_s"] is not None:
            by_mode[f["mode"]].append(f["recovery_time_s"])
    return {
        "scheduled": len(faults),
        "injected": sum(bool(f["injected"]) for f in faults),
        "not_reached": status.count("not_reached"),
        "detected": status.count("detected"),
        "nothing_to_detect": status.count("nothing_to_detect"),
        "undetected": len(undetected),
        "recovered": sum(bool(f["injected"] and f["recovered"]) for f in faults),
        "recovery_time_s_by_mode": {m: {"mean": sum(v) / len(v), "max": max(v), "n": len(v)}
                                    for m, v in sorted(by_mode.items())},
        "faults": faults,
        "not_reached_faults": [f["index"] for f, st in zip(faults, status)
                               if st == "not_reached"],
        "nothing_to_detect_faults": [f["index"] for f, st in zip(faults, status)
                                     if st == "nothing_to_detect"],
        "violations": [f"fault #{f['index']} {f['mode']} on {f['target']} at "
                       f"t={f['time_s']:g} s not detected" for f in undetected]
        + [f"fault #{f['index']} {f['mode']} on {f['target']} not recovered by the end of "
           "the run" for f in unrecovered],
    }


def _status(f: dict) -> str:
    """A fault record's verdict when the record does not carry one (module doc)."""
    if not f["injected"]:
        return "not_reached"
    if f["detected"]:
        return "detected"
    if f["mode"] == "command_loss" and f.get("commands_lost") == 0:
        return "nothing_to_detect"
    return "undetected"


def _units(plant, scan: _EventScan) -> dict:
    counts, refills = scan.counts, scan.refills
    created = counts["create"] + counts["produce"]
    left = counts["complete"] + counts["scrap"] + counts["consume"] + refills
    in_plant = created - left
    wip = plant.model.wip.value
    seen = sum(b.level for b in plant.buffers.values()) + sum(
        s.level for s in plant.staging.values()) + sum(
        len(r.loaded_units) for r in plant.robots.values()) + sum(
        st.held_unit is not None for line in plant.lines.values() for st in line.stations)
    violations = []
    if abs(in_plant - wip) > 1e-9:
        violations.append(f"events give {in_plant} units in the plant, the WIP count {wip:g}")
    if in_plant < seen:
        violations.append(f"{in_plant} units in the plant by the events, {seen} counted in "
                          "buffers, staging areas and on robots")
    return {"created": created, "completed": counts["complete"], "scrapped": counts["scrap"],
            "consumed": counts["consume"] + refills, "in_plant": in_plant, "wip_count": wip,
            "in_buffers_staging_robots": seen, "violations": violations}


def _mass(summary, tol: float) -> dict:
    lines = summary.get("continuous_lines", {})
    errs = {n: k["mass_balance"]["rel_error"] for n, k in lines.items()}
    return {"rel_error": errs, "tolerance": tol,
            "violations": [f"line {n}: relative mass-balance error {e:.3g} >= {tol:g}"
                           for n, e in errs.items() if not e < tol]}


def format_verification(v: dict[str, Any]) -> str:
    """A few lines for the terminal."""
    c = v["checks"]
    f = c["faults"]
    n = len(v["violations"])
    lines = [f"verification: {'all clear' if v['ok'] else f'{n} violation(s)'}"]
    lines.append(f"  deadlock (waits > {c['deadlock']['bound_s']:g} s): "
                 f"{c['deadlock']['n_long_waits']}; out-of-spec released: "
                 f"{sum(c['out_of_spec_released']['released_out_of_spec_kg'].values()):.3g} kg; "
                 f"unsafe commands: {c['unsafe_commands']['unsafe']} of "
                 f"{c['unsafe_commands']['commands_executed']}")
    if f["faults"]:
        lines.append(f"  faults: {f['scheduled']} scheduled, {f['not_reached']} not reached "
                     f"(at or after the end), {f['injected']} injected: {f['detected']} "
                     f"detected, {f['undetected']} not detected, {f['recovered']} recovered")
        if f["nothing_to_detect"]:
            lines.append(f"    {f['nothing_to_detect']} command-loss window(s) lost no command: "
                         "nothing to detect (passed)")
        for m, r in f["recovery_time_s_by_mode"].items():
            lines.append(f"    {m:22s} recovery mean {r['mean']:9.1f} s  max {r['max']:9.1f} s"
                         f"  (n={r['n']})")
    ub = c["unit_balance"]
    mb = c["mass_balance"]["rel_error"]
    lines.append(f"  units: created {ub['created']} = completed {ub['completed']} + scrapped "
                 f"{ub['scrapped']} + consumed {ub['consumed']} + in plant {ub['in_plant']}"
                 + (f"; mass balance error {max(mb.values()):.2g}" if mb else ""))
    for x in v["violations"][:10]:
        lines.append(f"  ! {x}")
    return "\n".join(lines)
