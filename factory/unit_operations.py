"""The registry of a continuous line's unit operations: what a new unit needs to declare so
that the line, its supervision and the scenario schema take it with no edit of their own.

A line's material chain is fixed for its core units, feeders → blender → press → PAT → gate
(:data:`CORE_CHAIN`). A unit operation module adds a kind to it with :func:`register`:

* ``kind``: the unit's name in the line (``<line>.<kind>``) and its scenario section
  (``[continuous_lines.NAME.unit_operations.<kind>]``);
* ``after``: the kind it sits downstream of (a core kind or another registered one): its place
  in the chain, hence in the interlock (stopping it stops every unit upstream of it);
* ``spec``: its section's model (a pydantic model, frozen, ``extra="forbid"``), which the
  scenario schema validates the section against;
* ``build``: ``build(spec, line) -> agent``, called once per line that configures the section,
  before the run; the agent (:class:`UnitAgent`) gives the unit's set-points and process
  values.

The line's PackML state machine, commands, interlock chain, readings in the observation and
set-point ranges are the line's (``darkfab.agents.line.units``, ``.supervision``); the registry
only tells where the unit sits and how to make it. This module imports nothing of the
simulator, so the scenario schema can read it cheaply (``darkfab check``).

Where registrations come from: a module that calls :func:`register` when it is imported, in the
same process (the Python API), or an installed package that names it in the entry-point group
``darkfab.unit_operations`` (:data:`ENTRY_POINT_GROUP`; the entry point is the module, or a
:class:`UnitOperation` object). The group is read once, at the first look-up, so that
``darkfab run``/``check`` and the worker processes of an experiment know the unit too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Protocol

__all__ = ["CORE_CHAIN", "ENTRY_POINT_GROUP", "UnitAgent", "UnitOperation", "chain_order",
           "register", "registered", "unit_operation", "unregister"]

ENTRY_POINT_GROUP = "darkfab.unit_operations"

CORE_CHAIN = ("feeder", "blender", "press", "pat", "gate")
"""The core units in material order (the PAT and the gate sit on the press's output)."""


class UnitAgent(Protocol):
    """What the line needs of a registered unit's agent.

    ``setpoints``: name → (engineering unit, low, high) of the set-points it takes;
    ``set_point(name, value, now)``: apply one (range-checked by the line), return why it is
    refused or ``None``; ``readings(now)``: its process values, name → (value, engineering unit,
    time of the reading in s)."""

    setpoints: Mapping[str, tuple[str, float, float]]

    def set_point(self, name: str, value: float, now: float) -> str | None: ...

    def readings(self, now: float) -> dict[str, tuple[float, str, float]]: ...


@dataclass(frozen=True)
class UnitOperation:
    """A registered unit operation (module docstring)."""

    kind: str
    after: str
    spec: type
    build: Callable[[Any, Any], UnitAgent]
    doc: str = ""


_REGISTRY: dict[str, UnitOperation] = {}
_loaded = False  # the entry-point group has been read


def _load_installed() -> None:
    """Import the unit operations of installed packages (module docstring), once."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
        except Exception as e:  # noqa: BLE001 - a broken plug-in is the user's to know of
            raise ValueError(f"unit operation entry point {ep.name!r} ({ep.value}) cannot be "
                             f"loaded: {type(e).__name__}: {e}") from None
        if isinstance(obj, UnitOperation):
            register(obj)


def register(op: UnitOperation) -> UnitOperation:
    """Add ``op`` (its ``after`` must be known; a kind is registered once, or again by the
    same definition: re-imports)."""
    if op.kind in CORE_CHAIN:
        raise ValueError(f"{op.kind!r} is a core unit of the line")
    if op.after not in CORE_CHAIN and op.after not in _REGISTRY:
        raise ValueError(f"unit operation {op.kind!r}: unknown upstream unit {op.after!r}")
    old = _REGISTRY.get(op.kind)
    if old is not None and (old.after, old.spec.__qualname__) != (
            op.after, op.spec.__qualname__):
        raise ValueError(f"unit operation {op.kind!r} is registered already")
    _REGISTRY[op.kind] = op
    return op


def unregister(kind: str) -> None:
    """Remove ``kind`` (tests)."""
    _REGISTRY.pop(kind, None)


def unit_operation(kind: str) -> UnitOperation | None:
    _load_installed()
    return _REGISTRY.get(kind)


def registered() -> dict[str, UnitOperation]:
    """Every registered unit operation, by kind."""
    _load_installed()
    return dict(_REGISTRY)


def chain_order() -> dict[str, int]:
    """Kind → place in the material chain: the core chain with every registered kind right
    downstream of its ``after`` (and of the kinds registered after the same unit before it)."""
    _load_installed()
    order = list(CORE_CHAIN)
    for op in _REGISTRY.values():
        i = order.index(op.after) + 1
        while i < len(order) and order[i] in _REGISTRY and _placed_after(order[i], op.after):
            i += 1
        order.insert(i, op.kind)
    return {k: i for i, k in enumerate(order)}


def _placed_after(kind: str, anchor: str) -> bool:
    """Whether ``kind`` is downstream of ``anchor`` through registered kinds only."""
    while kind in _REGISTRY:
        kind = _REGISTRY[kind].after
        if kind == anchor:
            return True
    return False
