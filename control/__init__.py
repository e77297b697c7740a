"""Supervisory decisions. The plant is commanded only through typed commands (mostly PackML
commands on equipment); controllers see it through frozen observations (policy API:
:mod:`.policy`, :mod:`.observation`, :mod:`.commands`; registry: :mod:`.registry`)."""

from .baseline import DoNothing
from .cautious import CautiousSupervisor
from .commands import (COMMAND_TYPES, Acknowledge, ChangeMode, Charge, Dispatch, Divert, Maintenance,
                       PackMLCommand, PlantCommand, Quarantine, Release, Sequence, SetPoint,
                       TransportRequest, WakeUp)
from .observation import (EVENT_KINDS, AlarmObs, BufferObs, EquipmentInfo, EquipmentObs, Event,
                          FeederInfo, FeederObs, LineObs, LotObs, LotView, Observation,
                          OrderBookInfo, OrderObs, PlantInfo, QualityObs, RobotObs)
from .policy import Controller, ControllerFault
from .registry import (CONTROLLERS, DEFAULT_CONTROLLER, ControllerCodeNotAllowed,
                       ControllerSpecError, controller_problems, controller_reference,
                       is_code_reference, make_controller, register, resolve_controller)
from .supervisor import AutoRecoverySupervisor

__all__ = [
    "Controller", "ControllerFault", "CONTROLLERS", "DEFAULT_CONTROLLER", "ControllerSpecError",
    "register", "resolve_controller", "make_controller", "controller_problems",
    "ControllerCodeNotAllowed", "is_code_reference", "controller_reference",
    "AutoRecoverySupervisor", "CautiousSupervisor", "DoNothing",
    "Event", "EVENT_KINDS", "LineObs", "Observation", "EquipmentObs", "BufferObs", "RobotObs", "QualityObs",
    "PlantInfo", "EquipmentInfo", "OrderObs", "OrderBookInfo", "FeederObs", "FeederInfo",
    "LotObs", "LotView", "AlarmObs", "Acknowledge",
    "PlantCommand", "COMMAND_TYPES", "PackMLCommand", "ChangeMode", "Dispatch", "Sequence",
    "TransportRequest", "Charge", "Maintenance", "Divert", "Quarantine", "Release", "SetPoint",
    "WakeUp",
]
