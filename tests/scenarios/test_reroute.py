"""Rerouting around a broken unit: a splitter feeds two parallel, equivalent machines; one
breaks down for a scripted 2 h; the supervisor sends all work to the other and restores the
split after the repair."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from darkfab.scenarios import load_scenario, run_scenario
from darkfab.scenarios.cli import main

T0, DUR = 3_600.0, 7_200.0


def toml(reroute: bool, alternative: bool = True, interarrival_s: float = 50.0,
         ma_mean_s: float = 40.0) -> str:
    return f"""
[scenario]
name = "parallel"
horizon_s = 21600.0
seed = 3
[products.p]
[nodes.in]
x_m = 0.0
y_m = 0.0
[nodes.s]
x_m = 1.0
y_m = 0.0
[nodes.a]
x_m = 2.0
y_m = 1.0
[nodes.b]
x_m = 2.0
y_m = -1.0
[nodes.out]
x_m = 3.0
y_m = 0.0
[[links]]
a = "in"
b = "s"
[[links]]
a = "s"
b = "a"
[[links]]
a = "s"
b = "b"
[[links]]
a = "a"
b = "out"
[[links]]
a = "b"
b = "out"
[sources.src]
node = "in"
to = "q0"
product = "p"
interarrival = {{ dist = "exponential", mean_s = {interarrival_s} }}  # default: one machine alone copes (rho 0.8)
[buffers.q0]
node = "s"
capacity_units = 10
[buffers.qa]
node = "a"
capacity_units = 10
[buffers.qb]
node = "b"
capacity_units = 10
[equipment.split]
node = "s"
input = "q0"
process_time = {{ dist = "constant", value_s = 5.0 }}
next = [{{ to = "qa", probability = 0.5 }}, {{ to = "qb", probability = 0.5 }}]
alternative_routes = {str(alternative).lower()}
[equipment.ma]
node = "a"
input = "qa"
process_time = {{ dist = "exponential", mean_s = {ma_mean_s} }}
next = "out"
[equipment.mb]
node = "b"
input = "qb"
process_time = {{ dist = "exponential", mean_s = 40.0 }}
next = "out"
[sinks.out]
node = "out"
[controller]
name = "auto-recovery"
params = {{ reroute = {str(reroute).lower()} }}
[[faults]]
mode = "breakdown"
time_s = {T0}
target = "ma"
duration_s = {DUR}
"""


def run(tmp_path: Path, reroute: bool, alternative: bool = True):
    p = tmp_path / f"r{reroute}{alternative}.toml"
    p.write_text(toml(reroute, alternative))
    return run_scenario(load_scenario(p), out_dir=tmp_path / p.stem)


def unloads(out: Path, to: str, a: float, b: float) -> int:
    ev = pq.read_table(out / "events.parquet").to_pylist()
    return sum(1 for e in ev if e["kind"] == "unload" and e["entity"] == "split"
               and e["location"] == to and a <= e["time_s"] < b)


def commands(out: Path) -> list[dict]:
    return [e for e in pq.read_table(out / "events.parquet").to_pylist()
            if e["kind"] == "command" and e["detail"].startswith("SetPoint")]


def test_work_goes_around_the_broken_unit_and_back_after_the_repair(tmp_path):
    res = run(tmp_path, True)
    cmds = commands(res.out_dir)
    assert [c["detail"].split(": ")[0] for c in cmds] == ["SetPoint route:qa=0",
                                                           "SetPoint route:qa=0.5"]
    assert cmds[0]["detail"].endswith("ma down (breakdown#0): work to qb")
    assert cmds[1]["detail"].endswith("ma repaired")
    off, on = cmds[0]["time_s"], cmds[1]["time_s"]
    assert off == T0  # as soon as the fault strikes
    assert T0 + DUR <= on < T0 + DUR + 60.0  # at the repair
    assert unloads(res.out_dir, "qa", off + 1e-9, on) == 0
    assert unloads(res.out_dir, "qb", off, on) > 0
    assert unloads(res.out_dir, "qa", on, 21_600.0) > 0  # the split is back
    assert res.verification["violations"] == []
    # without rerouting the splitter keeps feeding qa until it is full, then blocks
    base = run(tmp_path, False)
    assert unloads(base.out_dir, "qa", off, on) > 0
    assert commands(base.out_dir) == []
    # ... and, blocked, it stops feeding mb too: mb works less during the outage
    def mb_done(out):
        ev = pq.read_table(out / "events.parquet").to_pylist()
        return sum(1 for e in ev if e["kind"] == "complete" and e["detail"] == "mb"
                   and off <= e["time_s"] < on)
    assert mb_done(base.out_dir) < mb_done(res.out_dir)
    assert base.summary["equipment"]["split"]["blocked_s"] > \
        res.summary["equipment"]["split"]["blocked_s"]


def test_no_reroute_where_branches_are_not_alternatives(tmp_path):
    res = run(tmp_path, True, alternative=False)
    assert commands(res.out_dir) == []


def test_route_set_point_validation(tmp_path, controller_module):
    controller_module("routes", """
from darkfab.control import AutoRecoverySupervisor, SetPoint
class R(AutoRecoverySupervisor):
    name = "r"
    def decide(self, events, observation):
        out = super().decide(events, observation)
        if any(e.kind == "start" for e in events):
            out += [SetPoint("split", "route:nowhere", 0.0), SetPoint("split", "route:qa", -1.0),
                    SetPoint("split", "route:qa", 0.0), SetPoint("split", "route:qb", 0.0)]
        return out
