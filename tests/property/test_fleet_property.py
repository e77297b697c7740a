"""Fleet traffic on random layouts: no collision, no deadlock.

Hypothesis draws a connected layout (a random tree of crossings and ports plus extra edges,
random lengths, some speed limits and two-robot lanes, chargers and one parking spur per robot),
a random task stream (sources at ports sending a few units to buffers at other ports, equipment
there forwarding to a sink or on to a third port) and 1–6 robots. Every run has the invariant
monitor on (capacity of nodes and lanes, adjacent moves, state of charge) and a horizon far
longer than the work needs, so every transport task must be delivered by the end: a task still
open means robots were stuck (deadlock or livelock).

The generator only produces valid scenarios; a ScenarioError is a generator bug.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import pyarrow.parquet as pq
from darkfab.control.fleet import ALLOCATIONS
from darkfab.scenarios import load_scenario, run_scenario
from scenario_toml import to_toml
from hypothesis import HealthCheck, Phase, given, note, settings
from hypothesis import strategies as st


# --- TOML ---------------------------------------------------------------------------------
# --- generator ----------------------------------------------------------------------------
def _length(draw) -> float:
    return float(draw(st.integers(2, 30)))


@st.composite
def plants(draw) -> dict:
    n_core = draw(st.integers(3, 8))
    core = [f"c{i}" for i in range(n_core)]
    nodes: dict[str, dict] = {}
    for i, n in enumerate(core):
        nodes[n] = {"x_m": float(10 * (i % 4)), "y_m": float(10 * (i // 4)), "role": "waypoint"}
    links: list[dict] = []
    pairs: set[tuple[str, str]] = set()

    def link(a: str, b: str, spur: bool = False) -> None:
        body = {"a": a, "b": b, "length_m": _length(draw)}
        if not spur and draw(st.integers(0, 4)) == 0:
            body["speed_limit_m_s"] = draw(st.sampled_from([0.3, 0.5, 0.8]))
        if not spur and draw(st.integers(0, 5)) == 0:
            body["capacity_robots"] = 2
        links.append(body)
        pairs.add(tuple(sorted((a, b))))

    for i in range(1, n_core):  # a random tree: connected by construction
        link(core[draw(st.integers(0, i - 1))], core[i])
    extra = draw(st.lists(st.tuples(st.integers(0, n_core - 1), st.integers(0, n_core - 1)),
                          max_size=4))
    for i, j in extra:
        if i != j and tuple(sorted((core[i], core[j]))) not in pairs:
            link(core[i], core[j])

    ports = draw(st.lists(st.sampled_from(core), min_size=2, max_size=min(4, n_core),
                          unique=True))
    for p in ports:
        nodes[p]["role"] = "port"
    for n in core:
        if n not in ports and draw(st.integers(0, 6)) == 0:
            nodes[n]["capacity_robots"] = 2  # a wide crossing

    robots = draw(st.integers(1, 6))
    homes = []
    for i in range(robots):  # one parking spur per robot
        h = f"park{i}"
        nodes[h] = {"x_m": float(10 * i), "y_m": -20.0, "role": "parking"}
        link(h, draw(st.sampled_from(core)), spur=True)
        homes.append(h)
    for i in range(draw(st.integers(1, 2))):
        c = f"charger{i}"
        nodes[c] = {"x_m": float(10 * i), "y_m": 40.0, "role": "charger"}
        link(c, draw(st.sampled_from(core)), spur=True)

    sources, buffers, equipment, sinks = {}, {}, {}, {}
    for i in range(draw(st.integers(1, 3))):
        a, b = draw(st.lists(st.sampled_from(ports), min_size=2, max_size=2, unique=True))
        low = float(draw(st.integers(0, 100)))
        arrivals = {"dist": "uniform", "low_s": low,
                    "high_s": low + float(draw(st.integers(0, 100)))}
        sources[f"src{i}"] = {"node": a, "to": f"q{i}", "product": "part",
                              "interarrival": arrivals, "max_units": draw(st.integers(1, 3)),
                              "lot_size_units": draw(st.integers(1, 2))}
        buffers[f"q{i}"] = {"node": b}
        if draw(st.booleans()):
            buffers[f"q{i}"]["capacity_units"] = draw(st.integers(1, 4))
        process = {"dist": "constant", "value_s": float(draw(st.integers(1, 60)))}
        onward = [p for p in ports if p != b]
        if onward and draw(st.booleans()):  # a second hop to a third port
            c = draw(st.sampled_from(onward))
            equipment[f"m{i}"] = {"node": b, "input": f"q{i}", "process_time": process,
                                  "next": f"r{i}"}
            buffers[f"r{i}"] = {"node": c}
            equipment[f"n{i}"] = {"node": c, "input": f"r{i}", "process_time": process,
                                  "next": f"out{i}"}
            sinks[f"out{i}"] = {"node": c}
        else:
            equipment[f"m{i}"] = {"node": b, "input": f"q{i}", "process_time": process,
                                  "next": f"out{i}"}
            sinks[f"out{i}"] = {"node": b}

    fleet = {
        "count": robots, "homes": homes,
        "speed_empty_m_s": draw(st.sampled_from([0.5, 1.0, 1.5])),
        "speed_loaded_m_s": draw(st.sampled_from([0.4, 0.8, 1.0])),
        "payload_units": draw(st.integers(1, 2)),
        "load_time": {"dist": "constant", "value_s": float(draw(st.integers(0, 20)))},
        "unload_time": {"dist": "constant", "value_s": float(draw(st.integers(0, 20)))},
        "task_allocation": draw(st.sampled_from(ALLOCATIONS)),
        # a battery that never needs charging for this much work: traffic is under test
        "battery": {"capacity_kwh": 10.0, "consumption_empty_kwh_per_m": 0.0001,
                    "consumption_loaded_kwh_per_m": 0.0002, "base_kw": 0.0,
                    "charging_kw": 1.0},
    }
    # a horizon long enough for one robot to do all the work alone, each task over every lane
    # twice at the slowest speed: a task still open at the end means robots were stuck
    total_m = sum(link["length_m"] for link in links)
    slowest = min([fleet["speed_empty_m_s"], fleet["speed_loaded_m_s"]]
                  + [link.get("speed_limit_m_s", math.inf) for link in links])
    per_task = 2 * total_m / slowest + 40.0
    hops = sum(2 if f"r{i}" in buffers else 1 for i in range(len(sources)))
    units = sum(src["max_units"] for src in sources.values())
    last_arrival = sum(src["max_units"] * src["interarrival"]["high_s"]
                       for src in sources.values())
    horizon = last_arrival + units * hops * per_task + 1000.0
    return {
        "scenario": {"name": "prop", "horizon_s": float(math.ceil(horizon)),
                     "seed": draw(st.integers(0, 2**16))},
        "products": {"part": {}},
        "nodes": nodes, "links": links, "sources": sources, "buffers": buffers,
        "equipment": equipment, "sinks": sinks, "fleet": fleet,
    }


# --- the property -------------------------------------------------------------------------
# Shrinking is off: a stuck run simulates its whole horizon, so shrinking a failure would take
# minutes; the failing scenario is printed in full (as TOML) instead, and minimal reproducers
# of the failures found so far are the explicit tests below.
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow],
          phases=[Phase.explicit, Phase.reuse, Phase.generate])
@given(plants())
def test_random_layouts_have_no_collision_and_no_deadlock(data):
    note(to_toml(data))
    check_plant(data)


def check_plant(data: dict) -> None:
    text = to_toml(data)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "prop.toml"
        path.write_text(text)
        s = load_scenario(path)  # a ScenarioError here is a generator bug
        # InvariantViolation (collision, over capacity, bad move, charge) fails the test
        res = run_scenario(s, out_dir=Path(tmp) / "out", check_invariants=True)
        tasks = pq.read_table(Path(tmp) / "out" / "transport.parquet").to_pylist()
        events = pq.read_table(Path(tmp) / "out" / "events.parquet",
                               columns=["kind"]).column("kind").to_pylist()
    fleet = res.plant.fleet
    where = "; ".join(f"{r.name} at {r.node or r.lane} in {r.state}"
                      for r in res.plant.robots.values())
    stuck = [t for t in tasks if t["status"] != "delivered"]
    assert not stuck, (f"{len(stuck)} of {len(tasks)} tasks not delivered after "
                       f"{data['scenario']['horizon_s']:g} s: {stuck[:3]}; robots: {where}; "
                       f"deadlock escapes: {fleet.deadlocks}")
    assert not fleet.pending, f"tasks never assigned: {list(fleet.pending)}; robots: {where}"
    assert not fleet.check_tasks_at_end()
    # all material went through: every unit created reached a sink
    assert events.count("create") == events.count("complete")
    assert events.count("pickup") == events.count("deliver") == sum(t["units"] for t in tasks)
    assert res.summary["fleet"]["tasks_delivered"] == len(tasks)


# --- reproducers of failures found by the property ----------------------------------------
def _corridor() -> dict:
    """A corridor c0 – c1 – c2 – c3 – c4 with spurs: park0 off c1, park1 off c4, a charger off
    c3. Two units go from c3 to c0. amr-2 (home park1) carries the first to c0 and then wants
    to go home past c3; amr-1 (home park0) has meanwhile loaded the second at c3 and wants to
    go to c0: a head-on wait that only a robot stepping into a spur can resolve."""
    def node(x, y, role):
        return {"x_m": float(x), "y_m": float(y), "role": role}

    return {
        "scenario": {"name": "corridor", "horizon_s": 5000.0, "seed": 1},
        "products": {"part": {}},
        "nodes": {"c0": node(0, 0, "port"), "c1": node(5, 0, "waypoint"),
                  "c2": node(15, 0, "waypoint"), "c3": node(35, 0, "port"),
                  "c4": node(47, 0, "waypoint"), "park0": node(5, -15, "parking"),
                  "park1": node(47, -14, "parking"), "charger": node(35, 21, "charger")},
        "links": [{"a": a, "b": b} for a, b in [("c0", "c1"), ("c1", "c2"), ("c2", "c3"),
                                                ("c3", "c4"), ("park0", "c1"),
                                                ("park1", "c4"), ("charger", "c3")]],
        "sources": {"src": {"node": "c3", "to": "q", "product": "part",
                            "interarrival": {"dist": "constant", "value_s": 13.0},
                            "max_units": 2}},
        "buffers": {"q": {"node": "c0"}},
        "equipment": {"m": {"node": "c0", "input": "q", "next": "out",
                            "process_time": {"dist": "constant", "value_s": 10.0}}},
        "sinks": {"out": {"node": "c0"}},
        "fleet": {"count": 2, "homes": ["park0", "park1"], "speed_empty_m_s": 1.0,
                  "speed_loaded_m_s": 0.5,
                  "load_time": {"dist": "constant", "value_s": 5.0},
                  "unload_time": {"dist": "constant", "value_s": 5.0},
                  "battery": {"capacity_kwh": 10.0, "consumption_empty_kwh_per_m": 0.0001,
                              "consumption_loaded_kwh_per_m": 0.0002, "charging_kw": 1.0}},
    }


def test_head_on_in_a_corridor_is_resolved():
    """Found by the property above (then reduced by hand): the deadlock escape must let the
    robots pass each other (e.g. one steps into the charger spur at c3), not send amr-1 back
    and forth between c3 and c4, which lies on amr-2's way home, until the horizon."""
    check_plant(_corridor())


