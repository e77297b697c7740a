"""SIPP planning on the reservation table (``darkfab.control.traffic``), checked against
independent oracles: Dijkstra on travel times for a free graph, an explicit overlap check of
every planned window against the other robots' windows, and a brute-force search over a
discrete time grid for the earliest conflict-free arrival (SIPP is optimal when waiting is
allowed only at nodes: Phillips & Likhachev, ICRA 2011).

Conventions (as in :class:`~darkfab.control.fleet.FleetManager`): a plan reserves the start node
``[now, first departure)``, each lane ``[depart, arrive)``, each node passed from the arrival on
it until its departure (a zero-length window when the robot passes without stopping: it still
needs the node at that moment) and the goal until ``∞``. Should the traffic module define
``claims_far_node`` (a robot entering such a lane claims its far node at once), that node is
reserved from the departure instead. Windows are half-open; nodes here hold one robot.
"""

from __future__ import annotations

import math
import random

import networkx as nx
import pytest
from darkfab.control import traffic
from darkfab.control.traffic import INF, Lane, ReservationTable, sipp_plan
from darkfab.factory.occupancy import lane_key

EPS = 1e-9


# --- helpers ------------------------------------------------------------------------------
def build(edges, lane_capacity=None):
    """``edges``: (a, b, length_m, speed_limit_m_s or None); two-way lanes sharing one key.
    Returns (adjacency, table, graph)."""
    adjacency: dict[str, list[tuple[str, Lane]]] = {}
    capacity: dict = {}
    g = nx.Graph()
    for a, b, length, limit in edges:
        key = lane_key(a, b, False)
        lim = math.inf if limit is None else limit
        fwd = Lane(key, a, b, length, lim)
        back = Lane(key, b, a, length, lim)
        adjacency.setdefault(a, []).append((b, fwd))
        adjacency.setdefault(b, []).append((a, back))
        capacity[key] = (lane_capacity or {}).get(key, 1)
        capacity[("node", a)] = 1
        capacity[("node", b)] = 1
        g.add_edge(a, b, length=length, limit=lim)
    return adjacency, ReservationTable(capacity), g


def nobody(_key):
    return set()


def claims(table: ReservationTable, lane: Lane) -> bool:
    """Does a robot entering ``lane`` claim its far node at once? (``claims_far_node`` in the
    traffic module; without it, a node is claimed on arrival.)"""
    rule = getattr(traffic, "claims_far_node", None)
    return bool(rule(table, lane)) if rule is not None else False


def node_from(table: ReservationTable, step) -> float:
    """When a step's far node becomes the robot's: on entering the lane if it claims the far
    node, else on arrival."""
    return step.depart_s if claims(table, step.lane) else step.arrive_s


def windows_of(table: ReservationTable, start: str, now: float, steps):
    out, t, node = [], now, start
    for s in steps:
        out.append((("node", node), t, s.depart_s))
        out.append((s.lane.key, s.depart_s, s.arrive_s))
        t, node = node_from(table, s), s.to
    out.append((("node", node), t, INF))
    return out


def reserve(table: ReservationTable, robot: str, start: str, now: float, steps) -> None:
    """Post a plan's windows as the fleet manager does."""
    for key, s, e in windows_of(table, start, now, steps):
        table.add(key, s, e, robot)


def check_consistent(adjacency, start, goal, now, speed, steps) -> None:
    """The plan is a walk along lanes from start to goal, in time order, at the right speed."""
    assert steps, "expected a non-empty plan"
    assert steps[0].frm == start and steps[-1].to == goal
    t = now
    for i, s in enumerate(steps):
        if i:
            assert s.frm == steps[i - 1].to
        assert any(v == s.to and ln.key == s.lane.key for v, ln in adjacency[s.frm]), s
        assert (s.lane.a, s.lane.b) == (s.frm, s.to)
        assert s.depart_s >= t - EPS  # waiting only, never departing before arriving
        d = s.lane.length_m / min(speed, s.lane.speed_limit_m_s)
        assert s.arrive_s - s.depart_s == pytest.approx(d, rel=1e-9)
        t = s.arrive_s


def _meets(s: float, e: float, os_: float, oe: float) -> bool:
    """Do windows [s, e) and [os_, oe) share a moment (beyond EPS)? A zero-length window is
    an instant: a robot passing a node without stopping still needs it then, so an instant
    strictly inside another robot's stay is a conflict (two instants, or an instant at the
    very end of a stay, are not: execution orders those)."""
    if e - s > 0 and oe - os_ > 0:
        return max(s, os_) < min(e, oe) - EPS
    if oe - os_ <= 0 and e - s > 0:  # the other passes at an instant
        return s + EPS < os_ < e - EPS
    if e - s <= 0 and oe - os_ > 0:
        return os_ + EPS < s < oe - EPS
    return False


