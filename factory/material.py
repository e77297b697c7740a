"""Discrete material: units, lots and containers with ids and genealogy.

A *unit* is one countable item (a tote, a blister stack, a shipper case). A *lot* groups units
released together by a source (ISA-95 material lot). A *container* is a unit that holds other
units (a case holding bundles). Whenever equipment transforms inputs into new outputs, the
:class:`MaterialFactory` records genealogy edges (child ← parent) through a callback.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

__all__ = ["Unit", "Container", "MaterialFactory", "LotCounter"]


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


class LotCounter:
    """Units of *watched* lots still in the plant, to know when a lot is done.

    A lot is watched from :meth:`watch` on; every unit created for it, made from it by a
    transformation (children take the first parent's lot, :meth:`MaterialFactory.transform`),
    consumed, completed or scrapped moves its count. When the count of a lot that is
    :meth:`close`-d (no more units will be created for it) reaches zero, the lot's
    ``on_done(lot, now, good, scrapped)`` is called once with its units that left as good
    product and as scrap, and the lot is forgotten. An unwatched lot costs one dictionary
    lookup."""

    __slots__ = ("_live", "_closed")

    def __init__(self) -> None:
        # lot -> [in the plant, left good, scrapped, on_done]
        self._live: dict[str, list] = {}
        self._closed: set[str] = set()

    def watch(self, lot: str, on_done: Callable[[str, float, int, int], None]) -> None:
        self._live.setdefault(lot, [0, 0, 0, on_done])

    def live(self, lot: str) -> int:
        """Units of ``lot`` in the plant now (0 for a lot not watched)."""
        c = self._live.get(lot)
        return 0 if c is None else c[0]

    def entered(self, lot: str, n: int) -> None:
        """``n`` new units of ``lot`` entered the plant."""
        c = self._live.get(lot)
        if c is not None:
            c[0] += n

    def left(self, lot: str, now: float, good: bool | None) -> None:
        """A unit of ``lot`` left the plant at ``now``: completed (``good``), scrapped
        (``False``) or consumed as raw material (``None``)."""
        c = self._live.get(lot)
        if c is not None:
            c[0] -= 1
            if good is not None:
                c[1 if good else 2] += 1
            if c[0] <= 0 and lot in self._closed:
                self._done(lot, now)

    def transformed(self, parents: Sequence[Unit], children: Sequence[Unit],
                    now: float) -> None:
        live = self._live
        for p in parents:
            c = live.get(p.lot)
            if c is not None:
                c[0] -= 1
        for ch in children:
            c = live.get(ch.lot)
            if c is not None:
                c[0] += 1
        for lot in {p.lot for p in parents}:
            c = live.get(lot)
            if c is not None and c[0] <= 0 and lot in self._closed:
                self._done(lot, now)

    def close(self, lot: str, now: float) -> None:
        """No more units will be created for ``lot``."""
        c = self._live.get(lot)
        if c is not None:
            self._closed.add(lot)
            if c[0] <= 0:
                self._done(lot, now)

    def _done(self, lot: str, now: float) -> None:
        _, good, scrapped, on_done = self._live.pop(lot)
        self._closed.discard(lot)
        on_done(lot, now, good, scrapped)
