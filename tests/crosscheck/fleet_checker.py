"""An independent check of robot traffic, from a run's output tables only.

It imports nothing from darkfab: it reads ``events.parquet`` (the ``move`` row written when a
robot reaches the end of a lane: ``location`` = node reached, ``detail`` = "<from> <time entered
the lane> <state of charge>", and the ``robot`` state rows), ``transport.parquet`` and the
resolved scenario in ``summary.json`` (nodes, links, capacities, fleet), rebuilds where every
robot was at every instant, and reports

- **capacity**: more robots on a node or a lane than its ``capacity_robots`` at some instant
  (an interval sweep; a two-way lane is one lane for both directions, as the README's Robots
  section defines it);
- **links**: a move along a lane that does not exist (no such link, a conveyor, or against a
  directed link);
- **continuity**: a move that does not start where the robot last was (its home for the first
  one), that starts before the robot arrived there, or that is faster than the robot's top speed
  on that lane allows; a state of charge outside [0, 1];
- **transport**: a delivered task whose robot was not at the pick-up node when it picked up,
  or not at the drop node when it delivered.

Occupancy model. A robot is on a lane from the time it entered it to its arrival (half-open:
another may enter at the instant it leaves), and at a node from its arrival to the time it
enters its next lane (closed: a robot passing through holds the node for that instant). Before
its first move a robot is at its home (``fleet.homes[i]`` for ``amr-{i+1}``). After its last
recorded arrival, the next lane is not recorded yet: the robot counts as staying at that node to
the end of the run only if its last state row (kind ``robot``) puts it there, not travelling;
otherwise its stay ends at the arrival (it may be on an unrecorded lane), which can only miss a
violation in the run's last leg, never invent one.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq

__all__ = ["Report", "check_run"]

EPS_S = 1e-6  # slack on time comparisons (times are written as floats)


@dataclass
class Report:
    violations: list[str] = field(default_factory=list)
    moves: int = 0
    robots: int = 0
    max_load: dict[str, int] = field(default_factory=dict)  # peak robots per resource kind

    def add(self, kind: str, text: str) -> None:
        self.violations.append(f"{kind}: {text}")

    def kinds(self) -> set[str]:
        return {v.split(":", 1)[0] for v in self.violations}


def _layout(rs: dict):
    nodes = rs["nodes"]
    node_cap = {n: int(b.get("capacity_robots", 1)) for n, b in nodes.items()}
    lanes: dict[tuple[str, str], tuple] = {}  # (from, to) -> (lane id, length m, limit m/s)
    lane_cap: dict[tuple, int] = {}
    for link in rs["links"]:
        if link.get("conveyor"):
            continue
        a, b = link["a"], link["b"]
        length = link.get("length_m")
        if length is None:
            pa, pb = nodes[a], nodes[b]
            length = math.hypot(pa["x_m"] - pb["x_m"], pa["y_m"] - pb["y_m"])
        limit = link.get("speed_limit_m_s") or math.inf
        lid = ("lane", a, b) if link.get("directed") else ("lane", *sorted((a, b)))
        lane_cap[lid] = int(link.get("capacity_robots", 1))
        lanes[(a, b)] = (lid, float(length), float(limit))
        if not link.get("directed"):
            lanes[(b, a)] = (lid, float(length), float(limit))
    return node_cap, lanes, lane_cap


def _sweep(intervals: dict, capacity: dict, closed: bool, report: Report, what: str) -> None:
    """Count robots per resource over time; report every instant where a count first exceeds
    capacity. ``intervals[res]`` = [(start, end, robot)]. Closed intervals count a robot at
    both ends (starts before ends at one instant); half-open ones release before they admit."""
    peak = 0
    for res, ivs in intervals.items():
        edges = []
        for s, e, r in ivs:
            edges.append((s, 0 if closed else 1, +1, r))
            edges.append((e, 1 if closed else 0, -1, r))
        edges.sort(key=lambda x: (x[0], x[1]))
        present: set[str] = set()
        over = False
        for t, _, d, r in edges:
            if d > 0:
                present.add(r)
            else:
                present.discard(r)
            peak = max(peak, len(present))
            if len(present) > capacity[res] and not over:
                report.add("capacity", f"{what} {res} holds {sorted(present)} at t={t:.6f} s "
                                       f"(capacity {capacity[res]})")
            over = len(present) > capacity[res]
    report.max_load[what] = peak


def check_run(run_dir: str | Path) -> Report:
    """Check one run folder; the report lists every violation found (empty: none)."""
    run_dir = Path(run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    rs = summary["resolved_scenario"]
    end = float(summary["simulated_s"])
    fleet = rs["fleet"]
    names = [f"amr-{i + 1}" for i in range(fleet["count"])]
    homes = dict(zip(names, fleet["homes"]))
    vmax = max(fleet["speed_empty_m_s"], fleet["speed_loaded_m_s"])
    node_cap, lanes, lane_cap = _layout(rs)

    ev = pq.read_table(run_dir / "events.parquet",
                       columns=["time_s", "kind", "entity", "location", "detail"])
    moves = ev.filter(pc.equal(ev["kind"], "move")).to_pylist()
    states = ev.filter(pc.equal(ev["kind"], "robot")).to_pylist()
    report = Report(moves=len(moves), robots=len(names))
    last_state: dict[str, dict] = {}
    for row in states:  # the log is in time order
        last_state[row["entity"]] = row

    node_iv: dict[str, list] = defaultdict(list)
    lane_iv: dict[tuple, list] = defaultdict(list)
    where = dict(homes)          # node each robot is at (or last reached)
    since = {r: 0.0 for r in names}  # time it got there
    positions: dict[str, list] = defaultdict(list)  # robot -> [(arrival, node, departure)]
    for row in moves:
        r, t, to = row["entity"], row["time_s"], row["location"]
        if r not in where:
            report.add("continuity", f"move by unknown robot {r} at t={t}")
            continue
        frm, entered_s, soc_s = row["detail"].split(" ")
        entered, soc = float(entered_s), float(soc_s)
        if frm != where[r]:
            report.add("continuity", f"{r} leaves {frm} at t={entered} but is at {where[r]}")
        if entered < since[r] - EPS_S:
            report.add("continuity", f"{r} enters lane {frm}-{to} at t={entered}, before it "
                                     f"reached {frm} at t={since[r]}")
        if not 0.0 <= soc <= 1.0:
            report.add("continuity", f"{r} state of charge {soc} at t={t}")
        lane = lanes.get((frm, to))
        if lane is None:
            report.add("links", f"{r} drives {frm} -> {to} at t={entered}: no such lane")
        else:
            lid, length, limit = lane
            if t - entered < length / min(vmax, limit) * (1 - 1e-9) - EPS_S:
                report.add("continuity", f"{r} drives {frm}-{to} ({length:.3g} m) in "
                                         f"{t - entered:.6g} s: faster than "
                                         f"{min(vmax, limit):.3g} m/s")
            lane_iv[lid].append((entered, t, r))
        node_iv[frm].append((since[r], entered, r))
        positions[r].append((since[r], frm, entered))
        where[r], since[r] = to, t

    for r in names:  # the final stay (see the module docstring)
        last = last_state.get(r)
        stays = (last is None or (last["time_s"] >= since[r] - EPS_S
                                  and last["location"] == where[r]
                                  and not last["detail"].startswith("travel")))
        stop = end if stays else since[r]
        node_iv[where[r]].append((since[r], stop, r))
        # a pick-up or drop after the last arrival happens there (never on a lane)
        positions[r].append((since[r], where[r], end))

    for n in node_iv:
        if n not in node_cap:
            report.add("links", f"robot at unknown node {n}")
    _sweep({n: v for n, v in node_iv.items() if n in node_cap}, node_cap, True, report, "node")
    _sweep(lane_iv, lane_cap, False, report, "lane")
    _check_transport(run_dir, rs, positions, report)
    return report


def _at(positions: list, t: float) -> str | None:
    for a, n, d in positions:
        if a - EPS_S <= t <= d + EPS_S:
            return n
    return None


def _check_transport(run_dir: Path, rs: dict, positions: dict, report: Report) -> None:
    path = run_dir / "transport.parquet"
    if not path.exists():
        return
    for task in pq.read_table(path).to_pylist():
        if task["status"] != "delivered":
            continue
        r = task["robot"]
        for when, node in (("picked_up_s", "pickup_node"), ("delivered_s", "drop_node")):
            at = _at(positions.get(r, []), task[when])
            if at != task[node]:
                report.add("transport", f"task {task['task_id']}: {r} at {at}, not "
                                        f"{task[node]}, at {when[:-2]} t={task[when]}")