def check_no_overlap(table: ReservationTable, robot: str, start: str, now: float, steps):
    """No window of the plan meets another robot's window on a capacity-1 resource, and no
    lane carries more robots than its capacity at any moment."""
    for key, s, e in windows_of(table, start, now, steps):
        others = [(os_, oe, r) for os_, oe, r in table.windows[key] if r != robot]
        cap = table.capacity[key]
        if cap == 1:
            for os_, oe, r in others:
                assert not _meets(s, e, os_, oe), (
                    f"{robot} on {key} [{s}, {e}) meets {r}'s window [{os_}, {oe})")
            continue
        # capacity > 1: count the others present at every breakpoint inside the window
        points = sorted({s} | {x for os_, oe, _ in others for x in (os_, oe) if s <= x < e})
        for p in points:
            busy = sum(1 for os_, oe, _ in others if os_ <= p + EPS and oe > p + EPS)
            assert busy < cap, f"{robot} on {key} [{s}, {e}) over capacity with {others}"


def travel_time_oracle(g: nx.Graph, start: str, goal: str, speed: float) -> float:
    return nx.dijkstra_path_length(
        g, start, goal, weight=lambda u, v, d: d["length"] / min(speed, d["limit"]))


def grid_edges(rng: random.Random, n: int, limits: bool = False):
    """An n × n grid with random integer lengths (and optional speed limits)."""
    edges = []
    for i in range(n):
        for j in range(n):
            here = f"n{i}{j}"
            for di, dj in ((1, 0), (0, 1)):
                if i + di < n and j + dj < n:
                    lim = rng.choice([None, None, 0.5, 2.0]) if limits else None
                    edges.append((here, f"n{i + di}{j + dj}", float(rng.randint(1, 9)), lim))
    return edges


# --- free graph ---------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("speed", [0.7, 1.0, 3.0])
def test_free_graph_gives_fastest_path_at_lane_speed(seed, speed):
    rng = random.Random(seed)
    adjacency, table, g = build(grid_edges(rng, 4, limits=True))
    nodes = sorted(g)
    start, goal = rng.sample(nodes, 2)
    now = rng.uniform(0.0, 100.0)
    steps = sipp_plan(adjacency, table, "a", start, now, goal, speed, nobody)
    check_consistent(adjacency, start, goal, now, speed, steps)
    for i, s in enumerate(steps):  # no waiting on a free graph
        assert s.depart_s == pytest.approx(now if i == 0 else steps[i - 1].arrive_s, rel=1e-12)
    expected = travel_time_oracle(g, start, goal, speed)
    assert steps[-1].arrive_s - now == pytest.approx(expected, rel=1e-9)


def test_free_graph_without_limits_is_the_shortest_path():
    rng = random.Random(42)
    adjacency, table, g = build(grid_edges(rng, 5))
    for start, goal in [("n00", "n44"), ("n04", "n40"), ("n22", "n01")]:
        steps = sipp_plan(adjacency, table, "a", start, 0.0, goal, 1.25, nobody)
        length = sum(s.lane.length_m for s in steps)
        assert length == pytest.approx(nx.dijkstra_path_length(g, start, goal, weight="length"),
                                       rel=1e-12)
        assert steps[-1].arrive_s == pytest.approx(length / 1.25, rel=1e-9)


def test_speed_limit_caps_speed_and_can_change_the_route():
    # short route s-m-g (20 m) limited to 0.25 m/s; long route s-x-y-g (30 m) unlimited
    edges = [("s", "m", 10.0, 0.25), ("m", "g", 10.0, None),
             ("s", "x", 10.0, None), ("x", "y", 10.0, None), ("y", "g", 10.0, None)]
    adjacency, table, _ = build(edges)
    fast = sipp_plan(adjacency, table, "a", "s", 0.0, "g", 1.0, nobody)
    assert [s.to for s in fast] == ["x", "y", "g"]
    assert fast[-1].arrive_s == pytest.approx(30.0, rel=1e-12)
    # a slow robot (0.2 m/s) is not limited by 0.25 m/s: the short route wins
    slow = sipp_plan(adjacency, table, "a", "s", 0.0, "g", 0.2, nobody)
    assert [s.to for s in slow] == ["m", "g"]
    assert slow[-1].arrive_s == pytest.approx(100.0, rel=1e-12)
    # at 0.5 m/s: short route 10/0.25 + 10/0.5 = 60 s, long route 60 s; either is optimal
    mid = sipp_plan(adjacency, table, "a", "s", 0.0, "g", 0.5, nobody)
    assert mid[-1].arrive_s == pytest.approx(60.0, rel=1e-12)


