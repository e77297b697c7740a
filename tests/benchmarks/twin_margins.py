"""The shipped mismatch (cdc-line-mismatch) over a long run: released out-of-spec material by
the truth audit, and the yield, for pairs of margins in time (``margin_s``) and in content
(``guard_band_pct``) (docs/twin.md). Prints the figures recorded in results/twin.md, with the
released mass by cause (the audit's breakdown, ``released_out_of_spec_kg_by_cause``).

    .venv/bin/python tests/benchmarks/twin_margins.py --days 30 --points 0:0 10:0 20:0 0:1 20:1
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
    ap.add_argument("--points", nargs="+", default=["0:0", "10:0"],
                    help="margin_s:guard_band_pct pairs")
    ap.add_argument("--scenario", default="cdc-line-mismatch")
    ap.add_argument("--replication", type=int, default=0)
    ap.add_argument("--set", nargs="*", default=[], help="further overrides")
    a = ap.parse_args()
    print(f"{a.scenario}, {a.days:g} days, replication {a.replication} {' '.join(a.set)}")
    print("margin_s  guard_pct  released_oos_kg  released_oos_tablets  diverted_kg  "
          "tablets_accepted  accepted_frac  cpu_s")
    causes = []
    for pt in a.points:
        m, g = (float(x) for x in pt.split(":"))
        s = load_scenario(a.scenario, [f"scenario.horizon_s={a.days * 86400.0}",
                                       f"continuous_lines.cdc.quality.margin_s={m}",
                                       f"continuous_lines.cdc.quality.guard_band_pct={g}",
                                       *a.set])
        with tempfile.TemporaryDirectory() as d:
            c0 = time.process_time()
            res = run_scenario(s, out_dir=Path(d) / "run", replication=a.replication,
                               verify_run=False)
            cpu = time.process_time() - c0
        ln = res.summary["continuous_lines"]["cdc"]
        frac = ln["tablets_accepted"] / ln["tablets_produced"]
        print(f"{m:8g}  {g:9g}  {ln['released_out_of_spec_kg']:15.3f}  "
              f"{ln['released_out_of_spec_tablets']:20.0f}  {ln['diverted_kg']:11.1f}  "
              f"{ln['tablets_accepted']:16.0f}  {frac:13.4f}  {cpu:5.1f}", flush=True)
        by = ln.get("released_out_of_spec_kg_by_cause", {})
        causes.append((m, g, by, ln["diverted_kg_by_cause"], ln["pat"]["confusion"]))
    for m, g, by, div, conf in causes:
        print(f"margin {m:g} s, guard band {g:g} %: released by cause "
              + ", ".join(f"{k} {v:.3f} kg" for k, v in by.items())
              + "; diverted by cause " + ", ".join(f"{k} {v:.1f} kg" for k, v in div.items())
              + f"; NIR true/false alarms {conf['true_alarms']}/{conf['false_alarms']}, "
              f"missed excursions {conf['missed_excursions']}/{conf['excursions']}")


if __name__ == "__main__":
    main()
