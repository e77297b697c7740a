"""Output of a continuous line: units of accepted tablets (totes) with their raw-material
genealogy, and batches (ICH Q13: by run time or by accepted mass)."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field

from .release import BatchRelease

__all__ = ["LineOutput"]

SUSPENDED = "Suspended"


@dataclass
class _Batch:
    id: str
    start_s: float
    accepted_kg: float = 0.0  # routed to accepted, QC samples included
    qc_kg: float = 0.0
    units: int = 0


@dataclass
class _Quality:
    """API content of each unit of accepted tablets (a composite assay: API mass / mass over
    the unit's interval, relative to label claim) and diverted mass by cause."""

    n: int = 0
    sum_c: float = 0.0
    sum_c2: float = 0.0
    by_cause: dict[str, float] = field(default_factory=dict)


class LineOutput:
    """Mixin of :class:`~darkfab.agents.line.ContinuousLine`: units and batches."""

    release: BatchRelease | None = None  # per-batch CU test, decision, record (set_release)

    def set_release(self, release: BatchRelease) -> None:
        """Decide on each batch at its close (:mod:`.release`); before the run."""
        self.release = release

    def _emit_units(self, now: float) -> None:
        """Put out every unit that is ready: the part-filled tote closed at a batch end first,
        then each full unit of accepted tablets (``tablets_per_unit`` + the QC sample)."""
        full = self.unit_kg + self.qc_kg
        while not self._blocked:
            if self._closed_units:
                unit = self._closed_units.popleft()
            elif self._pending_kg >= full:
                unit = self._make_unit(now, full)
            else:
                return
            if not self.emit.try_put(unit):
                ev = self.emit.put(unit)
                if not ev.triggered:
                    # the output is full: the line is blocked until the unit goes in
                    self._blocked = True
                    if self.running:
                        self._stop(now, SUSPENDED, "blocked")
                    ev.callbacks.append(self._unblocked)
                    return

    def _make_unit(self, now: float, take_kg: float):
        """A unit of the ``take_kg`` of accepted material longest pending (its QC sample
        included, in proportion): genealogy, quality records and the ``create`` row now."""
        m = self.model
        a, b = self._pending_from, self._routed
        fractions = self.lot_fractions(max(a, self.lots.valid_from), b)
        unit = m.material.new_unit(self.product, self.batch.id, a)
        c = self._pending_api_kg / self._pending_kg / self.api_share
        self.q.n += 1
        self.q.sum_c += c
        self.q.sum_c2 += c * c
        full = self.unit_kg + self.qc_kg
        qc = self.qc_kg if take_kg == full else self.qc_kg * take_kg / full
        mass = take_kg - qc
        share = take_kg / self._pending_kg
        self._pending_api_kg *= 1.0 - share
        self._pending_kg -= take_kg
        self.qc_samples_kg += qc
        self.batch.qc_kg += qc
        self._pending_from = b
        self.units_out += 1
        self.batch.units += 1
        m.units_entered(now, 1)
        lots = sorted(((str(lot), frac) for lot, frac in fractions.items()),
                      key=lambda kv: kv[0])
        if lots:
            n = len(lots)
            m.genealogy.extend([now] * n, [unit.id] * n, [self.product] * n, [-1] * n,
                               [lot for lot, _ in lots], [self.name] * n,
                               [frac * mass for _, frac in lots], [frac for _, frac in lots])
        if self.release is not None:
            self.release.add_unit(fractions, mass)
        self.tablets_in_units += self._ipc(now, unit.id, a, b, mass, c)
        for fn in self.unit_listeners:  # quality records (darkfab.agents.quality)
            fn(self, unit, fractions, c)
        m.log.record(now, "create", self.name, unit.id, self.product, self.emit.name,
                     self.batch.id)
        return unit

    def _unblocked(self, _ev) -> None:
        self._blocked = False
        self._maybe_restart(self.env.now, "unblocked")
        self._kick()

    def lot_fractions(self, a: float, b: float) -> dict[Hashable, float]:
        """Mass fraction of each raw-material lot in the output leaving in [a, b] (s), for
        times within the retained history (the last ``control_interval_s`` + margins; a unit's
        lots are written to genealogy.parquet when it is made)."""
        if b <= a:
            return {}
        w0 = self._clock()
        fr = self.engine.lot_fractions(a, b)
        self._clocked(w0)
        return fr

    def _close_batch(self, now: float) -> None:
        """End the batch (ICH Q13: by run time or accepted mass) at the material routed so far:
        its part-filled unit is closed and put out with it, so no unit holds material of two
        batches; less than one tablet left is diverted (cause ``batch-end``)."""
        b = self.batch
        partial = 0
        if self._pending_kg >= self.tablet.weight_kg:
            self._closed_units.append(self._make_unit(now, self._pending_kg))
            self.partial_units += 1
            partial = 1
        elif self._pending_kg > 0:
            left = self._pending_kg
            self.accepted_kg -= left
            self.api_accepted_kg -= self._pending_api_kg
            b.accepted_kg -= left
            self.q.by_cause["batch-end"] = self.q.by_cause.get("batch-end", 0.0) + left
        self._pending_kg = self._pending_api_kg = 0.0
        self._pending_from = self._routed
        row = {"batch": b.id, "start_s": b.start_s, "end_s": now,
               "accepted_kg": b.accepted_kg - b.qc_kg, "qc_kg": b.qc_kg,
               "units": b.units, "partial_units": partial, "ipc": self._batch_uniformity()}
        if self.release is not None:
            row.update(self.release.close(now, row, self.q.by_cause, {"ipc": row["ipc"]}))
            self.model.log.record(now, "batch_release", self.name, -1, "", self.node,
                                  f"{b.id}: {row['decision']}")
        self.batches.append(row)
        self.model.log.record(now, "batch", self.name, -1, "", self.node,
                              f"{b.id}: {b.accepted_kg:.3f} kg, {b.units} units"
                              + (" (the last part-filled)" if partial else ""))
        self.batch = _Batch(self.model.material.new_lot(f"{self.name}-batch"), now)
