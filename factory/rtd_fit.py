"""Estimate a residence time distribution from a tracer experiment: least squares on the
convolution of the known input with a tanks-in-series (gamma) RTD, optionally in series with a
known stage.

A tracer on a continuous line is a change of the inlet composition x_in(θ) (a step or a pulse
of one feeder's set-point). The unit is linear and time-invariant in flow time θ
(:mod:`darkfab.factory.flow_clock`), so the outlet composition is the input convolved with the
RTD (Levenspiel, *Chemical Reaction Engineering*, 3rd ed., Wiley 1999, ch. 11):

    y(θ) = b + g·Σ_k Δx_k·F(θ − θ_k),

Δx_k the input's change at θ_k (a pulse is two steps), F the cumulative RTD, b the baseline
(the composition before the first change, plus any sensor bias) and g the sensor's gain (1 for
a calibrated analyser). F is the gamma law of the tanks-in-series model,
F(t) = P(n, n·t/τ) (regularised lower incomplete gamma; mean τ, variance τ²/n), or that law
convolved with a known stage's E (the press feed frame), computed on a grid (midpoint rule in
the known stage's mass, error O(h²) with h ≤ σ/40).

Parameters (τ, n, b, g) by :func:`scipy.optimize.least_squares` (trust region reflective,
bounds τ, n > 0). Standard errors from the Jacobian at the optimum, cov = s²·(JᵀJ)⁻¹ with
s² = RSS/(N − p) (Bates & Watts, *Nonlinear Regression Analysis*, Wiley 1988, ch. 2), inflated
by 1 + 2·Σρ_k over the residuals' initial positive autocorrelations (feed noise smoothed by the
RTD correlates neighbouring readings: the long-run variance of the errors over their variance,
Geyer 1992, Stat Sci 7:473). 95 % intervals are ±t₀.₉₇₅·SE.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike
from scipy import optimize, signal, special, stats

from .rtd import RTD

__all__ = ["RTDFit", "tanks_cdf", "step_response", "fit_tanks_in_series",
           "residual_inflation"]


def tanks_cdf(t: ArrayLike, tau_s: float, n: float) -> np.ndarray:
    """F(t) of n tanks in series with mean τ (gamma law, shape n, scale τ/n); 0 for t ≤ 0."""
    x = np.asarray(t, dtype=float)
    return np.where(x > 0, special.gammainc(n, n * np.maximum(x, 0.0) / tau_s), 0.0)


class _SeriesCdf:
    """F of a gamma(τ, n) stage in series with a known ``fixed`` stage, on a uniform grid of
    step h over [0, T] (beyond T, F = 1): F(jh) = Σ_m w_m·F_gamma((j − m − ½)h), w_m the mass
    of the fixed stage in [mh, (m + 1)h] (midpoint rule, error O(h²))."""

    def __init__(self, fixed: RTD, h: float, t_max: float) -> None:
        self.h = h
        self.m = int(math.ceil(t_max / h)) + 1
        edges = np.arange(self.m + 1) * h
        self.w = np.diff(np.clip(fixed.cdf(edges), 0.0, 1.0))
        self.fixed = fixed

    def __call__(self, lags: np.ndarray, tau_s: float, n: float) -> np.ndarray:
        k = np.arange(self.m)
        g = tanks_cdf((k - 0.5) * self.h, tau_s, n)
        f = signal.fftconvolve(g, self.w)[:self.m]
        f[0] = 0.0
        f = np.clip(f, 0.0, 1.0)
        grid = k * self.h
        out = np.interp(lags, grid, f, left=0.0, right=np.nan)
        beyond = lags > grid[-1]
        if beyond.any():  # past the grid: the gamma's own F times the fixed stage's (≈ 1)
            out[beyond] = tanks_cdf(lags[beyond] - self.fixed.mean_s, tau_s, n)
        return out


def step_response(theta: ArrayLike, steps_theta: Sequence[float], steps_delta: Sequence[float],
                  tau_s: float, n: float, fixed: RTD | None = None) -> np.ndarray:
    """Σ_k Δx_k·F(θ − θ_k) at each θ: the output's change for input steps Δx_k at θ_k
    (tanks in series, in series with ``fixed`` if given)."""
    th = np.asarray(theta, dtype=float)
    st = np.asarray(steps_theta, dtype=float)
    dx = np.asarray(steps_delta, dtype=float)
    lags = th[:, None] - st[None, :]
    if fixed is None:
        f = tanks_cdf(lags, tau_s, n)
    else:
        sd = min(fixed.std_s, tau_s / math.sqrt(n))
        cdf = _SeriesCdf(fixed, sd / 40.0, tau_s * (1.0 + 16.0 / math.sqrt(n)) + fixed.tail_s)
        f = cdf(lags.ravel(), tau_s, n).reshape(lags.shape)
    return f @ dx


@dataclass(frozen=True)
class RTDFit:
    """A fitted tanks-in-series RTD: τ (s), n, baseline b and gain g with standard errors and
    95 % intervals, and the goodness of fit (RMSE, R², readings used, degrees of freedom)."""

    tau_s: float
    n: float
    offset: float
    gain: float
    se: dict[str, float]
    ci95: dict[str, tuple[float, float]]
    rmse: float
    r2: float
    n_obs: int
    dof: int
    residual_lag1: float  # lag-1 autocorrelation of the residuals (in reading order)
    converged: bool
    message: str
    correlation: dict[str, float] = field(default_factory=dict)  # "tau_s:n" → corr

    @property
    def variance_s2(self) -> float:
        """Variance of the fitted stage's residence time, τ²/n (s²)."""
        return self.tau_s ** 2 / self.n


