"""Honest fault verification: what the verification report counts, checked against the
scenario's fault list, the horizon and the event log (computed here, not by the campaign).

* a fault scheduled at or after the end of the run is *not reached*: not injected, not
  detected, not recovered, not a failure;
* only an injected fault counts as recovered;
* a ``command_loss`` window that lost no command has nothing to detect and passes.
"""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from darkfab.scenarios import load_scenario, run_scenario
from darkfab.scenarios.cli import main
from darkfab.scenarios.verification import format_verification

DAY = 86_400.0
H = 3600.0


def events(out, kinds):
    rows = pq.read_table(out / "events.parquet", columns=["time_s", "kind", "detail"]).to_pylist()
    return [r for r in rows if r["kind"] in kinds]


def test_fault_campaign_3_days_counts_and_strict_passes(tmp_path, capsys):
    s = load_scenario("fault-campaign", [f"scenario.horizon_s={3 * DAY}"])
    horizon = s.scenario.horizon_s
    reached = [i for i, f in enumerate(s.faults) if f.time_s < horizon]
    later = [i for i, f in enumerate(s.faults) if f.time_s >= horizon]
    assert reached and later  # the 3-day run cuts the campaign: both kinds are present
    out = tmp_path / "fc"
    assert main(["run", "fault-campaign", "--days", "3", "--strict", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    v = json.loads((out / "verification.json").read_text())
    f = v["checks"]["faults"]
    assert v["ok"], v["violations"]
    assert f["scheduled"] == len(s.faults)
    assert f["injected"] == len(reached) and f["not_reached"] == len(later)
    assert f["not_reached_faults"] == later
    # the event log agrees: one fault_injected per reached fault, none for the others
    injected = sorted(int(e["detail"].split("#")[1].split(":")[0])
                      for e in events(out, {"fault_injected"}))
    assert injected == reached
    detected = {int(e["detail"].split("#")[1].split(":")[0])
                for e in events(out, {"fault_detected"})}
    assert f["detected"] == len(detected) and detected <= set(reached)
    assert f["detected"] + f["nothing_to_detect"] + f["undetected"] == f["injected"]
    recs = {r["index"]: r for r in f["faults"]}
    for i in later:  # battery_fade among them: never recovered when never injected
        r = recs[i]
        assert r["status"] == "not_reached"
        assert not r["injected"] and not r["detected"] and not r["recovered"]
    assert any(s.faults[i].mode == "battery_fade" for i in later)
    assert f["recovered"] == sum(recs[i]["recovered"] for i in reached) <= len(reached)
    assert (f"faults: {len(s.faults)} scheduled, {len(later)} not reached (at or after the "
            f"end), {len(reached)} injected: {len(detected)} detected") in printed


def short_run(tmp_path, fault: str, tag: str):
    s = load_scenario("cdc-line", [f"scenario.horizon_s={8 * H}", "scenario.warmup_s=0",
                                   f"faults=[{fault}]"])
    return run_scenario(s, out_dir=tmp_path / tag)


def test_command_loss_window_without_a_lost_command_passes(tmp_path):
    t0, d = 4 * H, 600.0
    res = short_run(tmp_path, f'{{mode="command_loss", time_s={t0}, target="controller", '
                              f'duration_s={d}, probability=0.001}}', "vacuous")
    v = res.verification
    (rec,) = v["checks"]["faults"]["faults"]
    # independently: the event log has no lost command (the window had nothing to lose)
    assert events(res.out_dir, {"command_lost"}) == []
    assert rec["injected"] and not rec["detected"] and rec["commands_lost"] == 0
    assert rec["status"] == "nothing_to_detect"
    c = v["checks"]["faults"]
    assert (c["nothing_to_detect"], c["undetected"], c["detected"]) == (1, 0, 0)
    assert v["ok"], v["violations"]
    assert "nothing to detect (passed)" in format_verification(v)


def test_command_loss_counts_the_commands_it_lost(tmp_path):
    t0, d = 2 * H, 4 * H
    res = short_run(tmp_path, f'{{mode="command_loss", time_s={t0}, target="controller", '
                              f'duration_s={d}, probability=0.6}}', "lossy")
    (rec,) = res.verification["checks"]["faults"]["faults"]
    lost = events(res.out_dir, {"command_lost"})
    assert lost and all(t0 <= e["time_s"] <= t0 + d for e in lost)
    assert rec["commands_lost"] == len(lost) and rec["status"] == "detected"


@pytest.mark.parametrize("time_s", [8 * H, 9 * H])
def test_fault_at_or_after_the_end_is_not_reached(tmp_path, time_s):
    res = short_run(tmp_path, f'{{mode="breakdown", time_s={time_s}, '
                              'target="blister_former", duration_s=600}', "late")
    v = res.verification
    (rec,) = v["checks"]["faults"]["faults"]
    assert rec["status"] == "not_reached" and not rec["recovered"]
    assert v["checks"]["faults"]["not_reached"] == 1 and v["ok"]
    assert events(res.out_dir, {"fault_injected"}) == []
