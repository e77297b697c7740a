"""NIR process-analytical-technology (PAT) sensor for API concentration.

Samples every ``period_s`` at t_k = phase + k·period; a sample of the true value x(t_k) is
available at t_k + ``delay_s`` and reads y = x(t_k) + bias(t_k) + b₀ + ḃ·t_k + e,
e ~ N(0, noise_sd² + (s·x)²) (absolute, in concentration units; b₀ a calibration bias, ḃ a slow
calibration drift; s = s₁·√(1 g/m) the relative fundamental sampling error of the effective
sample mass m that the spectrum sees, Gy 2004, Chemometr Intell Lab 74:7: its variance is
inversely proportional to the sample mass), bias(t) = drift_rate·(t − drift_start) for
drift_start ≤ t < drift_end (a drift fault, gone after recalibration at drift_end), else 0. A sample is lost (value None) with probability ``dropout_prob`` or when
t_k falls in a scripted dropout window [a, b). Randomness only from the numpy ``Generator``
passed in; two standard normals per sample, in sample order (the second gives the dropout
uniform as Φ(z)), so the readings do not
depend on how the caller batches them. Listeners get each batch as :class:`Readings` (arrays,
and the :class:`Measurement` sequence built only if a listener iterates it).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import overload

import numpy as np
from numpy.typing import ArrayLike
from scipy import special

__all__ = ["NirSensorParams", "Measurement", "Readings", "NirSensor"]


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
    sampling_rsd: float = 0.0  # s_1·√(1 g / m_eff): Gy's fundamental sampling error, relative
    bias: float = 0.0  # calibration bias (concentration units)
    bias_rate_per_s: float = 0.0  # slow calibration drift from t = 0 (per s)

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


class Readings(Sequence[Measurement]):
    """One batch of readings, as the sensor's listeners get it: a sequence of
    :class:`Measurement` (built on first use) over the arrays ``sample_time_s``, ``reading``
    (the noisy value, meaningless where ``lost``), ``lost`` and ``true_value``. A listener that
    checks the arrays first (:meth:`taken_range`) need not build the measurements at all."""

    __slots__ = ("sample_time_s", "reading", "lost", "true_value", "delay_s", "_list", "_range")

    def __init__(self, sample_time_s: np.ndarray, reading: np.ndarray, lost: np.ndarray,
                 true_value: np.ndarray, delay_s: float) -> None:
        self.sample_time_s, self.reading, self.lost = sample_time_s, reading, lost
        self.true_value, self.delay_s = true_value, delay_s
        self._list: list[Measurement] | None = None
        self._range: tuple[int, float, float] | None = None

    @property
    def measurements(self) -> list[Measurement]:
        """The readings as :class:`Measurement` (one list, built once)."""
        if self._list is None:
            d = self.delay_s  # Python floats: the same sums as t[i] + delay_s in numpy
            self._list = [Measurement(ti, ti + d, None if li else yi, xi)
                          for ti, yi, li, xi in zip(self.sample_time_s.tolist(),
                                                    self.reading.tolist(), self.lost.tolist(),
                                                    self.true_value.tolist())]
        return self._list

    def taken_range(self) -> tuple[int, float, float]:
        """``(n, low, high)``: how many readings were not lost, and the least and greatest of
        their values (NaN if one is NaN; inf and −inf when there are none). A reading of a
        non-finite true value is not a finite number: when ``low`` and ``high`` are finite,
        every reading taken is of a finite true value."""
        if self._range is None:
            n = self.lost.size - int(np.count_nonzero(self.lost))
            v = self.reading if n == self.lost.size else self.reading[~self.lost]
            self._range = (n, float(v.min()), float(v.max())) if n else (0, math.inf, -math.inf)
        return self._range

    def __len__(self) -> int:
        return len(self.sample_time_s)

    @overload
    def __getitem__(self, i: int) -> Measurement: ...

    @overload
    def __getitem__(self, i: slice) -> list[Measurement]: ...

    def __getitem__(self, i: int | slice) -> Measurement | list[Measurement]:
        return self.measurements[i]

    def __iter__(self) -> Iterator[Measurement]:
        return iter(self.measurements)


Listener = Callable[[Readings], None]


class NirSensor:
    """Stateful sensor: call :meth:`measure` for consecutive samples (or :meth:`measure_many`)."""

    def __init__(self, params: NirSensorParams, rng: np.random.Generator) -> None:
        self.p = params
        self.rng = rng
        self.k = 0  # index of the next sample
        self.listeners: list[Listener] = []  # fn(readings) after each batch of readings

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

    def _lost(self, t: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Lost flags of the samples at ``t`` from their second standard normals ``z``."""
        p = self.p.dropout_prob
        if p > 0:  # u = Φ(z), uniform on (0, 1): batch sizes do not shift the stream
            lost = special.ndtr(z) < p
        else:  # u < 0 never holds (the draws are the same: z is drawn anyway)
            lost = np.zeros(t.shape, dtype=bool)
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
        # y = (x + bias) + noise; without a drift, x + 0.0 (not x: the same sums as adding a
        # zero bias, −0.0 included)
        y = x + self.bias(t) if math.isfinite(self.p.drift_start_s) else x + 0.0
        p = self.p
        if p.bias or p.bias_rate_per_s:  # the measurement model (docs/twin.md)
            y += p.bias + p.bias_rate_per_s * t
        if p.sampling_rsd:  # independent errors: sd² = noise² + (sampling_rsd·x)²
            with np.errstate(invalid="ignore"):
                y += np.sqrt(p.noise_sd ** 2 + (p.sampling_rsd * x) ** 2) * z[:, 0]
        else:
            y += p.noise_sd * z[:, 0]
        lost = self._lost(t, z[:, 1])
        self.k += n
        return t, y, lost, x

    def _notify(self, t: np.ndarray, y: np.ndarray, lost: np.ndarray,
                x: np.ndarray) -> Readings:
        readings = Readings(t, y, lost, x, self.p.delay_s)
        for fn in self.listeners:
            fn(readings)
        return readings

    def measure_many(self, true_values: Sequence[float] | np.ndarray) -> list[Measurement]:
        """Readings of the next len(true_values) samples (true values at their sample times)."""
        return self._notify(*self._read(true_values)).measurements

    def measure_array(self, true_values: Sequence[float] | np.ndarray,
                      notify: Callable[[Callable[[], object]], object] | None = None
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The same readings as :meth:`measure_many` (same draws, listeners called with the
        same :class:`Readings`) as arrays: sample times (s), availability times (s) and values
        (NaN: lost). ``notify(call)``, if given, makes the listeners' call (e.g. to time it
        apart from the sensor model)."""
        t, y, lost, x = self._read(true_values)
        if self.listeners:
            if notify is None:
                self._notify(t, y, lost, x)
            else:
                notify(lambda: self._notify(t, y, lost, x))
        return t, t + self.p.delay_s, np.where(lost, np.nan, y)

    def measure(self, true_value: float) -> Measurement:
        """Reading of the next sample (taken at :attr:`next_sample_time_s`)."""
        return self.measure_many([true_value])[0]
