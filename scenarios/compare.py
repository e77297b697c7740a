"""Compare two controllers on one scenario with common random numbers.

``darkfab compare SCENARIO --controller A --controller B --replications N`` runs replication
``r = 0 … N−1`` of the scenario under each controller with the same seed: every stochastic
source draws from its own named stream, so both controllers face the same arrivals, process
times and failures, and the paired differences B − A have a small variance. Reported per KPI:
both means and the mean paired difference with a Student-t interval over the pairs
(throughput, OEE per unit and their mean, diverted mass when the plant has continuous lines,
and recovery time = mean time from a unit's fault to the unit back in Execute).

Runs go through the experiment engines (serial, processes, dask) and
:func:`~darkfab.scenarios.experiment.execute_run`, like an experiment whose only factor is
``controller.name``. Outputs in the folder: ``compare.json`` (with ``verification``: each run's
verdict and the number of runs that failed it), ``compare.parquet`` (one row per KPI) and each
run's folder ``runs/<A|B>-r###/``. The two controllers are named by the caller, which is the
consent to import a ``module:Class`` one.
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from darkfab.control import ControllerSpecError, is_code_reference, make_controller
from darkfab.factory.statistics import t_interval

from .engines import run_tasks
from .experiment import RunTask, execute_run, verdicts
from .loader import Problem, ScenarioError, load_scenario, resolve_path, split_controller
from .runner import _json_safe as _clean, darkfab_version
from .terminal import runs_progress

__all__ = ["run_compare", "CompareResult", "format_compare", "split_controller",
           "COMPARE_SCHEMA"]

RECOVERY = "controller.recovery_time_s.mean"

COMPARE_SCHEMA = pa.schema([
    ("kpi", pa.string()), ("pairs", pa.int32()), ("mean_a", pa.float64()),
    ("mean_b", pa.float64()), ("mean_difference", pa.float64()), ("half_width", pa.float64()),
    ("low", pa.float64()), ("high", pa.float64()), ("significant", pa.bool_())])


@dataclass
class CompareResult:
    out_dir: Path
    summary: dict[str, Any]


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.\-]+", "_", name)


def run_compare(scenario: str, controller_a: str, controller_b: str, replications: int, *,
                overrides: list | tuple = (), seed: int | None = None,
                engine: str = "processes", workers: int | None = None,
                scheduler: str | None = None, out_dir: str | Path | None = None,
                confidence: float = 0.95, progress: bool = False) -> CompareResult:
    """Run and summarise the comparison (see the module docstring); raises
    :class:`ScenarioError` if the scenario, an override or a controller is invalid.
    ``progress``: a bar over the runs on stderr when it is a terminal."""
    if replications < 1:
        raise ValueError("replications must be at least 1")
    path = resolve_path(scenario).resolve()
    base = load_scenario(path, list(overrides))
    variants = {}
    for label, arg in (("A", controller_a), ("B", controller_b)):
        name, params = split_controller(arg, path)
        ov = list(overrides) + [("controller.name", name)]
        if params is not None:
            ov.append(("controller.params", params))
        elif name != base.controller.name:
            ov.append(("controller.params", {}))  # the file's params belong to its controller
        try:
            s = load_scenario(path, ov)
        except ScenarioError as e:
            raise ScenarioError(e.file, [Problem(f"--controller {name}: {p.path}", p.message)
                                         for p in e.problems]) from None
        if is_code_reference(name):  # named by the caller: import it now, to fail early
            try:
                make_controller(name, s.controller.params, allow_code=True)
            except ControllerSpecError as e:
                raise ScenarioError(str(path), [Problem(f"--controller {name}: controller.name",
                                                        str(e))]) from None
        variants[label] = (name, tuple(ov))
    seed = base.scenario.seed if seed is None else seed
    equipment = list(base.equipment)
    lines = list(getattr(base, "continuous_lines", {}) or {})
    kpis = (("throughput_per_h",) + tuple(f"equipment.{e}.oee" for e in equipment)
            + tuple(f"continuous_lines.{ln}.diverted_kg" for ln in lines) + (RECOVERY,))
    out = Path(out_dir) if out_dir else Path("results/compare") / \
        f"{base.scenario.name}-{_slug(controller_a)}-vs-{_slug(controller_b)}"
    out.mkdir(parents=True, exist_ok=True)
    tasks = [RunTask(str(path), ov, seed, r, i, str(out / "runs" / f"{label}-r{r:03d}"), kpis,
                     allow_code=True)
             for i, (label, (_, ov)) in enumerate(variants.items())
             for r in range(replications)]
    t0 = time.perf_counter()
    records = []
    bar = runs_progress(progress)
    bar.add(len(tasks))
    with bar:
        for rec in run_tasks(execute_run, tasks, engine, workers, scheduler):
            records.append(rec)
            bar.step(rec.get("simulated_s"))
    records.sort(key=lambda rec: (rec["point"], rec["replication"]))
    by = {0: {}, 1: {}}
    for rec in records:
        if rec["ok"]:
            by[rec["point"]][rec["replication"]] = _derived(rec["kpis"], equipment, lines)
    names = ["throughput_per_h", "oee_mean"] + [f"oee.{e}" for e in equipment]
    if lines:
        names.append("diverted_mass_kg")
    names.append("recovery_time_s")
    rows = []
    for k in names:
        a = [by[0][r][k] for r in sorted(by[0]) if by[0][r].get(k) is not None]
        b = [by[1][r][k] for r in sorted(by[1]) if by[1][r].get(k) is not None]
        pairs = [by[1][r][k] - by[0][r][k] for r in sorted(set(by[0]) & set(by[1]))
                 if by[0][r].get(k) is not None and by[1][r].get(k) is not None]
        d = t_interval(pairs, confidence)
        ia, ib = t_interval(a, confidence), t_interval(b, confidence)
        sig = bool(d.n >= 2 and math.isfinite(d.half_width) and not d.contains(0.0))
        rows.append({"kpi": k, "pairs": d.n, "mean_a": ia.mean, "mean_b": ib.mean,
                     "mean_difference": d.mean, "half_width": d.half_width, "low": d.low,
                     "high": d.high, "significant": sig})
    pq.write_table(pa.Table.from_pylist(rows, schema=COMPARE_SCHEMA), out / "compare.parquet")
    failed = [{"controller": variants["AB"[r["point"]]][0], "replication": r["replication"],
               "error": r["error"], "out_dir": r["out_dir"]} for r in records if not r["ok"]]
    summary = {
        "scenario": str(path), "controller_a": controller_a, "controller_b": controller_b,
        "difference": "B - A", "replications": replications, "seed": seed,
        "confidence": confidence, "engine": engine, "overrides": [str(o) for o in overrides],
        "runs_ok": sum(r["ok"] for r in records), "runs_failed": len(failed),
        "failed_runs": failed,
        "verification": verdicts(records, lambda r: {
            "controller": (controller_a, controller_b)[r["point"]]}),
        "kpis": rows, "wall_s": time.perf_counter() - t0,
        "darkfab_version": darkfab_version(),
    }
    (out / "compare.json").write_text(json.dumps(_clean(summary), indent=2) + "\n")
    return CompareResult(out, summary)


def _derived(k: dict[str, float | None], equipment: list[str], lines: list[str]) -> dict:
    oee = {e: k.get(f"equipment.{e}.oee") for e in equipment}
    vals = [v for v in oee.values() if v is not None and math.isfinite(v)]
    out: dict[str, float | None] = {
        "throughput_per_h": k.get("throughput_per_h"),
        "oee_mean": sum(vals) / len(vals) if vals else None,
        **{f"oee.{e}": v for e, v in oee.items()},
        "recovery_time_s": _finite(k.get(RECOVERY)),
    }
    if lines:
        div = [k.get(f"continuous_lines.{ln}.diverted_kg") for ln in lines]
        out["diverted_mass_kg"] = sum(div) if all(v is not None for v in div) else None
    return out


def _finite(x):
    return x if x is not None and math.isfinite(x) else None


def format_compare(sm: dict[str, Any]) -> str:
    """The comparison as a text table."""
    def f(x):
        return "-" if x is None or (isinstance(x, float) and not math.isfinite(x)) \
            else f"{x:,.4g}"
    lines = [f"compare {Path(sm['scenario']).stem}: A = {sm['controller_a']}, "
             f"B = {sm['controller_b']}; {sm['replications']} replications with common random "
             f"numbers (seed {sm['seed']}); paired differences B - A, "
             f"{sm['confidence']:.0%} t-intervals",
             f"{'kpi':24s} {'A mean':>11s} {'B mean':>11s} {'B - A':>11s} {'± half-width':>13s}"
             f"  {'interval':>25s} {'pairs':>5s}"]
    for r in sm["kpis"]:
        iv = f"[{f(r['low'])}, {f(r['high'])}]"
        mark = " *" if r["significant"] else ""
        lines.append(f"{r['kpi']:24s} {f(r['mean_a']):>11s} {f(r['mean_b']):>11s} "
                     f"{f(r['mean_difference']):>11s} {f(r['half_width']):>13s}  {iv:>25s} "
                     f"{r['pairs']:5d}{mark}")
    lines.append("(* the interval excludes 0; recovery time: mean from a unit's fault to the "
                 "unit back in Execute, per run)")
    return "\n".join(lines)
