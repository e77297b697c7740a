"""The AR(1) feed-rate noise of a loss-in-weight feeder (:mod:`darkfab.factory.feeder`), on a
fixed grid of cells of length ``noise_period_s`` (cell j covers [j·P, (j+1)·P)):
ε_j = ρ·ε_(j−1) + sd·√(1 − ρ²)·z_j, ε_0 ~ N(0, sd²), z from the numpy ``Generator`` passed in;
ε_j depends only on j, never on when it is asked for. The multiplier 1 + ε is clipped at 0.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.signal import lfilter

__all__ = ["BLOCK", "FeedNoise"]

BLOCK = 1024
"""Noise cells drawn at a time (and the most cells a gravimetric step of the feeder covers)."""


class FeedNoise:
    """Multiplier 1 + ε_j per noise cell j, drawn lazily in blocks (shared by look-ahead clones).

    The multipliers are kept twice, as an array (:meth:`get`, the numpy path) and as a list of
    the same Python floats (:meth:`cells`, :meth:`at`: the few cells of an advance, without a
    numpy slice and its conversion on every call)."""

    def __init__(self, rng: np.random.Generator, sd: float, rho: float) -> None:
        self.rng, self.sd, self.rho = rng, sd, rho
        self.factor = np.zeros(0)
        self.values: list[float] = []  # factor.tolist()
        self.base = 0  # cell index of factor[0]: cells before it were dropped
        self._last = 0.0

    def trim(self, j: int) -> None:
        """Forget cells before j (the feeder has passed them): memory stays bounded."""
        k = j - self.base
        if k > 4 * BLOCK:
            self.factor = self.factor[k:].copy()
            del self.values[:k]
            self.base = j

    def draw(self, j1: int) -> None:
        """Draw blocks of cells until cell j1 − 1 exists (none without noise)."""
        while self.sd != 0.0 and self.base + self.factor.size < j1:
            z = self.rng.standard_normal(BLOCK)
            c = self.sd * math.sqrt(1.0 - self.rho**2)
            if self.factor.size == 0:  # stationary start: ε_0 = sd·z_0
                z[0] *= self.sd / c
                zi = 0.0
            else:
                zi = self.rho * self._last
            eps = lfilter([c], [1.0, -self.rho], z, zi=[zi])[0]
            self._last = float(eps[-1])
            new = np.maximum(1.0 + eps, 0.0)
            self.factor = np.concatenate([self.factor, new])
            self.values += new.tolist()

    def get(self, j0: int, j1: int) -> np.ndarray:
        """Multipliers of cells j0..j1-1."""
        if self.sd == 0.0:
            return np.ones(j1 - j0)
        if j0 < self.base:
            raise ValueError(f"noise cell {j0} was dropped (kept from {self.base})")
        self.draw(j1)
        return self.factor[j0 - self.base:j1 - self.base]

    def cells(self, j0: int, j1: int) -> list[float]:
        """:meth:`get` as a list of Python floats (the same values)."""
        if self.sd == 0.0:
            return [1.0] * (j1 - j0)
        if j0 < self.base:
            raise ValueError(f"noise cell {j0} was dropped (kept from {self.base})")
        if self.base + len(self.values) < j1:
            self.draw(j1)
        return self.values[j0 - self.base:j1 - self.base]

    def at(self, j: int) -> float:
        """Multiplier of cell j (``float(get(j, j + 1)[0])``)."""
        if self.sd == 0.0:
            return 1.0
        i = j - self.base
        if i < 0:
            raise ValueError(f"noise cell {j} was dropped (kept from {self.base})")
        if i >= len(self.values):
            self.draw(j + 1)
        return self.values[i]
