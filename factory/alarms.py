"""Alarm records and their ISA-18.2 / IEC 62682 lifecycle, with EEMUA 191 performance figures.

An alarm is an abnormal condition of one ``source`` (a unit, robot, charger, line unit or the
``plant``) that needs a response. Its lifecycle, after ANSI/ISA-18.2-2016 §11 (the alarm state
transition diagram) and IEC 62682:

* **raised** (active, unacknowledged) by :meth:`AlarmSystem.raise_alarm`. Raising a condition
  that is already active is not a new alarm: the active record is returned (one record per
  episode, so a condition that persists cannot flood the operator);
* **acknowledged** (active, acknowledged) by :meth:`AlarmSystem.acknowledge`: an operator (here a
  controller) has seen it; acknowledging twice is refused;
* **cleared** (returned to normal) by :meth:`AlarmSystem.clear`, acknowledged or not. These
  alarms are non-latching: a record ends when its condition returns to normal. An alarm that
  returns to normal unacknowledged (ISA-18.2's "RTN unacknowledged") is written with an empty
  ``acknowledged_s`` and counted as *cleared unacknowledged* (EEMUA 191 reads a high share of
  these as alarms that need no operator action); acknowledging it afterwards is refused as
  "already cleared". Shelving and suppression are not modelled.

Memory stays bounded: a record is written (one row) and leaves memory when it is cleared; the
records still active are written by :meth:`AlarmSystem.finish` with an empty ``cleared_s``. Every
operation costs O(1) amortised, whatever the history: the flood window keeps the raise times of
the last ``flood_window_s`` only, the standing-alarm check the (time, id) pairs of alarms raised
in the last ``standing_after_s``.

KPIs (:meth:`AlarmSystem.kpis`, after warm-up, EEMUA 191 3rd ed. 2013 and ISA-18.2 §16):

* alarm rate per operator position, per hour, per 10 minutes and per day. EEMUA 191's average
  rate in steady operation: at most 1 per 10 minutes is very likely acceptable, 2 manageable,
  more is likely over-demanding and more than 10 (1 a minute) very likely unacceptable;
  ISA-18.2 gives about 150 a day as very likely acceptable and 300 as the most manageable;
* the peak count in any window of ``flood_window_s`` (a sliding window ``(t - W, t]``);
* floods: the plant is in flood while more than ``flood_threshold`` alarms were raised in the
  last window (ISA-18.2: more than 10 in 10 minutes per operator); flood periods, % of time in
  flood, and the % of consecutive fixed windows from the warm-up with more than the threshold
  (ISA-18.2's "percentage of 10-minute periods", target below about 1 %);
* standing alarms: active longer than ``standing_after_s`` (ISA-18.2's stale alarms: fewer than
  5 on any day), at the end and the most at once;
* mean time to acknowledge, the share cleared unacknowledged, counts per priority (ISA-18.2's
  guide for three priorities: about 80 % low, 15 % medium, 5 % high) and the five sources that
  raised the most ("bad actors": in EEMUA 191 the top few sources usually give most alarms).
"""

from __future__ import annotations

import math
import operator
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["Alarm", "AlarmSystem", "PRIORITIES", "eemua_rate_assessment"]

PRIORITIES = ("critical", "high", "medium", "low")
"""Alarm priorities, highest first. The plant's mapping: ``critical`` — safety or quality with
released product at risk; ``high`` — equipment down, the supervisor cut off; ``medium`` —
degraded (robot stall, charger fault, battery fade, a command lost); ``low`` — advisories
(a command applied late)."""

_RATE_BANDS = ((1.0, "very likely acceptable"), (2.0, "manageable"),
               (10.0, "likely over-demanding"), (math.inf, "very likely unacceptable"))


def eemua_rate_assessment(per_10min_per_operator: float) -> str:
    """EEMUA 191's verdict on an average alarm rate in steady operation (alarms per 10 minutes
    per operator): ≤ 1 very likely acceptable, ≤ 2 manageable, ≤ 10 likely over-demanding,
    more (over 1 a minute) very likely unacceptable."""
    for limit, verdict in _RATE_BANDS:
        if per_10min_per_operator <= limit:
            return verdict
    return _RATE_BANDS[-1][1]  # nan


