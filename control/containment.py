"""Containment through genealogy: the quality half of the built-in supervisor's fault recovery.

The plant's quality system (``darkfab.agents.quality``) names *suspect* raw-material lots
(``quality`` events: an out-of-spec PAT excursion the line's model does not explain, or a unit's
QC assay out of spec) and records, for every output lot (batch) of a continuous line, the
raw-material lots in its units and the units' assays (``Observation.lots``; a ``lot`` event per
unit made). The policy:

1. **quarantine** every output lot with a unit that contains a suspect lot above
   ``min_fraction`` of its mass — those that contain it now (``Observation.lots.containing``) and
   those that take it in later (``lot`` events);
2. **divert** a quarantined lot as soon as one of its units' assays is out of spec;
3. **release** it when its assays are in spec, it has been held ``hold_s``, and no unit with a
   suspect lot in it has been made for ``hold_s`` (the suspect has left the line).

Every command carries its reason. Units of a quarantined lot reaching a product sink are held
there; see :class:`darkfab.control.commands.Quarantine`.
"""

from __future__ import annotations

from collections.abc import Sequence

from .commands import Divert, PlantCommand, Quarantine, Release, WakeUp
from .observation import Event, LotObs, Observation

__all__ = ["ContainmentPolicy", "CONTAINMENT_TOPICS"]

CONTAINMENT_TOPICS = frozenset({"quality", "lot:suspect", "timer", "start"})
"""``lot`` events matter only once a lot is suspect (none held, none to quarantine before)."""
_TAG = "containment"


class ContainmentPolicy:
    """Quarantine, then release or divert, output lots with suspect raw-material lots (module
    docstring). ``min_fraction``: mass fraction of a unit above which a suspect lot in it makes
    its output lot suspect; ``hold_s``: the least quarantine, and the time without new units
    containing a suspect before release."""

    def __init__(self, min_fraction: float = 0.0, hold_s: float = 3600.0) -> None:
        self.min_fraction = min_fraction
        self.hold_s = hold_s

    def reset(self) -> None:
        if self.min_fraction < 0 or not self.hold_s > 0:
            raise ValueError("quarantine_min_fraction must be >= 0 and hold_s > 0")
        self._suspects: dict[str, float] = {}  # raw-material lot -> when suspected
        self._held: dict[str, float] = {}  # output lot -> quarantined at
        self._diverted: set[str] = set()
        self._wakes: set[float] = set()
        self.quarantined = self.released = self.diverted = 0

    def decide(self, events: Sequence[Event], obs: Observation) -> list[PlantCommand]:
        out: list[PlantCommand] = []
        lots = obs.lots
        now = max([obs.time_s] + [e.time_s for e in events])
        check = False
        for e in events:
            if e.kind == "quality" and e.detail not in self._suspects:
                self._suspects[e.detail] = e.time_s
                for lot in lots.containing(e.detail, self.min_fraction):
                    if lot not in self._held and lot not in self._diverted:
                        out.append(self._quarantine(lot, e.detail, lots[lot], now))
                check = True
            elif e.kind == "lot":
                lot = e.source
                if self._suspects and lot not in self._held and lot not in self._diverted \
                        and lot in lots:
                    lo = lots[lot]
                    for raw in self._suspects:  # in the unit just made
                        if lo.latest_unit.get(raw, 0.0) > self.min_fraction:
                            out.append(self._quarantine(lot, raw, lo, now))
                            break
                check = True
            elif (e.kind == "timer" and e.detail == _TAG) or e.kind == "start":
                check = True  # (a resume after an outage: its timers may have been lost)
        if check and self._held:
            out += self._verdicts(obs, now)
        return out

    def _quarantine(self, lot: str, raw: str, lo: LotObs, now: float) -> PlantCommand:
        self._held[lot] = now
        self.quarantined += 1
        x = max(lo.peak_fraction.get(raw, 0.0), lo.latest_unit.get(raw, 0.0))
        return Quarantine(lot, f"genealogy: contains suspect raw-material lot {raw} (up to "
                               f"{100 * x:.3g} % of a unit)")

    def _verdicts(self, obs: Observation, now: float) -> list[PlantCommand]:
        out: list[PlantCommand] = []
        self._wakes = {w for w in self._wakes if w > now}  # fired, or lost in an outage
        due_next = None
        for lot, since in list(self._held.items()):
            if lot not in obs.lots:
                continue
            lo = obs.lots[lot]
            raws = [r for r in self._suspects if r in lo.last_seen_s]
            content = (f"{lo.assayed} unit assays, predicted API {lo.content_min_pct:.2f}-"
                       f"{lo.content_max_pct:.2f} %")
            if lo.out_of_spec:
                del self._held[lot]
                self._diverted.add(lot)
                self.diverted += 1
                out.append(Divert(lot, f"{lo.out_of_spec} of {lo.assayed} unit assays out of "
                                       f"spec; suspect {', '.join(raws)}"))
                continue
            last = max((lo.last_seen_s[r] for r in raws), default=since)
            due = max(since, last) + self.hold_s
            if now >= due - 1e-9:
                del self._held[lot]
                self.released += 1
                out.append(Release(lot, f"{content}, all in spec; no unit with suspect "
                                        f"{', '.join(raws)} for {now - last:.0f} s"))
            elif due_next is None or due < due_next:
                due_next = due
        if due_next is not None and not any(w <= due_next for w in self._wakes):
            self._wakes.add(due_next)
            out.append(WakeUp(due_next, _TAG, "containment: release check"))
        return out
