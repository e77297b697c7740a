"""Customer orders and their release into the plant: an order book in front of a buffer.

An *order* asks for ``quantity`` units of one product by a due date. Orders arrive in the book
(a scripted list, a random stream, or both), wait, and are released one at a time, unit by
unit, into the book's buffer. Every unit of an order carries the order id as its lot, and every
transformation downstream keeps the lot (``MaterialFactory.transform``), so an order is
*complete* when its last unit (or the last unit made from it) has left the plant:
``factory.material.LotCounter`` counts them without a pass over the WIP.

Release is limited by CONWIP on orders (Spearman, Woodruff & Hopp 1990): at most
``max_orders_in_process`` orders released and not yet complete, and by room in the buffer. A
started order is released to its end before the next one starts (no lot splitting).

*Which* order starts next is the supervisor's decision, not this agent's: the book asks its
:class:`ReleasePolicy` (set through the policy API's ``Dispatch`` command, FIFO until then) and
honours an explicit priority list first (``Sequence`` command: these orders first, in this
order). This layer knows nothing of rules or solvers (``control`` is wired in by
``scenarios``).

Results: ``orders.parquet`` (one row per order, written when it completes; orders still open at
the end of the run with null completion), events ``order`` (arrival), ``order_release`` (first
unit released) and ``order_complete`` (detail: tardiness) in ``events.parquet``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import pyarrow as pa
import simpy
from mesa.discrete_space import FixedAgent

from darkfab.factory.buffers import Buffer
from darkfab.factory.distributions import Sampler
from darkfab.factory.material import LotCounter
from darkfab.factory.recorder import TableWriter

from .flow import Router
from .model import PlantModel

__all__ = ["Order", "OrderBook", "ReleasePolicy", "ORDERS_SCHEMA", "OrderStream"]

ORDERS_SCHEMA = pa.schema([
    pa.field("run_id", pa.string(), nullable=False),
    pa.field("replication", pa.int32(), nullable=False),
    pa.field("order", pa.string(), nullable=False),
    pa.field("book", pa.string(), nullable=False),
    pa.field("product", pa.string(), nullable=False),
    pa.field("quantity", pa.int64(), nullable=False),
    pa.field("weight", pa.float64(), nullable=False),
    pa.field("arrival_s", pa.float64(), nullable=False),
    pa.field("due_s", pa.float64(), nullable=False),
    pa.field("release_start_s", pa.float64(), nullable=True),
    pa.field("release_end_s", pa.float64(), nullable=True),
    pa.field("complete_s", pa.float64(), nullable=True),
    pa.field("units_good", pa.int64(), nullable=False),
    pa.field("units_scrapped", pa.int64(), nullable=False),
    pa.field("tardiness_s", pa.float64(), nullable=True),
])
"""One row per order; release and completion times are null if they did not happen."""


@dataclass(slots=True, eq=False)
class Order:
    """One customer order (times in simulated seconds)."""

    id: str
    product: str
    quantity: int
    arrival_s: float
    due_s: float
    weight: float = 1.0
    released: int = 0
    release_start_s: float = math.nan
    release_end_s: float = math.nan
    complete_s: float = math.nan
    units_good: int = 0
    units_scrapped: int = 0

    @property
    def status(self) -> str:
        """waiting, releasing, released (all units in the plant) or complete."""
        if not math.isnan(self.complete_s):
            return "complete"
        if self.released == 0:
            return "waiting"
        return "releasing" if self.released < self.quantity else "released"

    @property
    def tardiness_s(self) -> float:
        return max(0.0, self.complete_s - self.due_s)


class ReleasePolicy(Protocol):
    """Which of the waiting ``orders`` (arrival order) to start at ``now``: an index."""

    name: str

    def choose(self, orders: Sequence[Order], now: float) -> int: ...


class FirstCome:
    """First come, first released: the plant's default until a controller chooses."""

    name = "fifo"

    def choose(self, orders: Sequence[Order], now: float) -> int:
        return 0


@dataclass
class OrderStream:
    """Random order arrivals: inter-arrival time, quantity (rounded, at least 1), product,
    due date ``arrival + due_allowance × quantity × work_s_per_unit`` (total-work-content due
    dates, Baker 1984), at most ``max_orders``."""

    interarrival: Sampler
    quantity: Sampler
    products: Sequence[str]
    product_choice: Router | None
    due_allowance: float
    max_orders: int | None = None


