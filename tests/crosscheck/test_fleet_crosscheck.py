"""Robot traffic checked from the output tables by an independent checker (fleet_checker.py,
which imports nothing from darkfab), with the simulator's own invariant monitor switched off so
that it is not what catches anything.

The checker is itself tested: on hand-made tables with one planted fault each, on a run with
``fleet.traffic = "none"`` (robots ignore each other: collisions are expected), and on runs with
planted bugs in the traffic code.

Finding recorded here: a SIPP planner that ignores every reservation (``ReservationTable.others``
returns nothing) changes no byte of the event log of ``tiny_amr`` and no figure of
``amr-warehouse``: a robot sets off only when the physical interlock
(``factory/occupancy.py``) gives it every lane and node of its leg, and on these layouts the
shortest path is the path SIPP picks. So that bug alone cannot cause a collision; the planted
bug that does is a planner *and* an interlock that ignore holds.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from darkfab.scenarios import load_scenario, run_scenario
from fleet_checker import check_run

TINY = Path(__file__).resolve().parents[1] / "data" / "tiny_amr.toml"


def _run(scenario: str, out: Path, overrides: list[str] | None = None):
    s = load_scenario(scenario, overrides or [])
    res = run_scenario(s, out_dir=out, check_invariants=False)
    assert not res.summary["partial"]
    return res.out_dir


# --- the checker on hand-made tables ----------------------------------------------------------
def _write(tmp: Path, moves: list[tuple], states: list[tuple] = ()) -> Path:
    """moves: (robot, from, to, entered_s, arrived_s); a three-node line a - b - c, b-c directed,
    a spur a - p2 for the second robot's home."""
    rows = [(t1, "move", r, to, f"{frm} {t0!r} 0.9000") for r, frm, to, t0, t1 in moves]
    rows += [(t, "robot", r, loc, st) for r, loc, st, t in states]
    rows.sort(key=lambda x: x[0])
    cols = list(zip(*rows))
    pq.write_table(pa.table({"time_s": pa.array(cols[0], pa.float64()), "kind": cols[1],
                             "entity": cols[2], "location": cols[3], "detail": cols[4]}),
                   tmp / "events.parquet")
    nodes = {n: {"x_m": x, "y_m": 0.0, "capacity_robots": 1}
             for n, x in (("a", 0.0), ("b", 10.0), ("c", 20.0), ("p2", -10.0))}
    links = [{"a": "a", "b": "b", "capacity_robots": 1},
             {"a": "b", "b": "c", "directed": True, "capacity_robots": 1},
             {"a": "a", "b": "p2", "capacity_robots": 1}]
    summary = {"simulated_s": 1000.0, "resolved_scenario": {
        "nodes": nodes, "links": links,
        "fleet": {"count": 2, "homes": ["a", "p2"], "speed_empty_m_s": 1.0,
                  "speed_loaded_m_s": 1.0}}}
    (tmp / "summary.json").write_text(json.dumps(summary))
    return tmp


def test_checker_passes_a_clean_hand_made_log(tmp_path):
    rep = check_run(_write(tmp_path, [("amr-1", "a", "b", 0.0, 10.0),
                                      ("amr-1", "b", "c", 10.0, 20.0),
                                      ("amr-2", "p2", "a", 5.0, 15.0),  # a is free from 0.0
                                      ("amr-2", "a", "b", 15.0, 25.0)]))
    assert rep.violations == [] and rep.moves == 4


