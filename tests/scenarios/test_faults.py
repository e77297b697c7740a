"""Fault campaigns (``[[faults]]``) and the verification report.

Every fault type is injected into a short cdc-line run and its effect on the plant and its
recovery are asserted from the event log and the tables; then the verification report: all
clear on a healthy run, a broken rule with ``--strict`` → exit code 4, and the shipped
``fault-campaign`` scenario over 30 days under the built-in supervisor with the fleet
invariants checked.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest

from darkfab.scenarios import ScenarioError, load_scenario, run_scenario

H = 3600.0
T0 = 4 * H  # injection time in the short runs


def run(tmp_path, fault: str, *more: str, hours: float = 12.0, tag: str = "run"):
    faults = ", ".join((fault, *more))
    s = load_scenario("cdc-line", [f"scenario.horizon_s={hours * H}", "scenario.warmup_s=0",
                                   f"faults=[{faults}]"])
    res = run_scenario(s, out_dir=tmp_path / tag, check_invariants=True)
    ev = pq.read_table(res.out_dir / "events.parquet").to_pandas()
    return res, ev, res.verification["checks"]["faults"]["faults"]


def logged(ev, kind, i):
    return ev[(ev.kind == kind) & ev.detail.str.contains(f"#{i}:", regex=False)]


def assert_logged(ev, rec):
    """fault_injected at the fault's time, fault_detected and (if it ends) fault_cleared."""
    i = rec["index"]
    assert logged(ev, "fault_injected", i).time_s.tolist() == [rec["time_s"]]
    # (PAT readings are processed at the line's next wake-up: logged then, detected at the
    # time the reading was available)
    (t,) = logged(ev, "fault_detected", i).time_s.tolist()
    assert t >= rec["detected_s"] >= rec["time_s"]
    if rec["cleared_s"] is not None:
        (t,) = logged(ev, "fault_cleared", i).time_s.tolist()
        assert t >= rec["cleared_s"]


def test_equipment_breakdown_holds_the_unit_until_repaired(tmp_path):
    res, ev, (f,) = run(tmp_path, f'{{mode="breakdown", time_s={T0}, target="blister_former", '
                                  'duration_s=1800}')
    assert_logged(ev, f)
    assert f["detected"] and f["detection_latency_s"] == 0.0
    st = ev[(ev.entity == "blister_former") & (ev.kind == "state")]
    during = st[(st.time_s >= T0) & (st.time_s < T0 + 1800)]
    assert "Held" in during.detail.tolist()  # held (at once, or when it next executed)
    assert not (during.detail == "Execute").any() or during.detail.tolist()[-1] == "Held"
    # after the repair the supervisor unholds it at once (decision latency 0)
    after = st[st.time_s >= T0 + 1800]
    assert after.detail.iloc[0] in ("Unholding", "Execute")
    assert f["recovered_s"] == pytest.approx(T0 + 1800)
    assert f["throughput_lost_units"] is not None and f["throughput_lost_units"] >= 0
    assert res.verification["ok"], res.verification["violations"]


def test_line_breakdown_holds_the_line_and_restarts_it(tmp_path):
    res, ev, (f,) = run(tmp_path, f'{{mode="breakdown", time_s={T0}, target="cdc", '
                                  'duration_s=3600}')
    assert_logged(ev, f)
    line = ev[(ev.entity == "cdc") & (ev.kind == "line")]
    assert line[line.time_s == T0].detail.str.startswith("Held").any()
    assert not line[(line.time_s > T0) & (line.time_s < T0 + 3600)].detail.str.startswith(
        "Execute").any()
    assert f["recovered_s"] >= T0 + 3600 and f["recovery_time_s"] < 3600 + 600
    assert f["accepted_kg_lost"] > 0.5 * 54.0  # about an hour of the 54 kg/h line
    assert res.summary["mass_balance_rel_error"] < 1e-9


