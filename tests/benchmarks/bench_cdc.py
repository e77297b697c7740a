"""Benchmark of the continuous direct compression plant (``cdc-line``): events and wall time per
simulated day, and the share of the run spent in the continuous models (feeders and their
look-ahead, RTD predictors, scans, diversion, audit, PAT: ``continuous_model_wall_s`` and
``continuous_model_cpu_s`` of summary.json), as wall time and as CPU time (the CPU share is the
one to quote on a shared machine: another process's load inflates wall times unevenly).

    .venv/bin/python tests/benchmarks/bench_cdc.py [--days 7] [--repeat 3] [--breakdown]

Prints the figures of each run, of the fastest one (by CPU time) and the load average.
``--breakdown`` adds two runs with CPU timers: one on the parts of the continuous models (the
line's sync, scan, routing, projection and unit lot split; the rest, feeder advances at hopper
and refill events and their look-ahead, is the remainder of the continuous clock), one on the
numerical kernels under them (feeder advances, predictor pushes and evaluations). It prints where
the time goes, and the share the continuous models would have if they cost their kernels only
(a floor for this design in numpy). The timers add ~1 µs per call to those runs only.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

from darkfab.agents.line import ContinuousLine
from darkfab.agents.line.engine import HybridEngine
from darkfab.factory.feeder import LossInWeightFeeder
from darkfab.factory.rtd_predictor import RTDPredictor
from darkfab.scenarios import load_scenario, run_scenario

#: the parts of the line timed by --breakdown (none calls another)
PARTS = {(HybridEngine, "sync"): "sync (feeders into the predictors)",
         (ContinuousLine, "_scan"): "scan (exits, PAT, audit samples)",
         (ContinuousLine, "_route"): "route (gate, audit)",
         (ContinuousLine, "_project"): "projection (next exit)",
         (ContinuousLine, "lot_fractions"): "unit lot split"}
#: the numerical kernels under those parts (none calls another): advancing a feeder, pushing
#: inputs into a predictor, evaluating its outputs and output masses
KERNELS = {(LossInWeightFeeder, "_run"): "feeder advance",
           (RTDPredictor, "push"): "predictor push",
           (RTDPredictor, "push_many"): "predictor push (rows)",
           (RTDPredictor, "output"): "predictor output",
           (RTDPredictor, "output_with"): "predictor output (projected rows)",
           (RTDPredictor, "output_masses"): "predictor output masses"}


@contextmanager
def timed(methods: dict[tuple[type, str], str]) -> Iterator[dict[tuple[type, str], list]]:
    """Wrap ``methods`` with CPU timers: (class, name) -> [calls, seconds]. Time spent meanwhile
    in the line's listeners (``_apart``: quality agent, watchdogs) is left out, as the line's
    own clock leaves it out."""
    acc: dict[tuple[type, str], list] = {key: [0, 0.0] for key in methods}
    saved = {key: getattr(*key) for key in methods}

    def wrap(key, fn):
        def timer(self, *a, **kw):
            apart = getattr(self, "_apart_cpu_s", 0.0)
            c0 = time.process_time()
            try:
                return fn(self, *a, **kw)
            finally:
                r = acc[key]
                r[0] += 1
                r[1] += (time.process_time() - c0
                         - (getattr(self, "_apart_cpu_s", 0.0) - apart))
        return timer

    for key, fn in saved.items():
        setattr(*key, wrap(key, fn))
    try:
        yield acc
    finally:
        for (cls, name), fn in saved.items():
            setattr(cls, name, fn)


def breakdown(s, days: float) -> None:
    """One run with timers on the parts of the line, one with timers on the kernels."""
    table = []
    for methods in (PARTS, KERNELS):
        with timed(methods) as acc, tempfile.TemporaryDirectory() as tmp:
            c0 = time.process_time()
            res = run_scenario(s, out_dir=tmp)
            cpu = time.process_time() - c0
        cont = res.summary["continuous_lines"]["cdc"]["continuous_model_cpu_s"]
        table.append((acc, cpu, cont))
    print(f"{'part (timers on: +~1 µs a call)':<36} {'calls/day':>10} {'µs/call':>8} "
          f"{'ms/day':>8} {'of cont.':>8}")
    (acc, cpu, cont), (kacc, kcpu, kcont) = table
    rest = cont
    for key, (n, t) in acc.items():
        rest -= t
        print(f"{PARTS[key]:<36} {n / days:10,.0f} {1e6 * t / max(n, 1):8.1f} "
              f"{1e3 * t / days:8.1f} {100 * t / cont:7.0f} %")
    print(f"{'rest (feeder events, look-ahead)':<36} {'':>10} {'':>8} {1e3 * rest / days:8.1f} "
          f"{100 * rest / cont:7.0f} %")
    print(f"{'of which numerical kernels':<36}")
    kern = 0.0
    for key, (n, t) in kacc.items():
        kern += t
        print(f"  {KERNELS[key]:<34} {n / days:10,.0f} {1e6 * t / max(n, 1):8.1f} "
              f"{1e3 * t / days:8.1f} {100 * t / kcont:7.0f} %")
    other = kcpu - kcont  # the rest of the run: discrete simulation, logging, output files
    print(f"continuous models {1e3 * cont / days:.1f} ms per simulated day, of which kernels "
          f"{1e3 * kern / days:.1f}; the rest of the run {1e3 * other / days:.1f}. Share of the "
          f"continuous models in the timed run {100 * cont / cpu:.0f} %; if they cost their "
          f"kernels only {100 * kern / (kern + other):.0f} %")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=float, default=7.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--breakdown", action="store_true",
                    help="two more runs timing the parts and kernels of the continuous models")
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
