"""``darkfab calibrate``, ``verify-records``, ``recover``, ``schema`` and ``jobshop-bench``: tools
on run folders, scenario files and job-shop instances.

Part of the ``darkfab`` command line (:mod:`darkfab.scenarios.cli` parses the arguments and
imports this module when one of its verbs runs). Exit codes: see there.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

__all__ = ["cmd_calibrate", "cmd_verify_records", "cmd_recover", "cmd_schema",
           "cmd_jobshop_bench"]


def cmd_calibrate(args) -> int:
    """Fit the run's model parameters, write the override and its report; 2 on bad input."""
    from .calibrate import CalibrationError, calibrate_run, run_summary, write_calibration
    from .loader import load_scenario, shipped_scenarios
    from .schema import JobShopScenario

    g = args.refill_guard_s
    if g is not None and not (math.isfinite(g) and g >= 0):
        print(f"--refill-guard-s: must be a finite number >= 0, not {g!r}", file=sys.stderr)
        return 2
    try:
        extends = args.extends or str(run_summary(args.folder).get("scenario"))
        if args.extends is None and extends not in shipped_scenarios():
            raise CalibrationError(
                f"{args.folder}: the run's scenario {extends!r} is not a shipped one: give "
                "--extends FILE (the scenario file of the model to calibrate)")
        model = load_scenario(extends)  # ScenarioError: one line per problem, exit 2
        if isinstance(model, JobShopScenario) or not model.continuous_lines:
            raise CalibrationError(f"--extends {extends}: not a scenario with a continuous line")
        result = calibrate_run(args.folder, dict(model.continuous_lines), args.line, g)
    except CalibrationError as e:
        print(e, file=sys.stderr)
        return 2
    out = args.out or Path(args.folder) / "calibrated.toml"
    paths = write_calibration(result, out, extends)
    for name, r in result["lines"].items():
        rt = r["rtd"]
        if rt is not None:
            f = rt["fit"]
            print(f"{name} blender RTD: tau = {f['tau_s']:.4g} ± {f['se']['tau_s']:.2g} s, "
                  f"n = {f['n']:.4g} ± {f['se']['n']:.2g} (nominal {rt['nominal']['tau_s']:.4g}"
                  f" s, {rt['nominal']['n']:.4g}), R² {f['r2']:.3f}")
        for fname, fr in r["feeders"].items():
            f = fr["fit"]
            print(f"{name}.{fname} feed factor: ff_max {f['ff_max_kg_rev']:.4g}, ff_min "
                  f"{f['ff_min_kg_rev']:.4g} kg/rev, beta {f['beta_per_kg']:.4g} /kg, "
                  f"R² {f['r2']:.3f}")
        for why in r["skipped"]:
            print(f"not fitted: {why}")
    print("calibrated scenario: " + ", ".join(str(p) for p in paths))
    return 0


def cmd_verify_records(args) -> int:
    """The batch records' hash chain against summary.json: 0 intact, 1 tampered (one line per
    problem), 2 the folder cannot be checked."""
    from .batch_records import BadRecordsInput, verify_records

    try:
        problems, n = verify_records(args.folder)
    except BadRecordsInput as e:
        print(e, file=sys.stderr)
        return 2
    for p in problems:
        print(p)
    if problems:
        print(f"{args.folder}: batch records TAMPERED ({len(problems)} problem(s), {n} "
              "record(s) read)", file=sys.stderr)
        return 1
    print(f"{args.folder}: {n} batch record(s) intact")
    return 0


def cmd_schema(args) -> int:
    """The JSON Schema of scenario files, to a file or standard output."""
    import json

    from .json_schema import scenario_json_schema, write_json_schema

    if args.out is None:
        print(json.dumps(scenario_json_schema(args.jobshop), indent=2, ensure_ascii=False))
    else:
        print(f"JSON Schema: {write_json_schema(args.out, args.jobshop)}")
    return 0


def cmd_jobshop_bench(args) -> int:
    from .jobshop import benchmark, format_benchmark

    if not args.time_limit > 0:
        print("--time-limit must be positive", file=sys.stderr)
        return 2
    from darkfab.control.jobshop import JobShopFormatError

    try:
        rows = benchmark(args.instances, time_limit_s=args.time_limit)
    except (JobShopFormatError, OSError) as e:
        print(f"darkfab jobshop-bench: {e}", file=sys.stderr)
        return 2
    print(format_benchmark(rows))
    return 0


def cmd_recover(args) -> int:
    from .recover import RecoverError, recover_run

    try:
        r = recover_run(args.folder)
    except RecoverError as e:
        print(f"darkfab recover: {e}", file=sys.stderr)
        return 2
    if not r["recovered"]:
        print(f"{args.folder}: a finished run, nothing to recover")
        return 0
    for name, rows in r["tables"].items():
        print(f"  {name:<20} {rows:>12,} rows")
    for line in r["problems"]:
        print(f"  note: {line}", file=sys.stderr)
    sm = r["summary"]
    if sm is not None:
        print(f"summary.json: partial ({sm['partial_reason']}), {sm['events']:,} events up to "
              f"{sm['simulated_s'] / 86400.0:.3f} simulated days")
    print(f"recovered: {args.folder}")
    return 0
