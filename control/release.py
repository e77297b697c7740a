"""Order release and sequencing: which customer order the plant starts next.

An order book (``darkfab.agents.orders``) releases one order at a time into its buffer; the
order it starts next is chosen by

- a dispatching rule of :mod:`darkfab.control.dispatching` (FIFO, SPT, EDD, CR, ATC, …) applied
  by the plant at each release (:class:`RuleRelease`, set by a ``Dispatch`` command), where an
  order is one operation of ``quantity × work_s_per_unit`` seconds; or
- an optimized sequence (:func:`sequence_orders`, sent as a ``Sequence`` command) that a
  supervisor recomputes on a rolling horizon (:class:`OrderRelease`).

**The sequencing model** (single machine — the book's bottleneck — with sequence-dependent
changeovers; Pinedo, *Scheduling*, 5th ed., ch. 3–4): order *j* takes
``p_j = quantity_j × work_s_per_unit`` on the bottleneck, a changeover of ``changeover_s`` when
its product differs from the previous order's, and is late by ``T_j = max(0, C_j − d_j)``. The
objective is the total weighted tardiness ``Σ w_j T_j`` (1|s_jk|Σw_jT_j, NP-hard). CP-SAT
solves it exactly for the orders in the window: one interval per order, an ``AddCircuit`` over
"order *i* directly before *j*" literals carrying the changeover, the previous product as the
circuit's depot. Orders beyond ``max_orders`` (by due date) are appended in EDD order.

**Rolling horizon with a freeze window** (as :meth:`CpSatScheduler.reschedule`): when the plan
is recomputed at ``now``, the orders the previous plan starts before ``now + freeze_window_s``
keep their places at the head of the sequence; only the rest is re-optimised. The solver runs
single-threaded with a fixed seed and stops on a deterministic work limit (and, as a safety,
``time_limit_s`` of wall time), so the same run gives the same sequence.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from .commands import Dispatch, PlantCommand
from .commands import Sequence as SequenceCommand
from .dispatching import RULES, Candidate, make_rule, select
from .observation import Event, Observation, OrderObs, PlantInfo

__all__ = ["RuleRelease", "SequencingResult", "sequence_orders", "plan_cost", "OrderRelease",
           "RELEASE_TOPICS"]

RELEASE_TOPICS = frozenset({"start", "order", "order_complete", "fault", "repaired"})
"""The events that make a rolling-horizon release policy recompute its plan."""


class OrderLike(Protocol):
    id: str
    product: str
    quantity: int
    arrival_s: float
    due_s: float
    weight: float


class RuleRelease:
    """A dispatching rule applied to the waiting orders of a book (an order is one operation
    of ``quantity × work_s_per_unit`` seconds; its due date is the order's)."""

    def __init__(self, rule: str, work_s_per_unit: float) -> None:
        self.rule = make_rule(rule)
        self.name = rule
        self.work = work_s_per_unit

    def choose(self, orders: Sequence[OrderLike], now: float) -> int:
        cands = [Candidate(i, 0, o.quantity * self.work, o.due_s, o.quantity * self.work,
                           o.arrival_s, o.arrival_s, o.weight) for i, o in enumerate(orders)]
        return select(self.rule, cands, now)


@dataclass(frozen=True)
class SequencingResult:
    """An order sequence; ``cost`` is its total weighted tardiness (s) under the model,
    ``status`` the solver's (or ``"trivial"``)."""

    order_ids: tuple[str, ...]
    cost: float
    status: str


def plan_cost(orders: Sequence[OrderLike], start_s: float, work_s_per_unit: float,
              changeover_s: float = 0.0, last_product: str | None = None) -> float:
    """Total weighted tardiness (s) of releasing ``orders`` in this order from ``start_s``
    (the sequencing model of the module docstring)."""
    t, prev, cost = start_s, last_product, 0.0
    for o in orders:
        if prev is not None and o.product != prev:
            t += changeover_s
        t += o.quantity * work_s_per_unit
        cost += o.weight * max(0.0, t - o.due_s)
        prev = o.product
    return cost


def sequence_orders(orders: Sequence[OrderLike], start_s: float, work_s_per_unit: float,
                    changeover_s: float = 0.0, last_product: str | None = None, *,
                    max_orders: int = 20, time_limit_s: float = 5.0,
                    deterministic_limit: float = 2.0) -> SequencingResult:
    """The order sequence minimizing total weighted tardiness (see the module docstring):
    optimal for the first ``max_orders`` orders by due date when the solver proves it within
    its limits, the rest after them by due date. ``start_s``: when the bottleneck is free for
    the first of them."""
    edd = sorted(orders, key=lambda o: (o.due_s, o.arrival_s, o.id))
    head, tail = list(edd[:max_orders]), list(edd[max_orders:])
    if len(head) <= 1:
        seq = head + tail
        return SequencingResult(tuple(o.id for o in seq),
                                plan_cost(seq, start_s, work_s_per_unit, changeover_s,
                                          last_product), "trivial")
    from ortools.sat.python import cp_model

    n = len(head)
    scale = 100  # weights to integers (two decimals)
    p = [max(0, round(o.quantity * work_s_per_unit)) for o in head]
    s = round(changeover_s)
    t0 = math.ceil(start_s)
    d = [round(o.due_s) for o in head]
    w = [max(1, round(o.weight * scale)) for o in head]
    horizon = t0 + sum(p) + n * s
    m = cp_model.CpModel()
    start = [m.NewIntVar(t0, horizon, f"s{j}") for j in range(n)]
    tard = [m.NewIntVar(0, max(0, horizon - min(d)), f"T{j}") for j in range(n)]
    arcs = []
    for j in range(n):
        first = m.NewBoolVar(f"first{j}")
        last = m.NewBoolVar(f"last{j}")
        arcs += [(0, j + 1, first), (j + 1, 0, last)]
        setup0 = s if last_product is not None and head[j].product != last_product else 0
        m.Add(start[j] >= t0 + setup0).OnlyEnforceIf(first)
        m.Add(tard[j] >= start[j] + p[j] - d[j])
        for i in range(n):
            if i == j:
                continue
            lit = m.NewBoolVar(f"x{i}_{j}")
            arcs.append((i + 1, j + 1, lit))
            setup = s if head[i].product != head[j].product else 0
            m.Add(start[j] >= start[i] + p[i] + setup).OnlyEnforceIf(lit)
    m.AddCircuit(arcs)
    m.Minimize(sum(w[j] * tard[j] for j in range(n)))
    # hint: the EDD order
    t = t0
    prev = last_product
    for j, o in enumerate(head):
        t += s if prev is not None and o.product != prev else 0
        m.AddHint(start[j], t)
        t += p[j]
        prev = o.product
    solver = cp_model.CpSolver()
    prm = solver.parameters
    prm.num_workers = 1
    prm.random_seed = 0
    prm.max_time_in_seconds = time_limit_s
    prm.max_deterministic_time = deterministic_limit
    status = solver.Solve(m)
    name = solver.StatusName(status)
    if status in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        order = sorted(range(n), key=lambda j: (solver.Value(start[j]), j))
        seq = [head[j] for j in order] + tail
    else:  # no solution within the limits: EDD
        seq = head + tail
    return SequencingResult(tuple(o.id for o in seq),
                            plan_cost(seq, start_s, work_s_per_unit, changeover_s,
                                      last_product), name)


class OrderRelease:
    """The supervisor's order-release decisions (used by the built-in supervisors).

    ``rule``: a dispatching rule name (the plant applies it at each release: one ``Dispatch``
    command per book at the start) or ``"cpsat"``: on every order arrival, completion, fault
    and repair the waiting orders of each book are re-sequenced by :func:`sequence_orders`
    (``Dispatch`` EDD first, as the fallback for orders the plan has not seen yet), keeping
    the orders planned to start within ``freeze_window_s`` in place."""

    def __init__(self, rule: str = "fifo", freeze_window_s: float = 0.0,
                 time_limit_s: float = 5.0, max_orders: int = 20) -> None:
        if rule != "cpsat" and rule not in RULES:
            raise ValueError(f"unknown release rule {rule!r}; known: cpsat, "
                             f"{', '.join(sorted(RULES))}")
        if freeze_window_s < 0 or not time_limit_s > 0 or max_orders < 1:
            raise ValueError("need freeze_window_s >= 0, time_limit_s > 0, max_orders >= 1")
        self.rule = rule
        self.freeze = freeze_window_s
        self.time_limit = time_limit_s
        self.max_orders = max_orders
        self.topics = RELEASE_TOPICS if rule == "cpsat" else frozenset({"start"})
        self.books: Mapping = {}
        self._plan: dict[str, list[tuple[str, float]]] = {}
        self.solves = 0

    def reset(self, info: PlantInfo) -> None:
        self.books = info.order_books
        self._plan = {b: [] for b in self.books}
        self.solves = 0

    def decide(self, events: Sequence[Event], obs: Observation) -> list[PlantCommand]:
        if not self.books:
            return []
        kinds = {e.kind for e in events}
        out: list[PlantCommand] = []
        if "start" in kinds and not any(e.detail == "resume" for e in events):
            first = "edd" if self.rule == "cpsat" else self.rule
            why = ("fallback for orders not yet sequenced by CP-SAT" if self.rule == "cpsat"
                   else "order release rule")
            out += [Dispatch(b, first, why) for b in self.books]
        if self.rule == "cpsat" and kinds & self.topics:
            for b in self.books:
                cmd = self._resequence(b, obs)
                if cmd is not None:
                    out.append(cmd)
        return out

    def _resequence(self, book: str, obs: Observation) -> PlantCommand | None:
        info = self.books[book]
        mine = [o for o in obs.orders.values() if o.book == book]
        waiting = [o for o in mine if o.status == "waiting"]
        if not waiting:
            self._plan[book] = []
            return None
        now = obs.time_s
        work = info.work_s_per_unit
        started = sorted((o for o in mine if o.status != "waiting"),
                         key=lambda o: o.release_start_s)
        backlog = sum((o.quantity - o.released_units) * work for o in started)
        last = started[-1].product if started else None
        by_id = {o.id: o for o in waiting}
        frozen = [by_id[oid] for oid, t in self._plan[book]
                  if oid in by_id and t < now + self.freeze]
        free = [o for o in waiting if o not in frozen]
        t = now + backlog
        prev = last
        for o in frozen:
            t += info.changeover_s if prev is not None and o.product != prev else 0.0
            t += o.quantity * work
            prev = o.product
        res = sequence_orders(free, t, work, info.changeover_s, prev,
                              max_orders=self.max_orders, time_limit_s=self.time_limit)
        self.solves += 1
        seq = frozen + [by_id[i] for i in res.order_ids]
        self._plan[book] = list(_planned_starts(seq, now + backlog, work, info.changeover_s,
                                                last))
        return SequenceCommand(book, tuple(o.id for o in seq),
                               f"CP-SAT {res.status.lower()}: planned total weighted tardiness "
                               f"{res.cost:.0f} s, {len(frozen)} order(s) frozen")


def _planned_starts(seq: Iterable[OrderObs], t: float, work: float, changeover: float,
                    prev: str | None):
    for o in seq:
        t += changeover if prev is not None and o.product != prev else 0.0
        yield o.id, t
        t += o.quantity * work
        prev = o.product
