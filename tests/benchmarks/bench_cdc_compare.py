"""Side-by-side CPU cost of the default plant (``cdc-line``) under two installations of darkfab:
this checkout and another one (e.g. an earlier commit in its own venv), run alternately in fresh
subprocesses so that both see the same machine load.

    .venv/bin/python tests/benchmarks/bench_cdc_compare.py --before /path/to/other/.venv/bin/python
        [--days 7] [--repeat 3]

Prints each run's CPU seconds, events and CPU seconds per simulated day, then the least CPU per
simulated day of each installation (the figure least disturbed by other load) and their ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

RUN = """
import json, sys, tempfile, time
from darkfab.scenarios import load_scenario, run_scenario
s = load_scenario("cdc-line", ["scenario.horizon_s={horizon}"])
with tempfile.TemporaryDirectory() as tmp:
    c0 = time.process_time()
    res = run_scenario(s, out_dir=tmp)
    cpu = time.process_time() - c0
line = res.summary["continuous_lines"]["cdc"]
print(json.dumps({{"cpu_s": cpu, "events": res.summary["events"],
                  "state_of_control": line["state_of_control_fraction"],
                  "mass_balance": res.summary["mass_balance_rel_error"]}}))
"""


def run(python: str, days: float) -> dict:
    code = RUN.format(horizon=days * 86400.0)
    p = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True,
                       env={**os.environ, "PYTHONHASHSEED": "0"})
    return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", required=True, help="the other installation's python")
    ap.add_argument("--days", type=float, default=7.0)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    pythons = {"before": args.before, "now": sys.executable}
    best: dict[str, dict] = {}
    print(f"cdc-line, {args.days:g} simulated days, {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.2f}")
    print(f"{'run':>4} {'which':>7} {'cpu s':>8} {'events':>10} {'cpu s/day':>10} "
          f"{'state of control':>17}")
    for i in range(args.repeat):
        for name, py in pythons.items():
            r = run(py, args.days)
            print(f"{i + 1:4d} {name:>7} {r['cpu_s']:8.2f} {r['events']:10,d} "
                  f"{r['cpu_s'] / args.days:10.3f} {r['state_of_control']:17.3f}")
            if name not in best or r["cpu_s"] < best[name]["cpu_s"]:
                best[name] = r
    b, n = best["before"]["cpu_s"] / args.days, best["now"]["cpu_s"] / args.days
    print(f"least CPU per simulated day: before {b:.3f} s, now {n:.3f} s, ratio {n / b:.2f}; "
          f"load average now {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
