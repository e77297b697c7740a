"""The view's data: robot positions replayed from the ``move`` rows, chunks that concatenate,
and the live tap that sees every event row exactly once across Parquet flushes."""

from __future__ import annotations

import json
import urllib.request

import numpy as np
import pyarrow.parquet as pq
import pytest

from darkfab.scenarios import load_scenario, run_scenario
from darkfab.scenarios.live import LiveView
from darkfab.scenarios.templating import asset
from darkfab.scenarios.view import (DS, KINDS, ViewBuilder, render_page, view_chunk,
                                     write_view)


@pytest.fixture(scope="module")
def amr_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("amr")
    s = load_scenario("amr-warehouse", ["scenario.horizon_s=14400", "scenario.warmup_s=0"])
    res = run_scenario(s, out_dir=out, verify_run=False)
    return res


def test_move_rows_chain_along_lanes(amr_run):
    """Every robot's move rows form a walk on the layout: each lane starts where the previous
    one ended (the first at the robot's home), is a link of the plan, and starts no earlier
    than the previous arrival."""
    s = json.loads((amr_run.out_dir / "summary.json").read_text())["resolved_scenario"]
    links = {frozenset((ln["a"], ln["b"])) for ln in s["links"] if not ln["conveyor"]}
    ev = pq.read_table(amr_run.out_dir / "events.parquet").to_pylist()
    moves = [e for e in ev if e["kind"] == "move"]
    assert len(moves) > 100
    for i, home in enumerate(s["fleet"]["homes"]):
        robot = f"amr-{i + 1}"
        at, t_prev = home, 0.0
        for m in (e for e in moves if e["entity"] == robot):
            frm, entered, soc = m["detail"].split(" ")
            assert frm == at and frozenset((frm, m["location"])) in links
            assert t_prev <= float(entered) <= m["time_s"]
            assert 0.0 <= float(soc) <= 1.0
            at, t_prev = m["location"], m["time_s"]


def test_chunks_concatenate(amr_run):
    """Feeding the log in two parts gives the same state and move arrays as one feed."""
    summary = json.loads((amr_run.out_dir / "summary.json").read_text())
    ev = pq.read_table(amr_run.out_dir / "events.parquet").select(
        ["time_s", "kind", "entity", "location", "detail"])
    one = ViewBuilder(summary).feed(ev, 14400.0)
    vb = ViewBuilder(summary)
    cut = ev.num_rows // 2
    a, b = vb.feed(ev.slice(0, cut), 7200.0), vb.feed(ev.slice(cut), 14400.0)
    for key in ("st", "mv"):
        for ent, cols in one[key].items():
            joined = [x + y for x, y in zip(a[key].get(ent, [[]] * len(cols)),
                                            b[key].get(ent, [[]] * len(cols)))]
            if key == "st":  # codes are names in the builder's (shared) table
                joined[1] = [b["sn"][c] for c in joined[1]]
                cols = [cols[0], [one["sn"][c] for c in cols[1]]]
            assert joined == cols, (key, ent)


def test_buffer_levels_match_the_plant(amr_run):
    """The replayed level of every buffer at the end of the run equals the level of the
    plant's buffer object (the simulation's own count, not the event log), within capacity.
    A unit that loads batches logs ``load`` when its batch is complete, so the units it has
    gathered for an incomplete batch (at most batch size − 1) still count in the replay."""
    _, chunk = view_chunk(amr_run.out_dir)
    plant = amr_run.plant
    sc = json.loads((amr_run.out_dir / "summary.json").read_text())["resolved_scenario"]
    batch = {e["input"]: e["batch_size_units"] for e in sc["equipment"].values()}
    assert set(chunk["bf"]) <= set(plant.buffers)
    for name, buf in plant.buffers.items():
        levels = chunk["bf"].get(name, [[0], [0]])[1]
        assert 0 <= levels[-1] - buf.level <= batch.get(name, 1) - 1, name
        cap = sc["buffers"][name]["capacity_units"]
        assert 0 <= min(levels) and (cap is None or max(levels) <= cap), name


def test_view_file_is_self_contained(amr_run, tmp_path):
    path = write_view(amr_run.out_dir, tmp_path / "sub" / "v.html")
    html = path.read_text()
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in html and "<script src" not in html


def test_page_template_inlines_assets_and_escapes_the_title():
    """The Jinja2 template: stylesheet and script inlined verbatim, the JSON readable back
    (a ``</script>`` inside cannot close the element), the title HTML-escaped."""
    meta = {"scenario": "a <b> & c", "note": "</script><script>alert(1)</script>"}
    page = render_page(meta, "QUJD", live=False)
    assert asset("view_assets", "view.js") in page and asset("view_assets", "view.css") in page
    assert "<title>darkfab view: a &lt;b&gt; &amp; c</title>" in page
    assert page.count("</script>") == 4  # config, meta, payload, the script: no more
    between = page.split('<script id="meta" type="application/json">')[1].split("</script>")[0]
    assert json.loads(between) == meta
    assert '<script id="payload" type="text/plain">QUJD</script>' in page
    live = render_page(meta, "", live=True)
    assert '<script id="config" type="application/json">{"live":true}</script>' in live
    assert "{{" not in page and "{%" not in page


def test_live_tap_sees_every_row_once(tmp_path):
    """A live run with small Parquet batches (many flushes between publications): the merged
    live chunks hold the same robot moves and state changes as the replay of the written log."""
    s = load_scenario("amr-warehouse", ["scenario.horizon_s=7200", "scenario.warmup_s=0"])
    live = LiveView(port=0, interval_s=0.0)  # publish after every slice
    res = run_scenario(s, out_dir=tmp_path, verify_run=False, batch_rows=500, live=live)
    try:
        with urllib.request.urlopen(live.url + "data?from=0", timeout=10) as r:
            body = json.loads(r.read())
        with urllib.request.urlopen(live.url, timeout=10) as r:
            assert b"darkfab" in r.read()
    finally:
        live.close()
    assert body["done"] and body["n"] == len(body["chunks"]) > 100
    _, replay = view_chunk(res.out_dir)
    moves: dict[str, list] = {}
    states: dict[str, list] = {}
    for c in body["chunks"]:
        for r, cols in c["mv"].items():
            moves.setdefault(r, []).extend(cols[1])
        for e, cols in c["st"].items():
            states.setdefault(e, []).extend(c["sn"][k] for k in cols[1])
    assert moves == {r: cols[1] for r, cols in replay["mv"].items()}
    assert states == {e: [replay["sn"][k] for k in cols[1]] for e, cols in replay["st"].items()}
    ts = [c["ts"] for c in body["chunks"] if c["ts"]]
    wip_end = ts[-1][2][-1]
    k = json.loads((res.out_dir / "summary.json").read_text())
    assert np.isfinite(wip_end) and wip_end >= 0
    assert body["chunks"][-1]["t"] == round(7200 * DS)
    assert set(KINDS) >= {"move", "robot", "state"}
    assert k["simulated_s"] == 7200
