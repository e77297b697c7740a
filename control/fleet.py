"""Fleet management: task allocation, routing with reservations, deadlock handling, charging.

* Tasks: one per staging area with units waiting and room reserved at the destination; FIFO.
* Allocation (``task_allocation``): ``nearest-idle`` — the idle robot with the shortest path to
  the pickup; ``battery-aware`` — the idle robot with the lowest marginal-cost bid: travel time
  to the pickup and on to the drop, plus the time to recharge the energy the trip costs, and
  robots that could not finish the trip and still reach a charger above the reserve do not bid.
* Routing: SIPP against the reservation table (``traffic = "reservations"``), or plain shortest
  paths that ignore other robots (``traffic = "none"``, for comparison only: robots may meet).
* Deadlocks: when a robot starts waiting, the wait-for graph (robot → robots holding what it
  needs) is searched for a cycle; the robot that closes a cycle re-plans around the others, or
  backs off to a free neighbouring node when no such path exists. A robot that waits for
  nothing cannot close a cycle, so it must not be waited for in vain: an idle robot away from
  home that stands in a waiting robot's way is sent home, and a robot going to park that
  finds its spot taken for good picks another free one.
* A stalled robot's lane is blocked until its expected recovery: robots planned through it
  re-plan.
* Wake-ups are targeted, so that one robot's move costs the same whatever the fleet size: a
  robot waiting for a leg wakes when a lane or node of that leg is released or re-reserved
  (:meth:`~darkfab.factory.occupancy.Occupancy.wait_event`); one that made way wakes when a
  robot it let pass arrives somewhere; one with every way blocked by stalls, when a stall
  ends; all of them at the latest after ``retry_s``.
* Charging: below ``charge_below_soc`` after a job a robot goes to the nearest free charger and
  charges to ``charge_target_soc``; an idle robot below ``opportunistic_below_soc`` charges while
  idle and is taken off the charger when a task needs it. Chargers are claimed one robot each;
  a robot that must charge takes a charger from an opportunistic one when none is free, else it
  queues. A robot that keeps waiting in traffic draws power: when, while it waits, its charge
  would no longer reach a charger with ``reserve_soc`` left, it gives up an unloaded trip (the
  task goes back to the head of the queue) and goes to charge; a loaded robot delivers first
  (its bid kept the reserve for the trip and the way to a charger).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable

import networkx as nx
import simpy

from darkfab.factory.kpis import LogHistogram
from darkfab.factory.occupancy import Occupancy
from darkfab.factory.recorder import TableWriter
from darkfab.factory.transport import Staging, TransportTask

from .traffic import INF, Lane, ReservationTable, Step, predecessors, sipp_plan

__all__ = ["FleetManager", "InvariantViolation", "ALLOCATIONS"]

ALLOCATIONS = ("nearest-idle", "battery-aware")


class InvariantViolation(RuntimeError):
    """A broken fleet invariant: the run stops with this report (time, robots, place)."""


class FleetManager:
    retry_s = 5.0
    wait_limit_s = 60.0  # a robot waiting for its leg re-checks at least this often
    yield_limit_s = 120.0  # an escaped robot waits at most this long for the others to pass

    def __init__(self, env: simpy.Environment, lanes: list[Lane], directed: dict[Hashable, bool],
                 occupancy: Occupancy, chargers: list[str], spots: list[str] = (), *,
                 allocation: str = "nearest-idle",
                 traffic: bool = True, charge_below_soc: float = 0.3,
                 charge_target_soc: float = 0.95, opportunistic_below_soc: float = 0.8,
                 reserve_soc: float = 0.1, check_invariants: bool = False,
                 transport_writer: TableWriter | None = None, warmup_s: float = 0.0) -> None:
        if allocation not in ALLOCATIONS:
            raise ValueError(f"unknown task allocation {allocation!r}")
        self.env = env
        self.occ = occupancy
        self.allocation = allocation
        self.traffic = traffic
        self.charge_below_soc = charge_below_soc
        self.charge_target_soc = charge_target_soc
        self.opportunistic_below_soc = opportunistic_below_soc
        self.reserve_soc = reserve_soc
        self.check_invariants = check_invariants
        self.warmup_s = warmup_s
        self.adjacency: dict[str, list[tuple[str, Lane]]] = {}
        self.graph = nx.DiGraph()
        for lane in lanes:
            self.adjacency.setdefault(lane.a, []).append((lane.b, lane))
            self.graph.add_edge(lane.a, lane.b, length_m=lane.length_m, lane=lane)
            if not directed[lane.key]:
                back = Lane(lane.key, lane.b, lane.a, lane.length_m, lane.speed_limit_m_s)
                self.adjacency.setdefault(lane.b, []).append((lane.a, back))
                self.graph.add_edge(lane.b, lane.a, length_m=lane.length_m, lane=back)
        self._preds = predecessors(self.adjacency)
        self.dist = dict(nx.all_pairs_dijkstra_path_length(self.graph, weight="length_m"))
        # both directions of a lane, for hiding a blocked lane from the graph
        self._lane_edges: dict[Hashable, list[tuple[str, str]]] = {}
        for u, v, ln in self.graph.edges(data="lane"):
            self._lane_edges.setdefault(ln.key, []).append((u, v))
        self._paths: dict[tuple[str, str], list[str] | None] = {}  # free-flow shortest paths
        self._around: tuple[frozenset, dict] = (frozenset(), {})  # paths around blocked lanes
        # distance (m) from each node to its nearest charger (0 without chargers)
        self._charger_m = {n: min((self._d(n, c) for c in chargers), default=0.0)
                           for n in self.graph}
        self.table = ReservationTable(dict(occupancy.capacity))
        self.chargers = {c: None for c in chargers}
        self.chargers_out: set[str] = set()  # out of service (a fault): never assigned
        self.spots = sorted(spots)
        self.robots: list = []
        self._by_name: dict[str, object] = {}
        self.unit_mass_kg: dict[str, float] = {}  # product -> kg per unit
        self._dist_to: dict[str, dict[str, float]] = {}
        self.pending: deque[TransportTask] = deque()
        self._open: dict[Staging, TransportTask] = {}
        self._space_wait: dict[object, list[Staging]] = {}
        self._task_id = 0
        self._writer = transport_writer
        self._changed: list[simpy.Event] = []  # robots woken when anybody moves
        self._no_plan: dict[str, str] = {}  # why a robot's last plan failed: "yield" | "stall"
        self._on_arrival: dict[str, list[simpy.Event]] = {}  # woken when that robot arrives
        self._on_unstall: list[simpy.Event] = []  # woken when a stalled lane is cleared
        self._waiting: dict[str, set[str]] = {}
        self._stuck: set[str] = set()  # waiting robots on a cycle nobody could escape
        self._wanted: dict[str, set[str]] = {}  # nodes a waiting robot's leg needs
        self._timed_legs: set[str] = set()  # robots whose current leg SIPP timed
        self._detour: dict[str, list[str]] = {}  # deadlock escape: robot -> path to a spot
        self._yield_to: dict[str, tuple[float, dict[str, int]]] = {}  # escaped -> (t, arrivals)
        self._charge_queue: deque = deque()  # robots waiting for a free charger
        self._stalled: dict[Hashable, float] = {}
        self.lane_usage: dict[Hashable, int] = {lane.key: 0 for lane in lanes}
        self.lead_time = LogHistogram()
        self.deadlocks = 0
        self.backoffs = 0
        self.abandoned = 0  # trips given up before pickup for a low battery
        self.charger_preemptions = 0  # opportunistic charges cut short for a low robot
        self.tasks_requested = 0
        self.tasks_delivered = 0

    # --- wiring -----------------------------------------------------------------------------
    def attach(self, robots: list) -> None:
        self.robots = list(robots)
        self._by_name = {r.name: r for r in self.robots}
        for r in robots:
            self.table.add(("node", r.node), self.env.now, INF, r.name)

    def start(self) -> None:
        for r in self.robots:
            r.start()
        self._dispatch()
        for r in self.robots:
            if r.job is None:
                self._watch_battery(r)

    # --- tasks ------------------------------------------------------------------------------
    def on_staged(self, staging: Staging) -> None:
        if staging not in self._open:
            self._request(staging)

    def on_space(self, buffer) -> None:
        """A buffer lost a unit: staging areas waiting for room there may now get a task."""
        for st in self._space_wait.pop(buffer, []):
            if st not in self._open:
                self._request(st)

    def _request(self, staging: Staging) -> None:
        payload = self.robots[0].spec.payload_units if self.robots else 1
        if self.robots and staging.items:
            mass = self.unit_mass_kg.get(staging.items[0].product, 0.0)
            if mass > 0:  # a trip carries what the payload mass allows (at least one unit)
                payload = max(1, min(payload, int(self.robots[0].spec.payload_kg // mass)))
        dest = staging.destination
        n = int(min(payload, staging.level, dest.free))
        if staging.on_request:  # only what a controller asked for
            n = min(n, staging.requested)
            if staging.requested <= 0:
                return
        if staging.level == 0:
            return
        if n <= 0:
            waiting = self._space_wait.setdefault(dest, [])
            if staging not in waiting:
                waiting.append(staging)
            return
        dest.reserved += n
        if staging.on_request:
            staging.requested -= n
        self._task_id += 1
        task = TransportTask(self._task_id, staging, self.env.now, units=n)
        self.tasks_requested += 1
        self._open[staging] = task
        self.pending.append(task)
        self._dispatch()

    def on_picked_up(self, robot, task: TransportTask) -> None:
        st = task.staging
        if self._open.get(st) is task:
            del self._open[st]
        if st.level > 0:
            self._request(st)

    def _dispatch(self) -> None:
        while self.pending:
            task = self.pending[0]
            robot = self._choose(task)
            if robot is None:
                return
            self.pending.popleft()
            task.assigned_s = self.env.now
            task.robot = robot.name
            task.status = "assigned"
            if robot.job is not None and robot.job.kind == "charge":
                robot.interrupt_charge()
                self._release_charger(robot)
                robot.job = None
                robot.pending_task = task
                continue
            self._assign(robot, "transport", task.pickup, task)

    def _assign(self, robot, kind: str, node: str, task=None, target_soc: float = 1.0) -> None:
        from darkfab.agents.robot import Job  # lazy: the job type belongs to the robot agent

        robot.assign(Job(kind, node, task, target_soc))

    def _available(self) -> list:
        out = []
        for r in self.robots:
            if r.job is None and r.pending_task is None:
                out.append(r)
            elif (r.job is not None and r.job.kind == "charge" and r.job.task is None
                  and r._charging
                  and r.battery.soc >= self.charge_below_soc
                  and r.job.opportunistic):
                out.append(r)
        return out

    def _choose(self, task: TransportTask):
        """The robot for ``task`` by the allocation strategy, among the robots that can do the
        trip and still reach a charger with ``reserve_soc`` left. Robots are examined in order
        of a lower bound of their key (the travel time; their bid adds the recharge time), and
        the search stops when the bound exceeds the best bid so far."""
        now = self.env.now
        trip = self._d(task.pickup, task.drop)
        back_direct = self._to_charger_m(task.drop)
        nearest = self.allocation == "nearest-idle"
        cands = []
        for r in self._available():
            r.battery.advance(now)
            to_pick = self._d(self._where(r), task.pickup)
            t = to_pick / r.spec.speed_empty_m_s + trip / r.spec.speed_loaded_m_s
            cands.append(((to_pick if nearest else t), r.name, to_pick, t, r))
        cands.sort(key=lambda c: (c[0], c[1]))
        best, best_key = None, None
        for bound, name, to_pick, t, r in cands:
            if best_key is not None and (bound, name) >= best_key:
                break  # neither this robot nor any after it can bid lower
            # after the drop the robot may have to park at home before a charger is free
            back = max(back_direct, self._d(task.drop, r.home) + self._to_charger_m(r.home))
            b = r.battery
            energy = b.travel_energy(to_pick, False) + b.travel_energy(trip, True)
            drain = b.base_kw * t / 3600.0
            if b.soc_kwh - energy - drain - b.travel_energy(back, False) \
                    < self.reserve_soc * b.capacity_kwh:
                continue  # could not finish and still reach a charger: no bid
            if nearest:
                key = (to_pick, name)
            else:  # marginal cost: trip time plus the time to put its energy back
                key = (t + (energy + drain) / b.charging_kw * 3600.0, name)
            if best_key is None or key < best_key:
                best, best_key = r, key
        return best

    def dist_to(self, goal: str) -> dict[str, float]:
        """Free-flow path length (m) from every node to ``goal`` (cached per goal)."""
        d = self._dist_to.get(goal)
        if d is None:
            d = self._dist_to[goal] = nx.single_source_dijkstra_path_length(
                self.graph.reverse(copy=False), goal, weight="length_m")
        return d

    def _where(self, robot) -> str:
        return robot.node if robot.node is not None else robot.lane[-1]

    def _d(self, a: str, b: str) -> float:
        return self.dist.get(a, {}).get(b, INF)

    def _to_charger_m(self, node: str) -> float:
        """Free-flow distance (m) from ``node`` to its nearest charger."""
        return self._charger_m.get(node, INF if self.chargers else 0.0)

    def has_path(self, start: str, goal: str) -> bool:
        """Whether a robot can drive from node ``start`` to node ``goal`` on the lanes."""
        return self._path(start, goal) is not None

    def charge_queue_length(self) -> int:
        """Robots waiting for a free charger."""
        return len(self._charge_queue)

    def _path(self, start: str, goal: str) -> list[str] | None:
        """Free-flow shortest path (nodes) from ``start`` to ``goal``, cached; ``None`` if none."""
        key = (start, goal)
        if key not in self._paths:
            try:
                self._paths[key] = nx.shortest_path(self.graph, start, goal, weight="length_m")
            except (nx.NetworkXNoPath, nx.NodeNotFound):
                self._paths[key] = None
        return self._paths[key]

    # --- job completion and charging --------------------------------------------------------
    def on_job_done(self, robot, job) -> None:
        self.occ.wake_blocked_by(robot.name)  # those waiting for it may have to send it home
        if job.kind == "transport" and not job.abandoned:
            t = job.task
            self.tasks_delivered += 1
            if t.requested_s >= self.warmup_s:
                self.lead_time.add(t.delivered_s - t.requested_s)
            self._write(t)
        if job.kind == "charge":
            self._release_charger(robot)
        if job.abandoned and robot.battery.soc < self.charge_below_soc \
                and self._to_charger(robot, False):
            return
        task = robot.pending_task
        if task is not None:
            robot.pending_task = None
            self._assign(robot, "transport", task.pickup, task)
            return
        if robot.battery.soc < self.charge_below_soc and self._to_charger(robot, False):
            return
        self._dispatch()
        if robot.job is not None:
            return
        if (robot.battery.soc < self.opportunistic_below_soc
                and self._to_charger(robot, True)):
            return
        if robot.node != robot.home and job.kind != "park":
            self._assign(robot, "park", robot.home)
            return
        if robot.battery.soc < self.charge_below_soc:
            self._idle_check(robot)  # no free charger now: queue for the next one
            return
        self._watch_battery(robot)

    def _watch_battery(self, robot) -> None:
        """An idle robot drains at its base draw: wake it when it reaches the opportunistic
        (or, failing that, the mandatory) charging threshold, computed exactly."""
        b = robot.battery
        b.advance(self.env.now)
        if b.base_kw <= 0 or robot.job is not None:
            return
        thresholds = [x for x in (self.opportunistic_below_soc, self.charge_below_soc)
                      if b.soc_kwh > x * b.capacity_kwh]
        if not thresholds:
            return
        level = max(thresholds) * b.capacity_kwh
        delay = (b.soc_kwh - level) / b.base_kw * 3600.0 + 1e-6
        ev = self.env.timeout(delay)
        ev.callbacks.append(lambda _e: self._idle_check(robot))

    def _idle_check(self, robot) -> None:
        if robot.job is not None or robot.pending_task is not None:
            return
        robot.battery.advance(self.env.now)
        soc = robot.battery.soc
        if soc < self.opportunistic_below_soc and self._to_charger(
                robot, soc >= self.charge_below_soc):
            return
        if soc < self.charge_below_soc:
            if robot not in self._charge_queue:
                self._charge_queue.append(robot)
            return
        self._watch_battery(robot)

    def _to_charger(self, robot, opportunistic: bool) -> bool:
        out = self.chargers_out
        free = [c for c, r in self.chargers.items() if r is None and c not in out]
        if not free and not opportunistic:
            free = self._preempt_charger()
        if not free:
            return False
        here = self._where(robot)
        c = min(free, key=lambda n: (self._d(here, n), n))
        if self._d(here, c) == INF:
            return False
        self.chargers[c] = robot.name
        from darkfab.agents.robot import Job

        robot.assign(Job("charge", c, None, self.charge_target_soc, opportunistic=opportunistic))
        return True

    def _preempt_charger(self) -> list[str]:
        """Take the charger of the opportunistically charging robot with the most charge
        (already above ``charge_below_soc``) for a robot that must charge; [] if none."""
        by_name = self._by_name
        cands = []
        for c, name in self.chargers.items():
            r = by_name.get(name)
            if c in self.chargers_out:
                continue
            if (r is not None and r.job is not None and r.job.kind == "charge"
                    and r.job.opportunistic and r._charging and r.job.task is None
                    and r.pending_task is None):
                r.battery.advance(self.env.now)
                if r.battery.soc >= self.charge_below_soc:
                    cands.append((-r.battery.soc, name, c))
        if not cands:
            return []
        _, name, c = min(cands)
        by_name[name].interrupt_charge()  # its job ends now and it parks
        self.charger_preemptions += 1
        self.chargers[c] = None
        return [c]

    def _release_charger(self, robot) -> None:
        for c, r in self.chargers.items():
            if r == robot.name:
                self.chargers[c] = None
        self._serve_charge_queue()

    def _serve_charge_queue(self) -> None:
        queue = self._charge_queue
        while queue:
            nxt = queue[0]
            if nxt.job is not None:  # busy again: it checks its charge when that job ends
                queue.popleft()
                continue
            if self._to_charger(nxt, False):
                queue.popleft()
            break

    def charger_usable(self, node: str) -> bool:
        return node not in self.chargers_out

    def set_charger_out(self, node: str, out: bool) -> None:
        """Take charger ``node`` out of service (a robot charging there stops and leaves; none
        is sent there) or put it back (robots queued for a charger are served)."""
        if out:
            self.chargers_out.add(node)
            r = self._by_name.get(self.chargers.get(node) or "")
            if r is not None:  # on its way there it will not charge (Amr.run checks)
                r.interrupt_charge()
        else:
            self.chargers_out.discard(node)
            self._serve_charge_queue()

    def battery_low(self, robot, loaded: bool) -> bool:
        """Called while ``robot`` waits in traffic: ``True`` if it should give up its unloaded
        trip and charge, its charge no longer reaching a charger with the reserve left.
        Checks the state-of-charge invariant too, since waiting draws power."""
        b = robot.battery
        b.advance(self.env.now)
        if self.check_invariants and not -1e-9 <= b.soc_kwh <= b.capacity_kwh + 1e-9:
            self._violation(robot, f"state of charge {b.soc_kwh:.6f} kWh outside "
                                   f"[0, {b.capacity_kwh}] while waiting")
        job = robot.job
        if loaded or job is None or job.kind == "charge" or robot.node is None:
            return False
        to_charger = self._to_charger_m(robot.node)
        return b.soc_kwh - b.travel_energy(to_charger, False) < self.reserve_soc * b.capacity_kwh

    def abandon(self, robot, task: TransportTask) -> None:
        """``robot`` gives up ``task`` before pickup: the task goes back to the head of the
        queue for another robot, and the robot's planned leg is cancelled."""
        self.abandoned += 1
        task.status, task.robot, task.assigned_s = "requested", "", -1.0
        self.pending.appendleft(task)
        self.table.clear_robot(robot.name)
        self.table.add(("node", robot.node), self.env.now, INF, robot.name)
        self._waiting.pop(robot.name, None)
        self._yield_to.pop(robot.name, None)
        self._detour.pop(robot.name, None)
        self._timed_legs.discard(robot.name)

    def _write(self, t: TransportTask) -> None:
        if self._writer is not None:
            st = t.staging
            self._writer.append(t.id, st.origin, st.destination.name, t.pickup, t.drop, t.units,
                                t.requested_s, t.assigned_s, t.picked_up_s, t.delivered_s,
                                t.robot, t.status)

    # --- routing and traffic ----------------------------------------------------------------
    def plan(self, robot, goal: str, speed: float) -> list[Step] | None:
        """Plan ``robot``'s next leg toward ``goal`` and reserve it; ``None`` if no
        conflict-free path exists now. The leg may end short of the goal at a free parking or
        holding spot when the robot must make way (deadlock escape); its travel loop then plans
        again from there."""
        now = self.env.now
        name = robot.name
        self._no_plan.pop(name, None)
        self._timed_legs.discard(name)
        self.table.clear_robot(name)
        if not self.traffic:
            return self._shortest(robot.node, goal, speed, now, frozenset())
        if robot.job is not None and robot.job.kind == "park" and goal == robot.job.node:
            goal = robot.job.node = self._parking_for(robot, goal)
        blocked = self._stalled_now()
        steps = None
        yielding = self._yield_to.get(name)
        if yielding is not None and name not in self._detour:
            since, seen = yielding
            by_name = self._by_name
            if now < since + self.yield_limit_s and any(
                    by_name[m].arrivals == n for m, n in seen.items()):
                self.table.add(("node", robot.node), now, INF, name)
                self._no_plan[name] = "yield"
                return None  # made way: let the others pass first
            del self._yield_to[name]
        detour = self._detour.pop(name, None)
        if detour is not None:
            steps = (self._steps(detour, speed, now) if detour[0] == robot.node
                     else self._shortest(robot.node, detour[-1], speed, now, frozenset()))
        else:
            to_goal, fastest = self.dist_to(goal), max(speed, 1e-9)
            steps = sipp_plan(self.adjacency, self.table, name, robot.node, now, goal, speed,
                              self.occ.holders, blocked,
                              heuristic=lambda n: to_goal.get(n, 0.0) / fastest,
                              preds=self._preds)
        timed = steps is not None
        if not timed:
            # no conflict-free timing against the reservations: take the shortest path and
            # let the robot wait at its node until it holds the whole leg; until then it
            # reserves only the node it stands on (a leg it may not drive for a long time
            # must not claim its goal for ever and so keep everyone else from planning there)
            steps = self._shortest(robot.node, goal, speed, now, blocked)
        if steps is None:  # stalled robots block every way to the goal
            self.table.add(("node", robot.node), now, INF, name)
            self._no_plan[name] = "stall"
            self._note_goal_wait(robot, goal)
            return None
        self._waiting.pop(name, None)
        if timed:
            self._reserve(name, robot.node, now, steps)
            if detour is None:
                self._timed_legs.add(name)
        else:
            self.table.add(("node", robot.node), now, INF, name)
        return steps

    def _shortest(self, start: str, goal: str, speed: float, now: float,
                  blocked) -> list[Step] | None:
        path = self._path(start, goal)
        if path is None:
            return None
        if blocked and (any(("node", v) in blocked for v in path) or any(
                self.graph[u][v]["lane"].key in blocked for u, v in zip(path, path[1:]))):
            path = self._path_around(start, goal, blocked)
            if path is None:
                return None
        return self._steps(path, speed, now)

    def _steps(self, path: list[str], speed: float, now: float) -> list[Step]:
        """Free-flow steps along ``path`` (nodes), setting off now."""
        steps, t = [], now
        for u, v in zip(path, path[1:]):
            lane = self.graph[u][v]["lane"]
            d = lane.length_m / min(speed, lane.speed_limit_m_s)
            steps.append(Step(lane, u, v, t, t + d))
            t += d
        return steps

    def _path_around(self, start: str, goal: str, blocked: frozenset) -> list[str] | None:
        """Shortest path around the ``blocked`` lanes and nodes; cached while the blocked set
        stays the same (robots waiting for a stalled lane ask again and again)."""
        if self._around[0] != blocked:
            self._around = (blocked, {})
        cache = self._around[1]
        if (start, goal) not in cache:
            g = nx.restricted_view(
                self.graph, [k[1] for k in blocked if k[0] == "node"],
                [e for k in blocked if k[0] == "lane" for e in self._lane_edges.get(k, ())])
            try:
                cache[start, goal] = nx.shortest_path(g, start, goal, weight="length_m")
            except (nx.NetworkXNoPath, nx.NodeNotFound):
                cache[start, goal] = None
        return cache[start, goal]

    def _free(self, node: str, robot) -> bool:
        return not self.occ.full_for(("node", node), robot.name) and not self._taken(node, robot)

    def _taken(self, node: str, robot) -> bool:
        """Whether another robot holds ``node`` for good: it stands there, or will stop there,
        until its next plan."""
        return any(r != robot.name and e == INF for _, e, r in self.table.windows[("node", node)])

    def _parking_for(self, robot, home: str) -> str:
        """The robot's home, or the nearest free parking/holding spot if someone is there."""
        if self._free(home, robot) or robot.node == home:
            return home
        here = self._where(robot)
        spots = [n for n in self.spots if n != robot.node and self._free(n, robot)]
        return min(spots, key=lambda n: (self._d(here, n), n)) if spots else home

    def _free_spots(self, robot, blocked) -> list[str]:
        here = self._where(robot)
        free_chargers = {c for c, r in self.chargers.items() if r is None}
        cands = [n for n in set(self.spots) | free_chargers
                 | {v for v, _ in self.adjacency.get(here, ())}
                 if n != here and ("node", n) not in blocked and self._free(n, robot)]
        return sorted(cands, key=lambda n: (self._d(here, n), n))

    def _note_goal_wait(self, robot, goal: str) -> None:
        """A robot that cannot plan waits for whoever holds its goal; a cycle of such waits is
        a deadlock, resolved as in :meth:`on_wait`."""
        key = ("node", goal)
        holders = {r for _, e, r in self.table.windows[key] if e == INF}
        holders |= self.occ.holders(key)
        holders.discard(robot.name)
        self._waiting[robot.name] = holders
        self._wanted[robot.name] = {goal}
        cycle = self._cycle(robot.name)
        if cycle:
            self._break(robot, cycle)

    def _reserve(self, name: str, start: str, now: float, steps: list[Step]) -> None:
        t = now
        node = start
        for s in steps:
            self.table.add(("node", node), t, s.depart_s, name)
            self.table.add(s.lane.key, s.depart_s, s.arrive_s, name)
            t, node = s.arrive_s, s.to
        self.table.add(("node", node), t, INF, name)

    def changed_event(self) -> simpy.Event:
        """An event that fires when any robot leaves a node or lane."""
        ev = self.env.event()
        self._changed.append(ev)
        return ev

    def no_plan_event(self, robot) -> simpy.Event:
        """An event for ``robot`` after :meth:`plan` gave it no leg, firing when that may have
        changed: a robot it makes way for reached a node, or a stalled lane was cleared (for
        any other reason, when anybody moves). Waking only these robots keeps the cost of a
        move independent of the fleet size."""
        why = self._no_plan.get(robot.name)
        if why is None:
            return self.changed_event()
        ev = self.env.event()
        if why == "yield":
            for other in self._yield_to[robot.name][1]:
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

    def on_left(self, robot, key: Hashable) -> None:
        self.table.release(key, robot.name)
        self._waiting.pop(robot.name, None)
        if self._changed:
            evs, self._changed = self._changed, []
            self._fire(evs)

    def on_moving(self, robot, steps: list[Step]) -> None:
        """``robot`` holds its whole leg and sets off now: its reservations become the leg
        as it will be driven from now on (the planned times shift by any wait)."""
        self._waiting.pop(robot.name, None)
        self._timed_legs.discard(robot.name)
        if not steps:
            return
        now = self.env.now
        self.table.clear_robot(robot.name)
        t, retimed = now, []
        for st in steps:
            d = st.arrive_s - st.depart_s
            retimed.append(Step(st.lane, st.frm, st.to, t, t + d))
            t += d
        self._reserve(robot.name, robot.node, now, retimed)

    def on_wait(self, robot, keys: list[Hashable]) -> bool:
        """Record whom ``robot`` waits for (the holders of the lanes and nodes of its leg). If
        that closes a circular wait, the robot in the cycle with the lowest name makes way
        (to a free parking spot); ``True`` if that is ``robot`` itself, or if ``robot`` should
        re-plan (its parking spot was taken, or a stalled robot is in the way)."""
        blockers: set[str] = set()
        for k in keys:
            blockers |= self.occ.full_for(k, robot.name)
        self._waiting[robot.name] = blockers
        self._wanted[robot.name] = {k[1] for k in keys if k[0] == "node"}
        self._stuck.discard(robot.name)
        parked = False
        for b in sorted(blockers):
            other = self._by_name.get(b)  # not a robot: some other occupant
            if (other is None or other.job is not None or other.pending_task is not None
                    or other.node is None):
                continue
            if other.node != other.home:
                # an idle robot away from home (it made way, or its home was taken) waits for
                # nothing and so closes no wait-for cycle, however long others wait for it:
                # send it home; if it cannot get there, its own wait closes the cycle
                self._assign(other, "park", other.home)
            else:
                parked = True
        if parked and robot.name in self._timed_legs:
            # its leg was timed before an idle robot came home to a node of it (e.g. a spur
            # the plan used to let another robot pass): that node is not free again until the
            # robot there gets a task, so re-plan (a new SIPP plan never passes a parked robot)
            return True
        job = robot.job
        if (job is not None and job.kind == "park" and robot.goal == job.node
                and self._taken(job.node, robot)
                and self._parking_for(robot, job.node) != job.node):
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
        if robot.name in self._waiting:  # nobody could make way: try again after retry_s
            self._stuck.add(robot.name)
        return False

    def patience_s(self, robot, loaded: bool) -> float:
        """How long ``robot``, waiting for its leg (:meth:`on_wait`), may wait before it looks
        again by itself, events aside: ``retry_s`` if it closes a circular wait that no robot
        could escape from yet; else until its charge would no longer reach a charger with the
        reserve left (:meth:`battery_low`, computed exactly from the base draw), and at most
        ``wait_limit_s`` (a safety net for what no event reports)."""
        if robot.name in self._stuck:
            return self.retry_s
        limit = self.wait_limit_s
        b, job = robot.battery, robot.job
        if loaded or job is None or job.kind == "charge" or robot.node is None \
                or b.base_kw <= 0:
            return limit
        b.advance(self.env.now)
        margin = b.soc_kwh - b.travel_energy(self._to_charger_m(robot.node), False) \
            - self.reserve_soc * b.capacity_kwh
        return min(limit, max(margin, 0.0) / b.base_kw * 3600.0 + 1e-6)

    def _break(self, robot, cycle: set[str]) -> bool:
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
            for n in sorted(paths, key=lambda n: (self._path_m(paths[n]), n)):
                if n != victim.node and n not in in_the_way and self._free(n, victim):
                    return self._make_way(robot, victim, paths[n], others)
        stuck = {r.name for r in self.robots if (r.name in self._waiting
                 or r.name in self._yield_to) and r.name not in self._detour} - cycle
        for victim in sorted((r for r in self.robots if r.name in stuck and r.node is not None),
                             key=lambda r: r.name):
            into = {u for u, _ in self._preds.get(victim.node, ())}
            if not any(not into.isdisjoint(reach[m.name])
                       and victim.node not in self._in_the_way(cycle - {m.name})
                       for m in members):
                continue  # the node it would free is of no use to the cycle
            path = self._escape_path(victim, self._in_the_way(cycle))
            if path is not None:
                return self._make_way(robot, victim, path, cycle)
        return False

    def _path_m(self, path: list[str]) -> float:
        return sum(self.graph[u][v]["length_m"] for u, v in zip(path, path[1:]))

    def _escape_path(self, victim, in_the_way: set[str]) -> list[str] | None:
        """Path (nodes) for ``victim`` to the nearest free spot off ``in_the_way``: the
        shortest if it can hold it now, else the shortest over lanes and nodes with room."""
        spots = [n for n in self._free_spots(victim, frozenset()) if n not in in_the_way]
        for spot in spots:  # the nearest spot whose shortest path is free now
            p = self._path(victim.node, spot)
            if p is not None and self.occ.can_hold(
                    [k for u, v in zip(p, p[1:])
                     for k in (self.graph[u][v]["lane"].key, ("node", v))], victim.name):
                return p
        if spots:  # else the nearest reachable by a free detour
            free_paths = self._free_paths(victim)
            return next((free_paths[n] for n in spots if n in free_paths), None)
        return None

    def _make_way(self, robot, victim, path: list[str], others: set[str]) -> bool:
        """``victim`` makes way along ``path`` and stays there until each of ``others`` has
        moved on; ``True`` if ``victim`` is ``robot`` (it re-plans now)."""
        self.deadlocks += 1
        self.backoffs += 1
        self._detour[victim.name] = path
        self._yield_to[victim.name] = (
            self.env.now, {r.name: r.arrivals for r in self.robots if r.name in others})
        self._waiting.pop(victim.name, None)
        if victim is robot:
            return True
        victim.request_replan()
        return False

    def _free_paths(self, robot) -> dict[str, list[str]]:
        """Shortest paths (nodes) from ``robot``'s node over the lanes and nodes that have room
        for it now."""
        occ, graph, name = self.occ, self.graph, robot.name
        view = nx.subgraph_view(
            graph, filter_node=lambda n: occ.has_room(("node", n), name),
            filter_edge=lambda u, v: occ.has_room(graph[u][v]["lane"].key, name))
        return nx.single_source_dijkstra_path(view, robot.node, weight="length_m")

    def _in_the_way(self, names: set[str]) -> set[str]:
        """Nodes the named robots need: the legs they wait for, and the shortest paths to
        their current goals (a leg planned around an obstacle may differ from it)."""
        out: set[str] = set()
        for r in self.robots:
            if r.name in names and r.name in self._waiting:
                out |= self._wanted.get(r.name, set())
            if r.name in names and r.goal is not None:
                out.update(self._path(self._where(r), r.goal) or ())
        return out

    def _cycle(self, start: str) -> set[str]:
        """Robots on a wait-for cycle through ``start`` (empty if none)."""
        stack = [(start, [start])]
        seen = set()
        while stack:
            r, path = stack.pop()
            for b in sorted(self._waiting.get(r, ())):
                if b == start:
                    return set(path)
                if b not in seen:
                    seen.add(b)
                    stack.append((b, path + [b]))
        return set()

    def _stall_over(self, _event) -> None:
        if self._on_unstall:
            evs, self._on_unstall = self._on_unstall, []
            self._fire(evs)

    def _stalled_now(self) -> frozenset:
        """Lanes blocked by a stalled robot now (recovered ones are forgotten)."""
        now = self.env.now
        if any(until <= now for until in self._stalled.values()):
            self._stalled = {k: u for k, u in self._stalled.items() if u > now}
        return frozenset(self._stalled)

    def on_stall(self, robot, lane: Lane, until: float) -> None:
        self._stalled[lane.key] = until
        self.occ.wake_blocked_by(robot.name)  # robots waiting behind it re-plan around it
        self.env.timeout(until - self.env.now).callbacks.append(self._stall_over)
        for w in self.table.windows[lane.key]:
            if w[2] == robot.name:
                w[1] = max(w[1], until)
        planned = {w[2] for w in self.table.windows[lane.key]}
        for r in self.robots:
            if r is not robot and r.name in planned:
                r.request_replan()

    # --- invariant monitor ------------------------------------------------------------------
    def monitor_move(self, robot, frm: str, lane: Lane, to: str) -> None:
        if not self.check_invariants:
            return
        if (lane.a, lane.b) != (frm, to) or not any(
                v == to and ln.key == lane.key for v, ln in self.adjacency.get(frm, ())):
            self._violation(robot, f"moved from {frm} onto lane {lane.key} toward {to}: "
                                   "not an adjacent move")
        if self.traffic:
            for key in (lane.key, ("node", to)):
                occ = self.occ.holders(key)
                if len(occ) > self.occ.capacity[key]:
                    self._violation(robot, f"{key} holds {sorted(occ)} beyond capacity "
                                           f"{self.occ.capacity[key]}")

    def monitor_arrive(self, robot, lane: Lane, to: str) -> None:
        self.lane_usage[lane.key] += 1
        robot.arrivals += 1
        waiting = self._on_arrival.pop(robot.name, None)
        if waiting:
            self._fire(waiting)
        if not self.check_invariants:
            return
        b = robot.battery
        b.advance(self.env.now)
        if not (-1e-9 <= b.soc_kwh <= b.capacity_kwh + 1e-9):
            self._violation(robot, f"state of charge {b.soc_kwh:.6f} kWh outside "
                                   f"[0, {b.capacity_kwh}]")
        if self.traffic:
            here = [r.name for r in self.robots if r.node == to]
            if len(here) > self.occ.capacity[("node", to)]:
                self._violation(robot, f"robots {here} on node {to} at once (capacity "
                                       f"{self.occ.capacity[('node', to)]})")

    def _violation(self, robot, what: str) -> None:
        place = robot.node or robot.lane
        raise InvariantViolation(f"invariant violated at t={self.env.now:.3f} s: robot "
                                 f"{robot.name} at {place}: {what}")

    def check_tasks_at_end(self) -> list[str]:
        """Tasks started but neither delivered nor failed (reported at the end of a run)."""
        return [f"task {t.id} ({t.status}, robot {t.robot or '-'})"
                for t in list(self._open.values()) + list(self.pending)
                if t.status not in ("delivered", "failed")]

    def finish(self, now: float) -> None:
        """Write the tasks still open at the end of the run."""
        seen = set()
        for r in self.robots:
            job = r.job
            if job is not None and job.task is not None and job.task.status != "delivered":
                job.task.status = "in_progress"
                self._write(job.task)
                seen.add(job.task.id)
        for t in list(self.pending) + list(self._open.values()):
            if t.id not in seen:
                seen.add(t.id)
                self._write(t)
