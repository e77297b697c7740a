"""Discrete material: units, lots and containers with ids and genealogy.

A *unit* is one countable item (a tote, a blister stack, a shipper case). A *lot* groups units
released together by a source (ISA-95 material lot). A *container* is a unit that holds other
units (a case holding bundles). Whenever equipment transforms inputs into new outputs, the
:class:`MaterialFactory` records genealogy edges (child ← parent) through a callback.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

__all__ = ["Unit", "Container", "MaterialFactory"]


@dataclass(slots=True, eq=False)
class Unit:
    """One discrete item. ``created_s`` is the entry time of its earliest raw material, so lead
    time through transformations is measured from first entry to exit."""

    id: int
    product: str
    lot: str
    created_s: float


@dataclass(slots=True, eq=False)
class Container(Unit):
    """A unit that carries other units (its ``contents``)."""

    contents: list[Unit] = field(default_factory=list)


GenealogyHook = Callable[[float, Unit, Sequence[Unit], str], None]


class MaterialFactory:
    """Hands out unit ids and builds units; reports genealogy to ``on_genealogy``."""

    def __init__(self, on_genealogy: GenealogyHook | None = None) -> None:
        self._next_id = 1
        self._next_lot = 1
        self._on_genealogy = on_genealogy

    def new_lot(self, prefix: str) -> str:
        lot = f"{prefix}-{self._next_lot:06d}"
        self._next_lot += 1
        return lot

    def new_unit(self, product: str, lot: str, now: float) -> Unit:
        u = Unit(self._next_id, product, lot, now)
        self._next_id += 1
        return u

    def transform(self, now: float, parents: Sequence[Unit], product: str, count: int,
                  equipment: str, container: bool = False) -> list[Unit]:
        """Make ``count`` new units of ``product`` from ``parents``; each child records every
        parent in the genealogy. A container child holds the parents as its contents."""
        created = min(p.created_s for p in parents)
        lot = parents[0].lot
        out: list[Unit] = []
        for _ in range(count):
            if container:
                u: Unit = Container(self._next_id, product, lot, created, list(parents))
            else:
                u = Unit(self._next_id, product, lot, created)
            self._next_id += 1
            out.append(u)
            if self._on_genealogy is not None:
                self._on_genealogy(now, u, parents, equipment)
        return out

    @property
    def units_made(self) -> int:
        return self._next_id - 1
