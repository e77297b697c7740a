"""AMR fleet on small plants: exact travel times in free flow, exact battery accounting,
charging (thresholds, one robot per charger, state of charge in bounds), task allocation
conformance, stalls, the invariant monitor, and material conservation through transport.

Scenarios are written as TOML (the public way in) and run with ``check_invariants=True``;
results are read back from the Parquet tables and the plant's agents.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from collections import Counter, defaultdict
from itertools import pairwise
from pathlib import Path

import networkx as nx
import pyarrow.parquet as pq
import pytest
from darkfab.control.fleet import ALLOCATIONS, InvariantViolation
from darkfab.control.traffic import Lane
from darkfab.factory.battery import Battery
from darkfab.factory.occupancy import lane_key
from darkfab.scenarios import load_scenario, run_scenario
from scenario_toml import to_toml


# --- scenario helpers ---------------------------------------------------------------------
def const(v: float) -> dict:
    return {"dist": "constant", "value_s": float(v)}


def run(tmp_path: Path, data: dict, overrides=(), tag: str = "run", check: bool = True):
    path = tmp_path / f"{tag}.toml"
    path.write_text(to_toml(data))
    s = load_scenario(path, list(overrides))
    return run_scenario(s, out_dir=tmp_path / tag, check_invariants=check)


def rows(res, table: str) -> list[dict]:
    return rows_of(res.out_dir, table)


def rows_of(out_dir: Path, table: str) -> list[dict]:
    return pq.read_table(out_dir / f"{table}.parquet").to_pylist()


def robot_intervals(res, robot: str | None = None) -> list[dict]:
    out = [r for r in rows(res, "states") if r["entity"] in res.plant.robots]
    if robot is not None:
        out = [r for r in out if r["entity"] == robot]
    return sorted(out, key=lambda r: (r["entity"], r["start_s"]))


BATTERY = {"capacity_kwh": 100.0, "consumption_empty_kwh_per_m": 0.001,
           "consumption_loaded_kwh_per_m": 0.002, "base_kw": 0.05, "charging_kw": 1.0}


def free_flow(horizon: float = 2000.0, battery: dict | None = None, **fleet) -> dict:
    """One robot, one unit: P (parking) → A (pickup) → B (drop) → P. Two routes A–B: via W
    (A–W limited to 0.4 m/s) or via D (longer, unlimited): the loaded trip is faster via W,
    the empty trip back via D."""
    f = {"count": 1, "homes": ["P"], "speed_empty_m_s": 1.0, "speed_loaded_m_s": 0.8,
         "load_time": const(7.0), "unload_time": const(3.0), "battery": battery or BATTERY}
    f.update(fleet)
    return {
        "scenario": {"name": "free", "horizon_s": horizon, "seed": 1},
        "products": {"part": {}},
        "nodes": {"P": {"x_m": 0.0, "y_m": 0.0, "role": "parking"},
                  "A": {"x_m": 10.0, "y_m": 0.0, "role": "port"},
                  "W": {"x_m": 20.0, "y_m": 0.0, "role": "waypoint"},
                  "B": {"x_m": 30.0, "y_m": 0.0, "role": "port"},
                  "D": {"x_m": 20.0, "y_m": 15.0, "role": "waypoint"},
                  "C": {"x_m": 0.0, "y_m": -5.0, "role": "charger"}},
        "links": [{"a": "P", "b": "A"}, {"a": "A", "b": "W", "speed_limit_m_s": 0.4},
                  {"a": "W", "b": "B", "length_m": 12.5}, {"a": "A", "b": "D"},
                  {"a": "D", "b": "B"}, {"a": "P", "b": "C"}],
        "sources": {"src": {"node": "A", "to": "q", "product": "part",
                            "interarrival": const(100.0), "max_units": 1}},
        "buffers": {"q": {"node": "B"}},
        "equipment": {"m": {"node": "B", "input": "q", "process_time": const(10.0),
                            "next": "out"}},
        "sinks": {"out": {"node": "B"}},
        "fleet": f,
    }


def lane_graph(data: dict) -> nx.DiGraph:
    """Robot lanes with their lengths and limits, from the scenario data (independently of the
    builder)."""
    g = nx.DiGraph()
    nodes = data["nodes"]
    for link in data["links"]:
        if link.get("conveyor"):
            continue
        a, b = link["a"], link["b"]
        length = link.get("length_m") or math.hypot(nodes[a]["x_m"] - nodes[b]["x_m"],
                                                    nodes[a]["y_m"] - nodes[b]["y_m"])
        lim = link.get("speed_limit_m_s", math.inf)
        g.add_edge(a, b, length=length, limit=lim)
        if not link.get("directed"):
            g.add_edge(b, a, length=length, limit=lim)
    return g


def fastest(g: nx.DiGraph, a: str, b: str, speed: float) -> tuple[float, float]:
    """(time, length) of the fastest route at ``speed`` under the lanes' speed limits."""
    path = nx.dijkstra_path(g, a, b, weight=lambda u, v, d: d["length"] / min(speed, d["limit"]))
    t = sum(g[u][v]["length"] / min(speed, g[u][v]["limit"]) for u, v in pairwise(path))
    length = sum(g[u][v]["length"] for u, v in pairwise(path))
    return t, length


