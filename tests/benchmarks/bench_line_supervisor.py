"""The built-in supervisor's line strategies compared with and without them (paired runs).

Each comparison runs the same scenario, seed and replications with two or more controller
parameter sets (common random numbers: every stochastic element draws from its own named
stream, so the paired runs differ by the controller's decisions) and prints, per variant, the
mean of each figure and, against the first variant, the mean paired difference with its 95 %
confidence interval (Student t on the differences of the replications).

    .venv/bin/python tests/benchmarks/bench_line_supervisor.py rate-cut [--reps 8] [--days 2]
    .venv/bin/python tests/benchmarks/bench_line_supervisor.py hold [--reps 3] [--days 15]
    .venv/bin/python tests/benchmarks/bench_line_supervisor.py stagger [--reps 8] [--days 2]

* ``rate-cut``: cdc-line with one slow robot (``--speed``, default 0.1 m/s, so that the feeders
  starve without the cut): stops for an empty feeder, time Suspended, accepted tablets.
* ``hold``: fault-campaign (its NIR drift on day 10 and out-of-spec API lot on day 14 need
  ``--days`` ≥ 15): holds, time Held, state of control, accepted tablets, released
  out-of-spec kg; ``critical_hold`` off, on (the default rule), and holding at once
  (``critical_hold_after_s = 0``).
* ``stagger``: cdc-line with ``refill_request = "controller"`` for every feeder: refill windows
  (``refill`` → ``refill_done`` rows) of two feeders that overlap, with and without
  ``refill_stagger``.
"""

from __future__ import annotations

import argparse
import math
import tempfile
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from scipy import stats

from darkfab.scenarios import load_scenario, run_scenario

FEEDERS = ("api", "excipient", "lubricant")


def refill_windows(events: list[dict]) -> dict[str, list[tuple[float, float]]]:
    """Feeder -> its refill windows [refill, refill_done] from events.parquet rows."""
    start: dict[str, float] = {}
    out: dict[str, list[tuple[float, float]]] = {}
    for e in events:
        if e["kind"] == "refill":
            start[e["entity"]] = e["time_s"]
        elif e["kind"] == "refill_done" and e["entity"] in start:
            out.setdefault(e["entity"], []).append((start.pop(e["entity"]), e["time_s"]))
    return out


def overlaps(windows: dict[str, list[tuple[float, float]]], gap_s: float = 0.0) -> int:
    """Pairs of refill windows of different feeders closer than ``gap_s`` (0: overlapping)."""
    flat = sorted((a, b, f) for f, ws in windows.items() for a, b in ws)
    n = 0
    for i, (a, b, f) in enumerate(flat):
        for a2, b2, f2 in flat[i + 1:]:
            if a2 > b + gap_s:
                break
            n += f2 != f
    return n


def figures(out: Path, summary: dict) -> dict[str, float]:
    ln = summary["continuous_lines"]["cdc"]
    ev = pq.read_table(out / "events.parquet", columns=["time_s", "kind", "entity", "detail"]
                       ).to_pylist()
    empty = Counter(e["detail"] for e in ev if e["kind"] == "line"
                    and e["detail"].startswith("Suspended:") and e["detail"].endswith("empty"))
    cmds = [e["detail"] for e in ev if e["kind"] == "command"]
    w = refill_windows(ev)
    tis = ln["time_in_state_s"]
    return {"empty_stops": sum(empty.values()), "suspended_h": tis.get("Suspended", 0.0) / 3600,
            "held_h": tis.get("Held", 0.0) / 3600,
            "accepted_Mtab": ln["tablets_accepted"] / 1e6,
            "state_of_control": ln["state_of_control_fraction"],
            "released_oos_kg": ln["released_out_of_spec_kg"],
            "rate_setpoints": sum(c.startswith("SetPoint line_rate_kg_h") for c in cmds),
            "holds": sum(c.startswith("Hold: critical") for c in cmds),
            "refills": sum(len(x) for x in w.values()),
            "refill_deviations": ln["refill_induced_deviations"],
            "diverted_kg": ln["diverted_kg"],
            "overlapping_refills": overlaps(w), "refills_within_300s": overlaps(w, 300.0)}


def one(job: tuple[str, list[str], int, str]) -> dict[str, float]:
    scenario, overrides, rep, params = job
    with tempfile.TemporaryDirectory() as d:
        s = load_scenario(scenario, overrides + [f"controller.params={params}"])
        res = run_scenario(s, out_dir=Path(d) / "run", replication=rep, verify_run=False)
        return figures(res.out_dir, res.summary)


def compare(scenario: str, overrides: list[str], variants: list[str], reps: int,
            keys: list[str]) -> None:
    jobs = [(scenario, overrides, r, v) for v in variants for r in range(reps)]
    with ProcessPoolExecutor(2) as ex:
        res = list(ex.map(one, jobs))
    by = {v: res[i * reps:(i + 1) * reps] for i, v in enumerate(variants)}
    print(f"{scenario} {' '.join(overrides)}; {reps} replications (paired)")
    for v in variants:
        print(f"  {v}")
        for k in keys:
            x = np.array([r[k] for r in by[v]])
            line = f"    {k:22s} mean {x.mean():10.4f}"
            if v != variants[0]:
                d = x - np.array([r[k] for r in by[variants[0]]])
                h = (stats.t.ppf(0.975, reps - 1) * d.std(ddof=1) / math.sqrt(reps)
                     if reps > 1 else math.nan)
                line += f"   diff {d.mean():+10.4f} ± {h:.4f} (95 % CI)"
            print(line)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("what", choices=["rate-cut", "hold", "stagger"])
    p.add_argument("--reps", type=int, default=None)
    p.add_argument("--days", type=float, default=None)
    p.add_argument("--speed", type=float, default=0.1)
    a = p.parse_args()
    if a.what == "rate-cut":
        days, reps = a.days or 2.0, a.reps or 8
        ov = [f"scenario.horizon_s={days * 86400}", f"fleet.speed_empty_m_s={a.speed}",
              f"fleet.speed_loaded_m_s={a.speed}", "fleet.count=1"]
        compare("cdc-line", ov, ["{rate_cut = false}",
                                 "{rate_cut = true, rate_cut_reserve_used = 0.0}",
                                 "{rate_cut = true}"], reps,
                ["empty_stops", "suspended_h", "accepted_Mtab", "state_of_control",
                 "rate_setpoints"])
    elif a.what == "hold":
        days, reps = a.days or 15.0, a.reps or 3
        ov = [f"scenario.horizon_s={days * 86400}"]
        compare("fault-campaign", ov, ["{critical_hold = false}", "{critical_hold = true}",
                                       "{critical_hold = true, critical_hold_after_s = 0.0}"],
                reps, ["holds", "held_h", "state_of_control", "accepted_Mtab",
                       "released_oos_kg"])
    else:
        days, reps = a.days or 2.0, a.reps or 8
        ov = [f"scenario.horizon_s={days * 86400}"] + [
            f"continuous_lines.cdc.feeders.{f}.refill_request=controller" for f in FEEDERS]
        compare("cdc-line", ov, ["{refill_stagger = false}", "{refill_stagger = true}"], reps,
                ["refills", "overlapping_refills", "refills_within_300s", "refill_deviations",
                 "diverted_kg", "empty_stops", "accepted_Mtab"])


if __name__ == "__main__":
    main()
