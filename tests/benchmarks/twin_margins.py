"""The shipped mismatch (cdc-line-mismatch) over a long run: released out-of-spec material by
the truth audit with margin_s = 0 and with the shipped margin (docs/twin.md). Prints the
figures recorded in results/twin.md.

    .venv/bin/python tests/benchmarks/twin_margins.py --days 30 --margins 0 10
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from darkfab.scenarios import load_scenario, run_scenario


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--days", type=float, default=30.0)
    ap.add_argument("--margins", type=float, nargs="+", default=[0.0, 10.0])
    ap.add_argument("--scenario", default="cdc-line-mismatch")
    ap.add_argument("--replication", type=int, default=0)
    a = ap.parse_args()
    print(f"{a.scenario}, {a.days:g} days, replication {a.replication}")
    print("margin_s  released_oos_kg  released_oos_tablets  diverted_kg  tablets_accepted  cpu_s")
    for m in a.margins:
        s = load_scenario(a.scenario, [f"scenario.horizon_s={a.days * 86400.0}",
                                       f"continuous_lines.cdc.quality.margin_s={m}"])
        with tempfile.TemporaryDirectory() as d:
            c0 = time.process_time()
            res = run_scenario(s, out_dir=Path(d) / "run", replication=a.replication,
                               verify_run=False)
            cpu = time.process_time() - c0
        ln = res.summary["continuous_lines"]["cdc"]
        print(f"{m:8g}  {ln['released_out_of_spec_kg']:15.3f}  "
              f"{ln['released_out_of_spec_tablets']:20.0f}  {ln['diverted_kg']:11.1f}  "
              f"{ln['tablets_accepted']:16.0f}  {cpu:5.1f}")


if __name__ == "__main__":
    main()