def ring(robots: int = 3, units: int = 6, horizon: float = 30_000.0, battery: dict | None = None,
         chargers: int = 2, **fleet) -> dict:
    """A hexagonal ring R0..R5 (20 m sides) with a chord R1–R4; ports A = R0, B = R2, C = R4;
    parking spots and chargers on spurs. Material: src_a (A) → qb (B) → mb → qc (C) → mc →
    out_c; src_c (C) → qa (A) → ma → out_a; every hop between ports is carried by a robot."""
    nodes, links = {}, []
    for i in range(6):
        ang = math.pi / 3 * i
        role = {0: "port", 2: "port", 4: "port"}.get(i, "waypoint")
        nodes[f"R{i}"] = {"x_m": round(20 * math.cos(ang), 6), "y_m": round(20 * math.sin(ang), 6),
                          "role": role}
        links.append({"a": f"R{i}", "b": f"R{(i + 1) % 6}", "length_m": 20.0})
    links.append({"a": "R1", "b": "R4", "length_m": 40.0})
    attach = ["R1", "R3", "R5"]
    homes = []
    for i in range(robots):
        h = f"park{i}"
        nodes[h] = {"x_m": 40.0 + 5 * i, "y_m": 40.0, "role": "parking"}
        links.append({"a": h, "b": attach[i % 3], "length_m": 5.0 + i % 3})
        homes.append(h)
    for i in range(chargers):
        c = f"ch{i}"
        nodes[c] = {"x_m": -40.0 - 5 * i, "y_m": -40.0, "role": "charger"}
        links.append({"a": c, "b": ["R5", "R1", "R3"][i % 3], "length_m": 4.0})
    f = {"count": robots, "homes": homes, "speed_empty_m_s": 1.0, "speed_loaded_m_s": 0.8,
         "load_time": const(5.0), "unload_time": const(5.0),
         "battery": battery or {"capacity_kwh": 10.0, "consumption_empty_kwh_per_m": 0.0005,
                                "consumption_loaded_kwh_per_m": 0.0008, "base_kw": 0.0,
                                "charging_kw": 1.0}}
    f.update(fleet)
    exp = {"dist": "exponential", "mean_s": 90.0}
    return {
        "scenario": {"name": "ring", "horizon_s": horizon, "seed": 11},
        "products": {"part": {}},
        "nodes": nodes,
        "links": links,
        "sources": {
            "src_a": {"node": "R0", "to": "qb", "product": "part", "interarrival": exp,
                      "max_units": units},
            "src_c": {"node": "R4", "to": "qa", "product": "part", "interarrival": exp,
                      "max_units": units}},
        "buffers": {"qb": {"node": "R2", "capacity_units": 4},
                    "qc": {"node": "R4", "capacity_units": 4},
                    "qa": {"node": "R0", "capacity_units": 4}},
        "equipment": {
            "mb": {"node": "R2", "input": "qb", "process_time": const(30.0), "next": "qc"},
            "mc": {"node": "R4", "input": "qc", "process_time": const(30.0), "next": "out_c"},
            "ma": {"node": "R0", "input": "qa", "process_time": const(30.0), "next": "out_a"}},
        "sinks": {"out_c": {"node": "R4"}, "out_a": {"node": "R0"}},
        "fleet": f,
    }


def assert_all_delivered(res) -> None:
    tasks = rows(res, "transport")
    stuck = [t for t in tasks if t["status"] != "delivered"]
    assert not stuck, (f"{len(stuck)} of {len(tasks)} transport tasks not delivered by the "
                       f"horizon, e.g. {stuck[:3]}; robots: "
                       + "; ".join(f"{r.name} at {r.node or r.lane} in {r.state}"
                                   for r in res.plant.robots.values()))
    assert not res.plant.fleet.pending
    assert res.summary["fleet"]["tasks_delivered"] == len(tasks)
    assert res.summary["fleet"]["tasks_requested"] == len(tasks)


