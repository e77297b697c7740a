"""The supervisor over the wire: what running it as an OPC UA client in another process costs.

Runs a scenario (default: the 2-day fault campaign of the tests) three ways and prints the wall
time of each, the decisions and commands, and whether the event logs agree row for row:

1. ``run_scenario`` with the supervisor in the process;
2. ``darkfab serve SCENARIO --lockstep --remote-controller`` and ``darkfab supervise URL``,
   two subprocesses on 127.0.0.1 (wall time from the launch of serve to its exit, start-up
   of both included);

    .venv/bin/python tests/benchmarks/bench_supervise.py [--scenario FILE] [--cycle-s 3600]
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[2]
DARKFAB = [sys.executable, "-m", "darkfab.scenarios.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenario", default=str(ROOT / "tests/data/fault-campaign-2d.toml"))
    ap.add_argument("--cycle-s", default="3600")
    a = ap.parse_args()
    from darkfab.scenarios import load_scenario
    from darkfab.scenarios.runner import run_scenario

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t = time.perf_counter()
        local = run_scenario(load_scenario(a.scenario), out_dir=tmp / "local")
        wall_local = time.perf_counter() - t
        port = free_port()
        t = time.perf_counter()
        err = (tmp / "serve.err").open("w")
        serve = subprocess.Popen([*DARKFAB, "serve", a.scenario, "--lockstep",
                                  "--remote-controller", "--cycle-s", a.cycle_s, "--port",
                                  str(port), "--out", str(tmp / "remote")],
                                 stdout=subprocess.DEVNULL, stderr=err)
        while "serving " not in (tmp / "serve.err").read_text():
            if serve.poll() is not None:
                sys.exit((tmp / "serve.err").read_text())
            time.sleep(0.05)
        t_listen = time.perf_counter() - t
        sup = subprocess.run([*DARKFAB, "supervise", f"opc.tcp://127.0.0.1:{port}/darkfab/"],
                             capture_output=True, text=True, timeout=1800)
        serve.wait(timeout=300)
        wall_remote = time.perf_counter() - t
        same = pq.read_table(local.out_dir / "events.parquet").drop(["run_id"]).equals(
            pq.read_table(tmp / "remote" / "events.parquet").drop(["run_id"]))
        v_local = json.loads((local.out_dir / "verification.json").read_text())
        v_remote = json.loads((tmp / "remote" / "verification.json").read_text())
        ctl = local.summary.get("controller", {})
        print(f"scenario {a.scenario}: {local.summary['simulated_s'] / 86400:g} simulated days")
        print(f"in the process: wall {wall_local:.1f} s; decisions {ctl.get('decisions')}, "
              f"commands {ctl.get('commands')}; verdict ok={v_local['ok']}")
        print(f"over OPC UA (serve + supervise subprocesses): wall {wall_remote:.1f} s "
              f"(serve listening after {t_listen:.1f} s); {sup.stdout.strip()}; "
              f"verdict ok={v_remote['ok']}")
        print(f"event logs equal row for row (run id aside): {same}")


if __name__ == "__main__":
    main()
