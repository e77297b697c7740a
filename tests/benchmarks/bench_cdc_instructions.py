"""Instructions per simulated day of the default plant (``cdc-line``) under two installations of
darkfab, counted by valgrind's callgrind: a figure that does not depend on the machine's load.

    .venv/bin/python tests/benchmarks/bench_cdc_instructions.py --before /other/.venv/bin/python
        [--short 1] [--long 3] [--jobs 2]

Each installation runs ``cdc-line`` for ``--short`` and ``--long`` simulated days under
``valgrind --tool=callgrind`` (``PYTHONHASHSEED=0 PYTHONMALLOC=malloc``: the same instructions
on every repeat); the instructions per simulated day are (I(long) − I(short)) / (long − short),
so the start-up and the imports cancel. Prints each count, each slope and their ratio. A run of
3 days takes about 5 minutes under valgrind.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor

from bench_cdc_compare import RUN  # the same run (its timing and print cancel in the slope)


def instructions(python: str, days: float) -> int:
    """Instructions callgrind counts for ``days`` of cdc-line under ``python``."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "callgrind.out")
        p = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                            python, "-c", RUN.format(horizon=days * 86400.0)],
                           capture_output=True, text=True, cwd=tmp,
                           env={**os.environ, "PYTHONHASHSEED": "0", "PYTHONMALLOC": "malloc"})
    m = re.search(r"I\s+refs:\s+([\d,]+)", p.stderr)
    if p.returncode != 0 or m is None:
        raise SystemExit(f"callgrind run failed ({python}, {days} d):\n{p.stderr[-2000:]}")
    return int(m.group(1).replace(",", ""))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", required=True, help="the other installation's python")
    ap.add_argument("--short", type=float, default=1.0, help="simulated days of the short run")
    ap.add_argument("--long", type=float, default=3.0, help="simulated days of the long run")
    ap.add_argument("--jobs", type=int, default=2, help="valgrind runs at once")
    args = ap.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (Debian: apt-get install valgrind)")
    if not args.long > args.short:
        raise SystemExit("--long must be more days than --short")
    runs = [(name, py, d) for name, py in (("before", args.before), ("now", sys.executable))
            for d in (args.short, args.long)]
    with ThreadPoolExecutor(args.jobs) as ex:
        counts = list(ex.map(lambda r: instructions(r[1], r[2]), runs))
    got = {(name, d): n for (name, _, d), n in zip(runs, counts)}
    slope = {}
    for name in ("before", "now"):
        a, b = got[(name, args.short)], got[(name, args.long)]
        slope[name] = (b - a) / (args.long - args.short)
        print(f"{name:>6}: I({args.short:g} d) = {a / 1e9:.3f} G, I({args.long:g} d) = "
              f"{b / 1e9:.3f} G, per simulated day {slope[name] / 1e9:.3f} G")
    print(f"ratio of instructions per simulated day, now / before: "
          f"{slope['now'] / slope['before']:.3f}")


if __name__ == "__main__":
    main()
