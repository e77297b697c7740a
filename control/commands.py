"""Typed commands a controller returns; the plant validates each one before applying it.

The plant applies a command after the scenario's ``controller.decision_latency_s``. A command
that is illegal by then (a PackML guard, an interlock such as an active fault, an unknown
target) or that this plant cannot apply yet is **rejected**: logged in ``events.parquet`` (kind
``command_rejected``, detail ``"<Command>: <reason>"``), reported to the controller as a
``command_rejected`` event, never applied and never fatal. Accepted commands are logged as kind
``command``.

:data:`COMMAND_TYPES` (from ``PlantCommand``) is the one list of command types; the plant
applies each through one handler registered per type (``darkfab.scenarios.commanding``), and a
test checks that the two match. A command row applied after its decision ends in
``"; decided <t> s"``.

Every command has an optional last field ``reason`` (why the controller decided it); a
non-empty reason goes to the event log: the ``command`` row's detail is ``"<what>: <reason>"``.

Applied today: :class:`Acknowledge` (an active alarm), :class:`PackMLCommand` (to a unit; Stop
and Start also to a source: it stops or resumes releasing material), :class:`ChangeMode`,
:class:`WakeUp`, :class:`Maintenance` of a continuous line with a punch-wear model (a punch
change), the lot dispositions :class:`Quarantine`, :class:`Release` and :class:`Divert`
(``darkfab.agents.quality``), :class:`Dispatch` and :class:`Sequence` to an order book
(``darkfab.agents.orders``), :class:`SetPoint` ``route:<target>`` (a branch weight) to a unit
with ``next`` branches, and :class:`TransportRequest` in a plant with a fleet (from a buffer, or
from a source or unit whose transports wait for the controller, e.g. planned feeder refills).
The others (:class:`Charge`, :class:`Maintenance` of discrete units, other set-points,
dispatching at a unit's FIFO input buffer) are part of the API so that policies can be written
against it; this plant validates their targets and rejects them as ``unsupported``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from darkfab.factory.packml import Command

__all__ = ["Acknowledge", "PackMLCommand", "ChangeMode", "Dispatch", "Sequence",
           "TransportRequest", "Charge",
           "Maintenance", "Divert", "Quarantine", "Release", "SetPoint", "WakeUp",
           "PlantCommand", "COMMAND_TYPES"]


@dataclass(frozen=True, slots=True)
class PackMLCommand:
    """A PackML command (ISA-TR88.00.02) to a unit: Reset, Start, Stop, Hold, Unhold, Suspend,
    Unsuspend, Abort or Clear. Accepted only where the state model allows it; Reset, Start,
    Unhold, Unsuspend and Clear are also interlocked while a fault of the unit is active."""

    unit: str
    command: Command | str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class ChangeMode:
    """Change the PackML unit mode (legal in Stopped, Idle, Aborted and Complete)."""

    unit: str
    mode: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Dispatch:
    """Select the unit's next work by a registered dispatching rule
    (:data:`darkfab.control.dispatching.RULES`)."""

    unit: str
    rule: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Sequence:
    """Work the given lots first, in this order, at the unit."""

    unit: str
    lots: tuple[str, ...]
    reason: str = ""


@dataclass(frozen=True, slots=True)
class TransportRequest:
    """Ask the fleet to carry ``units`` from one buffer (or staging area) to another."""

    origin: str
    destination: str
    units: int = 1
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Charge:
    """Send a robot to a charger."""

    robot: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Maintenance:
    """Maintenance on a unit (``kind``: preventive or predictive; ``reason`` goes to the event
    log). Applied to a continuous line with a punch-wear model: a punch change."""

    unit: str
    kind: str = "preventive"
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Divert:
    """Scrap every unit of ``lot`` (and of everything made from it, which keeps the lot): the
    units held in quarantine at product sinks now, the others when they arrive there."""

    lot: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Quarantine:
    """Hold ``lot``: its units that reach a product sink are held there, not completed, until
    :class:`Release` or :class:`Divert`."""

    lot: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Release:
    """Release a quarantined ``lot``: its held units are completed now."""

    lot: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class SetPoint:
    unit: str
    name: str
    value: float
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Acknowledge:
    """Acknowledge active alarm ``alarm_id`` (ISA-18.2: the operator has seen it; the alarm
    stays active until its condition returns to normal). Rejected for an unknown id, an alarm
    already cleared or one already acknowledged. Logged as a ``command`` row of the alarm's
    source, detail ``"Acknowledge <id>"``; ``alarms.parquet`` records the time and the
    controller's name."""

    alarm_id: int
    reason: str = ""


@dataclass(frozen=True, slots=True)
class WakeUp:
    """Call the controller again at ``at_s`` (simulated seconds) with a ``timer`` event whose
    detail is ``tag``: a controller's only clock."""

    at_s: float
    tag: str = ""
    reason: str = ""


PlantCommand = Union[PackMLCommand, ChangeMode, Dispatch, Sequence, TransportRequest, Charge,
                     Maintenance, Divert, Quarantine, Release, SetPoint, WakeUp, Acknowledge]
COMMAND_TYPES = PlantCommand.__args__  # type: ignore[attr-defined]
