"""Experiments: factors × replications with common random numbers, confidence intervals,
paired comparisons, optional MSER-5 warm-up detection and sequential replications.

An experiment file (TOML) names a scenario, factors (any scenario field, with levels), the
number of replications and a seed. The factor ``path = "scenario"`` takes scenario files or
shipped names as levels (layout variants, see docs/layouts.md); the experiment then names no
``scenario`` of its own. Every design point runs the same replication indices with
the same seed, so named random streams give common random numbers across points and paired
differences have small variance. Outputs in the experiment folder:

* ``runs.parquet``: one row per run and KPI (scenario, point, factor values, replication, seed);
* ``summary.parquet``: per point and KPI the mean and t-interval;
* ``comparisons.parquet``: per point and KPI the paired difference to the baseline point 0;
* ``summary.json``: all of that, main effects per factor level (replication-wise averages over
  the points at that level, with t-intervals), failed runs with their errors, warm-up, engine,
  and ``verification``: each run's verdict (``verification.json``'s ``ok`` and its number of
  violations) and the number of runs that failed it;
* ``runs/p###-r###/``: each run's own folder (events, states, KPIs, summary).
"""

from __future__ import annotations

import itertools
import json
import math
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import (BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, ValidationError,
                      model_validator)
from pydantic_core import PydanticCustomError

from darkfab.control.registry import is_code_reference
from darkfab.factory.statistics import mser5, t_interval

from .engines import run_tasks
from .loader import Problem, ScenarioError, _dotted, load_scenario, resolve_path
from .runner import _json_safe as _clean, darkfab_version
from .terminal import runs_progress

__all__ = ["ExperimentSpec", "load_experiment", "run_experiment", "ExperimentResult",
           "RunTask", "execute_run"]

PLANT_KPIS = ("throughput_per_h", "units_completed", "wip_mean", "lead_time_s.mean",
              "lead_time_s.p95")
EQUIPMENT_KPIS = ("utilization", "availability", "performance", "quality", "oee")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class FactorSpec(_Strict):
    path: Annotated[str, Field(min_length=1)]
    levels: Annotated[list[Any], Field(min_length=1)]


class SequentialSpec(_Strict):
    """Add replications until the half-width of ``kpi`` is at most the target at every point."""

    kpi: str
    half_width: PositiveFloat | None = None
    relative_half_width: PositiveFloat | None = None
    max_replications: PositiveInt = 50
    step: PositiveInt = 2

    @model_validator(mode="after")
    def _one_target(self):
        if (self.half_width is None) == (self.relative_half_width is None):
            raise PydanticCustomError("target",
                                      "give exactly one of half_width or relative_half_width")
        return self


class ExperimentMeta(_Strict):
    name: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")]
    scenario: str | None = None  # None: a factor with path = "scenario" gives them
    replications: PositiveInt = 5
    seed: Annotated[int, Field(ge=0)] | None = None
    confidence: Annotated[float, Field(gt=0, lt=1)] = 0.95
    set: list[str] = []
    kpis: list[str] | None = None
    warmup: Literal["scenario", "mser5"] = "scenario"
    pilot_replications: PositiveInt = 3


class ExperimentSpec(_Strict):
    experiment: ExperimentMeta
    factors: list[FactorSpec] = []
    sequential: SequentialSpec | None = None


@dataclass(frozen=True)
class RunTask:
    scenario: str
    overrides: tuple
    seed: int
    replication: int
    point: int
    out_dir: str
    kpis: tuple[str, ...]
    allow_code: bool = False  # import a module:Class controller (the user consented)