class OrderBook(FixedAgent):
    """See the module docstring. ``script``: orders known in advance (arrival times may be in
    the future); ``stream``: random arrivals; ``work_s_per_unit``: the expected bottleneck time
    per released unit, used for stream due dates and offered to the controller."""

    def __init__(self, model: PlantModel, name: str, node: str, to: Buffer, *,
                 script: Sequence[Order] = (), stream: OrderStream | None = None,
                 work_s_per_unit: float, changeover_s: float = 0.0,
                 max_orders_in_process: int = 2) -> None:
        super().__init__(model)
        self.cell = model.node_cell(node)
        self.name = name
        self.node = node
        self.to = to
        self.script = sorted(script, key=lambda o: o.arrival_s)
        self.stream = stream
        self.work_s_per_unit = work_s_per_unit
        self.changeover_s = changeover_s
        self.max_in_process = max_orders_in_process
        self.policy: ReleasePolicy = FirstCome()
        self.priority: list[str] = []
        self.waiting: list[Order] = []  # arrived, not started; arrival order
        self.current: Order | None = None  # being released
        self.in_process: dict[str, Order] = {}  # started, not complete
        self.known: dict[str, Order] = {}  # arrived and not complete (what a controller sees)
        self.done = _Tally()  # completed orders that arrived after warm-up
        self.arrived = 0
        self.sequenced = 0  # orders started because the controller's sequence named them
        self.stopped = False
        self.listeners: list[Callable[[OrderBook, str, Order], None]] = []
        if model.lots is None:
            model.lots = LotCounter()
        self.table = TableWriter(model.log.path.parent / "orders.parquet", ORDERS_SCHEMA,
                                 model.run_id, model.streams.replication, 4096)
        model.extra_writers.append(self.table)
        self._wake: simpy.Event | None = None
        self._seq = 0

    # --- processes ------------------------------------------------------------------------
    def start(self) -> None:
        env = self.model.env
        if self.script:
            env.process(self._scripted())
        if self.stream is not None:
            env.process(self._random())
        env.process(self._release())

    def stop(self) -> None:
        """Release nothing more (a safe stop); a unit waiting for room still enters."""
        self.stopped = True

    def _scripted(self):
        env = self.model.env
        for o in self.script:
            if o.arrival_s > env.now:
                yield env.timeout(o.arrival_s - env.now)
            self._arrive(o)

    def _random(self):
        env, st = self.model.env, self.stream
        assert st is not None
        n = 0
        while st.max_orders is None or n < st.max_orders:
            yield env.timeout(st.interarrival())
            q = max(1, round(st.quantity()))
            product = st.products[0] if st.product_choice is None else st.product_choice()
            n += 1
            self._seq += 1
            now = env.now
            self._arrive(Order(f"{self.name}-{self._seq:06d}", product, q, now,
                               now + st.due_allowance * q * self.work_s_per_unit))

    def _arrive(self, o: Order) -> None:
        now = self.model.env.now
        o.arrival_s = now
        self.arrived += 1
        self.waiting.append(o)
        self.known[o.id] = o
        self.model.log.record(now, "order", self.name, -1, o.product, self.to.name,
                              f"{o.id} quantity={o.quantity} due={o.due_s:.6g}")
        self._notify("order", o)
        self._kick()

    def _kick(self) -> None:
        if self._wake is not None and not self._wake.triggered:
            self._wake.succeed()

    def _next(self) -> Order | None:
        if not self.waiting or len(self.in_process) >= self.max_in_process:
            return None
        if self.priority:
            by_id = {o.id: i for i, o in enumerate(self.waiting)}
            for oid in self.priority:
                if oid in by_id:
                    self.sequenced += 1
                    return self.waiting.pop(by_id[oid])
        i = self.policy.choose(self.waiting, self.model.env.now)
        return self.waiting.pop(i)

    def _release(self):
        m = self.model
        env, log = m.env, m.log.record
        lots = m.lots
        assert lots is not None
        while True:
            if self.stopped or not self.waiting or len(self.in_process) >= self.max_in_process:
                self._wake = env.event()
                yield self._wake
                self._wake = None
                continue
            # a decision round: what the controller decides in this instant (on the arrival
            # or completion that woke the book) applies before the book chooses
            yield env.timeout(0)
            o = None if self.stopped else self._next()
            if o is None:
                continue
            self.current = o
            self.in_process[o.id] = o
            o.release_start_s = env.now
            lots.watch(o.id, self._lot_done)
            log(env.now, "order_release", self.name, -1, o.product, self.to.name,
                f"{o.id} by {self.policy.name}" + (" (sequenced)" if o.id in self.priority
                                                   else ""))
            self._notify("order_release", o)
            while o.released < o.quantity and not self.stopped:
                now = env.now
                unit = m.material.new_unit(o.product, o.id, now)
                o.released += 1
                lots.entered(o.id, 1)
                m.units_entered(now, 1)
                log(now, "create", self.name, unit.id, o.product, self.to.name, o.id)
                if not self.to.try_put(unit):
                    ev = self.to.put(unit)
                    if not ev.triggered:
                        yield ev
            o.release_end_s = env.now
            self.current = None
            lots.close(o.id, env.now)  # may complete the order at once (all scrapped)

    # --- completion -------------------------------------------------------------------------
    def _lot_done(self, lot: str, now: float, good: int, scrapped: int) -> None:
        o = self.in_process.pop(lot, None)
        if o is None:
            return
        self.known.pop(lot, None)
        o.complete_s = now
        o.units_good, o.units_scrapped = good, scrapped
        self.model.log.record(now, "order_complete", self.name, -1, o.product, self.to.name,
                              f"{o.id} tardiness={o.tardiness_s:.6g}")
        self._write(o)
        if o.arrival_s >= self.model.warmup_s:
            self.done.add(o)
        self._notify("order_complete", o)
        self._kick()

    def _notify(self, kind: str, o: Order) -> None:
        for fn in self.listeners:
            fn(self, kind, o)

    # --- decisions (applied by the control loop) ------------------------------------------
    def set_policy(self, policy: ReleasePolicy) -> None:
        self.policy = policy
        self._kick()

    def set_priority(self, order_ids: Sequence[str]) -> None:
        self.priority = list(order_ids)
        self._kick()

    # --- results ----------------------------------------------------------------------------
    def _write(self, o: Order) -> None:
        def opt(x: float) -> float | None:
            return None if math.isnan(x) else x
        self.table.append(o.id, self.name, o.product, o.quantity, o.weight, o.arrival_s,
                          o.due_s, opt(o.release_start_s), opt(o.release_end_s),
                          opt(o.complete_s), o.units_good, o.units_scrapped,
                          None if math.isnan(o.complete_s) else o.tardiness_s)

    def finish(self, end: float) -> None:
        """Write the orders still open at the end of the run (null completion)."""
        for o in sorted(self.known.values(), key=lambda o: o.arrival_s):
            self._write(o)

    def kpis(self, end: float) -> dict:
        """Orders that arrived after warm-up: counts, tardiness, lead times (s)."""
        d = self.done
        warm = self.model.warmup_s
        open_ = [o for o in self.known.values() if o.arrival_s >= warm]
        n = d.n

        def mean(x: float) -> float:
            return x / n if n else math.nan
        return {
            "orders_arrived": n + len(open_),
            "orders_completed": n,
            "orders_open_at_end": len(open_),
            "orders_open_past_due": sum(1 for o in open_ if o.due_s < end),
            "on_time_fraction": (n - d.late) / n if n else math.nan,
            "mean_tardiness_s": mean(d.tardiness),
            "max_tardiness_s": d.max_tardiness if n else math.nan,
            "total_weighted_tardiness_s": d.weighted_tardiness,
            "max_lateness_s": d.max_lateness if n else math.nan,
            "mean_lead_time_s": mean(d.lead),
            "mean_flow_time_s": mean(d.flow),
            "units_good": d.good,
            "units_scrapped": d.scrapped,
            "release_policy": self.policy.name,
            "orders_released_by_sequence": self.sequenced,
        }


@dataclass
class _Tally:
    """Running sums over completed orders (constant memory whatever the horizon)."""

    n: int = 0
    late: int = 0
    tardiness: float = 0.0
    weighted_tardiness: float = 0.0
    max_tardiness: float = 0.0
    max_lateness: float = -math.inf
    lead: float = 0.0
    flow: float = 0.0
    good: int = 0
    scrapped: int = 0

    def add(self, o: Order) -> None:
        t = o.tardiness_s
        self.n += 1
        self.late += o.complete_s > o.due_s
        self.tardiness += t
        self.weighted_tardiness += o.weight * t
        self.max_tardiness = max(self.max_tardiness, t)
        self.max_lateness = max(self.max_lateness, o.complete_s - o.due_s)
        self.lead += o.complete_s - o.arrival_s
        self.flow += o.complete_s - o.release_start_s
        self.good += o.units_good
        self.scrapped += o.units_scrapped
