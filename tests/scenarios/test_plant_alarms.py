"""Alarms in plant runs: failures, stalls, charger and communication faults become alarm records
(alarms.parquet), reach a controller as ``alarm`` events, can be acknowledged, and the
``summary.json`` alarm KPIs agree with the table."""

from __future__ import annotations

import dataclasses

import pyarrow.parquet as pq
import pytest

from darkfab.control import ControllerFault
from darkfab.scenarios import load_scenario, run_scenario

H = 3600.0

ACKER = """
from darkfab.control import Acknowledge, AutoRecoverySupervisor


class Acker(AutoRecoverySupervisor):
    '''The built-in supervisor, woken by alarms too, acknowledging every alarm it sees.'''

    name = "acker"
    seen = []  # (event, the observation's alarms) per alarm / alarm_cleared event

    def __init__(self, **kw):
        super().__init__(**kw)
        self.wakes_on = self.wakes_on | {"alarm", "alarm_cleared"}
        self.bad_ack = True

    def decide(self, events, observation):
        out = list(super().decide(events, observation))
        for e in events:
            if e.kind in ("alarm", "alarm_cleared"):
                Acker.seen.append((e, dict(observation.alarms)))
        for a in observation.alarms.values():
            if not a.acknowledged:
                out.append(Acknowledge(a.id, f"seen {a.condition}"))
                if self.bad_ack:  # once: an unknown id, and the same alarm twice
                    self.bad_ack = False
                    out += [Acknowledge(9999), Acknowledge(a.id)]
        return out


class Fails(AutoRecoverySupervisor):
    name = "fails"

    def __init__(self, **kw):
        super().__init__(**kw)
        self.wakes_on = self.wakes_on | {"alarm"}

    def decide(self, events, observation):
        if any(e.kind == "alarm" for e in events):
            raise RuntimeError("no alarm handling")
        return super().decide(events, observation)
"""


@pytest.fixture
def acker(controller_module):
    controller_module("alarm_ctl", ACKER)
    import alarm_ctl
    alarm_ctl.Acker.seen = []
    return alarm_ctl.Acker


def _tables(res):
    rows = pq.read_table(res.out_dir / "alarms.parquet").to_pylist()
    ev = pq.read_table(res.out_dir / "events.parquet").to_pylist()
    return rows, ev


def _fault_rows_have_alarms(res, rows, ev, entities):
    """One alarm row per fault row of these entities (same source, condition, time), cleared
    at the repair (a battery fade is an alarm of a robot without a fault row)."""
    rows = [r for r in rows if r["condition"] != "battery_fade"]
    faults = [(e["entity"], e["detail"], e["time_s"]) for e in ev
              if e["kind"] == "fault" and e["entity"] in entities]
    repairs: dict[tuple, list] = {}  # (entity, mode) -> repair times in order
    for e in ev:
        if e["kind"] == "repair" and e["entity"] in entities:
            repairs.setdefault((e["entity"], e["detail"]), []).append(e["time_s"])
    alarms = [(r["source"], r["condition"], r["raised_s"]) for r in rows
              if r["source"] in entities]
    assert sorted(faults) == sorted(alarms) and faults
    for r in sorted((r for r in rows if r["source"] in entities), key=lambda r: r["raised_s"]):
        times = repairs.get((r["source"], r["condition"]), [])
        assert r["cleared_s"] == (times.pop(0) if times else None), r
    return faults