def execute_run(task: RunTask) -> dict[str, Any]:
    """Run one replication of one design point; never raises (errors are recorded)."""
    from .runner import run_scenario

    t0 = time.perf_counter()
    rec: dict[str, Any] = {"point": task.point, "replication": task.replication,
                           "seed": task.seed, "out_dir": task.out_dir}
    try:
        s = load_scenario(task.scenario, list(task.overrides))
        res = run_scenario(s, seed=task.seed, replication=task.replication,
                           out_dir=task.out_dir, allow_code=task.allow_code)
        rec["kpis"] = {k: _lookup(res.summary, k) for k in task.kpis}
        rec["simulated_s"] = res.summary.get("simulated_s")  # for the progress bar's rate
        v = res.verification
        rec["verified"] = None if v is None else bool(v["ok"])
        rec["violations"] = None if v is None else len(v["violations"])
        partial = res.summary["partial"]
        rec["ok"] = not partial
        rec["error"] = res.summary.get("partial_reason", "") if partial else ""
    except Exception as e:  # noqa: BLE001 - isolate the failure, keep going
        rec["kpis"], rec["ok"], rec["error"] = {}, False, f"{type(e).__name__}: {e}"
        rec["verified"] = rec["violations"] = None
    rec["wall_s"] = time.perf_counter() - t0
    return rec


def verdicts(records: list[dict[str, Any]], label=lambda r: {"point": r["point"]}
             ) -> dict[str, Any]:
    """The verification verdicts of runs (records of :func:`execute_run`): how many passed,
    failed or have none (the run failed, or was a job shop), and one row per run."""
    runs = [{**label(r), "replication": r["replication"], "verified": r.get("verified"),
             "violations": r.get("violations"), "out_dir": r["out_dir"]} for r in records]
    return {"runs_passed": sum(r["verified"] is True for r in runs),
            "runs_failed": sum(r["verified"] is False for r in runs),
            "runs_without_verdict": sum(r["verified"] is None for r in runs),
            "runs": runs}


def format_verdicts(v: dict[str, Any]) -> str:
    """One line for the terminal, then one per run that failed verification."""
    lines = [f"verification: {v['runs_passed']} run(s) passed, {v['runs_failed']} failed"
             + (f", {v['runs_without_verdict']} without a verdict"
                if v["runs_without_verdict"] else "")]
    for r in v["runs"]:
        if r["verified"] is False:
            who = ", ".join(f"{k} {r[k]}" for k in r if k not in (
                "verified", "violations", "out_dir"))
            lines.append(f"  ! {who}: {r['violations']} violation(s), see "
                         f"{Path(r['out_dir']) / 'verification.json'}")
    return "\n".join(lines)


def _lookup(summary: dict, path: str) -> float | None:
    x: Any = summary
    for part in path.split("."):
        x = x.get(part) if isinstance(x, dict) else None
    return float(x) if isinstance(x, (int, float)) else None


# --- loading and planning -----------------------------------------------------------------
def load_experiment(path: str | Path) -> ExperimentSpec:
    p = Path(path)
    file = str(p)
    if not p.is_file():
        raise ScenarioError(file, [Problem("<file>", "no such experiment file")])
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(file, [Problem("<toml>", f"not valid TOML: {e}")]) from None
    try:
        return ExperimentSpec.model_validate(data)
    except ValidationError as e:
        raise ScenarioError(file, [Problem(_dotted(list(err["loc"])) or "<root>", err["msg"])
                                   for err in e.errors()]) from None


SCENARIO_FACTOR = "scenario"
"""The factor path whose levels are scenario files or shipped names, not field values."""


@dataclass
class _Plan:
    scenario_path: Path  # point 0's
    points: list[dict[str, Any]]
    kpis: tuple[str, ...]
    seed: int
    point_paths: list[Path] = field(default_factory=list)  # each point's scenario file

    def path(self, i: int) -> Path:
        return self.point_paths[i] if self.point_paths else self.scenario_path

    def overrides(self, i: int) -> tuple:
        return tuple((k, v) for k, v in self.points[i].items() if k != SCENARIO_FACTOR)


def _scenario_file(name: str, base_dir: Path, field_path: str, file: str) -> Path:
    """A scenario level: a file (relative to the experiment file's folder) or shipped name."""
    scen = Path(name)
    if not scen.is_absolute() and (base_dir / scen).is_file():
        scen = base_dir / scen
    try:
        return resolve_path(str(scen)).resolve()
    except ScenarioError as e:
        raise ScenarioError(file, [Problem(field_path, p.message) for p in e.problems]) from None


