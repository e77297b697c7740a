"""Random-variate samplers for durations (seconds) and other non-negative quantities.

A sampler draws in blocks of :data:`BLOCK` from its own numpy ``Generator`` and hands out one
value per call, which keeps the per-event cost low and stays reproducible: the values depend only
on the stream and the number of draws taken, never on when they were taken.

Parametrisations (all in seconds unless said):

* constant ``value``; exponential ``mean``; uniform ``low, high``; triangular ``low, mode, high``;
* normal ``mean, sd`` truncated to ``[low, high]`` (default ``[0, inf)``) by rejection;
* lognormal by ``mean`` and coefficient of variation ``cv``:
  σ² = ln(1 + cv²), μ = ln(mean) − σ²/2;
* gamma by ``mean`` and ``cv``: shape k = 1/cv², scale θ = mean·cv²;
* weibull ``shape`` β and ``scale`` η: mean η·Γ(1 + 1/β);
* empirical: discrete ``values`` with optional ``weights``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

__all__ = ["BLOCK", "Sampler", "make_sampler"]

BLOCK = 512


class Sampler:
    """Callable returning one variate per call from pre-drawn blocks."""

    __slots__ = ("_draw", "_buf", "_i", "mean", "name")

    def __init__(self, name: str, draw: Callable[[int], np.ndarray], mean: float) -> None:
        self.name = name
        self._draw = draw
        self._buf: list[float] = []
        self._i = 0
        self.mean = float(mean)

    def __call__(self) -> float:
        i = self._i
        if i >= len(self._buf):
            self._buf = self._draw(BLOCK).tolist()
            i = 0
        self._i = i + 1
        return self._buf[i]

    def __repr__(self) -> str:
        return f"Sampler({self.name!r}, mean={self.mean:g})"


def _truncnorm(rng: np.random.Generator, mean: float, sd: float, low: float, high: float):
    def draw(n: int) -> np.ndarray:
        out = np.empty(0)
        while out.size < n:
            x = rng.normal(mean, sd, size=2 * n)
            out = np.concatenate([out, x[(x >= low) & (x <= high)]])
        return out[:n]

    return draw


def _truncnorm_mean(mean: float, sd: float, low: float, high: float) -> float:
    from scipy.stats import truncnorm

    a = (low - mean) / sd
    b = (high - mean) / sd
    return float(truncnorm.mean(a, b, loc=mean, scale=sd))


def make_sampler(name: str, dist: str, params: dict[str, float | Sequence[float]],
                 rng: np.random.Generator) -> Sampler:
    """Build a sampler; ``params`` use the unit-free names listed in the module docstring."""
    p = params
    if dist == "constant":
        v = float(p["value"])
        return Sampler(name, lambda n: np.full(n, v), v)
    if dist == "exponential":
        m = float(p["mean"])
        return Sampler(name, lambda n: rng.exponential(m, n), m)
    if dist == "uniform":
        lo, hi = float(p["low"]), float(p["high"])
        return Sampler(name, lambda n: rng.uniform(lo, hi, n), (lo + hi) / 2)
    if dist == "triangular":
        lo, mo, hi = float(p["low"]), float(p["mode"]), float(p["high"])
        if lo == hi:
            return Sampler(name, lambda n: np.full(n, lo), lo)
        return Sampler(name, lambda n: rng.triangular(lo, mo, hi, n), (lo + mo + hi) / 3)
    if dist == "normal":
        m, sd = float(p["mean"]), float(p["sd"])
        lo, hi = float(p.get("low", 0.0)), float(p.get("high", math.inf))
        if sd == 0:
            return Sampler(name, lambda n: np.full(n, m), m)
        return Sampler(name, _truncnorm(rng, m, sd, lo, hi), _truncnorm_mean(m, sd, lo, hi))
    if dist == "lognormal":
        m, cv = float(p["mean"]), float(p["cv"])
        s2 = math.log1p(cv * cv)
        mu = math.log(m) - s2 / 2
        s = math.sqrt(s2)
        return Sampler(name, lambda n: rng.lognormal(mu, s, n), m)
    if dist == "gamma":
        m, cv = float(p["mean"]), float(p["cv"])
        k, theta = 1.0 / (cv * cv), m * cv * cv
        return Sampler(name, lambda n: rng.gamma(k, theta, n), m)
    if dist == "weibull":
        beta, eta = float(p["shape"]), float(p["scale"])
        return Sampler(name, lambda n: eta * rng.weibull(beta, n), eta * math.gamma(1 + 1 / beta))
    if dist == "empirical":
        vals = np.asarray(p["values"], dtype=float)
        w = p.get("weights")
        prob = None if w is None else np.asarray(w, dtype=float) / float(np.sum(w))
        mean = float(vals.mean() if prob is None else vals @ prob)
        return Sampler(name, lambda n: rng.choice(vals, size=n, p=prob), mean)
    raise ValueError(f"unknown distribution {dist!r}")
