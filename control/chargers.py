"""Chargers and batteries of the fleet: who charges where, when, and when a robot must give up.

* Below ``charge_below_soc`` after a job a robot goes to the nearest free charger and charges to
  ``charge_target_soc``; an idle robot below ``opportunistic_below_soc`` charges while idle and
  may be taken off the charger when a task needs it.
* Chargers are claimed one robot each; a robot that must charge takes a charger from an
  opportunistic one when none is free (the one with the most charge), else it queues.
* An idle robot drains at its base draw: it is woken exactly when it reaches a threshold.
* A robot waiting in traffic draws power: when its charge would no longer reach a charger with
  ``reserve_soc`` left, it gives up an unloaded trip (:meth:`ChargerPool.battery_low`). The
  moment is computed exactly (:meth:`ChargerPool.time_to_reserve_s`), so a waiting robot need
  not look at its battery again and again.

Energies in kWh, powers in kW, times in seconds (``Battery`` in :mod:`darkfab.factory.battery`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import simpy

from darkfab.agents.fleet_port import FleetRobot

from .invariants import InvariantMonitor
from .routes import Routes
from .traffic import INF

__all__ = ["ChargerPool"]


class ChargerPool:
    """The fleet's chargers and the charging rules above.

    Parameters
    ----------
    env:
        The simulation environment.
    chargers:
        Charger nodes.
    routes:
        Free-flow distances (nearest charger, distance to a charger).
    robot_named:
        Look-up of a robot by name (``None`` if not a robot).
    monitor:
        Invariant monitor (the charge is checked while robots wait).
    charge_below_soc, charge_target_soc, opportunistic_below_soc, reserve_soc:
        Thresholds as fractions of the battery's capacity (see the module docstring).
    """

    def __init__(self, env: simpy.Environment, chargers: list[str], routes: Routes,
                 robot_named: Callable[[str], FleetRobot | None], monitor: InvariantMonitor, *,
                 charge_below_soc: float, charge_target_soc: float,
                 opportunistic_below_soc: float, reserve_soc: float) -> None:
        self.env = env
        self.routes = routes
        self.robot_named = robot_named
        self.monitor = monitor
        self.charge_below_soc = charge_below_soc
        self.charge_target_soc = charge_target_soc
        self.opportunistic_below_soc = opportunistic_below_soc
        self.reserve_soc = reserve_soc
        self.claimed: dict[str, str | None] = {c: None for c in chargers}  # charger -> robot
        self.out: set[str] = set()  # out of service (a fault): never assigned
        self.queue: deque[FleetRobot] = deque()  # robots waiting for a free charger
        self.preemptions = 0  # opportunistic charges cut short for a low robot

    def free(self) -> set[str]:
        """Chargers no robot has claimed."""
        return {c for c, r in self.claimed.items() if r is None}

    def usable(self, node: str) -> bool:
        return node not in self.out

    def watch(self, robot: FleetRobot) -> None:
        """An idle robot drains at its base draw: check it when it reaches the opportunistic
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
        ev.callbacks.append(lambda _e: self.idle_check(robot))

    def idle_check(self, robot: FleetRobot) -> None:
        """An idle robot's charge crossed a threshold: charge, queue for a charger, or watch
        on."""
        if robot.job is not None or robot.pending_task is not None:
            return
        robot.battery.advance(self.env.now)
        soc = robot.battery.soc
        if soc < self.opportunistic_below_soc and self.send(
                robot, soc >= self.charge_below_soc):
            return
        if soc < self.charge_below_soc:
            if robot not in self.queue:
                self.queue.append(robot)
            return
        self.watch(robot)

    def send(self, robot: FleetRobot, opportunistic: bool) -> bool:
        """Send ``robot`` to the nearest free charger (taking one from an opportunistic charge
        if it must charge and none is free); ``False`` if there is none it can reach."""
        free = [c for c, r in self.claimed.items() if r is None and c not in self.out]
        if not free and not opportunistic:
            free = self._preempt()
        if not free:
            return False
        here = robot.node if robot.node is not None else robot.lane[-1]  # type: ignore[index]
        d = self.routes.d
        c = min(free, key=lambda n: (d(here, n), n))
        if d(here, c) == INF:
            return False
        self.claimed[c] = robot.name
        from darkfab.agents.robot import Job  # lazy: the job type belongs to the robot agent

        robot.assign(Job("charge", c, None, self.charge_target_soc, opportunistic=opportunistic))
        return True

    def _preempt(self) -> list[str]:
        """Take the charger of the opportunistically charging robot with the most charge
        (already above ``charge_below_soc``) for a robot that must charge; [] if none."""
        cands = []
        for c, name in self.claimed.items():
            r = self.robot_named(name or "")
            if c in self.out:
                continue
            if (r is not None and r.job is not None and r.job.kind == "charge"
                    and r.job.opportunistic and r.charging and r.job.task is None
                    and r.pending_task is None):
                r.battery.advance(self.env.now)
                if r.battery.soc >= self.charge_below_soc:
                    cands.append((-r.battery.soc, name, c))
        if not cands:
            return []
        _, name, c = min(cands)
        self.robot_named(name).interrupt_charge()  # type: ignore[union-attr]
        self.preemptions += 1
        self.claimed[c] = None
        return [c]

    def release(self, robot: FleetRobot) -> None:
        """``robot`` is done with its charger: serve the queue."""
        for c, r in self.claimed.items():
            if r == robot.name:
                self.claimed[c] = None
        self.serve_queue()

    def serve_queue(self) -> None:
        queue = self.queue
        while queue:
            nxt = queue[0]
            if nxt.job is not None:  # busy again: it checks its charge when that job ends
                queue.popleft()
                continue
            if self.send(nxt, False):
                queue.popleft()
            break

    def set_out(self, node: str, out: bool) -> None:
        """Take charger ``node`` out of service (a robot charging there stops and leaves; none
        is sent there) or put it back (robots queued for a charger are served)."""
        if out:
            self.out.add(node)
            r = self.robot_named(self.claimed.get(node) or "")
            if r is not None:  # on its way there it will not charge (Amr.run checks)
                r.interrupt_charge()
        else:
            self.out.discard(node)
            self.serve_queue()

    def _reserve_margin_kwh(self, robot: FleetRobot, loaded: bool) -> float:
        """Charge (kWh) ``robot`` has above what it needs to reach a charger with the reserve
        left; ``inf`` when it never gives up (loaded, charging, idle, or on a lane)."""
        job = robot.job
        if loaded or job is None or job.kind == "charge" or robot.node is None:
            return INF
        b = robot.battery
        return (b.soc_kwh - b.travel_energy(self.routes.to_charger_m(robot.node), False)
                - self.reserve_soc * b.capacity_kwh)

    def battery_low(self, robot: FleetRobot, loaded: bool) -> bool:
        """Called while ``robot`` waits in traffic: ``True`` if it should give up its unloaded
        trip and charge, its charge no longer reaching a charger with ``reserve_soc`` left.
        Checks the state-of-charge invariant too, since waiting draws power."""
        robot.battery.advance(self.env.now)
        self.monitor.battery(robot, " while waiting")
        return self._reserve_margin_kwh(robot, loaded) < 0

    def time_to_reserve_s(self, robot: FleetRobot, loaded: bool) -> float:
        """Seconds of waiting (at the base draw) until :meth:`battery_low` becomes true for
        ``robot``, just past the moment; ``inf`` if never."""
        b = robot.battery
        job = robot.job
        if loaded or job is None or job.kind == "charge" or robot.node is None \
                or b.base_kw <= 0:
            return INF
        b.advance(self.env.now)
        return max(self._reserve_margin_kwh(robot, loaded), 0.0) / b.base_kw * 3600.0 + 1e-6