def test_robot_stall_blocks_the_robot_on_its_next_lane(tmp_path):
    res, ev, (f,) = run(tmp_path, f'{{mode="robot_stall", time_s={T0}, target="amr-1", '
                                  'duration_s=900}')
    assert_logged(ev, f)
    stall = ev[(ev.entity == "amr-1") & (ev.kind == "fault") & (ev.detail == "stall#0")]
    assert stall.time_s.tolist() == [f["detected_s"]] and f["detected_s"] >= T0
    rep = ev[(ev.entity == "amr-1") & (ev.kind == "repair") & (ev.detail == "stall#0")]
    assert rep.time_s.tolist() == [pytest.approx(f["detected_s"] + 900)]
    assert f["recovered_s"] == pytest.approx(f["detected_s"] + 900)


def test_battery_fade_is_permanent_and_found_after_the_next_charge(tmp_path):
    res, ev, (f,) = run(tmp_path, f'{{mode="battery_fade", time_s={T0}, target="amr-1", '
                                  'fraction=0.4}', hours=24)
    r = res.plant.robots["amr-1"].battery
    assert r.capacity_kwh == pytest.approx(0.6 * r.nominal_kwh)
    alarm = ev[(ev.entity == "amr-1") & (ev.kind == "alarm")]  # stalls raise alarms too
    assert alarm.detail.str.startswith("battery_fade").sum() == 1
    charge = ev[(ev.entity == "amr-1") & (ev.kind == "robot") & (ev.detail == "charging")
                & (ev.time_s > T0)]
    assert f["detected_s"] > charge.time_s.min()  # at the end of that charge
    assert f["cleared_s"] is None and f["recovered"]
    assert res.summary["robots"]["amr-1"]["soc_end"] > 0


def test_charger_outage_no_robot_charges_there_during_the_window(tmp_path):
    # a robot low enough to want the charger soon
    res, ev, (f,) = run(tmp_path, f'{{mode="charger_outage", time_s={T0}, target="charger_1", '
                                  'duration_s=7200}', hours=24)
    assert_logged(ev, f)
    rs = ev[(ev.kind == "robot") & (ev.detail == "charging")]
    assert not ((rs.time_s > T0) & (rs.time_s < T0 + 7200)).any()
    assert res.plant.fleet.chargers_out == set()
    assert (rs.time_s >= T0 + 7200).any()  # in use again afterwards
    assert f["recovered"]


def test_charger_outage_takes_a_charging_robot_off(tmp_path):
    # find when a robot charges, then take the charger away in the middle of it
    s = load_scenario("cdc-line", ["scenario.horizon_s=86400", "scenario.warmup_s=0"])
    base = run_scenario(s, out_dir=tmp_path / "base")
    ev = pq.read_table(base.out_dir / "events.parquet").to_pandas()
    ch = ev[(ev.kind == "robot") & (ev.detail == "charging")].iloc[0]
    t = float(ch.time_s) + 60.0
    res, ev2, (f,) = run(tmp_path, f'{{mode="charger_outage", time_s={t}, '
                                   'target="charger_1", duration_s=3600}', hours=24, tag="out")
    after = ev2[(ev2.entity == ch.entity) & (ev2.kind == "robot") & (ev2.time_s >= t)]
    assert after.time_s.iloc[0] == pytest.approx(t) and after.detail.iloc[0] != "charging"


def test_sensor_dropout_no_pat_readings_in_the_window(tmp_path):
    res, ev, (f,) = run(tmp_path, f'{{mode="sensor_dropout", time_s={T0}, target="cdc", '
                                  'duration_s=1800}')
    assert_logged(ev, f)
    assert f["detected_by"].startswith("PAT watchdog")
    assert f["detection_latency_s"] <= 3 * 15.0 + 10.0  # three periods plus the delay
    lost = ev[(ev.kind == "alarm") & (ev.detail.str.startswith("pat_signal_lost"))]
    assert len(lost) >= 1
    assert f["recovered_s"] == pytest.approx(T0 + 1800 + 10.0, abs=15.0)
    sensor = res.plant.lines["cdc"].sensor
    assert (T0, T0 + 1800) in sensor.p.dropout_windows
    k = res.summary["continuous_lines"]["cdc"]["pat"]
    assert k["dropouts"] >= 1800 / 15 - 1