def residual_inflation(residuals: np.ndarray, max_lag: int = 200) -> tuple[float, float]:
    """(ρ₁, factor): the residuals' lag-1 autocorrelation and the variance inflation
    1 + 2·Σ_k ρ_k applied to the covariance, summed over the initial run of positive
    autocorrelations (at most ``max_lag``; Geyer 1992, Stat Sci 7:473): the long-run variance
    of correlated errors over their variance. 1 for uncorrelated residuals."""
    r = residuals - residuals.mean()
    den = float(r @ r)
    if r.size < 3 or den == 0.0:
        return 0.0, 1.0
    rho1 = float(r[1:] @ r[:-1]) / den
    total = 0.0
    for k in range(1, min(max_lag, r.size - 1) + 1):
        rho = float(r[k:] @ r[:-k]) / den
        if rho <= 0.0:
            break
        total += rho
    return rho1, 1.0 + 2.0 * total


def fit_tanks_in_series(theta: ArrayLike, y: ArrayLike, steps_theta: Sequence[float],
                        steps_delta: Sequence[float], *, tau0_s: float, n0: float = 3.0,
                        fixed: RTD | None = None, fit_gain: bool = True) -> RTDFit:
    """Fit y(θ) = b + g·Σ_k Δx_k·F(θ − θ_k; τ, n) to the readings ``y`` at flow times
    ``theta`` (module docstring).

    Args:
        theta: flow times of the readings (s).
        y: readings (e.g. API content, fraction of label claim); NaN readings are dropped.
        steps_theta, steps_delta: the known input's changes (flow time, size).
        tau0_s, n0: the starting point (the model's nominal values).
        fixed: a known stage in series with the fitted one (its RTD), or None.
        fit_gain: fit the gain g (else g = 1).

    Raises:
        ValueError: too few readings, or an input with no change.
    """
    th = np.asarray(theta, dtype=float)
    yy = np.asarray(y, dtype=float)
    ok = np.isfinite(th) & np.isfinite(yy)
    th, yy = th[ok], yy[ok]
    st = np.asarray(steps_theta, dtype=float)
    dx = np.asarray(steps_delta, dtype=float)
    if st.size == 0 or not np.any(dx != 0.0):
        raise ValueError("the input has no change: a tracer step or pulse is needed")
    p = 4 if fit_gain else 3
    if th.size < p + 5:
        raise ValueError(f"{th.size} readings: too few to fit {p} parameters")
    order = np.argsort(th, kind="stable")
    th, yy = th[order], yy[order]
    # the lag matrix and, with a fixed stage, its grid for the whole fit (a fixed h keeps the
    # residuals smooth in τ and n for the finite-difference Jacobian)
    lags = (th[:, None] - st[None, :]).ravel()
    cdf = None
    if fixed is not None:
        sd = min(fixed.std_s, tau0_s / math.sqrt(max(n0, 1.0)))
        cdf = _SeriesCdf(fixed, sd / 40.0, 20.0 * tau0_s + fixed.tail_s)

    def response(tau: float, n: float) -> np.ndarray:
        f = tanks_cdf(lags, tau, n) if cdf is None else cdf(lags, tau, n)
        return f.reshape(th.size, st.size) @ dx

    def resid(q: np.ndarray) -> np.ndarray:
        g = q[3] if fit_gain else 1.0
        return q[2] + g * response(q[0], q[1]) - yy

    pre = th < st.min()
    b0 = float(np.median(yy[pre])) if pre.sum() >= 3 else float(np.median(yy))
    q0 = [tau0_s, n0, b0] + ([1.0] if fit_gain else [])
    lo = [1e-3 * tau0_s, 0.2, -np.inf] + ([-np.inf] if fit_gain else [])
    hi = [1e3 * tau0_s, 500.0, np.inf] + ([np.inf] if fit_gain else [])
    res = optimize.least_squares(resid, q0, bounds=(lo, hi), x_scale="jac", method="trf")
    r = res.fun
    dof = th.size - p
    rss = float(r @ r)
    s2 = rss / dof
    rho, infl = residual_inflation(r)
    names = ["tau_s", "n", "offset", "gain"][:p]
    J = res.jac
    try:
        cov = np.linalg.inv(J.T @ J) * s2 * infl
    except np.linalg.LinAlgError:
        cov = np.full((p, p), np.nan)
    se_v = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    tq = float(stats.t.ppf(0.975, dof))
    q = res.x
    se = {k: float(v) for k, v in zip(names, se_v)}
    ci = {k: (float(q[i] - tq * se_v[i]), float(q[i] + tq * se_v[i])) for i, k in enumerate(names)}
    if not fit_gain:
        se["gain"], ci["gain"] = 0.0, (1.0, 1.0)
    tss = float(((yy - yy.mean()) ** 2).sum())
    corr = float(cov[0, 1] / (se_v[0] * se_v[1])) if se_v[0] > 0 and se_v[1] > 0 else math.nan
    return RTDFit(tau_s=float(q[0]), n=float(q[1]), offset=float(q[2]),
                  gain=float(q[3]) if fit_gain else 1.0, se=se, ci95=ci,
                  rmse=math.sqrt(rss / th.size), r2=1.0 - rss / tss if tss > 0 else math.nan,
                  n_obs=int(th.size), dof=int(dof), residual_lag1=rho,
                  converged=bool(res.success), message=str(res.message),
                  correlation={"tau_s:n": corr})
