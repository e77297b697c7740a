"""Alarm system cost per event and memory against history (darkfab.factory.alarms).

Raises, acknowledges and clears alarms of 50 sources over a simulated year at a steady rate
(plus a burst of 30 alarms every 6 h, so floods are tracked too), writing alarms.parquet, and
prints the CPU time per alarm (raise, a third acknowledged, clear, row written; the driver's
own heap included) and, with ``--memory``, the memory traced (tracemalloc, which slows the run)
in each tenth of the run: both must stay flat as the history grows. A million alarms a year is
about 19 per 10 minutes: the plant is in flood nearly all the time, the worst case for the
flood window.

    .venv/bin/python tests/benchmarks/bench_alarms.py [alarms] [--memory]
"""

from __future__ import annotations

import heapq
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from darkfab.factory.alarms import AlarmSystem
from darkfab.factory.recorder import ALARMS_SCHEMA, TableWriter


def main(n: int = 1_000_000, memory: bool = False) -> None:
    rng = np.random.default_rng(1)
    year = 365 * 86400.0
    gaps = rng.exponential(year / n, n)
    lives = rng.exponential(1800.0, n)
    with tempfile.TemporaryDirectory() as d:
        w = TableWriter(Path(d) / "alarms.parquet", ALARMS_SCHEMA, "bench", 0)
        s = AlarmSystem(w, warmup_s=86400.0)
        pending: list[tuple[float, str, str]] = []  # clears due (a heap)
        if memory:
            tracemalloc.start()
        t = 0.0
        step = n // 10
        t0 = time.process_time()
        print(f"{'alarms':>9} {'sim days':>9} {'µs/alarm':>9} {'active':>7} {'traced MB':>10}")
        for k in range(n):
            t += gaps[k]
            while pending and pending[0][0] <= t:
                tc, src, cond = heapq.heappop(pending)
                s.clear(tc, src, cond)
            src, cond = f"unit{k % 50}", f"c{k % 7}"
            burst = 30 if k % 2000 == 0 else 1
            for b in range(burst):
                a = s.raise_alarm(t, src, f"{cond}.{b}" if b else cond, "", "high")
                if k % 3 == 0:
                    s.acknowledge(t, a.id, "bench")
                heapq.heappush(pending, (t + lives[k], src, a.condition))
            if (k + 1) % step == 0:
                dt = time.process_time() - t0
                cur = tracemalloc.get_traced_memory()[0] / 1e6 if memory else float("nan")
                print(f"{k + 1:>9} {t / 86400:>9.1f} {1e6 * dt / step:>9.2f} "
                      f"{s.in_memory():>7} {cur:>10.2f}")
                t0 = time.process_time()
        s.finish(t)
        k = s.kpis(t)
        w.close()
        print(f"raised {k['raised']}, peak per window {k['peak_per_window']}, floods "
              f"{k['floods']}, time in flood {k['time_in_flood_pct']:.3f} %")


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--memory"]
    main(int(args[0]) if args else 1_000_000, "--memory" in sys.argv)
