"""Robot wake-ups and speed on ``amr-warehouse``, before and after (a script, not a test).

Runs R replications of ``amr-warehouse`` for D simulated days, each in its own subprocess, with
this tree's interpreter and, with ``--before PYTHON``, with another tree's interpreter (a
worktree of the commit to compare against, with its own venv). For every run it prints the CPU
time per simulated day (``time.process_time`` of the simulation, import excluded), wake-ups per
leg (a waiting robot resuming from a wait, per leg it sets off on), the event count, the SHA-256
of ``events.parquet``, and the results compared: tasks per hour, transport lead time (mean, p50,
p95), fleet utilization and traffic wait. With ``--before``, replications are paired (same seed
and replication number, hence the same random streams) and each result's mean difference is
printed with its 95 % Student-t confidence interval over the R pairs (scipy.stats.t).

Wake-ups are counted from outside the code under test: ``Amr._travel`` is wrapped by a generator
that forwards what it yields and counts the resumptions after a yielded
:class:`simpy.events.Condition` (a wait: ``wake | timeout``); legs are the calls of the fleet's
``on_moving`` (a robot holds its leg and sets off).

    .venv/bin/python tests/benchmarks/bench_robots.py --days 3 --replications 8 \\
        --before /tmp/robots-base/.venv/bin/python
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import tempfile
import textwrap

CHILD = textwrap.dedent("""
    import hashlib, json, sys, time
    import simpy
    from darkfab.agents import robot as robot_mod
    from darkfab.control import fleet as fleet_mod
    from darkfab.scenarios import load_scenario, run_scenario

    days, rep, out = float(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    count = {"wakes": 0, "legs": 0}
    orig_travel = robot_mod.Amr._travel

    def travel(self, goal, loaded):
        gen = orig_travel(self, goal, loaded)
        value, exc = None, None
        while True:
            try:
                y = gen.throw(exc) if exc is not None else gen.send(value)
            except StopIteration as stop:
                return stop.value
            exc = None
            try:
                value = yield y
            except BaseException as e:  # forwarded (e.g. an interrupt)
                exc, value = e, None
                continue
            if isinstance(y, simpy.events.Condition):
                count["wakes"] += 1

    robot_mod.Amr._travel = travel
    orig_moving = fleet_mod.FleetManager.on_moving

    def on_moving(self, robot, steps):
        count["legs"] += 1
        return orig_moving(self, robot, steps)

    fleet_mod.FleetManager.on_moving = on_moving
    s = load_scenario("amr-warehouse", [f"scenario.horizon_s={days * 86400}"])
    c0 = time.process_time()
    res = run_scenario(s, replication=rep, out_dir=out, verify_run=False)
    cpu = time.process_time() - c0
    f = res.summary["fleet"]
    digest = hashlib.sha256(open(f"{out}/events.parquet", "rb").read()).hexdigest()
    print(json.dumps({"cpu_s": cpu, "events": res.summary["events"], "sha256": digest,
                      "wakes": count["wakes"], "legs": count["legs"],
                      "tasks_per_h": f["tasks_per_h"],
                      "lead_mean_s": f["transport_lead_time_s"]["mean"],
                      "lead_p50_s": f["transport_lead_time_s"]["p50"],
                      "lead_p95_s": f["transport_lead_time_s"]["p95"],
                      "utilization": f["utilization"], "traffic_wait_s": f["traffic_wait_s"],
                      "deadlocks": f["deadlocks_resolved"]}))
""")

RESULTS = ("tasks_per_h", "lead_mean_s", "lead_p50_s", "lead_p95_s", "utilization",
           "traffic_wait_s", "deadlocks")


def measure(python: str, days: float, rep: int) -> dict:
    """One run of ``amr-warehouse`` in a subprocess of ``python``."""
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run([python, "-c", CHILD, str(days), str(rep), tmp],
                             capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"run failed ({python}, replication {rep}):\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def t_interval(diffs: list[float]) -> tuple[float, float]:
    """Mean of ``diffs`` and the half-width of its 95 % Student-t confidence interval."""
    from scipy.stats import t

    n = len(diffs)
    mean = statistics.fmean(diffs)
    if n < 2:
        return mean, math.inf
    return mean, t.ppf(0.975, n - 1) * statistics.stdev(diffs) / math.sqrt(n)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=float, default=3.0)
    ap.add_argument("--replications", type=int, default=8)
    ap.add_argument("--before", help="interpreter of the tree to compare against")
    a = ap.parse_args()
    trees = [("after", sys.executable)] + ([("before", a.before)] if a.before else [])
    runs: dict[str, list[dict]] = {name: [] for name, _ in trees}
    print(f"amr-warehouse, {a.days:g} simulated days, replications 0..{a.replications - 1}")
    print(f"{'tree':6} {'rep':>3} {'cpu s/day':>9} {'wakes/leg':>9} {'legs':>6} {'events':>8} "
          + " ".join(f"{k:>14}" for k in RESULTS) + "  events.parquet")
    for rep in range(a.replications):
        for name, py in trees:
            r = measure(py, a.days, rep)
            runs[name].append(r)
            print(f"{name:6} {rep:>3} {r['cpu_s'] / a.days:>9.2f} "
                  f"{r['wakes'] / max(r['legs'], 1):>9.2f} {r['legs']:>6} {r['events']:>8} "
                  + " ".join(f"{r[k]:>14.4f}" for k in RESULTS) + f"  {r['sha256'][:12]}",
                  flush=True)
    for name, _ in trees:
        rs = runs[name]
        cpu = sum(r["cpu_s"] for r in rs) / (a.days * len(rs))
        wpl = sum(r["wakes"] for r in rs) / max(sum(r["legs"] for r in rs), 1)
        print(f"{name}: CPU {cpu:.2f} s per simulated day, {wpl:.2f} wake-ups per leg")
    if not a.before:
        return
    before, after = runs["before"], runs["after"]
    cpu_b = sum(r["cpu_s"] for r in before)
    cpu_a = sum(r["cpu_s"] for r in after)
    same = sum(b["sha256"] == x["sha256"] for b, x in zip(before, after))
    print(f"speed-up (CPU before / after, summed over replications): {cpu_b / cpu_a:.2f}x")
    print(f"events.parquet byte-identical in {same} of {len(after)} replications")
    print("paired differences after - before: mean ± 95 % CI half-width (relative to before)")
    for k in RESULTS:
        m, h = t_interval([x[k] - b[k] for b, x in zip(before, after)])
        base = statistics.fmean(b[k] for b in before)
        rel = f"({m / base:+.2%} ± {h / base:.2%})" if base else ""
        print(f"  {k:>15}: {m:+.4f} ± {h:.4f} {rel}  CI contains 0: {abs(m) <= h}")


if __name__ == "__main__":
    main()
