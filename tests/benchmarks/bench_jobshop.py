"""Job-shop benchmark: ft06 and ft10, every dispatching rule and CP-SAT (simulated makespans).

Run: ``.venv/bin/python tests/benchmarks/bench_jobshop.py [--time-limit 60]``. Prints a Markdown
table (makespan, gap to the proven optimum, wall time, solver status) and exits non-zero unless
CP-SAT reaches 55 on ft06 and at most 3 % above 930 on ft10 within the limit.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys

from darkfab.scenarios.jobshop import benchmark, format_benchmark


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--time-limit", type=float, default=60.0)
    args = ap.parse_args()
    rows = benchmark(("ft06", "ft10"), time_limit_s=args.time_limit)
    print(format_benchmark(rows))
    print(f"\nCP-SAT: {args.time_limit:g} s limit, 2 workers, deterministic mode; "
          f"{os.cpu_count()} cores, Python {platform.python_version()}")
    cp = {r.instance: r for r in rows if r.scheduler == "cpsat"}
    ok = cp["ft06"].makespan == 55 and cp["ft10"].makespan <= 930 * 1.03 \
        and all(r.wall_s <= args.time_limit * 1.1 for r in cp.values())
    print("goal (ft06 = 55, ft10 <= 957.9 within the limit):", "met" if ok else "NOT met")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
