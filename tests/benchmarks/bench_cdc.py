"""Benchmark of the continuous direct compression plant (``cdc-line``): events and wall time per
simulated day, and the share of the wall time spent in the continuous models (feeders, RTD
predictors, diversion, PAT: ``continuous_model_wall_s`` of summary.json).

    .venv/bin/python tests/benchmarks/bench_cdc.py [--days 7] [--repeat 3]

Prints the figures of each run and of the fastest one.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

from darkfab.scenarios import load_scenario, run_scenario


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=float, default=7.0)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    s = load_scenario("cdc-line", [f"scenario.horizon_s={args.days * 86400.0}"])
    print(f"cdc-line, {args.days:g} simulated days, python {sys.version.split()[0]}, "
          f"{os.cpu_count()} cores")
    print(f"{'run':>4} {'wall s':>8} {'cpu s':>8} {'events':>10} {'events/day':>11} "
          f"{'wall s/day':>11} {'continuous s':>13} {'share':>6}")
    best = None
    for i in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            c0 = time.process_time()
            res = run_scenario(s, out_dir=tmp)
            cpu = time.process_time() - c0
        k = res.summary
        cont = k["continuous_lines"]["cdc"]["continuous_model_wall_s"]
        row = (k["wall_s"], cpu, k["events"], cont)
        print(f"{i + 1:4d} {row[0]:8.2f} {cpu:8.2f} {row[2]:10,d} {row[2] / args.days:11,.0f} "
              f"{row[0] / args.days:11.3f} {cont:13.2f} {cont / row[0]:6.2f}")
        if best is None or row[0] < best[0]:
            best = row
    wall, cpu, events, cont = best
    print(f"fastest: {events / args.days:,.0f} events per simulated day, "
          f"{wall / args.days:.3f} s wall per simulated day, continuous models "
          f"{cont / args.days:.3f} s per simulated day = {100 * cont / wall:.0f} % of the wall time")
    line = res.summary["continuous_lines"]["cdc"]
    print(f"mass balance rel. error {res.summary['mass_balance_rel_error']:.2e}, "
          f"released out of spec {line['released_out_of_spec_kg']} kg, "
          f"state of control {line['state_of_control_fraction']:.3f}")


if __name__ == "__main__":
    main()
