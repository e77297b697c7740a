"""Diversion of non-conforming material: RTD-based windows, predicted-concentration windows and
the diversion gate with its mass accounting.

(a) RTD window rule (Engisch & Muzzio 2016, J Pharm Innov 11:64): a disturbance
    at the line input during [t0, t1] diverts the output during [t0 + t_α, t1 + t_(1−α)], t_q
    the q-quantile of the cumulative RTD F. Outside the window at most a fraction α of the
    disturbed input is in the output.
(b) Predicted-concentration rule: divert wherever the predicted output leaves
    [low + margin, high − margin], padded by ``time_margin_s`` on both sides (a margin for
    RTD-parameter uncertainty). Out-of-spec intervals are found by sampling at ``step_s``
    and refining both ends with Brent's method (tolerance as in
    :func:`darkfab.factory.rtd_predictor.first_exit_time`; where g turns NaN, e.g. a flow
    below its threshold, by bisection to the same tolerance); sampled local extrema close to
    a limit (within the second difference of the samples) are refined too, so that an
    excursion narrower than the step is not missed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable

import numpy as np
from numpy.typing import NDArray
from scipy import optimize

from darkfab.factory.rtd import RTD

__all__ = ["rtd_window", "scan_grid", "out_of_spec_intervals", "clear_of_limits",
           "merge_intervals", "DiversionGate"]

Interval = tuple[float, float]
ScalarFn = Callable[[NDArray[np.float64]], NDArray[np.float64]]


def rtd_window(rtd: RTD, t0: float, t1: float, alpha: float = 1e-3) -> Interval:
    """Output diversion window for an input disturbance on [t0, t1]: (t0 + t_α, t1 + t_(1−α))."""
    if not 0 < alpha < 0.5:
        raise ValueError("alpha must be in (0, 0.5)")
    return (t0 + float(rtd.quantile(alpha)), t1 + float(rtd.quantile(1 - alpha)))


def merge_intervals(intervals: list[Interval]) -> list[Interval]:
    """Union of intervals, sorted, overlapping or touching ones merged."""
    out: list[Interval] = []
    for a, b in sorted(intervals):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def scan_grid(t0: float, t1: float, step_s: float) -> NDArray[np.float64]:
    """The sampling times of :func:`out_of_spec_intervals`: [t0, t1] in equal steps ≤ step_s
    (the values of ``np.linspace(t0, t1, n)``, computed the same way without its overhead)."""
    n = max(2, math.ceil((t1 - t0) / step_s) + 1)
    d = float(t1) - float(t0)
    y = np.arange(n, dtype=float)
    if d / (n - 1) == 0.0:  # as np.linspace does for a step that underflows
        y /= n - 1
        y *= d
    else:
        y *= d / (n - 1)
    y += t0
    y[-1] = t1
    return y


def out_of_spec_intervals(g: ScalarFn, t0: float, t1: float, low: float, high: float,
                          step_s: float, xtol_s: float = 1e-9,
                          time_margin_s: float = 0.0,
                          values: NDArray[np.float64] | None = None,
                          grid: NDArray[np.float64] | None = None) -> list[Interval]:
    """Intervals within [t0, t1] where the vectorised scalar g is outside [low, high], padded by
    ``time_margin_s`` each side and merged. ``values``: g already evaluated on
    ``scan_grid(t0, t1, step_s)`` (g is then called only to refine crossings); ``grid``: that
    grid, if the caller has it."""
    ts = scan_grid(t0, t1, step_s) if grid is None else grid
    vs = g(ts) if values is None else values
    if vs.shape != ts.shape:
        raise ValueError("values must be g on scan_grid(t0, t1, step_s)")
    if clear_of_limits(vs, low, high):  # the usual case: nothing out of spec, nothing to refine
        return []
    bad = (vs < low) | (vs > high) | ~np.isfinite(vs)
    hidden = _hidden_excursions(g, ts, vs, bad, low, high, xtol_s)
    if not bad.any():
        return merge_intervals([(a - time_margin_s, b + time_margin_s) for a, b in hidden])

    def edge(i: int) -> float:  # crossing between samples i and i + 1
        vb = vs[i] if bad[i] else vs[i + 1]
        limit = high if vb > high else low
        fa, fb = vs[i] - limit, vs[i + 1] - limit
        if np.isfinite(vs[i]) != np.isfinite(vs[i + 1]):
            # g turns NaN (e.g. a flow below its threshold): bisect on "g is a number" to
            # xtol_s; the boundary is taken on the in-spec side
            a, b = float(ts[i]), float(ts[i + 1])
            fin_a = bool(np.isfinite(vs[i]))
            while b - a > xtol_s:
                mid = 0.5 * (a + b)
                if mid <= a or mid >= b:
                    break
                if bool(np.isfinite(g(np.array([mid]))[0])) == fin_a:
                    a = mid
                else:
                    b = mid
            return a if not bad[i] else b
        if not (np.isfinite(fa) and np.isfinite(fb)) or fa * fb > 0:
            return float(ts[i + 1] if bad[i + 1] else ts[i])
        return float(optimize.brentq(lambda x: float(g(np.array([x]))[0]) - limit,
                                     ts[i], ts[i + 1], xtol=xtol_s))

    d = np.diff(bad.astype(np.int8))
    starts = [t0] if bad[0] else []
    ends: list[float] = []
    for i in np.flatnonzero(d):
        (starts if d[i] > 0 else ends).append(edge(int(i)))
    if bad[-1]:
        ends.append(t1)
    return merge_intervals([(a - time_margin_s, b + time_margin_s)
                            for a, b in [*zip(starts, ends, strict=True), *hidden]])


def clear_of_limits(vs: NDArray[np.float64], low: float, high: float) -> bool:
    """Every sample is a number inside [low, high] and far enough from both limits that
    :func:`_hidden_excursions` refines nothing (its two early exits, computed the same way), so
    that :func:`out_of_spec_intervals` finds nothing: one min and one max (NaN if any sample is
    NaN, then ``False``) and, when that is not conclusive, the largest second difference."""
    if not vs.size:
        return True
    vmin, vmax = float(vs.min()), float(vs.max())
    if not (-math.inf < vmin and vmax < math.inf and low <= vmin and vmax <= high):
        return False
    if vs.size < 3:
        return True
    r = 2.0 * (vmax - vmin)
    if vmin - low >= r and high - vmax >= r:
        return True
    span = float(np.abs(vs[2:] - 2.0 * vs[1:-1] + vs[:-2]).max())  # NaN on overflow: False
    return vmin - low >= span and high - vmax >= span


def _hidden_excursions(g: ScalarFn, ts: NDArray[np.float64], vs: NDArray[np.float64],
                       bad: NDArray[np.bool_], low: float, high: float,
                       xtol_s: float) -> list[Interval]:
    """Excursions between samples: at a sampled local minimum (maximum) v_i inside spec, the
    parabola through the three samples dips below v_i by at most d²/8, d² = v_(i−1) − 2v_i +
    v_(i+1); where v_i is within |d²| (8× that bound) of a limit, g is minimised (maximised)
    on [t_(i−1), t_(i+1)] (bounded Brent, ``xtol_s``; the end samples with their one
    neighbour, as the grids of consecutive scans share them) and, if the extremum is beyond the
    limit, both crossings are found by Brent's method. Cheap when every sample is further
    than max |d²| from the limits (the usual case: no refinement at all)."""
    if vs.size < 3 or bad.all():
        return []
    if not bad.any():  # |d²| ≤ 2·(max − min): nothing to refine when that far from the limits
        vmin, vmax = float(vs.min()), float(vs.max())
        r = 2.0 * (vmax - vmin)
        if vmin - low >= r and high - vmax >= r:
            return []
    d2 = vs[2:] - 2.0 * vs[1:-1] + vs[:-2]
    slack = np.abs(d2)
    with np.errstate(invalid="ignore"):
        span = float(np.nanmax(slack)) if np.isfinite(slack).any() else np.inf
        if not (float(np.nanmin(vs)) - low < span or high - float(np.nanmax(vs)) < span):
            return []
        # the end samples count as extrema when the next sample inwards is further from the
        # limit (a dip in the first or last step), with the slack of their triple
        m = vs
        prev = np.concatenate([[np.nan], vs[:-1]])
        nxt = np.concatenate([vs[1:], [np.nan]])
        sl = np.concatenate([slack[:1], slack, slack[-1:]])
        inside = ~bad
        inside[1:] &= ~bad[:-1]
        inside[:-1] &= ~bad[1:]
        # NaN (beyond an end) compares False: "not beyond" is written as ~(x > y)
        cand_lo = inside & ~(m > prev) & ~(m > nxt) & (m - low < sl)
        cand_hi = inside & ~(m < prev) & ~(m < nxt) & (high - m < sl)
    g1 = lambda x: float(g(np.array([x]))[0])  # noqa: E731
    out: list[Interval] = []
    n = ts.size
    for j, sign, limit in [*((int(j), 1.0, low) for j in np.flatnonzero(cand_lo)),
                           *((int(j), -1.0, high) for j in np.flatnonzero(cand_hi))]:
        lo_t, hi_t = float(ts[max(j - 1, 0)]), float(ts[min(j + 1, n - 1)])
        r = optimize.minimize_scalar(lambda x: sign * g1(x), bounds=(lo_t, hi_t),
                                     method="bounded", options={"xatol": xtol_s})
        x = float(r.x)
        if not sign * (g1(x) - limit) < 0:
            continue
        fl = lambda t: g1(t) - limit  # noqa: E731
        out.append((float(optimize.brentq(fl, lo_t, x, xtol=xtol_s)),
                    float(optimize.brentq(fl, x, hi_t, xtol=xtol_s))))
    return out


class DiversionGate:
    """Two-position gate: accept (to the product stream) or divert (to waste), driven by
    scheduled diversion windows with a cause each. Mass passing the gate is routed with
    :meth:`route`, which splits the interval at window boundaries; totals per cause are kept.
    Overlapping windows: the cause of the earliest-starting window is charged."""

    def __init__(self) -> None:
        self.windows: list[tuple[float, float, Hashable]] = []
        self.accepted_kg = 0.0
        self.diverted_kg: dict[Hashable, float] = {}
        self.accepted_intervals: list[Interval] = []

    def add_window(self, a: float, b: float, cause: Hashable) -> None:
        if b > a:
            self.windows.append((float(a), float(b), cause))
            self.windows.sort(key=lambda w: (w[0], w[1]))

    def cause_at(self, t: float) -> Hashable | None:
        """Cause of diversion at t (None: accepting)."""
        for a, b, c in self.windows:
            if a <= t < b:
                return c
            if a > t:
                break
        return None

    def is_diverting(self, t: float) -> bool:
        return self.cause_at(t) is not None

    def next_switch_s(self, t: float) -> float:
        """Next time after t at which a window starts or ends (inf if none): the gate event."""
        times = [x for a, b, _ in self.windows for x in (a, b) if x > t]
        return min(times, default=math.inf)

    def route(self, a: float, b: float, mass_fn: Callable[[float, float], float]) -> None:
        """Route the output leaving in [a, b] (``mass_fn(x, y)`` = mass in [x, y], kg)."""
        cuts = sorted({a, b, *(x for w in self.windows for x in w[:2] if a < x < b)})
        for x, y in zip(cuts[:-1], cuts[1:]):
            m = float(mass_fn(x, y))
            c = self.cause_at(0.5 * (x + y))
            if c is None:
                self.accepted_kg += m
                if self.accepted_intervals and self.accepted_intervals[-1][1] == x:
                    self.accepted_intervals[-1] = (self.accepted_intervals[-1][0], y)
                else:
                    self.accepted_intervals.append((x, y))
            else:
                self.diverted_kg[c] = self.diverted_kg.get(c, 0.0) + m

    def prune(self, t: float) -> None:
        """Forget windows that ended before t (bounded memory)."""
        self.windows = [w for w in self.windows if w[1] >= t]

    @property
    def total_diverted_kg(self) -> float:
        return float(sum(self.diverted_kg.values()))
