"""The ``darkfab`` command line: run in a subprocess, as a user would (plus a few in-process
calls of :func:`darkfab.scenarios.cli.main` for the cheaper argument checks)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from darkfab.scenarios import shipped_scenarios
from darkfab.scenarios.cli import main

MM1 = Path(__file__).resolve().parents[2] / "scenarios" / "files" / "mm1.toml"
SHIPPED = ["mm1", "mmc", "tandem", "jackson", "packaging-line"]
OUTPUT_FILES = ["events.parquet", "states.parquet", "kpis.parquet", "genealogy.parquet",
                "summary.json"]
PROBLEM_LINE = re.compile(r"^(?P<file>.+?):(?P<line>\d+): (?P<path>[A-Za-z0-9_.\[\]\-]+): .+$")


def darkfab(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "darkfab.scenarios.cli", *args],
                          capture_output=True, text=True, timeout=120, cwd=cwd)


def no_traceback(r: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in r.stdout + r.stderr, r.stderr


# --- check ---------------------------------------------------------------------------------
def test_check_bad_file_one_line_per_problem(tmp_path):
    text = MM1.read_text()
    text = text.replace('input = "queue"', 'input = "queue"\nservers = "two"')
    text = text.replace("mean_s = 0.9", "mean_s = -1")
    text = text.replace('product = "part"', 'product = "widget"')
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    r = darkfab("check", str(bad))
    assert r.returncode == 2, r.stderr
    no_traceback(r)
    lines = r.stderr.strip().splitlines()
    assert len(lines) >= 2
    paths = set()
    for line in lines:
        m = PROBLEM_LINE.match(line)
        assert m, f"not FILE:LINE: path: message -> {line!r}"
        assert Path(m["file"]).name == "bad.toml"
        paths.add(m["path"])
    assert {"equipment.server.servers", "equipment.server.process_time.mean_s"} <= paths
    assert paths <= {"equipment.server.servers", "equipment.server.process_time.mean_s",
                     "sources.arrivals.product"}


def test_check_reference_problem(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text(MM1.read_text().replace('next = "exit"', 'next = "nowhere"'))
    assert main(["check", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    (line,) = err.strip().splitlines()
    m = PROBLEM_LINE.match(line)
    assert m and m["path"] == "equipment.server.next" and "nowhere" in line


def test_check_invalid_toml(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[scenario\nname = 1\n")
    assert main(["check", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "bad.toml:1:" in err


def test_check_shipped_ok():
    r = darkfab("check", "mm1")
    assert r.returncode == 0, r.stderr
    assert "OK" in r.stdout
    no_traceback(r)


def test_list_names_the_shipped_scenarios():
    r = darkfab("list")
    assert r.returncode == 0, r.stderr
    listed = {line.split()[0] for line in r.stdout.splitlines() if line.strip()}
    assert set(SHIPPED) <= listed
    assert listed == set(shipped_scenarios())


def test_run_unknown_name_lists_shipped():
    r = darkfab("run", "nosuchname")
    assert r.returncode == 2
    no_traceback(r)
    for name in SHIPPED:
        assert name in r.stderr


# --- run ------------------------------------------------------------------------------------
SUMMARY_KEYS = {"scenario", "seed", "replication", "horizon_s", "warmup_s", "events", "wall_s",
                "throughput_per_h", "units_completed", "wip_mean", "lead_time_s", "equipment",
                "resolved_scenario", "darkfab_version"}
EQUIPMENT_KEYS = {"utilization", "availability", "performance", "quality", "oee",
                  "state_time_s"}


def test_run_writes_results(tmp_path):
    out = tmp_path / "out"
    r = darkfab("run", "mm1", "--hours", "1", "--set", "scenario.warmup_s=60", "--out",
                str(out), "--quiet")
    assert r.returncode == 0, r.stderr
    no_traceback(r)
    for f in OUTPUT_FILES:
        assert (out / f).is_file(), f
    k = json.loads((out / "summary.json").read_text())
    assert SUMMARY_KEYS <= set(k), SUMMARY_KEYS - set(k)
    assert k["scenario"] == "mm1"
    assert k["seed"] == 1 and k["replication"] == 0  # the scenario's own seed by default
    assert k["horizon_s"] == 3600.0
    assert k["warmup_s"] == 60.0
    assert set(k["lead_time_s"]) >= {"mean", "p50", "p95"}
    assert set(k["equipment"]) == {"server"}
    eq = k["equipment"]["server"]
    assert EQUIPMENT_KEYS <= set(eq)
    assert set(eq["state_time_s"]) == {
        "Stopped", "Resetting", "Idle", "Starting", "Execute", "Completing", "Complete",
        "Holding", "Held", "Unholding", "Suspending", "Suspended", "Unsuspending", "Stopping",
        "Aborting", "Aborted", "Clearing"}
    # the resolved scenario includes the overrides
    rs = k["resolved_scenario"]
    assert rs["scenario"]["horizon_s"] == 3600.0 and rs["scenario"]["warmup_s"] == 60.0
    assert isinstance(k["darkfab_version"], str) and k["darkfab_version"]
    assert k["events"] == pq.read_metadata(out / "events.parquet").num_rows > 0


def _summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


def test_days_and_hours_set_the_horizon(tmp_path, capsys):
    assert main(["run", "mm1", "--days", "0.05", "--set", "scenario.warmup_s=10",
                 "--out", str(tmp_path / "d"), "--quiet"]) == 0
    assert _summary(tmp_path / "d")["horizon_s"] == pytest.approx(0.05 * 86400)
    assert main(["run", "mm1", "--hours", "0.5", "--set", "scenario.warmup_s=10",
                 "--out", str(tmp_path / "h"), "--quiet"]) == 0
    assert _summary(tmp_path / "h")["horizon_s"] == pytest.approx(1800.0)


def test_days_and_hours_are_exclusive(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["run", "mm1", "--days", "1", "--hours", "1", "--out", str(tmp_path)])
    assert info.value.code == 2


def test_seed_and_replication_recorded(tmp_path, capsys):
    out = tmp_path / "o"
    assert main(["run", "mm1", "--hours", "0.2", "--set", "scenario.warmup_s=10", "--seed",
                 "7", "--replication", "3", "--out", str(out), "--quiet"]) == 0
    k = _summary(out)
    assert (k["seed"], k["replication"]) == (7, 3)
    assert set(pq.read_table(out / "events.parquet", columns=["replication"])
               .column("replication").to_pylist()) == {3}


def test_run_bad_override_exit_2(tmp_path, capsys):
    assert main(["run", "mm1", "--set", "equipment.server.nope=1", "--out",
                 str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "equipment.server.nope" in err
    assert "Traceback" not in err
    assert not (tmp_path / "o" / "summary.json").exists()


def test_run_negative_replication_exit_2(tmp_path, capsys):
    assert main(["run", "mm1", "--replication", "-1", "--out", str(tmp_path / "o"),
                 "--quiet"]) == 2


def test_check_with_set(capsys):
    assert main(["check", "mm1", "--set", "equipment.server.servers=-1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "equipment.server.servers" in err[0]
    assert main(["check", "mm1", "--set", "equipment.server.servers=2"]) == 0
