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


def toml(reroute: bool, alternative: bool = True) -> str:
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
interarrival = {{ dist = "exponential", mean_s = 50.0 }}  # one machine alone copes (rho 0.8)
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
process_time = {{ dist = "exponential", mean_s = 40.0 }}
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
    assert [c["detail"] for c in cmds] == ["SetPoint route:qa=0", "SetPoint route:qa=0.5"]
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


def test_route_set_point_validation(tmp_path):
    ctl = tmp_path / "routes.py"
    ctl.write_text("""
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
    import sys
    sys.path.insert(0, str(tmp_path))
    try:
        p = tmp_path / "v.toml"
        p.write_text(toml(False).replace('name = "auto-recovery"', 'name = "routes:R"'))
        res = run_scenario(load_scenario(p), out_dir=tmp_path / "v")
    finally:
        sys.path.remove(str(tmp_path))
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
