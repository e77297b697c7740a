"""Experiments: output tables, engine equivalence (serial = processes = Dask LocalCluster),
failure isolation, sequential replications, MSER-5 warm-up and bad experiment files."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from darkfab.scenarios.experiment import run_experiment
from darkfab.scenarios.loader import ScenarioError

MM1 = """
[experiment]
name = "t"
scenario = "mm1"
replications = {reps}
seed = 11
set = ["scenario.horizon_s=3000", "scenario.warmup_s=200"]
kpis = ["throughput_per_h", "lead_time_s.mean", "equipment.server.utilization"]
{extra}
[[factors]]
path = "equipment.server.process_time.mean_s"
levels = [0.5, 0.8]
"""


def write(tmp_path: Path, reps: int = 3, extra: str = "") -> Path:
    p = tmp_path / "exp.toml"
    p.write_text(textwrap.dedent(MM1.format(reps=reps, extra=extra)))
    return p


def values(res) -> dict:
    return {(r["point"], r["replication"]): r["kpis"] for r in res.records}


def test_outputs_and_common_random_numbers(tmp_path):
    res = run_experiment(write(tmp_path), engine="serial", out_dir=tmp_path / "out")
    runs = pq.read_table(res.out_dir / "runs.parquet").to_pylist()
    assert len(runs) == 2 * 3 * 3  # points x replications x KPIs
    assert {r["factor:equipment.server.process_time.mean_s"] for r in runs} == {"0.5", "0.8"}
    assert {"scenario", "seed", "replication", "kpi", "value"} <= set(runs[0])
    sm = json.loads((res.out_dir / "summary.json").read_text())
    assert sm["runs_ok"] == 6 and sm["runs_failed"] == 0
    util = [p["kpis"]["equipment.server.utilization"]["mean"] for p in sm["points"]]
    assert util[0] < util[1]  # slower server, higher utilization
    # common random numbers: both points see the same arrival stream, so the number of
    # arrivals (events of kind "create") is identical replication by replication
    for rep in range(3):
        counts = []
        for point in (0, 1):
            ev = pq.read_table(res.out_dir / "runs" / f"p{point:03d}-r{rep:03d}" /
                               "events.parquet", columns=["kind", "time_s"]).to_pylist()
            counts.append([e["time_s"] for e in ev if e["kind"] == "create"])
        assert counts[0] == counts[1]
    cmp = pq.read_table(res.out_dir / "comparisons.parquet").to_pylist()
    lead = [c for c in cmp if c["kpi"] == "lead_time_s.mean"][0]
    assert lead["pairs"] == 3 and lead["mean_difference"] > 0


def test_engines_give_identical_results(tmp_path):
    path = write(tmp_path, reps=2)
    serial = run_experiment(path, engine="serial", out_dir=tmp_path / "s")
    procs = run_experiment(path, engine="processes", workers=2, out_dir=tmp_path / "p")
    dask = run_experiment(path, engine="dask", workers=2, out_dir=tmp_path / "d")
    assert values(serial) == values(procs) == values(dask)
    for rel in ("runs/p001-r001/events.parquet", "runs/p000-r000/states.parquet"):
        blobs = {(root / rel).read_bytes() for root in (serial.out_dir, procs.out_dir,
                                                        dask.out_dir)}
        assert len(blobs) == 1


def test_a_failing_run_is_isolated(tmp_path, monkeypatch):
    from darkfab.scenarios import runner

    real = runner.run_scenario

    def flaky(s, **kw):
        if s.equipment["server"].process_time.mean_s == 0.8:
            raise RuntimeError("boom")
        return real(s, **kw)

    monkeypatch.setattr(runner, "run_scenario", flaky)
    res = run_experiment(write(tmp_path, reps=2), engine="serial", out_dir=tmp_path / "out")
    sm = res.summary
    assert sm["runs_ok"] == 2 and sm["runs_failed"] == 2
    assert all("boom" in f["error"] for f in sm["failed_runs"])
    runs = pq.read_table(res.out_dir / "runs.parquet").to_pylist()
    assert {r["point"] for r in runs} == {0}
    assert sm["points"][0]["kpis"]["throughput_per_h"]["n"] == 2


def test_sequential_replications_reach_the_target(tmp_path):
    extra = """
    [sequential]
    kpi = "throughput_per_h"
    relative_half_width = 0.02
    max_replications = 30
    step = 3
    """
    res = run_experiment(write(tmp_path, reps=3, extra=extra), engine="serial",
                         out_dir=tmp_path / "out")
    for pt in res.summary["points"]:
        ci = pt["kpis"]["throughput_per_h"]
        assert ci["n"] == 30 or ci["half_width"] <= 0.02 * ci["mean"]
        assert ci["n"] > 3  # 3 replications of 3000 s are not enough for 2 %


def test_mser5_warmup_is_detected_and_applied(tmp_path):
    extra = 'warmup = "mser5"\npilot_replications = 2'
    p = tmp_path / "exp.toml"
    p.write_text(textwrap.dedent(MM1.format(reps=2, extra="")).replace(
        'seed = 11', 'seed = 11\n' + extra).replace(
        '"scenario.warmup_s=200"', '"scenario.warmup_s=0"'))
    res = run_experiment(p, engine="serial", out_dir=tmp_path / "out")
    w = res.summary["warmup"]
    assert w["method"] == "mser5" and len(w["pilot_warmups_s"]) == 2
    assert 0.0 <= w["warmup_s"] < 1500.0
    run_summary = json.loads((res.out_dir / "runs/p000-r000/summary.json").read_text())
    assert run_summary["warmup_s"] == pytest.approx(w["warmup_s"])


def test_bad_experiment_file_names_the_problem(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text(textwrap.dedent(MM1.format(reps=2, extra="")).replace(
        "equipment.server.process_time.mean_s", "equipment.server.process_time.mean"))
    with pytest.raises(ScenarioError) as e:
        run_experiment(p, engine="serial", out_dir=tmp_path / "out")
    assert any("equipment.server.process_time.mean" in pr.path for pr in e.value.problems)
    out = subprocess.run([sys.executable, "-m", "darkfab.scenarios.cli", "experiment", str(p)],
                         capture_output=True, text=True)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "design point 0" in out.stderr


def test_main_effects_average_the_points_at_each_level(tmp_path):
    res = run_experiment(write(tmp_path, reps=3), engine="serial", out_dir=tmp_path / "out")
    levels = res.summary["factor_levels"]["equipment.server.process_time.mean_s"]
    assert [lv["level"] for lv in levels] == [0.5, 0.8]
    for lv, pt in zip(levels, res.summary["points"]):
        # one factor: the main effect of a level is that design point itself
        a, b = lv["kpis"]["lead_time_s.mean"], pt["kpis"]["lead_time_s.mean"]
        assert a["mean"] == pytest.approx(b["mean"]) and a["n"] == b["n"] == 3