def _plan(spec: ExperimentSpec, file: str, base_dir: Path, allow_code: bool = False) -> _Plan:
    meta = spec.experiment
    factor_of = {f.path: i for i, f in enumerate(spec.factors)}
    if len(factor_of) != len(spec.factors):
        raise ScenarioError(file, [Problem("factors", "a factor path is given twice")])
    level_paths: dict[str, Path] = {}
    if SCENARIO_FACTOR in factor_of:
        k = factor_of[SCENARIO_FACTOR]
        if meta.scenario is not None:
            raise ScenarioError(file, [Problem("experiment.scenario", "give the scenario "
                                               "here or as the levels of the factor "
                                               "path = \"scenario\", not both")])
        for j, level in enumerate(spec.factors[k].levels):
            if not isinstance(level, str) or not level:
                raise ScenarioError(file, [Problem(f"factors[{k}].levels[{j}]", "a scenario "
                                                   "file or shipped scenario name")])
            level_paths[level] = _scenario_file(level, base_dir, f"factors[{k}].levels[{j}]",
                                                file)
        if len(set(level_paths.values())) != len(spec.factors[k].levels):
            raise ScenarioError(file, [Problem(f"factors[{k}].levels", "a scenario is given "
                                               "twice")])
    elif meta.scenario is None:
        raise ScenarioError(file, [Problem("experiment.scenario", "required field is missing "
                                           "(or give a factor with path = \"scenario\")")])
    levels = [f.levels for f in spec.factors]
    points = [dict(zip([f.path for f in spec.factors], combo))
              for combo in itertools.product(*levels)]
    point_paths = [level_paths[p[SCENARIO_FACTOR]] for p in points] if level_paths else []
    scen_path = point_paths[0] if point_paths else \
        _scenario_file(str(meta.scenario), base_dir, "experiment.scenario", file)
    problems = []
    base = None
    for i, point in enumerate(points):
        try:
            s = load_scenario(point_paths[i] if point_paths else scen_path,
                              list(meta.set) + [(k, v) for k, v in point.items()
                                                if k != SCENARIO_FACTOR])
            base = base or s
        except ScenarioError as e:
            desc = ", ".join(f"{k}={v!r}" for k, v in point.items()) or "base scenario"
            problems += [Problem(f"design point {i} ({desc}): {p.path}", p.message)
                         for p in e.problems]
            continue
        name = getattr(getattr(s, "controller", None), "name", "")
        if is_code_reference(name) and not allow_code:
            desc = ", ".join(f"{k}={v!r}" for k, v in point.items()) or "base scenario"
            problems.append(Problem(f"design point {i} ({desc}): controller.name",
                                    f"{name!r} is code named by a file; it runs only with "
                                    "your consent: --allow-code"))
    if problems:
        raise ScenarioError(file, problems)
    assert base is not None
    if meta.kpis is not None:
        kpis = tuple(meta.kpis)
        for i, k in enumerate(kpis):
            if not _kpi_known(k, base):
                problems.append(Problem(f"experiment.kpis[{i}]", f"unknown KPI path {k!r}"))
    else:
        kpis = PLANT_KPIS + tuple(f"equipment.{e}.{k}" for e in base.equipment
                                  for k in ("utilization", "oee"))
    if spec.sequential is not None and not _kpi_known(spec.sequential.kpi, base):
        problems.append(Problem("sequential.kpi", f"unknown KPI path {spec.sequential.kpi!r}"))
    if problems:
        raise ScenarioError(file, problems)
    seed = meta.seed if meta.seed is not None else base.scenario.seed
    return _Plan(scen_path, points, kpis, seed, point_paths)


