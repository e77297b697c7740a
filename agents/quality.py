"""The plant's quality system: lot records of continuous lines, suspects, and lot disposition.

*Records* (an MES / LIMS): every unit a continuous line makes joins its output lot (the line's
batch, ICH Q13) with the raw-material lots in it (its genealogy rows, mass fractions), the unit's
API content as the line's model predicts it (the mean over its accepted material; the model is
blind to a lot's potency) and the at-line QC assay of its sample, a content-uniformity test
modelled as exact: the unit fails when any part of its accepted material is out of spec (the
line's independent audit of accepted material, attributed to the unit made from it) or its
predicted mean is.

*Suspects*: a raw-material lot becomes suspect when ``SUSPECT_AFTER_READINGS`` PAT readings in a
row are out of spec by more than ``SUSPECT_NOISE_SDS`` standard deviations of the sensor's noise
while the line's model does not explain it (the gate was not diverting for a
model-predicted cause: refill, start-up, stop, disturbance) — every lot at the sensor at that time
with a mass fraction of at least ``SUSPECT_MIN_FRACTION`` — or when a unit containing it fails its
assay. Each suspect is logged (kind ``quality``) and posted once to the listeners (the control
loop turns it into a ``quality`` event for the controller).

*Disposition* (:class:`Containment`): ``quarantine`` / ``release`` / ``divert`` of a lot. A unit
belongs to a lot through its own ``lot`` (transforms keep their first parent's lot) and, for a
container, through the lots of its contents. Units of a quarantined lot reaching a product sink
are held there (kind ``quarantine``; still work in process) until the lot is released (then
``complete``, at that time) or diverted (``scrap``, detail ``divert: <reason>``); units of a
diverted lot are scrapped on arrival.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Mapping
from typing import Any

from darkfab.factory.material import Container, Unit
from darkfab.factory.pat import Readings

__all__ = ["QualityRecords", "LotRecord", "Containment", "lots_of",
           "SUSPECT_AFTER_READINGS", "SUSPECT_NOISE_SDS", "SUSPECT_MIN_FRACTION"]

SUSPECT_AFTER_READINGS = 2
"""Unexplained out-of-spec PAT readings in a row that make the lots at the sensor suspect."""
SUSPECT_NOISE_SDS = 2.0
"""How far out of spec (in sensor-noise standard deviations) a reading must be to count: true
content near a limit plus noise alarms a few times a day and is no evidence against a lot."""
SUSPECT_MIN_FRACTION = 1e-3
"""Lots below this mass fraction at the sensor (an RTD tail) are not suspected."""

Listener = Callable[[str, str, str], None]  # fn(kind, source, detail)


class LotRecord:
    """What the quality system knows of one output lot (see :class:`~darkfab.control.LotObs`)."""

    __slots__ = ("lot", "line", "units", "mass_kg", "raw_kg", "peak", "last_seen", "latest",
                 "assayed", "out_of_spec", "cmin", "cmax", "oos_kg")

    def __init__(self, lot: str, line: str) -> None:
        self.lot, self.line = lot, line
        self.units = 0
        self.mass_kg = 0.0
        self.raw_kg: dict[str, float] = {}
        self.peak: dict[str, float] = {}
        self.last_seen: dict[str, float] = {}
        self.latest: dict[str, float] = {}  # raw lot -> fraction in the latest unit
        self.assayed = self.out_of_spec = 0
        self.cmin, self.cmax = math.inf, -math.inf
        self.oos_kg = 0.0  # accepted material of its units found out of spec by the audit


def lots_of(unit: Unit) -> tuple[str, ...]:
    """The lots a unit belongs to: its own and, for a container, its contents' (recursively)."""
    if not isinstance(unit, Container) or not unit.contents:
        return (unit.lot,)
    out = {unit.lot: None}
    for u in unit.contents:
        out.update(dict.fromkeys(lots_of(u)))
    return tuple(out)


