"""Rerouting work around equipment that is down (a recovery step of the built-in supervisor).

A unit whose ``next`` branches lead to parallel, equivalent equipment
(``alternative_routes = true`` in the scenario, :attr:`EquipmentInfo.alternative_routes`)
splits its output by branch weights. When the unit fed by one branch goes down with an active
fault (Held or Aborted with an alarm), :class:`Rerouting` sets that branch's weight to 0
(``SetPoint(unit, "route:<buffer>", 0)``) as long as another branch leads to a unit that is up,
so work flows to the alternates instead of piling up in front of the broken unit; when the unit
is repaired the original weight is restored. With a robot fleet (and ``move_wip``), the units
already waiting in the broken unit's buffer are sent to the buffer of a working alternate by a
``TransportRequest`` (as many as it has room for; the plant rejects the request if no lane
joins the two); without one they wait for the repair.
"""

from __future__ import annotations

from collections.abc import Sequence

from .commands import PlantCommand, SetPoint, TransportRequest
from .observation import Event, Observation, PlantInfo

__all__ = ["Rerouting", "REROUTE_TOPICS"]

REROUTE_TOPICS = frozenset({"start", "fault", "repaired"})


class Rerouting:
    """See the module docstring. Stateless until :meth:`reset`."""

    def __init__(self, move_wip: bool = True) -> None:
        self.move_wip = move_wip
        self._splitters: dict[str, list[tuple[str, str, float]]] = {}
        self._off: set[tuple[str, str]] = set()
        self._fleet = False

    def reset(self, info: PlantInfo) -> None:
        self._fleet = bool(info.robots)
        consumer = {e.input: n for n, e in info.equipment.items()}
        # buffer -> [(splitter unit, consumer of the buffer, original weight)]
        self._splitters = {}
        self._branches: dict[str, list[tuple[str, str | None]]] = {}
        for n, e in info.equipment.items():
            if not e.alternative_routes:
                continue
            self._branches[n] = [(b, consumer.get(b)) for b, _ in e.routes]
            for b, w in e.routes:
                c = consumer.get(b)
                if c is not None:
                    self._splitters.setdefault(c, []).append((n, b, w))
        self._weight = {(n, b): w for c, lst in self._splitters.items() for n, b, w in lst}
        self._off = set()

    def decide(self, events: Sequence[Event], obs: Observation) -> list[PlantCommand]:
        if not self._splitters:
            return []
        if any(e.kind == "start" or e.kind == "repaired" for e in events):
            out = self._restore(obs)
        else:
            out = []
        for e in events:
            if e.kind == "fault" and e.source in self._splitters:
                out += self._divert_from(e.source, obs)
        return out

    def _down(self, unit: str | None, obs: Observation) -> bool:
        if unit is None:
            return False
        o = obs.equipment.get(unit)
        return o is not None and bool(o.alarms)

    def _divert_from(self, unit: str, obs: Observation) -> list[PlantCommand]:
        if not self._down(unit, obs):
            return []
        out: list[PlantCommand] = []
        for splitter, buf, _ in self._splitters[unit]:
            if (splitter, buf) in self._off:
                continue
            alive = [b for b, c in self._branches[splitter]
                     if b != buf and (splitter, b) not in self._off and not self._down(c, obs)
                     and self._weight.get((splitter, b), 1.0) > 0]
            if not alive:
                continue  # nowhere else to go: the work waits for the repair
            self._off.add((splitter, buf))
            alarms = ", ".join(obs.equipment[unit].alarms)
            out.append(SetPoint(splitter, f"route:{buf}", 0.0,
                                f"{unit} down ({alarms}): work to {', '.join(alive)}"))
            waiting = obs.buffers[buf].level_units if buf in obs.buffers else None
            if self.move_wip and self._fleet and waiting:
                to = alive[0]
                b = obs.buffers.get(to)
                room = (b.capacity_units - (b.level_units or 0)) \
                    if b is not None and b.capacity_units is not None else waiting
                n = int(min(waiting, room))
                if n >= 1:
                    out.append(TransportRequest(buf, to, n, f"work waiting for {unit} ({alarms}) "
                                                f"to its alternate"))
        return out

    def _restore(self, obs: Observation) -> list[PlantCommand]:
        out: list[PlantCommand] = []
        for c, lst in self._splitters.items():
            if self._down(c, obs):
                continue
            for splitter, buf, w in lst:
                if (splitter, buf) in self._off:
                    self._off.discard((splitter, buf))
                    out.append(SetPoint(splitter, f"route:{buf}", w, f"{c} repaired"))
        return out