def _kpi_known(path: str, s) -> bool:
    parts = path.split(".")
    if len(parts) == 1:
        return parts[0] in ("throughput_per_h", "units_completed", "units_scrapped", "wip_mean",
                            "events", "wall_s")
    if parts[0] == "lead_time_s":
        return len(parts) == 2 and parts[1] in ("mean", "p50", "p95", "max")
    if parts[0] == "equipment" and len(parts) == 3:
        return parts[1] in s.equipment
    if parts[0] == "equipment" and len(parts) == 4 and parts[2] == "state_time_s":
        return parts[1] in s.equipment
    if parts[0] == "fleet" and s.fleet is not None:
        return len(parts) in (2, 3)
    if parts[0] == "robots" and s.fleet is not None:
        return len(parts) == 3
    if parts[0] == "controller":  # e.g. controller.recovery_time_s.mean
        return len(parts) in (2, 3)
    if parts[0] == "buffers" and len(parts) == 3:
        return parts[1] in s.buffers and parts[2] in ("level_mean", "level_end")
    if parts[0] == "orders" and len(parts) == 3:  # e.g. orders.book.mean_tardiness_s
        return parts[1] in s.order_books
    if parts[0] == "continuous_lines" and len(parts) >= 3:  # e.g. ...cdc.released_out_of_spec_kg
        return parts[1] in s.continuous_lines
    if parts[0] == "alarms":  # e.g. alarms.per_10min_per_operator, alarms.by_priority.high
        return len(parts) == 2 or (len(parts) == 3 and parts[1] == "by_priority")
    return False


# --- running ------------------------------------------------------------------------------
@dataclass
class ExperimentResult:
    out_dir: Path
    summary: dict[str, Any]
    records: list[dict[str, Any]] = field(default_factory=list)


def run_experiment(path: str | Path, *, engine: str = "processes", workers: int | None = None,
                   scheduler: str | None = None, out_dir: str | Path | None = None,
                   replications: int | None = None, progress: bool = False,
                   allow_code: bool = False) -> ExperimentResult:
    """Plan, run and summarise an experiment file (see the module docstring). A
    ``module:Class`` controller (in the scenario or a factor) runs only with ``allow_code``."""
    file = str(path)
    spec = load_experiment(path)
    plan = _plan(spec, file, Path(path).resolve().parent, allow_code)
    meta = spec.experiment
    out = Path(out_dir) if out_dir else Path("results/experiments") / meta.name
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    fixed: list = list(meta.set)
    warmup_info: dict[str, Any] = {"method": meta.warmup}
    if meta.warmup == "mser5":
        warmup_info.update(_detect_warmup(plan, fixed, meta, out, engine, workers, scheduler,
                                          allow_code))
        fixed.append(("scenario.warmup_s", warmup_info["warmup_s"]))
    reps = replications or meta.replications
    records: list[dict[str, Any]] = []
    done: dict[int, int] = {i: 0 for i in range(len(plan.points))}
    bar = runs_progress(progress)

    def tasks_for(point_reps: dict[int, range]) -> list[RunTask]:
        return [RunTask(str(plan.path(i)), tuple(fixed) + plan.overrides(i), plan.seed, r, i,
                        str(out / "runs" / f"p{i:03d}-r{r:03d}"), plan.kpis, allow_code)
                for i, rr in point_reps.items() for r in rr]

    pending = {i: range(0, reps) for i in done}
    interrupted = False
    try:
        with bar:
            while pending:
                tasks = tasks_for(pending)
                bar.add(len(tasks))
                for rec in run_tasks(execute_run, tasks, engine, workers, scheduler):
                    records.append(rec)
                    bar.step(rec.get("simulated_s"))
                for i, rr in pending.items():
                    done[i] = rr.stop
                pending = _more(spec.sequential, records, done, meta.confidence)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        summary = _summarise(spec, plan, records, warmup_info, engine, out,
                             time.perf_counter() - t0, interrupted)
    return ExperimentResult(out, summary, records)


def _more(seq: SequentialSpec | None, records, done: dict[int, int],
          confidence: float) -> dict[int, range]:
    if seq is None:
        return {}
    out = {}
    for i, n in done.items():
        vals = [r["kpis"].get(seq.kpi) for r in records if r["point"] == i and r["ok"]]
        ci = t_interval(vals, confidence)
        target = seq.half_width if seq.half_width is not None else \
            seq.relative_half_width * abs(ci.mean)  # type: ignore[operator]
        if n < seq.max_replications and not (ci.half_width <= target):
            out[i] = range(n, min(n + seq.step, seq.max_replications))
    return out


