"""Size and responsiveness of the ``darkfab view`` page for a long run.

Runs a scenario (default: ``amr-warehouse`` for 30 days; or reuses ``--run-dir``), writes its
view page and prints: the page's size, the time to build it, and in headless Chromium the time
until the page is ready (inflate + parse) and the mean time to jump to a random time and redraw
(``darkfabView.setTime``), over 200 jumps.

    .venv/bin/python tests/benchmarks/bench_view.py [--days 30] [--run-dir DIR]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from darkfab.scenarios import load_scenario, run_scenario
from darkfab.scenarios.view import write_view

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenario", default="amr-warehouse")
    ap.add_argument("--days", type=float, default=30.0)
    ap.add_argument("--run-dir", type=Path, help="an existing run folder (no new run)")
    a = ap.parse_args()
    run_dir = a.run_dir
    if run_dir is None:
        run_dir = Path(tempfile.mkdtemp(prefix="bench-view-"))
        s = load_scenario(a.scenario, [f"scenario.horizon_s={a.days * 86400.0}"])
        t0 = time.perf_counter()
        run_scenario(s, out_dir=run_dir, verify_run=False)
        print(f"run: {time.perf_counter() - t0:.1f} s wall -> {run_dir}")
    t0 = time.perf_counter()
    html = write_view(run_dir)
    build = time.perf_counter() - t0
    size = html.stat().st_size
    events = (run_dir / "events.parquet").stat().st_size
    print(f"view.html: {size / 1e6:.2f} MB (events.parquet {events / 1e6:.2f} MB), "
          f"built in {build:.1f} s")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        page = b.new_page(viewport={"width": 1400, "height": 850})
        t0 = time.perf_counter()
        page.goto(html.as_uri())
        page.wait_for_function("window.darkfabView && window.darkfabView.ready", timeout=120_000)
        ready = time.perf_counter() - t0
        ms = page.evaluate("""() => {
            const end = darkfabView.end(); let x = 12345;
            const t0 = performance.now();
            for (let i = 0; i < 200; i++) { x = (x * 1103515245 + 12345) % 2147483648;
                                            darkfabView.setTime(end * x / 2147483648); }
            return (performance.now() - t0) / 200; }""")
        b.close()
    print(f"Chromium: ready in {ready:.2f} s; jump and redraw {ms:.1f} ms")


if __name__ == "__main__":
    main()
