"""Physical occupancy of the robot layout: who is on which node and lane, with capacities.

Before a robot sets off on a leg it takes every lane and node of the leg at once (all or
nothing) and frees each as it passes, so it never waits anywhere but at a node, and occupancy
never exceeds capacity. Waiting robots get an event that fires when something they wait for is
released.
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

    def place(self, node: str, robot: str) -> None:
        """Initial placement of ``robot`` on ``node``."""
        key = ("node", node)
        if not self.has_room(key, robot):
            raise RuntimeError(f"node {node} is full")
        self.occupants[key].add(robot)

    def can_hold(self, keys: list[Hashable], robot: str) -> bool:
        """Whether ``robot`` can hold all of ``keys`` at once (each may appear once)."""
        return all(self.has_room(k, robot) for k in keys)

    def hold(self, keys: list[Hashable], robot: str) -> None:
        """Take every key in ``keys`` for ``robot`` (all or nothing)."""
        if not self.can_hold(keys, robot):
            raise RuntimeError(f"{robot} cannot hold {keys}")
        for k in keys:
            self.occupants[k].add(robot)

    def release(self, key: Hashable, robot: str) -> None:
        self.occupants[key].discard(robot)
        self.notify(key)

    def notify(self, key: Hashable) -> None:
        """Wake the robots waiting for ``key`` (its occupants or reservations changed)."""
        for ev in self._waiters.pop(key, ()):
            if not ev.triggered:
                ev.succeed()

    def wait_event(self, keys: list[Hashable]) -> simpy.Event:
        """An event that fires when any of ``keys`` releases an occupant."""
        ev = self.env.event()
        for k in keys:
            self._waiters.setdefault(k, []).append(ev)
        return ev

    def full_for(self, key: Hashable, robot: str) -> set[str]:
        """The occupants keeping ``robot`` out of ``key`` (empty if there is room)."""
        return set() if self.has_room(key, robot) else self.occupants[key] - {robot}
