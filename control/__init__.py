"""Supervisory decisions. The plant is commanded only through PackML commands on equipment."""

from .supervisor import CONTROLLERS, AutoRecoverySupervisor, make_controller

__all__ = ["CONTROLLERS", "AutoRecoverySupervisor", "make_controller"]