def _detect_warmup(plan: _Plan, fixed: list, meta: ExperimentMeta, out: Path, engine: str,
                   workers, scheduler, allow_code: bool = False) -> dict[str, Any]:
    """Pilot runs of point 0 without warm-up; MSER-5 on their WIP series; take the largest."""
    tasks = [RunTask(str(plan.path(0)),
                     tuple(fixed) + plan.overrides(0) + (("scenario.warmup_s", 0.0),),
                     plan.seed, 10_000 + r, 0, str(out / "pilot" / f"r{r:03d}"), (), allow_code)
             for r in range(meta.pilot_replications)]
    cuts, reliable = [], True
    for rec in run_tasks(execute_run, tasks, engine, workers, scheduler):
        if not rec["ok"]:
            raise RuntimeError(f"pilot run failed: {rec['error']}")
        ts = pq.read_table(Path(rec["out_dir"]) / "timeseries.parquet",
                           columns=["end_s", "wip_mean"]).to_pydict()
        res = mser5(ts["wip_mean"])
        reliable &= res.reliable
        cuts.append(ts["end_s"][res.truncate - 1] if res.truncate > 0 else 0.0)
    return {"warmup_s": max(cuts), "pilot_warmups_s": cuts, "reliable": reliable,
            "pilot_replications": meta.pilot_replications}