def test_sensor_drift_raises_pat_alarms_and_diverts_then_recovers(tmp_path):
    res, ev, (f,) = run(tmp_path, f'{{mode="sensor_drift", time_s={T0}, target="cdc", '
                                  'duration_s=7200, rate_per_h=0.05}')
    assert_logged(ev, f)
    alarms = ev[(ev.kind == "pat_alarm") & (ev.time_s > T0)]
    assert len(alarms) >= 1
    k = res.summary["continuous_lines"]["cdc"]
    assert k["diverted_kg_by_cause"]["pat"] > 5.0  # good material diverted on a bad reading
    assert f["recovered_s"] > T0 + 7200
    assert k["released_out_of_spec_kg"] == 0.0  # the sensor drifts, not the product


def test_feeder_refill_failure_stops_the_line_until_cleared(tmp_path):
    res, ev, (f,) = run(tmp_path, f'{{mode="feeder_refill_failure", time_s={T0}, '
                                  'target="cdc.api", duration_s=7200}')
    assert_logged(ev, f)
    failed = ev[(ev.kind == "alarm") & (ev.entity == "cdc.api")
                & ev.detail.str.startswith("refill_failed")]
    assert len(failed) == 1 and T0 <= failed.time_s.iloc[0] < T0 + 7200
    refills = ev[(ev.kind == "refill") & (ev.entity == "api")]
    assert not ((refills.time_s > T0) & (refills.time_s < T0 + 7200)).any()
    line = ev[(ev.entity == "cdc") & (ev.kind == "line")]
    stop = line[(line.time_s > T0) & line.detail.str.startswith("Suspended: api empty")]
    assert len(stop) >= 1 and stop.time_s.iloc[0] < T0 + 7200
    assert refills[refills.time_s >= T0 + 7200].time_s.iloc[0] == pytest.approx(T0 + 7200)
    assert f["recovered_s"] == pytest.approx(T0 + 7200)
    assert res.summary["mass_balance_rel_error"] < 1e-9


def test_oos_lot_is_caught_by_pat_diverted_and_traceable(tmp_path):
    res, ev, (f,) = run(tmp_path, f'{{mode="oos_raw_material_lot", time_s={T0}, '
                                  'target="cdc.api", potency=0.85}')
    assert_logged(ev, f)
    lot = f["lot"]
    assert ev[(ev.kind == "refill") & (ev.entity == "api")
              & (ev.detail == lot)].time_s.iloc[0] == f["manifested_s"]
    assert f["detected_by"] == "PAT reading out of spec" and f["recovered"]
    k = res.summary["continuous_lines"]["cdc"]
    assert k["diverted_kg_by_cause"]["pat"] > 5.0
    # the released material is checked against the true (potency-corrected) content: at most
    # the onset between the true crossing and the first out-of-spec reading slips through
    assert k["released_out_of_spec_kg"] < 0.5
    g = pq.read_table(res.out_dir / "genealogy.parquet").to_pandas()
    assert (g.parent_lot == lot).any()  # traceable: the units of tablets that contain it
    worst = g[g.parent_lot == lot].mass_fraction.max()
    assert worst < 0.10  # the API share of a unit: mostly diverted, the rest diluted


def test_supervisor_outage_no_commands_then_recovery(tmp_path):
    res, ev, recs = run(tmp_path, f'{{mode="supervisor_outage", time_s={T0}, '
                                  'target="controller", duration_s=3600}',
                        f'{{mode="breakdown", time_s={T0 + 600}, target="blister_former", '
                        'duration_s=600}')
    out, bd = recs
    assert_logged(ev, out)
    cmds = ev[(ev.kind == "command") & (ev.location == "auto-recovery")]
    assert not ((cmds.time_s > T0) & (cmds.time_s < T0 + 3600)).any()
    # the unit stayed Held after its repair (safe) and was unheld when the supervisor resumed
    unhold = cmds[(cmds.entity == "blister_former") & (cmds.detail.str.startswith("Unhold"))]
    assert (unhold.time_s == T0 + 3600).any()
    assert bd["recovered_s"] == pytest.approx(T0 + 3600)
    assert out["recovered_s"] == pytest.approx(T0 + 3600)
    assert res.summary["controller"]["events_missed_offline"] > 0
    assert res.verification["ok"], res.verification["violations"]


