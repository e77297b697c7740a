"""The interface between a robot (:class:`~darkfab.agents.robot.Amr`) and its fleet manager.

Two Protocols, one per direction, so that neither side reaches into the other's members:

* :class:`Fleet`: what a robot asks of its fleet manager (plans, waiting, the events of its
  drive, job completion). The fleet manager lives in ``darkfab.control``, above the agents, so
  the robot knows it only through this Protocol.
* :class:`FleetRobot`: what the fleet manager reads from a robot and asks it to do. The fleet
  never writes a robot's state: it gives jobs (:meth:`FleetRobot.assign`) and asks
  (:meth:`FleetRobot.interrupt_charge`, :meth:`FleetRobot.preempt_for`,
  :meth:`FleetRobot.request_replan`).

Keys of lanes and nodes are those of :class:`~darkfab.factory.occupancy.Occupancy`
(``("node", n)`` and lane keys); times are simulated seconds, speeds m/s.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    import simpy

    from darkfab.factory.battery import Battery
    from darkfab.factory.transport import TransportTask

    from .robot import AmrSpec, Job

__all__ = ["Fleet", "FleetRobot", "LaneRef", "LegStep"]


class LaneRef(Protocol):
    """A lane as a robot drives it: from ``a`` to ``b``."""

    @property
    def key(self) -> Hashable: ...
    @property
    def a(self) -> str: ...
    @property
    def b(self) -> str: ...
    @property
    def length_m(self) -> float: ...
    @property
    def speed_limit_m_s(self) -> float: ...


class LegStep(Protocol):
    """One lane of a planned leg (:class:`darkfab.control.traffic.Step`)."""

    @property
    def lane(self) -> LaneRef: ...
    @property
    def to(self) -> str: ...


@runtime_checkable
class Fleet(Protocol):
    """What a robot needs from its fleet manager, in the order of a drive."""

    retry_s: float  # a robot that cannot plan looks again at least this often (s)
    traffic: bool  # whether robots hold their legs (``False``: they ignore each other)

    def plan(self, robot: FleetRobot, goal: str, speed: float) -> Sequence[LegStep] | None:
        """The robot's next leg toward ``goal`` (possibly short of it), reserved; ``None``
        if it must wait (then :meth:`no_plan_event`)."""

    def no_plan_event(self, robot: FleetRobot) -> simpy.Event:
        """Fires when a plan may succeed again for ``robot`` after :meth:`plan` failed."""

    def changed_event(self) -> simpy.Event:
        """Fires when any robot leaves a node or lane."""

    def on_wait(self, robot: FleetRobot, keys: list[Hashable]) -> bool:
        """``robot`` waits to hold ``keys`` (its leg); ``True`` if it should re-plan."""

    def patience_s(self, robot: FleetRobot, loaded: bool) -> float:
        """How long ``robot`` may wait for its leg before it looks again by itself."""

    def battery_low(self, robot: FleetRobot, loaded: bool) -> bool:
        """After a wait: ``True`` if ``robot`` should give up its unloaded trip to charge."""

    def on_moving(self, robot: FleetRobot, steps: Sequence[LegStep]) -> None:
        """``robot`` holds its whole leg and sets off now."""

    def on_enter_lane(self, robot: FleetRobot, frm: str, lane: LaneRef, to: str) -> None:
        """``robot`` left node ``frm`` and entered ``lane`` toward ``to``."""

    def on_arrive(self, robot: FleetRobot, lane: LaneRef, to: str) -> None:
        """``robot`` left ``lane`` and reached node ``to``."""

    def on_stall(self, robot: FleetRobot, lane: LaneRef, until: float) -> None:
        """``robot`` stalled on ``lane``; it is expected to drive on at ``until``."""

    def on_picked_up(self, robot: FleetRobot, task: TransportTask) -> None:
        """``robot`` loaded the units of ``task``."""

    def abandon(self, robot: FleetRobot, task: TransportTask) -> None:
        """``robot`` gives ``task`` up before pickup (battery low while waiting)."""

    def charger_usable(self, node: str) -> bool:
        """Whether the charger at ``node`` is in service."""

    def on_job_done(self, robot: FleetRobot, job: Job) -> None:
        """``robot`` finished (or gave up) ``job`` and is idle."""


@runtime_checkable
class FleetRobot(Protocol):
    """What the fleet manager reads from a robot and asks of it."""

    name: str
    home: str  # its parking node
    spec: AmrSpec
    battery: Battery
    node: str | None  # the node it is on, ``None`` while on a lane
    lane: Hashable | None  # the key of the lane it is on, ``None`` on a node
    goal: str | None  # where its current leg is heading
    job: Job | None
    pending_task: TransportTask | None  # taken over while charging, started next
    arrivals: int  # nodes reached so far

    @property
    def charging(self) -> bool:
        """Whether it is charging now."""

    def assign(self, job: Job) -> None:
        """Give it ``job`` (it is idle)."""

    def interrupt_charge(self) -> bool:
        """Cut its charge short; ``True`` if it was charging."""

    def preempt_for(self, task: TransportTask) -> None:
        """Cut its opportunistic charge short to do ``task`` next."""

    def take_pending_task(self) -> TransportTask | None:
        """The task it took over while charging (it has none afterwards)."""

    def request_replan(self) -> None:
        """Drop its plan and plan again (waking it if it waits)."""

    def start(self) -> None:
        """Start its process."""
