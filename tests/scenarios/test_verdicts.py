"""``compare`` and ``experiment`` report each run's verification verdict and count the runs
that failed it (in compare.json / summary.json and in the printed summary). A plant nobody
starts (``do-nothing``) breaks the deadlock rule; the supervisor's run does not. The counts
are checked against each run's own verification.json."""

from __future__ import annotations

import json
from pathlib import Path

from darkfab.scenarios.cli import main

SHORT = ["--hours", "8", "--set", "verification.deadlock_bound_s=3600"]


def own_verdicts(runs: list[dict]) -> list[bool]:
    return [json.loads((Path(r["out_dir"]) / "verification.json").read_text())["ok"]
            for r in runs]


def test_compare_reports_verdicts(tmp_path, capsys):
    out = tmp_path / "c"
    code = main(["compare", "cdc-line", *SHORT, "--replications", "1", "--engine", "serial",
                 "--controller", "auto-recovery", "--controller", "do-nothing",
                 "--out", str(out)])
    assert code == 0  # a verification failure is reported, not a failed run
    printed = capsys.readouterr().out
    v = json.loads((out / "compare.json").read_text())["verification"]
    assert (v["runs_passed"], v["runs_failed"], v["runs_without_verdict"]) == (1, 1, 0)
    by = {r["controller"]: r for r in v["runs"]}
    assert by["auto-recovery"]["verified"] is True
    assert by["do-nothing"]["verified"] is False and by["do-nothing"]["violations"] > 0
    assert [r["verified"] for r in v["runs"]] == own_verdicts(v["runs"])
    assert "verification: 1 run(s) passed, 1 failed" in printed
    assert "controller do-nothing, replication 0" in printed


def test_experiment_reports_verdicts(tmp_path, capsys):
    exp = tmp_path / "exp.toml"
    exp.write_text('[experiment]\nname = "v"\nscenario = "cdc-line"\nreplications = 1\n'
                   'set = ["scenario.horizon_s=28800", "verification.deadlock_bound_s=3600"]\n'
                   'kpis = ["throughput_per_h"]\n'
                   '[[factors]]\npath = "controller.name"\n'
                   'levels = ["auto-recovery", "do-nothing"]\n')
    out = tmp_path / "e"
    assert main(["experiment", str(exp), "--engine", "serial", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    sm = json.loads((out / "summary.json").read_text())
    v = sm["verification"]
    assert (v["runs_passed"], v["runs_failed"]) == (1, 1)
    assert [(r["point"], r["verified"]) for r in v["runs"]] == [(0, True), (1, False)]
    assert [r["verified"] for r in v["runs"]] == own_verdicts(v["runs"])
    assert "verification: 1 run(s) passed, 1 failed" in printed
