"""Bottleneck detection with transport on ``amr-warehouse`` and ``amr-warehouse-wide`` (a
script, not a test).

For each scenario and replication it runs D simulated days and prints the throughput, the top
three resources of the combined ranking (``summary.json`` → ``bottlenecks``: machines and
transport routes, fleet, lanes, crossings and chargers by mean active period, see
:mod:`darkfab.factory.transport_activity`) and the ratio of the first to the second mean active
period (how clear the verdict is). The fast test is
``tests/scenarios/test_bottleneck_transport.py`` (one day, one replication); this script shows
that the verdict holds over the full horizon and other replications.

    .venv/bin/python tests/benchmarks/bench_bottleneck.py --days 7 --replications 3
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from darkfab.scenarios import load_scenario, run_scenario


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=float, default=7.0)
    ap.add_argument("--replications", type=int, default=3)
    args = ap.parse_args()
    print(f"{'scenario':<20} {'rep':>3} {'wall s':>7} {'pallets/h':>9}  top 3 by mean active "
          "period (s) [active share]; first/second")
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("amr-warehouse", "amr-warehouse-wide"):
            s = load_scenario(name, [f"scenario.horizon_s={args.days * 86400.0}"])
            for rep in range(args.replications):
                t0 = time.perf_counter()
                res = run_scenario(s, replication=rep, out_dir=Path(tmp) / f"{name}-{rep}",
                                   verify_run=False)
                wall = time.perf_counter() - t0
                b = res.summary["bottlenecks"]
                top = "; ".join(f"{r['resource']} ({r['kind']}) {r['mean_active_period_s']:,.0f}"
                                f" [{r['active_share']:.2f}]" for r in b[:3])
                ratio = b[0]["mean_active_period_s"] / max(b[1]["mean_active_period_s"], 1e-9)
                print(f"{name:<20} {rep:>3} {wall:>7.1f} {res.summary['throughput_per_h']:>9.3f}"
                      f"  {top}; {ratio:.1f}x", flush=True)


if __name__ == "__main__":
    main()
