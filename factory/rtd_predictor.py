"""Event-driven output prediction through an RTD: piecewise-constant inputs, exact convolution.

Inputs are pushed as piecewise-constant segments when they change: segment i holds the value
vector c_i (one entry per *channel*: a raw-material lot, a component, …) from s_i until the next
push at e_i (the last segment is open, e = ∞, i.e. the present input is assumed to persist).
For a linear, time-invariant unit with cumulative RTD F (Levenspiel, *Chemical Reaction
Engineering*, 3rd ed., Wiley 1999, ch. 11)

    y(t) = Σ_i c_i·[F(t − s_i) − F(t − e_i)]                         (output rate/concentration)
    Y(a, b) = Σ_i c_i·[I(b − s_i) − I(b − e_i) − I(a − s_i) + I(a − e_i)],  I(x) = ∫₀ˣ F

(Y is the output mass leaving in [a, b] when channels are mass flows, kg/s). Nothing is stepped
in time: y and Y are evaluated at any time, in any order.

Bounded cost: a segment that ended more than ``rtd.tail_s + retain_s`` ago has left the unit
(weight 1 − F < ``rtd.tail_tol``) and is dropped; its input mass c_i·(e_i − s_i) is credited to
the output exactly. Evaluation costs O(live segments × channels) per time point, and the number
of live segments is bounded by (tail + retain)/(shortest segment).

Threshold crossings: :func:`first_exit_time` samples a scalar output at a step derived from the
RTD (``resolution``·σ, default σ/20) and refines the first sample outside [low, high] with
Brent's method (``xtol``, default 1e-6·σ). An excursion shorter than the sampling step whose
peak beyond the limit is below ~max|y''|·step²/8 can be missed; that is the stated tolerance.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import optimize

from darkfab.factory.rtd import RTD

__all__ = ["RTDPredictor", "first_exit_time"]

FloatArray = NDArray[np.float64]
_NO_STEPS = np.zeros(0)
ScalarFn = Callable[[FloatArray], FloatArray]


def first_exit_time(g: ScalarFn, t0: float, t1: float, low: float, high: float, step_s: float,
                    xtol_s: float = 1e-9, chunk: int = 256) -> float | None:
    """First time in (t0, t1] where the scalar ``g`` (vectorised over time) leaves [low, high].

    ``g`` is sampled every ``step_s`` (the last sample at t1) in chunks; the first sample
    outside is refined by Brent's method on the violated limit to ``xtol_s``. If g(t0) is
    already outside, returns t0. Returns None when no sample is outside.
    """
    if step_s <= 0:
        raise ValueError("step_s must be positive")
    if not t1 > t0:
        return None
    n_total = max(1, math.ceil((t1 - t0) / step_s))
    prev_t, prev_v = t0, math.nan
    for k0 in range(1, n_total + 1, chunk):
        k = np.arange(k0, min(k0 + chunk, n_total + 1))
        ts = np.minimum(t0 + k * step_s, t1)
        if k0 == 1:  # g(t0) in the same call as the first chunk
            vs = g(np.concatenate([[t0], ts]))
            prev_v, vs = float(vs[0]), vs[1:]
            if not (low <= prev_v <= high):
                return t0
        else:
            vs = g(ts)
        bad = np.flatnonzero((vs < low) | (vs > high) | ~np.isfinite(vs))
        if bad.size:
            j = int(bad[0])
            a = prev_t if j == 0 else float(ts[j - 1])
            b = float(ts[j])
            limit = high if vs[j] > high else low
            va = (prev_v if j == 0 else float(vs[j - 1])) - limit
            if not np.isfinite(vs[j]) or va == 0.0:
                return b if va != 0.0 else a
            return float(optimize.brentq(lambda x: float(g(np.array([x]))[0]) - limit, a, b,
                                         xtol=xtol_s))
        prev_t, prev_v = float(ts[-1]), float(vs[-1])
    return None


class RTDPredictor:
    """Output of one RTD unit for piecewise-constant, multi-channel inputs (see module doc).

    ``push(t, values)`` starts a new input segment at t (values: mapping channel → value, missing
    channels are 0, or a sequence in channel order); ``push_many`` pushes several at once.
    Channels are created on first use; their order is ``channels``. Times must not go back.

    Storage: the live segments' starts and values are rows of preallocated numpy arrays (a
    buffer that is compacted when its dead head reaches half of it), so a push costs O(channels)
    and an evaluation is one vectorised kernel. Outputs use the telescoped (step) form of the
    sums of the module doc, Σ_i c_i·[F(t − s_i) − F(t − e_i)] = Σ_i Δc_i·F(t − s_i) with
    Δc_i = c_i − c_(i−1) (c before the first live segment taken as 0): one RTD evaluation per
    live segment instead of two.
    """

    def __init__(self, rtd: RTD, *, t0: float = 0.0, retain_s: float = 0.0) -> None:
        self.rtd = rtd
        self.retain_s = float(retain_s)
        self.channels: list[Hashable] = []
        self._index: dict[Hashable, int] = {}
        self._s = np.empty(64)  # starts of the live segments are _s[_h:_n]
        self._v = np.zeros((64, 0))  # their values, one column per channel
        self._h = 0
        self._n = 0
        self._exited = np.zeros(0)  # input mass of dropped segments, per channel
        self._input_closed = np.zeros(0)  # input mass of all closed segments, per channel
        self._t_last = float(t0)
        self.valid_from = float(t0)  # earliest time at which outputs are still exact
        self._cache: tuple[FloatArray, FloatArray] | None = None
        self._cdf_outer, self._cdf_integral_outer = rtd.cdf_outer, rtd.cdf_integral_outer
        self._horizon_lag = rtd.tail_s + self.retain_s

    def set_retain(self, retain_s: float) -> None:
        """Keep ``retain_s`` of history behind the latest input from the next push on."""
        self.retain_s = float(retain_s)
        self._horizon_lag = self.rtd.tail_s + self.retain_s

    # --- input ------------------------------------------------------------------------------
    def channel(self, key: Hashable) -> int:
        """The column of channel ``key``, created on first use."""
        return self._channel(key)

    def _channel(self, key: Hashable) -> int:
        i = self._index.get(key)
        if i is None:
            i = self._index[key] = len(self.channels)
            self.channels.append(key)
            self._exited = np.append(self._exited, 0.0)
            self._input_closed = np.append(self._input_closed, 0.0)
            self._v = np.concatenate([self._v, np.zeros((self._v.shape[0], 1))], axis=1)
            self._cache = None
        return i

    def _row(self, values: Mapping[Hashable, float] | Sequence[float]) -> FloatArray:
        if isinstance(values, Mapping):
            idx = [(self._channel(k), float(v)) for k, v in values.items()]
            row = np.zeros(len(self.channels))
            for i, v in idx:
                row[i] = v
            return row
        while len(self.channels) < len(values):
            self._channel(len(self.channels))
        row = np.zeros(len(self.channels))
        row[:len(values)] = np.asarray(values, dtype=float)
        return row

    def _reserve(self, k: int) -> None:
        """Room for k more rows: compact the dead head, grow ×2 when still short."""
        cap = self._s.shape[0]
        if self._n + k <= cap:
            return
        live = self._n - self._h
        new_cap = cap if live + k <= cap // 2 else max(2 * cap, 2 * (live + k))
        s = np.empty(new_cap)
        v = np.zeros((new_cap, self._v.shape[1]))
        s[:live] = self._s[self._h:self._n]
        v[:live] = self._v[self._h:self._n]
        self._s, self._v, self._h, self._n = s, v, 0, live

    def push(self, t: float, values: Mapping[Hashable, float] | Sequence[float]) -> None:
        """A new input segment from ``t`` on (the previous one ends at ``t``)."""
        t = float(t)
        if t < self._t_last:
            raise ValueError(f"push at {t} is before the last input change {self._t_last}")
        row = self._row(values)
        self._append(np.array([t]), row[None, :], _NO_STEPS)

    def push_many(self, starts: Sequence[float] | FloatArray,
                  values: Sequence[Mapping[Hashable, float] | Sequence[float]] | FloatArray
                  ) -> None:
        """Several segments at once: ``starts`` non-decreasing, ``values`` a sequence of
        mappings / sequences, or a 2-D array (one row per start, columns in channel order)."""
        s = np.asarray(starts, dtype=float).reshape(-1)
        if s.size == 0:
            return
        d = s[1:] - s[:-1]
        if s[0] < self._t_last or (d < 0).any():
            raise ValueError(f"pushes must not go back (last input change {self._t_last})")
        if isinstance(values, np.ndarray):
            v = np.asarray(values, dtype=float)
            while len(self.channels) < v.shape[1]:
                self._channel(len(self.channels))
            if v.shape[1] < len(self.channels):
                v = np.concatenate([v, np.zeros((v.shape[0], len(self.channels) - v.shape[1]))],
                                   axis=1)
        elif values and all(isinstance(x, Mapping) for x in values):
            # one fancy assignment for all the rows' entries (keys are unique within a row)
            ri: list[int] = []
            ci: list[int] = []
            xs: list[float] = []
            index = self._index
            for r, x in enumerate(values):
                for k, val in x.items():
                    i = index.get(k)
                    ri.append(r)
                    ci.append(self._channel(k) if i is None else i)
                    xs.append(val)
            v = np.zeros((len(values), len(self.channels)))
            v[ri, ci] = xs
        else:
            rows = [self._row(x) for x in values]
            v = np.zeros((len(rows), len(self.channels)))
            for r, x in enumerate(rows):
                v[r, :x.size] = x
        if v.shape[0] != s.size:
            raise ValueError("starts and values differ in length")
        self._append(s, v, d)

    def _append(self, s: FloatArray, v: FloatArray, d: FloatArray) -> None:
        """Append segments (s non-decreasing, ≥ the last start; d = their lengths but the
        last's); a segment of zero length is replaced by the next one; close the previous last
        segment's input mass."""
        h, n = self._h, self._n
        if n > h:  # the open segment ends at s[0]
            d0 = s[0] - self._s[n - 1]
            self._input_closed += d0 * self._v[n - 1]
            if d0 == 0.0:  # zero length: replaced
                n -= 1
        if s.size > 1:
            self._input_closed += d @ v[:-1]
            if not d.all():  # zero-length segments: replaced by the next one
                keep = np.append(d > 0, True)
                s, v = s[keep], v[keep]
        self._n = n
        self._reserve(s.size)
        n = self._n
        self._s[n:n + s.size] = s
        self._v[n:n + s.size] = v
        self._n = n + s.size
        self._t_last = float(s[-1])
        self._cache = None
        self.prune(self._t_last)

    def prune(self, t: float) -> int:
        """Drop segments that ended before t − tail − retain; returns how many were dropped."""
        horizon = float(t) - self._horizon_lag
        h, n = self._h, self._n
        if n - h < 2 or self._s[h + 1] > horizon:
            return 0
        k = int(np.searchsorted(self._s[h + 1:n], horizon, side="right"))
        s = self._s[h:h + k + 1]
        self._exited += (s[1:] - s[:-1]) @ self._v[h:h + k]
        self.valid_from = max(self.valid_from, float(s[-1]) + self.rtd.tail_s)
        self._h = h + k
        self._cache = None
        return k

    @property
    def n_segments(self) -> int:
        return self._n - self._h

    @property
    def _starts(self) -> FloatArray:
        """Starts of the live segments (s)."""
        return self._s[self._h:self._n]

    def _arrays(self) -> tuple[FloatArray, FloatArray]:
        """Live starts s_i and steps Δc_i (rows, per channel)."""
        if self._cache is None:
            h, n = self._h, self._n
            v = self._v[h:n]
            dv = v.copy()
            dv[1:] -= v[:-1]
            self._cache = (self._s[h:n].copy(), dv)
        return self._cache

    # --- output -----------------------------------------------------------------------------
    def output(self, t: ArrayLike) -> FloatArray:
        """y(t) per channel: shape (m,) for scalar t, (len(t), m) for a vector of times.
        Exact only for t ≥ ``valid_from`` (raises otherwise)."""
        ta = np.asarray(t, dtype=float)
        if ta.size and float(ta.min()) < self.valid_from - 1e-9 * max(1.0, self.valid_from):
            raise ValueError(f"time {float(ta.min())} is before the retained history "
                             f"({self.valid_from}); increase retain_s")
        return self._evaluate(ta, *self._arrays())

    def _evaluate(self, ta: FloatArray, s: FloatArray, dv: FloatArray) -> FloatArray:
        """Σ_i Δc_i·F(t − s_i) at the times ``ta`` (a scalar gives one row)."""
        y = self._cdf_outer(np.atleast_1d(ta), s) @ dv
        return y[0] if ta.ndim == 0 else y

    def output_with(self, t: ArrayLike, starts: FloatArray, values: FloatArray) -> FloatArray:
        """:meth:`output` as if the segments ``starts`` / ``values`` (a 2-D array, columns in
        channel order; starts non-decreasing, the first ≥ the last push) had been pushed,
        without pushing them: a projection of inputs that are not certain yet."""
        s0, dv0 = self._arrays()
        h, n = self._h, self._n
        v_last = self._v[n - 1] if n > h else np.zeros(len(self.channels))
        if n > h and starts[0] == self._s[n - 1]:  # replaces the open segment
            s0, dv0 = s0[:-1], dv0[:-1]
            v_last = self._v[n - 2] if n - 1 > h else np.zeros(len(self.channels))
        dv = np.empty((values.shape[0], len(self.channels)))
        dv[0] = values[0] - v_last
        np.subtract(values[1:], values[:-1], out=dv[1:])
        return self._evaluate(np.asarray(t, dtype=float), np.concatenate([s0, starts]),
                              np.concatenate([dv0, dv]))

    def _integral(self, t: FloatArray) -> FloatArray:
        """Σ_i Δc_i·I(t − s_i), I = ∫₀ˣ F: output of the live segments up to each t."""
        s, dv = self._arrays()
        return self._cdf_integral_outer(t, s) @ dv

    def cumulative_output(self, t: ArrayLike) -> FloatArray:
        """∫ y from the start up to t per channel (kg when channels are kg/s); t ≥ valid_from."""
        ta = np.atleast_1d(np.asarray(t, dtype=float))
        out = self._integral(ta) + self._exited
        return out[0] if np.ndim(t) == 0 else out

    def output_mass(self, a: float, b: float) -> FloatArray:
        """∫ₐᵇ y dt per channel. Exact only for a ≥ ``valid_from`` (raises otherwise)."""
        return self.output_masses(np.array([a, b], dtype=float))[0]

    def output_masses(self, cuts: ArrayLike) -> FloatArray:
        """∫ y dt over each interval [cuts[k], cuts[k+1]] per channel: shape (len(cuts) − 1, m),
        from one evaluation at all the cut times. Exact only for cuts[0] ≥ ``valid_from``."""
        c = np.asarray(cuts, dtype=float)
        a = float(c[0])
        if a < self.valid_from - 1e-9 * max(1.0, abs(a)):
            raise ValueError(f"interval starts at {a}, before the retained history "
                             f"({self.valid_from}); increase retain_s")
        i = self._integral(c)
        return i[1:] - i[:-1]

    def cumulative_input(self, t: float) -> FloatArray:
        """Input ∫ c dt up to t ≥ last push, per channel."""
        out = self._input_closed.copy()
        h, n = self._h, self._n
        if n > h and t > self._s[n - 1]:
            out += self._v[n - 1] * (t - self._s[n - 1])
        return out

    def holdup(self, t: float) -> FloatArray:
        """Input minus output up to t per channel (kg inside the unit when channels are kg/s)."""
        return self.cumulative_input(t) - self.cumulative_output(t)

    def lot_fractions(self, a: float, b: float) -> dict[Hashable, float]:
        """Mass fraction of each channel (lot) in the output leaving in [a, b] (channels must be
        mass flows). Empty dict if nothing left in [a, b]."""
        m = self.output_mass(a, b)
        m = np.where(m > 0, m, 0.0)
        tot = float(m.sum())
        if tot <= 0:
            return {}
        return {k: float(m[i] / tot) for i, k in enumerate(self.channels) if m[i] > 0}

    # --- events -------------------------------------------------------------------------------
    def settle_time(self) -> float:
        """Time after which the output equals the present input to within tail_tol (if no
        further push): last input change + tail."""
        return self._t_last + self.rtd.tail_s

    def first_exit(self, t0: float, low: float, high: float, *,
                   scalar: Callable[[FloatArray], FloatArray] | None = None,
                   t1: float | None = None, resolution: float = 0.05,
                   xtol_s: float | None = None) -> float | None:
        """First time in (t0, t1] at which the predicted scalar output leaves [low, high],
        assuming the present input persists; None if it stays inside.

        ``scalar`` maps the (T, m) output array to (T,) — e.g. ``lambda y: y[:, 0] / y.sum(1)``
        for an API mass fraction; default: the single channel. ``t1`` defaults to
        :meth:`settle_time` (after it the output no longer changes, so a later crossing cannot
        occur without a new push). Sampling step ``resolution``·σ of the RTD.
        """
        if scalar is None:
            if len(self.channels) != 1:
                raise ValueError("give `scalar` when there is more than one channel")
            scalar = lambda y: y[:, 0]  # noqa: E731
        end = self.settle_time() if t1 is None else t1
        sig = self.rtd.std_s
        return first_exit_time(lambda ts: scalar(self.output(ts)), t0, end, low, high,
                               step_s=resolution * sig,
                               xtol_s=1e-6 * sig if xtol_s is None else xtol_s)