def test_head_on_in_a_corridor_is_resolved_with_either_allocation():
    for allocation in ALLOCATIONS:
        data = _corridor()
        data["fleet"]["task_allocation"] = allocation
        check_plant(data)


def _star_of_spurs() -> dict:
    """A tree: ports c1 and c2 joined through the waypoint c0, six parking spurs off c0, c1 and
    c2, a charger spur off c2, six robots with payload 1. Units go c1 → c2 (q0, 1 unit) and
    c2 → c1 → c2 (q1 then r1, 3 units). Found by the property (seed 94), kept as drawn."""
    def node(x, y, role):
        return {"x_m": float(x), "y_m": float(y), "role": role}

    return {
        "scenario": {"name": "prop", "horizon_s": 6563.0, "seed": 94},
        "products": {"part": {}},
        "nodes": {"c0": node(0, 0, "waypoint"), "c1": node(10, 0, "port"),
                  "c2": node(20, 0, "port"),
                  **{f"park{i}": node(10 * i, -20, "parking") for i in range(6)},
                  "charger0": node(0, 40, "charger")},
        "links": [{"a": a, "b": b, "length_m": float(m)} for a, b, m in [
            ("c0", "c1", 17), ("c0", "c2", 16), ("park0", "c2", 29), ("park1", "c1", 15),
            ("park2", "c0", 18), ("park3", "c2", 20), ("park4", "c0", 19), ("park5", "c0", 7),
            ("charger0", "c2", 16)]],
        "sources": {
            "src0": {"node": "c1", "to": "q0", "product": "part",
                     "interarrival": {"dist": "uniform", "low_s": 100.0, "high_s": 103.0},
                     "max_units": 1, "lot_size_units": 2},
            "src1": {"node": "c2", "to": "q1", "product": "part",
                     "interarrival": {"dist": "uniform", "low_s": 19.0, "high_s": 90.0},
                     "max_units": 3, "lot_size_units": 2}},
        "buffers": {"q0": {"node": "c2"}, "q1": {"node": "c1", "capacity_units": 2},
                    "r1": {"node": "c2"}},
        "equipment": {
            "m0": {"node": "c2", "input": "q0", "next": "out0",
                   "process_time": {"dist": "constant", "value_s": 5.0}},
            "m1": {"node": "c1", "input": "q1", "next": "r1",
                   "process_time": {"dist": "constant", "value_s": 33.0}},
            "n1": {"node": "c2", "input": "r1", "next": "out1",
                   "process_time": {"dist": "constant", "value_s": 33.0}}},
        "sinks": {"out0": {"node": "c2"}, "out1": {"node": "c2"}},
        "fleet": {"count": 6, "homes": [f"park{i}" for i in range(6)],
                  "speed_empty_m_s": 1.0, "speed_loaded_m_s": 0.8, "payload_units": 1,
                  "load_time": {"dist": "constant", "value_s": 2.0},
                  "unload_time": {"dist": "constant", "value_s": 2.0},
                  "task_allocation": "nearest-idle",
                  "battery": {"capacity_kwh": 10.0, "consumption_empty_kwh_per_m": 0.0001,
                              "consumption_loaded_kwh_per_m": 0.0002, "base_kw": 0.0,
                              "charging_kw": 1.0}},
    }


def test_six_robots_on_a_tree_of_spurs_deliver_everything():
    """Found by the property: 3 of 5 tasks were never delivered; four robots waited in traffic
    at charger0, park1, park2 and c1 until the horizon after three deadlock escapes."""
    check_plant(_star_of_spurs())
