"""Feeder logistics of a continuous line: hopper events (low, empty, refill done), refill
containers taken from the docks and emptied into the hoppers, refill failures (a fault), and
the restart once every hopper has material again."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .line import FeederStation

__all__ = ["FeederLogistics"]

SUSPENDED = "Suspended"


class FeederLogistics:
    """Mixin of :class:`~darkfab.agents.line.ContinuousLine`: feeder events and refills."""

    def _feeder_events(self, now: float) -> None:
        for st in self.stations:
            f = st.feeder
            if (st.held_unit is not None and not st.refill_blocked) or (
                    st._get is not None and st._get.triggered) or (
                    st._next is not None and st._next[0] <= now + 1e-9):
                w0 = self._clock()
                f.advance_state(now)  # its event is due: the hopper now
                self._clocked(w0)
            if st.held_unit is not None and not st.refill_blocked:  # a refill failure cleared
                unit, st.held_unit = st.held_unit, None
                self._refill(st, unit, now)
            if st._get is not None and st._get.triggered:  # a container arrived
                unit = st._get.value
                st._get = None
                self._refill(st, unit, now)
            if st._next is None or st._next[0] > now + 1e-9:
                continue
            kind = st._next[1]
            st._next = None
            if kind == "low" and st._get is None and f.mode == "gravimetric":
                st.waiting_since = now
                self.model.log.record(now, "hopper_low", st.name, -1, "", self.node,
                                      f"{f.mass_kg:.3f} kg")
                ev = st.refill_dock.get()
                if ev.triggered:
                    st._get = None
                    self._refill(st, ev.value, now)
                else:
                    st._get = ev
                    ev.callbacks.append(self._kick)
            elif kind == "refill_done":
                self._refill_windows.append((st.refill_from if st.refill_from is not None
                                             else now, now))
                st.refill_from = None
                # older refills can no longer explain a deviation (_cause): keep the deque short
                while self._refill_windows[0][1] < self._scanned - 2 * self.rtd.tail_s:
                    self._refill_windows.popleft()
                self.model.log.record(now, "refill_done", st.name, -1, "", self.node,
                                      f"{f.mass_kg:.3f} kg")
                if self.calibration_log is not None:  # sensor data for calibration
                    self.calibration_log.feeders(now, "refill_done", st.name)
            elif kind == "empty" or f.mode == "starved":
                self._alarm(now, st.name, "hopper_empty", f"{st.name} hopper empty: the line "
                            "is Suspended", "high")
                if self.running:
                    self._stop(now, SUSPENDED, f"{st.name} empty")
        self._maybe_restart(now, "refilled")

    def _maybe_restart(self, now: float, why: str) -> None:
        if (not self.running and self._repair_until == math.inf and not self._blocked
                and all(st.feeder.mode != "starved" for st in self.stations)
                and not self._commanded_out()):
            self._restart(now, why)

    def _refill(self, st: FeederStation, unit, now: float) -> None:
        if st.refill_blocked:  # the refill fails: the container waits at the feeder
            st.held_unit = unit
            st._next = None
            self._alarm(now, st.name, "refill_failed", f"refill of {st.name} failed: "
                        f"container {unit.id} waits at the feeder", "high")
            self._notify("alarm", f"{st.name}: refill_failed")
            return
        potency = self.next_potency.pop(st.name, None)
        k = self.stations.index(st)
        if potency is not None:
            self.lot_potency[unit.lot] = potency
            self._notify("oos_lot", str(unit.lot))
        else:  # the lot's own potency (plant-model mismatch, docs/twin.md)
            self._draw_potency(k, unit.lot)
        f = st.feeder
        mass = st.container_kg(unit.product)
        if self.soft is not None:  # the control system goes volumetric on this material
            self.soft.refill_started(k, f.hopper_fractions())
        w0 = self._clock()
        f.start_refill(now, mass, st.refill_rate_kg_s, unit.lot)
        self._clocked(w0)
        st.refills += 1
        st.delivered_kg += mass
        self._alarm_clear(now, st.name, "hopper_empty")
        st._next = None
        st.waiting_since = None
        st.refill_from = now
        self._reproject = True
        m = self.model
        m.log.record(now, "refill", st.name, unit.id, unit.product, self.node, unit.lot)
        if self.calibration_log is not None:  # sensor data for calibration
            self.calibration_log.feeders(now, "refill", st.name)
        m.unit_consumed(now, unit)
