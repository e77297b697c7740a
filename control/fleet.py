"""Fleet management: transport tasks, routing with reservations, and the robots' drive events.

The fleet manager is the robots' :class:`~darkfab.agents.fleet_port.Fleet`: it turns staged
units into transport tasks, gives them to robots, plans each robot's legs, and hears of every
move. It delegates each other concern to a collaborator of its own:

* :mod:`~darkfab.control.allocation`: which robot takes a task (``task_allocation``);
* :mod:`~darkfab.control.deadlock`: waiting robots, circular waits and their escapes, stalled
  lanes, and the targeted wake-ups of robots that cannot plan;
* :mod:`~darkfab.control.chargers`: chargers, charging thresholds, and when a waiting robot
  gives up its trip for a low battery;
* :mod:`~darkfab.control.invariants`: the invariant monitor (``--check-invariants``);
* :mod:`~darkfab.control.routes`: free-flow distances and paths.

Tasks: one per staging area with units waiting and room reserved at the destination; FIFO.
Routing: SIPP against the reservation table (``traffic = "reservations"``), or plain shortest
paths that ignore other robots (``traffic = "none"``, for comparison only: robots may meet).
A robot sets off only when it holds its whole leg (:mod:`darkfab.factory.occupancy`); while it
waits it is woken only when it can hold the leg or when what keeps it out changes.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable, Sequence

import simpy

from darkfab.agents.fleet_port import FleetRobot, LaneRef
from darkfab.factory.kpis import LogHistogram
from darkfab.factory.occupancy import Occupancy
from darkfab.factory.recorder import TableWriter
from darkfab.factory.transport import Staging, TransportTask

from .allocation import ALLOCATIONS, allocator
from .chargers import ChargerPool
from .deadlock import DeadlockResolver
from .invariants import InvariantMonitor, InvariantViolation
from .routes import Routes
from .traffic import INF, Lane, ReservationTable, Step, sipp_plan

__all__ = ["FleetManager", "InvariantViolation", "ALLOCATIONS"]


class FleetManager:
    """The fleet's tasks, plans and drive events; see the module docstring.

    Parameters
    ----------
    env:
        The simulation environment.
    lanes, directed:
        The robot layout: every lane once, and per lane key whether it is one-way.
    occupancy:
        Who is on which lane and node, with capacities.
    chargers, spots:
        Charger nodes; parking and holding nodes.
    allocation:
        Task allocation strategy (:data:`ALLOCATIONS`).
    traffic:
        ``True``: reservations and leg holding; ``False``: robots ignore each other.
    charge_below_soc, charge_target_soc, opportunistic_below_soc, reserve_soc:
        Charging thresholds (fractions of capacity; :mod:`darkfab.control.chargers`).
    check_invariants:
        Run the invariant monitor.
    transport_writer:
        Where finished and open tasks are written (``transport.parquet``).
    warmup_s:
        Tasks requested before this time are left out of the lead-time statistics.
    """

    retry_s = 5.0  # a robot that cannot plan, or is stuck in a circular wait, looks again
    wait_limit_s = 60.0  # a robot waiting for its leg looks again at least this often

    def __init__(self, env: simpy.Environment, lanes: list[Lane], directed: dict[Hashable, bool],
                 occupancy: Occupancy, chargers: list[str], spots: Sequence[str] = (), *,
                 allocation: str = "nearest-idle",
                 traffic: bool = True, charge_below_soc: float = 0.3,
                 charge_target_soc: float = 0.95, opportunistic_below_soc: float = 0.8,
                 reserve_soc: float = 0.1, check_invariants: bool = False,
                 transport_writer: TableWriter | None = None, warmup_s: float = 0.0) -> None:
        self.env = env
        self.occ = occupancy
        self.allocation = allocation
        self.traffic = traffic
        self.reserve_soc = reserve_soc
        self.warmup_s = warmup_s
        self.routes = Routes(lanes, directed, chargers)
        self._allocator = allocator(allocation, self.routes, charge_below_soc, reserve_soc)
        self.table = ReservationTable(dict(occupancy.capacity))
        self.robots: list[FleetRobot] = []
        self._by_name: dict[str, FleetRobot] = {}
        self.monitor = InvariantMonitor(lambda: env.now, self.routes.adjacency, occupancy,
                                        self.robots, traffic, check_invariants)
        self.chargers = ChargerPool(
            env, chargers, self.routes, self._by_name.get, self.monitor,
            charge_below_soc=charge_below_soc, charge_target_soc=charge_target_soc,
            opportunistic_below_soc=opportunistic_below_soc, reserve_soc=reserve_soc)
        self.deadlock = DeadlockResolver(
            env, occupancy, self.table, self.routes, self.robots, self._by_name.get, list(spots),
            self.chargers.free, lambda r: self._assign(r, "park", r.home))
        self.unit_mass_kg: dict[str, float] = {}  # product -> kg per unit
        self.pending: deque[TransportTask] = deque()
        self._open: dict[Staging, TransportTask] = {}
        self._space_wait: dict[object, list[Staging]] = {}
        self._task_id = 0
        self._writer = transport_writer
        self.lane_usage: dict[Hashable, int] = {lane.key: 0 for lane in lanes}
        self.lead_time = LogHistogram()
        self._task_listeners: list[Callable[[TransportTask, str], None]] = []
        self.abandoned = 0  # trips given up before pickup for a low battery
        self.tasks_requested = 0
        self.tasks_delivered = 0

    # --- counters and queries (summary, fault campaign, commands) ---------------------------
    @property
    def deadlocks(self) -> int:
        return self.deadlock.deadlocks

    @property
    def backoffs(self) -> int:
        return self.deadlock.backoffs

    @property
    def charger_preemptions(self) -> int:
        return self.chargers.preemptions

    @property
    def chargers_out(self) -> set[str]:
        return self.chargers.out

    def charge_queue_length(self) -> int:
        """Robots waiting for a free charger."""
        return len(self.chargers.queue)

    def has_path(self, start: str, goal: str) -> bool:
        """Whether a robot can drive from node ``start`` to node ``goal`` on the lanes."""
        return self.routes.path(start, goal) is not None

    def set_charger_out(self, node: str, out: bool) -> None:
        """Take charger ``node`` out of service, or put it back (a fault)."""
        self.chargers.set_out(node, out)

    # --- wiring -----------------------------------------------------------------------------
    def attach(self, robots: Sequence[FleetRobot]) -> None:
        self.robots[:] = robots  # shared with the monitor and the deadlock resolver
        self._by_name.clear()
        self._by_name.update((r.name, r) for r in robots)
        for r in robots:
            self.table.add(("node", r.node), self.env.now, INF, r.name)

    def start(self) -> None:
        for r in self.robots:
            r.start()
        self._dispatch()
        for r in self.robots:
            if r.job is None:
                self.chargers.watch(r)

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
        for fn in self._task_listeners:
            fn(task, "requested")
        self._dispatch()

    def on_picked_up(self, robot: FleetRobot, task: TransportTask) -> None:
        st = task.staging
        if self._open.get(st) is task:
            del self._open[st]
        if st.level > 0:
            self._request(st)

    def _dispatch(self) -> None:
        while self.pending:
            task = self.pending[0]
            robot = self._allocator.choose(task, self.robots, self.env.now)
            if robot is None:
                return
            self.pending.popleft()
            task.assigned_s = self.env.now
            task.robot = robot.name
            task.status = "assigned"
            if robot.job is not None and robot.job.kind == "charge":
                robot.preempt_for(task)
                self.chargers.release(robot)
                continue
            self._assign(robot, "transport", task.pickup, task)

    def _assign(self, robot: FleetRobot, kind: str, node: str, task=None) -> None:
        from darkfab.agents.robot import Job  # lazy: the job type belongs to the robot agent

        robot.assign(Job(kind, node, task))

    def abandon(self, robot: FleetRobot, task: TransportTask) -> None:
        """``robot`` gives up ``task`` before pickup: the task goes back to the head of the
        queue for another robot, and the robot's planned leg is cancelled."""
        self.abandoned += 1
        task.status, task.robot, task.assigned_s = "requested", "", -1.0
        self.pending.appendleft(task)
        self.table.clear_robot(robot.name)
        self.table.add(("node", robot.node), self.env.now, INF, robot.name)
        self.deadlock.forget(robot.name)

    # --- job completion and charging --------------------------------------------------------
    def on_job_done(self, robot: FleetRobot, job) -> None:
        self.occ.wake_blocked_by(robot.name)  # those waiting for it may have to send it home
        chargers = self.chargers
        if job.kind == "transport" and not job.abandoned:
            t = job.task
            self.tasks_delivered += 1
            if t.requested_s >= self.warmup_s:
                self.lead_time.add(t.delivered_s - t.requested_s)
            self._write(t)
            for fn in self._task_listeners:
                fn(t, "delivered")
        if job.kind == "charge":
            chargers.release(robot)
        low = chargers.charge_below_soc
        if job.abandoned and robot.battery.soc < low and chargers.send(robot, False):
            return
        task = robot.take_pending_task()
        if task is not None:
            self._assign(robot, "transport", task.pickup, task)
            return
        if robot.battery.soc < low and chargers.send(robot, False):
            return
        self._dispatch()
        if robot.job is not None:
            return
        if robot.battery.soc < chargers.opportunistic_below_soc and chargers.send(robot, True):
            return
        if robot.node != robot.home and job.kind != "park":
            self._assign(robot, "park", robot.home)
            return
        if robot.battery.soc < low:
            chargers.idle_check(robot)  # no free charger now: queue for the next one
            return
        chargers.watch(robot)

    def subscribe_tasks(self, fn: Callable[[TransportTask, str], None]) -> None:
        """``fn(task, "requested" | "delivered")`` when a transport task is requested and when
        it is delivered."""
        self._task_listeners.append(fn)

    def charger_usable(self, node: str) -> bool:
        return self.chargers.usable(node)

    def battery_low(self, robot: FleetRobot, loaded: bool) -> bool:
        """Called while ``robot`` waits in traffic: ``True`` if it should give up its unloaded
        trip and charge (:meth:`ChargerPool.battery_low`)."""
        return self.chargers.battery_low(robot, loaded)

    # --- routing ----------------------------------------------------------------------------
    def plan(self, robot: FleetRobot, goal: str, speed: float) -> list[Step] | None:
        """Plan ``robot``'s next leg toward ``goal`` and reserve it; ``None`` if no
        conflict-free path exists now. The leg may end short of the goal at a free parking or
        holding spot when the robot must make way (deadlock escape); its travel loop then plans
        again from there."""
        now = self.env.now
        name = robot.name
        dl, routes = self.deadlock, self.routes
        dl.no_plan.pop(name, None)
        dl.timed_legs.discard(name)
        self.table.clear_robot(name)
        if not self.traffic:
            return routes.shortest(robot.node, goal, speed, now, frozenset())
        if robot.job is not None and robot.job.kind == "park" and goal == robot.job.node:
            goal = robot.job.node = dl.parking_for(robot, goal)
        blocked = dl.stalled_now()
        if dl.must_yield(robot):
            self.table.add(("node", robot.node), now, INF, name)
            return None  # made way: let the others pass first
        detour = dl.detour.pop(name, None)
        if detour is not None:
            steps = (routes.steps(detour, speed, now) if detour[0] == robot.node
                     else routes.shortest(robot.node, detour[-1], speed, now, frozenset()))
        else:
            to_goal, fastest = routes.dist_to(goal), max(speed, 1e-9)
            steps = sipp_plan(routes.adjacency, self.table, name, robot.node, now, goal, speed,
                              self.occ.holders, blocked,
                              heuristic=lambda n: to_goal.get(n, 0.0) / fastest,
                              preds=routes.preds)
        timed = steps is not None
        if not timed:
            # no conflict-free timing against the reservations: take the shortest path and
            # let the robot wait at its node until it holds the whole leg; until then it
            # reserves only the node it stands on (a leg it may not drive for a long time
            # must not claim its goal for ever and so keep everyone else from planning there)
            steps = routes.shortest(robot.node, goal, speed, now, blocked)
        if steps is None:  # stalled robots block every way to the goal
            self.table.add(("node", robot.node), now, INF, name)
            dl.no_plan[name] = "stall"
            dl.note_goal_wait(robot, goal)
            return None
        dl.waiting.pop(name, None)
        if timed:
            self._reserve(name, robot.node, now, steps)
            if detour is None:
                dl.timed_legs.add(name)
        else:
            self.table.add(("node", robot.node), now, INF, name)
        return steps

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
        return self.deadlock.changed_event()

    def no_plan_event(self, robot: FleetRobot) -> simpy.Event:
        """An event for ``robot`` after :meth:`plan` gave it no leg
        (:meth:`DeadlockResolver.no_plan_event`)."""
        return self.deadlock.no_plan_event(robot)

    def on_wait(self, robot: FleetRobot, keys: list[Hashable]) -> bool:
        """``robot`` waits to hold ``keys``; ``True`` if it should re-plan
        (:meth:`DeadlockResolver.on_wait`)."""
        return self.deadlock.on_wait(robot, keys)

    def patience_s(self, robot: FleetRobot, loaded: bool) -> float:
        """How long ``robot``, waiting for its leg, may wait before it looks again by itself,
        events aside: ``retry_s`` if it closes a circular wait that no robot could escape from
        yet; else until its charge would no longer reach a charger with the reserve left
        (computed exactly from the base draw), and at most ``wait_limit_s`` (a safety net for
        what no event reports, such as a battery fade)."""
        if self.deadlock.is_stuck(robot):
            return self.retry_s
        return min(self.wait_limit_s, self.chargers.time_to_reserve_s(robot, loaded))

    def on_moving(self, robot: FleetRobot, steps: list[Step]) -> None:
        """``robot`` holds its whole leg and sets off now: its reservations become the leg
        as it will be driven from now on (the planned times shift by any wait)."""
        self.deadlock.waiting.pop(robot.name, None)
        self.deadlock.timed_legs.discard(robot.name)
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

    def on_stall(self, robot: FleetRobot, lane: LaneRef, until: float) -> None:
        self.deadlock.on_stall(robot, lane.key, until)

    # --- drive events -----------------------------------------------------------------------
    def on_enter_lane(self, robot: FleetRobot, frm: str, lane: LaneRef, to: str) -> None:
        self._left(robot, ("node", frm))
        self.monitor_move(robot, frm, lane, to)

    def on_arrive(self, robot: FleetRobot, lane: LaneRef, to: str) -> None:
        self._left(robot, lane.key)
        self.monitor_arrive(robot, lane, to)

    def _left(self, robot: FleetRobot, key: Hashable) -> None:
        self.table.release(key, robot.name)
        self.deadlock.on_left(robot)

    def monitor_move(self, robot: FleetRobot, frm: str, lane: LaneRef, to: str) -> None:
        """Invariant checks of a move (:meth:`InvariantMonitor.move`)."""
        self.monitor.move(robot, frm, lane, to)

    def monitor_arrive(self, robot: FleetRobot, lane: LaneRef, to: str) -> None:
        """Count the lane driven, wake robots that let this one pass, and check the
        invariants of an arrival (:meth:`InvariantMonitor.arrive`)."""
        self.lane_usage[lane.key] += 1
        self.deadlock.on_arrive(robot)
        self.monitor.arrive(robot, to)

    # --- results ----------------------------------------------------------------------------
    def _write(self, t: TransportTask) -> None:
        if self._writer is not None:
            st = t.staging
            self._writer.append(t.id, st.origin, st.destination.name, t.pickup, t.drop, t.units,
                                t.requested_s, t.assigned_s, t.picked_up_s, t.delivered_s,
                                t.robot, t.status)

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
