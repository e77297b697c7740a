"""Scaling benchmarks on the default plant (a script, not a test).

Prints, each measured in its own subprocess (peak RSS from wait4):
  1. horizon scaling: 30 / 90 / 365 simulated days → wall s, events, events/s, simulated days per
     wall s, peak RSS; memory ratio 365 d / 30 d (goal ≤ 1.2) and wall-per-day ratio;
  2. plant-size scaling: 1× / 2× / 4× copies of the line in one plant → cost per event
     (goal: 4× ≤ 1.15 × 1×);
  2b. the same with robots: 1× / 2× / 4× copies of amr-warehouse, one fleet of 6 / 12 / 24
     AMRs → cost per event in CPU time (least of ``--repeat`` runs per size);
  3. replication speed-up: R replications serial vs the processes engine on all cores
     (goal ≥ 1.8× on 2 cores).

    .venv/bin/python tests/benchmarks/bench_scale.py [--scenario packaging-line] [--quick]
        [--sections 1,2,2b,3] [--repeat N]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
import tomllib
from pathlib import Path

CHILD = textwrap.dedent("""
    import json, sys, time
    from darkfab.scenarios import load_scenario, run_scenario
    path, days, out = sys.argv[1], float(sys.argv[2]), sys.argv[3]
    s = load_scenario(path, [f"scenario.horizon_s={days * 86400}"])
    t0, c0 = time.perf_counter(), time.process_time()
    res = run_scenario(s, out_dir=out)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(json.dumps({"wall_s": wall, "cpu_s": cpu, "events": res.summary["events"],
                      "throughput_per_h": res.summary["throughput_per_h"]}))
