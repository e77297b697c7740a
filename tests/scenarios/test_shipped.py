"""Every shipped scenario runs briefly and produces sane results (Mesa's ``test_examples`` idea).

Only sanity is checked here (files, bounds, bookkeeping identities); the figures themselves are
tested against theory in ``tests/validation``.
"""

from __future__ import annotations

import json
import math

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from darkfab.scenarios import load_scenario, shipped_scenarios

HORIZON_S = 7_200.0
WARMUP_S = 600.0
OVERRIDES = [f"scenario.horizon_s={HORIZON_S}", f"scenario.warmup_s={WARMUP_S}"]
OUTPUT_FILES = ["events.parquet", "states.parquet", "kpis.parquet", "genealogy.parquet",
                "summary.json"]
EPS = 1e-9


def test_the_documented_scenarios_are_shipped():
    assert {"mm1", "mmc", "tandem", "jackson", "packaging-line"} <= set(shipped_scenarios())


def _nonneg(x) -> bool:
    return x is None or (isinstance(x, (int, float)) and not isinstance(x, bool)
                         and math.isfinite(x) and x >= 0)


def _plant_scenarios() -> list[str]:
    """Shipped plant scenarios (job-shop scenarios are checked in test_jobshop_cli.py)."""
    from darkfab.scenarios.schema import Scenario
    return sorted(n for n, p in shipped_scenarios().items()
                  if isinstance(load_scenario(p), Scenario))


@pytest.fixture(scope="module", params=_plant_scenarios())
def shipped_run(request, tmp_path_factory):
    """One brief run per shipped scenario, shared by the checks below."""
    from darkfab.scenarios import run_scenario

    name = request.param
    s = load_scenario(name, OVERRIDES)
    out = tmp_path_factory.mktemp(name)
    res = run_scenario(s, out_dir=out)
    return name, s, out, res.summary


def test_output_files(shipped_run):
    _, _, out, _ = shipped_run
    for f in OUTPUT_FILES:
        assert (out / f).is_file(), f
        assert (out / f).stat().st_size > 0, f
    for f in OUTPUT_FILES[:-1]:
        pq.read_metadata(out / f)  # a complete, readable Parquet file


def test_summary_on_disk_matches_and_is_complete(shipped_run):
    name, s, out, summary = shipped_run
    k = json.loads((out / "summary.json").read_text())
    assert k["partial"] is False
    assert k["scenario"] == name
    assert k["horizon_s"] == HORIZON_S and k["warmup_s"] == WARMUP_S
    assert k["seed"] == s.scenario.seed and k["replication"] == 0
    assert k["units_completed"] == summary["units_completed"]
    assert k["events"] == pq.read_metadata(out / "events.parquet").num_rows > 0


def test_plant_figures_are_sane(shipped_run):
    name, _, out, _ = shipped_run
    k = json.loads((out / "summary.json").read_text())
    for key in ("events", "wall_s", "throughput_per_h", "units_completed", "wip_mean"):
        assert _nonneg(k[key]), (key, k[key])
    assert k["units_completed"] > 0, f"{name}: nothing completed in {HORIZON_S} s"
    observed_h = (HORIZON_S - WARMUP_S) / 3600.0
    assert k["throughput_per_h"] == pytest.approx(k["units_completed"] / observed_h)
    lt = k["lead_time_s"]
    assert all(_nonneg(lt[q]) for q in ("mean", "p50", "p95"))
    assert lt["p50"] <= lt["p95"] * (1 + 1e-9)


def test_completions_match_the_event_log(shipped_run):
    _, _, out, _ = shipped_run
    k = json.loads((out / "summary.json").read_text())
    ev = pq.read_table(out / "events.parquet", columns=["time_s", "kind", "entity"])
    done = ev.filter(pc.and_(pc.equal(ev["kind"], "complete"),
                             pc.greater_equal(ev["time_s"], WARMUP_S)))
    assert done.num_rows == k["units_completed"]
    t = ev["time_s"].to_numpy()
    assert (t >= 0).all() and (t <= HORIZON_S).all()
    assert (t[1:] >= t[:-1]).all(), "the event log must be in time order"


def test_equipment_figures_are_sane(shipped_run):
    _, s, out, _ = shipped_run
    k = json.loads((out / "summary.json").read_text())
    assert set(k["equipment"]) == set(s.equipment)
    observed = HORIZON_S - WARMUP_S
    for name, e in k["equipment"].items():
        for key in ("utilization", "availability", "quality"):
            v = e[key]
            assert v is None or -EPS <= v <= 1 + EPS, (name, key, v)
        assert e["performance"] is None or e["performance"] >= 0, (name, e["performance"])
        assert e["oee"] is None or -EPS <= e["oee"] <= 1.05, (name, e["oee"])
        assert e["availability"] <= e["utilization"] + EPS
        st = e["state_time_s"]
        assert all(v >= 0 for v in st.values()), (name, st)
        assert sum(st.values()) == pytest.approx(observed, rel=1e-9), (name, st)
        for key in ("cycles", "units_out", "units_good", "faults"):
            assert e[key] >= 0
        assert e["units_good"] <= e["units_out"]


def test_kpi_table_agrees_with_summary(shipped_run):
    _, _, out, _ = shipped_run
    k = json.loads((out / "summary.json").read_text())
    rows = pq.read_table(out / "kpis.parquet").to_pylist()
    table = {(r["scope"], r["kpi"]): r["value"] for r in rows}
    assert table[("plant", "throughput_per_h")] == pytest.approx(k["throughput_per_h"])
    assert table[("plant", "units_completed")] == k["units_completed"]
    for name, e in k["equipment"].items():
        if e["oee"] is not None:
            assert table[(name, "oee")] == pytest.approx(e["oee"])
