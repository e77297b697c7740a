"""NIR process-analytical-technology (PAT) sensor for API concentration.

Samples every ``period_s`` at t_k = phase + k·period; a sample of the true value x(t_k) is
available at t_k + ``delay_s`` and reads y = x(t_k) + bias(t_k) + e, e ~ N(0, noise_sd²)
(absolute, in concentration units), bias(t) = drift_rate·(t − drift_start) for
drift_start ≤ t < drift_end (a drift fault, gone after recalibration at drift_end), else 0. A sample is lost (value None) with probability ``dropout_prob`` or when
t_k falls in a scripted dropout window [a, b). Randomness only from the numpy ``Generator``
passed in; two standard normals per sample, in sample order (the second gives the dropout
uniform as Φ(z)), so the readings do not
depend on how the caller batches them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike
from scipy import special

__all__ = ["NirSensorParams", "Measurement", "NirSensor"]


@dataclass(frozen=True)
class NirSensorParams:
    period_s: float
    noise_sd: float = 0.0
    delay_s: float = 0.0
    dropout_prob: float = 0.0
    dropout_windows: tuple[tuple[float, float], ...] = ()
    drift_start_s: float = math.inf
    drift_rate_per_s: float = 0.0
    phase_s: float = 0.0
    drift_end_s: float = math.inf

    def __post_init__(self) -> None:
        if not (self.period_s > 0 and self.noise_sd >= 0 and self.delay_s >= 0
                and 0 <= self.dropout_prob <= 1):
            raise ValueError("need period_s > 0, noise_sd >= 0, delay_s >= 0, 0 <= p <= 1")


@dataclass(frozen=True)
class Measurement:
    sample_time_s: float
    available_s: float
    value: float | None
    true_value: float = field(default=math.nan, compare=False)


class NirSensor:
    """Stateful sensor: call :meth:`measure` for consecutive samples (or :meth:`measure_many`)."""

    def __init__(self, params: NirSensorParams, rng: np.random.Generator) -> None:
        self.p = params
        self.rng = rng
        self.k = 0  # index of the next sample
        self.listeners: list = []  # fn(measurements) after each batch of readings

    def sample_time(self, k: int) -> float:
        return self.p.phase_s + k * self.p.period_s

    @property
    def next_sample_time_s(self) -> float:
        """When to schedule the next sample event."""
        return self.sample_time(self.k)

    def sample_times(self, t_until: float) -> np.ndarray:
        """Times of the pending samples up to and including ``t_until``."""
        k1 = math.floor((t_until - self.p.phase_s) / self.p.period_s)
        return self.sample_time(0) + np.arange(self.k, max(self.k, k1 + 1)) * self.p.period_s

    def bias(self, t: ArrayLike) -> np.ndarray:
        ta = np.asarray(t, dtype=float)
        if not math.isfinite(self.p.drift_start_s):
            return np.zeros_like(ta)
        on = (ta >= self.p.drift_start_s) & (ta < self.p.drift_end_s)
        return np.where(on, self.p.drift_rate_per_s * (ta - self.p.drift_start_s), 0.0)

    def _lost(self, t: np.ndarray, u: np.ndarray) -> np.ndarray:
        lost = u < self.p.dropout_prob
        for a, b in self.p.dropout_windows:
            lost |= (t >= a) & (t < b)
        return lost

    def _read(self, true_values: Sequence[float] | np.ndarray
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Sample times, readings, lost flags and true values of the next samples."""
        x = np.asarray(true_values, dtype=float)
        n = x.size
        t = self.sample_time(0) + np.arange(self.k, self.k + n) * self.p.period_s
        z = self.rng.standard_normal((n, 2))
        u = special.ndtr(z[:, 1])  # uniform on (0, 1): batch sizes do not shift the stream
        y = x + self.bias(t) + self.p.noise_sd * z[:, 0]
        lost = self._lost(t, u)
        self.k += n
        return t, y, lost, x

    def _measurements(self, t: np.ndarray, y: np.ndarray, lost: np.ndarray,
                      x: np.ndarray) -> list[Measurement]:
        d = self.p.delay_s  # Python floats: the same sums as t[i] + delay_s in numpy
        return [Measurement(ti, ti + d, None if li else yi, xi)
                for ti, yi, li, xi in zip(t.tolist(), y.tolist(), lost.tolist(), x.tolist())]

    def measure_many(self, true_values: Sequence[float] | np.ndarray) -> list[Measurement]:
        """Readings of the next len(true_values) samples (true values at their sample times)."""
        out = self._measurements(*self._read(true_values))
        for fn in self.listeners:
            fn(out)
        return out

    def measure_array(self, true_values: Sequence[float] | np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The same readings as :meth:`measure_many` (same draws, listeners called with the
        same :class:`Measurement` list) as arrays: sample times (s), availability times (s)
        and values (NaN: lost)."""
        t, y, lost, x = self._read(true_values)
        if self.listeners:
            out = self._measurements(t, y, lost, x)
            for fn in self.listeners:
                fn(out)
        return t, t + self.p.delay_s, np.where(lost, np.nan, y)

    def measure(self, true_value: float) -> Measurement:
        """Reading of the next sample (taken at :attr:`next_sample_time_s`)."""
        return self.measure_many([true_value])[0]
