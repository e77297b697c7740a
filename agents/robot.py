"""Mobile robots (AMRs) and robot arms.

An :class:`Amr` lives on the robot layout: it is always on a node or on a lane, never in
between. It executes jobs given by the fleet manager (transport, charge, park), follows the
planned path step by step, and enters a lane only when the lane and the node at its end have
room (:class:`~darkfab.factory.occupancy.Occupancy`), so it waits rather than collides when
others are late. A stall (failure mode counting travel time) stops it on a lane until recovered.
Alarms (ISA-18.2, ``model.alarms``, priority ``medium``): a stall (condition: the stall mode's
name; cleared when the robot drives on) and a battery fade found by the battery management
system after a charge (``battery_fade``: permanent, it stays active).
A :class:`RobotArm` is a fixed agent that equipment must hold to load or unload (cycle time).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import simpy
from mesa.discrete_space import CellAgent, FixedAgent

from darkfab.factory.battery import Battery
from darkfab.factory.distributions import Sampler
from darkfab.factory.kpis import StateTimer
from darkfab.factory.occupancy import Occupancy
from darkfab.factory.transport import ReservedPut, TransportTask

from .fleet_port import Fleet
from .model import PlantModel

__all__ = ["Amr", "AmrSpec", "Job", "RobotArm", "StallMode"]

IDLE, TRAVEL_EMPTY, TRAVEL_LOADED, WAITING, LOADING, UNLOADING, CHARGING, FAILED = (
    "idle", "travel_empty", "travel_loaded", "waiting_traffic", "loading", "unloading",
    "charging", "failed")
ROBOT_STATES = (IDLE, TRAVEL_EMPTY, TRAVEL_LOADED, WAITING, LOADING, UNLOADING, CHARGING, FAILED)


@dataclass(frozen=True)
class StallMode:
    name: str
    time_to_failure: Sampler  # seconds of travel
    recovery_time: Sampler


@dataclass(frozen=True)
class AmrSpec:
    speed_empty_m_s: float
    speed_loaded_m_s: float
    payload_units: int
    payload_kg: float  # math.inf: no mass limit
    load_time: Sampler
    unload_time: Sampler
    stalls: tuple[StallMode, ...] = ()


@dataclass
class Job:
    kind: str  # "transport", "charge", "park"
    node: str
    task: TransportTask | None = None
    target_soc: float = 1.0
    opportunistic: bool = False  # a charge that a task may cut short
    abandoned: bool = False  # given up on the way (battery low while waiting): not done


class Amr(CellAgent):
    """An autonomous mobile robot; see the module docstring. Its Mesa cell is the node it is on
    (or last left, while on a lane)."""

    def __init__(self, model: PlantModel, name: str, home: str, spec: AmrSpec, battery: Battery,
                 occupancy: Occupancy, fleet: Fleet) -> None:
        """A robot ``name`` standing at node ``home`` (its parking spot), with ``spec`` and
        ``battery``, on the layout whose occupancy is ``occupancy``, taking jobs from
        ``fleet`` (see :class:`~darkfab.agents.fleet_port.Fleet`)."""
        super().__init__(model)
        self.name = name
        self.home = home
        self.spec = spec
        self.battery = battery
        self.occ = occupancy
        self.fleet = fleet
        self.env: simpy.Environment = model.env
        self.node: str | None = home  # None while on a lane
        self.lane = None
        self.cell = model.node_cell(home)
        self.job: Job | None = None
        self.inbox = simpy.Store(self.env)
        self.timer = StateTimer(name, IDLE, self.env.now, model.warmup_s, model.states)
        self.loaded_units: list = []
        self.distance_m = {"empty": 0.0, "loaded": 0.0}
        self.traffic_wait_s = 0.0
        self.tasks_done = 0
        self.stalls = 0
        self._replan = False
        self._wake: simpy.Event | None = None
        self._ttf = [m.time_to_failure() for m in spec.stalls]
        self.stalled_on = None
        self.pending_task: TransportTask | None = None  # assigned while charging
        self.goal: str | None = None  # where the current leg is heading
        self.arrivals = 0  # nodes reached so far
        self._charging = False
        self._proc: simpy.Process | None = None
        self._forced: tuple | None = None  # scripted stall: (name, duration_s, on_stall, on_end)
        self.alarm_listeners: list = []  # fn(robot, alarm, detail)
        self._soh_reported = 1.0
        self._listeners: list = []  # fn(robot, "state", state)
        occupancy.place(home, name)

    # --- state --------------------------------------------------------------------------
    @property
    def state(self) -> str:
        return self.timer.state

    def _set(self, state: str) -> None:
        if state != self.timer.state:
            self.timer.change(self.env.now, state)
            self.model.log.record(self.env.now, "robot", self.name, -1, "",
                                  self.node or str(self.lane[1:]), state)
            for fn in self._listeners:
                fn(self, "state", state)

    def subscribe(self, fn) -> None:
        """``fn(robot, "state", state)`` after each change of the robot's state (the hook shape
        of :meth:`darkfab.agents.equipment.Equipment.subscribe`)."""
        self._listeners.append(fn)

    @property
    def idle(self) -> bool:
        return self.job is None

    def assign(self, job: Job) -> None:
        self.job = job
        self.inbox.put(job)

    @property
    def charging(self) -> bool:
        """Whether it is charging now."""
        return self._charging

    def preempt_for(self, task: TransportTask) -> None:
        """Cut an opportunistic charge short to do ``task`` next: the charge job ends now and
        the task starts when the fleet hears of it (:meth:`take_pending_task`)."""
        self.interrupt_charge()
        self.job = None
        self.pending_task = task

    def take_pending_task(self) -> TransportTask | None:
        """The task taken over while charging, if any (none is pending afterwards)."""
        task, self.pending_task = self.pending_task, None
        return task

    def force_stall(self, name: str, duration_s: float, on_stall=None, on_end=None) -> None:
        """A scripted stall (fault campaign): the robot stalls for ``duration_s`` on the next
        lane it enters. ``on_stall(robot)`` and
        ``on_end(robot)`` are called when the stall starts and ends."""
        self._forced = (name, duration_s, on_stall, on_end)

    def request_replan(self) -> None:
        """Ask the robot to drop its plan and plan again at its next node."""
        self._replan = True
        if self._wake is not None and not self._wake.triggered:
            self._wake.succeed()

    # --- main process -------------------------------------------------------------------
    def run(self):
        while True:
            job = yield self.inbox.get()
            if job.kind == "transport":
                yield from self._transport(job.task)
            elif job.kind == "charge":
                yield from self._travel(job.node, loaded=False)
                if self.fleet.charger_usable(job.node):  # not out of service meanwhile
                    yield from self._charge(job.target_soc)
            elif not (yield from self._travel(job.node, loaded=False)):  # park
                job.abandoned = True
            self.job = None
            self._set(IDLE)
            self.fleet.on_job_done(self, job)

    def _transport(self, task: TransportTask):
        m = self.model
        if not (yield from self._travel(task.pickup, loaded=False)):
            self.job.abandoned = True
            self.fleet.abandon(self, task)
            m.log.record(self.env.now, "abandon", self.name, -1, "", self.node,
                         f"task {task.id}: battery low while waiting")
            return
        self._set(LOADING)
        yield self.env.timeout(self.spec.load_time())
        st = task.staging
        n = min(task.units, len(st.items))
        self.loaded_units = []
        for _ in range(n):
            self.loaded_units.append((yield st.get()))
        # places reserved but not loaded (nothing staged any more) are given back
        st.destination.reserved -= task.units - n
        task.units = n
        task.picked_up_s = self.env.now
        task.status = "picked_up"
        for u in self.loaded_units:
            m.log.record(self.env.now, "pickup", self.name, u.id, u.product, task.pickup,
                         f"task {task.id}")
        self.fleet.on_picked_up(self, task)
        yield from self._travel(task.drop, loaded=True)
        self._set(UNLOADING)
        yield self.env.timeout(self.spec.unload_time())
        dest = st.destination
        for u in self.loaded_units:
            ReservedPut(dest, u)
            m.log.record(self.env.now, "deliver", self.name, u.id, u.product, dest.name,
                         f"task {task.id}")
        self.loaded_units = []
        task.delivered_s = self.env.now
        task.status = "delivered"
        self.tasks_done += 1

    def _charge(self, target_soc: float):
        """Charge to ``target_soc``; an opportunistic charge may be cut short by the fleet
        manager (``interrupt_charge``) when a task needs this robot."""
        self._set(CHARGING)
        b = self.battery
        b.set_charging(self.env.now, True)
        self._charging = True
        try:
            yield self.env.timeout(b.time_to_charge_s(target_soc * b.capacity_kwh))
        except simpy.Interrupt:
            pass
        self._charging = False
        b.set_charging(self.env.now, False)
        if b.capacity_kwh < self._soh_reported * b.nominal_kwh * (1.0 - 1e-9):
            # the battery management system estimates the state of health from a charge
            self._soh_reported = b.state_of_health
            detail = f"state of health {b.state_of_health:.3f}"
            self.model.alarms.raise_alarm(
                self.env.now, self.name, "battery_fade",
                f"{detail} (capacity {b.capacity_kwh:.3g} of {b.nominal_kwh:.3g} kWh)", "medium")
            for fn in self.alarm_listeners:
                fn(self, "battery_fade", detail)

    def interrupt_charge(self) -> bool:
        if self._charging and self._proc is not None:
            self._charging = False
            self._proc.interrupt("task")
            return True
        return False

    def start(self) -> None:
        self._proc = self.env.process(self.run())

    # --- movement -----------------------------------------------------------------------
    def _travel(self, goal: str, loaded: bool):
        """Drive to ``goal``. Each leg is planned by the fleet manager against the others'
        reservations; the robot sets off only when it holds every lane and node of the leg
        (it waits at its node otherwise), and frees each one as it passes. ``False`` if it gave
        up waiting because its battery ran down to the reserve (see
        :meth:`~darkfab.control.fleet.FleetManager.battery_low`); never when loaded."""
        env, fleet, occ = self.env, self.fleet, self.occ
        speed = self.spec.speed_loaded_m_s if loaded else self.spec.speed_empty_m_s
        replans_now, last = 0, -1.0
        self.goal = goal
        while self.node != goal:
            if self._replan:  # re-planning again at the same instant: let the others move
                replans_now = replans_now + 1 if env.now == last else 1
                last = env.now
                if replans_now > 2:
                    self._set(WAITING)
                    t0 = env.now
                    self._wake = fleet.changed_event()
                    yield self._wake | env.timeout(fleet.retry_s)
                    self.traffic_wait_s += env.now - t0
                    if fleet.battery_low(self, loaded):
                        return False
            self._replan = False
            plan = fleet.plan(self, goal, speed)
            if self.job is not None and self.job.kind == "park":
                goal = self.goal = self.job.node  # the fleet may pick another free spot
            if not plan:
                self._set(WAITING)
                t0 = env.now
                self._wake = fleet.no_plan_event(self)
                yield self._wake | env.timeout(fleet.retry_s)
                self.traffic_wait_s += env.now - t0
                if fleet.battery_low(self, loaded):
                    return False
                continue
            keys = [k for st in plan for k in (st.lane.key, ("node", st.to))]
            if fleet.traffic:
                while not occ.can_hold(keys, self.name):
                    self._set(WAITING)
                    t0 = env.now
                    self._wake = occ.wait_for(keys, self.name)
                    if fleet.on_wait(self, keys):
                        self._replan = True
                    if not self._replan:
                        yield self._wake | env.timeout(fleet.patience_s(self, loaded))
                    self.traffic_wait_s += env.now - t0
                    if fleet.battery_low(self, loaded):
                        return False
                    if self._replan:
                        break
                if self._replan:
                    continue
                occ.hold(keys, self.name)
                fleet.on_moving(self, plan)
            ahead = Counter(keys)  # a leg may pass a node twice: keep it until the last time
            for step in plan:
                yield from self._traverse(step, speed, loaded, ahead)
        return True

    def _traverse(self, step, speed: float, loaded: bool, ahead: Counter):
        env, lane, fleet = self.env, step.lane, self.fleet
        frm = self.node
        entered = env.now
        if fleet.traffic and not ahead[("node", frm)]:
            self.occ.release(("node", frm), self.name)
        self.node, self.lane = None, lane.key
        fleet.on_enter_lane(self, frm, lane, step.to)
        moving = TRAVEL_LOADED if loaded else TRAVEL_EMPTY
        self._set(moving)
        remaining = lane.length_m / min(speed, lane.speed_limit_m_s)
        if self._forced is not None:
            yield from self._forced_stall(lane)
            self._set(moving)
        ttf = self._ttf
        while ttf and min(ttf) < remaining:
            # a stall part-way along the lane (time to failure counts travel time only)
            i = ttf.index(min(ttf))
            dt = ttf[i]
            yield env.timeout(dt)
            remaining -= dt
            for j in range(len(ttf)):
                ttf[j] -= dt
            mode = self.spec.stalls[i]
            ttf[i] = mode.time_to_failure()
            yield from self._stall(mode, lane)
            self._set(moving)
        for j in range(len(ttf)):
            ttf[j] -= remaining
        yield env.timeout(remaining)
        self.battery.travel(env.now, lane.length_m, loaded)
        self.distance_m["loaded" if loaded else "empty"] += lane.length_m
        ahead[lane.key] -= 1
        ahead[("node", step.to)] -= 1
        if fleet.traffic and not ahead[lane.key]:
            self.occ.release(lane.key, self.name)
        self.node, self.lane = step.to, None
        self.cell = self.model.node_cell(step.to)
        self.arrivals += 1
        # one row per lane driven, at the arrival: where from, when it entered the lane and
        # the state of charge on arrival (the view replays robot positions from these rows)
        self.model.log.record(env.now, "move", self.name, -1, "", step.to,
                              f"{frm} {entered!r} {self.battery.soc:.4f}")
        fleet.on_arrive(self, lane, step.to)

    def _stall(self, mode: StallMode, lane):
        self.stalls += 1
        self._set(FAILED)
        self.stalled_on = lane.key
        self.model.log.record(self.env.now, "fault", self.name, -1, "", str(lane.key[1:]),
                              mode.name)
        alarms = self.model.alarms
        alarms.raise_alarm(self.env.now, self.name, mode.name,
                           f"stalled on lane {lane.key[1]}-{lane.key[2]}", "medium")
        rec = mode.recovery_time()
        self.fleet.on_stall(self, lane, self.env.now + rec)
        yield self.env.timeout(rec)
        self.stalled_on = None
        self.model.log.record(self.env.now, "repair", self.name, -1, "", str(lane.key[1:]),
                              mode.name)
        alarms.clear(self.env.now, self.name, mode.name)

    def _forced_stall(self, lane):
        name, duration, on_stall, on_end = self._forced  # type: ignore[misc]
        self._forced = None
        if on_stall is not None:
            on_stall(self)
        yield from self._stall(StallMode(name, _Fixed(duration), _Fixed(duration)), lane)
        if on_end is not None:
            on_end(self)

    def finish(self, now: float) -> None:
        self.battery.advance(now)
        self.timer.finish(now)


class _Fixed:
    """A constant 'sampler' (scripted durations)."""

    def __init__(self, value: float) -> None:
        self.value = self.mean = value

    def __call__(self) -> float:
        return self.value


class RobotArm(FixedAgent):
    """A fixed arm that loads and unloads equipment; one move at a time."""

    def __init__(self, model: PlantModel, name: str, node: str, cycle_time: Sampler) -> None:
        super().__init__(model)
        self.name = name
        self.node = node
        self.cell = model.node_cell(node)
        self.cycle_time = cycle_time
        self.resource = simpy.Resource(model.env, capacity=1)
        self.moves = 0
        self.busy_s = 0.0

    def handle(self, units: Sequence, what: str, equipment: str):
        """Process generator: wait for the arm, then move ``units`` (one cycle)."""
        env = self.model.env
        with self.resource.request() as req:
            yield req
            d = self.cycle_time()
            yield env.timeout(d)
            self.moves += 1
            if env.now >= self.model.warmup_s:
                self.busy_s += d
