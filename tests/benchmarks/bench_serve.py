"""Pacing of ``darkfab serve``: does the model keep pace with the wall clock?

Serves a scenario at ``--speed`` simulated seconds per wall second for ``--hours`` simulated
hours, as a user would (``darkfab serve SCENARIO --speed X --hours H`` in a subprocess, with one
OPC UA client subscribed to nothing, reading the plant clock every 0.5 s), and prints the
pacing figures that serve prints at the end (lag = wall seconds behind the wall clock after
each tick of 0.1 s) with the wall time of the whole run.

    .venv/bin/python tests/benchmarks/bench_serve.py [--scenario cdc-line] [--speed 3600]
                                                    [--hours 24]
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import subprocess
import sys
import tempfile
import time


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def poll(url: str, proc: subprocess.Popen, t0: float) -> tuple[int, float]:
    """(clock reads, wall s from launch to the first read); reads until ``Plant/Done``."""
    from asyncua import Client

    while proc.poll() is None:  # wait for the server (build and start take a few seconds)
        try:
            async with Client(url) as c:
                idx = await c.get_namespace_index("urn:darkfab")
                plant = await c.nodes.objects.get_child(f"{idx}:Plant")
                clock = await plant.get_child(f"{idx}:PlantClock")
                done = await plant.get_child(f"{idx}:Done")
                n, first = 0, time.perf_counter() - t0
                while not await done.read_value():
                    await clock.read_value()
                    n += 1
                    await asyncio.sleep(0.5)
                return n, first
        except (OSError, asyncio.TimeoutError, ConnectionError):
            await asyncio.sleep(0.2)
    return 0, float("nan")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenario", default="cdc-line")
    ap.add_argument("--speed", type=float, default=3600.0)
    ap.add_argument("--hours", type=float, default=24.0)
    a = ap.parse_args()
    port = free_port()
    cmd = [sys.executable, "-m", "darkfab.scenarios.cli", "serve", a.scenario, "--speed",
           str(a.speed), "--hours", str(a.hours), "--port", str(port), "--out",
           tempfile.mkdtemp(prefix="bench-serve-")]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    reads, first = asyncio.run(poll(f"opc.tcp://127.0.0.1:{port}/darkfab/", proc, t0))
    out, err = proc.communicate()
    wall = time.perf_counter() - t0
    pacing = [ln for ln in err.splitlines() if ln.startswith(("pacing:", "serve:"))]
    print(f"{a.scenario}, {a.hours:g} simulated h at speed {a.speed:g} "
          f"(ideal {3600 * a.hours / a.speed:.1f} wall s): whole run {wall:.1f} wall s, "
          f"first client read {first:.1f} s after launch, {reads} client reads, "
          f"exit {proc.returncode}")
    for ln in pacing:
        print("  " + ln)


if __name__ == "__main__":
    main()
