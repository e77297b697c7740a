"""Benchmark: start-up time of the ``darkfab`` command line.

A script, not a pytest test (pytest does not collect ``bench_*.py``). From the repo root:

    .venv/bin/python tests/benchmarks/bench_startup.py [--repeat 7]
    .venv/bin/python tests/benchmarks/bench_startup.py --before OTHER/.venv/bin/darkfab

Each command runs as a fresh subprocess (``--repeat`` times, commands interleaved, and with
``--before`` the two installations interleaved too, so that a busy machine slows both alike).
Per command: wall-clock time (``perf_counter`` around spawn → exit) and the child's CPU time
(user + system, from ``os.wait4``), minimum and median; and the child's peak resident memory
(median). Commands:

* ``darkfab --help``, ``darkfab --version``, ``darkfab list``;
* ``darkfab check scenarios/files/cdc-line.toml`` (schema + cross-reference validation);
* ``import darkfab.scenarios.cli`` in the installation's Python (the module's import cost), and
  ``python -c pass`` (the interpreter alone: the floor under every figure).

Goals (issue 18): ``--help`` under 0.5 s and ``check`` under 1 s of wall-clock time.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHECK_FILE = ROOT / "scenarios" / "files" / "cdc-line.toml"


def commands(darkfab: Path) -> dict[str, list[str]]:
    """The measured command lines for one installation (its console script ``darkfab``)."""
    python = str(darkfab.parent / "python")
    exe = str(darkfab)
    return {
        "darkfab --help": [exe, "--help"],
        "darkfab --version": [exe, "--version"],
        "darkfab check cdc-line.toml": [exe, "check", str(CHECK_FILE)],
        "darkfab list": [exe, "list"],
        "import darkfab.scenarios.cli": [python, "-c", "import darkfab.scenarios.cli"],
        "python -c pass": [python, "-c", "pass"],
    }


def measure(argv: list[str]) -> tuple[float, float, float, int]:
    """(wall s, CPU s, peak RSS MiB, exit code) of one run of ``argv``."""
    t0 = time.perf_counter()
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         cwd=ROOT)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen.wait
    return wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024.0, p.returncode


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=7, help="runs per command (default 7)")
    ap.add_argument("--darkfab", type=Path, default=Path(sys.executable).parent / "darkfab",
                    help="the console script to measure (default: this venv's)")
    ap.add_argument("--before", type=Path, help="another installation's darkfab script, "
                    "measured interleaved with --darkfab and shown side by side")
    args = ap.parse_args(argv)
    installs = {"after": args.darkfab}
    if args.before is not None:
        installs = {"before": args.before, **installs}
    for label, exe in installs.items():
        if not exe.exists():
            ap.error(f"{label}: no such file {exe}")
    cmds = {label: commands(exe) for label, exe in installs.items()}
    names = list(next(iter(cmds.values())))
    runs: dict[tuple[str, str], list[tuple[float, float, float, int]]] = {
        (label, n): [] for label in installs for n in names}
    for label in installs:  # warm the file cache; not counted
        for n in names:
            measure(cmds[label][n])
    for _ in range(args.repeat):
        for n in names:
            for label in installs:
                runs[(label, n)].append(measure(cmds[label][n]))

    load = os.getloadavg()
    print(f"darkfab start-up, {args.repeat} runs per command; Python "
          f"{platform.python_version()}, {os.cpu_count()} CPUs, load average "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    for label, exe in installs.items():
        print(f"  {label}: {exe}")
    hdr = f"{'command':30s} {'':6s} {'wall min':>9s} {'wall med':>9s} {'CPU min':>9s} " \
          f"{'CPU med':>9s} {'RSS MiB':>8s} {'exit':>5s}"
    print(hdr)
    for n in names:
        for label in installs:
            r = runs[(label, n)]
            wall = [x[0] for x in r]
            cpu = [x[1] for x in r]
            rss = statistics.median(x[2] for x in r)
            codes = sorted({x[3] for x in r})
            print(f"{n:30s} {label:6s} {min(wall):9.3f} {statistics.median(wall):9.3f} "
                  f"{min(cpu):9.3f} {statistics.median(cpu):9.3f} {rss:8.0f} "
                  f"{','.join(map(str, codes)):>5s}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
