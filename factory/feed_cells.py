"""The exact integration of a loss-in-weight feeder's hopper over its noise cells
(:class:`~darkfab.factory.feeder.LossInWeightFeeder` inherits it).

In a gravimetric noise cell the feed is the set-point × (1 + ε) and the hopper falls linearly;
during a refill the screw speed is frozen and the hopper follows dM/dt = R − a·ff(M), solved in
closed form per cell (:meth:`CellIntegration._mass_after`; the equations are in
:mod:`darkfab.factory.feeder`). A level is reached at a computed time (a sum over cells, or
Brent's method within a refill cell), never by stepping. The feed of each step is taken from
the mixed hopper and recorded by the feeder (``_take``, ``_emit*``).

Gravimetric cells are summed with numpy arrays over long runs and in Python floats over the few
cells of an advance and in look-aheads (which stop at the level): the same operations in the same
order (products, sequential cumulative sum, rate = fed/(b − a)), so the same values bit for bit.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Hashable
from typing import TYPE_CHECKING

import numpy as np
from scipy import optimize

from .feed_noise import BLOCK

if TYPE_CHECKING:
    from .feed_noise import FeedNoise
    from .feeder import FeederParams

__all__ = ["CellIntegration", "SMALL_CELLS"]

SMALL_CELLS = 64  # gravimetric advances over at most this many noise cells, and look-aheads
# expected to reach their level within 4 × as many, use Python floats (0: numpy throughout)


class CellIntegration:
    """Mixin of :class:`~darkfab.factory.feeder.LossInWeightFeeder`: its state advanced over
    noise cells up to a time or a hopper level (``_run``). Uses the feeder's attributes below
    and its ``hopper_fractions``, ``_take`` and ``_emit*``."""

    p: FeederParams
    t: float
    mass_kg: float
    setpoint_kg_s: float
    mode: str
    lots: dict[Hashable, float]
    composition: int
    refilled_kg: float
    refill_log: list[list[float]]
    _noise: FeedNoise
    _refill: tuple[float, float, Hashable, float] | None
    _record: bool

    def _run(self, t_end: float, stop_level: float | None,
             stop_on_mode_change: bool = False) -> float | None:
        while self.t < t_end:
            mode0 = self.mode
            if self.mode == "starved" or (self.mode == "gravimetric" and self.setpoint_kg_s <= 0):
                self.t = t_end
                return None
            if self.mode == "gravimetric":
                hit = self._run_gravimetric(t_end, stop_level)
            else:
                hit = self._run_refill_cell(t_end, stop_level)
            if hit is not None:
                return hit
            if stop_on_mode_change and self.mode != mode0:
                return None
        return None

    def _run_gravimetric(self, t_end: float, stop_level: float | None) -> float | None:
        """Gravimetric feed from t over the noise cells up to t_end (at most ``BLOCK`` cells;
        :meth:`_run` loops), stopping where the hopper reaches ``stop_level`` or empties. The
        same arithmetic in four forms: :meth:`_run_gravimetric_array` (numpy, the reference),
        :meth:`_run_gravimetric_list` (Python floats, a few cells), :meth:`_run_gravimetric_small`
        (its usual case) and :meth:`_scan_gravimetric` (look-ahead, up to the crossing).
        ``SMALL_CELLS = 0`` selects the reference for every advance and look-ahead."""
        P = self.p.noise_period_s
        j0 = int(math.floor(self.t / P))
        j1 = min(int(math.ceil(t_end / P)), j0 + BLOCK)
        m = j1 - j0
        if 0 < m and SMALL_CELLS > 0:
            if self._record:
                if m <= SMALL_CELLS:
                    return self._run_gravimetric_small(t_end, stop_level, P, j0, j1)
            else:
                floor = stop_level if (stop_level is not None
                                       and 0.0 < stop_level < self.mass_kg) else 0.0
                # the level expected within 4·SMALL_CELLS cells (noise of mean 0); beyond,
                # the array form is cheaper
                if m <= SMALL_CELLS or (self.mass_kg - floor
                                        <= 4 * SMALL_CELLS * self.setpoint_kg_s * P):
                    return self._scan_gravimetric(t_end, stop_level, P, j0, j1)
        return self._run_gravimetric_array(t_end, stop_level, P, j0, j1)

    def _cell_edges(self, P: float, j0: int, j1: int, t_end: float) -> np.ndarray:
        """Edges of the noise cells j0..j1-1 from t, the last one cut at ``t_end`` (s)."""
        edges = np.arange(j0, j1 + 1) * P
        edges[0] = self.t
        edges[-1] = min(edges[-1], t_end)
        return edges

    def _run_gravimetric_array(self, t_end: float, stop_level: float | None, P: float,
                               j0: int, j1: int) -> float | None:
        """:meth:`_run_gravimetric` over the cells j0..j1-1 with numpy arrays: edges, rates
        F_sp·(1 + ε_j), fed = rate·duration, their sequential cumulative sum and a binary search
        for the level; the cell that reaches it is cut where it does."""
        edges = self._cell_edges(P, j0, j1, t_end)
        dt = edges[1:] - edges[:-1]
        rates = self.setpoint_kg_s * self._noise.get(j0, j1)
        cum = np.cumsum(rates * dt)
        floor = 0.0
        kind = "empty"
        if stop_level is not None and 0.0 < stop_level < self.mass_kg:
            floor, kind = stop_level, "stop"
        avail = self.mass_kg - floor
        k = int(np.searchsorted(cum, avail, side="left"))
        if k >= cum.size:  # no crossing in this block
            n = cum.size
            t_stop = edges[-1]
        else:
            before = cum[k - 1] if k > 0 else 0.0
            t_stop = edges[k] + (avail - before) / rates[k] if rates[k] > 0 else edges[k + 1]
            n = k + 1
        frac = self.hopper_fractions()
        a = edges[:n]
        b = edges[1:n + 1].copy()
        if k < cum.size:
            b[-1] = t_stop
        if k >= cum.size:  # no crossing: the cells as summed above
            fed = rates[:n] * dt[:n]
            total = float(cum[-1])
        else:  # the last cell feeds what is left above the floor
            fed = rates[:n] * (b - a)
            fed[-1] = avail - (float(cum[n - 2]) if n > 1 else 0.0)
            total = float(cum[n - 2]) + float(fed[-1]) if n > 1 else float(fed[-1])
        self._emit(a, b, fed, frac)
        return self._commit(total, frac, k < cum.size, floor, float(t_stop), kind, stop_level)

    def _run_gravimetric_small(self, t_end: float, stop_level: float | None, P: float,
                               j0: int, j1: int) -> float | None:
        """:meth:`_run_gravimetric_list` in the usual case of an advance from one line wake-up
        to the next (a few cells, recorded): the level not reached, every cell non-empty, no
        two consecutive rates within rounding of each other (none to merge). One loop sums the
        cells' feed (the same sequential sum) and computes their rates fed/(b − a); it leaves
        any other case, before the state changes, to :meth:`_run_gravimetric_list`."""
        edges = [j * P for j in range(j0, j1 + 1)]
        edges[0] = self.t
        if t_end < edges[-1]:  # min(edges[-1], t_end)
            edges[-1] = t_end
        floor = stop_level if stop_level is not None and 0.0 < stop_level < self.mass_kg else 0.0
        avail = self.mass_kg - floor
        sp = self.setpoint_kg_s
        rate: list[float] = []
        acc = -0.0  # −0 + x == x for every x: the first sum is the first cell's feed itself
        q0 = math.nan
        x = edges[0]
        usual = True
        try:
            for e, y in zip(self._noise.cells(j0, j1), edges[1:]):
                dt = y - x  # ≥ 0 (see _scan_gravimetric); 0 raises ZeroDivisionError below
                d = sp * e * dt
                acc += d
                q = d / dt  # ≥ 0: |q| = q in the merge test of _emit_list
                # the level reached (bisect_left's test) or a rate to merge (_emit_list's test)
                if not acc < avail or abs(q - q0) <= 1e-15 * q:
                    usual = False
                    break
                rate.append(q)
                q0 = q
                x = y
        except ZeroDivisionError:  # an empty cell
            usual = False
        if not usual:
            return self._run_gravimetric_list(t_end, stop_level, P, j0, j1)
        frac = self.hopper_fractions()
        t_stop = edges[-1]
        self._emit_cells(edges, rate, frac)
        self._take(acc, frac)
        self.mass_kg = self.mass_kg - acc
        self.t = t_stop
        return None

    def _run_gravimetric_list(self, t_end: float, stop_level: float | None, P: float,
                              j0: int, j1: int) -> float | None:
        """:meth:`_run_gravimetric_array` for a few cells in Python floats, any case (a crossing,
        empty cells, cells to merge): the same operations in the same order (products,
        sequential cumulative sum, binary search), so the same values bit for bit, without
        the overhead of a dozen numpy calls on arrays of a few elements."""
        edges = [j * P for j in range(j0, j1 + 1)]
        edges[0] = self.t
        edges[-1] = min(edges[-1], t_end)
        sp = self.setpoint_kg_s
        rates = [sp * e for e in self._noise.get(j0, j1).tolist()]
        cum: list[float] = []
        acc = 0.0
        for i, r in enumerate(rates):
            acc = r * (edges[i + 1] - edges[i]) if i == 0 else acc + r * (edges[i + 1] - edges[i])
            cum.append(acc)
        m = len(rates)
        floor = 0.0
        kind = "empty"
        if stop_level is not None and 0.0 < stop_level < self.mass_kg:
            floor, kind = stop_level, "stop"
        avail = self.mass_kg - floor
        k = bisect.bisect_left(cum, avail)
        frac = self.hopper_fractions()
        if k >= m:  # no crossing: the cells as summed above
            t_stop = edges[-1]
            a = edges[:m]
            b = edges[1:]
            fed = [r * (y - x) for r, x, y in zip(rates, a, b)]
            total = cum[-1]
        else:  # the last cell feeds what is left above the floor
            before = cum[k - 1] if k > 0 else 0.0
            t_stop = edges[k] + (avail - before) / rates[k] if rates[k] > 0 else edges[k + 1]
            n = k + 1
            a = edges[:n]
            b = edges[1:n + 1]
            b[-1] = t_stop
            fed = [r * (y - x) for r, x, y in zip(rates, a, b)]
            fed[-1] = avail - (cum[n - 2] if n > 1 else 0.0)
            total = cum[n - 2] + fed[-1] if n > 1 else fed[-1]
        self._emit_list(a, b, fed, frac)
        return self._commit(total, frac, k < m, floor, float(t_stop), kind, stop_level)

    def _commit(self, total: float, frac: dict[Hashable, float], reached: bool, floor: float,
                t_stop: float, kind: str, stop_level: float | None) -> float | None:
        """End a gravimetric advance: ``total`` kg (composition ``frac``) leave the hopper and
        the feeder is at ``t_stop``. ``reached``: it stopped at ``floor`` (the stop level,
        ``kind`` "stop", or empty). Returns the time the level was reached, or None."""
        self._take(total, frac)
        self.mass_kg = floor if reached else self.mass_kg - total
        self.t = t_stop
        if reached:
            if kind == "stop":
                return self.t
            self.mass_kg = 0.0
            self.mode = "starved"
            if stop_level is not None and stop_level <= 0.0:
                return self.t
        return None

    def _scan_gravimetric(self, t_end: float, stop_level: float | None, P: float,
                          j0: int, j1: int) -> float | None:
        """:meth:`_run_gravimetric_array` for a look-ahead clone (nothing recorded: t, mass and
        mode only), cell by cell in Python floats up to the first cell whose cumulative sum
        reaches the level: the same sums in the same order, so the same time and mass bit for
        bit, without the cells after the crossing. The first sum that reaches the level is the
        one the binary search finds, as the sums never decrease: F_sp > 0, 1 + ε ≥ 0, and no
        cell has a negative length (rounding is monotone: t/P < j0 + 1 gives t ≤ (j0 + 1)·P
        as rounded, t_end/P > j1 − 1 gives t_end ≥ (j1 − 1)·P)."""
        mass = self.mass_kg
        floor = 0.0
        stop = False
        if stop_level is not None and 0.0 < stop_level < mass:
            floor, stop = stop_level, True
        avail = mass - floor
        y_last = j1 * P
        if t_end < y_last:  # min(j1·P, t_end)
            y_last = t_end
        sp = self.setpoint_kg_s
        noise = self._noise
        ja, jb = j0, min(j1, j0 + 32)  # the cells in chunks of 32, 32, 64, 128, ...
        chunk = noise.cells(ja, jb)
        noise.draw(j1)  # as far as the array form draws: what a later trim keeps depends on it
        x = self.t
        acc = -0.0  # −0 + x == x: the first sum is the first cell's feed itself
        while True:
            for j, e in enumerate(chunk, ja + 1):  # cell [x, y), y = j·P
                y = j * P if j < j1 else y_last
                c = acc + sp * e * (y - x)
                if c >= avail:  # the level within this cell
                    r = sp * e
                    before = acc if j > j0 + 1 else 0.0
                    self.mass_kg = floor
                    self.t = x + (avail - before) / r if r > 0 else y
                    if stop:
                        return self.t
                    self.mass_kg = 0.0
                    self.mode = "starved"
                    return self.t if stop_level is not None and stop_level <= 0.0 else None
                acc = c
                x = y
            if jb == j1:
                break
            ja, jb = jb, min(j1, 2 * jb - j0)
            chunk = noise.cells(ja, jb)
        self.mass_kg = mass - acc
        self.t = x
        return None

    def _mass_after(self, m0: float, tau: float, a: float, R: float) -> float:
        p = self.p
        if p.beta_per_kg == 0.0:
            return m0 + (R - a * p.ff_min_kg_rev) * tau
        b = p.beta_per_kg
        k = R - a * p.ff_max_kg_rev
        c = a * (p.ff_max_kg_rev - p.ff_min_kg_rev) * math.exp(-b * m0)
        x = b * k * tau
        phi = math.expm1(x) / x if x != 0.0 else 1.0
        return m0 + math.log(math.exp(x) + b * c * tau * phi) / b

    def _run_refill_cell(self, t_end: float, stop_level: float | None) -> float | None:
        assert self._refill is not None
        R, left, lot, omega = self._refill
        P = self.p.noise_period_s
        j = int(math.floor(self.t / P))
        cell_end = (j + 1) * P
        if cell_end <= self.t:  # t is on a cell boundary up to rounding: the next cell
            j += 1
            cell_end = (j + 1) * P
        a = omega * self._noise.at(j)
        m0 = self.mass_kg
        b = min(cell_end, t_end, self.t + left / R)
        targets: list[tuple[float, str]] = []
        m_b = self._mass_after(m0, b - self.t, a, R)
        if m_b >= self.p.m_high_kg > m0:
            targets.append((self.p.m_high_kg, "high"))
        if stop_level is not None and min(m0, m_b) <= stop_level <= max(m0, m_b) \
                and stop_level != m0:
            targets.append((stop_level, "stop"))
        reason = "time"
        if not targets and b == t_end and m0 < m_b < self.p.m_high_kg:
            # the high level is reached within the clock's resolution (an event computed
            # ahead lands a hair short of it): the refill is over here, or it never ends
            net = R - a * self.p.ff(m_b)
            if net > 0 and (self.p.m_high_kg - m_b) / net <= 1e-9 * max(1.0, self.t):
                reason = "high"
        if targets:
            level, reason = min(targets, key=lambda x: abs(x[0] - m0))
            tau = optimize.brentq(lambda s: self._mass_after(m0, s, a, R) - level, 0.0,
                                  b - self.t, xtol=1e-12 * max(1.0, self.t), rtol=1e-15)
            b = self.t + tau
            m_b = level
        added = R * (b - self.t)
        record = self._record  # a look-ahead clone tracks t, mass, mode and the refill only
        if record:
            fed = added - (m_b - m0)
            frac = self._take(fed) if fed > 0 else self.hopper_fractions()
            self._emit_list([self.t], [float(b)], [float(fed)], frac)
            self.lots[lot] = self.lots.get(lot, 0.0) + added
            self.composition += 1
            self.refilled_kg += added
        self.mass_kg = m_b
        left -= added
        self.t = b
        if reason != "high" and 0.0 < left and self.t + left / R <= self.t:
            # the container's last grams pour in faster than the clock can resolve (late in a
            # long run, t + left/R == t): add them now, mass kept exactly
            if record:
                self.lots[lot] += left
                self.refilled_kg += left
            self.mass_kg += left
            left = 0.0
        if reason == "high" or left <= 1e-12 * max(1.0, R):
            self._refill = None
            self.mode = "gravimetric"
            if record:
                self.refill_log[-1][1] = self.t
        else:
            self._refill = (R, left, lot, omega)
        return self.t if reason == "stop" else None
