"""Funnel plot (García-Muñoz et al. 2018, AIChE J 64:511).

A square input disturbance of magnitude Δ and duration d through a unit with cumulative RTD F
gives the output deviation Δ·[F(t) − F(t − d)]; its peak is Δ·p(d), p(d) = max_t [F(t) − F(t−d)]
(increasing in d, → 1). Divert iff Δ·p(d) > L; the boundary is d*(Δ) = p⁻¹(L/Δ) (no boundary,
never divert, when Δ ≤ L). One tank: p(d) = 1 − e^(−d/τ), d* = −τ·ln(1 − L/Δ).

p(d) is found by sampling t on [0, d + tail] (2,000 points plus t = d, where a one-tank
response peaks with a kink) and refining the best sample by bounded Brent minimisation
(xatol 1e-10·(d + tail)); d* by Brent's method on p(d) − L/Δ.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure
from numpy.typing import ArrayLike, NDArray
from scipy import optimize

from darkfab.factory.rtd import RTD

__all__ = ["pulse_peak_fraction", "funnel_boundary_s", "FunnelData", "funnel", "funnel_figure"]


def pulse_peak_fraction(rtd: RTD, duration_s: float) -> float:
    """p(d) = max_t [F(t) − F(t − d)]."""
    d = float(duration_s)
    if d <= 0:
        return 0.0
    hi = d + rtd.tail_s
    t = np.union1d(np.linspace(0.0, hi, 2001), [d])
    v = rtd.cdf(t) - rtd.cdf(t - d)
    j = int(np.argmax(v))
    best = float(v[j])
    lo_, hi_ = t[max(j - 1, 0)], t[min(j + 1, t.size - 1)]
    if hi_ > lo_:
        r = optimize.minimize_scalar(lambda x: -float(rtd.cdf(x) - rtd.cdf(x - d)),
                                     bounds=(lo_, hi_), method="bounded",
                                     options={"xatol": 1e-10 * hi})
        best = max(best, -float(r.fun))
    return min(best, 1.0)


def funnel_boundary_s(rtd: RTD, magnitude: float, limit: float) -> float:
    """d*(Δ): shortest disturbance duration whose output peak reaches L (inf if |Δ| ≤ L)."""
    ratio = limit / abs(magnitude) if magnitude else math.inf
    if ratio >= 1:
        return math.inf
    hi = rtd.tail_s
    while pulse_peak_fraction(rtd, hi) < ratio:
        hi *= 2
    return float(optimize.brentq(lambda d: pulse_peak_fraction(rtd, d) - ratio, 0.0, hi,
                                 xtol=1e-9 * hi))


@dataclass(frozen=True)
class FunnelData:
    magnitudes: NDArray[np.float64]  # Δ, shape (nΔ,)
    durations_s: NDArray[np.float64]  # d, shape (nd,)
    peak: NDArray[np.float64]  # Δ·p(d), shape (nΔ, nd)
    divert: NDArray[np.bool_]  # peak > L
    limit: float
    boundary_s: NDArray[np.float64]  # d*(Δ), shape (nΔ,)


def funnel(rtd: RTD, magnitudes: ArrayLike, durations_s: ArrayLike, limit: float) -> FunnelData:
    """Peak output deviation on the grid Δ × d, the divert decision and the boundary d*(Δ)."""
    mags = np.asarray(magnitudes, dtype=float)
    durs = np.asarray(durations_s, dtype=float)
    p = np.array([pulse_peak_fraction(rtd, d) for d in durs])
    peak = np.abs(mags)[:, None] * p[None, :]
    bnd = np.array([funnel_boundary_s(rtd, m, limit) for m in mags])
    return FunnelData(mags, durs, peak, peak > limit, float(limit), bnd)


def funnel_figure(data: FunnelData, title: str | None = None) -> Figure:
    """The funnel plot as a matplotlib Figure (Agg canvas, no display): divert region shaded,
    boundary d*(Δ) drawn. Save with ``fig.savefig(path)``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = Figure(figsize=(6.4, 4.8))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.pcolormesh(data.durations_s, data.magnitudes, data.divert.astype(float),
                  cmap="RdYlGn_r", vmin=0, vmax=1, shading="nearest", alpha=0.35)
    finite = np.isfinite(data.boundary_s)
    ax.plot(data.boundary_s[finite], data.magnitudes[finite], "k-", lw=2,
            label=f"boundary: peak = L = {data.limit:g}")
    ax.set_xlim(data.durations_s.min(), data.durations_s.max())
    ax.set_xlabel("disturbance duration d (s)")
    ax.set_ylabel("disturbance magnitude Δ")
    ax.set_title(title or "Funnel plot: divert (red) / no divert (green)")
    ax.legend(loc="upper right")
    return fig