# --- one robot in free flow ---------------------------------------------------------------
def test_free_flow_travel_times_are_path_time_at_lane_speed(tmp_path):
    data = free_flow()
    res = run(tmp_path, data)
    g = lane_graph(data)
    v_e, v_l = 1.0, 0.8
    t_pa, l_pa = fastest(g, "P", "A", v_e)
    t_ab, l_ab = fastest(g, "A", "B", v_l)
    t_bp, l_bp = fastest(g, "B", "P", v_e)
    # the layout makes the speed limit matter: loaded via the limited lane, empty via D
    assert nx.dijkstra_path(g, "A", "B", weight=lambda u, v, d: d["length"] / min(v_l, d["limit"])) \
        == ["A", "W", "B"]
    assert nx.dijkstra_path(g, "B", "A", weight=lambda u, v, d: d["length"] / min(v_e, d["limit"])) \
        == ["B", "D", "A"]

    iv = [(r["state"], r["start_s"], r["end_s"]) for r in robot_intervals(res, "amr-1")]
    assert [s for s, _, _ in iv] == ["idle", "travel_empty", "loading", "travel_loaded",
                                     "unloading", "travel_empty", "idle"]
    dur = {i: e - s for i, (_, s, e) in enumerate(iv)}
    assert iv[1][1] == pytest.approx(100.0, rel=1e-12)  # leaves as the unit is staged
    assert dur[1] == pytest.approx(t_pa, rel=1e-9)
    assert dur[2] == pytest.approx(7.0, rel=1e-9)
    assert dur[3] == pytest.approx(t_ab, rel=1e-9)
    assert dur[4] == pytest.approx(3.0, rel=1e-9)
    assert dur[5] == pytest.approx(t_bp, rel=1e-9)
    assert iv[-1][2] == pytest.approx(2000.0)

    # the event log tells the same story: state changes at the same instants and places
    ev = [(r["time_s"], r["location"], r["detail"]) for r in rows(res, "events")
          if r["kind"] == "robot" and r["entity"] == "amr-1"]
    # a state held for no time (idle between unloading and leaving) has an event, no interval
    ev = [x for x, nxt in zip(ev, ev[1:] + [(math.inf, "", "")]) if nxt[0] > x[0]]
    assert [d for _, _, d in ev] == [s for s, _, _ in iv[1:]]
    assert [t for t, _, _ in ev] == pytest.approx([s for _, s, _ in iv[1:]], rel=1e-12)
    assert [loc for _, loc, d in ev if d in ("loading", "unloading", "idle")] == ["A", "B", "P"]
    kinds = {(r["kind"], r["location"]) for r in rows(res, "events")
             if r["kind"] in ("pickup", "deliver")}
    assert kinds == {("pickup", "A"), ("deliver", "q")}

    # the robot's own accounting
    robot = res.plant.robots["amr-1"]
    assert robot.distance_m["empty"] == pytest.approx(l_pa + l_bp, rel=1e-9)
    assert robot.distance_m["loaded"] == pytest.approx(l_ab, rel=1e-9)
    t = robot.timer.time_s
    assert t["travel_empty"] == pytest.approx(t_pa + t_bp, rel=1e-9)
    assert t["travel_loaded"] == pytest.approx(t_ab, rel=1e-9)
    assert t.get("waiting_traffic", 0.0) == 0.0
    assert sum(t.values()) == pytest.approx(2000.0, rel=1e-9)

    (task,) = rows(res, "transport")
    assert task["status"] == "delivered" and task["robot"] == "amr-1"
    assert task["pickup_node"] == "A" and task["drop_node"] == "B" and task["units"] == 1
    assert task["requested_s"] == pytest.approx(100.0)
    assert task["picked_up_s"] == pytest.approx(100.0 + t_pa + 7.0, rel=1e-9)
    assert task["delivered_s"] == pytest.approx(100.0 + t_pa + 7.0 + t_ab + 3.0, rel=1e-9)

    usage = {(u["a"], u["b"]): u["usage"] for u in res.summary["lanes"]}
    assert usage[("A", "P")] == 2 and usage[("A", "W")] == 1 and usage[("B", "W")] == 1
    assert usage[("A", "D")] == 1 and usage[("B", "D")] == 1 and usage[("C", "P")] == 0


@pytest.mark.parametrize("speeds", [(1.0, 0.8), (0.3, 0.2), (2.5, 2.0)])
def test_free_flow_speed_limit_binds_only_when_slower(tmp_path, speeds):
    v_e, v_l = speeds
    data = free_flow(speed_empty_m_s=v_e, speed_loaded_m_s=v_l)
    res = run(tmp_path, data)
    g = lane_graph(data)
    iv = robot_intervals(res, "amr-1")
    loaded = [r["duration_s"] for r in iv if r["state"] == "travel_loaded"]
    empty = [r["duration_s"] for r in iv if r["state"] == "travel_empty"]
    assert loaded == pytest.approx([fastest(g, "A", "B", v_l)[0]], rel=1e-9)
    assert empty == pytest.approx([fastest(g, "P", "A", v_e)[0], fastest(g, "B", "P", v_e)[0]],
                                  rel=1e-9)


