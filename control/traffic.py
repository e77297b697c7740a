"""Time-windowed reservations of nodes and lanes, and SIPP path planning against them.

Each robot's plan reserves windows [start, end) on every node and lane it will use: the node it
stands on until it leaves, each lane while on it, each node it passes, and its goal from arrival
on (open-ended, until its next plan). A new plan is made by Safe Interval Path Planning
(Phillips & Likhachev, ICRA 2011): a Dijkstra search over (node, safe interval) states whose
cost is arrival time, waiting at a node where that avoids another robot's window. Planning one
robot at a time against the others' reservations is prioritized planning. Windows are removed
when the robot leaves the node or lane, so the table holds only the future.

A search that fails explores every state it can reach, which grows with the layout. Most failures
have a static cause: the goal, or every way to it, is held for good (a robot stands there with
no plan to leave). Such failures are caught early, at a cost independent of the layout's size:
the goal must be free for good from some time on, and, checked once a search grows large, a
search from both ends over nodes that are ever free must meet (see :func:`may_connect`).
"""

from __future__ import annotations

import heapq
import math
from bisect import insort
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass

__all__ = ["ReservationTable", "Step", "Lane", "may_connect", "predecessors", "sipp_plan"]

INF = math.inf


@dataclass(frozen=True)
class Lane:
    key: Hashable
    a: str
    b: str
    length_m: float
    speed_limit_m_s: float


@dataclass(frozen=True)
class Step:
    lane: Lane
    frm: str
    to: str
    depart_s: float
    arrive_s: float


def _window_order(w: list) -> tuple[float, str]:
    return (w[0], w[2])


class ReservationTable:
    """Reserved windows per resource key: lists of [start, end, robot], sorted by start."""

    def __init__(self, capacity: dict[Hashable, int],
                 on_change: Callable[[Hashable], None] | None = None) -> None:
        self.capacity = capacity
        self._on_change = on_change
        self.windows: dict[Hashable, list[list]] = {k: [] for k in capacity}
        self._by_robot: dict[str, set[Hashable]] = {}

    def add(self, key: Hashable, start: float, end: float, robot: str) -> None:
        # sorted by (start, robot), a new window after equal ones (as a stable sort would)
        insort(self.windows[key], [start, end, robot], key=_window_order)
        self._by_robot.setdefault(robot, set()).add(key)

    def release(self, key: Hashable, robot: str) -> None:
        """Drop ``robot``'s windows on ``key`` (it has left, or re-plans)."""
        self.windows[key] = [w for w in self.windows[key] if w[2] != robot]
        if self._on_change is not None:
            self._on_change(key)

    def clear_robot(self, robot: str) -> None:
        for key in sorted(self._by_robot.pop(robot, set()), key=repr):  # deterministic wake-ups
            self.release(key, robot)

    def others(self, key: Hashable, robot: str, now: float,
               held: Callable[[Hashable], set[str]]) -> list[tuple[float, float]]:
        """Others' windows on ``key``; a window of a robot still there extends to at least now."""
        hs = held(key)
        out = []
        for s, e, r in self.windows[key]:
            if r == robot:
                continue
            if r in hs and e <= now:
                e = now + 1e-6
            out.append((s, e))
        for r in hs:  # a holder with no window (e.g. stalled, or never planned) blocks too
            if r != robot and not any(w[2] == r for w in self.windows[key]):
                out.append((-INF, INF))
        return out

    def safe_intervals(self, key, robot, now, held) -> list[tuple[float, float]]:
        """Intervals from ``now`` on in which the resource has room for one more robot (fewer
        than its capacity of other robots' windows overlap)."""
        cap = self.capacity[key]
        edges = []
        for s, e in self.others(key, robot, now, held):
            if e > now:
                edges.append((max(s, now), 1))
                edges.append((e, -1))
        edges.sort(key=lambda x: (x[0], -x[1]))  # arrivals before departures at one instant
        out, count, t = [], 0, now
        for x, d in edges:
            if x > t and count < cap:
                out.append((t, x))
            count += d
            t = max(t, x)
        if count < cap:
            out.append((t, INF))
        # merge overlapping intervals
        merged: list[tuple[float, float]] = []
        for a, b in out:
            if merged and merged[-1][1] > a:  # touching ones stay apart: a robot passes
                merged[-1] = (merged[-1][0], max(merged[-1][1], b))
            elif b > a:
                merged.append((a, b))
        return merged

    def earliest_lane(self, key, robot, t: float, duration: float, now: float, held,
                      latest: float) -> float | None:
        """Earliest start ≥ t (and ≤ latest) for a traversal of ``duration`` on a lane."""
        busy = self.others(key, robot, now, held)
        cap = self.capacity[key]
        candidates = sorted({t} | {e for _, e in busy if t < e <= latest})
        for c in candidates:
            if c > latest:
                break
            overlap = sum(1 for s, e in busy if s < c + duration and e > c)
            if overlap < cap:
                return c
        return None


Adjacency = dict[str, list[tuple[str, Lane]]]


