"""The ``scenario`` factor of an experiment: layout variants (files or shipped names) compared
in pairs with common random numbers, exactly like a factor on a field."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from darkfab.scenarios.experiment import load_experiment, run_experiment
from darkfab.scenarios.loader import ScenarioError, load_scenario

HEAD = """
[experiment]
name = "t"
{scenario}
replications = 3
seed = 11
set = ["scenario.horizon_s=3000", "scenario.warmup_s=200"]
kpis = ["throughput_per_h", "lead_time_s.mean", "equipment.server.utilization"]

[[factors]]
path = "{path}"
levels = {levels}
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def test_a_scenario_factor_equals_the_same_change_as_a_field_factor(tmp_path):
    write(tmp_path / "variants" / "slow.toml", """
        extends = "mm1"
        [equipment.server.process_time]
        mean_s = 0.95
        """)
    by_file = write(tmp_path / "files.toml", HEAD.format(
        scenario="", path="scenario", levels='["mm1", "variants/slow.toml"]'))
    by_field = write(tmp_path / "field.toml", HEAD.format(
        scenario='scenario = "mm1"', path="equipment.server.process_time.mean_s",
        levels="[0.9, 0.95]"))
    a = run_experiment(by_file, engine="serial", out_dir=tmp_path / "a")
    b = run_experiment(by_field, engine="serial", out_dir=tmp_path / "b")
    assert a.summary["runs_ok"] == 6 and a.summary["runs_failed"] == 0
    # the same runs: the scenario file changes exactly what the field factor does
    assert [r["kpis"] for r in a.records] == [r["kpis"] for r in b.records]
    ca = pq.read_table(a.out_dir / "comparisons.parquet").to_pylist()
    cb = pq.read_table(b.out_dir / "comparisons.parquet").to_pylist()
    assert ca == cb
    lead = next(c for c in ca if c["kpi"] == "lead_time_s.mean")
    assert lead["pairs"] == 3 and lead["mean_difference"] > 0  # slower server, longer leads
    # common random numbers: both layouts see the same arrivals, replication by replication
    for rep in range(3):
        arrivals = [[e["time_s"] for e in pq.read_table(
            a.out_dir / "runs" / f"p{p:03d}-r{rep:03d}" / "events.parquet",
            columns=["kind", "time_s"]).to_pylist() if e["kind"] == "create"] for p in (0, 1)]
        assert arrivals[0] == arrivals[1]
    runs = pq.read_table(a.out_dir / "runs.parquet").to_pylist()
    assert {(r["point"], r["scenario"]) for r in runs} == {(0, "mm1"), (1, "slow")}
    sm = json.loads((a.out_dir / "summary.json").read_text())
    assert [p["factors"]["scenario"] for p in sm["points"]] == ["mm1", "variants/slow.toml"]
    assert [lv["level"] for lv in sm["factor_levels"]["scenario"]] == ["mm1",
                                                                        "variants/slow.toml"]
    assert sm["scenarios"][1] == str((tmp_path / "variants" / "slow.toml").resolve())


def test_scenario_factor_errors(tmp_path):
    both = write(tmp_path / "both.toml", HEAD.format(scenario='scenario = "mm1"',
                                                     path="scenario", levels='["mm1", "mmc"]'))
    with pytest.raises(ScenarioError, match="experiment.scenario: give the scenario here or"):
        run_experiment(both, engine="serial", out_dir=tmp_path / "o")
    bad = write(tmp_path / "bad.toml", HEAD.format(scenario="", path="scenario",
                                                   levels='["mm1", "nope.toml", 3]'))
    with pytest.raises(ScenarioError, match=r"factors\[0\].levels\[1\]: no such scenario file"):
        run_experiment(bad, engine="serial", out_dir=tmp_path / "o")
    none = write(tmp_path / "none.toml", HEAD.format(scenario="", path="scenario.seed",
                                                     levels="[1, 2]"))
    with pytest.raises(ScenarioError, match="experiment.scenario: required field is missing"):
        run_experiment(none, engine="serial", out_dir=tmp_path / "o")


def test_the_shipped_aisle_width_experiment_plans():
    from darkfab.scenarios.experiment import _plan

    path = Path(__file__).resolve().parents[2] / "scenarios" / "experiments" / "aisle-width.toml"
    spec = load_experiment(path)
    plan = _plan(spec, str(path), path.parent)
    assert [p.stem for p in plan.point_paths] == ["amr-warehouse", "amr-warehouse",
                                                  "amr-warehouse-wide", "amr-warehouse-wide"]
    assert [plan.overrides(i) for i in range(4)] == [(("fleet.count", 4),),
                                                     (("fleet.count", 6),)] * 2


def test_the_shipped_layout_variants_experiment_plans_three_layouts():
    from darkfab.scenarios.experiment import _plan

    path = (Path(__file__).resolve().parents[2] / "scenarios" / "experiments"
            / "layout-variants.toml")
    spec = load_experiment(path)
    plan = _plan(spec, str(path), path.parent)
    assert [p.stem for p in plan.point_paths] == ["amr-warehouse", "amr-warehouse-fast-aisle",
                                                  "amr-warehouse-wide"]
    fast = load_scenario("amr-warehouse-fast-aisle")
    base = load_scenario("amr-warehouse")
    aisle = {(lk.a, lk.b): lk for lk in fast.links}
    for ends in (("w5", "aisle"), ("aisle", "dock")):
        assert aisle[ends].speed_limit_m_s is None  # lifted ...
        assert aisle[ends].capacity_robots == {(lk.a, lk.b): lk for lk in base.links}[
            ends].capacity_robots  # ... and the width kept
