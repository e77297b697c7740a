"""``darkfab calibrate RUN_DIR``: the twin learns its plant. Model parameters estimated from a
run's sensor data, written as a scenario file that ``extends`` the run's scenario.

* **Blender RTD** from a tracer (``[[continuous_lines.X.tracer]]``: steps or pulses of a
  feeder's set-point) as seen by the NIR (``nir_readings.parquet``). The known input is the
  set-point composition x_in = (API set-point / line set-point) / nominal API share, logged at
  every set-point change (``load_cells.parquet``, event ``setpoint``); the readings are fitted
  in flow time (:mod:`darkfab.factory.flow_clock`: the RTD's own time axis, where a line rate
  change or a hold does not distort it) by :func:`darkfab.factory.rtd_fit.fit_tanks_in_series`:
  a gamma (τ, n) for the blender in series with the press feed frame taken from the scenario,
  with a free baseline and NIR gain. Readings from a refill's start to ``refill_guard_s`` after
  its end are left out (the volumetric feed of a refill is a disturbance the input does not
  know). τ becomes ``holdup_ref_kg`` through the hold-up law H = H_ref(ṁ/ṁ_ref)^a(N_ref/N)^b at
  the run's nominal flow and speed; n becomes ``n_tanks``, or for an axial-dispersion blender
  the Pe with the same variance (τ and Pe matched to the fitted mean and variance).
* **Feed-factor curves** from the load cells: ff = measured flow / screw speed against the
  hopper mass, gravimetric rows only (:func:`darkfab.factory.feed_factor_fit.fit_feed_factor`).
  Needs ``logging.load_cells_s`` (samples between events) for a useful number of rows.

Outputs: the override (TOML), and a fit report with standard errors, 95 % intervals and
goodness of fit as JSON and markdown next to it.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from scipy import optimize

from darkfab.factory.feed_factor_fit import FeedFactorFit, fit_feed_factor
from darkfab.factory.rtd_fit import RTDFit, fit_tanks_in_series

from .line_models import line_parts
from .schema import ContinuousLineSpec

__all__ = ["CalibrationError", "calibrate_run", "run_summary", "write_calibration", "peclet_for",
           "override_toml", "report_markdown", "REFILL_GUARD_TAUS"]

REFILL_GUARD_TAUS = 3.0
"""Default readings left out after a refill ends: this many nominal line mean residence times."""

MIN_FF_ROWS = 20
"""Fewest gravimetric load-cell rows for a feed-factor fit."""


class CalibrationError(ValueError):
    """The run folder cannot be calibrated (one line, for exit code 2)."""


def _read(path: Path, line: str) -> dict[str, np.ndarray] | None:
    if not path.exists():
        return None
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    t = pq.read_table(path)
    t = t.filter(pc.equal(t["line"], line))
    return {c: t[c].to_numpy(zero_copy_only=False) for c in t.column_names}


def _input_steps(cells: dict[str, np.ndarray], run_spec: ContinuousLineSpec
                 ) -> tuple[list[float], list[float]]:
    """Flow times and sizes of the set-point composition's changes (fraction of label claim,
    as the run's NIR reports it: relative to the run's recipe API share)."""
    api = run_spec.api_feeder()
    share = run_spec.feeders[api].mass_fraction
    sel = cells["event"] == "setpoint"
    ts, th = cells["time_s"][sel], cells["flow_time_s"][sel]
    fd, sp = cells["feeder"][sel], cells["setpoint_kg_s"][sel]
    x_prev = 1.0  # the recipe at the start
    steps: dict[float, float] = {}  # flow time → change (a paused line: several at one θ)
    for t in np.unique(ts):  # one row per feeder at each change, in time order
        at = ts == t
        tot = float(sp[at].sum())
        a = float(sp[at & (fd == api)].sum())
        x = a / tot / share if tot > 0 else x_prev
        if abs(x - x_prev) > 1e-12:
            k = float(th[at][0])
            steps[k] = steps.get(k, 0.0) + x - x_prev
        x_prev = x
    kept = [(k, d) for k, d in steps.items() if abs(d) > 1e-12]
    return [k for k, _ in kept], [d for _, d in kept]


def _refill_windows(cells: dict[str, np.ndarray], guard_s: float) -> list[tuple[float, float]]:
    """[start, end + guard] in flow time of every feeder's refills (open at the end: to ∞)."""
    out = []
    for f in np.unique(cells["feeder"]):
        sel = cells["feeder"] == f
        ev, th = cells["event"][sel], cells["flow_time_s"][sel]
        start = None
        for e, t in zip(ev, th):
            if e == "refill":
                start = float(t)
            elif e == "refill_done" and start is not None:
                out.append((start, float(t) + guard_s))
                start = None
        if start is not None:
            out.append((start, math.inf))
    return out