# --- battery accounting -------------------------------------------------------------------
def _energy_balance(res, spec: dict, horizon: float) -> None:
    for name, robot in res.plant.robots.items():
        b = robot.battery
        d = robot.distance_m
        t = robot.timer.time_s  # warm-up is 0: the timer covers the whole run
        assert sum(t.values()) == pytest.approx(horizon, rel=1e-9)
        travel = (d["empty"] * spec["consumption_empty_kwh_per_m"]
                  + d["loaded"] * spec["consumption_loaded_kwh_per_m"])
        assert b.drawn_travel_kwh == pytest.approx(travel, rel=1e-9, abs=1e-12), name
        charging_s = t.get("charging", 0.0)
        base = spec["base_kw"] * (horizon - charging_s) / 3600.0
        assert b.drawn_base_kwh == pytest.approx(base, rel=1e-9, abs=1e-12), name
        initial = spec.get("initial_soc", 1.0) * spec["capacity_kwh"]
        assert initial - b.drawn_travel_kwh - b.drawn_base_kwh + b.charged_kwh == \
            pytest.approx(b.soc_kwh, rel=1e-9, abs=1e-9), name
        assert b.charged_kwh <= spec["charging_kw"] * charging_s / 3600.0 + 1e-9
        s = res.summary["robots"][name]
        assert s["energy_kwh"] == pytest.approx(b.drawn_travel_kwh + b.drawn_base_kwh, rel=1e-12)
        assert s["charged_kwh"] == pytest.approx(b.charged_kwh, rel=1e-12)
        assert s["soc_end"] == pytest.approx(b.soc_kwh / spec["capacity_kwh"], rel=1e-12)
        assert s["distance_m"] == pytest.approx(d["empty"] + d["loaded"], rel=1e-12)


def test_battery_energy_is_distance_times_consumption_plus_base_load(tmp_path):
    data = free_flow(horizon=3000.0)
    res = run(tmp_path, data)
    _energy_balance(res, BATTERY, 3000.0)
    g = lane_graph(data)
    b = res.plant.robots["amr-1"].battery
    # and with distances from the layout itself
    empty = fastest(g, "P", "A", 1.0)[1] + fastest(g, "B", "P", 1.0)[1]
    loaded = fastest(g, "A", "B", 0.8)[1]
    assert b.drawn_travel_kwh == pytest.approx(0.001 * empty + 0.002 * loaded, rel=1e-9)
    assert b.drawn_base_kwh == pytest.approx(0.05 * 3000.0 / 3600.0, rel=1e-9)
    assert b.charged_kwh == 0.0


def test_battery_balance_with_charging(tmp_path):
    spec = {"capacity_kwh": 0.3, "initial_soc": 0.9, "consumption_empty_kwh_per_m": 0.0006,
            "consumption_loaded_kwh_per_m": 0.001, "base_kw": 0.004, "charging_kw": 0.6}
    data = ring(robots=3, units=8, horizon=20_000.0, battery=spec)
    res = run(tmp_path, data)
    assert sum(r.timer.time_s.get("charging", 0.0) for r in res.plant.robots.values()) > 0
    _energy_balance(res, spec, 20_000.0)


# --- charging -----------------------------------------------------------------------------
# On the ring the longest task (≤ 60 m empty to the pickup, ≤ 40 m loaded, ≤ 44 m on to a
# charger) takes ≤ 0.084 kWh: 30 % of 0.3 kWh covers it, so a robot sent out above the
# threshold can always come back, yet a full battery lasts only four or five tasks.
SMALL = {"capacity_kwh": 0.3, "consumption_empty_kwh_per_m": 0.0005,
         "consumption_loaded_kwh_per_m": 0.0008, "base_kw": 0.0, "charging_kw": 0.5}


@pytest.fixture
def charge_log(monkeypatch):
    """Every switch of a battery into or out of charging: (battery id, time, on, soc_kwh)."""
    log: list[tuple[int, float, bool, float]] = []
    original = Battery.set_charging

    def spy(self, now, on):
        original(self, now, on)
        log.append((id(self), now, on, self.soc_kwh))

    monkeypatch.setattr(Battery, "set_charging", spy)
    return log


def _charging_runs(res):
    """Per robot: (start, end, charger node) of each charging interval, from states.parquet
    and the node of the matching 'charging' robot event."""
    where = defaultdict(dict)
    for r in rows(res, "events"):
        if r["kind"] == "robot" and r["detail"] == "charging":
            where[r["entity"]][r["time_s"]] = r["location"]
    out = []
    for r in robot_intervals(res):
        if r["state"] == "charging":
            node = where[r["entity"]].get(r["start_s"])
            out.append((r["entity"], r["start_s"], r["end_s"], node))
    return out


