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
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from .commands import PlantCommand, TransportRequest, WakeUp
from .observation import Event, Observation, PlantInfo

__all__ = ["RefillPlanner", "REFILL_TOPICS", "REFILL_TAG"]

REFILL_TAG = "refill-plan"
REFILL_TOPICS = frozenset({"start", "timer"})


class RefillPlanner:
    """See the module docstring; times in seconds."""

    def __init__(self, lead_s: float = 900.0, margin_s: float = 300.0,
                 recheck_s: float = 600.0) -> None:
        if lead_s < 0 or margin_s < 0 or not recheck_s > 0:
            raise ValueError("need refill_lead_s >= 0, refill_margin_s >= 0, recheck_s > 0")
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

    def decide(self, events: Sequence[Event], obs: Observation) -> list[PlantCommand]:
        if not self.feeders:
            return []
        now = obs.time_s
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
            if t_req <= now:
                self.requests += 1
                out.append(TransportRequest(
                    info.store, info.dock, 1, f"{name}: low level in {t_low - now:.0f} s, "
                    f"lead {self.lead:g} s + margin {self.margin:g} s"))
                nxt = min(nxt, now + self.recheck)
            else:
                nxt = min(nxt, t_req)
        if nxt < self._wake:
            self._wake = nxt
            out.append(WakeUp(nxt, REFILL_TAG, "next refill request"))
        return out
