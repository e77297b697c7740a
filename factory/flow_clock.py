"""Throughput time: residence time distributions measured in material passed, not clock time.

Powder in a continuous blender and a press feed frame moves only while the line flows: when
the line stops or holds, the hold-up stays in place, and a restart resumes with it. The usual
way to model flow that starts and stops is an RTD in throughput (mass passed) rather than in
clock time (Engisch & Muzzio 2016, J Pharm Innov 11:64). Here the line's RTD predictors run on
a *flow time* θ with

    dθ/dt = r(t),   r = (ṁ/ṁ₀) · (N/N₀)^b   while the line flows,   r = 0   while it is paused,

ṁ the commanded mass flow (ṁ₀ the nominal one the RTD was built at) and N the blender impeller
speed. At a constant hold-up the mean residence time is τ = H/ṁ (Levenspiel 1999), so time scales as
1/ṁ; the factor (N/N₀)^b carries the blender's hold-up law H ∝ N^(−b) (Vanarase & Muzzio 2011,
Powder Technol 208:26) — an approximation that stretches the whole line RTD, not only the
blender's part. With r = 1 throughout, θ = t and the outputs are those of a clock-time RTD.

:class:`FlowLaw` is the rate law with a hold-up that also grows with the mass flow,
H ∝ ṁ^a·N^(−b): τ = H/ṁ ∝ ṁ^(a−1)·N^(−b), so r = (ṁ/ṁ₀)^(1−a)·(N/N₀)^b (a = 0: the law above).
A plant whose true exponents differ from its model's (docs/twin.md) runs on its own clock.

:class:`FlowClock` is the map t → θ (piecewise linear, non-decreasing); :class:`FlowTimePredictor`
wraps an :class:`~darkfab.factory.rtd_predictor.RTDPredictor` so that its owner keeps working in
clock time: inputs (kg/s of clock time) are pushed at θ(t) as kg per flow-second (÷ r), masses
between clock times are the predictor's masses between their flow times (mass does not depend
on the time axis), and outputs are flows per flow-second (the flow the line delivers at its
commanded rate; × r gives kg/s of clock time).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from .rtd_predictor import RTDPredictor

__all__ = ["FlowClock", "FlowLaw", "FlowTimePredictor", "PAUSED_TOLERANCE_KG_S"]

PAUSED_TOLERANCE_KG_S = 1e-12
"""Input flows a paused line may see from rounding (a refill's mass differences): dropped."""


@dataclass(frozen=True)
class FlowLaw:
    """dθ/dt of a line: r = (ṁ/ṁ₀)^(1−a)·(N/N₀)^b while it flows, 0 while it stands (module
    docstring). ``speed_exponent`` b: hold-up H ∝ N^(−b); ``flow_exponent`` a: H ∝ ṁ^a (0: a
    hold-up independent of the mass flow, τ ∝ 1/ṁ)."""

    speed_exponent: float = 0.0
    flow_exponent: float = 0.0

    def rate(self, flow_ratio: float, speed_ratio: float, flowing: bool) -> tuple[float, float]:
        """(r, g) at ṁ/ṁ₀ = ``flow_ratio`` and N/N₀ = ``speed_ratio``: g = r/(ṁ/ṁ₀) is the part
        of r not proportional to the mass flow (:meth:`FlowClock.set_rate`), kept while the
        line stands (r = 0)."""
        g = speed_ratio ** self.speed_exponent
        if self.flow_exponent and flow_ratio > 0:
            g *= flow_ratio ** -self.flow_exponent
        return (flow_ratio * g if flowing else 0.0), g


class FlowClock:
    """Flow time θ(t) with dθ/dt = r piecewise constant (see the module docstring).

    Args:
        t0: clock time (s) at which θ = t0 and the rate is ``rate``.
        rate: initial rate r (dimensionless, ≥ 0).
    """

    __slots__ = ("_t", "_th", "_r", "_g", "_arrays")

    def __init__(self, t0: float = 0.0, rate: float = 1.0) -> None:
        self._t = [float(t0)]
        self._th = [float(t0)]
        self._r = [float(rate)]
        self._g = [1.0]
        self._arrays: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def rate(self) -> float:
        """The present rate r."""
        return self._r[-1]

    @property
    def speed_factor(self) -> float:
        """The present g = r/(ṁ/ṁ₀): (N/N₀)^b (× (ṁ/ṁ₀)^(−a), :class:`FlowLaw`)."""
        return self._g[-1]

    @property
    def is_identity(self) -> bool:
        """Whether θ = t so far (one rate, 1, since t0 = 0)."""
        return len(self._t) == 1 and self._r[0] == 1.0 and self._t[0] == self._th[0]

    def set_rate(self, t: float, rate: float, speed_factor: float = 1.0) -> None:
        """The rate is ``rate`` from ``t`` (≥ the last change) on; ``speed_factor`` is the part
        of it not proportional to the mass flow, g = r/(ṁ/ṁ₀) (kept for :meth:`speed_factors`:
        the flow per flow-second at the commanded rate is ṁ₀/g)."""
        t = float(t)
        if t < self._t[-1]:
            raise ValueError(f"rate change at {t} before the last one ({self._t[-1]})")
        if rate < 0:
            raise ValueError("the flow-time rate must be >= 0")
        if t == self._t[-1]:
            self._r[-1], self._g[-1] = float(rate), float(speed_factor)
        else:
            self._th.append(self.theta(t))
            self._t.append(t)
            self._r.append(float(rate))
            self._g.append(float(speed_factor))
        self._arrays = None

    def theta(self, t: float) -> float:
        """θ(t) for t ≥ the oldest retained change."""
        k = bisect.bisect_right(self._t, t) - 1
        k = max(k, 0)
        return self._th[k] + self._r[k] * (t - self._t[k])

    def unit_rate_since(self, t: float) -> bool:
        """Whether r = 1 from ``t`` on (the last change at or before ``t``, to rate 1)."""
        return self._r[-1] == 1.0 and t >= self._t[-1]

    def thetas(self, ts: ArrayLike) -> np.ndarray:
        """θ at each of ``ts`` (vectorised)."""
        ts = np.asarray(ts, dtype=float)
        if len(self._t) == 1:
            return self._th[0] + self._r[0] * (ts - self._t[0])
        t, th = self._np()
        out = np.interp(ts, t, th)
        last = ts > t[-1]
        if last.any():
            out[last] = th[-1] + self._r[-1] * (ts[last] - t[-1])
        return out

    def rates(self, ts: ArrayLike) -> np.ndarray:
        """r at each of ``ts`` (right-continuous: the rate from a change on)."""
        return self._piecewise(self._r, ts)

    def speed_factors(self, ts: ArrayLike) -> np.ndarray:
        """g = r/(ṁ/ṁ₀) at each of ``ts`` ((N/N₀)^b with a = 0, :class:`FlowLaw`)."""
        return self._piecewise(self._g, ts)

    def _piecewise(self, values: list[float], ts: ArrayLike) -> np.ndarray:
        """The piecewise-constant ``values`` (one per change) at each of ``ts``."""
        ts = np.asarray(ts, dtype=float)
        if len(self._t) == 1:
            return np.full(ts.shape, values[0])
        k = np.maximum(np.searchsorted(self._np()[0], ts, side="right") - 1, 0)
        return np.asarray(values)[k]

    def uniform_speed(self) -> bool:
        """Whether the speed factor has been 1 over the retained history."""
        return all(g == 1.0 for g in self._g)

    def time_of(self, theta: float) -> float:
        """The earliest clock time with θ(t) ≥ ``theta`` (θ may stand still while paused)."""
        k = bisect.bisect_left(self._th, theta)
        if k < len(self._th) and self._th[k] == theta:
            return self._t[k]
        k -= 1
        if k < 0:
            return self._t[0] - (self._th[0] - theta) / max(self._r[0], 1e-300)
        return self._t[k] + (theta - self._th[k]) / self._r[k] if self._r[k] > 0 else self._t[k]

    def prune(self, theta: float) -> None:
        """Forget changes no longer needed to map flow times ≥ ``theta`` (bounded memory)."""
        n = 0
        while n + 1 < len(self._t) and self._th[n + 1] <= theta:
            n += 1
        if n:
            del self._t[:n], self._th[:n], self._r[:n], self._g[:n]
            self._arrays = None

    def _np(self) -> tuple[np.ndarray, np.ndarray]:
        if self._arrays is None:
            self._arrays = (np.asarray(self._t), np.asarray(self._th))
        return self._arrays


class FlowTimePredictor:
    """An :class:`RTDPredictor` on flow time, addressed in clock time (module docstring).

    Args:
        predictor: the predictor, its times being flow times.
        clock: the line's flow clock.
        strict: refuse (``ValueError``) an input above :data:`PAUSED_TOLERANCE_KG_S` pushed
            while r = 0: a mass flow into a paused unit would be lost (component flows);
            otherwise such inputs are zeroed (lot flows, which carry only proportions).
        lookback_s: clock time (s) behind the latest input within which outputs must stay
            exact (scans, routing lag): the predictor keeps max(its ``retain_s``,
            θ(t) − θ(t − lookback_s)) of flow time, the flow time that actually passed, not a
            bound for the highest rate allowed. ``None``: its ``retain_s`` alone.
        keep_from: with ``lookback_s``, the earliest clock time whose outputs must also stay
            exact, asked at each input (e.g. the start of the output not yet made into a unit,
            however long ago): the history reaches back to it too.
    """

    def __init__(self, predictor: RTDPredictor, clock: FlowClock, strict: bool = True,
                 lookback_s: float | None = None,
                 keep_from: Callable[[], float] | None = None) -> None:
        self.p = predictor
        self.clock = clock
        self.strict = strict
        self.lookback_s = lookback_s
        self.keep_from = keep_from
        self._floor_s = predictor.retain_s  # the flow-time history kept at the least

    def retain_at(self, t: float) -> float:
        """Flow time (s) kept behind an input at clock time ``t``."""
        if self.lookback_s is None:
            return self._floor_s
        start = t - self.lookback_s
        if self.keep_from is not None:
            start = min(start, self.keep_from())
        clock = self.clock
        return max(self._floor_s, clock.theta(t) - clock.theta(start))

    def _retain(self, t: float) -> None:
        if self.lookback_s is not None:
            self.p.set_retain(self.retain_at(t))

    @property
    def channels(self) -> list[Hashable]:
        return self.p.channels

    @property
    def retain_s(self) -> float:
        return self.p.retain_s

    @property
    def valid_from(self) -> float:
        """The earliest clock time at which outputs are exact."""
        return self.clock.time_of(self.p.valid_from)

    @property
    def valid_from_theta(self) -> float:
        return self.p.valid_from

    def channel(self, key: Hashable) -> int:
        return self.p.channel(key)

    def _per_flow_time(self, t: np.ndarray, v: np.ndarray) -> np.ndarray:
        if self.clock.unit_rate_since(float(t.min())):  # ÷ 1: the values themselves
            return v
        r = self.clock.rates(t)
        paused = r <= 0.0
        if paused.any():
            if self.strict and np.any(v[paused] > PAUSED_TOLERANCE_KG_S):
                raise ValueError("a mass flow into the line while it is paused (r = 0)")
            r = np.where(paused, np.inf, r)
        return v / r[:, None]

    def push(self, t: float, values: Mapping[Hashable, float] | Sequence[float]) -> None:
        self._retain(t)
        r = self.clock.rates([t])[0]
        if isinstance(values, Mapping):
            inv = 1.0 / r if r > 0 else 0.0
            if r <= 0 and self.strict and any(x > PAUSED_TOLERANCE_KG_S for x in values.values()):
                raise ValueError("a mass flow into the line while it is paused (r = 0)")
            self.p.push(self.clock.theta(t), {k: x * inv for k, x in values.items()}
                        if inv != 1.0 else values)
        else:
            self.push_many([t], np.asarray(values, dtype=float)[None, :])

    def push_many(self, starts: ArrayLike, values) -> None:
        s = np.asarray(starts, dtype=float)
        if s.size:
            self._retain(float(s[-1]))
        if isinstance(values, np.ndarray):
            v = values if self.clock.is_identity else self._per_flow_time(s, values)
            self.p.push_many(self.clock.thetas(s), v)
            return
        r = self.clock.rates(s)
        rows = []
        for rk, row in zip(r.tolist(), values):
            inv = 1.0 / rk if rk > 0 else 0.0
            if rk <= 0 and self.strict and any(x > PAUSED_TOLERANCE_KG_S for x in row.values()):
                raise ValueError("a mass flow into the line while it is paused (r = 0)")
            rows.append(row if inv == 1.0 else {k: x * inv for k, x in row.items()})
        self.p.push_many(self.clock.thetas(s), rows)

    def output(self, t: ArrayLike) -> np.ndarray:
        """Output flows per flow-second at clock times ``t`` (× r: kg/s of clock time)."""
        return self.p.output(self.clock.thetas(t))

    def output_with(self, t: ArrayLike, starts: np.ndarray, values: np.ndarray) -> np.ndarray:
        """:meth:`RTDPredictor.output_with` for inputs ``values`` (kg/s of clock time) from clock
        times ``starts`` on, at the present rate (a projection: no command in between)."""
        return self.p.output_with(self.clock.thetas(t), self.clock.thetas(starts),
                                  self._per_flow_time(np.asarray(starts, dtype=float), values))

    def output_masses(self, cuts: ArrayLike) -> np.ndarray:
        """Mass leaving between consecutive clock times ``cuts``, per channel."""
        return self.p.output_masses(self.clock.thetas(cuts))

    def holdup(self, t: float) -> np.ndarray:
        return self.p.holdup(self.clock.theta(t))

    def lot_fractions(self, a: float, b: float) -> dict[Hashable, float]:
        ta, tb = self.clock.theta(a), self.clock.theta(b)
        return self.p.lot_fractions(ta, tb) if tb > ta else {}
