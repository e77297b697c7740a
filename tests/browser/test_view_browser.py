"""The view page in a real browser: headless Chromium (Debian's ``chromium``) driven by
Playwright. Checks that the replay page loads without console errors, that robots move and sit
where the event log puts them, that the slider and a click on a unit work, and that the live
page of a running simulation updates. Screenshots go to ``results/screenshots/`` (git-ignored).

Skipped when Chromium or Playwright is missing, unless ``DARKFAB_REQUIRE_BROWSER=1`` (CI)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from darkfab.scenarios import load_scenario, run_scenario
from darkfab.scenarios.view import write_view

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SHOTS = Path(__file__).resolve().parents[2] / "results" / "screenshots"

_missing = None
try:
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover
    _missing = "playwright is not installed"
if _missing is None and not Path(CHROMIUM).exists():
    _missing = f"{CHROMIUM} is missing (apt-get install chromium)"
if _missing and os.environ.get("DARKFAB_REQUIRE_BROWSER") == "1":
    raise RuntimeError(f"browser tests required: {_missing}")
pytestmark = pytest.mark.skipif(_missing is not None, reason=_missing or "")


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def open_page(browser, url: str):
    page = browser.new_page(viewport={"width": 1400, "height": 850})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    page.wait_for_function("window.darkfabView && window.darkfabView.ready", timeout=20_000)
    return page, errors


def shot(page, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / name
    page.screenshot(path=str(path))
    print(f"screenshot: {path}")
    return path


@pytest.fixture(scope="module")
def replay(tmp_path_factory):
    out = tmp_path_factory.mktemp("view")
    s = load_scenario("amr-warehouse", ["scenario.horizon_s=14400", "scenario.warmup_s=0"])
    run_scenario(s, out_dir=out, verify_run=False)
    return out, write_view(out)


def expected_position(out: Path, robot: str, t: float, nodes: dict) -> tuple[float, float]:
    """Where the event log puts ``robot`` at ``t``: on the lane of a move row spanning ``t``
    (linear in time), else at the node of its last arrival."""
    ev = [e for e in pq.read_table(out / "events.parquet").to_pylist()
          if e["kind"] == "move" and e["entity"] == robot]
    for e in ev:
        frm, entered, _ = e["detail"].split(" ")
        t0, t1 = float(entered), e["time_s"]
        if t0 <= t < t1:
            u = (t - t0) / (t1 - t0)
            (xa, ya), (xb, yb) = nodes[frm], nodes[e["location"]]
            return xa + u * (xb - xa), ya + u * (yb - ya)
    last = [e for e in ev if e["time_s"] <= t]
    return nodes[last[-1]["location"]] if last else None


def test_replay_robots_move_and_match_the_log(browser, replay):
    out, html = replay
    page, errors = open_page(browser, html.as_uri())
    sc = json.loads((out / "summary.json").read_text())["resolved_scenario"]
    nodes = {n: (v["x_m"], v["y_m"]) for n, v in sc["nodes"].items()}
    positions = []
    for t in (3600.0, 3660.0):
        page.evaluate(f"darkfabView.setTime({t})")
        robots = page.evaluate("darkfabView.robots()")
        positions.append({r["name"]: (r["x"], r["y"]) for r in robots})
        for r in robots:  # tolerance: times are sent in 0.1 s steps, speeds ≤ 1.2 m/s
            want = expected_position(out, r["name"], t, nodes)
            if want is not None:
                assert abs(r["x"] - want[0]) < 0.2 and abs(r["y"] - want[1]) < 0.2, r
            assert r["soc"] is None or 0.0 <= r["soc"] <= 1.0
        # the SVG follows: the robot's group is drawn where the model says
        xs = page.eval_on_selector_all(".robot", "gs => gs.map(g => +g.dataset.x)")
        assert xs == pytest.approx([r["x"] for r in robots], abs=1e-3)
    moved = [r for r in positions[0] if positions[0][r] != positions[1][r]]
    assert moved, "no robot moved in a minute"
    shot(page, "view-replay.png")
    assert errors == []


def test_slider_and_state_history(browser, replay):
    _, html = replay
    page, errors = open_page(browser, html.as_uri())
    end = page.evaluate("darkfabView.end()")
    page.locator("#slider").fill("5000")
    assert page.evaluate("darkfabView.time()") == pytest.approx(end / 2, abs=end / 5000)
    clock = page.inner_text("#clock")
    page.locator("#slider").fill("9000")
    assert page.evaluate("darkfabView.time()") == pytest.approx(0.9 * end, abs=end / 5000)
    assert page.inner_text("#clock") != clock
    page.locator('.unit[data-name="blister_former"]').click()
    assert page.inner_text("#details-name").startswith("blister_former")
    rows = page.locator("#details tr").count()
    assert rows > 2
    state = page.evaluate("darkfabView.stateAt('blister_former')")
    assert page.inner_text("#details tr.now td:nth-child(3)") == state
    # play advances the clock
    t0 = page.evaluate("darkfabView.time()")
    page.locator("#slider").fill("0")
    t0 = page.evaluate("darkfabView.time()")
    page.click("#play")
    page.wait_for_timeout(400)
    page.click("#play")
    assert page.evaluate("darkfabView.time()") > t0
    assert errors == []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_live_page_updates(browser, tmp_path):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "darkfab.scenarios.cli", "run", "amr-warehouse", "--days", "2",
         "--live", "--port", str(port), "--quiet", "--no-verify", "--out", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(url, timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, "live server did not come up"
                time.sleep(0.1)
        page, errors = open_page(browser, url)
        ends = [page.evaluate("darkfabView.end()")]
        for _ in range(20):
            page.wait_for_timeout(600)
            ends.append(page.evaluate("darkfabView.end()"))
            if ends[-1] > ends[0] and page.evaluate("darkfabView.robots().length") == 6:
                break
        assert ends[-1] > ends[0], ends  # simulated time on the page moved on
        assert page.inner_text("#status").startswith(("live", "run finished"))
        shot(page, "view-live.png")
        assert errors == []
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
