"""Estimate a loss-in-weight feeder's feed-factor curve from its load-cell data.

The feed factor is the mass the screw delivers per revolution, ff = F/ω (kg/rev), F the feed
rate the load cell measures and ω the screw speed. It falls as the hopper empties (less
head pressure on the powder) and is modelled as (Wang, Li, Muzzio & Glasser 2017, Powder
Technol 308:135; :func:`darkfab.factory.feeder.feed_factor`)

    ff(M) = ff_max − (ff_max − ff_min)·e^(−βM),     M the hopper mass (kg).

ff_max, ff_min and β by :func:`scipy.optimize.least_squares` on relative residuals
(ff_model − ff_obs)/mean(ff_obs) (the feed noise is multiplicative: F = F_sp·(1 + ε)), bounds
0 < ff_min, ff_max and β ≥ 0. Standard errors from the Jacobian, inflated for the residuals'
autocorrelation as in :mod:`darkfab.factory.rtd_fit`. ff_min is the curve's value at an
empty hopper: it is an extrapolation below the lowest mass observed and is the least certain
parameter when the data stay above the low level.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy import optimize, stats

from .rtd_fit import residual_inflation

__all__ = ["FeedFactorFit", "fit_feed_factor", "feed_factor_curve"]


def feed_factor_curve(mass_kg: ArrayLike, ff_max: float, ff_min: float,
                      beta_per_kg: float) -> np.ndarray:
    """ff(M) = ff_max − (ff_max − ff_min)·e^(−βM) (kg/rev)."""
    return ff_max - (ff_max - ff_min) * np.exp(-beta_per_kg * np.asarray(mass_kg, dtype=float))


@dataclass(frozen=True)
class FeedFactorFit:
    """A fitted feed-factor curve (kg/rev, 1/kg) with standard errors, 95 % intervals and the
    goodness of fit (relative RMSE, R², samples used, the hopper masses they cover)."""

    ff_max_kg_rev: float
    ff_min_kg_rev: float
    beta_per_kg: float
    se: dict[str, float]
    ci95: dict[str, tuple[float, float]]
    rel_rmse: float
    r2: float
    n_obs: int
    dof: int
    mass_range_kg: tuple[float, float]
    residual_lag1: float
    converged: bool
    message: str


def fit_feed_factor(mass_kg: ArrayLike, ff_kg_rev: ArrayLike, *,
                    beta0_per_kg: float | None = None) -> FeedFactorFit:
    """Fit ff(M) to observed feed factors ``ff_kg_rev`` at hopper masses ``mass_kg`` (in time
    order, for the autocorrelation of the residuals). Non-finite or non-positive samples are
    dropped. ``beta0_per_kg``: the starting β (default 3 / the mass range)."""
    m = np.asarray(mass_kg, dtype=float)
    ff = np.asarray(ff_kg_rev, dtype=float)
    ok = np.isfinite(m) & np.isfinite(ff) & (ff > 0) & (m >= 0)
    m, ff = m[ok], ff[ok]
    if m.size < 8:
        raise ValueError(f"{m.size} load-cell samples: too few to fit a feed-factor curve")
    span = float(m.max() - m.min())
    if span <= 0:
        raise ValueError("the hopper mass never changed: the feed factor's curve is unknown")
    scale = float(ff.mean())
    b0 = beta0_per_kg if beta0_per_kg is not None else 3.0 / span
    top, bottom = np.quantile(ff[m >= np.quantile(m, 0.8)], 0.5), np.quantile(
        ff[m <= np.quantile(m, 0.2)], 0.5)
    q0 = [float(top), float(min(bottom, top) * 0.95), b0]

    def resid(q: np.ndarray) -> np.ndarray:
        return (feed_factor_curve(m, q[0], q[1], q[2]) - ff) / scale

    res = optimize.least_squares(resid, q0, bounds=([1e-12, 1e-12, 0.0], [np.inf] * 3),
                                 x_scale=[scale, scale, b0], method="trf")
    r = res.fun
    dof = m.size - 3
    rss = float(r @ r)
    rho, infl = residual_inflation(r)
    try:
        cov = np.linalg.inv(res.jac.T @ res.jac) * (rss / dof) * infl
    except np.linalg.LinAlgError:
        cov = np.full((3, 3), np.nan)
    se_v = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    tq = float(stats.t.ppf(0.975, dof))
    names = ["ff_max_kg_rev", "ff_min_kg_rev", "beta_per_kg"]
    q = res.x
    tss = float((((ff - ff.mean()) / scale) ** 2).sum())
    return FeedFactorFit(
        ff_max_kg_rev=float(q[0]), ff_min_kg_rev=float(q[1]), beta_per_kg=float(q[2]),
        se={k: float(v) for k, v in zip(names, se_v)},
        ci95={k: (float(q[i] - tq * se_v[i]), float(q[i] + tq * se_v[i]))
              for i, k in enumerate(names)},
        rel_rmse=math.sqrt(rss / m.size), r2=1.0 - rss / tss if tss > 0 else math.nan,
        n_obs=int(m.size), dof=int(dof), mass_range_kg=(float(m.min()), float(m.max())),
        residual_lag1=rho, converged=bool(res.success), message=str(res.message))
