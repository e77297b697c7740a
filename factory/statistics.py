"""Output analysis: confidence intervals on replication means and MSER-5 warm-up detection.

* t-interval: mean ± t_{1−α/2, R−1}·s/√R over R independent replication means.
* MSER-5 (White 1997, Simulation 69:323; White, Cobb & Spratt 2000): batch the series into means
  of 5, then choose the truncation d* minimising MSER(d) = Σ_{j>d}(Z_j − Z̄_d)² / (k − d)²
  over d ≤ k/2; the warm-up is the first 5·d* observations.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

__all__ = ["Interval", "t_interval", "mser5", "MSERResult"]


@dataclass(frozen=True)
class Interval:
    mean: float
    half_width: float
    n: int
    confidence: float

    @property
    def low(self) -> float:
        return self.mean - self.half_width

    @property
    def high(self) -> float:
        return self.mean + self.half_width

    def contains(self, x: float) -> bool:
        return self.low <= x <= self.high


def t_interval(values: Sequence[float], confidence: float = 0.95) -> Interval:
    """Student-t confidence interval for the mean of independent replication values; the
    half-width is NaN with fewer than two finite values."""
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    n = int(x.size)
    if n == 0:
        return Interval(math.nan, math.nan, 0, confidence)
    mean = float(x.mean())
    if n < 2:
        return Interval(mean, math.nan, n, confidence)
    t = float(stats.t.ppf(0.5 + confidence / 2, n - 1))
    return Interval(mean, t * float(x.std(ddof=1)) / math.sqrt(n), n, confidence)


@dataclass(frozen=True)
class MSERResult:
    truncate: int          # observations to delete
    batches: int           # number of batch means k
    reliable: bool         # False when the minimum sits at the k/2 search limit


def mser5(series: Sequence[float], batch: int = 5) -> MSERResult:
    """MSER-5 truncation point of an output series (e.g. WIP per time bucket)."""
    y = np.asarray(series, dtype=float)
    k = y.size // batch
    if k < 4:
        return MSERResult(0, k, False)
    z = y[: k * batch].reshape(k, batch).mean(axis=1)
    s1 = np.cumsum(z[::-1])[::-1]          # Σ_{j≥d} z_j
    s2 = np.cumsum((z * z)[::-1])[::-1]
    n = np.arange(k, 0, -1, dtype=float)    # k − d
    mser = (s2 - s1 * s1 / n) / (n * n)
    limit = k // 2
    d = int(np.argmin(mser[: limit + 1]))
    return MSERResult(d * batch, k, d < limit)