@pytest.mark.parametrize("robots,chargers", [(3, 1), (4, 2)])
def test_charging_one_robot_per_charger_and_soc_in_bounds(tmp_path, charge_log, robots, chargers):
    data = ring(robots=robots, units=10, horizon=40_000.0, battery=SMALL, chargers=chargers,
                opportunistic_below_soc=0.0, charge_below_soc=0.4, charge_target_soc=0.9)
    res = run(tmp_path, data)
    runs = _charging_runs(res)
    assert runs, "a small battery must force charging"
    charger_nodes = {n for n, spec in data["nodes"].items() if spec["role"] == "charger"}
    by_charger = defaultdict(list)
    for robot, s, e, node in runs:
        assert node in charger_nodes, f"{robot} charged at {node!r}, not at a charger"
        by_charger[node].append((s, e, robot))
    for node, ivs in by_charger.items():
        ivs.sort()
        for (s1, e1, r1), (s2, e2, r2) in pairwise(ivs):
            assert s2 >= e1 - 1e-9, f"{r1} [{s1}, {e1}) and {r2} [{s2}, {e2}) share {node}"
    # robots charge only when below the threshold (opportunistic charging is off) ...
    names = {id(r.battery): name for name, r in res.plant.robots.items()}
    starts = [(names[i], t, soc) for i, t, on, soc in charge_log if on and i in names]
    assert len(starts) == len(runs)
    for name, t, soc in starts:
        assert soc < 0.4 * SMALL["capacity_kwh"], f"{name} started charging at {t} with {soc}"
    # ... and up to the target (a charge still running at the horizon has no end yet)
    by_robot = defaultdict(list)
    for i, t, on, soc in charge_log:
        if i in names:
            by_robot[names[i]].append((t, on, soc))
    for name, seq in by_robot.items():
        for t, on, soc in seq:
            if not on:
                assert soc == pytest.approx(0.9 * SMALL["capacity_kwh"], rel=1e-9), (name, t)
    # state of charge never left [0, capacity]: checked on every arrival by the monitor, and
    # at the end here
    for name, r in res.plant.robots.items():
        assert -1e-9 <= r.battery.soc_kwh <= SMALL["capacity_kwh"] + 1e-9, name
    assert_all_delivered(res)


def test_idle_robot_below_threshold_goes_charging(tmp_path):
    """A robot standing idle draws its base load; once below charge_below_soc it must go and
    charge rather than drain its battery below zero (the monitor would stop the run when it
    next moves)."""
    spec = {"capacity_kwh": 1.0, "consumption_empty_kwh_per_m": 0.001,
            "consumption_loaded_kwh_per_m": 0.002, "base_kw": 0.5, "charging_kw": 1.0}
    data = free_flow(horizon=20_000.0, battery=spec)
    data["sources"]["src"]["interarrival"] = const(15_000.0)  # long idle before the task
    res = run(tmp_path, data)
    b = res.plant.robots["amr-1"].battery
    assert b.charged_kwh > 0
    assert b.soc_kwh >= 0.0
    assert_all_delivered(res)


def test_robot_waiting_in_traffic_gives_up_its_trip_to_charge_before_running_flat(tmp_path):
    """An obstacle (an unknown occupant, held through the occupancy API) sits on the pickup
    port from t = 0 to 10,000 s. The robot assigned at t = 100 s waits for it, drawing 0.5 kW:
    it would be flat after 7,300 s. It must give up the trip while it can still reach the
    charger with the reserve left, charge, and deliver once the port is clear; the monitor
    (which also checks the state of charge while a robot waits) stays silent."""
    from darkfab.scenarios.builder import build_plant

    spec = {"capacity_kwh": 1.0, "consumption_empty_kwh_per_m": 0.0001,
            "consumption_loaded_kwh_per_m": 0.0002, "base_kw": 0.5, "charging_kw": 1.0}
    path = tmp_path / "blocked.toml"
    path.write_text(to_toml(free_flow(horizon=20_000.0, battery=spec)))
    s = load_scenario(path)
    (tmp_path / "out").mkdir()
    plant = build_plant(s, 1, 0, tmp_path / "out", "blocked", 1024, True)
    occ, env = plant.fleet.occ, plant.model.env
    occ.hold([("node", "A")], "obstacle")

    def clear(_ev):
        occ.release(("node", "A"), "obstacle")

    env.timeout(10_000.0).callbacks.append(clear)
    plant.start()
    env.run(until=s.scenario.horizon_s)
    robot, fleet = plant.robots["amr-1"], plant.fleet
    b = robot.battery
    b.advance(env.now)
    assert fleet.abandoned == 1
    assert b.charged_kwh > 0.5
    assert 0.0 <= b.soc_kwh <= b.capacity_kwh
    assert fleet.tasks_delivered == 1 and not fleet.pending
    plant.fleet.finish(env.now)
    plant.model.finish(env.now)
    events = pq.read_table(tmp_path / "out" / "events.parquet").to_pylist()
    abandon = [e for e in events if e["kind"] == "abandon"]
    assert len(abandon) == 1 and abandon[0]["entity"] == "amr-1"
    # it gave up when the reserve (0.1 kWh, plus the 5 m to the charger) was reached, checking
    # at least every retry_s while it waited; from full charge at 0.5 kW:
    gave_up = (1.0 - fleet.reserve_soc - 5.0 * spec["consumption_empty_kwh_per_m"]) \
        / spec["base_kw"] * 3600.0
    assert gave_up <= abandon[0]["time_s"] <= gave_up + fleet.retry_s + 1e-6
    task = rows_of(tmp_path / "out", "transport")[0]
    assert task["status"] == "delivered" and task["picked_up_s"] >= 10_000.0


