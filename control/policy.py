"""The policy API: what a supervisory controller is.

A controller is any object with ``reset`` and ``decide`` (a structural :class:`Controller`
protocol; no base class needed). The plant calls

* ``reset(info)`` once before the run, with the static :class:`~.observation.PlantInfo`
  (scikit-learn's rule: ``__init__`` only stores parameters, run state is created here);
* ``decide(events, observation)`` whenever something the controller subscribed to happens:
  all events of one simulated instant arrive together, with a frozen
  :class:`~.observation.Observation` of the plant. It returns a list of typed commands
  (:mod:`darkfab.control.commands`), which the plant validates and applies after the scenario's
  decision latency. A refused command is logged and reported back, never fatal.

Optional attributes: ``name`` (used as the issuer in the event log) and ``wakes_on``, a set of
event topics (``"fault"``, ``"repaired"``, ``"state:Stopped"``, ``"state"`` for every state
change, ... see :data:`~.observation.EVENT_KINDS`) that wake the controller; ``None`` (default)
means every event. Subscribing only to what a policy needs keeps long runs fast: units suspend
and unsuspend themselves many times a day when starved or blocked.

An exception raised by ``reset`` or ``decide`` (or a ``decide`` that returns something other
than a list of commands) is a **controller fault**: the plant stops its sources, commands every
unit to Stop where PackML allows it, lets acting states and robots finish for at most the
scenario's ``controller.safe_stop_s``, and the run ends with :class:`ControllerFault` (the CLI's
exit code 3) and partial results.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from .commands import PlantCommand
from .observation import Event, Observation, PlantInfo

__all__ = ["Controller", "ControllerFault"]


@runtime_checkable
class Controller(Protocol):
    """A supervisory policy (see the module docstring)."""

    def reset(self, info: PlantInfo) -> None:
        """Create run state for the plant ``info`` (called once per run, before any event)."""
        ...

    def decide(self, events: Sequence[Event], observation: Observation) -> list[PlantCommand]:
        """React to ``events`` (same simulated instant) given ``observation``."""
        ...


class ControllerFault(RuntimeError):
    """A controller raised (or broke the protocol); the plant was brought to a safe stop."""

    def __init__(self, controller: str, time_s: float, cause: str) -> None:
        super().__init__(f"controller fault at t={time_s:.1f} s: {controller}: {cause}")
        self.controller = controller
        self.time_s = time_s
        self.cause = cause
