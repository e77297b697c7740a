"""Job-shop scenarios: wire an instance, a scheduler and the simulated shop; run; benchmark.

``scheduler = "cpsat"`` solves the instance with :class:`~darkfab.control.scheduling.CpSatScheduler`
and the simulated machines follow the optimized sequences; a dispatching rule name lets each
free machine choose online (non-delay). Results go to the run folder like a plant run's:
``events.parquet`` (create / load / unload / complete per job and operation), ``states.parquet``
(machine Execute and Idle intervals), ``kpis.parquet`` and ``summary.json`` with
``makespan_s``, the scheduler, the gap to the known optimum (or the best bound) and the solver's
status and wall time.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import simpy

from darkfab.agents.jobshop import JobShopModel, SequencePolicy, WaitingOperation
from darkfab.control.dispatching import (DispatchingRule, as_mapping, candidate_for,
                                         dispatch_schedule, make_rule, rule_names, select,
                                         twk_due_dates)
from darkfab.control.jobshop import (JobShopInstance, known_bounds, load_instance,
                                     read_jobshop)
from darkfab.control.scheduling import CpSatScheduler, SchedulingResult
from darkfab.factory.recorder import KPIS_SCHEMA, STATES_SCHEMA, EventLog, TableWriter, write_table

from .schema import JobShopMeta, JobShopScenario, JobShopSpec

__all__ = ["DispatchPolicy", "simulate_jobshop", "run_jobshop", "jobshop_scenario_for_file",
           "BenchRow", "benchmark", "format_benchmark"]


class DispatchPolicy:
    """Online non-delay dispatching by a rule of :mod:`darkfab.control.dispatching`."""

    def __init__(self, instance: JobShopInstance, rule: DispatchingRule,
                 due_dates: Sequence[float] | None = None) -> None:
        self.instance = instance
        self.rule = rule
        self.due_dates = list(due_dates) if due_dates is not None else twk_due_dates(instance)

    def choose(self, machine: int, waiting: Sequence[WaitingOperation],
               now: float) -> int | None:
        cands = [candidate_for(self.instance, w.job, w.op, w.ready_time, self.due_dates)
                 for w in waiting]
        return select(self.rule, cands, now)


@dataclass
class JobShopOutcome:
    """What one simulated job-shop run produced."""

    model: JobShopModel
    scheduler: dict[str, Any]
    solver: SchedulingResult | None
    planned_makespan: float | None  # the optimizer's schedule; None for dispatching


def _known_bounds(instance: JobShopInstance) -> tuple[int, int] | None:
    """Published bounds if ``instance`` is a shipped benchmark (same name and same data)."""
    from darkfab.control.jobshop import shipped_instances

    if known_bounds(instance.name) is None or instance.name not in shipped_instances():
        return None
    return known_bounds(instance.name) if load_instance(instance.name).jobs == instance.jobs \
        else None


def _make_rule(spec: JobShopSpec, name: str) -> DispatchingRule:
    return make_rule(name, k=spec.atc_k) if name == "atc" else make_rule(name)


def simulate_jobshop(instance: JobShopInstance, spec: JobShopSpec, *, seed: int = 0,
                     log: EventLog | None = None, states: TableWriter | None = None,
                     horizon_s: float | None = None) -> JobShopOutcome:
    """Sequence ``instance`` as ``spec`` says and run it in SimPy."""
    env = simpy.Environment()
    solver = None
    planned = None
    if spec.scheduler == "cpsat":
        sch = CpSatScheduler(time_limit_s=spec.time_limit_s, num_workers=spec.num_workers,
                             random_seed=seed, deterministic=spec.deterministic,
                             deterministic_time_limit=spec.deterministic_time_limit,
                             hint_rule=spec.hint_rule)
        solver = sch.solve(instance)
        if solver.schedule is None:
            raise RuntimeError(f"CP-SAT found no schedule ({solver.status}) within "
                               f"{spec.time_limit_s:g} s")
        planned = solver.schedule.makespan
        policy: Any = SequencePolicy(solver.schedule.machine_sequences(instance.num_machines))
        scheduler = {"name": "cpsat", **solver.parameters, "hint_rule": spec.hint_rule}
    else:
        rule = _make_rule(spec, spec.scheduler)
        due = twk_due_dates(instance, spec.due_date_allowance)
        policy = DispatchPolicy(instance, rule, due)
        scheduler = {**as_mapping(rule), "kind": "dispatching rule (non-delay)",
                     "due_date_allowance": spec.due_date_allowance}
    routes = [[(op.machine, op.time) for op in job] for job in instance.jobs]
    model = JobShopModel(env, routes, instance.num_machines, policy,
                         time_unit_s=spec.time_unit_s, log=log, states=states)
    model.start()
    env.run(until=horizon_s)
    model.finish()
    return JobShopOutcome(model, scheduler, solver, planned)


def run_jobshop(s: JobShopScenario, *, seed: int | None = None, replication: int = 0,
                out_dir: Path | str | None = None, batch_rows: int = 65_536):
    """Run a job-shop scenario and write its results (a :class:`RunResult`)."""
    from .runner import RunResult, _json_safe, darkfab_version, run_id_for

    seed = s.scenario.seed if seed is None else seed
    run_id = run_id_for(s, seed, replication)  # type: ignore[arg-type]
    out = Path(out_dir) if out_dir else Path("results/runs") / s.scenario.name / run_id
    out.mkdir(parents=True, exist_ok=True)
    spec = s.jobshop
    instance = load_instance(spec.instance)
    wall0 = time.perf_counter()
    log = EventLog(out / "events.parquet", run_id, replication, batch_rows)
    states = TableWriter(out / "states.parquet", STATES_SCHEMA, run_id, replication, batch_rows)
    try:
        res = simulate_jobshop(instance, spec, seed=seed, log=log, states=states,
                               horizon_s=s.scenario.horizon_s)
    finally:
        log.close()
        states.close()
    m = res.model
    u = spec.time_unit_s
    makespan = m.makespan_s / u
    bounds = _known_bounds(instance)
    lb = float(instance.trivial_lower_bound())
    if res.solver is not None and math.isfinite(res.solver.lower_bound):
        lb = max(lb, res.solver.lower_bound)
    if bounds is not None:
        ref, basis = float(bounds[1]), ("optimum" if bounds[0] == bounds[1] else "best known")
        lb = max(lb, float(bounds[0]))
    else:
        ref, basis = lb, "lower bound"
    partial = not m.done
    machines = {mc.name: {"utilization": mc.busy_s / m.makespan_s if m.makespan_s else None,
                          "busy_s": mc.busy_s, "operations": mc.operations}
                for mc in m.machines}
    summary: dict[str, Any] = {
        "scenario": s.scenario.name,
        "run_id": run_id,
        "seed": seed,
        "replication": replication,
        "partial": partial,
        "instance": instance.name,
        "jobs": instance.num_jobs,
        "machines_count": instance.num_machines,
        "operations": len(instance.operations),
        "time_unit_s": u,
        "scheduler": res.scheduler,
        "makespan_s": m.makespan_s,
        "makespan": makespan,
        "planned_makespan": res.planned_makespan,
        "reference_makespan": ref,
        "reference": basis,
        "lower_bound": lb,
        "gap": (makespan - ref) / ref if ref > 0 and not partial else None,
        "gap_pct": 100.0 * (makespan - ref) / ref if ref > 0 and not partial else None,
        "solver": res.solver.as_dict() if res.solver is not None else None,
        "jobs_completed": len(m.completed),
        "mean_flow_time_s": (sum(m.completed.values()) / len(m.completed)
                             if m.completed else None),
        "machines": machines,
        "events": m.events,
        "wall_s": time.perf_counter() - wall0,
        "darkfab_version": darkfab_version(),
        "resolved_scenario": s.model_dump(mode="json"),
    }
    if partial:
        summary["partial_reason"] = (f"{instance.num_jobs - len(m.completed)} jobs unfinished at "
                                     f"{m.env.now:g} s")
    rows = [("plant", "makespan_s", m.makespan_s, "s"),
            ("plant", "gap", summary["gap"], "1"),
            ("plant", "jobs_completed", float(len(m.completed)), "count")]
    for name, e in machines.items():
        rows += [(name, "utilization", e["utilization"], "1"),
                 (name, "busy_s", e["busy_s"], "s"),
                 (name, "operations", float(e["operations"]), "count")]
    write_table(out / "kpis.parquet", KPIS_SCHEMA, rows, run_id, replication)
    (out / "summary.json").write_text(json.dumps(_json_safe(summary), indent=2) + "\n")
    return RunResult(out, summary, m)  # type: ignore[arg-type]


def jobshop_scenario_for_file(path: Path | str, scheduler: str | None = None,
                              time_limit_s: float | None = None) -> JobShopScenario:
    """A :class:`JobShopScenario` for an instance file (``darkfab run --jobshop FILE``);
    raises :class:`~darkfab.scenarios.loader.ScenarioError` if the file is missing or bad."""
    from darkfab.control.jobshop import JobShopFormatError
    from pydantic import ValidationError

    from .loader import Problem, ScenarioError

    p = Path(path)
    try:
        read_jobshop(p)
    except JobShopFormatError as e:
        msg = str(e).split(": ", 1)[1] if e.line else str(e)
        raise ScenarioError(str(p), [Problem("<jobshop>", msg, e.line)]) from None
    except (OSError, UnicodeDecodeError) as e:
        reason = "no such file" if isinstance(e, FileNotFoundError) else str(e)
        raise ScenarioError(str(p), [Problem("<jobshop>", reason)]) from None
    name = re.sub(r"[^A-Za-z0-9_.\-]", "_", f"jobshop-{p.stem}")
    js: dict[str, Any] = {"instance": str(p.resolve())}
    if scheduler is not None:
        js["scheduler"] = scheduler
    if time_limit_s is not None:
        js["time_limit_s"] = time_limit_s
    try:
        return JobShopScenario(scenario=JobShopMeta(name=name, description=f"job shop {p.name}"),
                               jobshop=JobShopSpec(**js))
    except ValidationError as e:
        raise ScenarioError(str(p), [Problem(".".join(str(x) for x in ("jobshop", *err["loc"])),
                                             err["msg"]) for err in e.errors()]) from None


# --- benchmark ----------------------------------------------------------------------------
@dataclass(frozen=True)
class BenchRow:
    instance: str
    scheduler: str
    makespan: float
    reference: float
    gap_pct: float
    wall_s: float
    status: str


def benchmark(instances: Sequence[str] = ("ft06", "ft10"), time_limit_s: float = 60.0,
              rules: Sequence[str] | None = None, seed: int = 0,
              simulate: bool = True) -> list[BenchRow]:
    """Each dispatching rule and CP-SAT on each instance: makespan and gap to the known
    optimum (else to the best lower bound found). With ``simulate`` the makespan is the one the
    SimPy shop measures (and is checked against the schedule's)."""
    rows = []
    for name in instances:
        inst = load_instance(name)
        bounds = _known_bounds(inst)
        ref = float(bounds[1]) if bounds else float(inst.trivial_lower_bound())
        for rule in (rules if rules is not None else rule_names()):
            t0 = time.perf_counter()
            spec = JobShopSpec(instance=name, scheduler=rule)
            ms = (simulate_jobshop(inst, spec).model.makespan_s if simulate
                  else dispatch_schedule(inst, _make_rule(spec, rule)).makespan)
            rows.append(BenchRow(inst.name, rule, ms, ref, 100 * (ms - ref) / ref,
                                 time.perf_counter() - t0, "-"))
        t0 = time.perf_counter()
        spec = JobShopSpec(instance=name, scheduler="cpsat", time_limit_s=time_limit_s)
        out = simulate_jobshop(inst, spec, seed=seed)
        assert out.solver is not None
        ms = out.model.makespan_s
        if out.planned_makespan is not None and ms != out.planned_makespan:
            raise RuntimeError(f"{name}: simulated makespan {ms} != schedule's "
                               f"{out.planned_makespan}")
        if not bounds and math.isfinite(out.solver.lower_bound):
            ref = max(ref, out.solver.lower_bound)
        rows.append(BenchRow(inst.name, "cpsat", ms, ref, 100 * (ms - ref) / ref,
                             time.perf_counter() - t0, out.solver.status))
    return rows


def format_benchmark(rows: Sequence[BenchRow]) -> str:
    """A Markdown table of benchmark rows."""
    lines = ["| instance | scheduler | makespan | reference | gap % | wall s | status |",
             "|---|---|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r.instance} | {r.scheduler} | {r.makespan:g} | {r.reference:g} | "
                     f"{r.gap_pct:.1f} | {r.wall_s:.2f} | {r.status} |")
    return "\n".join(lines)