@pytest.mark.parametrize("moves, kind, text", [
    # amr-2 enters lane a-b while amr-1 is on it (opposite directions share a two-way lane)
    ([("amr-1", "a", "b", 0.0, 10.0), ("amr-2", "p2", "a", 0.0, 10.0),
      ("amr-2", "a", "b", 10.0, 20.0), ("amr-1", "b", "a", 12.0, 22.0)], "capacity", "lane"),
    # amr-2 reaches a while amr-1 still stands there (home)
    ([("amr-2", "p2", "a", 0.0, 10.0)], "capacity", "node a"),
    ([("amr-1", "a", "c", 0.0, 20.0)], "links", "no such lane"),       # not adjacent
    ([("amr-1", "a", "b", 0.0, 10.0), ("amr-1", "b", "c", 10.0, 20.0),
      ("amr-1", "c", "b", 20.0, 30.0)], "links", "no such lane"),      # against a one-way lane
    ([("amr-1", "b", "c", 0.0, 10.0)], "continuity", "is at a"),       # teleport
    ([("amr-1", "a", "b", 0.0, 2.0)], "continuity", "faster"),         # 10 m in 2 s at 1 m/s
    ([("amr-1", "a", "b", 0.0, 10.0), ("amr-1", "b", "a", 8.0, 18.0)], "continuity", "before"),
])
def test_checker_finds_each_planted_fault(tmp_path, moves, kind, text):
    rep = check_run(_write(tmp_path, moves))
    assert kind in rep.kinds(), rep.violations
    assert any(text in v for v in rep.violations), rep.violations


def test_final_stay_counts_only_when_the_state_rows_put_the_robot_there(tmp_path):
    # amr-1 reaches b at 10 and stays (state row: idle at b); amr-2 arrives at b at 40
    moves = [("amr-1", "a", "b", 0.0, 10.0), ("amr-2", "p2", "a", 10.0, 20.0),
             ("amr-2", "a", "b", 30.0, 40.0)]
    stay = check_run(_write(tmp_path, moves, [("amr-1", "b", "idle", 10.0)]))
    assert any("node b" in v for v in stay.violations), stay.violations
    # amr-1 set off again at 10 on an unrecorded lane (last state row: travelling): no overlap
    gone = check_run(_write(tmp_path, moves, [("amr-1", "('b', 'c')", "travel_empty", 10.0)]))
    assert gone.violations == []


# --- the checker on darkfab runs --------------------------------------------------------------
def test_tiny_amr_run_is_clean(tmp_path):
    rep = check_run(_run(str(TINY), tmp_path / "tiny"))
    assert rep.violations == [] and rep.moves > 300


def test_amr_warehouse_run_is_clean(tmp_path):
    out = _run("amr-warehouse", tmp_path / "wh", ["scenario.horizon_s=86400.0"])
    rep = check_run(out)
    assert rep.violations == [], rep.violations[:20]
    assert rep.moves > 5000 and rep.robots == 6
    assert rep.max_load["lane"] == 2  # its two-robot lanes are used as such


def test_robots_that_ignore_each_other_collide(tmp_path):
    """The control: traffic = "none" lets robots share nodes and lanes, and the checker sees it."""
    rep = check_run(_run(str(TINY), tmp_path / "none", ['fleet.traffic="none"']))
    assert {"capacity"} == rep.kinds(), rep.violations[:10]
    assert any("lane" in v for v in rep.violations) and any("node" in v for v in rep.violations)


def _planner_ignores_reservations(monkeypatch):
    from darkfab.control import traffic
    monkeypatch.setattr(traffic.ReservationTable, "others",
                        lambda self, key, robot, now, held: [])


def test_planted_bug_planner_and_interlock_ignore_holds_is_caught(tmp_path, monkeypatch):
    """The planted bug: SIPP ignores every lane and node reservation, and the interlock admits
    a robot to any lane or node. The run completes (monitor off) and the checker reports
    robots sharing single-robot lanes and nodes."""
    from darkfab.factory import occupancy
    _planner_ignores_reservations(monkeypatch)
    monkeypatch.setattr(occupancy.Occupancy, "has_room", lambda self, key, robot: True)
    rep = check_run(_run(str(TINY), tmp_path / "bug"))
    assert "capacity" in rep.kinds(), "the checker missed robots sharing lanes and nodes"


def test_planner_alone_ignoring_reservations_cannot_collide(tmp_path, monkeypatch):
    """Defence in depth: with only the planner broken, the interlock still keeps every robot to
    the capacities (and on this layout the event log is the same)."""
    clean = _run(str(TINY), tmp_path / "clean")
    _planner_ignores_reservations(monkeypatch)
    bug = _run(str(TINY), tmp_path / "bug")
    assert check_run(bug).violations == []
    assert (bug / "events.parquet").read_bytes() == (clean / "events.parquet").read_bytes()
