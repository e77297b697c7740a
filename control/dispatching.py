"""Dispatching rules: which waiting operation a free machine takes next.

A rule is a strategy object, passed as an argument with a named default:
:meth:`DispatchingRule.priorities` maps the candidate operations waiting at one machine
and the current time to priorities; the machine takes the highest, ties going to the operation
that has waited longest, then the lowest job and operation index (so every rule is
deterministic). Rules are registered by name in :data:`RULES`; :func:`make_rule` builds one with
parameters.

Rules (Panwalkar & Iskander 1977, "A survey of scheduling rules", Oper. Res. 25:45; Pinedo,
*Scheduling*, 5th ed., ch. 14):

========  =============================================================================
``fifo``  first in, first out: earliest arrival in the machine's queue
``spt``   shortest processing time of the operation
``lpt``   longest processing time of the operation
``edd``   earliest job due date
``cr``    smallest critical ratio (d − t) / remaining work (negative when late)
``atc``   apparent tardiness cost (Vepsalainen & Morton 1987, Management Science 33:1035):
          (w/p)·exp(−max(d − p − t, 0)/(k·p̄)), p̄ the mean processing time of the candidates,
          look-ahead parameter ``k`` (default 2; they report good results for k in 1.5–4.5)
``mwkr``  most work remaining (this operation and the rest of the job)
========  =============================================================================

:func:`dispatch_schedule` builds the non-delay schedule a rule gives on a job shop (Giffler &
Thompson 1960's non-delay variant: a machine is never idle while an operation waits for it),
without a simulator: the warm start of the optimizer and the reference the SimPy job shop must
reproduce. Job-shop benchmarks have no due dates; :func:`twk_due_dates` assigns them by total
work content (Baker 1984, Management Science 30:1093): d_j = r_j + allowance · Σ p_ij.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar, Protocol, runtime_checkable

from .jobshop import JobShopInstance, Schedule, ScheduledOperation

__all__ = ["Candidate", "DispatchingRule", "Fifo", "Spt", "Lpt", "Edd", "CriticalRatio",
           "Atc", "Mwkr", "RULES", "DEFAULT_RULE", "make_rule", "select", "twk_due_dates",
           "candidate_for", "dispatch_schedule", "rule_names", "as_mapping"]


@dataclass(frozen=True, slots=True)
class Candidate:
    """An operation waiting for a machine, as a rule sees it (times in one unit, e.g. s).

    ``remaining_work`` includes this operation's ``processing_time``; ``ready_time`` is when it
    joined the machine's queue; ``arrival_time`` is the job's release."""

    job: int
    op: int
    processing_time: float
    due_date: float = math.inf
    remaining_work: float = 0.0
    ready_time: float = 0.0
    arrival_time: float = 0.0
    weight: float = 1.0


@runtime_checkable
class DispatchingRule(Protocol):
    """Priorities of the candidates at time ``now``; the highest is dispatched first."""

    name: ClassVar[str]

    def priorities(self, candidates: Sequence[Candidate], now: float) -> list[float]: ...


@dataclass(frozen=True)
class Fifo:
    """First in, first out: the operation that joined the queue first."""

    name: ClassVar[str] = "fifo"

    def priorities(self, candidates: Sequence[Candidate], now: float) -> list[float]:
        return [-c.ready_time for c in candidates]


@dataclass(frozen=True)
class Spt:
    """Shortest processing time first."""

    name: ClassVar[str] = "spt"

    def priorities(self, candidates: Sequence[Candidate], now: float) -> list[float]:
        return [-c.processing_time for c in candidates]


@dataclass(frozen=True)
class Lpt:
    """Longest processing time first."""

    name: ClassVar[str] = "lpt"

    def priorities(self, candidates: Sequence[Candidate], now: float) -> list[float]:
        return [c.processing_time for c in candidates]


@dataclass(frozen=True)
class Edd:
    """Earliest due date first."""

    name: ClassVar[str] = "edd"

    def priorities(self, candidates: Sequence[Candidate], now: float) -> list[float]:
        return [-c.due_date for c in candidates]


@dataclass(frozen=True)
class CriticalRatio:
    """Smallest critical ratio CR = (d − t) / remaining work first; no work left: last."""

    name: ClassVar[str] = "cr"

    def priorities(self, candidates: Sequence[Candidate], now: float) -> list[float]:
        return [-(c.due_date - now) / c.remaining_work if c.remaining_work > 0 else -math.inf
                for c in candidates]


@dataclass(frozen=True)
class Atc:
    """Apparent tardiness cost (Vepsalainen & Morton 1987):
    I = (w/p)·exp(−max(d − p − t, 0) / (k·p̄)); a zero-time operation goes first."""

    name: ClassVar[str] = "atc"
    k: float = 2.0

    def __post_init__(self) -> None:
        if not self.k > 0:
            raise ValueError(f"ATC look-ahead k must be positive, got {self.k}")

    def priorities(self, candidates: Sequence[Candidate], now: float) -> list[float]:
        pbar = sum(c.processing_time for c in candidates) / len(candidates) if candidates else 0
        out = []
        for c in candidates:
            if c.processing_time <= 0:
                out.append(math.inf)
                continue
            slack = max(c.due_date - c.processing_time - now, 0.0)
            scale = self.k * pbar
            urgency = math.exp(-slack / scale) if math.isfinite(slack) else 0.0
            out.append(c.weight / c.processing_time * urgency)
        return out


@dataclass(frozen=True)
class Mwkr:
    """Most work remaining (this operation included) first."""

    name: ClassVar[str] = "mwkr"

    def priorities(self, candidates: Sequence[Candidate], now: float) -> list[float]:
        return [c.remaining_work for c in candidates]


RULES: dict[str, Callable[..., DispatchingRule]] = {
    r.name: r for r in (Fifo, Spt, Lpt, Edd, CriticalRatio, Atc, Mwkr)}
"""Registered dispatching rules by name."""

DEFAULT_RULE = "spt"


def make_rule(name: str = DEFAULT_RULE, **params: float) -> DispatchingRule:
    """The registered rule ``name`` with its parameters (e.g. ``make_rule("atc", k=3)``)."""
    try:
        cls = RULES[name]
    except KeyError:
        raise ValueError(f"unknown dispatching rule {name!r}; known: "
                         + ", ".join(sorted(RULES))) from None
    return cls(**params)


def select(rule: DispatchingRule, candidates: Sequence[Candidate], now: float) -> int:
    """Index of the candidate ``rule`` dispatches: highest priority, then earliest ready time,
    lowest job, lowest operation index."""
    if not candidates:
        raise ValueError("no candidates to select from")
    pr = rule.priorities(candidates, now)
    return min(range(len(candidates)), key=lambda i: (-pr[i], candidates[i].ready_time,
                                                       candidates[i].job, candidates[i].op))


def twk_due_dates(instance: JobShopInstance, allowance: float = 1.5,
                  release: Sequence[float] | None = None) -> list[float]:
    """Due dates by total work content: d_j = r_j + allowance · (work of job j)."""
    r = release or [0.0] * instance.num_jobs
    return [r[j] + allowance * instance.job_work(j) for j in range(instance.num_jobs)]


def candidate_for(instance: JobShopInstance, job: int, op: int, ready_time: float,
                  due_dates: Sequence[float], weights: Sequence[float] | None = None,
                  release: Sequence[float] | None = None) -> Candidate:
    """The :class:`Candidate` of operation ``op`` of ``job`` waiting since ``ready_time``."""
    route = instance.jobs[job]
    return Candidate(job=job, op=op, processing_time=float(route[op].time),
                     due_date=float(due_dates[job]),
                     remaining_work=float(sum(o.time for o in route[op:])),
                     ready_time=ready_time,
                     arrival_time=float(release[job]) if release else 0.0,
                     weight=float(weights[job]) if weights else 1.0)


def dispatch_schedule(instance: JobShopInstance, rule: DispatchingRule | str = DEFAULT_RULE,
                      due_dates: Sequence[float] | None = None,
                      weights: Sequence[float] | None = None) -> Schedule:
    """The non-delay schedule ``rule`` gives (all jobs released at 0).

    At every time ``t`` at which something happens, each free machine with waiting operations
    starts the one the rule selects among those ready at ``t`` (after every completion at ``t``);
    this is exactly what the simulated job shop does online."""
    if isinstance(rule, str):
        rule = make_rule(rule)
    due = list(due_dates) if due_dates is not None else twk_due_dates(instance)
    m = instance.num_machines
    queues: list[list[Candidate]] = [[] for _ in range(m)]
    busy_until = [0.0] * m
    running: list[tuple[int, int] | None] = [None] * m
    out: list[ScheduledOperation] = []
    for j, route in enumerate(instance.jobs):
        if route:
            queues[route[0].machine].append(candidate_for(instance, j, 0, 0.0, due, weights))
    t = 0.0
    total = len(instance.operations)
    while len(out) < total:
        started_zero = True
        while started_zero:
            started_zero = False
            for k in range(m):  # completions at t: successors join their queues
                if running[k] is not None and busy_until[k] <= t:
                    j, i = running[k]  # type: ignore[misc]
                    running[k] = None
                    if i + 1 < len(instance.jobs[j]):
                        nk = instance.jobs[j][i + 1].machine
                        queues[nk].append(candidate_for(instance, j, i + 1, t, due, weights))
            for k in range(m):
                if running[k] is None and queues[k]:
                    c = queues[k].pop(select(rule, queues[k], t))
                    out.append(ScheduledOperation(c.job, c.op, k, t, t + c.processing_time))
                    running[k] = (c.job, c.op)
                    busy_until[k] = t + c.processing_time
                    started_zero |= c.processing_time == 0
        pending = [busy_until[k] for k in range(m) if running[k] is not None]
        if not pending:
            break
        t = min(pending)
    return Schedule(tuple(out), {"rule": rule.name})


def rule_names() -> list[str]:
    """Registered rule names, sorted."""
    return sorted(RULES)


def as_mapping(rule: DispatchingRule) -> Mapping[str, object]:
    """A rule's name and parameters (for ``summary.json``)."""
    params = {k: v for k, v in vars(rule).items()} if hasattr(rule, "__dict__") else {}
    return {"name": rule.name, **params}
