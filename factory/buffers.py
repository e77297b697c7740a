"""Finite (or unbounded) FIFO buffers with blocking, built on SimPy's ``Store`` hooks.

A full buffer blocks the ``put`` of its upstream equipment (blocking after service); an empty one
starves the ``get`` of its downstream equipment. The level is reported to a listener after every
change so the time-average contents can be accumulated without storing history.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable

import simpy

__all__ = ["Buffer"]


class Buffer(simpy.Store):
    """A named FIFO store at a plant node; ``capacity_units`` of ``None`` means unbounded."""

    def __init__(self, env: simpy.Environment, name: str, node: str,
                 capacity_units: int | None = None,
                 on_level: Callable[[float, int], None] | None = None) -> None:
        super().__init__(env, capacity=math.inf if capacity_units is None else capacity_units)
        self.items: deque = deque()  # O(1) pop from the front
        self.name = name
        self.node = node
        self._on_level = on_level
        self.reserved = 0  # places promised to units in transit to this buffer

    @property
    def level(self) -> int:
        return len(self.items)

    @property
    def free(self) -> float:
        """Places neither filled nor promised to a unit in transit."""
        return self._capacity - len(self.items) - self.reserved

    def _do_put(self, event):  # type: ignore[override]
        if len(self.items) + self.reserved < self._capacity or getattr(event, "reserved", False):
            self.items.append(event.item)
            event.succeed()
            if self._on_level is not None:
                self._on_level(self._env.now, len(self.items))
        return None

    def _do_get(self, event):  # type: ignore[override]
        if self.items:
            event.succeed(self.items.popleft())
            if self._on_level is not None:
                self._on_level(self._env.now, len(self.items))
        return None
