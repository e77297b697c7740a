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

The integration over noise cells is in :mod:`darkfab.factory.feed_cells`.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from dataclasses import dataclass, field

import numpy as np

from .feed_cells import CellIntegration
from .feed_noise import FeedNoise

__all__ = ["FeederParams", "FeedBlock", "FeedSegment", "LossInWeightFeeder", "feed_factor",
           "refill_interval_s", "refill_duration_s"]

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


class LossInWeightFeeder(CellIntegration):
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

    @property
    def refill_leftover_kg(self) -> float:
        """Mass still in the container being emptied (0 when not refilling)."""
        return self._refill[1] if self._refill else 0.0

    @property
    def mass_balance_error_kg(self) -> float:
        """initial + refilled − fed − M (0 to rounding)."""
        return self.initial_kg + self.refilled_kg - self.fed_kg - self.mass_kg