def test_packaging_line_failures_reach_the_controller_and_are_acknowledged(tmp_path, acker):
    s = load_scenario("packaging-line", ["scenario.horizon_s=172800", "scenario.warmup_s=0",
                                         "controller.name=alarm_ctl:Acker"])
    res = run_scenario(s, out_dir=tmp_path / "run", allow_code=True)
    rows, ev = _tables(res)
    faults = _fault_rows_have_alarms(res, rows, ev, set(res.plant.equipment))
    assert len(rows) == len(faults)  # nothing else raises alarms in this plant
    # every failure reached the controller as an alarm event, listed in the observation
    raised = [(e, alarms) for e, alarms in acker.seen if e.kind == "alarm"]
    assert len(raised) == len(rows)
    by_id = {r["id"]: r for r in rows}
    for e, alarms in raised:
        i = int(e.detail.split()[0])
        r = by_id[i]
        assert e.source == r["source"] and e.time_s == r["raised_s"]
        assert e.detail == f"{i} {r['condition']}: {r['text']}"
        assert alarms[i].condition == r["condition"] and alarms[i].priority == "high"
        assert not alarms[i].acknowledged
        with pytest.raises(dataclasses.FrozenInstanceError):
            alarms[i].acknowledged = True
        # acknowledged at once (no decision latency), by the controller
        assert (r["acknowledged_s"], r["acknowledged_by"]) == (r["raised_s"], "acker")
    cleared = [e for e, _ in acker.seen if e.kind == "alarm_cleared"]
    assert sorted(int(e.detail.split()[0]) for e in cleared) == sorted(by_id)
    acks = [e for e in ev if e["kind"] == "command" and e["detail"].startswith("Acknowledge")]
    assert len(acks) == len(rows)
    assert acks[0]["detail"] == f"Acknowledge 1: seen {by_id[1]['condition']}"
    assert acks[0]["entity"] == by_id[1]["source"]
    rejected = [e["detail"] for e in ev if e["kind"] == "command_rejected"]
    assert "Acknowledge: unknown alarm 9999" in rejected
    assert any(d.startswith("Acknowledge: alarm 1 already acknowledged") for d in rejected)
    # the event log: one alarm, alarm_acknowledged and alarm_cleared row per alarm
    for kind in ("alarm", "alarm_acknowledged", "alarm_cleared"):
        assert sum(e["kind"] == kind for e in ev) == len(rows), kind
    k = res.summary["alarms"]
    assert k["raised"] == len(rows) and k["acknowledged"] == len(rows)
    assert k["mean_time_to_acknowledge_s"] == 0.0 and k["cleared_unacknowledged"] == 0
    assert k["by_priority"]["high"] == len(rows)
    assert k["per_hour_per_operator"] == pytest.approx(len(rows) / 48.0)
    assert res.verification["ok"], res.verification["violations"]


def test_discrete_faults_of_a_campaign_become_alarms(tmp_path):
    """cdc-line under the built-in supervisor (it does not acknowledge): a breakdown, a robot
    stall, a charger outage, a battery fade and a supervisor outage each leave an alarm
    record, cleared when the fault is (the battery fade stays)."""
    t0 = 4 * H
    faults = ", ".join([
        f'{{mode="breakdown", time_s={t0}, target="blister_former", duration_s=1800}}',
        f'{{mode="robot_stall", time_s={t0}, target="amr-1", duration_s=900}}',
        f'{{mode="charger_outage", time_s={t0 + H}, target="charger_1", duration_s=3600}}',
        f'{{mode="battery_fade", time_s={t0}, target="amr-2", fraction=0.3}}',
        f'{{mode="supervisor_outage", time_s={t0 + 3 * H}, target="controller", '
        'duration_s=1800}'])
    s = load_scenario("cdc-line", ["scenario.horizon_s=86400", "scenario.warmup_s=0",
                                   f"faults=[{faults}]"])
    res = run_scenario(s, out_dir=tmp_path / "run", allow_code=True)
    rows, ev = _tables(res)
    _fault_rows_have_alarms(res, rows, ev, set(res.plant.equipment) | set(res.plant.robots))
    f = {x["mode"]: x for x in res.verification["checks"]["faults"]["faults"]}
    one = {(r["source"], r["condition"]): r for r in rows}
    bd = one[("blister_former", "breakdown#0")]
    assert bd["raised_s"] == f["breakdown"]["detected_s"] and bd["priority"] == "high"
    assert bd["cleared_s"] == pytest.approx(bd["raised_s"] + 1800)
    st = one[("amr-1", "stall#1")]
    assert st["raised_s"] == f["robot_stall"]["detected_s"] and st["priority"] == "medium"
    ch = one[("charger_1", "charger_fault")]
    assert (ch["raised_s"], ch["cleared_s"]) == (t0 + H, t0 + 2 * H)
    fade = one[("amr-2", "battery_fade")]
    assert fade["raised_s"] == f["battery_fade"]["detected_s"] and fade["cleared_s"] is None
    off = one[("plant", "controller_offline")]
    assert (off["raised_s"], off["cleared_s"]) == (t0 + 3 * H, t0 + 3 * H + 1800)
    assert all(r["acknowledged_s"] is None for r in rows)
    k = res.summary["alarms"]
    assert k["raised"] == len(rows) and k["active_end"] == sum(r["cleared_s"] is None
                                                               for r in rows)
    assert k["cleared_unacknowledged"] == len(rows) - k["active_end"]
    assert k["by_priority"]["medium"] == sum(r["priority"] == "medium" for r in rows)


def test_alarms_table_is_readable_after_a_controller_fault(tmp_path, acker):
    s = load_scenario("packaging-line", ["scenario.horizon_s=172800", "scenario.warmup_s=0",
                                         "controller.name=alarm_ctl:Fails"])
    with pytest.raises(ControllerFault) as e:
        run_scenario(s, out_dir=tmp_path / "run", allow_code=True)
    rows = pq.read_table(tmp_path / "run" / "alarms.parquet").to_pylist()
    assert rows and rows[0]["id"] == 1 and rows[0]["cleared_s"] is None  # still active
    assert e.value.summary["alarms"]["active_end"] >= 1