def peclet_for(cv2: float, boundary: str) -> float:
    """Pe of an axial-dispersion RTD with squared coefficient of variation σ²/mean² = cv2.
    Raises :class:`CalibrationError` when no Pe gives it: the closed model spans
    0 < cv2 < 1 (n > 1 tanks), the open one 0 < cv2 < 2 (n > 0.5)."""
    top = 2.0 if boundary == "open" else 1.0
    if not 0.0 < cv2 < top:
        raise CalibrationError(f"the fitted RTD (σ²/τ² = {cv2:.3g}, n = {1 / cv2:.3g}) is wider "
                               f"than any {boundary} axial-dispersion blender (σ²/τ² < {top:g})")

    def f(pe: float) -> float:
        if boundary == "open":
            return (2 / pe + 8 / pe**2) / (1 + 2 / pe) ** 2 - cv2
        return 2 / pe - 2 / pe**2 * (-math.expm1(-pe)) - cv2
    return float(optimize.brentq(f, 1e-3, 1e7))


def _blender_override(fit: RTDFit, spec: ContinuousLineSpec) -> dict[str, Any]:
    """The blender's scenario fields for a fitted mean τ and n (module docstring)."""
    b = spec.blender
    flow = spec.mass_flow_kg_s()
    scale = ((flow / (b.mass_flow_ref_kg_h / 3600.0)) ** b.flow_exponent
             * (b.speed_ref_rpm / b.speed_rpm) ** b.speed_exponent)
    if b.model == "tanks":
        return {"holdup_ref_kg": fit.tau_s * flow / scale, "n_tanks": fit.n}
    pe = peclet_for(1.0 / fit.n, b.model)
    tau = fit.tau_s / (1.0 + 2.0 / pe) if b.model == "open" else fit.tau_s
    return {"holdup_ref_kg": tau * flow / scale, "peclet": pe}


def _calibrate_line(run: Path, name: str, spec: ContinuousLineSpec,
                    run_spec: ContinuousLineSpec, guard_s: float | None) -> dict[str, Any]:
    """One line's fits: ``spec`` the model's line, ``run_spec`` the run's (its recipe)."""
    out: dict[str, Any] = {"rtd": None, "feeders": {}, "skipped": []}
    _, blender, feed_frame = line_parts(spec)
    line_mean = blender.mean_s + feed_frame.mean_s
    guard = REFILL_GUARD_TAUS * line_mean if guard_s is None else guard_s
    cells = _read(run / "load_cells.parquet", name)
    nir = _read(run / "nir_readings.parquet", name)
    if cells is None or cells["time_s"].size == 0:
        out["skipped"].append(f"{name}: no load-cell data (load_cells.parquet; "
                              f"continuous_lines.{name}.logging.load_cells = true)")
        return out
    steps_t, steps_dx = _input_steps(cells, run_spec)
    fit = None
    if nir is None or nir["sample_s"].size == 0:
        out["skipped"].append(f"{name}: RTD not fitted: no NIR readings (nir_readings.parquet)")
    elif not steps_t:
        out["skipped"].append(f"{name}: RTD not fitted: no tracer (no change of the set-point "
                              f"composition; add [[continuous_lines.{name}.tracer]])")
    else:
        th, y = nir["flow_time_s"], nir["api_content"].astype(float)
        keep = np.isfinite(y)
        windows = _refill_windows(cells, guard)
        for a, b in windows:
            keep &= ~((th >= a) & (th <= b))
        n0 = 1.0 / (blender.variance_s2 / blender.mean_s**2)
        try:
            fit = fit_tanks_in_series(th[keep], y[keep], steps_t, steps_dx,
                                      tau0_s=blender.mean_s, n0=n0, fixed=feed_frame)
            override = _blender_override(fit, spec)
        except ValueError as e:  # too few readings, or no blender law for the fit
            out["skipped"].append(f"{name}: RTD not fitted: {e}")
            fit = None
    if fit is not None:
        out["rtd"] = {
            "model": "blender: tanks in series (gamma), in series with the press feed frame "
                     "(from the scenario)",
            "fit": asdict(fit),
            "nominal": {"tau_s": blender.mean_s, "n": n0},
            "line_mean_s": fit.tau_s + feed_frame.mean_s,
            "line_std_s": math.sqrt(fit.variance_s2 + feed_frame.variance_s2),
            "tracer_steps": len(steps_t),
            "readings_used": int(fit.n_obs),
            "readings_left_out_refills": int(np.isfinite(y).sum() - keep.sum()),
            "refill_guard_s": guard,
            "override": override,
        }
    for fname, fs in spec.feeders.items():
        sel = (cells["feeder"] == fname) & (cells["mode"] == "gravimetric") & (
            cells["screw_speed_rev_s"] > 0) & (cells["flow_kg_s"] > 0)
        if sel.sum() < MIN_FF_ROWS:
            out["skipped"].append(
                f"{name}.{fname}: feed factor not fitted: {int(sel.sum())} gravimetric "
                f"load-cell rows (set continuous_lines.{name}.logging.load_cells_s)")
            continue
        order = np.argsort(cells["time_s"][sel], kind="stable")
        m = cells["hopper_mass_kg"][sel][order]
        ff = (cells["flow_kg_s"][sel] / cells["screw_speed_rev_s"][sel])[order]
        try:
            ffit: FeedFactorFit = fit_feed_factor(m, ff, beta0_per_kg=fs.beta_per_kg or None)
        except ValueError as e:
            out["skipped"].append(f"{name}.{fname}: feed factor not fitted: {e}")
            continue
        out["feeders"][fname] = {
            "fit": asdict(ffit),
            "nominal": {"ff_max_kg_rev": fs.ff_max_kg_rev, "ff_min_kg_rev": fs.ff_min_kg_rev,
                        "beta_per_kg": fs.beta_per_kg},
            "override": {"ff_max_kg_rev": ffit.ff_max_kg_rev,
                         "ff_min_kg_rev": min(ffit.ff_min_kg_rev, ffit.ff_max_kg_rev),
                         "beta_per_kg": ffit.beta_per_kg},
        }
    return out


