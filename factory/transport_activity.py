"""Active periods of the transport resources, for bottleneck detection across machines and
transport.

The *active-period* method (Roser, Nakano & Tanaka, "A practical bottleneck detection method",
Proc. Winter Simulation Conference 2001, pp. 949-953; "Shifting bottleneck detection", WSC
2002, pp. 1079-1086) calls a resource *active* while it works or is repaired, so that others
may wait for it, and *inactive* while it waits itself (starved or blocked). The resource with
the longest mean uninterrupted active period constrains the system most. The method needs only
the instants at which each resource turns active and inactive, so it extends to transport:

* a **transport route** (all trips from one staging area to one destination buffer, e.g. the
  case packer to the dock) is the server between two machines. It is active while it has a
  trip open, requested and not yet delivered: material waits for it. It is starved while its
  staging area is empty and blocked while the destination has no room (no trip is requested
  then). Its activity includes every cause of a slow trip: waiting for a robot, driving, the
  traffic on its lanes, loading and unloading;
* the **robot fleet** is active while no robot is idle: a new trip would wait for a robot;
* a **lane** or a **crossing** (a waypoint or holding node) is active while it holds as many
  robots as its capacity (a robot holds the lanes and crossings of a leg from the moment it
  sets off on it until it has passed them): a robot wanting it waits;
* the **chargers** are active while every charger is charging a robot.

The route names the transport system as a whole; the fleet, lanes, crossings and chargers say
which part of it works hardest. An inactive gap of zero length (a robot leaves a lane and the
one woken by that release takes it at the same instant) does not end an active period (see
:class:`~darkfab.factory.kpis.ActivePeriods`).
"""

from __future__ import annotations

from collections.abc import Hashable

from .kpis import ActivePeriods, TimeAverage

__all__ = ["TransportActivity", "resource_name"]


def resource_name(key: Hashable) -> str:
    """``lane a-b`` for an occupancy lane key ``("lane", a, b)``, ``node n`` for a node key
    ``("node", n)``."""
    if key[0] == "node":  # type: ignore[index]
        return f"node {key[1]}"  # type: ignore[index]
    return f"lane {key[1]}-{key[2]}"  # type: ignore[index]


class TransportActivity:
    """Active periods (after ``warmup_s``) of the transport routes, the fleet, the lanes and
    crossings, and the chargers.

    Parameters
    ----------
    warmup_s:
        Periods are clipped to start at the end of warm-up (s).
    robots:
        Names of the robots, all idle at the start.
    capacity:
        Robots each tracked lane or crossing holds at most, by occupancy key.
    chargers:
        Names of the charger nodes.
    """

    def __init__(self, warmup_s: float, robots: list[str], capacity: dict[Hashable, int],
                 chargers: list[str]) -> None:
        self.warmup_s = warmup_s
        self.fleet = ActivePeriods(warmup_s)
        self.places = {k: ActivePeriods(warmup_s) for k in capacity}
        self.chargers = ActivePeriods(warmup_s)
        self.routes: dict[str, ActivePeriods] = {}
        self._open: dict[str, int] = {}
        self._capacity = dict(capacity)
        self._charger_nodes = frozenset(chargers)
        self._busy = {r: False for r in robots}
        self._busy_count = 0
        self._charging_at: dict[str, str] = {}  # robot -> charger node
        # for the report's fleet section: mean robots per lane and crossing, robot-seconds of
        # traffic waiting per node, charging seconds per charger (all after warm-up)
        self.occupancy = {k: TimeAverage(warmup_s) for k in capacity}
        self.waiting_s: dict[str, float] = {}
        self.charging_s: dict[str, float] = {c: 0.0 for c in chargers}
        self._since: dict[str, tuple[str, str | None, float]] = {}  # robot -> state, node, t

    def robot_state(self, now: float, robot: str, state: str, node: str | None) -> None:
        """``robot`` entered ``state`` (a robot state name) at ``node`` (``None`` on a lane)."""
        last = self._since.get(robot)
        if last is not None:
            old, at, t0 = last
            dt = now - max(t0, self.warmup_s)
            if dt > 0 and at is not None:
                if old == "waiting_traffic":
                    self.waiting_s[at] = self.waiting_s.get(at, 0.0) + dt
                elif old == "charging" and at in self.charging_s:
                    self.charging_s[at] += dt
        self._since[robot] = (state, node, now)
        busy = state != "idle"
        if busy != self._busy[robot]:
            self._busy[robot] = busy
            self._busy_count += 1 if busy else -1
            self.fleet.set(now, self._busy_count == len(self._busy))
        self._charging_at.pop(robot, None)
        if state == "charging" and node in self._charger_nodes:
            self._charging_at[robot] = node
        if self._charger_nodes:
            self.chargers.set(now, len(set(self._charging_at.values()))
                              == len(self._charger_nodes))

    def holders(self, now: float, key: Hashable, holders: int) -> None:
        """Lane or node ``key`` holds ``holders`` robots from ``now`` on."""
        full = holders >= self._capacity[key]
        periods = self.places[key]
        if full is not periods.active:
            periods.set(now, full)
        self.occupancy[key].update(now, holders)

    def trip(self, now: float, route: str, opened: bool) -> None:
        """A trip on ``route`` was requested (``opened``) or delivered."""
        n = self._open.get(route, 0) + (1 if opened else -1)
        self._open[route] = n
        if route not in self.routes:
            self.routes[route] = ActivePeriods(self.warmup_s)
        self.routes[route].set(now, n > 0)

    def resources(self, end: float, observed_s: float) -> dict[str, dict]:
        """Per resource: its kind (``route``, ``fleet``, ``lane``, ``node``, ``chargers``), mean
        active period (s) and share of the observed time (s) it was active."""
        out = {f"transport {r}": _record("route", p, end, observed_s)
               for r, p in sorted(self.routes.items())}
        out["fleet"] = _record("fleet", self.fleet, end, observed_s)
        for k, p in self.places.items():
            out[resource_name(k)] = _record(k[0], p, end, observed_s)  # type: ignore[index]
        if self._charger_nodes:
            out["chargers"] = _record("chargers", self.chargers, end, observed_s)
        return out


    def usage(self, end: float) -> dict[str, dict]:
        """The fleet's use of the layout after warm-up up to ``end``: per lane and crossing
        (``a-b`` or the node name) its kind, mean robots held and share of time full; traffic
        waiting per node (robot-seconds); charging seconds per charger."""
        for robot, (state, node, _t) in list(self._since.items()):
            self.robot_state(end, robot, state, node)  # close the open intervals
        places = {}
        for k, p in self.places.items():
            name = k[1] if k[0] == "node" else f"{k[1]}-{k[2]}"  # type: ignore[index]
            places[name] = {"kind": k[0], "a": k[1], "b": k[-1],  # type: ignore[index]
                            "capacity_robots": self._capacity[k],
                            "occupancy_mean": self.occupancy[k].mean(end),
                            "full_s": p.active_time(end)}
        return {"places": places, "waiting_s": dict(sorted(self.waiting_s.items())),
                "charging_s": dict(self.charging_s)}


def _record(kind: str, p: ActivePeriods, end: float, observed_s: float) -> dict:
    active = p.active_time(end)
    return {"kind": kind, "mean_active_period_s": p.mean(end),
            "active_share": active / observed_s if observed_s > 0 else 0.0}
