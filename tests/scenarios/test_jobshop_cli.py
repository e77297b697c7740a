"""Job-shop scenarios end to end: the shipped ``jobshop-*`` scenarios, ``darkfab run --jobshop
FILE`` and its errors, the results folder."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from darkfab.scenarios import load_scenario, run_scenario, shipped_scenarios
from darkfab.scenarios.cli import main
from darkfab.scenarios.schema import JobShopScenario

FT06_FILE = (Path(__file__).resolve().parents[2] / "scenarios" / "jobshop-instances"
             / "ft06.txt")


def darkfab(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "darkfab.scenarios.cli", *args],
                          capture_output=True, text=True, timeout=120)


def test_jobshop_scenarios_are_shipped_and_listed(capsys):
    assert {"jobshop-ft06", "jobshop-ft10"} <= set(shipped_scenarios())
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "jobshop-ft06" in out and "jobshop-ft10" in out
    s = load_scenario("jobshop-ft10")
    assert isinstance(s, JobShopScenario) and s.jobshop.instance == "ft10"


def test_run_jobshop_ft06_writes_results(tmp_path):
    out = tmp_path / "ft06"
    r = darkfab("run", "jobshop-ft06", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "makespan 55" in r.stdout
    k = json.loads((out / "summary.json").read_text())
    assert k["makespan_s"] == 55.0 and k["planned_makespan"] == 55.0
    assert k["gap"] == 0.0 and k["reference"] == "optimum" and k["reference_makespan"] == 55
    assert k["scheduler"]["name"] == "cpsat" and k["solver"]["status"] == "OPTIMAL"
    assert k["solver"]["wall_s"] >= 0 and k["partial"] is False
    ev = pq.read_table(out / "events.parquet")
    kinds = ev["kind"].to_pylist()
    assert kinds.count("load") == kinds.count("unload") == 36
    assert kinds.count("complete") == 6
    assert max(ev["time_s"].to_pylist()) == 55.0
    st = pq.read_table(out / "states.parquet")
    for machine in {f"m{k}" for k in range(6)}:  # Execute + Idle tile [0, makespan]
        rows = st.filter(pc.equal(st["entity"], machine))
        assert sum(rows["duration_s"].to_pylist()) == pytest.approx(55.0)
    kpis = {(r["scope"], r["kpi"]): r["value"] for r in pq.read_table(out / "kpis.parquet")
            .to_pylist()}
    assert kpis[("plant", "makespan_s")] == 55.0


@pytest.mark.parametrize("rule", ["fifo", "atc"])
def test_run_jobshop_file_with_a_rule(tmp_path, rule, capsys):
    out = tmp_path / rule
    assert main(["run", "--jobshop", str(FT06_FILE), "--scheduler", rule, "--out", str(out),
                 "--quiet"]) == 0
    k = json.loads((out / "summary.json").read_text())
    assert k["scheduler"]["name"] == rule and k["solver"] is None
    assert k["makespan_s"] > 55 and k["gap"] == pytest.approx((k["makespan_s"] - 55) / 55)


def test_jobshop_ft10_runs_with_a_short_limit(tmp_path):
    s = load_scenario("jobshop-ft10", ["jobshop.time_limit_s=3"])
    res = run_scenario(s, out_dir=tmp_path)
    k = res.summary
    assert k["solver"]["lower_bound"] <= 930 <= k["makespan_s"] == k["planned_makespan"]
    assert k["jobs_completed"] == 10


def test_bad_instance_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("2 2\n0 5 1 3\n1 4 7 2\n")
    r = darkfab("run", "--jobshop", str(bad))
    assert r.returncode == 2
    assert "Traceback" not in r.stdout + r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith(f"{bad}:3:") and "machine 7 is outside 0..1" in line
    r = darkfab("run", "--jobshop", str(tmp_path / "missing.txt"))
    assert r.returncode == 2 and "no such file" in r.stderr and "Traceback" not in r.stderr


def test_scenario_with_a_bad_instance_or_scheduler(tmp_path, capsys):
    toml = tmp_path / "js.toml"
    (tmp_path / "inst.txt").write_text("1 1\n0 x\n")
    toml.write_text('[scenario]\nname = "js"\n\n[jobshop]\ninstance = "inst.txt"\n'
                    'scheduler = "magic"\n')
    assert main(["check", str(toml)]) == 2
    err = capsys.readouterr().err
    assert "jobshop.scheduler: unknown scheduler 'magic'" in err and "Traceback" not in err
    toml.write_text('[scenario]\nname = "js"\n\n[jobshop]\ninstance = "inst.txt"\n')
    assert main(["check", str(toml)]) == 2
    err = capsys.readouterr().err
    assert "jobshop.instance" in err and "expected an integer" in err
    assert main(["run", "mm1", "--scheduler", "spt"]) == 2
    assert "only for job-shop scenarios" in capsys.readouterr().err
