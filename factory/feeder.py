"""Loss-in-weight (LIW) feeder: hopper mass balance, feed factor, gravimetric/volumetric modes,
AR(1) feed-rate noise, refills from delivered containers (lots). Event-driven: the state is
advanced exactly from event to event; hopper levels are reached at computed times.

Equations:

* hopper: dM/dt = −F + R·1[refilling];
* feed factor (kg per screw revolution) ff(M) = ff_max − (ff_max − ff_min)·e^(−βM)
  (Wang, Li, Muzzio & Glasser 2017, Powder Technol 308:135);
* gravimetric mode (ideal PI loop): F = F_sp·(1 + ε), screw speed ω = F_sp/ff(M);
* volumetric mode during a refill (Engisch & Muzzio 2015, Powder Technol 283:389): ω frozen at
  its value when the refill starts, F = ff(M)·ω·(1 + ε). With ε constant in a noise cell the
  ODE dM/dt = R − aff(M), a = ω(1 + ε), is solved exactly: with u = e^(β(M − M₀)),
  du/dt = β(k·u + c), k = R − a·ff_max, c = a(ff_max − ff_min)e^(−βM₀), so
  u(τ) = e^(βkτ) + βcτ·expm1(βkτ)/(βkτ);
* noise: ε is AR(1) on a fixed grid of cells of length ``noise_period_s`` (cell j covers
  [j·P, (j+1)·P)): ε_j = ρ·ε_(j−1) + sd·√(1 − ρ²)·z_j, ε_0 ~ N(0, sd²), z from the numpy
  ``Generator`` passed in; ε_j depends only on j, never on when it is asked for. 1 + ε is
  clipped at 0 (:class:`~darkfab.factory.feed_noise.FeedNoise`);
* refill: a container of a lot is emptied at rate R until it is empty or M reaches M_high;
  between refills (M_high − M_low)/F, refill duration (M_high − M_low)/(R − F).

The hopper is perfectly mixed: the lot composition of the fed material is the hopper's
composition at the start of each step (exact in gravimetric mode, first order in the noise cell
length during a refill; per-lot masses are conserved exactly either way). Mass bookkeeping:
fed = initial + refilled − M, closed to rounding.

Gravimetric cells are summed with numpy arrays over long runs and in Python floats over the few
cells of an advance and in look-aheads (which stop at the level): the same operations in the same
order (products, sequential cumulative sum, rate = fed/(b − a)), so the same values bit for bit.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Hashable
from dataclasses import dataclass, field

import numpy as np
from scipy import optimize

from .feed_noise import BLOCK, FeedNoise

__all__ = ["FeederParams", "FeedBlock", "FeedSegment", "LossInWeightFeeder", "feed_factor",
           "refill_interval_s", "refill_duration_s"]

SMALL_CELLS = 64  # gravimetric advances over at most this many noise cells, and look-aheads
# expected to reach their level within 4 × as many, use Python floats (0: numpy throughout)


def feed_factor(mass_kg: float | np.ndarray, ff_max: float, ff_min: float,
                beta_per_kg: float) -> float | np.ndarray:
    """ff(M) = ff_max − (ff_max − ff_min)·e^(−βM) (kg/rev)."""
    return ff_max - (ff_max - ff_min) * np.exp(-beta_per_kg * np.asarray(mass_kg))


def refill_interval_s(m_high_kg: float, m_low_kg: float, feed_kg_s: float) -> float:
    """Time to empty the hopper from M_high to M_low at feed rate F: (M_high − M_low)/F."""
    return (m_high_kg - m_low_kg) / feed_kg_s


def refill_duration_s(m_high_kg: float, m_low_kg: float, refill_kg_s: float,
                      feed_kg_s: float) -> float:
    """Time to fill from M_low to M_high at refill rate R while feeding F: (M_high−M_low)/(R−F)."""
    return (m_high_kg - m_low_kg) / (refill_kg_s - feed_kg_s)


@dataclass(frozen=True)
class FeederParams:
    """Feeder parameters: feed factors in kg/rev, β in 1/kg, levels in kg, noise sd of ε."""

    ff_max_kg_rev: float
    ff_min_kg_rev: float
    beta_per_kg: float
    m_low_kg: float
    m_high_kg: float
    noise_sd: float = 0.0
    noise_corr: float = 0.0
    noise_period_s: float = 1.0

    def __post_init__(self) -> None:
        if not (0 < self.ff_min_kg_rev <= self.ff_max_kg_rev and self.beta_per_kg >= 0):
            raise ValueError("need 0 < ff_min <= ff_max and beta >= 0")
        if not (0 <= self.m_low_kg < self.m_high_kg):
            raise ValueError("need 0 <= m_low < m_high")
        if not (self.noise_sd >= 0 and -1 < self.noise_corr < 1 and self.noise_period_s > 0):
            raise ValueError("need noise_sd >= 0, |noise_corr| < 1, noise_period_s > 0")

    def ff(self, mass_kg: float) -> float:
        return float(feed_factor(mass_kg, self.ff_max_kg_rev, self.ff_min_kg_rev,
                                 self.beta_per_kg))


@dataclass(frozen=True)
class FeedSegment:
    """Constant (mass-averaged) feed over [start_s, end_s): total and per-lot rates (kg/s)."""

    start_s: float
    end_s: float
    rate_kg_s: float
    lots: dict[Hashable, float] = field(default_factory=dict)
    composition: int = 0  # hopper composition version: equal versions, equal lot fractions


@dataclass
class FeedBlock:
    """Consecutive feed segments that share one hopper composition (lot fractions ``fractions``,
    version ``composition``): segment i feeds at ``rates[i]`` (kg/s, mass-averaged) over
    [starts[i], ends[i]), lot k at rates[i]·fractions[k]. Arrays instead of one object per noise
    cell; :meth:`segments` gives the equivalent :class:`FeedSegment` list. The arrays may share
    memory (``starts`` and ``ends`` can be views of one array of cell edges): read-only."""

    starts: np.ndarray
    ends: np.ndarray
    rates: np.ndarray
    fractions: dict[Hashable, float]
    composition: int

    def lots_at(self, i: int) -> dict[Hashable, float]:
        """Per-lot rates of segment i (kg/s)."""
        r = self.rates[i]
        return {k: float(r * f) for k, f in self.fractions.items()}

    def segments(self) -> list[FeedSegment]:
        return [FeedSegment(float(a), float(b), float(r), self.lots_at(i), self.composition)
                for i, (a, b, r) in enumerate(zip(self.starts, self.ends, self.rates))]


class LossInWeightFeeder:
    """One LIW feeder, advanced event to event (see module doc).

    Modes: ``"gravimetric"``, ``"refill"`` (volumetric), ``"starved"`` (hopper empty, F = 0).
    """

    def __init__(self, params: FeederParams, rng: np.random.Generator, *, mass_kg: float,
                 setpoint_kg_s: float, t0: float = 0.0, lot: Hashable = "initial",
                 residual_lot: Hashable = "older-lots", purge_fraction: float = 1e-6) -> None:
        self.p = params
        self.t = float(t0)
        self.mass_kg = float(mass_kg)
        self.setpoint_kg_s = float(setpoint_kg_s)
        self.lots: dict[Hashable, float] = {lot: self.mass_kg} if mass_kg > 0 else {}
        self.mode = "gravimetric" if mass_kg > 0 else "starved"
        self.initial_kg = self.mass_kg
        self.fed_kg = 0.0
        self.refilled_kg = 0.0
        self.fed_by_lot: dict[Hashable, float] = {}
        self._noise = FeedNoise(rng, params.noise_sd, params.noise_corr)
        self._refill: tuple[float, float, Hashable, float] | None = None  # R, left, lot, ω
        self._blocks: list[FeedBlock] = []
        self._record = True
        self.residual_lot = residual_lot
        self.purge_fraction = purge_fraction
        self.composition = 0  # bumped whenever the hopper's lot fractions change
        self.refill_log: list[list[float]] = []  # [start, end] of each refill (end inf: going on)

    # --- commands -----------------------------------------------------------------------------
    def set_setpoint(self, t: float, setpoint_kg_s: float) -> None:
        """A new feed set-point from t on (advances to t first; the feed up to t is kept for
        the next :meth:`advance_blocks`). During a refill (volumetric) the frozen screw speed
        is scaled by the same factor: 0 stops the screw, the refill goes on filling."""
        self.advance_state(t)
        if self._refill is not None:  # volumetric: the frozen screw speed follows the command
            R, left, lot, omega = self._refill
            omega = (omega * setpoint_kg_s / self.setpoint_kg_s if self.setpoint_kg_s > 0
                     else setpoint_kg_s / self.p.ff(self.mass_kg))
            self._refill = (R, left, lot, omega)
        self.setpoint_kg_s = float(setpoint_kg_s)

    def start_refill(self, t: float, mass_kg: float, rate_kg_s: float,
                     lot_id: Hashable) -> None:
        """Start emptying a container of ``mass_kg`` of ``lot_id`` at ``rate_kg_s`` at t
        (advances to t first; the feed up to t is kept for the next :meth:`advance_blocks`)."""
        if rate_kg_s <= self.setpoint_kg_s:
            raise ValueError("refill rate must exceed the feed set-point")
        self.advance_state(t)
        self._purge_lots()
        omega = self.setpoint_kg_s / self.p.ff(self.mass_kg)
        self._refill = (float(rate_kg_s), float(mass_kg), lot_id, omega)
        self.mode = "refill"
        self.refill_log.append([self.t, math.inf])

    def _purge_lots(self) -> None:
        """Merge lots below ``purge_fraction`` of the hopper into ``residual_lot`` (mass kept
        exactly), so that the perfectly mixed hopper does not carry every lot it ever held."""
        small = [k for k, m in self.lots.items()
                 if k != self.residual_lot and m < self.purge_fraction * self.mass_kg]
        for k in small:
            self.lots[self.residual_lot] = self.lots.get(self.residual_lot, 0.0) + self.lots.pop(k)
        if small:
            self.composition += 1

    @property
    def screw_speed_rev_s(self) -> float:
        if self.mode == "refill":
            assert self._refill is not None
            return self._refill[3]
        return self.setpoint_kg_s / self.p.ff(self.mass_kg) if self.mode != "starved" else 0.0

    def current_rate_kg_s(self) -> float:
        """Feed rate at the present time (kg/s): the rate of the present noise cell."""
        if self.mode == "starved":
            return 0.0
        e = self._noise.at(math.floor(self.t / self.p.noise_period_s))
        if self.mode == "gravimetric":
            return max(self.setpoint_kg_s, 0.0) * e
        assert self._refill is not None
        return self._refill[3] * e * self.p.ff(self.mass_kg)

    def state_at(self, t: float) -> tuple[float, str, float, float]:
        """(hopper mass kg, mode, feed rate kg/s, screw speed rev/s) at ``t`` ≥ the present
        time with no further command, without changing the feeder (a look-ahead copy; the
        noise cells are the feeder's own). For load-cell records (calibration data)."""
        c = self._clone() if t > self.t else self
        if t > c.t:
            c._run(float(t), None)
        return c.mass_kg, c.mode, c.current_rate_kg_s(), c.screw_speed_rev_s

    def hopper_fractions(self) -> dict[Hashable, float]:
        return {k: v / self.mass_kg for k, v in self.lots.items()} if self.mass_kg > 0 else {}

    # --- advancing ------------------------------------------------------------------------------
    def advance(self, t: float) -> list[FeedSegment]:
        """Advance the state to t; returns the feed segments since the previous call."""
        return [sg for b in self.advance_blocks(t) for sg in b.segments()]

    def advance_blocks(self, t: float) -> list[FeedBlock]:
        """Advance the state to t; returns the feed since the previous call as blocks of
        segments (the same segments as :meth:`advance`, without one object per segment)."""
        self.advance_state(t)
        out, self._blocks = self._blocks, []
        return out

    def advance_state(self, t: float) -> None:
        """Advance the state to t, keeping the feed for the next :meth:`advance_blocks`."""
        if t < self.t:
            raise ValueError(f"cannot advance back from {self.t} to {t}")
        if t > self.t:
            self._run(float(t), None)
        if self.mode == "gravimetric" and self.mass_kg <= 1e-12 * max(1.0, self.p.m_high_kg):
            self.mode = "starved"  # empty to rounding (an "empty" event computed ahead)
        self._noise.trim(int(math.floor(self.t / self.p.noise_period_s)))

    def _clone(self) -> LossInWeightFeeder:
        """A look-ahead copy (``copy.copy`` without its generic dispatch; the noise is shared):
        only its t, mass, mode and refill are kept up to date, not its feed, lots or totals
        (unless the caller turns ``_record`` back on, as :meth:`projected_blocks` does)."""
        cls = type(self)
        c = cls.__new__(cls)
        c.__dict__.update(self.__dict__)
        # its own hopper lots; fed_by_lot (one entry per lot ever fed: it grows with the run)
        # starts empty, as a look-ahead's totals are never read
        c.lots, c.fed_by_lot = dict(self.lots), {}
        c._blocks, c._record = [], False
        return c

    def projected_blocks(self, t_end: float) -> list[FeedBlock]:
        """The feed the next :meth:`advance_blocks` would return if the feeder were advanced to
        ``t_end`` with no further command (its own dynamics only: noise cells, the end of a refill,
        the hopper running down), without changing the feeder: a look-ahead copy that records its
        feed, starting from the blocks not yet handed out. In gravimetric mode the feed is
        set-point × noise per cell, the same (to rounding) whatever times the feeder is advanced
        at; during a refill it drifts within a cell, and the mean over each piece depends on
        where the cell is split."""
        cells = self._gravimetric_cells(t_end)
        if cells is not None:  # the usual case
            edges, rates = cells
            return [*self._blocks, FeedBlock(edges[:-1], edges[1:], rates,
                                             self.hopper_fractions(), self.composition)]
        c = self._clone()
        c._record = True
        c._blocks = list(self._blocks)
        if c._blocks:  # _extend_prev may shorten the last block in place: a copy of it
            b = c._blocks[-1]
            c._blocks[-1] = FeedBlock(b.starts, b.ends, b.rates, b.fractions, b.composition)
        if t_end > c.t:
            c._run(float(t_end), None)
        return c._blocks

    def projected_cells(self, t_end: float) -> tuple[np.ndarray, np.ndarray] | None:
        """:meth:`projected_blocks` in its usual case, as two arrays: the noise-cell edges from
        the present time to ``t_end`` (s) and the rate of each cell (kg/s); None unless the
        feeder is gravimetric with no feed pending (every segment handed out by
        :meth:`advance_blocks`) and its hopper does not empty before ``t_end``."""
        return None if self._blocks else self._gravimetric_cells(t_end)

    def _gravimetric_cells(self, t_end: float) -> tuple[np.ndarray, np.ndarray] | None:
        """Gravimetric feed from now to ``t_end``: set-point × noise per cell (edges, rates),
        unless the hopper empties first (then None)."""
        if self.mode == "gravimetric" and self.setpoint_kg_s > 0 and t_end > self.t:
            P = self.p.noise_period_s
            j0, j1 = int(math.floor(self.t / P)), int(math.ceil(t_end / P))
            edges = self._cell_edges(P, j0, j1, t_end)
            rates = self.setpoint_kg_s * self._noise.get(j0, j1)
            if float(rates @ (edges[1:] - edges[:-1])) < self.mass_kg:
                return edges, rates
        return None

    def time_to_level(self, m_target_kg: float, horizon_s: float = 30 * 86400.0) -> float:
        """Absolute time at which the hopper mass first reaches ``m_target_kg`` with no further
        command (inf if not within ``horizon_s``). Exact (same arithmetic as :meth:`advance`)."""
        if m_target_kg == self.mass_kg:
            return self.t
        hit = self._clone()._run(self.t + horizon_s, float(m_target_kg))
        return math.inf if hit is None else hit

    def next_event(self) -> tuple[float, str]:
        """(time, kind) of the next intrinsic event: "refill_done", "low" or "empty"."""
        if self.mode == "refill":
            clone = self._clone()
            while clone.mode == "refill":
                clone._run(clone.t + 86400.0, None, stop_on_mode_change=True)
            return clone.t, "refill_done"
        if self.mode == "starved":
            return math.inf, "empty"
        if self.mass_kg > self.p.m_low_kg * (1.0 + 1e-12) + 1e-12:  # at the level: past it
            return self.time_to_level(self.p.m_low_kg), "low"
        return self.time_to_level(0.0), "empty"

    def _emit(self, a: np.ndarray, b: np.ndarray, fed: np.ndarray,
              frac: dict[Hashable, float]) -> None:
        """Record the feed ``fed`` (kg) over the cells [a_i, b_i) with hopper composition
        ``frac``: rate = fed/(b − a); empty cells are skipped; a cell whose per-lot rates equal
        those of the segment just before it (e.g. without noise) extends that segment."""
        if not self._record:
            return
        ok = b > a
        if not ok.all():
            a, b, fed = a[ok], b[ok], fed[ok]
        if a.size == 0:
            return
        rate = fed / (b - a)
        # merge within the cells: equal per-lot rates (exact comparison of rate × fraction,
        # made only where the rates are within rounding of each other)
        if a.size > 1 and (np.abs(rate[1:] - rate[:-1]) <= 1e-15 * np.abs(rate[1:])).any():
            fv = np.fromiter(frac.values(), float, len(frac))
            p = rate[:, None] * fv[None, :]
            new = np.ones(a.size, dtype=bool)
            new[1:] = ~(p[1:] == p[:-1]).all(axis=1)
            if not new.all():
                first = np.flatnonzero(new)
                last = np.append(first[1:] - 1, a.size - 1)
                a, b, rate = a[first], b[last], rate[last]
        start = self._extend_prev(float(a[0]), float(rate[0]), frac)
        if start is not None:
            a = a.copy()
            a[0] = start
        self._blocks.append(FeedBlock(a, b, rate, frac, self.composition))

    def _emit_list(self, a: list[float], b: list[float], fed: list[float],
                   frac: dict[Hashable, float]) -> None:
        """:meth:`_emit` for Python lists (the few cells of :meth:`_run_gravimetric_small`):
        the same arithmetic and comparisons, element by element."""
        if not self._record:
            return
        if len(a) == 1:  # one cell (a refill cell): nothing to merge within
            x, y = a[0], b[0]
            if y > x:
                r = fed[0] / (y - x)
                start = self._extend_prev(x, r, frac)
                self._blocks.append(FeedBlock(np.array([x if start is None else start]),
                                              np.array([y]), np.array([r]), frac,
                                              self.composition))
            return
        if not all(y > x for x, y in zip(a, b)):
            keep = [i for i, (x, y) in enumerate(zip(a, b)) if y > x]
            a, b, fed = [a[i] for i in keep], [b[i] for i in keep], [fed[i] for i in keep]
        if not a:
            return
        rate = [f / (y - x) for f, x, y in zip(fed, a, b)]
        if len(a) > 1 and any(abs(r1 - r0) <= 1e-15 * abs(r1)
                              for r0, r1 in zip(rate, rate[1:])):
            fv = list(frac.values())
            p = [[r * f for f in fv] for r in rate]
            new = [True] + [p[i] != p[i - 1] for i in range(1, len(p))]
            if not all(new):
                first = [i for i, x in enumerate(new) if x]
                last = [i - 1 for i in first[1:]] + [len(a) - 1]
                a, b, rate = [a[i] for i in first], [b[i] for i in last], [rate[i] for i in last]
        start = self._extend_prev(a[0], rate[0], frac)
        if start is not None:
            a = list(a)
            a[0] = start
        self._blocks.append(FeedBlock(np.array(a), np.array(b), np.array(rate), frac,
                                      self.composition))

    def _emit_cells(self, edges: list[float], rate: list[float],
                    frac: dict[Hashable, float]) -> None:
        """:meth:`_emit_list` for contiguous cells [edges[i], edges[i+1]) at ``rate[i]`` that the
        caller has checked: all non-empty, no two consecutive rates within rounding of each
        other (so none merge). One array of the edges gives the starts and the ends (views;
        ``edges[0]`` may be overwritten)."""
        if self._blocks:
            start = self._extend_prev(edges[0], rate[0], frac)
            if start is not None:
                edges[0] = start
        e = np.array(edges)
        self._blocks.append(FeedBlock(e[:-1], e[1:], np.array(rate), frac, self.composition))

    def _extend_prev(self, a0: float, r0: float, frac: dict[Hashable, float]) -> float | None:
        """The merge with the segment recorded last: if it ends at ``a0`` and its per-lot rates
        equal those of the new first segment (rate ``r0``, composition ``frac``; r·f compared
        exactly lot by lot, as ``lots_at(i) == {k: r0·f}``), drop it and return its start, where
        the new segment then begins; else None."""
        blocks = self._blocks
        if not blocks:
            return None
        prev = blocks[-1]
        pf = prev.fractions
        if not (prev.ends[-1] == a0 and len(pf) == len(frac)):
            return None
        rp = float(prev.rates[-1])
        for k, f in frac.items():
            if k not in pf or not rp * pf[k] == r0 * f:
                return None
        start = float(prev.starts[-1])
        if prev.starts.size == 1:
            blocks.pop()
        else:
            prev.starts, prev.ends, prev.rates = prev.starts[:-1], prev.ends[:-1], prev.rates[:-1]
        return start

    def _take(self, fed: float, frac: dict[Hashable, float] | None = None
              ) -> dict[Hashable, float]:
        """Remove ``fed`` kg from the mixed hopper (composition ``frac``: the present hopper
        fractions, computed if not given); returns the composition used."""
        if frac is None:
            frac = self.hopper_fractions()
        lots, by_lot = self.lots, self.fed_by_lot
        for k, f in frac.items():
            x = fed * f
            lots[k] -= x
            by_lot[k] = by_lot.get(k, 0.0) + x
        self.fed_kg += fed
        return frac

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
        self._take(total, frac)
        self.mass_kg = (self.mass_kg - total) if k >= cum.size else floor
        self.t = float(t_stop)
        if k < cum.size:
            if kind == "stop":
                return self.t
            self.mass_kg = 0.0
            self.mode = "starved"
            if stop_level is not None and stop_level <= 0.0:
                return self.t
        return None

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
        self._take(total, frac)
        self.mass_kg = (self.mass_kg - total) if k >= m else floor
        self.t = float(t_stop)
        if k < m:
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

    @property
    def refill_leftover_kg(self) -> float:
        """Mass still in the container being emptied (0 when not refilling)."""
        return self._refill[1] if self._refill else 0.0

    @property
    def mass_balance_error_kg(self) -> float:
        """initial + refilled − fed − M (0 to rounding)."""
        return self.initial_kg + self.refilled_kg - self.fed_kg - self.mass_kg
