"""Cost of ``darkfab run --live`` with a browser attached.

Runs the same scenario as a user would (``darkfab run SCENARIO --days D --quiet --no-verify``
in a subprocess) without and with ``--live``; with ``--live`` a headless Chromium (Playwright,
Debian's ``/usr/bin/chromium``) has the live page open for the whole run, polling every 0.5 s.
Prints the simulation process's wall and CPU time (user + system, from ``wait4``), the least of
``--repeat`` runs each, and the slow-down.

    .venv/bin/python tests/benchmarks/bench_live.py [--scenario amr-warehouse] [--days 7]
                                                   [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(scenario: str, days: float, browser=None) -> tuple[float, float, str]:
    """(wall s, CPU s, the page's status line) of one run in a subprocess."""
    cmd = [sys.executable, "-m", "darkfab.scenarios.cli", "run", scenario, "--days", str(days),
           "--quiet", "--no-verify", "--out", tempfile.mkdtemp(prefix="bench-live-")]
    port = free_port()
    if browser is not None:
        cmd += ["--live", "--port", str(port)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            stdin=subprocess.DEVNULL)
    updates = ""
    page = None
    if browser is not None:
        url = f"http://127.0.0.1:{port}/"
        while True:
            try:
                urllib.request.urlopen(url, timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        page = browser.new_page(viewport={"width": 1400, "height": 850})
        page.goto(url)
    while True:  # reap with wait4 to get the simulation process's own CPU time
        pid, _, ru = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        time.sleep(0.05)  # the page polls by itself
    wall = time.perf_counter() - t0
    proc.returncode = 0
    if page is not None:
        page.wait_for_timeout(600)  # the page's last poll
        updates = page.inner_text("#status")
        page.close()
    return wall, ru.ru_utime + ru.ru_stime, updates


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenario", default="amr-warehouse")
    ap.add_argument("--days", type=float, default=7.0)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        rows = {"plain": [], "live": []}
        for _ in range(a.repeat):  # interleaved, so machine load hits both alike
            rows["plain"].append(run(a.scenario, a.days))
            rows["live"].append(run(a.scenario, a.days, b))
        b.close()
    best = {k: (min(r[0] for r in v), min(r[1] for r in v)) for k, v in rows.items()}
    for k, (wall, cpu) in best.items():
        print(f"{a.scenario} {a.days:g} d {k:5s}: wall {wall:6.2f} s  CPU {cpu:6.2f} s")
    print(f"live status at the end: {rows['live'][-1][2]!r}")
    print(f"slow-down with --live and a browser: wall {best['live'][0] / best['plain'][0] - 1:+.1%}, "
          f"CPU {best['live'][1] / best['plain'][1] - 1:+.1%}")


if __name__ == "__main__":
    main()