def test_command_latency_delays_commands(tmp_path):
    res, ev, (lat, bd) = run(tmp_path, f'{{mode="command_latency", time_s={T0}, '
                                       'target="controller", duration_s=3600, '
                                       'extra_latency_s=120}',
                             f'{{mode="breakdown", time_s={T0 + 600}, '
                             'target="blister_former", duration_s=600}')
    # the first command decided in the window: the supervisor's escalation check (a WakeUp)
    # at the breakdown, acknowledged 120 s late
    assert lat["detected_s"] == pytest.approx(T0 + 600 + 120)
    assert bd["recovered_s"] == pytest.approx(T0 + 1200 + 120)
    assert lat["recovered"]


def test_command_loss_some_commands_lost_plant_recovers(tmp_path):
    res, ev, (loss, bd) = run(tmp_path, f'{{mode="command_loss", time_s={T0}, '
                                        'target="controller", duration_s=14400, '
                                        'probability=0.6}',
                              f'{{mode="breakdown", time_s={T0 + 600}, '
                              'target="blister_former", duration_s=600}')
    lost = ev[ev.kind == "command_lost"]
    assert len(lost) >= 1 and ((lost.time_s >= T0) & (lost.time_s <= T0 + 14400)).all()
    assert res.summary["controller"]["commands_lost"] == len(lost)
    assert loss["detected"] and bd["recovered"] and loss["recovered"]
    assert res.verification["ok"], res.verification["violations"]
    # the same seed loses the same commands (named stream faults.0.command_loss)
    res2, ev2, _ = run(tmp_path, f'{{mode="command_loss", time_s={T0}, '
                                 'target="controller", duration_s=14400, probability=0.6}',
                       f'{{mode="breakdown", time_s={T0 + 600}, '
                       'target="blister_former", duration_s=600}', tag="again")
    assert ev2[ev2.kind == "command_lost"].time_s.tolist() == lost.time_s.tolist()


@pytest.mark.parametrize("fault, path, msg", [
    ('{mode="breakdown", time_s=1, target="nope", duration_s=5}', "faults[0].target",
     "unknown equipment"),
    ('{mode="robot_stall", time_s=1, target="amr-9", duration_s=5}', "faults[0].target",
     "unknown robot"),
    ('{mode="charger_outage", time_s=1, target="park_1", duration_s=5}', "faults[0].target",
     "charger"),
    ('{mode="oos_raw_material_lot", time_s=1, target="cdc.excipient", potency=0.8}',
     "faults[0].target", "API"),
    ('{mode="sensor_drift", time_s=1, target="cdc", duration_s=5}', "faults[0].rate_per_h",
     "required"),
    ('{mode="command_loss", time_s=1, target="controller", duration_s=5, probability=2}',
     "faults[0].probability", ""),
    ('{mode="breakdown", time_s=1, target="cdc", duration_s=5, extra=1}', "faults[0].extra",
     ""),
])
def test_fault_references_and_fields_are_checked(fault, path, msg):
    with pytest.raises(ScenarioError) as e:
        load_scenario("cdc-line", [f"faults=[{fault}]"])
    text = str(e.value)
    assert path in text and msg in text


def test_healthy_run_verification_all_clear(tmp_path):
    s = load_scenario("cdc-line", ["scenario.horizon_s=86400", "scenario.warmup_s=0"])
    res = run_scenario(s, out_dir=tmp_path / "ok")
    v = json.loads((res.out_dir / "verification.json").read_text())
    assert v["ok"] and v["violations"] == []
    c = v["checks"]
    assert c["unsafe_commands"]["commands_executed"] > 0
    ub = c["unit_balance"]
    assert ub["created"] == ub["completed"] + ub["scrapped"] + ub["consumed"] + ub["in_plant"]


