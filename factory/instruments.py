"""Instruments: what a control system reads instead of the truth.

Loss-in-weight feeder load cell (:class:`LoadCellFlow`). The load cell weighs the hopper with a
reading noise n_j ~ N(0, σ_m²) (kg, one reading per feed segment j: a feed-noise cell, or its
part where a sync splits it); the controller's flow is the mass loss per segment, first-order
filtered with time constant T_f:

    y_j = a_j·y_(j−1) + (1 − a_j)·(F_j + (n_(j−1) − n_j)/P),   a_j = e^(−Δ_j/T_f)

(F_j the true mean flow over segment j of length Δ_j, P the feeder's noise-cell period; T_f = 0:
no filter). During a refill the load cell is blind (the weight rises with the refill): the
feeder runs volumetrically at the screw speed ω it had when the refill started, and the control
system's flow is the volumetric estimate ω × nominal ff(M) (Engisch & Muzzio 2015, Powder Technol
283:389; Blackshields & Crean 2018, Drug Dev Ind Pharm 44:1387). With ω = F_sp/ff_true(M₀) learned
by the gravimetric loop and a true feed factor K·ff_nom (K: the lot's bulk density and feed-factor
ratios × screw wear, :mod:`darkfab.factory.mismatch`), the estimate is F_true/K: exact for the
nominal plant, off by the feed-factor mismatch otherwise. After a refill the filter restarts at
the true flow. σ_m = 0 and T_f = 0 outside refills: the load cell reports the true flow.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["LoadCellFlow", "blind_factors"]


class LoadCellFlow:
    """The control system's flow of one feeder from its load cell (module docstring).

    Args:
        noise_sd_kg: σ_m, the load cell's reading noise (kg).
        filter_s: T_f, the flow filter's time constant (s; 0: none).
        period_s: P, the feeder's noise-cell period (s).
        rng: numpy ``Generator`` of the reading noise (only drawn from when σ_m > 0).
    """

    def __init__(self, noise_sd_kg: float, filter_s: float, period_s: float,
                 rng: np.random.Generator | None) -> None:
        self.noise_sd_kg = noise_sd_kg
        self.filter_s = filter_s
        self.period_s = period_s
        self.rng = rng
        self._y: float | None = None  # the filter's output after the last committed segment
        self._n = 0.0  # the last reading's noise (kg)

    @property
    def ideal(self) -> bool:
        """No noise and no filter: the reading is the true flow outside refills."""
        return self.noise_sd_kg == 0 and self.filter_s == 0

    def measure(self, starts: np.ndarray, ends: np.ndarray, rates: np.ndarray,
                blind_factor: np.ndarray) -> np.ndarray:
        """The control system's flow (kg/s) over consecutive segments [starts, ends) of true mean
        flows ``rates``: volumetric estimate rates/K where ``blind_factor`` K is finite (a
        refill), the filtered load-cell flow elsewhere (NaN in ``blind_factor``). Commits the
        filter and noise state."""
        blind = np.isfinite(blind_factor)
        out = np.array(rates, dtype=float)
        if blind.any():
            out[blind] = out[blind] / blind_factor[blind]
        if self.ideal:
            self._y = None
            return out
        P, T = self.period_s, self.filter_s
        noise = (self.rng.standard_normal(out.size) * self.noise_sd_kg
                 if self.noise_sd_kg > 0 else np.zeros(out.size))
        y, n_prev = self._y, self._n
        res = out.tolist()
        for j, (a, b) in enumerate(zip(starts.tolist(), ends.tolist())):
            if blind[j] or res[j] <= 0.0:  # blind, or the screw stopped (commanded: known)
                y, n_prev = None, float(noise[j])  # no filter; it restarts after
                continue
            x = res[j] + (n_prev - float(noise[j])) / P
            n_prev = float(noise[j])
            if y is None or T == 0:
                y = x
            else:
                k = math.exp(-(b - a) / T)
                y = k * y + (1.0 - k) * x
            res[j] = y
        self._y, self._n = y, n_prev
        return np.asarray(res)

    def mass_reading(self, mass_kg: float) -> float:
        """The hopper mass the load cell reads (kg): the true mass with the last reading's
        noise (the noise of the flow above is the difference of two such readings over P)."""
        return mass_kg + self._n

    def present(self, rate: float, blind_factor: float) -> float:
        """The flow read now (not committed: the next :meth:`measure` covers it)."""
        if math.isfinite(blind_factor):
            return rate / blind_factor
        if self.ideal or self._y is None or rate <= 0.0:
            return rate
        return self._y


def blind_factors(starts: np.ndarray, refills: Sequence[tuple[float, float, float]],
                  wear: np.ndarray | float) -> np.ndarray:
    """K per segment starting at ``starts``: the refill's ff multiplier × screw wear where the
    segment starts inside a refill (s, e, multiplier), NaN elsewhere."""
    k = np.full(starts.shape, np.nan)
    for s, e, m in refills:
        inside = (starts >= s) & (starts < e)
        if inside.any():
            k[inside] = m
    return k * wear
