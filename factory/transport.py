"""Transport between stations: staging buffers at the origin and transport tasks.

When equipment (or a source) sends a unit to a buffer at another node that no conveyor joins,
the unit waits in a :class:`Staging` buffer at the origin (a full staging area blocks the
origin). Each staging area serves one destination; a robot collects up to its payload, having
first reserved that many places in the destination buffer, so a robot never waits at a drop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import simpy

from .buffers import Buffer

__all__ = ["Staging", "TransportTask", "ReservedPut"]


class Staging(Buffer):
    """Outbound area at ``origin_node`` for units bound for ``destination``."""

    def __init__(self, env: simpy.Environment, origin: str, origin_node: str,
                 destination: Buffer, capacity_units: int,
                 on_staged: Callable[["Staging"], None]) -> None:
        super().__init__(env, f"{origin}->{destination.name}", origin_node, capacity_units)
        self.origin = origin
        self.destination = destination
        self._on_staged = on_staged
        # on_request: units leave only when a controller asks (TransportRequest); ``requested``
        # is how many it asked for that no robot has been given yet
        self.on_request = False
        self.requested = 0

    def _after_put(self) -> None:  # type: ignore[override]
        """Every unit put here (by ``put`` or ``try_put``) is announced to the fleet."""
        self._on_staged(self)


class ReservedPut(simpy.resources.store.StorePut):
    """A put into a place reserved earlier (``Buffer.reserved``): it never blocks."""

    reserved = True

    def __init__(self, store: Buffer, item) -> None:
        store.reserved -= 1
        super().__init__(store, item)


@dataclass(eq=False)
class TransportTask:
    """One robot trip from a staging area to its destination buffer (times in s, -1 = not yet)."""

    id: int
    staging: Staging
    requested_s: float
    assigned_s: float = -1.0
    picked_up_s: float = -1.0
    delivered_s: float = -1.0
    robot: str = ""
    units: int = 0
    status: str = "requested"  # requested, assigned, picked_up, delivered, failed

    @property
    def pickup(self) -> str:
        return self.staging.node

    @property
    def drop(self) -> str:
        return self.staging.destination.node
