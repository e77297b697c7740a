"""Optimizing job-shop scheduler on OR-Tools CP-SAT, with a rolling-horizon (re)scheduling API.

Model (the classic disjunctive formulation, e.g. the OR-Tools job-shop example): one
fixed-size interval per operation, job precedence ``start[j, i+1] >= end[j, i]``, one
``NoOverlap`` per machine, minimize the makespan. The solver is warm-started with a hint: the
non-delay schedule of a dispatching rule (:func:`~darkfab.control.dispatching.dispatch_schedule`)
or, when rescheduling, the previous schedule.

The returned schedule is *semi-active*: every operation is shifted left to the earliest start its
machine sequence allows (never a larger makespan than the solver's solution), so a shop that
follows the machine sequences reproduces it exactly.

**Determinism.** With ``deterministic=True`` (default) the solver runs with a fixed
``random_seed``, ``interleave_search`` (CP-SAT's deterministic parallel mode: the workers' tasks
run in batches and synchronise at fixed points, so the search does not depend on thread timing)
and stops on ``max_deterministic_time``, a count of work rather than of seconds
(``deterministic_time_limit``). The same model, parameters, OR-Tools version and platform then
give the same schedule, status and bound. Not deterministic: the wall time; a stop by the
wall-clock limit ``time_limit_s`` before the work limit (reported as ``stopped_by_wall_clock``,
e.g. on a much slower or loaded machine); results across OR-Tools versions. With
``deterministic=False`` CP-SAT's parallel portfolio runs for ``time_limit_s`` of wall time and the
schedule may differ between runs (on ft10 it was also slower to prove optimality here).

**Rolling horizon** (:meth:`CpSatScheduler.reschedule`, for a supervisor after a disruption;
Vieira, Herrmann & Lin 2003): at time ``now``, operations that have started, or that the
previous schedule starts within the freeze window ``[now, now + freeze_window)``, keep their
machine and start time; every other operation is re-optimised and starts no earlier than
``now + freeze_window`` (nothing is inserted into the frozen part of the plan) and no earlier than
its machine is available again. Times are integer instance units; ``now`` and the window are
rounded up.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .dispatching import DispatchingRule, dispatch_schedule
from .jobshop import JobShopInstance, Schedule, ScheduledOperation, semi_active_schedule

__all__ = ["CpSatScheduler", "SchedulingResult", "DETERMINISTIC_PER_WALL_S"]

OpKey = tuple[int, int]

DETERMINISTIC_PER_WALL_S = 0.025
"""Default work limit per second of wall-clock limit in deterministic mode. In interleaved
search CP-SAT checks the work limit only between batches and overshoots it several times, but
always by the same amount: on ft10 with 2 workers on the reference machine (2 cores) a limit of
0.1 stopped at 0.52 work units after 2-3 s wall, 0.5 at 2.92 after ~10 s, and the proof of
optimality took 5.69 units (~15 s). At 1/40 the work limit binds well before the wall clock, so
the result does not depend on the machine's speed; on a much slower or loaded machine the wall
clock can bind first, and the result is flagged ``stopped_by_wall_clock``."""


@dataclass(frozen=True)
class SchedulingResult:
    """Outcome of one solve. ``schedule`` is ``None`` when no solution was found.

    ``objective`` is the solver's makespan, ``makespan`` that of the returned (left-shifted)
    schedule (≤ objective), ``lower_bound`` the solver's proven bound."""

    schedule: Schedule | None
    status: str
    objective: float | None
    lower_bound: float
    wall_s: float
    deterministic_time: float
    hint_makespan: float | None
    stopped_by_wall_clock: bool
    parameters: Mapping[str, Any] = field(default_factory=dict)

    @property
    def makespan(self) -> float | None:
        return None if self.schedule is None else self.schedule.makespan

    @property
    def optimal(self) -> bool:
        return self.status == "OPTIMAL"

    def as_dict(self) -> dict[str, Any]:
        return {"status": self.status, "objective": self.objective, "makespan": self.makespan,
                "lower_bound": self.lower_bound, "wall_s": self.wall_s,
                "deterministic_time": self.deterministic_time,
                "hint_makespan": self.hint_makespan,
                "stopped_by_wall_clock": self.stopped_by_wall_clock,
                "parameters": dict(self.parameters)}


