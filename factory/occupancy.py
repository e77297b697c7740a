"""Physical occupancy of the robot layout: who is on which node and lane, with capacities.

A robot enters a lane together with a claim on the node at its end, so it is never stuck on a
lane; it releases the node behind it as it enters the lane and the lane as it arrives. Waiting
robots get an event that fires when something they wait for is released. Occupancy never
exceeds capacity: :meth:`can_enter` is the only way in.
"""

from __future__ import annotations

from collections.abc import Hashable

import simpy

__all__ = ["Occupancy", "lane_key"]


def lane_key(a: str, b: str, directed: bool) -> tuple[str, str, str]:
    """Key of the lane between ``a`` and ``b``; both directions of a two-way lane share it."""
    if directed:
        return ("lane", a, b)
    return ("lane", *sorted((a, b)))  # type: ignore[return-value]


class Occupancy:
    """Occupants per node and lane, with capacities and release notifications."""

    def __init__(self, env: simpy.Environment, node_capacity: dict[str, int],
                 lane_capacity: dict[Hashable, int]) -> None:
        self.env = env
        self.capacity: dict[Hashable, int] = {("node", n): c for n, c in node_capacity.items()}
        self.capacity.update(lane_capacity)
        self.occupants: dict[Hashable, set[str]] = {k: set() for k in self.capacity}
        self._waiters: dict[Hashable, list[simpy.Event]] = {}

    def holders(self, key: Hashable) -> set[str]:
        return self.occupants[key]

    def has_room(self, key: Hashable, robot: str) -> bool:
        occ = self.occupants[key]
        return robot in occ or len(occ) < self.capacity[key]

    def can_enter(self, lane: Hashable, node: str, robot: str) -> bool:
        return self.has_room(lane, robot) and self.has_room(("node", node), robot)

    def place(self, node: str, robot: str) -> None:
        """Initial placement (or a claim) of ``robot`` on ``node``."""
        key = ("node", node)
        if not self.has_room(key, robot):
            raise RuntimeError(f"node {node} is full")
        self.occupants[key].add(robot)

    def enter_lane(self, lane: Hashable, frm: str, to: str, robot: str) -> None:
        if not self.can_enter(lane, to, robot):
            raise RuntimeError(f"{robot} may not enter {lane}")
        self.occupants[lane].add(robot)
        self.occupants[("node", to)].add(robot)
        self.release(("node", frm), robot)

    def leave_lane(self, lane: Hashable, robot: str) -> None:
        self.release(lane, robot)

    def release(self, key: Hashable, robot: str) -> None:
        self.occupants[key].discard(robot)
        for ev in self._waiters.pop(key, ()):
            if not ev.triggered:
                ev.succeed()

    def wait_event(self, keys: list[Hashable]) -> simpy.Event:
        """An event that fires when any of ``keys`` releases an occupant."""
        ev = self.env.event()
        for k in keys:
            self._waiters.setdefault(k, []).append(ev)
        return ev

    def blockers(self, lane: Hashable, node: str, robot: str) -> set[str]:
        out: set[str] = set()
        for key in (lane, ("node", node)):
            if not self.has_room(key, robot):
                out |= self.occupants[key] - {robot}
        return out