def test_strict_exits_4_on_a_violation_and_keeps_results(tmp_path):
    out = tmp_path / "bad"
    # nobody starts the packaging units: they wait in Stopped beyond the bound
    p = subprocess.run([sys.executable, "-m", "darkfab.scenarios.cli", "run", "cdc-line",
                        "--hours", "8", "--set", "controller.name=do-nothing",
                        "--set", "verification.deadlock_bound_s=3600", "--strict",
                        "--out", str(out)], capture_output=True, text=True)
    assert p.returncode == 4, p.stderr
    assert "verification failed" in p.stderr
    v = json.loads((out / "verification.json").read_text())
    assert not v["ok"] and any("blister_former Stopped" in x for x in v["violations"])
    assert (out / "summary.json").exists() and (out / "events.parquet").exists()
    # without --strict the same run exits 0
    p = subprocess.run([sys.executable, "-m", "darkfab.scenarios.cli", "run", "cdc-line",
                        "--hours", "8", "--set", "controller.name=do-nothing", "--quiet",
                        "--out", str(tmp_path / "lax")], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr


def test_fault_campaign_30_days_under_the_supervisor(tmp_path):
    """Every fault type injected over 30 days: no fleet invariant broken (the run would stop),
    every fault detected and recovered, nothing unsafe, no deadlock, balances closed."""
    s = load_scenario("fault-campaign")
    assert s.scenario.horizon_s == 30 * 86400.0 and s.controller.name == "auto-recovery"
    from darkfab.scenarios.schema import FAULT_MODES
    assert {f.mode for f in s.faults} == set(FAULT_MODES)
    t = time.perf_counter()
    res = run_scenario(s, out_dir=tmp_path / "campaign", check_invariants=True)
    wall = time.perf_counter() - t
    v = res.verification
    c = v["checks"]
    f = c["faults"]
    assert f["injected"] == f["detected"] == len(s.faults), f["violations"]
    assert f["recovered"] == len(s.faults)
    assert c["unsafe_commands"]["unsafe"] == 0
    assert c["deadlock"]["violations"] == []
    assert c["unit_balance"]["violations"] == [] and c["mass_balance"]["violations"] == []
    assert c["out_of_spec_released"]["violations"] == []
    # containment of the low-potency API lot: every output lot with it in a unit (above the
    # supervisor's quarantine_min_fraction, 1e-3) was quarantined, then released or diverted
    (oos,) = [x for x in f["faults"] if x["mode"] == "oos_raw_material_lot"]
    out = res.out_dir
    gen = pq.read_table(out / "genealogy.parquet", columns=["child_id", "parent_lot",
                                                             "mass_fraction"]).to_pandas()
    ev = pq.read_table(out / "events.parquet", columns=["time_s", "kind", "entity", "unit_id",
                                                        "detail"],
                       filters=[("kind", "in", ["command", "create", "quality"])]).to_pandas()
    assert ev[ev.kind == "quality"].detail.str.startswith(f"suspect {oos['lot']}:").any()
    totes = set(gen[(gen.parent_lot == oos["lot"]) & (gen.mass_fraction > 1e-3)].child_id)
    creates = ev[ev.kind == "create"]
    affected = set(creates[creates.unit_id.isin(totes)].detail)
    cmds = ev[(ev.kind == "command") & ev.entity.isin(affected)]
    assert affected and set(cmds[cmds.detail.str.startswith("Quarantine")].entity) == affected
    verdicts = cmds[cmds.detail.str.startswith(("Release", "Divert"))]
    assert set(verdicts.entity) == affected
    assert res.summary["containment"]["lots_still_quarantined"] == []
    print(f"fault-campaign 30 days: wall {wall:.1f} s; containment "
          f"{res.summary['containment']}")
