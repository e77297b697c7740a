"""Sources, sinks and routing: where discrete material enters, leaves and which way it goes."""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence

import numpy as np
import simpy
from mesa.discrete_space import FixedAgent

from darkfab.factory.buffers import Buffer
from darkfab.factory.distributions import Sampler
from darkfab.factory.material import Unit

from .model import PlantModel

__all__ = ["Source", "Sink", "Router"]


class Sink(FixedAgent):
    """Where units leave the plant: ``product`` sinks count as completed, ``scrap`` as rejected.

    ``hold``: set by lot containment (:mod:`darkfab.agents.quality`) on product sinks, called
    with each arriving unit; ``True`` means it took the unit (held in quarantine or scrapped)."""

    hold = None  # fn(sink, unit, origin) -> bool, or None

    def __init__(self, model: PlantModel, name: str, node: str, good: bool = True) -> None:
        super().__init__(model)
        self.cell = model.node_cell(node)
        self.name = name
        self.node = node
        self.good = good
        self.received = 0
        self._kind = "complete" if good else "scrap"

    def absorb(self, unit: Unit, origin: str) -> None:
        if self.hold is not None and self.hold(self, unit, origin):
            return
        m = self.model
        now = m.env.now
        m.log.record(now, self._kind, self.name, unit.id, unit.product, self.name, origin)
        self.received += 1
        m.unit_left(now, unit, self.good)

    def complete_held(self, now: float, unit: Unit, origin: str, note: str) -> None:
        """A unit held here in quarantine is released: completed now."""
        m = self.model
        m.log.record(now, "complete", self.name, unit.id, unit.product, self.name,
                     f"{origin}; {note}")
        self.received += 1
        m.unit_left(now, unit, True)

    def scrap_held(self, now: float, unit: Unit, note: str) -> None:
        """A unit of a diverted lot (held here, or arriving now) is scrapped."""
        m = self.model
        m.log.record(now, "scrap", self.name, unit.id, unit.product, self.name, note)
        m.unit_left(now, unit, False)


class Router:
    """Chooses the next destination: fixed, or by probabilities drawn from its own stream.

    ``names`` (default: the targets' names) are the destinations as the scenario names them;
    :meth:`set_weight` changes one branch's weight during the run (a supervisor rerouting work
    around a unit that is down: weight 0 sends nothing there). The stream is drawn once per
    routing whatever the weights, so common random numbers survive a reroute."""

    __slots__ = ("targets", "names", "weights", "_cum", "_u")

    def __init__(self, targets: Sequence[Buffer | Sink], probabilities: Sequence[float],
                 uniform: Sampler | None, names: Sequence[str] | None = None) -> None:
        self.targets = list(targets)
        self.names = list(names) if names is not None else [getattr(t, "name", str(t))
                                                             for t in self.targets]
        self.weights = [float(p) for p in probabilities]
        self._u = uniform if len(self.targets) > 1 else None
        self._cum: list[float] = []
        self._update()

    def _update(self) -> None:
        cum = np.cumsum(self.weights) / float(np.sum(self.weights))
        self._cum = cum.tolist()

    def set_weight(self, name: str, weight: float) -> str | None:
        """Set the weight of the branch to ``name``; the reason if that is impossible."""
        if name not in self.names:
            return f"no branch to {name!r} (branches: {', '.join(self.names)})"
        if not (weight >= 0 and math.isfinite(weight)):
            return f"weight must be finite and >= 0, got {weight}"
        i = self.names.index(name)
        if weight == 0 and sum(w for j, w in enumerate(self.weights) if j != i) <= 0:
            return "every branch would have weight 0"
        self.weights[i] = float(weight)
        self._update()
        return None

    def __call__(self) -> Buffer | Sink:
        if self._u is None:
            return self.targets[0]
        i = bisect.bisect_right(self._cum, self._u())
        return self.targets[min(i, len(self.targets) - 1)]


class Source(FixedAgent):
    """Releases lots of ``lot_size`` units into a buffer at random inter-arrival times; a full
    buffer blocks the source (a saturated source is ``constant`` 0 s into a finite buffer)."""

    def __init__(self, model: PlantModel, name: str, node: str, to: Buffer,
                 interarrival: Sampler, products: Sequence[str], product_choice: Router | None,
                 lot_size: int = 1, max_units: int | None = None) -> None:
        super().__init__(model)
        self.cell = model.node_cell(node)
        self.name = name
        self.node = node
        self.to = to
        self.interarrival = interarrival
        self.products = list(products)
        self.product_choice = product_choice
        self.lot_size = lot_size
        self.max_units = max_units
        self.released = 0
        self.stopped = False
        self._proc = None

    def run(self):
        """The source's SimPy process (a generator)."""
        if self.max_units is None and self.lot_size == 1 and self.product_choice is None:
            return self._run_single()
        return self._run_general()

    def start(self) -> None:
        self._proc = self.model.env.process(self._stoppable(self.run()))

    def stop(self) -> None:
        """Release nothing more (a safe stop); a unit already waiting for room still enters."""
        self.stopped = True
        if self._proc is not None and self._proc.is_alive:
            self._proc.interrupt("stop")

    @staticmethod
    def _stoppable(gen):
        try:
            yield from gen
        except simpy.Interrupt:
            gen.close()

    def _run_single(self):
        """The common case, lean: one unit per lot, one product, no cap on releases."""
        m = self.model
        env, rec = m.env, m.log.record
        timeout, interarrival = env.timeout, self.interarrival
        new_lot, new_unit = m.material.new_lot, m.material.new_unit
        entered = m.units_entered
        to, name, product = self.to, self.name, self.products[0]
        to_name, try_put = to.name, to.try_put
        while True:
            yield timeout(interarrival())
            lot = new_lot(name)
            now = env.now
            unit = new_unit(product, lot, now)
            self.released += 1
            entered(now, 1)
            rec(now, "create", name, unit.id, product, to_name, lot)
            if not try_put(unit):
                ev = to.put(unit)
                if not ev.triggered:
                    yield ev

    def _run_general(self):
        m = self.model
        env, log, mat = m.env, m.log, m.material
        to, name = self.to, self.name
        while self.max_units is None or self.released < self.max_units:
            yield env.timeout(self.interarrival())
            lot = mat.new_lot(name)
            n = self.lot_size if self.max_units is None else min(
                self.lot_size, self.max_units - self.released)
            for _ in range(n):
                product = self.products[0] if self.product_choice is None \
                    else self.product_choice()
                unit = mat.new_unit(product, lot, env.now)
                self.released += 1
                m.units_entered(env.now, 1)
                log.record(env.now, "create", name, unit.id, product, to.name, lot)
                if not to.try_put(unit):
                    ev = to.put(unit)
                    if not ev.triggered:
                        yield ev