class QualityRecords:
    """Lot records and suspects of a plant's continuous lines (module docstring)."""

    def __init__(self, model, lines: Mapping[str, Any]) -> None:
        self.model = model
        self.lines = dict(lines)
        self.lots: dict[str, LotRecord] = {}
        self.by_raw: dict[str, dict[str, float]] = {}  # raw lot -> {output lot: peak fraction}
        self.last_seen: dict[str, float] = {}  # raw lot -> latest unit time
        self.suspects: dict[str, float] = {}  # raw lot -> when it became suspect
        self.listeners: list[Listener] = []
        self.containment: Containment | None = None
        self._audited: dict[str, float] = {n: 0.0 for n in self.lines}
        self._bad_in_row: dict[str, int] = {n: 0 for n in self.lines}
        for name, line in self.lines.items():
            line.unit_listeners.append(self._on_unit)
            if line.sensor is not None:
                line.sensor.listeners.append(lambda ms, _ln=line: self._on_readings(_ln, ms))

    # --- records ----------------------------------------------------------------------------
    def _on_unit(self, line, unit: Unit, fractions: Mapping[Hashable, float], c: float) -> None:
        """A unit of ``line`` made now with raw-material ``fractions``; ``c`` is the model's
        API content of it (fraction of label claim)."""
        now = line.env.now
        lot = str(unit.lot)
        rec = self.lots.get(lot)
        if rec is None:
            rec = self.lots[lot] = LotRecord(lot, line.name)
        kg = line.unit_kg
        rec.units += 1
        rec.mass_kg += kg
        rec.latest = {str(raw): x for raw, x in fractions.items()}
        for raw, x in fractions.items():
            r = str(raw)
            rec.raw_kg[r] = rec.raw_kg.get(r, 0.0) + x * kg
            if x > rec.peak.get(r, -1.0):
                rec.peak[r] = x
                self.by_raw.setdefault(r, {})[lot] = x
            rec.last_seen[r] = now
            self.last_seen[r] = now
        oos = line.released_oos_kg - self._audited[line.name]
        self._audited[line.name] = line.released_oos_kg
        q = line.quality_spec
        bad = not q.spec_low - 1e-9 <= c <= q.spec_high + 1e-9 or oos > 0
        rec.assayed += 1
        rec.cmin, rec.cmax = min(rec.cmin, c), max(rec.cmax, c)
        rec.oos_kg += oos
        for fn in self.listeners:
            fn("lot", lot, line.name)
        if bad:
            rec.out_of_spec += 1
            self.model.log.record(now, "assay", line.name, unit.id, unit.product, lot,
                                  f"out of spec: {oos:.4g} kg of its accepted material "
                                  f"(predicted mean {100 * c:.2f} %)")
            for raw, x in sorted(fractions.items(), key=lambda kv: str(kv[0])):
                if x >= SUSPECT_MIN_FRACTION:
                    self._suspect(line, str(raw), f"assay of unit {unit.id} out of spec")

    def disposition(self, lot: str) -> str:
        c = self.containment
        return c.disposition(lot) if c is not None else "open"

    def known(self, lot: str) -> bool:
        """An output lot of a line (made or being made)."""
        return lot in self.lots or any(ln.batch.id == lot for ln in self.lines.values())

    # --- suspects ---------------------------------------------------------------------------
    def _on_readings(self, line, readings: Readings) -> None:
        q = line.quality_spec
        period = line.sensor.p.period_s
        band = SUSPECT_NOISE_SDS * line.sensor.p.noise_sd
        n, vmin, vmax = readings.taken_range()
        if not n or (-math.inf < vmin and vmax < math.inf
                     and q.spec_low - band <= vmin and vmax <= q.spec_high + band):
            # the usual batch: every reading taken is a number within the band (then of a
            # finite true value), which only ends a run of readings out of spec
            if n:
                self._bad_in_row[line.name] = 0
            return
        for m in readings:
            if m.value is None or not math.isfinite(m.true_value):
                continue
            if q.spec_low - band <= m.value <= q.spec_high + band:
                self._bad_in_row[line.name] = 0
                continue
            t = m.sample_time_s
            if any(a <= t <= b and cause != "pat" for a, b, cause in line.gate.windows):
                # the model explains it (a refill, start-up, stop or feed disturbance)
                self._bad_in_row[line.name] = 0
                continue
            self._bad_in_row[line.name] += 1
            if self._bad_in_row[line.name] < SUSPECT_AFTER_READINGS:
                continue
            a = max(t - period, line.lots.valid_from)
            if t <= a:
                continue
            for raw, x in sorted(line.lot_fractions(a, t).items(), key=lambda kv: str(kv[0])):
                if x >= SUSPECT_MIN_FRACTION:
                    self._suspect(line, str(raw), f"PAT {100 * m.value:.2f} % at "
                                  f"{t:.1f} s ({self._bad_in_row[line.name]} readings out of "
                                  "spec)")

    def _suspect(self, line, raw: str, why: str) -> None:
        if raw in self.suspects:
            return
        now = line.env.now
        self.suspects[raw] = now
        self.model.log.record(now, "quality", line.name, -1, "", line.node,
                              f"suspect {raw}: {why}")
        for fn in self.listeners:
            fn("quality", line.name, raw)

    # --- results ----------------------------------------------------------------------------
    def contained_oos_kg(self) -> dict[str, float]:
        """Per line: audited out-of-spec mass in lots diverted or still quarantined (not
        released product)."""
        c = self.containment
        out = {n: 0.0 for n in self.lines}
        if c is None:
            return out
        for lot, r in self.lots.items():
            if r.oos_kg > 0 and (lot in c.diverted or lot in c.quarantined):
                out[r.line] += r.oos_kg
        return out


def _nothing() -> None:
    pass


