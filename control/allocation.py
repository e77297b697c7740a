"""Task allocation: which robot takes a transport task (``fleet.task_allocation``).

* ``nearest-idle``: the available robot with the shortest free-flow path to the pickup;
* ``battery-aware``: the available robot with the lowest marginal-cost bid: travel time to the
  pickup and on to the drop, plus the time to recharge the energy the trip costs.

With either strategy, a robot that could not finish the trip and still reach a charger with
``reserve_soc`` left does not bid (after the drop it may have to park at home before a charger
is free, so the way back is the longer of drop → charger and drop → home → charger).
Available robots are the idle ones, and those charging opportunistically above
``charge_below_soc`` (their charge is cut short). Distances in m, times in s, energies in kWh.
"""

from __future__ import annotations

from collections.abc import Iterable

from darkfab.agents.fleet_port import FleetRobot
from darkfab.factory.transport import TransportTask

from .routes import Routes

__all__ = ["ALLOCATIONS", "Allocator", "BatteryAware", "NearestIdle", "allocator"]


class NearestIdle:
    """Key of a bid: the distance (m) to the pickup."""

    name = "nearest-idle"

    @staticmethod
    def bound(to_pick_m: float, trip_s: float) -> float:
        """A lower bound of :meth:`key` known before the energy is computed."""
        return to_pick_m

    @staticmethod
    def key(to_pick_m: float, trip_s: float, energy_kwh: float, charging_kw: float) -> float:
        return to_pick_m


class BatteryAware:
    """Key of a bid: the trip time plus the time (s) to put its energy back."""

    name = "battery-aware"

    @staticmethod
    def bound(to_pick_m: float, trip_s: float) -> float:
        return trip_s

    @staticmethod
    def key(to_pick_m: float, trip_s: float, energy_kwh: float, charging_kw: float) -> float:
        return trip_s + energy_kwh / charging_kw * 3600.0


_STRATEGIES = {s.name: s for s in (NearestIdle, BatteryAware)}
ALLOCATIONS = tuple(_STRATEGIES)


class Allocator:
    """Chooses the robot for a task by a strategy (:class:`NearestIdle`,
    :class:`BatteryAware`) among the available robots that can afford the trip.

    Parameters
    ----------
    strategy:
        The bid's key.
    routes:
        Free-flow distances.
    charge_below_soc, reserve_soc:
        Fractions of capacity: an opportunistic charge above ``charge_below_soc`` may be cut
        short for a task; a bid keeps ``reserve_soc`` at a charger after the trip.
    """

    def __init__(self, strategy: type[NearestIdle] | type[BatteryAware], routes: Routes,
                 charge_below_soc: float, reserve_soc: float) -> None:
        self.strategy = strategy
        self.routes = routes
        self.charge_below_soc = charge_below_soc
        self.reserve_soc = reserve_soc

    def available(self, robots: Iterable[FleetRobot]) -> list[FleetRobot]:
        """Idle robots, and robots charging opportunistically above ``charge_below_soc``."""
        out = []
        for r in robots:
            if r.job is None and r.pending_task is None:
                out.append(r)
            elif (r.job is not None and r.job.kind == "charge" and r.job.task is None
                  and r.charging
                  and r.battery.soc >= self.charge_below_soc
                  and r.job.opportunistic):
                out.append(r)
        return out

    def choose(self, task: TransportTask, robots: Iterable[FleetRobot],
               now: float) -> FleetRobot | None:
        """The robot for ``task``, or ``None`` if no available robot can afford it. Robots are
        examined in order of a lower bound of their key (the travel time; their bid adds the
        recharge time), and the search stops when the bound exceeds the best bid so far."""
        d, to_charger = self.routes.d, self.routes.to_charger_m
        strategy = self.strategy
        trip = d(task.pickup, task.drop)
        back_direct = to_charger(task.drop)
        cands = []
        for r in self.available(robots):
            r.battery.advance(now)
            here = r.node if r.node is not None else r.lane[-1]  # type: ignore[index]
            to_pick = d(here, task.pickup)
            t = to_pick / r.spec.speed_empty_m_s + trip / r.spec.speed_loaded_m_s
            cands.append((strategy.bound(to_pick, t), r.name, to_pick, t, r))
        cands.sort(key=lambda c: (c[0], c[1]))
        best, best_key = None, None
        for bound, name, to_pick, t, r in cands:
            if best_key is not None and (bound, name) >= best_key:
                break  # neither this robot nor any after it can bid lower
            back = max(back_direct, d(task.drop, r.home) + to_charger(r.home))
            b = r.battery
            energy = b.travel_energy(to_pick, False) + b.travel_energy(trip, True)
            drain = b.base_kw * t / 3600.0
            if b.soc_kwh - energy - drain - b.travel_energy(back, False) \
                    < self.reserve_soc * b.capacity_kwh:
                continue  # could not finish and still reach a charger: no bid
            key = (strategy.key(to_pick, t, energy + drain, b.charging_kw), name)
            if best_key is None or key < best_key:
                best, best_key = r, key
        return best


def allocator(name: str, routes: Routes, charge_below_soc: float,
              reserve_soc: float) -> Allocator:
    """The allocator for ``fleet.task_allocation = name`` (:data:`ALLOCATIONS`)."""
    if name not in _STRATEGIES:
        raise ValueError(f"unknown task allocation {name!r}")
    return Allocator(_STRATEGIES[name], routes, charge_below_soc, reserve_soc)