def _summarise(spec: ExperimentSpec, plan: _Plan, records: list[dict], warmup_info: dict,
               engine: str, out: Path, wall_s: float, interrupted: bool) -> dict[str, Any]:
    meta = spec.experiment
    records.sort(key=lambda r: (r["point"], r["replication"]))
    factor_paths = [f.path for f in spec.factors]
    # runs.parquet: one row per run and KPI
    cols: dict[str, list] = {c: [] for c in ("experiment", "scenario", "point", "replication",
                                             "seed", "kpi", "value", "wall_s")}
    fcols: dict[str, list] = {f"factor:{p}": [] for p in factor_paths}
    for r in records:
        if not r["ok"]:
            continue
        for k, v in r["kpis"].items():
            cols["experiment"].append(meta.name)
            cols["scenario"].append(str(plan.path(r["point"]).stem))
            cols["point"].append(r["point"])
            cols["replication"].append(r["replication"])
            cols["seed"].append(r["seed"])
            cols["kpi"].append(k)
            cols["value"].append(v)
            cols["wall_s"].append(r["wall_s"])
            for p in factor_paths:
                fcols[f"factor:{p}"].append(json.dumps(plan.points[r["point"]][p]))
    schema = pa.schema([("experiment", pa.string()), ("scenario", pa.string()),
                        ("point", pa.int32()), ("replication", pa.int32()), ("seed", pa.int64()),
                        ("kpi", pa.string()), ("value", pa.float64()), ("wall_s", pa.float64())]
                       + [(c, pa.string()) for c in fcols])
    pq.write_table(pa.Table.from_pydict({**cols, **fcols}, schema=schema), out / "runs.parquet")

    points, comparisons = [], []
    by_point: dict[int, dict[int, dict]] = {}
    for r in records:
        if r["ok"]:
            by_point.setdefault(r["point"], {})[r["replication"]] = r["kpis"]
    base = by_point.get(0, {})
    srows: list[tuple] = []
    crows: list[tuple] = []
    for i, factors in enumerate(plan.points):
        runs = by_point.get(i, {})
        kpis = {}
        for k in plan.kpis:
            ci = t_interval([v[k] for v in runs.values() if v.get(k) is not None],
                            meta.confidence)
            kpis[k] = {"mean": ci.mean, "half_width": ci.half_width, "low": ci.low,
                       "high": ci.high, "n": ci.n}
            srows.append((i, json.dumps(factors), k, ci.n, ci.mean, ci.half_width, ci.low,
                          ci.high))
            if i > 0:
                pairs = [runs[rep][k] - base[rep][k] for rep in runs
                         if rep in base and runs[rep].get(k) is not None
                         and base[rep].get(k) is not None]
                d = t_interval(pairs, meta.confidence)
                sig = bool(d.n >= 2 and math.isfinite(d.half_width) and not d.contains(0.0))
                comparisons.append({"point": i, "baseline": 0, "kpi": k, "mean_difference":
                                    d.mean, "half_width": d.half_width, "low": d.low,
                                    "high": d.high, "pairs": d.n, "significant": sig})
                crows.append((i, 0, k, d.n, d.mean, d.half_width, d.low, d.high, sig))
        points.append({"point": i, "factors": factors, "runs_ok": len(runs), "kpis": kpis})
    stat = [("n", pa.int32()), ("mean", pa.float64()), ("half_width", pa.float64()),
            ("low", pa.float64()), ("high", pa.float64())]
    pq.write_table(pa.Table.from_pylist(
        [dict(zip(["point", "factors", "kpi", "n", "mean", "half_width", "low", "high"], r))
         for r in srows],
        schema=pa.schema([("point", pa.int32()), ("factors", pa.string()), ("kpi", pa.string())]
                         + stat)), out / "summary.parquet")
    pq.write_table(pa.Table.from_pylist(
        [dict(zip(["point", "baseline", "kpi", "pairs", "mean_difference", "half_width", "low",
                   "high", "significant"], r)) for r in crows],
        schema=pa.schema([("point", pa.int32()), ("baseline", pa.int32()), ("kpi", pa.string()),
                          ("pairs", pa.int32()), ("mean_difference", pa.float64()),
                          ("half_width", pa.float64()), ("low", pa.float64()),
                          ("high", pa.float64()), ("significant", pa.bool_())])),
        out / "comparisons.parquet")
    levels = _factor_levels(spec, plan, by_point, meta.confidence)
    failed = [{"point": r["point"], "replication": r["replication"], "error": r["error"],
               "out_dir": r["out_dir"]} for r in records if not r["ok"]]
    summary = {
        "experiment": meta.name,
        "scenario": str(plan.scenario_path),
        "scenarios": [str(plan.path(i)) for i in range(len(plan.points))],
        "seed": plan.seed,
        "confidence": meta.confidence,
        "factors": factor_paths,
        "kpis": list(plan.kpis),
        "engine": engine,
        "warmup": warmup_info,
        "runs_ok": sum(r["ok"] for r in records),
        "runs_failed": len(failed),
        "failed_runs": failed,
        "verification": verdicts(records),
        "partial": interrupted,
        "wall_s": wall_s,
        "points": points,
        "factor_levels": levels,
        "comparisons": comparisons,
        "darkfab_version": darkfab_version(),
        "spec": spec.model_dump(mode="json"),
    }
    (out / "summary.json").write_text(json.dumps(_clean(summary), indent=2) + "\n")
    return summary


def _factor_levels(spec: ExperimentSpec, plan: _Plan, by_point: dict[int, dict[int, dict]],
                   confidence: float) -> dict[str, list[dict]]:
    """Main effects: for each factor level, per replication the KPI averaged over the design
    points at that level (same replication index, so CRN pairs them), then a t-interval."""
    out: dict[str, list[dict]] = {}
    for f in spec.factors:
        rows = []
        for level in f.levels:
            pts = [i for i, p in enumerate(plan.points) if p[f.path] == level]
            reps = set.intersection(*(set(by_point.get(i, {})) for i in pts)) if pts else set()
            kpis = {}
            for k in plan.kpis:
                vals = []
                for r in sorted(reps):
                    xs = [by_point[i][r].get(k) for i in pts]
                    if all(x is not None for x in xs):
                        vals.append(sum(xs) / len(xs))
                ci = t_interval(vals, confidence)
                kpis[k] = {"mean": ci.mean, "half_width": ci.half_width, "low": ci.low,
                           "high": ci.high, "n": ci.n}
            rows.append({"level": level, "points": pts, "kpis": kpis})
        out[f.path] = rows
    return out
