"""The report's fleet section and ``darkfab plot layout`` at 200+ nodes.

Figures are checked as data: the layout's text artists (which labels are drawn), the fleet
section's tables against independent sums (transport.parquet read directly, the robots' own
state timers), and the PNG files' signatures."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest

from darkfab.scenarios import load_scenario, run_scenario
from darkfab.scenarios.report import write_report
from darkfab.scenarios.report_fleet import fleet_data
from darkfab.scenarios.report_layout import LABEL_LIMIT_NODES, layout_figure

PNG = b"\x89PNG\r\n\x1a\n"


def texts(fig) -> list[str]:
    ax = fig.axes[0]
    return [t.get_text() for t in ax.texts]


# --- 200+ nodes ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def grid_run(tmp_path_factory):
    s = load_scenario("grid-200", ["scenario.horizon_s=7200", "scenario.warmup_s=600"])
    return run_scenario(s, out_dir=tmp_path_factory.mktemp("grid"), verify_run=False)


def test_grid_200_validates_with_200_plus_nodes():
    s = load_scenario("grid-200")
    assert len(s.nodes) >= 200
    assert sum(1 for v in s.nodes.values() if v.role == "waypoint") == 200
    assert s.scenario.horizon_s == 86_400.0  # ``darkfab run grid-200`` is the 1-day run


def test_grid_200_runs_and_robots_deliver(grid_run):
    s = grid_run.summary
    assert s["fleet"]["tasks_delivered"] > 10 and s["units_completed"] > 0


def test_plot_layout_has_no_labels_by_default_past_the_limit(grid_run, tmp_path):
    summary = json.loads((grid_run.out_dir / "summary.json").read_text())
    nodes = summary["resolved_scenario"]["nodes"]
    assert len(nodes) > LABEL_LIMIT_NODES
    fig, cap = layout_figure(summary)
    shown = texts(fig)
    stations = {n for n, v in nodes.items() if v.get("role") != "waypoint"}
    assert set(shown) == stations  # only the non-waypoint nodes are named
    assert not any(t.endswith(" m") for t in shown)  # no link lengths
    assert "--labels" in cap
    fig_all, _ = layout_figure(summary, labels=True)
    shown_all = texts(fig_all)
    assert set(nodes) <= set(shown_all)
    assert sum(t.endswith(" m") for t in shown_all) == len(summary["resolved_scenario"]["links"])
    assert texts(layout_figure(summary, labels=False)[0]) == []
    # the CLI: a PNG into folders that do not exist yet, with and without --labels
    for extra, name in (([], "default.png"), (["--labels"], "all.png")):
        out = tmp_path / "new" / "deeper" / name
        r = subprocess.run([sys.executable, "-m", "darkfab.scenarios.cli", "plot", "layout",
                            str(grid_run.out_dir), "--out", str(out), *extra],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        assert out.read_bytes()[:8] == PNG


def test_small_layout_keeps_every_label(tmp_path):
    s = load_scenario("amr-warehouse")
    nodes = {n: v.model_dump() for n, v in s.nodes.items()}
    links = [lk.model_dump() for lk in s.links]
    fig, _ = layout_figure({"resolved_scenario": {"nodes": nodes, "links": links}})
    shown = texts(fig)
    assert set(nodes) <= set(shown)
    assert sum(t.endswith(" m") for t in shown) == len(links)


# --- fleet section -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def amr_run(tmp_path_factory):
    s = load_scenario("amr-warehouse", ["scenario.horizon_s=43200", "scenario.warmup_s=3600"])
    return run_scenario(s, out_dir=tmp_path_factory.mktemp("amr"), verify_run=False)


def test_fleet_data_against_independent_sums(amr_run):
    folder = amr_run.out_dir
    s = json.loads((folder / "summary.json").read_text())
    d = fleet_data(folder, s)
    assert d is not None
    # robot state shares: each robot's shares add up to one
    for shares in d["robots"].values():
        assert sum(shares.values()) == pytest.approx(1.0)
    # lead times: every delivered trip requested after warm-up, read here without the report
    t = pq.read_table(folder / "transport.parquet").to_pylist()
    warm = s["warmup_s"]
    mine = [r["delivered_s"] - r["requested_s"] for r in t
            if r["status"] == "delivered" and r["requested_s"] >= warm]
    got = np.concatenate(list(d["lead_times"].values()))
    assert len(got) == len(mine) > 100
    assert float(got.mean()) == pytest.approx(float(np.mean(mine)))
    assert float(got.mean()) == pytest.approx(s["fleet"]["transport_lead_time_s"]["mean"])
    # traffic waiting per node and charging per charger add up to the robots' own timers
    robots = s["robots"].values()
    assert sum(d["waiting_s"].values()) == pytest.approx(
        sum(r["state_time_s"].get("waiting_traffic", 0.0) for r in robots))
    assert sum(d["charging_s"].values()) == pytest.approx(
        sum(r["state_time_s"].get("charging", 0.0) for r in robots))
    # a lane's mean robots never exceeds its capacity; the narrow aisle is among the busiest
    lanes = {n: p for n, p in d["places"].items() if p["kind"] == "lane"}
    assert all(0.0 <= p["occupancy_mean"] <= p["capacity_robots"] + 1e-9 for p in lanes.values())
    busiest = sorted(lanes, key=lambda n: -lanes[n]["occupancy_mean"])[:3]
    assert {"aisle-w5", "aisle-dock"} & set(busiest)


def test_run_report_has_the_fleet_section(amr_run):
    out = write_report(amr_run.out_dir)
    raw = out.read_text(encoding="utf-8")
    for part in ("6. Fleet", "Robot states", "Transport lead time",
                 "Lane occupancy and traffic waiting", "Chargers",
                 "Bottleneck: machines and transport"):
        assert part in raw, part
    assert raw.count('src="data:image/png;base64,') == 4 + 3  # run figures + fleet figures
    assert "The bottleneck is <b>transport case_packer → case_dock</b>" in raw
    assert "(bottleneck)</b>" in raw.split("Bottleneck: machines and transport")[1]
    # no machine row is marked as the bottleneck when transport is
    assert "(bottleneck)" not in raw.split("<h3>Equipment</h3>")[1].split("Bottleneck:")[0]
