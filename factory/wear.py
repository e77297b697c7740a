"""Punch wear of a rotary tablet press: a Gamma degradation process in operating time, its
observable symptom and a remaining-useful-life (RUL) estimate.

Model (van Noortwijk 2009, "A survey of the application of gamma processes in maintenance"):
wear W(u) in operating hours u since the last punch change is a stationary Gamma process,
W(0) = 0, independent increments W(u + Δ) − W(u) ~ Gamma(shape = a·Δ, scale = b), so
E[W(u)] = a·b·u and Var[W(u)] = a·b²·u. The path is drawn on a grid of ``step_h`` operating
hours (the increments over one step are exact; wear is held constant within a step) from one
named numpy stream. The punches break (a line breakdown) at the first grid time where W reaches
``threshold``; this time is known as soon as the path is drawn, so the line schedules it like
any other time to failure.

Symptom: the compression force needed for the set tablet thickness drifts with wear,
ΔF = ``force_per_wear_kn`` · W, read with Gaussian noise ``noise_sd_kn``. Condition monitoring
turns a reading back into a wear estimate Ŵ = ΔF_measured / ``force_per_wear_kn`` and a RUL

    RUL(Ŵ) = max(0, threshold − Ŵ) / (a·b)     (operating hours)

the time the mean wear rate a·b needs to use up the remaining margin (a plug-in estimate: it
ignores the spread of the Gamma increments, so with a small a it is optimistic for some paths;
the maintenance threshold on RUL is what absorbs that spread).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["WearParams", "PunchWear", "rul_hours"]


@dataclass(frozen=True)
class WearParams:
    shape_per_h: float  # a: Gamma shape per operating hour
    scale: float  # b: wear units (e.g. µm) per unit of shape
    threshold: float  # wear at which the punches break
    step_h: float = 0.25  # grid of the drawn path (operating hours)
    force_per_wear_kn: float = 1.0  # symptom gain: compression-force drift per unit of wear
    noise_sd_kn: float = 0.0  # measurement noise of the force drift

    @property
    def mean_rate_per_h(self) -> float:
        """a·b: mean wear per operating hour."""
        return self.shape_per_h * self.scale


def rul_hours(wear: float, p: WearParams) -> float:
    """RUL(Ŵ) = max(0, threshold − Ŵ) / (a·b) operating hours (module docstring)."""
    return max(0.0, p.threshold - wear) / p.mean_rate_per_h


class PunchWear:
    """One set of punches; :meth:`replace` fits new ones (wear 0) and draws their path."""

    def __init__(self, params: WearParams, rng: np.random.Generator,
                 noise_rng: np.random.Generator | None = None,
                 max_steps: int = 1_000_000) -> None:
        self.p = params
        self.rng = rng
        self.noise_rng = noise_rng
        self.max_steps = max_steps
        self.replace()

    def replace(self) -> None:
        """New punches: draw the path until it reaches the threshold."""
        p = self.p
        k = p.shape_per_h * p.step_h
        chunk = max(16, int(2 * p.threshold / (p.mean_rate_per_h * p.step_h)) + 1)
        parts, total, n = [], 0.0, 0
        while total < p.threshold and n < self.max_steps:
            inc = self.rng.gamma(k, p.scale, size=chunk)
            parts.append(inc)
            total += float(inc.sum())
            n += chunk
        path = np.cumsum(np.concatenate(parts))
        i = int(np.searchsorted(path, p.threshold, side="left"))  # first path[i] >= threshold
        self.path = path[: i + 1]
        # path[j] is the wear from (j + 1)·step on; breakage at the step where it crosses
        self.life_s = (i + 1) * p.step_h * 3600.0 if i < len(path) else math.inf

    def wear_at(self, op_s: float) -> float:
        """True wear after ``op_s`` operating seconds on these punches."""
        j = int(math.floor(op_s / (self.p.step_h * 3600.0) + 1e-9))
        if j <= 0:
            return 0.0
        return float(self.path[min(j, len(self.path)) - 1])

    def measure_force_drift_kn(self, op_s: float) -> float:
        """A reading of the compression-force drift (kN): gain · wear + noise."""
        x = self.p.force_per_wear_kn * self.wear_at(op_s)
        if self.noise_rng is not None and self.p.noise_sd_kn > 0:
            x += float(self.noise_rng.normal(0.0, self.p.noise_sd_kn))
        return x

    def estimate(self, force_drift_kn: float) -> tuple[float, float]:
        """(Ŵ, RUL in operating hours) from a force-drift reading."""
        w = max(0.0, force_drift_kn / self.p.force_per_wear_kn)
        return w, rul_hours(w, self.p)