class CpSatScheduler:
    """Minimize the makespan of a job shop with CP-SAT.

    Parameters: ``time_limit_s`` (wall clock, always enforced), ``num_workers`` (threads;
    default 2, the cores of the reference machine), ``random_seed``, ``deterministic`` and
    ``deterministic_time_limit`` (work limit of the deterministic mode; default
    ``DETERMINISTIC_PER_WALL_S · time_limit_s``), ``hint_rule`` (dispatching rule of the warm
    start; ``None``: no hint), ``log`` (solver log on stdout)."""

    name = "cpsat"

    def __init__(self, time_limit_s: float = 10.0, num_workers: int = 2, random_seed: int = 0,
                 deterministic: bool = True, deterministic_time_limit: float | None = None,
                 hint_rule: str | DispatchingRule | None = "mwkr", log: bool = False) -> None:
        if not time_limit_s > 0:
            raise ValueError(f"time_limit_s must be positive, got {time_limit_s}")
        if num_workers < 1:
            raise ValueError(f"num_workers must be at least 1, got {num_workers}")
        if deterministic_time_limit is not None and not deterministic_time_limit > 0:
            raise ValueError("deterministic_time_limit must be positive")
        self.time_limit_s = time_limit_s
        self.num_workers = num_workers
        self.random_seed = random_seed
        self.deterministic = deterministic
        self.deterministic_time_limit = (time_limit_s * DETERMINISTIC_PER_WALL_S
                                         if deterministic_time_limit is None
                                         else deterministic_time_limit)
        self.hint_rule = hint_rule
        self.log = log

    # --- public API -----------------------------------------------------------------------
    def solve(self, instance: JobShopInstance, *, fixed: Mapping[OpKey, float] | None = None,
              not_before: float = 0.0, machine_available: Mapping[int, float] | None = None,
              hint: Schedule | None = None) -> SchedulingResult:
        """Optimize ``instance``. ``fixed`` pins operations to start times; every other
        operation starts at or after ``not_before`` and its machine's ``machine_available``
        time. Without ``hint``, the ``hint_rule`` schedule warm-starts the search (only when
        nothing is fixed)."""
        fixed = dict(fixed or {})
        if hint is None and self.hint_rule is not None and not fixed and not_before <= 0 \
                and not machine_available:
            hint = dispatch_schedule(instance, self.hint_rule)
        earliest = self._earliest(instance, fixed, not_before, machine_available or {})
        return self._solve(instance, fixed, earliest, hint)

    def reschedule(self, instance: JobShopInstance, previous: Schedule, now: float,
                   freeze_window: float = 0.0,
                   machine_available: Mapping[int, float] | None = None) -> SchedulingResult:
        """Rolling-horizon step at time ``now``: operations of ``previous`` that started
        before ``now + freeze_window`` stay as they are; the rest are re-optimised to start at
        or after ``now + freeze_window`` (see the module docstring). ``previous`` is the hint."""
        if freeze_window < 0:
            raise ValueError("freeze_window must be non-negative")
        cut = math.ceil(now + freeze_window)
        fixed = {(o.job, o.index): o.start for o in previous.operations if o.start < cut}
        return self.solve(instance, fixed=fixed, not_before=cut,
                          machine_available=machine_available, hint=previous)

    # --- internals ------------------------------------------------------------------------
    @staticmethod
    def _earliest(instance: JobShopInstance, fixed: Mapping[OpKey, float], not_before: float,
                  machine_available: Mapping[int, float]) -> dict[OpKey, int]:
        out = {}
        for op in instance.operations:
            key = (op.job, op.index)
            if key in fixed:
                out[key] = math.ceil(fixed[key] - 1e-9)
            else:
                out[key] = math.ceil(max(not_before, machine_available.get(op.machine, 0.0))
                                     - 1e-9)
        return out

    def _parameters(self, solver) -> dict[str, Any]:
        p = solver.parameters
        p.num_workers = self.num_workers
        p.random_seed = self.random_seed
        p.log_search_progress = self.log
        p.max_time_in_seconds = self.time_limit_s
        if self.deterministic:
            p.interleave_search = True
            p.max_deterministic_time = self.deterministic_time_limit
        return {"time_limit_s": self.time_limit_s, "num_workers": self.num_workers,
                "random_seed": self.random_seed, "deterministic": self.deterministic,
                "interleave_search": bool(p.interleave_search),
                "max_deterministic_time": p.max_deterministic_time
                if math.isfinite(p.max_deterministic_time) else None,
                "max_time_in_seconds": p.max_time_in_seconds}

    def _solve(self, instance: JobShopInstance, fixed: Mapping[OpKey, float],
               earliest: Mapping[OpKey, int], hint: Schedule | None) -> SchedulingResult:
        from ortools.sat.python import cp_model

        ops = instance.operations
        horizon = max(earliest.values(), default=0) + sum(op.time for op in ops)
        model = cp_model.CpModel()
        start: dict[OpKey, Any] = {}
        by_machine: list[list[Any]] = [[] for _ in range(instance.num_machines)]
        for op in ops:
            key = (op.job, op.index)
            lo = earliest[key]
            hi = lo if key in fixed else horizon
            s = model.new_int_var(lo, hi, f"s_{op.job}_{op.index}")
            start[key] = s
            by_machine[op.machine].append(
                model.new_fixed_size_interval_var(s, op.time, f"i_{op.job}_{op.index}"))
        for job in instance.jobs:
            for a, b in zip(job, job[1:]):
                model.add(start[(b.job, b.index)] >= start[(a.job, a.index)] + a.time)
        for ivs in by_machine:
            model.add_no_overlap(ivs)
        makespan = model.new_int_var(0, horizon, "makespan")
        for job in instance.jobs:
            if job:
                last = job[-1]
                model.add(makespan >= start[(last.job, last.index)] + last.time)
        model.minimize(makespan)
        hint_ms = None
        if hint is not None:
            hint_ms = hint.makespan
            for o in hint.operations:
                key = (o.job, o.index)
                if key in start and key not in fixed:
                    model.add_hint(start[key], max(int(round(o.start)), earliest[key]))
        solver = cp_model.CpSolver()
        params = self._parameters(solver)
        t0 = time.perf_counter()
        code = solver.solve(model)
        wall = time.perf_counter() - t0
        status = solver.status_name(code)
        by_wall = (status in ("FEASIBLE", "UNKNOWN")
                   and wall >= 0.99 * self.time_limit_s)
        schedule = None
        objective = None
        if code in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            objective = float(solver.objective_value)
            raw = [ScheduledOperation(op.job, op.index, op.machine,
                                      float(solver.value(start[(op.job, op.index)])),
                                      float(solver.value(start[(op.job, op.index)]) + op.time))
                   for op in ops]
            seqs = Schedule(tuple(raw)).machine_sequences(instance.num_machines)
            schedule = semi_active_schedule(instance, seqs, {"scheduler": self.name,
                                                             "status": status}, earliest)
        lb = float(solver.best_objective_bound) if objective is not None else float("nan")
        det = float(solver.response_proto.deterministic_time)
        return SchedulingResult(schedule, status, objective, lb, wall, det, hint_ms, by_wall,
                                params)

