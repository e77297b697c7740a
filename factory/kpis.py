"""Online accumulators and ISO 22400-2 KPIs, computed after warm-up in constant memory.

Nothing here keeps history: state timers add clipped durations, time averages integrate
piecewise-constant signals, and lead-time quantiles come from a log-binned histogram with a
relative bin width of :data:`LogHistogram.REL_WIDTH` (quantiles exact to ±0.05 %).

ISO 22400-2 terms used per equipment (times in server-seconds after warm-up):

* PBT planned busy time = servers × (observed time in Production mode);
* APT actual production time (processing); AUST actual unit setup time (changeover);
* utilization = (APT + AUST) / PBT (share of planned time the unit is busy);
* availability = APT / PBT; performance = ideal cycle time × produced cycles / APT;
* quality = good quantity / produced quantity; OEE = availability × performance × quality.

Bottleneck ranking: the *average active-period* method (Roser, Nakano & Tanaka 2001): a unit is
active unless starved or blocked; the longer its mean uninterrupted active period after warm-up,
the more it constrains the line.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .recorder import TableWriter

__all__ = ["StateTimer", "TimeAverage", "LogHistogram", "ActivePeriods"]


class StateTimer:
    """Time spent in each state of one entity after ``warmup_s``; writes every closed interval of
    non-zero length to the state-interval table."""

    __slots__ = ("entity", "state", "since", "warmup_s", "time_s", "_writer")

    def __init__(self, entity: str, state: str, now: float, warmup_s: float,
                 writer: TableWriter | None) -> None:
        self.entity = entity
        self.state = state
        self.since = now
        self.warmup_s = warmup_s
        self.time_s: dict[str, float] = {}
        self._writer = writer

    def change(self, now: float, new: str) -> None:
        if new == self.state:
            return
        self._close(now)
        self.state = new

    def _close(self, now: float) -> None:
        start = self.since
        if now > start:
            if self._writer is not None:
                self._writer.append(self.entity, self.state, start, now, now - start)
            clipped = now - (start if start > self.warmup_s else self.warmup_s)
            if clipped > 0:
                self.time_s[self.state] = self.time_s.get(self.state, 0.0) + clipped
        self.since = now

    def finish(self, now: float) -> None:
        """Close the open interval at the end of the run."""
        self._close(now)


class TimeAverage:
    """Time-average of a piecewise-constant signal over ``[warmup_s, end]``."""

    __slots__ = ("value", "last", "area", "warmup_s")

    def __init__(self, warmup_s: float, value: float = 0.0) -> None:
        self.value = value
        self.last = 0.0
        self.area = 0.0
        self.warmup_s = warmup_s

    def update(self, now: float, value: float) -> None:
        if now > self.warmup_s:
            last = self.last if self.last > self.warmup_s else self.warmup_s
            self.area += self.value * (now - last)
        self.last = now
        self.value = value

    def add(self, now: float, delta: float) -> None:
        # ``update(now, self.value + delta)``, inlined (hot path)
        value = self.value
        if now > self.warmup_s:
            last = self.last if self.last > self.warmup_s else self.warmup_s
            self.area += value * (now - last)
        self.last = now
        self.value = value + delta

    def mean(self, end: float) -> float:
        if end <= self.warmup_s:
            return math.nan
        last = self.last if self.last > self.warmup_s else self.warmup_s
        return (self.area + self.value * (end - last)) / (end - self.warmup_s)


class LogHistogram:
    """Streaming histogram for positive values; exact count, mean, min and max."""

    REL_WIDTH = 1e-3
    LOW = 1e-3  # values below go to the first bin
    HIGH = 1e9

    def __init__(self) -> None:
        self._log_step = math.log1p(self.REL_WIDTH)
        nbins = int(math.log(self.HIGH / self.LOW) / self._log_step) + 2
        # a list: incrementing a Python int is several times cheaper than a numpy element
        self.counts: list[int] = [0] * nbins
        self._top = nbins - 1
        self.n = 0
        self.total = 0.0
        self.min = math.inf
        self.max = -math.inf

    def add(self, x: float) -> None:
        self.n += 1
        self.total += x
        if x < self.min:
            self.min = x
        if x > self.max:
            self.max = x
        i = int(math.log(x / self.LOW) / self._log_step) + 1 if x > self.LOW else 0
        self.counts[i if i < self._top else self._top] += 1

    def mean(self) -> float:
        return self.total / self.n if self.n else math.nan

    def quantile(self, q: float) -> float:
        """q-quantile: the geometric centre of the bin holding the ⌈q·n⌉-th value, clamped to
        [min, max]."""
        if self.n == 0:
            return math.nan
        rank = max(1, math.ceil(q * self.n))
        i = int(np.searchsorted(np.cumsum(np.asarray(self.counts, dtype=np.int64)), rank))
        if i == 0:
            v = self.min
        else:
            v = self.LOW * math.exp((i - 0.5) * self._log_step)
        return min(max(v, self.min), self.max)


class ActivePeriods:
    """Mean duration of uninterrupted active periods (clipped to after warm-up).

    A period that ends and a new one that starts at the same instant are one period: an
    inactive gap of zero length does not interrupt activity (Roser et al. 2001 measure the
    duration of uninterrupted activity)."""

    __slots__ = ("active", "since", "total", "count", "warmup_s", "_last")

    def __init__(self, warmup_s: float) -> None:
        self.active = False
        self.since = 0.0
        self.total = 0.0
        self.count = 0
        self.warmup_s = warmup_s
        self._last: tuple[float, float, float] | None = None  # closed: (start, end, counted)

    def set(self, now: float, active: bool) -> None:
        if active == self.active:
            return
        if self.active:
            self._close(now)
            self.since = now
        elif self._last is not None and self._last[1] == now:
            # resumed at the instant it ended: undo the close, the period goes on
            start, _, counted = self._last
            if counted > 0:
                self.total -= counted
                self.count -= 1
            self._last = None
            self.since = start
        else:
            self.since = now
        self.active = active

    def _close(self, now: float) -> None:
        start = self.since if self.since > self.warmup_s else self.warmup_s
        counted = now - start if now > start else 0.0
        if counted > 0:
            self.total += counted
            self.count += 1
        self._last = (self.since, now, counted)

    def mean(self, end: float) -> float:
        total, count = self.total, self.count
        if self.active:
            start = self.since if self.since > self.warmup_s else self.warmup_s
            if end > start:
                total += end - start
                count += 1
        return total / count if count else 0.0

    def active_time(self, end: float) -> float:
        """Seconds active after warm-up up to ``end``."""
        total = self.total
        if self.active:
            start = self.since if self.since > self.warmup_s else self.warmup_s
            if end > start:
                total += end - start
        return total


def ratio(num: float, den: float) -> float:
    return num / den if den > 0 else math.nan


def finite(x: Any) -> Any:
    """JSON-safe: NaN and infinities become ``None``."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


