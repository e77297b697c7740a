"""Controllers by name: the built-ins, entry points, and ``module:Class`` for user code.

A scenario's ``[controller] name`` is looked up here: first the registered names
(:data:`CONTROLLERS`), then ``module:Class`` (imported with the working directory on the
module path, like ``python -m``), then the ``darkfab.controllers`` entry-point group of installed
packages. ``params`` are passed to the class as keyword arguments.

Code only by consent: a scenario file is data, and a shared one must not run code. A
``module:Class`` name is imported only when the caller allows it (``allow_code=True``: the
command line named it with ``--controller`` or opted in with ``--allow-code``); otherwise
:class:`ControllerCodeNotAllowed`. :func:`controller_problems` (scenario validation) checks
such a name's syntax and never imports it. Registered names and entry points (installed
packages) are always allowed.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import re
import sys
from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import Any

from .baseline import DoNothing
from .cautious import CautiousSupervisor
from .policy import Controller
from .supervisor import AutoRecoverySupervisor

__all__ = ["CONTROLLERS", "DEFAULT_CONTROLLER", "ControllerSpecError", "ControllerCodeNotAllowed",
           "register", "resolve_controller", "make_controller", "controller_problems",
           "is_code_reference", "controller_reference"]

CONTROLLERS: dict[str, type] = {
    c.name: c for c in (AutoRecoverySupervisor, CautiousSupervisor, DoNothing)}
"""Registered controller classes by name."""

DEFAULT_CONTROLLER = AutoRecoverySupervisor.name
ENTRY_POINT_GROUP = "darkfab.controllers"


class ControllerSpecError(ValueError):
    """A controller name that cannot be resolved, or parameters it does not take."""


class ControllerCodeNotAllowed(ControllerSpecError):
    """A ``module:Class`` controller that the caller has not allowed to import."""


_DOTTED = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
_CODE_REF = re.compile(rf"({_DOTTED}):({_DOTTED})")


def is_code_reference(name: str) -> bool:
    """Whether ``name`` names user code (``module:Class``) rather than a registered controller
    or an entry point."""
    return name not in CONTROLLERS and ":" in name


def controller_reference(cls: type) -> str:
    """``module:Class`` of a controller class (its name in a resolved scenario)."""
    return f"{cls.__module__}:{cls.__qualname__}"


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


def resolve_controller(name: str, allow_code: bool = False) -> type:
    """The controller class for a registered name, ``module:Class`` (imported only with
    ``allow_code``) or an entry point."""
    if name in CONTROLLERS:
        return CONTROLLERS[name]
    if ":" in name:
        if not _CODE_REF.fullmatch(name):
            raise ControllerSpecError(_syntax_message(name))
        if not allow_code:
            raise ControllerCodeNotAllowed(
                f"controller {name!r} is code from the scenario; run it only if you trust it: "
                f"--controller {name} or --allow-code (Python: allow_code=True, or pass the "
                "class itself)")
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


def make_controller(name: str | type = DEFAULT_CONTROLLER,
                    params: Mapping[str, Any] | None = None, *,
                    allow_code: bool = False) -> Controller:
    """An instance of controller ``name`` (or of the class itself) with ``params``;
    ``allow_code``: import a ``module:Class`` name (module doc)."""
    cls = name if isinstance(name, type) else resolve_controller(name, allow_code)
    try:
        obj = cls(**dict(params or {}))
    except TypeError as e:
        raise ControllerSpecError(f"bad parameters for controller {name!r}: {e}") from None
    if not isinstance(obj, Controller):
        raise ControllerSpecError(f"{name!r} is not a Controller (it needs reset(info) and "
                                  "decide(events, observation) methods)")
    return obj


def _syntax_message(name: str) -> str:
    return (f"controller {name!r} is neither a registered controller ("
            + ", ".join(sorted(CONTROLLERS)) + ") nor module:Class (dotted Python names)")


def controller_problems(name: str, params: Mapping[str, Any] | None = None) -> list[str]:
    """Messages for a controller that cannot be built (empty when it can). A ``module:Class``
    name is checked for its syntax only: validation never imports user code."""
    if is_code_reference(name):
        return [] if _CODE_REF.fullmatch(name) else [_syntax_message(name)]
    try:
        make_controller(name, params)
    except ControllerSpecError as e:
        return [str(e)]
    except Exception as e:  # noqa: BLE001 - a constructor that raises: still a scenario error
        return [f"controller {name!r} failed to construct: {type(e).__name__}: {e}"]
    return []