@dataclass(slots=True)
class Alarm:
    """One alarm episode of one condition of one source (times in simulated seconds)."""

    id: int  # 1, 2, 3 ... in order of raising
    source: str  # unit, robot, charger node, line unit ("cdc.api_feeder"), "plant"
    condition: str  # short machine name: "jam", "robot_stall", "refill_failed", ...
    priority: str  # "critical" | "high" | "medium" | "low"
    text: str  # human-readable message
    raised_s: float
    acknowledged_s: float | None = None
    acknowledged_by: str | None = None
    cleared_s: float | None = None

    @property
    def active(self) -> bool:
        """Raised and not cleared."""
        return self.cleared_s is None


Subscriber = Callable[[str, Alarm], None]


class AlarmSystem:
    """The plant's alarm list and alarm history (see the module docstring). Calls must come in
    order of time (the simulation clock's ``now``).

    Parameters
    ----------
    writer:
        a :class:`~darkfab.factory.recorder.TableWriter` with
        :data:`~darkfab.factory.recorder.ALARMS_SCHEMA` (``alarms.parquet``), or ``None``.
    flood_window_s, flood_threshold:
        a flood is more than ``flood_threshold`` alarms raised within ``flood_window_s``.
    operator_positions:
        operator positions sharing the alarms (rates are per position).
    standing_after_s:
        an alarm active for this long or longer is standing.
    warmup_s:
        the KPIs count alarms raised from this time on.
    events:
        the event log (``record(t, kind, entity, unit_id, product, location, detail)``), or
        ``None``: each raise, acknowledgement and clear is also logged there as an ``alarm``,
        ``alarm_acknowledged`` or ``alarm_cleared`` row.
    """

    def __init__(self, writer=None, *, flood_window_s: float = 600.0, flood_threshold: int = 10,
                 operator_positions: int = 1, standing_after_s: float = 86400.0,
                 warmup_s: float = 0.0, events=None) -> None:
        if not flood_window_s > 0 or flood_threshold < 1 or operator_positions < 1 \
                or not standing_after_s > 0:
            raise ValueError("flood_window_s and standing_after_s must be > 0, flood_threshold "
                             "and operator_positions >= 1")
        self.writer = writer
        self.events = events
        self.window_s = float(flood_window_s)
        self.threshold = int(flood_threshold)
        self.positions = int(operator_positions)
        self.standing_after_s = float(standing_after_s)
        self.warmup_s = float(warmup_s)
        self._subscribers: list[Subscriber] = []
        self._active: dict[int, Alarm] = {}  # raising order
        self._by_key: dict[tuple[str, str], Alarm] = {}
        self._next_id = 1
        self._finished = False
        self._stats = _Stats(self.window_s, self.threshold, self.positions,
                             self.standing_after_s, self.warmup_s, self._active)

    # --- lifecycle ----------------------------------------------------------------------
    def subscribe(self, fn: Subscriber) -> None:
        """Call ``fn(kind, alarm)`` on every ``alarm`` (raised), ``alarm_acknowledged`` and
        ``alarm_cleared``, after the record is updated."""
        self._subscribers.append(fn)

    def raise_alarm(self, now: float, source: str, condition: str, text: str = "",
                    priority: str = "high") -> Alarm:
        """Raise ``condition`` of ``source``; if it is active already, return that alarm and
        do nothing else (idempotent)."""
        key = (source, condition)
        a = self._by_key.get(key)
        if a is not None:
            return a
        if priority not in PRIORITIES:
            raise ValueError(f"alarm priority {priority!r} is not one of {', '.join(PRIORITIES)}")
        self._stats.advance(now)
        a = Alarm(self._next_id, source, condition, priority, text, now)
        self._next_id += 1
        self._active[a.id] = a
        self._by_key[key] = a
        self._stats.raised(a)
        if self.events is not None:
            self.events.record(now, "alarm", source, -1, "", priority,
                               f"{condition}: {text}" if text else condition)
        self._notify("alarm", a)
        return a

    def clear(self, now: float, source: str, condition: str) -> Alarm | None:
        """The condition returned to normal: the record is written and leaves memory. ``None``
        if it is not active."""
        a = self._by_key.pop((source, condition), None)
        if a is None:
            return None
        self._stats.advance(now)
        del self._active[a.id]
        a.cleared_s = now
        self._stats.cleared(a)
        self._write(a)
        if self.events is not None:
            self.events.record(now, "alarm_cleared", source, -1, "", a.priority, condition)
        self._notify("alarm_cleared", a)
        return a

    def acknowledge(self, now: float, alarm_id: int, by: str) -> str | None:
        """Acknowledge active alarm ``alarm_id`` on behalf of ``by``. ``None`` when done, else
        why it is refused (see :meth:`refusal`)."""
        why = self.refusal(alarm_id)
        if why is not None:
            return why
        a = self._active[operator.index(alarm_id)]
        self._stats.advance(now)
        a.acknowledged_s = now
        a.acknowledged_by = by
        self._stats.acknowledged(a)
        if self.events is not None:
            self.events.record(now, "alarm_acknowledged", a.source, -1, "", by, a.condition)
        self._notify("alarm_acknowledged", a)
        return None

    def refusal(self, alarm_id: int) -> str | None:
        """Why acknowledging ``alarm_id`` now would be refused (unknown id, already cleared,
        already acknowledged), or ``None`` if it would be accepted."""
        try:
            i = operator.index(alarm_id)
        except TypeError:
            return f"unknown alarm {alarm_id!r}"
        a = self._active.get(i)
        if a is None:
            if 1 <= i < self._next_id:
                return f"alarm {i} already cleared (returned to normal)"
            return f"unknown alarm {i}"
        if a.acknowledged_s is not None:
            return (f"alarm {i} already acknowledged at {a.acknowledged_s:g} s by "
                    f"{a.acknowledged_by}")
        return None

    def get(self, alarm_id: int) -> Alarm | None:
        """The active alarm ``alarm_id``, or ``None``."""
        try:
            return self._active.get(operator.index(alarm_id))
        except TypeError:
            return None

    def is_active(self, source: str, condition: str) -> bool:
        return (source, condition) in self._by_key

    def active(self, source: str | None = None) -> tuple[Alarm, ...]:
        """Active alarms (of ``source``, or all) in raising order."""
        if source is None:
            return tuple(self._active.values())
        return tuple(a for a in self._active.values() if a.source == source)

    def in_memory(self) -> int:
        """Alarm records held in memory (the active ones): what the bounded-memory rule keeps."""
        return len(self._active)

    @property
    def raised_total(self) -> int:
        """Alarms raised so far (warm-up included)."""
        return self._next_id - 1

    def finish(self, now: float) -> None:
        """End of the run: write the records still active (``cleared_s`` empty); they stay in
        memory for :meth:`kpis`. Safe to call twice."""
        if self._finished:
            return
        self._finished = True
        self._stats.advance(now)
        for a in self._active.values():
            self._write(a)

    def _write(self, a: Alarm) -> None:
        if self.writer is not None:
            self.writer.append(a.id, a.source, a.condition, a.priority, a.text, a.raised_s,
                               a.acknowledged_s, a.acknowledged_by, a.cleared_s)

    def _notify(self, kind: str, a: Alarm) -> None:
        for fn in self._subscribers:
            fn(kind, a)

    # --- KPIs ---------------------------------------------------------------------------
    def kpis(self, end_s: float) -> dict[str, Any]:
        """EEMUA 191 / ISA-18.2 figures over [warm-up, ``end_s``] (see the module docstring).
        Advances the flood and standing-alarm bookkeeping to ``end_s``."""
        return self._stats.report(end_s)


