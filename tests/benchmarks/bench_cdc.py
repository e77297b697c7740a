"""Benchmark of the continuous direct compression plant (``cdc-line``): events and wall time per
simulated day, and the share of the run spent in the continuous models (feeders and their
look-ahead, RTD predictors, scans, diversion, audit, PAT: ``continuous_model_wall_s`` and
``continuous_model_cpu_s`` of summary.json), as wall time and as CPU time (the CPU share is the
one to quote on a shared machine: another process's load inflates wall times unevenly).

    .venv/bin/python tests/benchmarks/bench_cdc.py [--days 7] [--repeat 3] [--breakdown]

Prints the figures of each run, of the fastest one (by CPU time) and the load average.
``--breakdown`` adds one more run that times the parts of the continuous models (CPU time per
call of the line's sync, scan, routing, projection and unit lot split; the rest, feeder advances
at hopper and refill events and their look-ahead, is the remainder of the continuous clock):
where to look before optimising. The timers add ~1 µs per call to that run only.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

from darkfab.agents.cdc import ContinuousLine
from darkfab.scenarios import load_scenario, run_scenario

#: the parts of ContinuousLine timed by --breakdown (none calls another)
PARTS = {"_sync": "sync (feeders into the predictors)",
         "_scan": "scan (exits, PAT, audit samples)",
         "_route": "route (gate, audit)",
         "_project": "projection (next exit)",
         "lot_fractions": "unit lot split"}


@contextmanager
def timed_parts() -> Iterator[dict[str, list[float]]]:
    """Wrap the methods of :data:`PARTS` with CPU timers: name -> [calls, seconds]. Time the
    line spends meanwhile in listeners (``_apart``: quality agent, watchdogs) is left out, as
    the line's own clock leaves it out."""
    acc: dict[str, list[float]] = {name: [0, 0.0] for name in PARTS}
    saved = {name: getattr(ContinuousLine, name) for name in PARTS}

    def wrap(name, fn):
        def timed(self, *a, **kw):
            c0, apart0 = time.process_time(), self._apart_cpu_s
            try:
                return fn(self, *a, **kw)
            finally:
                r = acc[name]
                r[0] += 1
                r[1] += time.process_time() - c0 - (self._apart_cpu_s - apart0)
        return timed

    for name, fn in saved.items():
        setattr(ContinuousLine, name, wrap(name, fn))
    try:
        yield acc
    finally:
        for name, fn in saved.items():
            setattr(ContinuousLine, name, fn)


def breakdown(s, days: float) -> None:
    with timed_parts() as acc, tempfile.TemporaryDirectory() as tmp:
        c0 = time.process_time()
        res = run_scenario(s, out_dir=tmp)
        cpu = time.process_time() - c0
    cont = res.summary["continuous_lines"]["cdc"]["continuous_model_cpu_s"]
    print(f"breakdown (one more run, timers on): CPU {cpu / days:.3f} s per simulated day, "
          f"continuous models {cont / days:.3f} s per simulated day")
    print(f"{'part':<36} {'calls/day':>10} {'µs/call':>8} {'ms/day':>8} {'of cont.':>8}")
    rest = cont
    for name, label in PARTS.items():
        n, t = acc[name]
        rest -= t
        print(f"{label:<36} {n / days:10,.0f} {1e6 * t / max(n, 1):8.1f} "
              f"{1e3 * t / days:8.1f} {100 * t / cont:7.0f} %")
    print(f"{'rest (feeder events, look-ahead)':<36} {'':>10} {'':>8} {1e3 * rest / days:8.1f} "
          f"{100 * rest / cont:7.0f} %")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=float, default=7.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--breakdown", action="store_true",
                    help="one more run timing the parts of the continuous models")
    args = ap.parse_args()
    s = load_scenario("cdc-line", [f"scenario.horizon_s={args.days * 86400.0}"])
    print(f"cdc-line, {args.days:g} simulated days, python {sys.version.split()[0]}, "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")
    print(f"{'run':>4} {'wall s':>8} {'cpu s':>8} {'events':>10} {'events/day':>11} "
          f"{'wall s/day':>11} {'cont. wall':>10} {'share':>6} {'cont. cpu':>10} {'share':>6}")
    best = None
    for i in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            c0 = time.process_time()
            res = run_scenario(s, out_dir=tmp)
            cpu = time.process_time() - c0
        k = res.summary
        line = k["continuous_lines"]["cdc"]
        cw, cc = line["continuous_model_wall_s"], line["continuous_model_cpu_s"]
        row = (cpu, k["wall_s"], k["events"], cw, cc)
        print(f"{i + 1:4d} {row[1]:8.2f} {cpu:8.2f} {row[2]:10,d} {row[2] / args.days:11,.0f} "
              f"{row[1] / args.days:11.3f} {cw:10.2f} {cw / row[1]:6.2f} {cc:10.2f} "
              f"{cc / cpu:6.2f}")
        if best is None or row[0] < best[0]:
            best = row
    cpu, wall, events, cw, cc = best
    print(f"fastest (CPU): {events / args.days:,.0f} events per simulated day, "
          f"{wall / args.days:.3f} s wall and {cpu / args.days:.3f} s CPU per simulated day; "
          f"continuous models {cc / args.days:.3f} s CPU per simulated day = "
          f"{100 * cc / cpu:.0f} % of the CPU time ({100 * cw / wall:.0f} % of the wall time)")
    print(f"mass balance rel. error {res.summary['mass_balance_rel_error']:.2e}, "
          f"released out of spec {line['released_out_of_spec_kg']} kg, "
          f"state of control {line['state_of_control_fraction']:.3f}; load average now "
          f"{os.getloadavg()[0]:.2f}")
    if args.breakdown:
        breakdown(s, args.days)


if __name__ == "__main__":
    main()