def test_start_is_goal_gives_empty_plan():
    adjacency, table, _ = build([("s", "g", 5.0, None)])
    assert sipp_plan(adjacency, table, "a", "s", 3.0, "s", 1.0, nobody) == []


# --- waiting for others -------------------------------------------------------------------
def test_waits_for_a_node_window_then_goes():
    adjacency, table, _ = build([("s", "m", 10.0, None), ("m", "g", 10.0, None)])
    table.add(("node", "m"), 0.0, 30.0, "b")  # b is at m until 30 s, then leaves for good
    steps = sipp_plan(adjacency, table, "a", "s", 0.0, "g", 1.0, nobody)
    check_consistent(adjacency, "s", "g", 0.0, 1.0, steps)
    if claims(table, steps[0].lane):  # m is claimed on entering the lane: wait until b left
        assert steps[0].depart_s == pytest.approx(30.0)
    else:  # m is needed on arrival: leave early, reach m as b leaves
        assert steps[0].depart_s == pytest.approx(20.0)
        assert steps[0].arrive_s == pytest.approx(30.0)
    assert steps[-1].arrive_s == pytest.approx(steps[0].depart_s + 20.0)
    check_no_overlap(table, "a", "s", 0.0, steps)


def test_on_a_wide_lane_the_far_node_is_needed_only_on_arrival():
    key = lane_key("s", "m", False)
    adjacency, table, _ = build([("s", "m", 10.0, None), ("m", "g", 10.0, None)],
                                lane_capacity={key: 2})
    table.add(("node", "m"), 0.0, 30.0, "b")
    steps = sipp_plan(adjacency, table, "a", "s", 0.0, "g", 1.0, nobody)
    check_consistent(adjacency, "s", "g", 0.0, 1.0, steps)
    assert steps[0].depart_s == pytest.approx(20.0)  # leaves early, reaches m as b leaves
    assert steps[0].arrive_s == pytest.approx(30.0)
    assert steps[-1].arrive_s == pytest.approx(40.0)
    check_no_overlap(table, "a", "s", 0.0, steps)


def test_waits_for_a_lane_window():
    adjacency, table, _ = build([("s", "g", 10.0, None)])
    key = lane_key("s", "g", False)
    table.add(key, 5.0, 25.0, "b")  # b drives the lane (either direction) during [5, 25)
    steps = sipp_plan(adjacency, table, "a", "s", 0.0, "g", 1.0, nobody)
    assert steps[0].depart_s == pytest.approx(25.0)
    assert steps[-1].arrive_s == pytest.approx(35.0)
    check_no_overlap(table, "a", "s", 0.0, steps)


def test_two_robot_lane_admits_one_other_but_not_two():
    key = lane_key("s", "g", False)
    adjacency, table, _ = build([("s", "g", 10.0, None)], lane_capacity={key: 2})
    table.add(key, 0.0, 50.0, "b")
    steps = sipp_plan(adjacency, table, "a", "s", 0.0, "g", 1.0, nobody)
    assert steps[0].depart_s == pytest.approx(0.0)  # room for a second robot
    table.add(key, 0.0, 40.0, "c")
    steps = sipp_plan(adjacency, table, "a", "s", 0.0, "g", 1.0, nobody)
    assert steps[0].depart_s == pytest.approx(40.0)  # full until c leaves
    check_no_overlap(table, "a", "s", 0.0, steps)


def test_detours_rather_than_waits_when_detour_is_faster():
    edges = [("s", "m", 10.0, None), ("m", "g", 10.0, None),
             ("s", "x", 12.0, None), ("x", "g", 12.0, None)]
    adjacency, table, _ = build(edges)
    table.add(("node", "m"), 0.0, 100.0, "b")
    steps = sipp_plan(adjacency, table, "a", "s", 0.0, "g", 1.0, nobody)
    assert [s.to for s in steps] == ["x", "g"]
    assert steps[-1].arrive_s == pytest.approx(24.0)


def test_must_leave_start_before_another_robot_arrives():
    # b will arrive at a's start node at 8 s; a has to be gone by then, and can be
    adjacency, table, _ = build([("s", "g", 5.0, None)])
    table.add(("node", "s"), 8.0, INF, "b")
    steps = sipp_plan(adjacency, table, "a", "s", 0.0, "g", 1.0, nobody)
    assert steps is not None and steps[0].depart_s <= 8.0
    check_no_overlap(table, "a", "s", 0.0, steps)


