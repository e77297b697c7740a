"""Scripted faults: what (``mode``), where (``target``), when (``time_s``) and for how long;
their targets are checked against the scenario in :mod:`darkfab.scenarios.schema_references`.

Part of :mod:`darkfab.scenarios.schema` (which exports every name); see there.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field, field_validator
from pydantic_core import PydanticCustomError

from .schema_base import NonNegativeFloat, PositiveFloat, Strict

__all__ = ["Fault", "FAULT_MODES", "BreakdownFault", "RobotStallFault", "BatteryFadeFault",
           "ChargerOutageFault", "SensorDropoutFault", "SensorDriftFault",
           "FeederRefillFailureFault", "OosLotFault", "SupervisorOutageFault",
           "CommandLatencyFault", "CommandLossFault"]


class _FaultBase(Strict):
    """A scripted fault: what (``mode``), where (``target``), when (``time_s``) and for how long
    (``duration_s``, simulated seconds)."""

    time_s: NonNegativeFloat
    target: Annotated[str, Field(min_length=1)]
    duration_s: PositiveFloat


class BreakdownFault(_FaultBase):
    """Equipment (a PackML unit: Held, or Aborted with ``reaction = "abort"``) or a continuous
    line (Held) breaks down; repaired ``duration_s`` later."""

    mode: Literal["breakdown"]
    reaction: Literal["hold", "abort"] = "hold"


class RobotStallFault(_FaultBase):
    """A robot (``amr-1`` ...) stalls on the next lane it drives, for ``duration_s``."""

    mode: Literal["robot_stall"]


class BatteryFadeFault(Strict):
    """A robot's battery loses ``fraction`` of its capacity (and stored energy) from ``time_s``
    on (permanent)."""

    mode: Literal["battery_fade"]
    time_s: NonNegativeFloat
    target: Annotated[str, Field(min_length=1)]
    fraction: Annotated[float, Field(gt=0, lt=1)]


class ChargerOutageFault(_FaultBase):
    """A charger node is out of service: no robot is sent there; one charging is taken off."""

    mode: Literal["charger_outage"]


class SensorDropoutFault(_FaultBase):
    """The NIR PAT sensor of a continuous line returns no readings."""

    mode: Literal["sensor_dropout"]


class SensorDriftFault(_FaultBase):
    """The NIR PAT sensor of a continuous line drifts: bias = rate × (t − time_s), gone when
    the fault clears (recalibrated)."""

    mode: Literal["sensor_drift"]
    rate_per_h: Annotated[float, Field(allow_inf_nan=False)]

    @field_validator("rate_per_h")
    @classmethod
    def _nonzero(cls, v: float) -> float:
        if v == 0:
            raise PydanticCustomError("drift", "rate_per_h must not be 0")
        return v


class FeederRefillFailureFault(_FaultBase):
    """Refills of a feeder (target ``line.feeder``) fail: a container at the dock is not
    emptied until the fault clears."""

    mode: Literal["feeder_refill_failure"]


class OosLotFault(Strict):
    """The next container emptied into the API feeder (target ``line.feeder``) after ``time_s``
    carries API at ``potency`` (fraction of the labelled strength); the line's model does not
    know it, the PAT sees it."""

    mode: Literal["oos_raw_material_lot"]
    time_s: NonNegativeFloat
    target: Annotated[str, Field(min_length=1)]
    potency: Annotated[float, Field(gt=0, allow_inf_nan=False)]

    @field_validator("potency")
    @classmethod
    def _off(cls, v: float) -> float:
        if v == 1.0:
            raise PydanticCustomError("potency", "potency 1 is not out of spec")
        return v


class SupervisorOutageFault(_FaultBase):
    """The controller is offline (target ``controller``): no events, no commands."""

    mode: Literal["supervisor_outage"]


class CommandLatencyFault(_FaultBase):
    """Commands decided in the window apply ``extra_latency_s`` later than usual."""

    mode: Literal["command_latency"]
    extra_latency_s: PositiveFloat


class CommandLossFault(_FaultBase):
    """Each command applied in the window is lost with ``probability`` (random stream
    ``faults.<index>.command_loss``)."""

    mode: Literal["command_loss"]
    probability: Annotated[float, Field(gt=0, le=1)]


Fault = Annotated[
    Union[BreakdownFault, RobotStallFault, BatteryFadeFault, ChargerOutageFault,
          SensorDropoutFault, SensorDriftFault, FeederRefillFailureFault, OosLotFault,
          SupervisorOutageFault, CommandLatencyFault, CommandLossFault],
    Field(discriminator="mode"),
]
FAULT_MODES = ("breakdown", "robot_stall", "battery_fade", "charger_outage", "sensor_dropout",
               "sensor_drift", "feeder_refill_failure", "oos_raw_material_lot",
               "supervisor_outage", "command_latency", "command_loss")