def run_summary(run_dir: Path | str) -> dict[str, Any]:
    """A finished run's ``summary.json`` (with its ``resolved_scenario``).

    Raises:
        CalibrationError: not a finished run folder.
    """
    path = Path(run_dir) / "summary.json"
    if not path.is_file():
        raise CalibrationError(f"{run_dir}: not a darkfab run folder (no summary.json)")
    try:
        summary = json.loads(path.read_text())
        summary["resolved_scenario"]["continuous_lines"]
    except (ValueError, KeyError, TypeError) as e:
        raise CalibrationError(f"{path}: unreadable summary ({type(e).__name__}: {e})") from None
    return summary


def calibrate_run(run_dir: Path | str, model: dict[str, ContinuousLineSpec] | None = None,
                  line: str | None = None, refill_guard_s: float | None = None
                  ) -> dict[str, Any]:
    """The calibration of every continuous line of a run (or ``line``): a dict with the run's
    scenario name and, per line, the RTD and feed-factor fits and what was skipped and why.

    ``model``: the line specs of the model being calibrated (the scenario the override
    extends): the starting point of the fits, the structure taken as known (the feed frame,
    the hold-up law) and the nominal values of the report. Default: the run's own scenario.

    Raises:
        CalibrationError: not a finished run folder, no such line, or nothing to fit.
    """
    run = Path(run_dir)
    summary = run_summary(run)
    lines = summary["resolved_scenario"]["continuous_lines"] or {}
    if not lines:
        raise CalibrationError(f"{run}: the run has no continuous line to calibrate")
    if line is not None and line not in lines:
        raise CalibrationError(f"{run}: no continuous line {line!r} (it has: "
                               f"{', '.join(lines)})")
    result: dict[str, Any] = {"run": str(run), "scenario": summary.get("scenario"),
                              "run_id": summary.get("run_id"), "lines": {}}
    for name, raw in lines.items():
        if line is not None and name != line:
            continue
        try:
            run_spec = ContinuousLineSpec.model_validate(raw, strict=False)
        except ValueError as e:
            raise CalibrationError(f"{run}: the run's line {name!r} is not readable "
                                   f"({type(e).__name__})") from None
        if model is not None and name not in model:
            raise CalibrationError(f"the model scenario has no continuous line {name!r}")
        spec = run_spec if model is None else model[name]
        result["lines"][name] = _calibrate_line(run, name, spec, run_spec, refill_guard_s)
    if not any(v["rtd"] or v["feeders"] for v in result["lines"].values()):
        why = "; ".join(s for v in result["lines"].values() for s in v["skipped"])
        raise CalibrationError(f"{run}: nothing to calibrate ({why})")
    return result


def _toml_value(v: Any) -> str:
    return repr(float(v)) if isinstance(v, float) else json.dumps(v)