def test_a_robot_passing_a_node_without_stopping_still_needs_it_then():
    """b's plan goes x → m → y and passes m at 7 s without waiting (a zero-length window on
    m). a may not plan to stand on m at that moment: it may arrive no earlier."""
    edges = [("x", "m", 3.0, None), ("m", "y", 1.0, None), ("s", "m", 3.0, None)]
    adjacency, table, _ = build(edges)
    b = sipp_plan(adjacency, table, "b", "x", 4.0, "y", 1.0, nobody)
    reserve(table, "b", "x", 4.0, b)
    assert [(st.to, st.arrive_s) for st in b] == [("m", 7.0), ("y", 8.0)]
    steps = sipp_plan(adjacency, table, "a", "s", 0.0, "m", 1.0, nobody)
    assert steps is not None
    assert steps[-1].arrive_s >= 7.0, (
        f"a plans to stand on m from {steps[-1].arrive_s} s for ever, but b passes m at 7 s; "
        f"windows on m: {table.windows[('node', 'm')]}")


def test_goal_occupied_for_ever_gives_none():
    adjacency, table, _ = build([("s", "m", 10.0, None), ("m", "g", 10.0, None)])
    table.add(("node", "g"), 0.0, INF, "b")
    assert sipp_plan(adjacency, table, "a", "s", 0.0, "g", 1.0, nobody) is None


def test_goal_held_physically_without_a_window_gives_none():
    adjacency, table, _ = build([("s", "m", 10.0, None), ("m", "g", 10.0, None)])

    def held(key):
        return {"b"} if key == ("node", "g") else set()

    assert sipp_plan(adjacency, table, "a", "s", 0.0, "g", 1.0, held) is None


def test_goal_occupied_for_a_while_is_reached_after():
    adjacency, table, _ = build([("s", "m", 10.0, None), ("m", "g", 10.0, None)])
    table.add(("node", "g"), 0.0, 50.0, "b")
    steps = sipp_plan(adjacency, table, "a", "s", 0.0, "g", 1.0, nobody)
    assert steps[0].arrive_s == pytest.approx(10.0)  # drives to m (and waits there)
    if claims(table, steps[-1].lane):  # enters the last lane as g frees
        assert steps[-1].arrive_s == pytest.approx(60.0)
    else:  # arrives as g frees
        assert steps[-1].arrive_s == pytest.approx(50.0)
    check_no_overlap(table, "a", "s", 0.0, steps)


def test_expired_window_of_a_robot_still_there_still_blocks():
    adjacency, table, _ = build([("s", "m", 10.0, None), ("m", "g", 10.0, None)])
    table.add(("node", "m"), 0.0, 5.0, "b")  # b planned to leave m by 5 s but is late

    def held(key):
        return {"b"} if key == ("node", "m") else set()

    steps = sipp_plan(adjacency, table, "a", "s", 20.0, "g", 1.0, held)
    # b still holds m at 20 s: its window counts as lasting until now (b leaves at once, as
    # far as the plan knows; execution waits for it), not as over
    assert steps is not None and steps[0].arrive_s > 20.0
    assert table.safe_intervals(("node", "m"), "a", 20.0, held)[0][0] > 20.0


def test_others_own_windows_are_ignored():
    adjacency, table, _ = build([("s", "g", 10.0, None)])
    table.add(("node", "g"), 0.0, INF, "a")  # a's own stale window
    steps = sipp_plan(adjacency, table, "a", "s", 0.0, "g", 1.0, nobody)
    assert steps[-1].arrive_s == pytest.approx(10.0)


# --- prioritized planning: many robots ----------------------------------------------------
@pytest.mark.parametrize("seed", range(12))
def test_prioritized_plans_never_overlap(seed):
    """Robots plan one after the other on a grid, each against all earlier reservations; no
    plan overlaps any earlier robot's window on a node or lane (capacity 1)."""
    rng = random.Random(seed)
    adjacency, table, _ = build(grid_edges(rng, 4, limits=True))
    nodes = sorted(adjacency)
    starts = rng.sample(nodes, 6)
    goals = rng.sample([n for n in nodes if n not in starts], 6)
    planned = 0
    for i, (s, goal) in enumerate(zip(starts, goals)):
        name = f"r{i}"
        # the later robots still stand on their start nodes: they block those for ever
        for j in range(i + 1, len(starts)):
            table.add(("node", starts[j]), 0.0, INF, f"r{j}")
        table.clear_robot(name)
        now = rng.uniform(0.0, 5.0)
        speed = rng.choice([0.8, 1.0, 1.5])
        steps = sipp_plan(adjacency, table, name, s, now, goal, speed, nobody)
        for j in range(i + 1, len(starts)):
            table.release(("node", starts[j]), f"r{j}")
        if steps is None:
            continue
        planned += 1
        check_consistent(adjacency, s, goal, now, speed, steps)
        check_no_overlap(table, name, s, now, steps)
        reserve(table, name, s, now, steps)
    assert planned >= 1