class Timeseries:
    """Plant WIP (time average) and completions per fixed bucket of simulated time.

    Buckets close lazily when a later update arrives (no clock process), and each closed
    bucket is written as one row, so memory is constant and the cost per update is O(1)
    amortised. Used for plots over time and MSER-5 warm-up detection.
    """

    __slots__ = ("width", "edge", "area", "value", "last", "done", "_writer")

    def __init__(self, width_s: float, writer: TableWriter | None) -> None:
        if width_s <= 0:
            raise ValueError("bucket width must be positive")
        self.width = width_s
        self.edge = width_s
        self.area = 0.0
        self.value = 0.0
        self.last = 0.0
        self.done = 0
        self._writer = writer

    def level(self, now: float, value: float) -> None:
        if now >= self.edge:
            self._roll(now)
        self.area += self.value * (now - self.last)
        self.last = now
        self.value = value

    def completed(self, now: float) -> None:
        if now >= self.edge:
            self._roll(now)
        self.done += 1

    def _roll(self, now: float) -> None:
        while now >= self.edge:
            self.area += self.value * (self.edge - self.last)
            self.last = self.edge
            if self._writer is not None:
                self._writer.append(self.edge - self.width, self.edge, self.area / self.width,
                                    self.done)
            self.area = 0.0
            self.done = 0
            self.edge += self.width

    def finish(self, end: float) -> None:
        """Close every bucket up to ``end`` (a last partial bucket is written too)."""
        self._roll(end)
        start = self.edge - self.width
        if end > start and self._writer is not None:
            self.area += self.value * (end - self.last)
            self._writer.append(start, end, self.area / (end - start), self.done)
            self.edge = end + self.width  # nothing more to write