""")


def measure(path: str, days: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen([sys.executable, "-c", CHILD, path, str(days), tmp],
                                stdout=subprocess.PIPE, text=True)
        out = proc.stdout.read()  # type: ignore[union-attr]
        _, status, usage = os.wait4(proc.pid, 0)
        if status != 0:
            raise SystemExit(f"child failed for {path} {days} d")
    rec = json.loads(out)
    rec["peak_rss_mb"] = usage.ru_maxrss / 1024.0
    rec["days"] = days
    return rec


def scaled_plant(base: Path, copies: int, tmp: Path) -> Path:
    """A plant made of ``copies`` independent copies of the base line (names suffixed)."""
    data = tomllib.loads(base.read_text())
    if copies == 1:
        return base
    out: dict = {"scenario": dict(data["scenario"]), "products": data["products"],
                 "nodes": {}, "links": [], "buffers": {}, "sources": {}, "sinks": {},
                 "equipment": {}}
    out["scenario"]["name"] = f"{data['scenario']['name']}-x{copies}"
    if "controller" in data:
        out["controller"] = data["controller"]

    def rn(name: str, k: int) -> str:
        return f"{name}_{k}"

    for k in range(copies):
        for n, v in data["nodes"].items():
            out["nodes"][rn(n, k)] = {**v, "y_m": v["y_m"] + 40.0 * k}
        for link in data.get("links", []):
            out["links"].append({**link, "a": rn(link["a"], k), "b": rn(link["b"], k)})
        for n, v in data.get("buffers", {}).items():
            out["buffers"][rn(n, k)] = {**v, "node": rn(v["node"], k)}
        for n, v in data["sources"].items():
            out["sources"][rn(n, k)] = {**v, "node": rn(v["node"], k), "to": rn(v["to"], k)}
        for n, v in data["sinks"].items():
            out["sinks"][rn(n, k)] = {**v, "node": rn(v["node"], k)}
        for n, v in data.get("equipment", {}).items():
            e = {**v, "node": rn(v["node"], k), "input": rn(v["input"], k)}
            e["next"] = rn(v["next"], k) if isinstance(v["next"], str) else [
                {**b, "to": rn(b["to"], k)} for b in v["next"]]
            if "reject_to" in v:
                e["reject_to"] = rn(v["reject_to"], k)
            out["equipment"][rn(n, k)] = e
    if "fleet" in data:  # one fleet serving every copy, k times the robots
        f = dict(data["fleet"])
        f["count"] = f["count"] * copies
        f["homes"] = [rn(h, k) for k in range(copies) for h in data["fleet"]["homes"]]
        out["fleet"] = f
        hub = next(n for n, v in data["nodes"].items() if v.get("role") == "waypoint")
        for k in range(copies - 1):  # a corridor joins each copy to the next
            out["links"].append({"a": rn(hub, k), "b": rn(hub, k + 1), "capacity_robots": 2})
    path = tmp / f"x{copies}.toml"
    path.write_text(_toml(out))
    return path


def _toml(d: dict) -> str:
    """Minimal TOML writer for the scenario shapes used here (tables, arrays of tables)."""
    def val(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list):
            return "[" + ", ".join(val(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {val(x)}" for k, x in v.items()) + " }"
        raise TypeError(type(v))

    lines = []
    for top, body in d.items():
        if top == "fleet":
            lines.append("[fleet]")
            lines += [f"{k} = {val(v)}" for k, v in body.items() if k != "stalls"]
            for st in body.get("stalls", []):
                lines.append("[[fleet.stalls]]")
                lines += [f"{k} = {val(v)}" for k, v in st.items()]
        elif top == "links":
            for link in body:
                lines.append("[[links]]")
                lines += [f"{k} = {val(v)}" for k, v in link.items()]
        elif top in ("scenario", "controller"):
            lines.append(f"[{top}]")
            lines += [f"{k} = {val(v)}" for k, v in body.items()]
        else:
            for name, spec in body.items():
                lines.append(f"[{top}.{name}]")
                lines += [f"{k} = {val(v)}" for k, v in spec.items()]
    return "\n".join(lines) + "\n"


def replication_speedup(path: str, days: float, reps: int) -> dict:
    from darkfab.scenarios.engines import run_tasks
    from darkfab.scenarios.experiment import RunTask, execute_run

    with tempfile.TemporaryDirectory() as tmp:
        tasks = [RunTask(path, (f"scenario.horizon_s={days * 86400}",), 1, r, 0,
                         f"{tmp}/r{r}", ("throughput_per_h",)) for r in range(reps)]
        t0 = time.perf_counter()
        serial = list(run_tasks(execute_run, tasks, "serial"))
        t_serial = time.perf_counter() - t0
        tasks = [RunTask(t.scenario, t.overrides, t.seed, t.replication, t.point,
                         t.out_dir + "p", t.kpis) for t in tasks]
        t0 = time.perf_counter()
        par = list(run_tasks(execute_run, tasks, "processes"))
        t_par = time.perf_counter() - t0
    assert all(r["ok"] for r in serial + par)
    return {"reps": reps, "serial_s": t_serial, "processes_s": t_par,
            "speedup": t_serial / t_par, "cores": os.cpu_count()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", default="packaging-line")
    ap.add_argument("--quick", action="store_true", help="shorter horizons (smoke run)")
    ap.add_argument("--sections", default="1,2,2b,3",
                    help="comma-separated sections to run (default: all)")
    ap.add_argument("--repeat", type=int, default=1,
                    help="section 2b: runs per size, keeping the least CPU time (less noise)")
    args = ap.parse_args()
    sections = set(args.sections.split(","))
    from darkfab.scenarios.loader import resolve_path

    base = resolve_path(args.scenario).resolve()
    horizons = (3, 9, 36) if args.quick else (30, 90, 365)
    print(f"darkfab scaling benchmark: {args.scenario}, python {sys.version.split()[0]}, "
          f"{os.cpu_count()} cores\n")
    if "1" in sections:
        horizon_scaling(base, horizons)
    if "2" in sections:
        size_scaling(base, args.quick)
    if "2b" in sections:
        robot_scaling(args.quick, args.repeat)
    if "3" in sections:
        sp = replication_speedup(str(base), 2 if args.quick else 30, 4 if args.quick else 8)
        print("3. replication speed-up")
        print(f"{sp['reps']} replications: serial {sp['serial_s']:.2f} s, processes "
              f"{sp['processes_s']:.2f} s on {sp['cores']} cores: speed-up "
              f"{sp['speedup']:.2f}x (goal >= 1.8x)")


def horizon_scaling(base: Path, horizons: tuple[int, ...]) -> None:
    print("1. horizon scaling")
    print(f"{'days':>6} {'wall s':>9} {'events':>12} {'events/s':>10} {'sim d/wall s':>13}"
          f" {'peak RSS MB':>12}")
    rows = []
    for d in horizons:
        r = measure(str(base), d)
        rows.append(r)
        print(f"{d:6.0f} {r['wall_s']:9.2f} {r['events']:12,d} {r['events'] / r['wall_s']:10,.0f}"
              f" {d / r['wall_s']:13.2f} {r['peak_rss_mb']:12.1f}")
    mem_ratio = rows[-1]["peak_rss_mb"] / rows[0]["peak_rss_mb"]
    per_day = [r["wall_s"] / r["days"] for r in rows]
    print(f"peak memory {horizons[-1]} d / {horizons[0]} d = {mem_ratio:.3f} (goal <= 1.2); "
          f"wall per simulated day {per_day[0]:.3f} / {per_day[-1]:.3f} s "
          f"(ratio {per_day[-1] / per_day[0]:.3f}, 1.0 = linear)\n")


def size_scaling(base: Path, quick: bool) -> None:
    print("2. plant-size scaling (copies of the line in one plant)")
    days = 3 if quick else 14
    print(f"{'size':>5} {'wall s':>9} {'events':>12} {'us/event':>9}")
    costs = []
    with tempfile.TemporaryDirectory() as tmp:
        for k in (1, 2, 4):
            p = scaled_plant(base, k, Path(tmp))
            r = measure(str(p), days)
            cost = 1e6 * r["wall_s"] / r["events"]
            costs.append(cost)
            print(f"{k:4d}x {r['wall_s']:9.2f} {r['events']:12,d} {cost:9.3f}")
    print(f"cost per event 4x / 1x = {costs[-1] / costs[0]:.3f} (goal <= 1.15)\n")


def robot_scaling(quick: bool, repeat: int = 1) -> None:
    from darkfab.scenarios.loader import resolve_path

    print("2b. plant-size scaling with robots (amr-warehouse copies, one fleet, k x robots)")
    robots_base = resolve_path("amr-warehouse").resolve()
    rdays = 1 if quick else 3
    print(f"(cost per event in CPU time of the run, so that other load on the machine counts "
          f"less; least of {repeat} run(s) per size)")
    print(f"{'size':>5} {'robots':>7} {'wall s':>9} {'cpu s':>9} {'events':>12} {'us/event':>9}")
    rcosts = []
    with tempfile.TemporaryDirectory() as tmp:
        for k in (1, 2, 4):
            p = scaled_plant(robots_base, k, Path(tmp))
            r = min((measure(str(p), rdays) for _ in range(max(1, repeat))),
                    key=lambda x: x["cpu_s"])
            cost = 1e6 * r["cpu_s"] / r["events"]
            rcosts.append(cost)
            print(f"{k:4d}x {6 * k:7d} {r['wall_s']:9.2f} {r['cpu_s']:9.2f} {r['events']:12,d}"
                  f" {cost:9.3f}")
    print(f"cost per event 4x / 1x = {rcosts[-1] / rcosts[0]:.3f} (goal <= 1.15)\n")


if __name__ == "__main__":
    main()
