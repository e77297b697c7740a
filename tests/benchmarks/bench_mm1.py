"""Benchmark: darkfab's shipped ``mm1`` scenario vs. a hand-written SimPy M/M/1.

A script, not a pytest test (pytest does not collect ``bench_*.py``). Run it from the repo root:

    .venv/bin/python tests/benchmarks/bench_mm1.py [--horizon-s 200000] [--repeat 3] [--profile]

Both models simulate an M/M/1 queue (λ = 1 /s, μ = 1/0.9 /s, ρ = 0.9) over the same horizon,
with no warm-up, in this one process:

* **darkfab**: scenario file → event log (Parquet) → KPIs, i.e. ``load_scenario`` +
  ``run_scenario`` (build, simulate, write events/states/genealogy/KPIs Parquet and
  ``summary.json``), all inside the timed region. The full event log is on (it always is).
  "Customers" is ``summary["units_completed"]`` (units absorbed by the sink before the
  horizon; with ``warmup_s = 0`` every completion counts); ``units_made`` (units created by
  the source) is printed too.
* **plain SimPy**: the idiomatic textbook model: a source process with
  ``env.timeout(expovariate)``, a ``simpy.Resource(capacity=1)``, a customer process that
  requests, holds for its service time and appends its time in system to a list. It
  records nothing else and writes no file. "Customers" is the length of that list
  (customers that completed before the horizon).

Each measurement is repeated ``--repeat`` times (darkfab and plain interleaved) and the
**best** (minimum) wall time is kept, the usual way to suppress scheduler noise. Throughput is
customers per wall-clock second; the ratio is darkfab / plain (goal: ≥ 0.7).
``--profile`` also runs darkfab once under cProfile and prints the top functions by tottime.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import platform
import pstats
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import simpy

from darkfab.scenarios import load_scenario, run_scenario

LAMBDA = 1.0  # arrivals per second
MEAN_SERVICE_S = 0.9  # 1/μ
SEED = 1


# --- (a) darkfab, end to end ----------------------------------------------------------------
def run_darkfab(horizon_s: float, out_dir: Path) -> dict:
    """Load the shipped scenario, run it and write every result; return counts and timings."""
    gc.collect()
    t0 = time.perf_counter()
    s = load_scenario("mm1", [f"scenario.horizon_s={horizon_s}", "scenario.warmup_s=0"])
    res = run_scenario(s, out_dir=out_dir)
    wall = time.perf_counter() - t0
    return {
        "wall_s": wall,
        "customers": res.summary["units_completed"],
        "units_made": res.plant.model.material.units_made,
        "events": res.summary["events"],
        "mean_time_in_system_s": res.summary["lead_time_s"]["mean"],
    }


# --- (b) plain SimPy, the way a SimPy user writes M/M/1 --------------------------------------
def run_plain_simpy(horizon_s: float, seed: int = SEED) -> dict:
    gc.collect()
    t0 = time.perf_counter()
    rng = random.Random(seed)
    env = simpy.Environment()
    server = simpy.Resource(env, capacity=1)
    times_in_system: list[float] = []

    def customer(env, server):
        arrive = env.now
        with server.request() as req:
            yield req
            yield env.timeout(rng.expovariate(1.0 / MEAN_SERVICE_S))
        times_in_system.append(env.now - arrive)

    def source(env, server):
        while True:
            yield env.timeout(rng.expovariate(LAMBDA))
            env.process(customer(env, server))

    env.process(source(env, server))
    env.run(until=horizon_s)
    wall = time.perf_counter() - t0
    n = len(times_in_system)
    return {
        "wall_s": wall,
        "customers": n,
        "mean_time_in_system_s": sum(times_in_system) / n if n else float("nan"),
    }


# --- profile ----------------------------------------------------------------------------------
def profile_darkfab(horizon_s: float, top: int) -> str:
    with tempfile.TemporaryDirectory(prefix="bench_mm1_prof_") as d:
        prof = cProfile.Profile()
        prof.enable()
        run_darkfab(horizon_s, Path(d) / "run")
        prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).strip_dirs().sort_stats("tottime").print_stats(top)
    return buf.getvalue()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--horizon-s", type=float, default=200_000.0,
                    help="simulated seconds for both models (default 200000)")
    ap.add_argument("--repeat", type=int, default=3,
                    help="repetitions of each measurement; the best is kept (default 3)")
    ap.add_argument("--profile", action="store_true",
                    help="also profile one darkfab run with cProfile (sorted by tottime)")
    ap.add_argument("--profile-top", type=int, default=25)
    args = ap.parse_args(argv)
    if args.repeat < 1 or args.horizon_s <= 0:
        ap.error("--repeat must be >= 1 and --horizon-s > 0")

    import simpy as _simpy  # noqa: F401 - version below
    from importlib.metadata import version
    print(f"python {platform.python_version()} ({platform.python_implementation()}), "
          f"simpy {version('simpy')}, darkfab {version('darkfab')}, "
          f"{platform.machine()}, {_cpu_count()} CPU(s)")
    print(f"M/M/1 λ={LAMBDA}/s, 1/μ={MEAN_SERVICE_S} s, horizon {args.horizon_s:,.0f} s, "
          f"warm-up 0, best of {args.repeat}")

    tmp = Path(tempfile.mkdtemp(prefix="bench_mm1_"))
    dark, plain = [], []
    try:
        for i in range(args.repeat):
            d = run_darkfab(args.horizon_s, tmp / f"run{i}")
            shutil.rmtree(tmp / f"run{i}", ignore_errors=True)
            p = run_plain_simpy(args.horizon_s)
            dark.append(d)
            plain.append(p)
            print(f"  rep {i + 1}: darkfab {d['wall_s']:.3f} s, plain SimPy {p['wall_s']:.3f} s",
                  flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    bd = min(dark, key=lambda r: r["wall_s"])
    bp = min(plain, key=lambda r: r["wall_s"])
    d_cps = bd["customers"] / bd["wall_s"]
    p_cps = bp["customers"] / bp["wall_s"]
    ratio = d_cps / p_cps
    print()
    print("| model | customers | best wall (s) | customers/s | event-log rows | rows/s "
          "| mean time in system (s) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    print(f"| darkfab mm1 (end to end, full event log) | {bd['customers']:,} | {bd['wall_s']:.3f} "
          f"| {d_cps:,.0f} | {bd['events']:,} | {bd['events'] / bd['wall_s']:,.0f} "
          f"| {bd['mean_time_in_system_s']:.2f} |")
    print(f"| plain SimPy M/M/1 | {bp['customers']:,} | {bp['wall_s']:.3f} | {p_cps:,.0f} "
          f"| - | - | {bp['mean_time_in_system_s']:.2f} |")
    print()
    print(f"darkfab units created (units_made): {bd['units_made']:,}")
    print(f"ratio darkfab/plain (customers/s): {ratio:.3f}  (goal >= 0.7: "
          f"{'met' if ratio >= 0.7 else 'NOT met'})")

    if args.profile:
        print()
        print(f"cProfile of one darkfab run (horizon {args.horizon_s:,.0f} s), by tottime:")
        print(profile_darkfab(args.horizon_s, args.profile_top))
    return 0


def _cpu_count() -> int:
    import os
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


if __name__ == "__main__":
    sys.exit(main())
