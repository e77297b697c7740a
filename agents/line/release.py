"""Release by evidence (real-time release testing, RTRT, ICH Q13 / ICH Q8) of a continuous
line's batches: a collaborator of :class:`~darkfab.agents.line.ContinuousLine` that gathers,
per batch, what the line knows, and decides at the batch's close.

What it gathers over the batch window [start, end):

* **CU sample**: the IPC tablets' API contents (% of label claim), kept in a uniform random
  sample of at most ``sample_size`` tablets (reservoir sampling, Vitter's algorithm R:
  the i-th tablet (0-based) replaces a random slot with probability size/(i + 1)), drawn
  from its own stream: memory is bounded by ``sample_size`` floats per line, whatever the
  batch length. This is the batch's "predefined sampling plan" of Ph. Eur. 2.9.47.
* **Genealogy**: the raw-material lots in the batch's units of tablets, kg per lot.
* **Diversions**: kg diverted by cause in the window.
* **Alarms** of the line's units (source ``<line>`` or ``<line>.<unit>``) raised in the
  window or still active at its start: counts by priority and the first ``max_listed``.

At the close: the CU test chosen in the rules (:mod:`darkfab.factory.content_uniformity`), then
the decision, each rule adding its reason:

* ``rejected`` if the CU test fails;
* ``investigation`` if the CU test cannot be evaluated (too few tablets sampled, or no sourced
  table row for the sample size), if the diverted mass is above ``investigate_diverted_pct`` of
  the batch's output (accepted + diverted), or if an alarm of a priority in
  ``investigate_alarm_priorities`` touched the window;
* ``released`` otherwise.

The decision and its evidence form the batch's electronic batch record, handed to a record
sink (the run's tamper-evident chain, :mod:`darkfab.scenarios.batch_records`), which returns the
record's SHA-256.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass

import numpy as np

from darkfab.factory.alarms import Alarm, AlarmSystem
from darkfab.factory.content_uniformity import (
    CuResult, TableNotSourced, ph_eur_2947_option1, ph_eur_2947_option2, usp_905)

__all__ = ["BatchRelease", "ReleaseRules", "TESTS"]

TESTS = ("ph_eur_2.9.47_option1", "ph_eur_2.9.47_option2", "usp_905")


@dataclass(frozen=True)
class ReleaseRules:
    """A line's release rules (``[continuous_lines.X.release]``).

    Args:
        test: the CU test, one of :data:`TESTS`.
        sample_size: tablets kept per batch for the CU test (the reservoir's size).
        target_pct: T, the target content (% of label claim).
        k, c2: Table 2.9.47.-1 constants for alternative 1 (None: the sourced table rows).
        c1: with ``c2``, Table 2.9.47.-2 limits for alternative 2 (required for it).
        investigate_diverted_pct: diverted mass above this % of the batch's output: investigate.
        investigate_alarm_priorities: an alarm of one of these priorities: investigate.
        max_listed: alarms listed in a record (the rest are counted).
    """

    test: str = "ph_eur_2.9.47_option1"
    sample_size: int = 400
    target_pct: float = 100.0
    k: float | None = None
    c1: int | None = None
    c2: int | None = None
    investigate_diverted_pct: float = 5.0
    investigate_alarm_priorities: tuple[str, ...] = ("critical",)
    max_listed: int = 50


RecordSink = Callable[[dict], str]  # takes a batch record, returns its SHA-256


class BatchRelease:
    """Per-batch evidence and release decision of one line (module docstring).

    Args:
        line: the line's name (alarm sources ``line`` and ``line.*`` are its own).
        product: the product made.
        rules: the release rules.
        rng: the reservoir's random stream.
        alarms: the plant's alarm system (subscribed to), or None.
        sink: where each batch record goes (returns its SHA-256), or None (no records).
    """

    def __init__(self, line: str, product: str, rules: ReleaseRules, rng: np.random.Generator,
                 alarms: AlarmSystem | None = None, sink: RecordSink | None = None) -> None:
        if rules.test not in TESTS:
            raise ValueError(f"release test {rules.test!r} is not one of {', '.join(TESTS)}")
        self.line = line
        self.product = product
        self.rules = rules
        self._rng = rng
        self._sink = sink
        self._reservoir = np.empty(rules.sample_size)
        self._alarms = alarms
        self._start(0.0, {})
        if alarms is not None:
            alarms.subscribe(self._on_alarm)

    # --- gathering ----------------------------------------------------------------------
    def _start(self, now: float, diverted_by_cause: Mapping[str, float]) -> None:
        self.start_s = now
        self.seen = 0  # IPC tablets offered to the reservoir this batch
        self._lots: dict[str, float] = {}
        self._diverted0 = dict(diverted_by_cause)
        self._alarm_counts: dict[str, int] = {}
        self._listed: list[dict] = []
        if self._alarms is not None:  # still active from before: part of this window
            for a in self._alarms.active():
                if self._own(a):
                    self._note(a, active_at_start=True)

    def _own(self, a: Alarm) -> bool:
        return a.source == self.line or a.source.startswith(self.line + ".")

    def _on_alarm(self, kind: str, a: Alarm) -> None:
        if kind == "alarm" and self._own(a):
            self._note(a)

    def _note(self, a: Alarm, active_at_start: bool = False) -> None:
        self._alarm_counts[a.priority] = self._alarm_counts.get(a.priority, 0) + 1
        if len(self._listed) < self.rules.max_listed:
            entry = {"id": a.id, "source": a.source, "condition": a.condition,
                     "priority": a.priority, "raised_s": a.raised_s, "text": a.text}
            if active_at_start:
                entry["active_at_start"] = True
            self._listed.append(entry)

    def add_contents(self, contents: np.ndarray) -> None:
        """IPC tablets' API contents (% of label claim) into the reservoir (algorithm R)."""
        size, i0, k = self.rules.sample_size, self.seen, len(contents)
        fill = max(0, min(k, size - i0))  # the reservoir's free places: taken in order
        self._reservoir[i0:i0 + fill] = contents[:fill]
        if fill < k:  # tablet i replaces a uniform j in [0, i] if j < size (one draw each)
            js = (self._rng.random(k - fill) * np.arange(i0 + fill + 1, i0 + k + 1)).astype(
                np.int64)  # ⌊u·(i + 1)⌋: uniform on 0..i
            for n in np.flatnonzero(js < size).tolist():  # in order: a later one wins
                self._reservoir[js[n]] = contents[fill + n]
        self.seen = i0 + k

    def add_unit(self, fractions: Mapping[Hashable, float], mass_kg: float) -> None:
        """A unit of ``mass_kg`` of tablets with these raw-material lot mass fractions."""
        for lot, f in fractions.items():
            key = str(lot)
            self._lots[key] = self._lots.get(key, 0.0) + f * mass_kg

    def sample(self) -> np.ndarray:
        """The batch's CU sample so far (a copy, in reservoir order)."""
        return self._reservoir[:min(self.seen, self.rules.sample_size)].copy()

    # --- the decision -------------------------------------------------------------------
    def cu_test(self) -> tuple[CuResult | None, str | None]:
        """The batch's CU result, or (None, why it cannot be evaluated)."""
        r = self.rules
        x = self.sample()
        try:
            if r.test == "usp_905":
                return usp_905(x, r.target_pct), None
            if r.test == "ph_eur_2.9.47_option1":
                return ph_eur_2947_option1(x, r.target_pct, r.k, r.c2), None
            assert r.c1 is not None and r.c2 is not None  # the schema asks for them
            return ph_eur_2947_option2(x, r.c1, r.c2, r.target_pct), None
        except (TableNotSourced, ValueError) as e:
            return None, f"CU test {r.test} not evaluable with {x.size} tablets: {e}"

    def close(self, now: float, batch: dict, diverted_by_cause: Mapping[str, float],
              extra: Mapping | None = None) -> dict:
        """Decide on the batch ending now (``batch``: its summary row: id, times, kg, units),
        write its record, start the next window. Returns the keys to add to the batch row:
        ``cu``, ``decision``, ``decision_reasons`` (and ``record_sha256`` with a sink)."""
        r = self.rules
        cu, not_evaluable = self.cu_test()
        diverted = {c: kg - self._diverted0.get(c, 0.0) for c, kg in diverted_by_cause.items()}
        diverted = {c: kg for c, kg in sorted(diverted.items()) if kg > 1e-12}
        diverted_kg = sum(diverted.values())
        made = batch["accepted_kg"] + batch["qc_kg"] + diverted_kg
        diverted_pct = 100.0 * diverted_kg / made if made > 0 else 0.0
        reasons: list[str] = []
        decision = "released"
        if cu is not None and not cu.passed:
            decision = "rejected"
            reasons += [f"CU {cu.test} failed: {why}" for why in cu.reasons]
        if not_evaluable is not None:
            reasons.append(not_evaluable)
        if diverted_pct > r.investigate_diverted_pct:
            reasons.append(f"diverted {diverted_pct:.2f} % of the batch's output "
                           f"> {r.investigate_diverted_pct:g} %")
        hits = {p: self._alarm_counts[p] for p in r.investigate_alarm_priorities
                if self._alarm_counts.get(p)}
        if hits:
            reasons.append("alarms in the batch window: " + ", ".join(
                f"{n} {p}" for p, n in hits.items()))
        if decision == "released" and reasons:
            decision = "investigation"
        cu_dict = cu.as_dict() if cu is not None else None
        out = {"cu": cu_dict, "decision": decision, "decision_reasons": reasons}
        if self._sink is not None:
            total = sum(self._lots.values())
            record = {
                "line": self.line, "batch": batch["batch"], "product": self.product,
                "start_s": batch["start_s"], "end_s": now,
                "accepted_kg": batch["accepted_kg"], "qc_kg": batch["qc_kg"],
                "units": batch["units"],
                "genealogy": [{"lot": lot, "kg": kg, "fraction": kg / total if total else 0.0}
                              for lot, kg in sorted(self._lots.items())],
                "diverted_kg_by_cause": diverted, "diverted_pct": diverted_pct,
                "alarms": {"by_priority": dict(sorted(self._alarm_counts.items())),
                           "listed": list(self._listed),
                           "not_listed": sum(self._alarm_counts.values()) - len(self._listed)},
                "cu_sample_tablets": int(min(self.seen, r.sample_size)),
                "ipc_tablets_seen": self.seen,
                **(dict(extra) if extra else {}),
                "cu": cu_dict, "decision": decision, "decision_reasons": reasons,
            }
            out["record_sha256"] = self._sink(record)
        self._start(now, diverted_by_cause)
        return out