# --- task allocation ----------------------------------------------------------------------
@pytest.mark.parametrize("allocation", ALLOCATIONS)
def test_every_allocation_completes_all_tasks(tmp_path, allocation):
    data = ring(robots=3, units=8, horizon=40_000.0, task_allocation=allocation)
    res = run(tmp_path, data)
    assert res.summary["fleet"]["task_allocation"] == allocation
    assert_all_delivered(res)
    tasks = rows(res, "transport")
    assert len(tasks) >= 3 * 8  # src_a → qb, mb → qc, src_c → qa: one unit per task
    # each task was assigned before pickup and picked up before delivery
    for t in tasks:
        assert t["requested_s"] <= t["assigned_s"] <= t["picked_up_s"] <= t["delivered_s"]
    used = Counter(t["robot"] for t in tasks)
    assert set(used) <= set(res.plant.robots)
    assert sum(r.tasks_done for r in res.plant.robots.values()) == len(tasks)


@pytest.mark.parametrize("allocation", ALLOCATIONS)
def test_every_allocation_completes_with_small_batteries(tmp_path, allocation):
    data = ring(robots=3, units=8, horizon=60_000.0, task_allocation=allocation, battery=SMALL)
    res = run(tmp_path, data)
    assert_all_delivered(res)


# --- stalls -------------------------------------------------------------------------------
def test_stalls_are_recovered_and_tasks_complete(tmp_path):
    stall = [{"name": "lost-localisation", "time_to_failure": const(45.0),
              "recovery_time": const(40.0)}]
    data = ring(robots=3, units=6, horizon=40_000.0, stalls=stall)
    res = run(tmp_path, data)
    failed = [r for r in robot_intervals(res) if r["state"] == "failed"]
    assert failed, "robots with 45 s of travel between stalls must stall"
    for r in failed:
        assert r["duration_s"] == pytest.approx(40.0, rel=1e-9)
    stalls = sum(r.stalls for r in res.plant.robots.values())
    assert stalls == len(failed)
    faults = [r for r in rows(res, "events") if r["kind"] == "fault"
              and r["entity"] in res.plant.robots]
    repairs = [r for r in rows(res, "events") if r["kind"] == "repair"
               and r["entity"] in res.plant.robots]
    assert len(faults) == stalls and len(repairs) == stalls
    assert {r["detail"] for r in faults} == {"lost-localisation"}
    # a stall happens part-way along a lane: the robot is on a lane when it fails
    lanes = {str(lane_key(link["a"], link["b"], False)[1:]) for link in data["links"]}
    assert {r["location"] for r in faults} <= lanes
    # time to failure counts travel time only: one stall per 45 s of travel (give or take
    # the one due at the horizon)
    for name, robot in res.plant.robots.items():
        travel = sum(r["duration_s"] for r in robot_intervals(res, name)
                     if r["state"] in ("travel_empty", "travel_loaded"))
        assert abs(robot.stalls - travel / 45.0) <= 1.0, (name, robot.stalls, travel)
    assert res.summary["robots"]["amr-1"]["stalls"] == res.plant.robots["amr-1"].stalls
    assert_all_delivered(res)


def test_long_stalls_delay_but_do_not_block_for_ever(tmp_path):
    """Stalls of five minutes on a busy ring: robots behind a stalled one wait or re-plan
    round it; the invariants hold and all tasks complete."""
    stall = [{"name": "bump", "time_to_failure": {"dist": "exponential", "mean_s": 60.0},
              "recovery_time": const(300.0)}]
    data = ring(robots=4, units=6, horizon=60_000.0, stalls=stall)
    res = run(tmp_path, data)
    failed = [r for r in robot_intervals(res) if r["state"] == "failed"]
    assert failed and all(r["duration_s"] == pytest.approx(300.0) for r in failed)
    assert_all_delivered(res)


# --- the invariant monitor ----------------------------------------------------------------
def _small_run(tmp_path, check=True, robots=2):
    data = ring(robots=robots, units=1, horizon=600.0)
    return run(tmp_path, data, check=check, tag=f"small{int(check)}")


def test_monitor_rejects_a_move_between_non_adjacent_nodes(tmp_path):
    res = _small_run(tmp_path)
    fleet, robot = res.plant.fleet, res.plant.robots["amr-1"]
    # R0 and R3 are not joined by a lane
    bogus = Lane(lane_key("R0", "R3", False), "R0", "R3", 40.0, math.inf)
    with pytest.raises(InvariantViolation, match="adjacent"):
        fleet.monitor_move(robot, "R0", bogus, "R3")
    # a real lane driven the wrong way round (lane from R0 to R1, robot claims R1 → R0)
    real = Lane(lane_key("R0", "R1", False), "R0", "R1", 20.0, math.inf)
    with pytest.raises(InvariantViolation):
        fleet.monitor_move(robot, "R1", real, "R0")