class Containment:
    """Lot disposition at the plant's product sinks (module docstring)."""

    def __init__(self, model, sinks: Mapping[str, Any], sources: Mapping[str, Any],
                 records: QualityRecords | None) -> None:
        self.model = model
        self.sinks = {n: s for n, s in sinks.items() if s.good}
        self.sources = set(sources)
        self.records = records
        if records is not None:
            records.containment = self
        self.quarantined: dict[str, float] = {}  # lot -> since
        self.diverted: dict[str, str] = {}  # lot -> reason
        self.released: set[str] = set()
        self._held: dict[int, tuple[Unit, Any, str, tuple[str, ...]]] = {}  # unit id -> ...
        self._held_by_lot: dict[str, set[int]] = {}
        self.quarantines = 0
        self._ever_quarantined: set[str] = set()
        self.units_quarantined = self.units_released = self.units_diverted = 0
        self._attached = False

    def disposition(self, lot: str) -> str:
        if lot in self.diverted:
            return "diverted"
        if lot in self.quarantined:
            return "quarantined"
        return "released" if lot in self.released else "open"

    def known(self, lot: str) -> bool:
        """A lot of this plant: an output lot of a continuous line, or a source's lot
        (``<source>-<number>`` with a number already issued)."""
        if self.records is not None and self.records.known(lot):
            return True
        prefix, _, num = lot.rpartition("-")
        return prefix in self.sources and num.isdigit() and \
            0 < int(num) < self.model.material._next_lot

    def _attach(self) -> None:
        if not self._attached:
            self._attached = True
            for s in self.sinks.values():
                s.hold = self._on_arrival

    # --- commands (validated here; ``None`` = applied, else the reason for rejecting;
    # ``accepted()`` is called once valid, before the held units are completed or scrapped) ---
    def quarantine(self, lot: str, reason: str, accepted=_nothing) -> str | None:
        if not self.known(lot):
            return f"unknown lot {lot!r}"
        if lot in self.diverted:
            return f"lot {lot} is diverted"
        if lot in self.quarantined:
            return f"lot {lot} is already quarantined"
        accepted()
        self._attach()
        self.quarantined[lot] = self.model.env.now
        self.quarantines += 1
        self._ever_quarantined.add(lot)
        return None

    def release(self, lot: str, reason: str, accepted=_nothing) -> str | None:
        if not self.known(lot):
            return f"unknown lot {lot!r}"
        if lot not in self.quarantined:
            return f"lot {lot} is not quarantined"
        accepted()
        del self.quarantined[lot]
        self.released.add(lot)
        now = self.model.env.now
        for uid in sorted(self._held_by_lot.pop(lot, ())):
            unit, sink, origin, lots = self._held[uid]
            if any(x in self.quarantined for x in lots):
                continue  # still held for another lot in it
            del self._held[uid]
            self.units_released += 1
            sink.complete_held(now, unit, origin, f"released {lot}")
        return None

    def divert(self, lot: str, reason: str, accepted=_nothing) -> str | None:
        if not self.known(lot):
            return f"unknown lot {lot!r}"
        if lot in self.diverted:
            return f"lot {lot} is already diverted"
        accepted()
        self._attach()
        self.quarantined.pop(lot, None)
        self.diverted[lot] = reason or "diverted"
        now = self.model.env.now
        for uid in sorted(self._held_by_lot.pop(lot, ())):
            unit, sink, _origin, lots = self._held.pop(uid)
            for x in lots:
                if x != lot:
                    self._held_by_lot.get(x, set()).discard(uid)
            self.units_diverted += 1
            sink.scrap_held(now, unit, f"divert {lot}: {self.diverted[lot]}")
        return None

    # --- product sinks ----------------------------------------------------------------------
    def _on_arrival(self, sink, unit: Unit, origin: str) -> bool:
        """``True`` when the unit is held or scrapped here instead of completed."""
        lots = lots_of(unit)
        now = self.model.env.now
        for x in lots:
            if x in self.diverted:
                self.units_diverted += 1
                sink.scrap_held(now, unit, f"divert {x}: {self.diverted[x]}")
                return True
        held = [x for x in lots if x in self.quarantined]
        if not held:
            return False
        self._held[unit.id] = (unit, sink, origin, lots)
        for x in held:
            self._held_by_lot.setdefault(x, set()).add(unit.id)
        self.units_quarantined += 1
        self.model.log.record(now, "quarantine", sink.name, unit.id, unit.product, sink.name,
                              f"{', '.join(held)} (from {origin})")
        return True

    def summary(self) -> dict[str, Any]:
        held_lots = sorted({x for _, _, _, lots in self._held.values() for x in lots
                            if x in self.quarantined} | set(self.quarantined))
        out = {"quarantines": self.quarantines,
               "lots_quarantined": len(self._ever_quarantined),
               "lots_released": len(self.released),
               "lots_diverted": len(self.diverted),
               "lots_still_quarantined": held_lots,
               "units_quarantined": self.units_quarantined,
               "units_released": self.units_released,
               "units_diverted": self.units_diverted,
               "units_held_at_end": len(self._held)}
        if self.records is not None:
            out["suspect_raw_lots"] = len(self.records.suspects)
            out["out_of_spec_kg_contained"] = self.records.contained_oos_kg()
        return out
