"""Feeder refill planning: when to send for the next raw-material container.

With ``refill_request = "controller"`` a feeder's refill dock is not kept stocked by the fleet
(kanban); a container comes only when the controller asks (``TransportRequest(store, dock,
1)``). :class:`RefillPlanner` asks just in time: the hopper reaches its low level (where a
refill starts if a container is there) at

    t_low = now + (M − M_low) / F          (M hopper mass, F feed rate: the hopper mass balance)

and a container takes about ``lead_s`` from request to dock (robot assignment, travel, load and
unload), so it is requested at ``t_low − lead_s − margin_s``; one at a time per feeder. The
planner wakes itself (``WakeUp``) at the earliest next request time, and re-checks at least
every ``recheck_s`` while a request is outstanding or the line is stopped (the feed rate, hence
``t_low``, changes with the line's state). Compared with kanban, containers wait at the line
for ``margin_s`` rather than a whole refill interval, and robots are not tied to refills
earlier than needed; a too-short lead time shows as a hopper running empty (the line stops
Suspended, logged).

**Staggering** (``stagger``, :meth:`RefillPlanner.stagger_target`). A refill is a volumetric
period with a feed disturbance; two at once compound in the blend. A refill starts at the low
level if a container is at the dock, else when the container arrives (the hopper feeds on below
its low level meanwhile), so a refill can be deferred — by asking for its container later — but
never advanced. When feeder *i*'s refill would start within ``window_s`` of another feeder *j*'s
(``|t_low,i − t_start,j| < window_s``; ``window_s`` covers a refill's volumetric period — in
cdc-line container / (refill rate − feed rate) = 52–93 s — and the disturbance it leaves in the
blender, default 300 s), the feeder whose reserve below its low level lasts longer
(``M_low / F``) is deferred: its container is asked for so as to arrive just clear of the other
refill, at a tenth of the way into ``[t_start,j + window_s, t_empty − margin_s]`` (``t_empty``
when its hopper would be empty), with the lead time estimated as the median of the delays
observed from request to dock (``lead_s`` until there are 3). If that interval is empty the
refill is not deferred.

Measured on cdc-line with every feeder's refills the controller's (2 days, 6 paired
replications, ``tests/benchmarks/bench_line_supervisor.py stagger``): the API's refill interval
is twice the excipient's, so without staggering nearly every API refill overlaps an excipient
refill (54.5 overlapping pairs); staggering leaves 2.0 (−52.5 ± 6.1, 95 % CI), but a refill
deferred below the low level starts from a hopper whose feed factor is further from the full
hopper's, and the line's refill-induced deviations rise from 18.7 to 48.8 (diverted mass
84 → 167 kg). In this plant two refills at once do not compound measurably, while a late refill
does: staggering is off by default. It would pay with a refill that can be *advanced* (a
top-up triggered above the low level), which the plant does not offer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from .commands import PlantCommand, TransportRequest, WakeUp
from .line_rate import LeadTimes
from .observation import Event, FeederObs, Observation, PlantInfo

__all__ = ["RefillPlanner", "REFILL_TOPICS", "REFILL_TAG"]

REFILL_TAG = "refill-plan"
REFILL_TOPICS = frozenset({"start", "timer"})


class RefillPlanner:
    """See the module docstring; times in seconds."""

    def __init__(self, lead_s: float = 900.0, margin_s: float = 300.0,
                 recheck_s: float = 600.0, stagger: bool = False,
                 window_s: float = 300.0) -> None:
        if lead_s < 0 or margin_s < 0 or not recheck_s > 0 or not window_s >= 0:
            raise ValueError("need refill_lead_s >= 0, refill_margin_s >= 0, recheck_s > 0, "
                             "refill_stagger_window_s >= 0")
        self.stagger, self.window = stagger, window_s
        self.leads = LeadTimes(lead_s, 0.5, 20)
        self.deferred: dict[str, float] = {}  # feeder -> planned refill start (deferred)
        self.staggered = 0
        self.lead = lead_s
        self.margin = margin_s
        self.recheck = recheck_s
        self.feeders: dict = {}
        self._wake = math.inf
        self.requests = 0

    def reset(self, info: PlantInfo) -> None:
        self.feeders = {n: f for n, f in info.feeders.items() if f.refill_request == "controller"}
        self._wake = math.inf
        self.requests = 0
        self.leads = LeadTimes(self.lead, 0.5, 20)
        self.deferred = {}
        self.staggered = 0

    def stagger_target(self, name: str, obs: Observation) -> float | None:
        """The time feeder ``name``'s refill should start to keep clear of the other feeders'
        refills (``None``: at its low level); see the module docstring."""
        now = obs.time_s
        f = obs.feeders[name]
        if f.feed_rate_kg_s <= 0:
            return None
        t_low = now + max(0.0, f.mass_kg - f.low_level_kg) / f.feed_rate_kg_s
        reserve = f.low_level_kg / f.feed_rate_kg_s
        for other, g in obs.feeders.items():
            if other == name or other not in self.feeders or g.feed_rate_kg_s <= 0:
                continue
            start = self._start(now, other, g)
            if abs(t_low - start) >= self.window:
                continue
            if g.low_level_kg / g.feed_rate_kg_s > reserve and other not in self.deferred \
                    and start >= t_low:
                continue  # the other one has the longer reserve: it will be deferred
            lo, hi = start + self.window, t_low + reserve - self.margin
            if lo <= hi:
                return lo + 0.1 * (hi - lo)
        return None

    def _start(self, now: float, name: str, g: FeederObs) -> float:
        """When feeder ``name``'s next refill starts (now if refilling)."""
        if g.mode == "refill":
            return now
        t_low = now + max(0.0, g.mass_kg - g.low_level_kg) / g.feed_rate_kg_s
        return max(t_low, self.deferred.get(name, t_low))

    def decide(self, events: Sequence[Event], obs: Observation) -> list[PlantCommand]:
        if not self.feeders:
            return []
        now = obs.time_s
        if self.stagger:
            for name in self.feeders:
                f = obs.feeders.get(name)
                if f is not None:
                    self.leads.observe(now, f)
                    if f.mode == "refill" or f.containers_at_dock:
                        self.deferred.pop(name, None)
        if any(e.kind == "timer" and e.detail == REFILL_TAG for e in events):
            self._wake = math.inf  # the pending wake-up has fired
        elif not any(e.kind == "start" for e in events) and now < self._wake:
            return []
        out: list[PlantCommand] = []
        nxt = math.inf
        for name, info in self.feeders.items():
            f = obs.feeders.get(name)
            if f is None:
                continue
            if f.containers_at_dock + f.containers_coming >= 1:
                nxt = min(nxt, now + self.recheck)  # look again after this one is used
                continue
            if f.feed_rate_kg_s <= 0:
                nxt = min(nxt, now + self.recheck)  # stopped: the hopper is not draining
                continue
            t_low = now + max(0.0, f.mass_kg - f.low_level_kg) / f.feed_rate_kg_s
            t_req = t_low - self.lead - self.margin
            target = self.stagger_target(name, obs) if self.stagger and t_req <= now else None
            if target is not None:
                if name not in self.deferred:
                    self.staggered += 1
                self.deferred[name] = target
                t_req = target - self.leads.estimate(name)
            if t_req <= now:
                self.requests += 1
                why = (f"{name}: low level in {t_low - now:.0f} s, lead {self.lead:g} s + "
                       f"margin {self.margin:g} s") if target is None else (
                    f"{name}: refill deferred to {target:.0f} s, clear of another feeder's "
                    f"refill (low level in {t_low - now:.0f} s, lead "
                    f"{self.leads.estimate(name):.0f} s)")
                out.append(TransportRequest(info.store, info.dock, 1, why))
                nxt = min(nxt, now + self.recheck)
            else:
                nxt = min(nxt, t_req)
        if nxt < self._wake:
            self._wake = nxt
            out.append(WakeUp(nxt, REFILL_TAG, "next refill request"))
        return out
