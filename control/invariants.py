"""The fleet's invariant monitor: checks, as robots drive, what must always hold.

With ``check_invariants`` on (``darkfab run --check-invariants``), each move and arrival is
checked: a robot moves only between adjacent nodes, along the lane's direction; under traffic
control no lane or node ever holds more robots than its capacity; the state of charge stays in
[0, capacity] (also while a robot waits, since waiting draws power). A broken invariant stops
the run with :class:`InvariantViolation` naming the time, the robot and the place.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable

from darkfab.agents.fleet_port import FleetRobot, LaneRef
from darkfab.factory.occupancy import Occupancy

__all__ = ["InvariantMonitor", "InvariantViolation"]


class InvariantViolation(RuntimeError):
    """A broken fleet invariant: the run stops with this report (time, robots, place)."""


class InvariantMonitor:
    """Checks of moves, arrivals and batteries.

    Parameters
    ----------
    now:
        The simulation clock (s).
    adjacency:
        Per node, the (next node, lane) pairs a robot may drive.
    occupancy:
        Who is on which lane and node.
    robots:
        The fleet's robots (for the one-robot-per-node check on arrival).
    traffic:
        Whether robots hold their legs (separation is checked only then).
    enabled:
        Whether to check at all (off: every check returns at once).
    """

    def __init__(self, now: Callable[[], float], adjacency: dict[str, list[tuple[str, LaneRef]]],
                 occupancy: Occupancy, robots: Iterable[FleetRobot], traffic: bool,
                 enabled: bool) -> None:
        self.now = now
        self.adjacency = adjacency
        self.occ = occupancy
        self.robots = robots
        self.traffic = traffic
        self.enabled = enabled

    def move(self, robot: FleetRobot, frm: str, lane: LaneRef, to: str) -> None:
        """``robot`` left ``frm`` onto ``lane`` toward ``to``: an adjacent move, within the
        capacities of the lane and the node ahead."""
        if not self.enabled:
            return
        if (lane.a, lane.b) != (frm, to) or not any(
                v == to and ln.key == lane.key for v, ln in self.adjacency.get(frm, ())):
            self.violation(robot, f"moved from {frm} onto lane {lane.key} toward {to}: "
                                  "not an adjacent move")
        if self.traffic:
            for key in (lane.key, ("node", to)):
                held = self.occ.holders(key)
                if len(held) > self.occ.capacity[key]:
                    self.violation(robot, f"{key} holds {sorted(held)} beyond capacity "
                                          f"{self.occ.capacity[key]}")

    def arrive(self, robot: FleetRobot, to: str) -> None:
        """``robot`` reached node ``to``: its charge in bounds, the node within capacity."""
        if not self.enabled:
            return
        self.battery(robot, "")
        if self.traffic:
            here = [r.name for r in self.robots if r.node == to]
            if len(here) > self.occ.capacity[("node", to)]:
                self.violation(robot, f"robots {here} on node {to} at once (capacity "
                                      f"{self.occ.capacity[('node', to)]})")

    def battery(self, robot: FleetRobot, when: str) -> None:
        """The state of charge of ``robot`` is within [0, capacity] (``when``: a suffix for
        the report, e.g. " while waiting")."""
        if not self.enabled:
            return
        b = robot.battery
        b.advance(self.now())
        if not (-1e-9 <= b.soc_kwh <= b.capacity_kwh + 1e-9):
            self.violation(robot, f"state of charge {b.soc_kwh:.6f} kWh outside "
                                  f"[0, {b.capacity_kwh}]{when}")

    def violation(self, robot: FleetRobot, what: str) -> None:
        place: Hashable = robot.node or robot.lane
        raise InvariantViolation(f"invariant violated at t={self.now():.3f} s: robot "
                                 f"{robot.name} at {place}: {what}")