def test_monitor_rejects_a_lane_over_capacity(tmp_path):
    res = _small_run(tmp_path)
    fleet, r1, r2 = res.plant.fleet, res.plant.robots["amr-1"], res.plant.robots["amr-2"]
    key = lane_key("R0", "R1", False)
    lane = Lane(key, "R0", "R1", 20.0, math.inf)
    occ = res.plant.fleet.occ
    occ.occupants[key] |= {r1.name, r2.name}  # two robots on a one-robot lane
    with pytest.raises(InvariantViolation, match="capacity"):
        fleet.monitor_move(r1, "R0", lane, "R1")


def test_monitor_rejects_two_robots_on_one_node(tmp_path):
    res = _small_run(tmp_path)
    fleet, r1, r2 = res.plant.fleet, res.plant.robots["amr-1"], res.plant.robots["amr-2"]
    lane = Lane(lane_key("R0", "R1", False), "R0", "R1", 20.0, math.inf)
    r1.node = r2.node = "R1"
    with pytest.raises(InvariantViolation, match="R1"):
        fleet.monitor_arrive(r1, lane, "R1")


@pytest.mark.parametrize("soc_kwh", [-0.01, 10.5])
def test_monitor_rejects_state_of_charge_out_of_bounds(tmp_path, soc_kwh):
    res = _small_run(tmp_path, robots=1)
    fleet, robot = res.plant.fleet, res.plant.robots["amr-1"]
    lane = Lane(lane_key("R0", "R1", False), "R0", "R1", 20.0, math.inf)
    robot.battery.soc_kwh = soc_kwh
    robot.battery.last_s = fleet.env.now
    robot.node = "R1"
    with pytest.raises(InvariantViolation, match="charge"):
        fleet.monitor_arrive(robot, lane, "R1")


def test_monitor_is_silent_when_invariant_checks_are_off(tmp_path):
    res = _small_run(tmp_path, check=False)
    fleet, robot = res.plant.fleet, res.plant.robots["amr-1"]
    bogus = Lane(lane_key("R0", "R3", False), "R0", "R3", 40.0, math.inf)
    fleet.monitor_move(robot, "R0", bogus, "R3")  # no exception: checks are off
    real = Lane(lane_key("R0", "R1", False), "R0", "R1", 20.0, math.inf)
    robot.battery.soc_kwh = -1.0
    robot.battery.last_s = fleet.env.now
    res.plant.robots["amr-2"].node = robot.node = "R1"
    fleet.monitor_arrive(robot, real, "R1")


def test_without_traffic_control_robots_may_meet_and_the_monitor_allows_it(tmp_path,
                                                                           monkeypatch):
    """traffic = "none" ignores other robots (for comparison only): robots share nodes, and the
    monitor, which checks separation only under traffic control, lets the run finish."""
    from darkfab.control.fleet import FleetManager

    meetings = []
    original = FleetManager.monitor_arrive

    def spy(self, robot, lane, to):
        here = [r.name for r in self.robots if r.node == to]
        if len(here) > 1:
            meetings.append((self.env.now, to, here))
        return original(self, robot, lane, to)

    monkeypatch.setattr(FleetManager, "monitor_arrive", spy)
    # six robots all parked on spurs of one ring node: they meet on the way out
    data = ring(robots=6, units=10, horizon=20_000.0, traffic="none")
    for i, link in enumerate(data["links"]):
        if link["a"].startswith("park"):
            data["links"][i] = dict(link, b="R1")
    res = run(tmp_path, data)
    assert res.summary["fleet"]["traffic"] == "none"
    assert meetings, "without traffic control six robots sharing one exit should meet"
    assert_all_delivered(res)


# --- material -----------------------------------------------------------------------------
@pytest.mark.parametrize("robots", [1, 3])
def test_every_staged_unit_is_delivered(tmp_path, robots):
    data = ring(robots=robots, units=7, horizon=60_000.0, payload_units=2)
    res = run(tmp_path, data)
    assert_all_delivered(res)
    staging = set(res.plant.staging)
    events = rows(res, "events")
    into_staging = [r["unit_id"] for r in events
                    if r["kind"] in ("create", "unload") and r["location"] in staging]
    picked = [r["unit_id"] for r in events if r["kind"] == "pickup"]
    delivered = [r["unit_id"] for r in events if r["kind"] == "deliver"]
    tasks = rows(res, "transport")
    assert len(into_staging) == 2 * 7 + 7  # src_a and src_c units, and mb's outputs
    assert sorted(picked) == sorted(into_staging)
    assert sorted(delivered) == sorted(into_staging)
    assert sum(t["units"] for t in tasks) == len(into_staging)
    assert all(1 <= t["units"] <= 2 for t in tasks)
    # staging areas are empty and nothing is left on a robot
    for st in res.plant.staging.values():
        assert st.level == 0, st.name
    for r in res.plant.robots.values():
        assert not r.loaded_units
    # every unit reached a sink: created = completed
    created = sum(1 for r in events if r["kind"] == "create")
    completed = sum(1 for r in events if r["kind"] == "complete")
    assert created == completed == 2 * 7
    # deliveries went where the task said
    by_task = {t["task_id"]: t for t in tasks}
    for r in events:
        if r["kind"] == "deliver":
            task = by_task[int(r["detail"].split()[-1])]
            assert r["location"] == task["destination"]


