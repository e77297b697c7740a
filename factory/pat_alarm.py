"""Alarm logic on NIR (PAT) readings, and its confusion matrix against the truth.

A single reading outside spec is a weak signal near the limits: the reading's noise alone puts
some readings of in-spec material outside (false alarms), so k-of-n and moving-average rules
are common (the NIR literature on continuous manufacturing; e.g. Singh et al. 2014, Int J
Pharm 473:38 for control with PAT). Rules, over the readable readings in order:

* ``single``: an alarm at every reading outside [low, high];
* ``k_of_n``: an alarm at a reading when at least k of the last n readings are outside;
* ``moving_average``: an alarm at a reading when the mean of the last n readings is outside.

When a rule fires, the readings that made it fire are the *evidence*: diversion reaches back to
the first of them (the caller's business). The confusion matrix compares, reading by reading,
the rule's verdict (alarm on) with the truth (the true content of the sampled material outside
spec): true and false alarms, missed excursions (runs of true out-of-spec readings during which
the rule never fired), and at reading level TP/FP/FN/TN.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

__all__ = ["PatAlarmRule", "Confusion"]

RULES = ("single", "k_of_n", "moving_average")


@dataclass
class Confusion:
    """Counts of the rule's verdicts against the truth (see the module docstring)."""

    tp: int = 0  # readings with the alarm on and the truth out of spec
    fp: int = 0
    fn: int = 0
    tn: int = 0
    true_alarms: int = 0  # alarms (a reading at which the rule fires while it was off)
    false_alarms: int = 0  # ... whose evidence holds no truly out-of-spec reading
    excursions: int = 0  # runs of truly out-of-spec readings
    missed_excursions: int = 0  # ... with no alarm at any of their readings
    _run_caught: bool = field(default=False, repr=False)
    _in_run: bool = field(default=False, repr=False)

    def as_dict(self) -> dict[str, int]:
        return {"true_alarms": self.true_alarms, "false_alarms": self.false_alarms,
                "excursions": self.excursions, "missed_excursions": self.missed_excursions,
                "readings_tp": self.tp, "readings_fp": self.fp, "readings_fn": self.fn,
                "readings_tn": self.tn}


class PatAlarmRule:
    """One rule over a stream of readings (module docstring).

    Args:
        rule: ``single``, ``k_of_n`` or ``moving_average``.
        low, high: the spec limits (fraction of label claim).
        k, n: the rule's counts (``single`` ignores them; ``moving_average`` uses n).
    """

    def __init__(self, rule: str, low: float, high: float, k: int = 1, n: int = 1) -> None:
        if rule not in RULES:
            raise ValueError(f"unknown PAT alarm rule {rule!r}")
        if not 1 <= k <= n:
            raise ValueError("need 1 <= k <= n")
        self.rule, self.low, self.high = rule, low, high
        self.k, self.n = (1, 1) if rule == "single" else (k, n)
        # the last n readings: time sampled, value, outside spec, truly outside spec
        self._last: deque[tuple[float, float, bool, bool]] = deque(maxlen=self.n)
        self._on = False
        self.confusion = Confusion()

    def feed(self, t_s: float, value: float, truth_out: bool) -> float | None:
        """One readable reading (sampled at ``t_s``, ``value``) and whether the sampled material
        was truly out of spec. Returns ``None``, or, when the rule fires at this reading, the
        time its evidence starts (the sample time of its first reading)."""
        out = not self.low <= value <= self.high
        last = self._last
        last.append((t_s, value, out, truth_out))
        fire, back = False, 0
        if self.rule == "single":
            fire = out
        elif self.rule == "k_of_n":
            outs = [o for _, _, o, _ in last]
            if sum(outs) >= self.k:
                fire = True
                back = len(outs) - 1 - outs.index(True)
        elif len(last) == self.n:
            mean = sum(v for _, v, _, _ in last) / self.n
            if not self.low <= mean <= self.high:
                fire, back = True, self.n - 1
        self._account(fire, truth_out, back)
        return last[-1 - back][0] if fire else None

    def feed_many(self, t_s: list[float], values: list[float], truths: list[bool]
                  ) -> list[tuple[int, float]]:
        """:meth:`feed` for readings in order: (index, evidence start) where the rule fires.
        The single-reading rule takes a shorter path (the same verdicts and counts)."""
        if self.rule != "single":
            out = []
            for i, (t, v, tr) in enumerate(zip(t_s, values, truths)):
                t0 = self.feed(t, v, tr)
                if t0 is not None:
                    out.append((i, t0))
            return out
        lo, hi, fires = self.low, self.high, []
        account = self._account
        for i, v in enumerate(values):
            fire = not lo <= v <= hi
            tr = truths[i]
            if fire or tr or self._on or self.confusion._in_run:
                self._last.append((t_s[i], v, fire, tr))
                account(fire, tr, 0)
                if fire:
                    fires.append((i, t_s[i]))
            else:  # in spec, truly in spec, nothing under way: a true negative
                self.confusion.tn += 1
        return fires

    def _account(self, fire: bool, truth_out: bool, back: int) -> None:
        c = self.confusion
        if fire and truth_out:
            c.tp += 1
        elif fire:
            c.fp += 1
        elif truth_out:
            c.fn += 1
        else:
            c.tn += 1
        if fire and not self._on:  # a new alarm: true if its evidence holds the truth
            evidence = list(self._last)[-(back + 1):]
            if any(t for _, _, _, t in evidence):
                c.true_alarms += 1
            else:
                c.false_alarms += 1
        self._on = fire
        if truth_out and not c._in_run:
            c.excursions += 1
            c._in_run, c._run_caught = True, False
        if c._in_run:
            c._run_caught = c._run_caught or fire
            if not truth_out:
                c._in_run = False
                if not c._run_caught:
                    c.missed_excursions += 1

    def finish(self) -> None:
        """Close an excursion still under way at the end."""
        c = self.confusion
        if c._in_run and not c._run_caught:
            c.missed_excursions += 1
        c._in_run = False