# --- optimality against a brute-force time grid ------------------------------------------
def brute_force_earliest(adjacency, table: ReservationTable, robot: str, start: str,
                         now: int, goal: str, horizon: int) -> int | None:
    """Earliest arrival at ``goal`` (free for ever after) over integer times, speed 1 m/s and
    integer lengths, waiting allowed only at nodes, the far node of a one-robot lane needed from
    departure. Every window endpoint is an integer, so checking unit steps is exact."""

    def others(key):
        return [(s, e) for s, e, r in table.windows[key] if r != robot]

    def node_free_at(n, t):  # an instant at n
        return all(not (s <= t < e) for s, e in others(("node", n)))

    def node_free_over(n, t0, t1):  # staying at n over [t0, t1); others' instants inside
        return all(not (s < t1 and e > t0 or s == e and t0 < s < t1)
                   for s, e in others(("node", n)))

    def lane_free(key, t0, t1):
        cap = table.capacity[key]
        for t in range(t0, t1):
            if sum(1 for s, e in others(key) if s < t + 1 and e > t) >= cap:
                return False
        return True

    if not node_free_at(start, now):
        return None
    reached = {(start, now)}
    best = None
    for t in range(now, horizon + 1):
        layer = [(n, tt) for n, tt in reached if tt == t]
        for n, _ in layer:
            if n == goal and all(e <= t for s, e in others(("node", n))):
                best = t if best is None else min(best, t)
        if best is not None:
            return best
        for n, _ in layer:
            if node_free_over(n, t, t + 1):
                reached.add((n, t + 1))
            for v, lane in adjacency[n]:
                d = int(lane.length_m)
                if t + d > horizon or not lane_free(lane.key, t, t + d):
                    continue
                if claims(table, lane):  # far node claimed from departure
                    ok = node_free_over(v, t, t + d) and node_free_at(v, t + d)
                else:
                    ok = node_free_at(v, t + d)
                if ok:
                    reached.add((v, t + d))
    return best


@pytest.mark.parametrize("wide", [False, True], ids=["one-robot-lanes", "some-wide-lanes"])
@pytest.mark.parametrize("seed", range(15))
def test_sipp_arrival_is_optimal_against_brute_force(seed, wide):
    rng = random.Random(1000 + seed)
    edges = [(a, b, float(rng.randint(1, 4)), None) for a, b, _, _ in grid_edges(rng, 3)]
    # a few diagonals make it less regular
    edges += [("n00", "n11", float(rng.randint(1, 4)), None),
              ("n12", "n21", float(rng.randint(1, 4)), None)]
    caps = {lane_key(a, b, False): rng.choice([1, 2]) for a, b, _, _ in edges} if wide else {}
    adjacency, table, _ = build(edges, lane_capacity=caps)
    nodes = sorted(adjacency)
    # other robots: plans posted on the table at integer times
    for k in range(rng.randint(1, 4)):
        s, goal = rng.sample(nodes, 2)
        t0 = rng.randint(0, 6)
        steps = sipp_plan(adjacency, table, f"o{k}", s, float(t0), goal, 1.0, nobody)
        if steps:
            reserve(table, f"o{k}", s, float(t0), steps)
        # leave their goals after a while so that most goals are reachable eventually
        for w in table.windows[("node", goal)]:
            if w[2] == f"o{k}" and w[1] == INF:
                w[1] = float(w[0] + rng.randint(0, 10))
    start, goal = rng.sample(nodes, 2)
    now = rng.randint(0, 3)
    steps = sipp_plan(adjacency, table, "a", start, float(now), goal, 1.0, nobody)
    expected = brute_force_earliest(adjacency, table, "a", start, now, goal, horizon=120)
    if expected is None:
        assert steps is None
        return
    assert steps is not None, f"SIPP found no plan; brute force arrives at {expected}"
    if start == goal:
        assert steps == []
        return
    check_consistent(adjacency, start, goal, float(now), 1.0, steps)
    check_no_overlap(table, "a", start, float(now), steps)
    assert steps[-1].arrive_s == pytest.approx(expected)
