"""Benchmark: what calibration data cost a run, and what the fit costs.

A script, not a pytest test (pytest does not collect ``bench_*.py``). From the repo root:

    .venv/bin/python tests/benchmarks/bench_calibration.py [--days 2] [--repeat 3]

Runs ``cdc-line`` for ``--days`` with the default logging (NIR readings and load cells at
events) and with ``logging.load_cells_s`` = 10 and 20 s, interleaved ``--repeat`` times, each in
this process; prints the CPU time of each run (minimum and median) and the rows written. Then
times ``calibrate_run`` (the fits) on the last run with samples every 10 s (no tracer: the RTD is
skipped, three feed-factor curves are fitted).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

from darkfab.scenarios import load_scenario, run_scenario
from darkfab.scenarios.calibrate import calibrate_run


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--days", type=float, default=2.0)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    variants = {"default": [], "load_cells_s=20": ["continuous_lines.cdc.logging.load_cells_s=20"],
                "load_cells_s=10": ["continuous_lines.cdc.logging.load_cells_s=10"]}
    cpu: dict[str, list[float]] = {k: [] for k in variants}
    rows: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as tmp:
        last = None
        for r in range(a.repeat):
            for name, sets in variants.items():
                s = load_scenario("cdc-line", [f"scenario.horizon_s={a.days * 86400}", *sets])
                out = Path(tmp) / f"{name}-{r}"
                t0 = time.process_time()
                run_scenario(s, out_dir=out)
                cpu[name].append(time.process_time() - t0)
                rows[name] = pq.read_metadata(out / "load_cells.parquet").num_rows
                last = out
        print(f"cdc-line, {a.days:g} days, {a.repeat} runs each (CPU s: min, median; "
              "load_cells.parquet rows)")
        for name, v in cpu.items():
            print(f"  {name:16s} {min(v):7.2f} {statistics.median(v):7.2f}  {rows[name]:8d}")
        t0 = time.process_time()
        res = calibrate_run(last)
        fits = len(res["lines"]["cdc"]["feeders"])
        print(f"calibrate_run on the last load_cells_s=10 run: {time.process_time() - t0:.2f} s "
              f"CPU ({fits} feed-factor fits)")


if __name__ == "__main__":
    main()
