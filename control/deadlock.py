"""Waiting robots, circular waits and how they are broken; stalled lanes.

* A robot that cannot hold its leg waits for the occupants of the lanes and nodes it needs
  (the wait-for graph: robot → robots keeping it out). When a robot starts waiting, the graph
  is searched for a cycle through it; the robot of the cycle that can (by name) makes way to a
  free parking spot, or to a free node off the others' way, and stays there until each of the
  others has moved on (at most ``yield_limit_s``).
* A robot that waits for nothing cannot close a cycle, so it must not be waited for in vain: an
  idle robot away from home that stands in a waiting robot's way is sent home, and a robot going
  to park that finds its spot taken for good re-plans (and picks another free spot).
* A stalled robot's lane is blocked until its expected recovery: robots planned through it
  re-plan, and robots waiting behind it look again.
* Wake-ups are targeted, so that a move costs the same whatever the fleet size: a robot waiting
  for its leg wakes when it can hold it or when what keeps it out changes
  (:meth:`~darkfab.factory.occupancy.Occupancy.wait_for`), or when a robot keeping it out
  becomes idle or stalls; one that made way wakes when a robot it let pass arrives somewhere;
  one with every way blocked by stalls, when a stall ends.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence

import simpy

from darkfab.agents.fleet_port import FleetRobot
from darkfab.factory.occupancy import Occupancy

from .routes import Routes
from .traffic import INF, ReservationTable

__all__ = ["DeadlockResolver"]


class DeadlockResolver:
    """The wait-for graph of the fleet, its cycles and their escapes, and stalled lanes.

    Parameters
    ----------
    env:
        The simulation environment.
    occupancy, table:
        Who is on which lane and node; who reserved them when.
    routes:
        Free-flow paths (escapes, who is in whose way).
    robots:
        The fleet's robots (the list is filled when the fleet is attached).
    robot_named:
        Look-up of a robot by name (``None`` if not a robot).
    spots:
        Parking and holding nodes.
    free_chargers:
        Chargers nobody claimed (a robot may make way onto one).
    send_home:
        Gives an idle robot a job to park at its home.
    """

    yield_limit_s = 120.0  # an escaped robot waits at most this long for the others to pass

    def __init__(self, env: simpy.Environment, occupancy: Occupancy, table: ReservationTable,
                 routes: Routes, robots: Sequence[FleetRobot],
                 robot_named: Callable[[str], FleetRobot | None], spots: list[str],
                 free_chargers: Callable[[], set[str]],
                 send_home: Callable[[FleetRobot], None]) -> None:
        self.env = env
        self.occ = occupancy
        self.table = table
        self.routes = routes
        self.robots = robots
        self.robot_named = robot_named
        self.spots = sorted(spots)
        self.free_chargers = free_chargers
        self.send_home = send_home
        self.waiting: dict[str, set[str]] = {}  # the wait-for graph
        self._wanted: dict[str, set[str]] = {}  # nodes a waiting robot's leg needs
        self._stuck: set[str] = set()  # waiting robots on a cycle nobody could escape
        self.timed_legs: set[str] = set()  # robots whose current leg SIPP timed
        self.detour: dict[str, list[str]] = {}  # escape: robot -> path to a spot
        self.yield_to: dict[str, tuple[float, dict[str, int]]] = {}  # escaped -> (t, arrivals)
        self.no_plan: dict[str, str] = {}  # why a robot's last plan failed: "yield" | "stall"
        self._changed: list[simpy.Event] = []  # robots woken when anybody moves
        self._on_arrival: dict[str, list[simpy.Event]] = {}  # woken when that robot arrives
        self._on_unstall: list[simpy.Event] = []  # woken when a stalled lane is cleared
        self._stalled: dict[Hashable, float] = {}  # lane -> expected recovery (s)
        self.deadlocks = 0
        self.backoffs = 0

    # --- robots that made way -------------------------------------------------------------
    def must_yield(self, robot: FleetRobot) -> bool:
        """Whether ``robot``, having made way, should still let the others pass (at most
        ``yield_limit_s``, and until each of them has reached a node)."""
        name = robot.name
        yielding = self.yield_to.get(name)
        if yielding is None or name in self.detour:
            return False
        since, seen = yielding
        if self.env.now < since + self.yield_limit_s and any(
                self.robot_named(m).arrivals == n for m, n in seen.items()):  # type: ignore
            self.no_plan[name] = "yield"
            return True
        del self.yield_to[name]
        return False

    def forget(self, name: str) -> None:
        """``name`` gave up its trip: it waits for nobody and makes way for nobody."""
        self.waiting.pop(name, None)
        self.yield_to.pop(name, None)
        self.detour.pop(name, None)
        self.timed_legs.discard(name)

    # --- wake-up events -------------------------------------------------------------------
    def changed_event(self) -> simpy.Event:
        """An event that fires when any robot leaves a node or lane."""
        ev = self.env.event()
        self._changed.append(ev)
        return ev

    def no_plan_event(self, robot: FleetRobot) -> simpy.Event:
        """An event for ``robot`` after a plan gave it no leg, firing when that may have
        changed: a robot it makes way for reached a node, or a stalled lane was cleared (for
        any other reason, when anybody moves)."""
        why = self.no_plan.get(robot.name)
        if why is None:
            return self.changed_event()
        ev = self.env.event()
        if why == "yield":
            for other in self.yield_to[robot.name][1]:
                evs = self._on_arrival.setdefault(other, [])
                evs[:] = [e for e in evs if not e.triggered]  # drop those woken by a timeout
                evs.append(ev)
        else:
            self._on_unstall.append(ev)
        return ev

    @staticmethod
    def _fire(events) -> None:
        for ev in events:
            if not ev.triggered:
                ev.succeed()

    def on_left(self, robot: FleetRobot) -> None:
        """``robot`` left a node or lane: it waits for nobody, and whoever waits for any move
        looks again."""
        self.waiting.pop(robot.name, None)
        if self._changed:
            evs, self._changed = self._changed, []
            self._fire(evs)

    def on_arrive(self, robot: FleetRobot) -> None:
        waiting = self._on_arrival.pop(robot.name, None)
        if waiting:
            self._fire(waiting)

    # --- stalled lanes --------------------------------------------------------------------
    def stalled_now(self) -> frozenset:
        """Lanes blocked by a stalled robot now (recovered ones are forgotten)."""
        now = self.env.now
        if any(until <= now for until in self._stalled.values()):
            self._stalled = {k: u for k, u in self._stalled.items() if u > now}
        return frozenset(self._stalled)

    def on_stall(self, robot: FleetRobot, lane_key: Hashable, until: float) -> None:
        """``robot`` stalled on the lane until ``until``: robots planned through the lane
        re-plan, robots waiting behind it look again."""
        self._stalled[lane_key] = until
        self.occ.wake_blocked_by(robot.name)
        self.env.timeout(until - self.env.now).callbacks.append(self._stall_over)
        for w in self.table.windows[lane_key]:
            if w[2] == robot.name:
                w[1] = max(w[1], until)
        planned = {w[2] for w in self.table.windows[lane_key]}
        for r in self.robots:
            if r is not robot and r.name in planned:
                r.request_replan()

    def _stall_over(self, _event) -> None:
        if self._on_unstall:
            evs, self._on_unstall = self._on_unstall, []
            self._fire(evs)

    # --- waiting for a leg ----------------------------------------------------------------
    def on_wait(self, robot: FleetRobot, keys: list[Hashable]) -> bool:
        """Record whom ``robot`` waits for (the holders of the lanes and nodes of its leg). If
        that closes a circular wait, the robot in the cycle with the lowest name makes way
        (to a free parking spot); ``True`` if that is ``robot`` itself, or if ``robot`` should
        re-plan (its parking spot was taken, or a stalled robot is in the way)."""
        blockers = set(self.occ.blockers(keys, robot.name))
        self.waiting[robot.name] = blockers
        self._wanted[robot.name] = {k[1] for k in keys if k[0] == "node"}
        self._stuck.discard(robot.name)
        parked = False
        for b in sorted(blockers):
            other = self.robot_named(b)  # not a robot: some other occupant
            if (other is None or other.job is not None or other.pending_task is not None
                    or other.node is None):
                continue
            if other.node != other.home:
                # an idle robot away from home (it made way, or its home was taken) waits for
                # nothing and so closes no wait-for cycle, however long others wait for it:
                # send it home; if it cannot get there, its own wait closes the cycle
                self.send_home(other)
            else:
                parked = True
        if parked and robot.name in self.timed_legs:
            # its leg was timed before an idle robot came home to a node of it (e.g. a spur
            # the plan used to let another robot pass): that node is not free again until the
            # robot there gets a task, so re-plan (a new SIPP plan never passes a parked robot)
            return True
        job = robot.job
        if (job is not None and job.kind == "park" and robot.goal == job.node
                and self.taken(job.node, robot)
                and self.parking_for(robot, job.node) != job.node):
            # the spot it was heading for is taken for good (e.g. its owner came home while
            # this robot waited for its leg): waiting for it would wait for a robot that is
            # not going anywhere, so re-plan, which picks a free spot
            return True
        stalled = self._stalled
        if stalled and not stalled.keys().isdisjoint(keys) and any(
                stalled.get(k, 0.0) > self.env.now for k in keys):
            return True  # a stalled robot is in the way: re-plan around it
        cycle = self._cycle(robot.name)
        if not cycle:
            return False
        if self._break(robot, cycle):
            return True
        if robot.name in self.waiting:  # nobody could make way: look again after retry_s
            self._stuck.add(robot.name)
        return False

    def is_stuck(self, robot: FleetRobot) -> bool:
        """Whether ``robot`` closes a circular wait that nobody could escape from yet."""
        return robot.name in self._stuck

    def note_goal_wait(self, robot: FleetRobot, goal: str) -> None:
        """A robot that cannot plan waits for whoever holds its goal; a cycle of such waits is
        a deadlock, resolved as in :meth:`on_wait`."""
        key = ("node", goal)
        holders = {r for _, e, r in self.table.windows[key] if e == INF}
        holders |= self.occ.holders(key)
        holders.discard(robot.name)
        self.waiting[robot.name] = holders
        self._wanted[robot.name] = {goal}
        cycle = self._cycle(robot.name)
        if cycle:
            self._break(robot, cycle)

    def _cycle(self, start: str) -> set[str]:
        """Robots on a wait-for cycle through ``start`` (empty if none)."""
        stack = [(start, [start])]
        seen = set()
        while stack:
            r, path = stack.pop()
            for b in sorted(self.waiting.get(r, ())):
                if b == start:
                    return set(path)
                if b not in seen:
                    seen.add(b)
                    stack.append((b, path + [b]))
        return set()

    # --- making way -----------------------------------------------------------------------
    def _break(self, robot: FleetRobot, cycle: set[str]) -> bool:
        """Resolve a circular wait: the first robot of the cycle (by name) that can take a
        free path to a free parking spot right now makes way there. The path is the shortest
        one if the robot can hold it now, else the shortest over lanes and nodes with room
        for it now (the shortest way to a spot often passes the robots it makes way for).
        If there is no such spot for any robot of the cycle, the nearest node off the others'
        way that one of them can reach over free nodes will do (a crossing, say). Failing
        that, a robot stuck behind the cycle (waiting, or making way) makes way instead, if
        the node it frees is off the way of the cycle's other robots and one of the cycle's
        robots could then reach it over free nodes: the next attempt can move that robot
        there."""
        members = sorted((r for r in self.robots if r.name in cycle and r.node is not None),
                         key=lambda r: r.name)
        for victim in members:
            others = cycle - {victim.name}
            path = self._escape_path(victim, self._in_the_way(others))
            if path is not None:
                return self._make_way(robot, victim, path, others)
        # no spot: a free node off the others' way that it can reach over free nodes will do
        reach = {m.name: self._free_paths(m) for m in members}
        for victim in members:
            others = cycle - {victim.name}
            in_the_way = self._in_the_way(others)
            paths = reach[victim.name]
            for n in sorted(paths, key=lambda n: (self.routes.path_m(paths[n]), n)):
                if n != victim.node and n not in in_the_way and self.free(n, victim):
                    return self._make_way(robot, victim, paths[n], others)
        stuck = {r.name for r in self.robots if (r.name in self.waiting
                 or r.name in self.yield_to) and r.name not in self.detour} - cycle
        for victim in sorted((r for r in self.robots if r.name in stuck and r.node is not None),
                             key=lambda r: r.name):
            into = {u for u, _ in self.routes.preds.get(victim.node, ())}
            if not any(not into.isdisjoint(reach[m.name])
                       and victim.node not in self._in_the_way(cycle - {m.name})
                       for m in members):
                continue  # the node it would free is of no use to the cycle
            path = self._escape_path(victim, self._in_the_way(cycle))
            if path is not None:
                return self._make_way(robot, victim, path, cycle)
        return False

    def _escape_path(self, victim: FleetRobot, in_the_way: set[str]) -> list[str] | None:
        """Path (nodes) for ``victim`` to the nearest free spot off ``in_the_way``: the
        shortest if it can hold it now, else the shortest over lanes and nodes with room."""
        spots = [n for n in self.free_spots(victim, frozenset()) if n not in in_the_way]
        for spot in spots:  # the nearest spot whose shortest path is free now
            p = self.routes.path(victim.node, spot)  # type: ignore[arg-type]
            if p is not None and self.occ.can_hold(
                    [k for u, v in zip(p, p[1:])
                     for k in (self.routes.lane(u, v).key, ("node", v))], victim.name):
                return p
        if spots:  # else the nearest reachable by a free detour
            free_paths = self._free_paths(victim)
            return next((free_paths[n] for n in spots if n in free_paths), None)
        return None

    def _make_way(self, robot: FleetRobot, victim: FleetRobot, path: list[str],
                  others: set[str]) -> bool:
        """``victim`` makes way along ``path`` and stays there until each of ``others`` has
        moved on; ``True`` if ``victim`` is ``robot`` (it re-plans now)."""
        self.deadlocks += 1
        self.backoffs += 1
        self.detour[victim.name] = path
        self.yield_to[victim.name] = (
            self.env.now, {r.name: r.arrivals for r in self.robots if r.name in others})
        self.waiting.pop(victim.name, None)
        if victim is robot:
            return True
        victim.request_replan()
        return False

    def _free_paths(self, robot: FleetRobot) -> dict[str, list[str]]:
        """Shortest paths (nodes) from ``robot``'s node over the lanes and nodes that have room
        for it now."""
        occ, name = self.occ, robot.name
        return self.routes.free_paths(robot.node, lambda k: occ.has_room(k, name))  # type: ignore

    def _in_the_way(self, names: set[str]) -> set[str]:
        """Nodes the named robots need: the legs they wait for, and the shortest paths to
        their current goals (a leg planned around an obstacle may differ from it)."""
        out: set[str] = set()
        for r in self.robots:
            if r.name in names and r.name in self.waiting:
                out |= self._wanted.get(r.name, set())
            if r.name in names and r.goal is not None:
                out.update(self.routes.path(_where(r), r.goal) or ())
        return out

    # --- free nodes and parking -----------------------------------------------------------
    def free(self, node: str, robot: FleetRobot) -> bool:
        return not self.occ.full_for(("node", node), robot.name) and not self.taken(node, robot)

    def taken(self, node: str, robot: FleetRobot) -> bool:
        """Whether another robot holds ``node`` for good: it stands there, or will stop there,
        until its next plan."""
        return any(r != robot.name and e == INF for _, e, r in self.table.windows[("node", node)])

    def parking_for(self, robot: FleetRobot, home: str) -> str:
        """The robot's home, or the nearest free parking/holding spot if someone is there."""
        if self.free(home, robot) or robot.node == home:
            return home
        here = _where(robot)
        spots = [n for n in self.spots if n != robot.node and self.free(n, robot)]
        return min(spots, key=lambda n: (self.routes.d(here, n), n)) if spots else home

    def free_spots(self, robot: FleetRobot, blocked) -> list[str]:
        here = _where(robot)
        cands = [n for n in set(self.spots) | self.free_chargers()
                 | {v for v, _ in self.routes.adjacency.get(here, ())}
                 if n != here and ("node", n) not in blocked and self.free(n, robot)]
        return sorted(cands, key=lambda n: (self.routes.d(here, n), n))


def _where(robot: FleetRobot) -> str:
    """The node ``robot`` is on, or heading to on its lane."""
    return robot.node if robot.node is not None else robot.lane[-1]  # type: ignore[index]
