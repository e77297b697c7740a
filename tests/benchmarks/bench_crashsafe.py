"""Cost of crash-safe results: CPU time per simulated day with the default flush policy (every
5 s of wall time or 65,536 rows, to Arrow IPC streams, the rows going on into the Parquet
files) and with tables written straight to Parquet (``flush=None``: no stream, nothing readable
after a SIGKILL), on ``cdc-line`` and ``amr-warehouse``.

    .venv/bin/python tests/benchmarks/bench_crashsafe.py [--repeat 5] [--days-cdc 3]
        [--days-amr 1] [--flush-s 5]

After a short warm-up run of each mode, runs alternate between the two modes (so that load
drifts hit both alike). Prints each run, the minimum and median CPU seconds per simulated day of
each mode and their ratio, then the CPU cost of the recorder alone (a million events recorded
and closed in both modes: the overhead per event, free of the simulation's noise). CPU time
(``time.process_time``) of this process is the figure to quote on a shared machine; the fsync
of a timed flush waits for the disk and shows in wall time only. The verification pass is left
out (``verify_run=False``): it is the same in both modes.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from darkfab.factory.recorder import EventLog, FlushPolicy, staging
from darkfab.scenarios import load_scenario, run_scenario


def one(name: str, days: float, flush: FlushPolicy | None) -> tuple[float, float, int]:
    """(CPU s, wall s, events) of one run of ``name`` over ``days`` simulated days."""
    s = load_scenario(name, [f"scenario.horizon_s={days * 86400.0}"])
    with tempfile.TemporaryDirectory() as d:
        c0, w0 = time.process_time(), time.perf_counter()
        r = run_scenario(s, out_dir=Path(d), verify_run=False, flush=flush)
        return time.process_time() - c0, time.perf_counter() - w0, r.summary["events"]


def recorder_alone(path: Path, rows: int, flush: FlushPolicy | None) -> float:
    """CPU seconds to record ``rows`` events and close the log (the recorder's share only)."""
    c0 = time.process_time()
    with staging(flush):
        log = EventLog(path, "bench-s1-r0-00000000", 0)
    for i in range(rows):
        log.record(i * 0.5, "state", f"machine{i % 40}", i, "tablet", f"n{i % 25}", "Execute")
    log.close()
    return time.process_time() - c0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--days-cdc", type=float, default=3.0)
    ap.add_argument("--days-amr", type=float, default=1.0)
    ap.add_argument("--flush-s", type=float, default=FlushPolicy().every_s)
    a = ap.parse_args()
    modes = {"crash-safe (default)": FlushPolicy(every_s=a.flush_s),
             "at the end only": None}
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    for name, days in (("cdc-line", a.days_cdc), ("amr-warehouse", a.days_amr)):
        for flush in modes.values():  # warm-up (imports, first-run caches), not counted
            one(name, min(days, 0.5), flush)
        cpu: dict[str, list[float]] = {m: [] for m in modes}
        for i in range(a.repeat):
            for mode, flush in modes.items():
                c, w, n = one(name, days, flush)
                cpu[mode].append(c / days)
                print(f"  {name:14s} {mode:22s} run {i}: {c:7.2f} s CPU, {w:7.2f} s wall, "
                      f"{n:,} events over {days:g} d")
        for mode in modes:
            print(f"{name:14s} {mode:22s} CPU s per simulated day: min "
                  f"{min(cpu[mode]):.3f}, median {statistics.median(cpu[mode]):.3f}")
        safe, plain = (min(cpu[m]) for m in modes)
        print(f"{name:14s} overhead (min over min): {100 * (safe / plain - 1):+.1f} %")
    rows = 1_000_000
    with tempfile.TemporaryDirectory() as d:
        cpu = {m: [] for m in modes}
        for i in range(a.repeat):
            for mode, flush in modes.items():
                cpu[mode].append(recorder_alone(Path(d) / f"e{i}.parquet", rows, flush))
    safe, plain = (min(cpu[m]) for m in modes)
    print(f"recorder alone, {rows:,} events recorded and closed: CPU min {safe:.3f} s "
          f"crash-safe, {plain:.3f} s at the end only: {1e6 * (safe - plain) / rows:+.2f} µs "
          "per event")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