""")
    p = tmp_path / "v.toml"
    p.write_text(toml(False).replace('name = "auto-recovery"', 'name = "routes:R"'))
    res = run_scenario(load_scenario(p), out_dir=tmp_path / "v", allow_code=True)
    ev = pq.read_table(res.out_dir / "events.parquet").to_pylist()
    rej = [e["detail"] for e in ev if e["kind"] == "command_rejected"]
    assert any("no branch to 'nowhere'" in d for d in rej)
    assert any("must be finite and >= 0" in d for d in rej)
    assert any("every branch would have weight 0" in d for d in rej)
    assert unloads(res.out_dir, "qa", 0.0, 21_600.0) == 0  # route:qa=0 was applied


def test_alternative_routes_needs_branches(tmp_path, capsys):
    p = tmp_path / "bad.toml"
    p.write_text(toml(True).replace('next = "out"\n[equipment.mb]',
                                    'next = "out"\nalternative_routes = true\n[equipment.mb]'))
    assert main(["run", str(p)]) == 2
    assert "equipment.ma" in capsys.readouterr().err


def test_transport_request_moves_waiting_units_by_robot(tmp_path, controller_module):
    """m1 is never started, so totes pile up in q1; at t = 3000 s the controller has 3 of them
    carried to q2 by robot, where m2 finishes them."""
    controller_module("mover", """
from darkfab.control import PackMLCommand, TransportRequest, WakeUp
class Mover:
    name = "mover"
    def reset(self, info):
        pass
    def decide(self, events, observation):
        out = []
        for e in events:
            if e.kind == "start":
                out += [PackMLCommand("m2", "Reset"), WakeUp(3000.0, "move")]
            elif e.kind == "state" and e.source == "m2" and e.detail == "Idle":
                out.append(PackMLCommand("m2", "Start"))
            elif e.kind == "timer":
                out += [TransportRequest("q1", "q2", 3), TransportRequest("q1", "nope", 1),
                        TransportRequest("q1", "q1", 1), TransportRequest("q2", "q1", 0)]
        return out
""")
    text = (Path(__file__).parents[1] / "data" / "tiny_amr.toml").read_text()
    text += '\n[controller]\nname = "mover:Mover"\n'
    p = tmp_path / "tiny.toml"
    p.write_text(text)
    res = run_scenario(load_scenario(p), out_dir=tmp_path / "tiny", allow_code=True)
    tr = [r for r in pq.read_table(res.out_dir / "transport.parquet").to_pylist()
          if r["origin"] == "q1" and r["destination"] == "q2"]
    assert sum(r["units"] for r in tr) == 3
    assert all(r["status"] == "delivered" for r in tr)  # one tote per trip (payload 1)
    assert min(r["requested_s"] for r in tr) == 3000.0
    ev = pq.read_table(res.out_dir / "events.parquet").to_pylist()
    rej = [e["detail"] for e in ev if e["kind"] == "command_rejected"]
    assert any("unknown buffer 'nope'" in d for d in rej)
    assert any("are the same" in d for d in rej)
    assert any("units must be >= 1" in d for d in rej)
    assert res.summary["units_completed"] == 3  # only the moved totes reach the sink
    assert res.summary["controller"]["transport_requests"] == 1
    # units balance (none lost in the staging area); m1, never started, is flagged as stuck
    assert res.verification["checks"]["unit_balance"]["violations"] == []
    assert [v for v in res.verification["violations"] if "m1 Stopped" not in v] == []


FLEET = """
[nodes.p1]
x_m = 1.0
y_m = 2.0
role = "parking"
[nodes.p2]
x_m = 1.0
y_m = -2.0
role = "parking"
[nodes.ch]
x_m = 0.0
y_m = 2.0
role = "charger"
[[links]]
a = "s"
b = "p1"
[[links]]
a = "s"
b = "p2"
[[links]]
a = "in"
b = "ch"
[[links]]
a = "a"
b = "b"
[fleet]
count = 2
homes = ["p1", "p2"]
speed_empty_m_s = 1.0
speed_loaded_m_s = 0.8
payload_units = 2
load_time = { dist = "constant", value_s = 5.0 }
unload_time = { dist = "constant", value_s = 5.0 }
battery = { capacity_kwh = 1.0, consumption_empty_kwh_per_m = 0.0005, consumption_loaded_kwh_per_m = 0.0008, base_kw = 0.02, charging_kw = 0.5 }
"""


def test_with_robots_the_waiting_work_is_carried_to_the_alternate(tmp_path):
    p = tmp_path / "fleet.toml"
    # ma is overloaded (each machine gets a unit every 50 s, ma needs 60 s): qa is full
    # (10 units) long before the fault at 1 h, with a probability of being empty that is nil
    p.write_text(toml(True, interarrival_s=25.0, ma_mean_s=60.0) + FLEET)
    res = run_scenario(load_scenario(p), out_dir=tmp_path / "fleet")
    ev = pq.read_table(res.out_dir / "events.parquet").to_pylist()
    req = [e for e in ev if e["kind"] == "command" and e["detail"].startswith("Transport")]
    assert req and req[0]["time_s"] == T0 and req[0]["entity"] == "qa"
    assert req[0]["detail"].startswith("TransportRequest qb ")
    moved = int(req[0]["detail"].split(": ")[0].split()[-1])
    tr = [r for r in pq.read_table(res.out_dir / "transport.parquet").to_pylist()
          if r["origin"] == "qa" and r["destination"] == "qb"]
    assert sum(r["units"] for r in tr) == moved >= 1
    assert all(r["status"] == "delivered" for r in tr)
    assert res.verification["violations"] == []
