"""Maintenance planning on the ``cdc-line`` press with punch wear (Gamma process, mean life
threshold/(a·b) = 10 operating hours, far below the 120 h horizon): run to failure, preventive
(usage) and predictive (RUL from the measured compression-force drift) under the built-in
supervisor."""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from darkfab.scenarios import load_scenario, run_scenario
from darkfab.scenarios.loader import ScenarioError

HOURS = 3600.0
W = "continuous_lines.cdc.press.wear"
WEAR = [f"{W}.shape_per_h=4.0", f"{W}.scale=2.5", f"{W}.threshold=100.0",
        f"{W}.force_per_wear_kn=1.0", f"{W}.noise_sd_kn=2.0", f"{W}.maintenance_h=1.0",
        f"{W}.breakage_repair_h=4.0", f"{W}.inspection_interval_h=0.5"]
POLICY = {"none": [], "preventive": ["controller.params.pm_interval_h=6.0"],
          "predictive": ["controller.params.rul_threshold_h=2.0"]}


def _run(root: Path, policy: str):
    s = load_scenario("cdc-line", [f"scenario.horizon_s={120 * HOURS}", "scenario.warmup_s=0",
                                   *WEAR, f'controller.params.maintenance="{policy}"',
                                   *POLICY[policy]])
    res = run_scenario(s, out_dir=root / policy)
    ev = pq.read_table(root / policy / "events.parquet")
    ev = ev.filter(pc.equal(ev["entity"], "cdc")).to_pylist()
    return res.summary, ev


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("maintenance")
    return {p: _run(root, p) for p in POLICY}


def test_balances_and_verification_hold_under_every_policy(runs):
    for policy, (summary, _) in runs.items():
        assert summary["mass_balance_rel_error"] < 1e-9, policy
        assert "punch_wear" in summary["continuous_lines"]["cdc"]


def test_run_to_failure_breaks_punches(runs):
    summary, ev = runs["none"]
    k = summary["continuous_lines"]["cdc"]["punch_wear"]
    assert k["punch_breakages"] >= 5
    assert k["maintenance_actions"] == 0
    assert k["mean_wear_at_breakage"] >= 100.0
    faults = [e for e in ev if e["kind"] == "fault" and e["detail"] == "punch breakage"]
    repairs = [e for e in ev if e["kind"] == "repair" and e["detail"] == "punch breakage"]
    assert len(faults) == k["punch_breakages"] and len(repairs) >= len(faults) - 1
    assert any(e["kind"] == "line" and e["detail"] == "Held: punch breakage" for e in ev)


def test_preventive_and_predictive_prevent_breakages(runs):
    prev = runs["preventive"][0]["continuous_lines"]["cdc"]["punch_wear"]
    pred = runs["predictive"][0]["continuous_lines"]["cdc"]["punch_wear"]
    assert prev["punch_breakages"] == 0 and pred["punch_breakages"] == 0
    assert prev["maintenance_by_kind"] == {"preventive": prev["maintenance_actions"]}
    assert pred["maintenance_by_kind"] == {"predictive": pred["maintenance_actions"]}
    assert prev["maintenance_actions"] >= 10
    # predictive uses more of each punch set: fewer punch changes for the same protection
    assert pred["maintenance_actions"] < prev["maintenance_actions"]
    assert prev["mean_wear_at_maintenance"] < pred["mean_wear_at_maintenance"] < 100.0
    assert pred["time_in_maintenance_s"] <= pred["maintenance_actions"] * HOURS


def test_every_maintenance_decision_is_logged_with_its_reason(runs):
    for policy in ("preventive", "predictive"):
        summary, ev = runs[policy]
        k = summary["continuous_lines"]["cdc"]["punch_wear"]
        m = [e for e in ev if e["kind"] == "maintenance"]
        assert len(m) == k["maintenance_actions"]
        cmds = [e for e in ev if e["kind"] == "command" and e["detail"].startswith("Maintenance")]
        assert len(cmds) == len(m) and all(e["location"] == "auto-recovery" for e in cmds)
        assert any(e["kind"] == "line" and e["detail"] == "Held: maintenance" for e in ev)
        for e in m:
            assert e["detail"].startswith(f"{policy}: ")
            if policy == "preventive":
                used = float(re.search(r"usage ([\d.]+) h", e["detail"]).group(1))
                assert 6.0 <= used < 6.0 + 0.5 + 1e-6  # within one inspection interval
            else:
                rul = float(re.search(r"RUL ([\d.e+-]+) h", e["detail"]).group(1))
                assert 0.0 <= rul <= 2.0
                # triggered near the threshold: the true wear is within a few noise sd and
                # half an hour's mean wear of threshold − a·b·RUL_threshold = 80
                true = float(re.search(r"true wear ([\d.]+)", e["detail"]).group(1))
                assert 70.0 < true < 100.0


def test_maintenance_needs_a_wear_model_and_a_known_policy(tmp_path):
    s = load_scenario("cdc-line", ["scenario.horizon_s=3600", "scenario.warmup_s=0"])
    summary = run_scenario(s, out_dir=tmp_path / "plain").summary
    assert "punch_wear" not in summary["continuous_lines"]["cdc"]
    with pytest.raises(ScenarioError):
        load_scenario("cdc-line", ['controller.params.maintenance="sometimes"'])
    with pytest.raises(ScenarioError):
        load_scenario("cdc-line", [f"{W}.shape_per_h=-1.0", f"{W}.scale=1.0",
                                   f"{W}.threshold=1.0"])
