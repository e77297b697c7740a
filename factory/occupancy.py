"""Physical occupancy of the robot layout: who is on which node and lane, with capacities.

Before a robot sets off on a leg it takes every lane and node of the leg at once (all or
nothing) and frees each as it passes, so it never waits anywhere but at a node, and occupancy
never exceeds capacity.

A robot that cannot hold its leg waits on :meth:`Occupancy.wait_for`: its event fires only when
the robot can hold the whole leg, or when what keeps it out changes (the set of occupants
holding a lane or node of the leg that is full for it, :meth:`Occupancy.blockers`), or when the
fleet reports that one of those occupants changed its plans (:meth:`Occupancy.wake_blocked_by`).
A release that leaves the leg blocked by the same robots wakes nobody, so a robot following
another along a corridor is not woken at each lane the leader passes.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable

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
        self._waiters: dict[Hashable, list[_Waiter]] = {}
        self._blocked_by: dict[str, list[_Waiter]] = {}
        self.wakeups = 0  # waits ended by a release, a changed blocker or wake_blocked_by
        self._watch: dict[Hashable, list[Callable[[float, Hashable, int], None]]] = {}

    def subscribe(self, fn: Callable[[float, Hashable, int], None],
                  keys: Iterable[Hashable]) -> None:
        """``fn(now, key, occupants)`` after a robot takes or leaves one of ``keys`` (nodes
        and lanes); other keys cost nothing."""
        for k in keys:
            self._watch.setdefault(k, []).append(fn)

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
        watch = self._watch
        for k in keys:
            occ = self.occupants[k]
            occ.add(robot)
            if k in watch:
                for fn in watch[k]:
                    fn(self.env.now, k, len(occ))

    def release(self, key: Hashable, robot: str) -> None:
        """``robot`` leaves ``key``: robots waiting for it are woken if they can now hold their
        whole leg, or if the occupants keeping them out changed."""
        occ = self.occupants[key]
        occ.discard(robot)
        if key in self._watch:
            for fn in self._watch[key]:
                fn(self.env.now, key, len(occ))
        waiters = self._waiters.get(key)
        if waiters:
            keep = []
            for w in waiters:
                if w.event.triggered:
                    continue
                now_blocking = self.blockers(w.keys, w.robot)
                if now_blocking != w.blockers:  # can hold the leg (empty), or blocked anew
                    self._fire(w)
                else:
                    keep.append(w)
            if keep:
                self._waiters[key] = keep
            else:
                del self._waiters[key]

    def wait_for(self, keys: list[Hashable], robot: str) -> simpy.Event:
        """An event for ``robot`` waiting to hold all of ``keys``: it fires when the robot can
        hold them, when the occupants keeping it out (:meth:`blockers`) change, or when
        :meth:`wake_blocked_by` names one of them."""
        w = _Waiter(robot, keys, self.blockers(keys, robot), self.env.event())
        for k in keys:
            self._waiters.setdefault(k, []).append(w)
        for b in w.blockers:
            lst = self._blocked_by.setdefault(b, [])
            if len(lst) > 8:  # drop waits that ended otherwise (timeout, re-plan)
                lst[:] = [x for x in lst if not x.event.triggered]
            lst.append(w)
        return w.event

    def wake_blocked_by(self, occupant: str) -> None:
        """Wake the robots kept out of their leg by ``occupant`` (its plans changed: it became
        idle, or stalled, so whoever waits for it may have to act)."""
        for w in self._blocked_by.pop(occupant, ()):
            if not w.event.triggered:
                self._fire(w)

    def _fire(self, w: _Waiter) -> None:
        self.wakeups += 1
        w.event.succeed()

    def blockers(self, keys: list[Hashable], robot: str) -> frozenset[str]:
        """The occupants keeping ``robot`` out of ``keys`` (empty if it can hold them all)."""
        out: set[str] = set()
        occupants, capacity = self.occupants, self.capacity
        for k in keys:
            occ = occupants[k]
            if robot not in occ and len(occ) >= capacity[k]:
                out |= occ
        return frozenset(out)

    def full_for(self, key: Hashable, robot: str) -> set[str]:
        """The occupants keeping ``robot`` out of ``key`` (empty if there is room)."""
        return set() if self.has_room(key, robot) else self.occupants[key] - {robot}


class _Waiter:
    """A robot waiting to hold ``keys``, kept out by ``blockers`` when it started waiting."""

    __slots__ = ("robot", "keys", "blockers", "event")

    def __init__(self, robot: str, keys: list[Hashable], blockers: frozenset[str],
                 event: simpy.Event) -> None:
        self.robot, self.keys, self.blockers, self.event = robot, keys, blockers, event