# --- determinism --------------------------------------------------------------------------
def test_fleet_results_do_not_depend_on_the_hash_seed(tmp_path):
    """Same scenario, seed and replication → byte-identical tables, whatever Python's string
    hash seed (set iteration order must not steer the fleet)."""
    data = ring(robots=6, units=20, horizon=20_000.0)
    path = tmp_path / "ring.toml"
    path.write_text(to_toml(data))
    outs = []
    for h in ("1", "2", "3"):
        out = tmp_path / f"hash{h}"
        r = subprocess.run(
            [sys.executable, "-m", "darkfab.scenarios.cli", "run", str(path), "--out", str(out),
             "--quiet"], capture_output=True, text=True, timeout=300, check=False,
            env={**os.environ, "PYTHONHASHSEED": h})
        assert r.returncode == 0, r.stderr
        outs.append(out)
    for table in ("events.parquet", "states.parquet", "transport.parquet"):
        same = [(o / table).read_bytes() == (outs[0] / table).read_bytes() for o in outs[1:]]
        assert all(same), f"{table} differs between PYTHONHASHSEED=1, 2, 3: {same}"


def test_payload_mass_limits_units_per_trip(tmp_path):
    """With payload_units = 4 but payload_kg = 50 and 20 kg totes, a trip carries 2 totes."""
    import pyarrow.parquet as pq2

    from darkfab.scenarios import load_scenario as load
    from darkfab.scenarios import run_scenario as run
    from darkfab.scenarios.loader import ScenarioError

    base = Path(__file__).parents[1] / "data" / "tiny_amr.toml"
    sets = ["scenario.horizon_s=6000", "scenario.warmup_s=0", "fleet.payload_units=4",
            "fleet.payload_kg=50.0", "products.tote.mass_kg=20.0",
            "sources.inbound.interarrival={dist = \"constant\", value_s = 1.0}",
            "sources.inbound.max_units=40", "buffers.q1.capacity_units=20"]
    res = run(load(base, sets), out_dir=tmp_path / "o", check_invariants=True)
    tasks = pq2.read_table(res.out_dir / "transport.parquet").to_pylist()
    first_hop = [t for t in tasks if t["destination"] == "q1"]
    assert first_hop and max(t["units"] for t in first_hop) == 2
    with pytest.raises(ScenarioError) as e:
        load(base, sets[:-3] + ["products.tote.mass_kg=60.0"])
    assert any(p.path == "products.tote.mass_kg" for p in e.value.problems)


def test_robot_arm_loads_and_unloads_and_equipment_waits_for_it(tmp_path):
    """An arm with a 3 s cycle serving m1 and m2: every cycle of either machine takes one arm
    move to load and one to unload. A unit is logged as loaded once the arm has put it in, so
    from "load" to "unload" it spends its processing time plus at least the 3 s unload move."""
    import pyarrow.parquet as pq2

    from darkfab.scenarios import load_scenario as load
    from darkfab.scenarios import run_scenario as run

    base = Path(__file__).parents[1] / "data" / "tiny_amr.toml"
    sets = ["scenario.horizon_s=6000", "scenario.warmup_s=0",
            'arms.loader.node="st1"', 'arms.loader.cycle_time={dist = "constant", value_s = 3.0}',
            'arms.loader.equipment=["m1", "m2"]']
    res = run(load(base, sets), out_dir=tmp_path / "o", check_invariants=True)
    s = res.summary
    cycles = s["equipment"]["m1"]["cycles"] + s["equipment"]["m2"]["cycles"]
    assert cycles > 20
    moves = s["arms"]["loader"]["moves"]
    assert 2 * cycles <= moves <= 2 * cycles + 4  # cycles still open at the end may add moves
    ev = pq2.read_table(res.out_dir / "events.parquet").to_pylist()
    loaded = {e["unit_id"]: e["time_s"] for e in ev if e["kind"] == "load" and e["entity"] == "m1"}
    out = {e["unit_id"]: e["time_s"] for e in ev if e["kind"] == "unload" and e["entity"] == "m1"}
    both = [u for u in out if u in loaded]
    assert both and all(out[u] - loaded[u] >= 3.0 - 1e-9 for u in both)
    # and the arm is a real constraint: it is busy a measurable share of the time
    assert s["arms"]["loader"]["utilization"] == pytest.approx(3.0 * moves / 6000.0, rel=0.01)