class _Stats:
    """Online KPI accumulators of an :class:`AlarmSystem` (constant memory per event);
    ``active`` is the alarm system's list of active alarms (id -> alarm), read only."""

    def __init__(self, window_s: float, threshold: int, positions: int, standing_after_s: float,
                 warmup_s: float, active: dict[int, Alarm]) -> None:
        self.w = window_s
        self.threshold = threshold
        self.positions = positions
        self.standing_after_s = standing_after_s
        self.warm = warmup_s
        self.active = active
        self.n = 0  # raised after warm-up
        self.by_priority = {p: 0 for p in PRIORITIES}
        self.by_source: dict[str, int] = {}
        self.acked = 0
        self.ack_time_s = 0.0
        self.cleared_unacked = 0
        # sliding window (t - W, t] over the raise times after warm-up
        self.recent: deque[float] = deque()
        self.peak = 0
        self.in_flood = False
        self.flood_since = 0.0
        self.floods = 0
        self.flood_s = 0.0
        # fixed windows [warm-up + kW, warm-up + (k+1)W)
        self.bin = -1
        self.bin_count = 0
        self.bins_over = 0
        # standing alarms: (raised_s, id) of the alarms raised in the last standing_after_s,
        # not yet examined, and the ids of the active alarms that are standing
        self.young: deque[tuple[float, int]] = deque()
        self.standing: set[int] = set()
        self.standing_max = 0
        self.now = -math.inf

    def advance(self, now: float) -> None:
        """Bring the window and the standing alarms to just before the event at ``now``."""
        self.now = now
        w, recent = self.w, self.recent
        while recent and recent[0] + w <= now:
            t_out = recent.popleft() + w  # leaves the window: the count drops at t_out
            if self.in_flood and len(recent) <= self.threshold:
                self.in_flood = False
                self.flood_s += t_out - self.flood_since
        young, after = self.young, self.standing_after_s
        while young and young[0][0] + after <= now:
            i = young.popleft()[1]
            if i in self.active:
                self.standing.add(i)
        if now >= self.warm and len(self.standing) > self.standing_max:
            # between events the count only grows (promotions): its maximum is just before now
            self.standing_max = len(self.standing)

    def raised(self, a: Alarm) -> None:
        t = a.raised_s
        self.young.append((t, a.id))
        if t < self.warm:
            return
        self.n += 1
        self.by_priority[a.priority] += 1
        self.by_source[a.source] = self.by_source.get(a.source, 0) + 1
        self.recent.append(t)
        k = len(self.recent)
        self.peak = max(self.peak, k)
        if not self.in_flood and k > self.threshold:
            self.in_flood = True
            self.flood_since = t
            self.floods += 1
        b = int((t - self.warm) // self.w)
        if b != self.bin:
            self._close_bin()
            self.bin, self.bin_count = b, 0
        self.bin_count += 1

    def _close_bin(self) -> None:
        if self.bin_count > self.threshold:
            self.bins_over += 1

    def acknowledged(self, a: Alarm) -> None:
        if a.raised_s >= self.warm:
            self.acked += 1
            self.ack_time_s += a.acknowledged_s - a.raised_s  # type: ignore[operator]

    def cleared(self, a: Alarm) -> None:
        self.standing.discard(a.id)
        if a.raised_s >= self.warm and a.acknowledged_s is None:
            self.cleared_unacked += 1

    def report(self, end: float) -> dict[str, Any]:
        if end > self.now:
            self.advance(end)
        observed = max(end - self.warm, 0.0)
        per_s = self.n / observed / self.positions if observed > 0 else math.nan
        flood_s = self.flood_s + (end - self.flood_since if self.in_flood else 0.0)
        periods = math.ceil(observed / self.w) if observed > 0 else 0
        bins_over = self.bins_over + (self.bin_count > self.threshold)
        per_10 = per_s * 600.0
        top = sorted(self.by_source.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
        return {
            "raised": self.n,
            "operator_positions": self.positions,
            "per_hour_per_operator": per_s * 3600.0,
            "per_10min_per_operator": per_10,
            "per_day_per_operator": per_s * 86400.0,
            "rate_assessment": eemua_rate_assessment(per_10) if observed > 0 else "",
            "window_s": self.w,
            "flood_threshold": self.threshold,
            "peak_per_window": self.peak,
            "floods": self.floods,
            "time_in_flood_pct": 100.0 * flood_s / observed if observed > 0 else math.nan,
            "windows_over_threshold_pct": 100.0 * bins_over / periods if periods else math.nan,
            "standing_after_s": self.standing_after_s,
            "standing_end": len(self.standing),
            "standing_max": self.standing_max,
            "active_end": len(self.active),
            "acknowledged": self.acked,
            "cleared_unacknowledged": self.cleared_unacked,
            "mean_time_to_acknowledge_s": self.ack_time_s / self.acked if self.acked
            else math.nan,
            "by_priority": dict(self.by_priority),
            "bad_actors": [{"source": s, "alarms": n} for s, n in top],
        }