def predecessors(adjacency: Adjacency) -> Adjacency:
    """The reverse of ``adjacency``: for each node, the (node, lane) pairs leading to it."""
    out: Adjacency = {}
    for u, nbrs in adjacency.items():
        for v, lane in nbrs:
            out.setdefault(v, []).append((u, lane))
    return out


def may_connect(adjacency: Adjacency, preds: Adjacency, start: str, goal: str,
                passable: Callable[[str], bool], blocked: frozenset[Hashable]) -> bool:
    """Whether a path from ``start`` to ``goal`` may exist through ``passable`` nodes, avoiding
    ``blocked`` nodes and lanes (timing ignored). Breadth-first from both ends in turn, stopping
    when the two meet or one side runs out: the cost is that of the smaller side, so a goal (or
    start) shut off in a small corner is found without visiting the rest of the layout.
    ``False`` is a proof that no timed path exists either."""
    fwd, bwd = {start}, {goal}
    fq, bq = deque([start]), deque([goal])
    while fq and bq:
        u = fq.popleft()
        for v, lane in adjacency.get(u, ()):
            if v in fwd or lane.key in blocked or ("node", v) in blocked:
                continue
            if v in bwd:
                return True
            if passable(v):
                fwd.add(v)
                fq.append(v)
        u = bq.popleft()
        for v, lane in preds.get(u, ()):
            if v in bwd or lane.key in blocked or ("node", v) in blocked:
                continue
            if v in fwd:
                return True
            if passable(v):
                bwd.add(v)
                bq.append(v)
    return False


def sipp_plan(adjacency: Adjacency, table: ReservationTable,
              robot: str, start: str, now: float, goal: str, speed_m_s: float,
              held: Callable[[Hashable], set[str]],
              blocked: frozenset[Hashable] = frozenset(),
              heuristic: Callable[[str], float] | None = None,
              preds: Adjacency | None = None, check_after: int = 24) -> list[Step] | None:
    """Fastest conflict-free path from ``start`` (occupied by ``robot`` now) to ``goal``, where
    the robot may stay for ever; ``None`` if none exists against the current reservations.
    ``heuristic(node)`` (seconds, a lower bound of the time to the goal, e.g. free-flow
    distance / speed) turns the search into A*, so a plan explores the region between start and
    goal rather than the whole layout. With ``preds`` (:func:`predecessors` of ``adjacency``),
    a search that has expanded ``check_after`` states checks whether the goal is walled off by
    nodes that are never free (:func:`may_connect`) and gives up if so; the result is the same,
    only cheaper (most searches end long before)."""
    if start == goal:
        return []
    intervals: dict[str, list[tuple[float, float]]] = {}  # the table is fixed during a search

    def node_intervals(n):
        iv = intervals.get(n)
        if iv is None:
            iv = intervals[n] = table.safe_intervals(("node", n), robot, now, held)
        return iv

    start_iv = [iv for iv in node_intervals(start) if iv[0] <= now + 1e-9]
    if not start_iv:
        return None
    goal_iv = node_intervals(goal)
    if not goal_iv or goal_iv[-1][1] != INF:
        return None  # the goal is never free for good
    best: dict[tuple[str, float], float] = {(start, start_iv[0][0]): now}
    parent: dict[tuple[str, float], tuple] = {}
    h = heuristic or (lambda _n: 0.0)
    heap: list = [(now + h(start), 0, now, start, start_iv[0][1], start_iv[0][0])]
    counter = 1
    expanded = 0
    while heap:
        _, _, t, u, u_end, u_start = heapq.heappop(heap)
        expanded += 1
        if expanded == check_after and preds is not None and not may_connect(
                adjacency, preds, start, goal, lambda n: bool(node_intervals(n)), blocked):
            return None  # every way to the goal passes a node that is never free
        if u == goal and u_end == INF:
            steps = []
            state = (u, u_start)
            while state in parent:
                prev, step = parent[state]
                steps.append(step)
                state = prev
            return steps[::-1]
        if best.get((u, u_start), INF) < t:
            continue
        for v, lane in adjacency.get(u, ()):
            if lane.key in blocked or ("node", v) in blocked:
                continue
            d = lane.length_m / min(speed_m_s, lane.speed_limit_m_s)
            lead = d
            for v_start, v_end in node_intervals(v):
                if v_end <= t + d:
                    continue
                dep = max(t, v_start - lead)
                for _ in range(50):  # alternate lane and node constraints until both hold
                    if dep > u_end:
                        dep = None
                        break
                    dep2 = table.earliest_lane(lane.key, robot, dep, d, now, held, u_end)
                    if dep2 is None:
                        dep = None
                        break
                    if dep2 + lead < v_start:
                        dep = v_start - lead
                        continue
                    dep = dep2
                    break
                if dep is None or dep > u_end or dep + d >= v_end:
                    continue
                arr = dep + d
                key = (v, v_start)
                if arr < best.get(key, INF):
                    best[key] = arr
                    parent[key] = ((u, u_start), Step(lane, u, v, dep, arr))
                    heapq.heappush(heap, (arr + h(v), counter, arr, v, v_end, v_start))
                    counter += 1
    return None