def override_toml(result: dict[str, Any], extends: str) -> str:
    """The scenario override: ``extends`` the given scenario, sets the fitted fields and drops
    the tracer experiment (``tracer = []``)."""
    out = [f"# darkfab calibrate {result['run']} (run {result['run_id']})",
           "# fit report: the .json / .md files next to this one", "",
           f"extends = {json.dumps(extends)}", ""]
    for name, r in result["lines"].items():
        out += [f"[continuous_lines.{name}]", "tracer = []  # the calibration experiment", ""]
        if r["rtd"] is not None:
            out.append(f"[continuous_lines.{name}.blender]")
            out += [f"{k} = {_toml_value(v)}" for k, v in r["rtd"]["override"].items()]
            out.append("")
        for fname, f in r["feeders"].items():
            out.append(f"[continuous_lines.{name}.feeders.{fname}]")
            out += [f"{k} = {_toml_value(v)}" for k, v in f["override"].items()]
            out.append("")
    return "\n".join(out)


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def report_markdown(result: dict[str, Any]) -> str:
    """The fit report as markdown: estimates, standard errors, 95 % intervals, fit quality."""
    out = [f"# Calibration of run {result['run_id']}", "",
           f"Scenario `{result['scenario']}`, run folder `{result['run']}`.", ""]
    for name, r in result["lines"].items():
        out += [f"## Line `{name}`", ""]
        rt = r["rtd"]
        if rt is not None:
            f = rt["fit"]
            out += ["### Blender RTD (tanks in series) from the tracer", "",
                    "| parameter | estimate | SE | 95 % CI | nominal |", "|---|---|---|---|---|"]
            for k, label in [("tau_s", "τ (s)"), ("n", "n"), ("gain", "NIR gain"),
                             ("offset", "baseline")]:
                lo, hi = f["ci95"][k]
                nom = _fmt(rt["nominal"][k]) if k in rt["nominal"] else ""
                out.append(f"| {label} | {_fmt(f[k])} | {_fmt(f['se'][k])} | "
                           f"[{_fmt(lo)}, {_fmt(hi)}] | {nom} |")
            out += ["", f"Line mean residence time {_fmt(rt['line_mean_s'])} s, σ "
                    f"{_fmt(rt['line_std_s'])} s. Fit: RMSE {_fmt(f['rmse'])}, R² "
                    f"{_fmt(f['r2'])}, {f['n_obs']} readings ({rt['readings_left_out_refills']}"
                    f" left out near refills), {rt['tracer_steps']} input steps, residual "
                    f"lag-1 autocorrelation {_fmt(f['residual_lag1'])}"
                    f"{'' if f['converged'] else ', NOT CONVERGED: ' + f['message']}.", ""]
        for fname, fr in r["feeders"].items():
            f = fr["fit"]
            out += [f"### Feeder `{fname}`: feed factor", "",
                    "| parameter | estimate | SE | 95 % CI | nominal |", "|---|---|---|---|---|"]
            for k in ("ff_max_kg_rev", "ff_min_kg_rev", "beta_per_kg"):
                lo, hi = f["ci95"][k]
                out.append(f"| {k} | {_fmt(f[k])} | {_fmt(f['se'][k])} | [{_fmt(lo)}, "
                           f"{_fmt(hi)}] | {_fmt(fr['nominal'][k])} |")
            m0, m1 = f["mass_range_kg"]
            out += ["", f"Fit: relative RMSE {_fmt(f['rel_rmse'])}, R² {_fmt(f['r2'])}, "
                    f"{f['n_obs']} samples, hopper mass {_fmt(m0)}–{_fmt(m1)} kg.", ""]
        if r["skipped"]:
            out += ["Not fitted:", ""] + [f"- {s}" for s in r["skipped"]] + [""]
    return "\n".join(out)


def write_calibration(result: dict[str, Any], out: Path | str, extends: str) -> list[Path]:
    """Write the override (``out``, TOML) and its report (``out`` with ``.json`` and ``.md``);
    ``extends``: the scenario the override extends (a shipped name, or a path, written relative
    to ``out``'s folder). Returns the paths written."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if extends.endswith(".toml") or Path(extends).exists():
        extends = os.path.relpath(Path(extends).resolve(), out.parent.resolve())
    out.write_text(override_toml(result, extends))
    js, md = out.with_suffix(".json"), out.with_suffix(".md")
    js.write_text(json.dumps(result, indent=2, default=float) + "\n")
    md.write_text(report_markdown(result))
    return [out, js, md]
