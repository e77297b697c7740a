"""Controllers by name: the built-ins, entry points, and ``module:Class`` for user code.

A scenario's ``[controller] name`` is looked up here: first the registered names
(:data:`CONTROLLERS`), then ``module:Class`` (imported with the working directory on the
module path, like ``python -m``), then the ``darkfab.controllers`` entry-point group of installed
packages. ``params`` are passed to the class as keyword arguments.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import Any

from .baseline import DoNothing
from .cautious import CautiousSupervisor
from .policy import Controller
from .supervisor import AutoRecoverySupervisor

__all__ = ["CONTROLLERS", "DEFAULT_CONTROLLER", "ControllerSpecError", "register",
           "resolve_controller", "make_controller", "controller_problems"]

CONTROLLERS: dict[str, type] = {
    c.name: c for c in (AutoRecoverySupervisor, CautiousSupervisor, DoNothing)}
"""Registered controller classes by name."""

DEFAULT_CONTROLLER = AutoRecoverySupervisor.name
ENTRY_POINT_GROUP = "darkfab.controllers"


class ControllerSpecError(ValueError):
    """A controller name that cannot be resolved, or parameters it does not take."""


def register(name: str):
    """Class decorator: register a controller under ``name``."""
    def deco(cls: type) -> type:
        CONTROLLERS[name] = cls
        return cls
    return deco


@contextlib.contextmanager
def _cwd_on_path():
    cwd = os.getcwd()
    added = cwd not in sys.path and "" not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        yield
    finally:
        if added:
            with contextlib.suppress(ValueError):
                sys.path.remove(cwd)


def resolve_controller(name: str) -> type:
    """The controller class for a registered name, ``module:Class`` or an entry point."""
    if name in CONTROLLERS:
        return CONTROLLERS[name]
    if ":" in name:
        module, _, attr = name.partition(":")
        try:
            with _cwd_on_path():
                obj: Any = importlib.import_module(module)
        except Exception as e:  # noqa: BLE001 - any import failure is a scenario error
            raise ControllerSpecError(f"cannot import module {module!r} of controller {name!r}: "
                                      f"{type(e).__name__}: {e}") from None
        for part in attr.split("."):
            if not hasattr(obj, part):
                raise ControllerSpecError(f"module {module!r} has no {attr!r}")
            obj = getattr(obj, part)
        if not isinstance(obj, type) or not issubclass(obj, Controller):
            raise ControllerSpecError(f"{name!r} is not a Controller class (it needs reset(info) "
                                      "and decide(events, observation) methods)")
        return obj
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            return ep.load()
    raise ControllerSpecError(f"unknown controller {name!r}; known: "
                              + ", ".join(sorted(CONTROLLERS))
                              + ", or module:Class for your own")


def make_controller(name: str = DEFAULT_CONTROLLER,
                    params: Mapping[str, Any] | None = None) -> Controller:
    """An instance of controller ``name`` with ``params``."""
    cls = resolve_controller(name)
    try:
        obj = cls(**dict(params or {}))
    except TypeError as e:
        raise ControllerSpecError(f"bad parameters for controller {name!r}: {e}") from None
    if not isinstance(obj, Controller):
        raise ControllerSpecError(f"{name!r} is not a Controller (it needs reset(info) and "
                                  "decide(events, observation) methods)")
    return obj


def controller_problems(name: str, params: Mapping[str, Any] | None = None) -> list[str]:
    """Messages for a controller that cannot be built (empty when it can)."""
    try:
        make_controller(name, params)
    except ControllerSpecError as e:
        return [str(e)]
    except Exception as e:  # noqa: BLE001 - a constructor that raises: still a scenario error
        return [f"controller {name!r} failed to construct: {type(e).__name__}: {e}"]
    return []
