"""``darkfab experiment`` and ``compare``: designed experiments and paired controller
comparisons, with their tables of KPI means and intervals.

Part of the ``darkfab`` command line (:mod:`darkfab.scenarios.cli` parses the arguments and
imports this module when one of its verbs runs). Exit codes: see there.
"""

from __future__ import annotations

import sys

from .cli_common import with_horizon

__all__ = ["cmd_experiment", "cmd_compare", "print_experiment"]


def cmd_experiment(args) -> int:
    from .experiment import format_verdicts, run_experiment

    if args.replications is not None and args.replications < 1:
        print("--replications must be at least 1", file=sys.stderr)
        return 2
    res = run_experiment(args.file, engine=args.engine, workers=args.workers,
                         scheduler=args.scheduler, out_dir=args.out,
                         replications=args.replications,
                         progress=not (args.quiet or args.no_progress),
                         allow_code=args.allow_code)
    sm = res.summary
    if not args.quiet:
        print_experiment(sm)
        print(format_verdicts(sm["verification"]))
        for f in sm["failed_runs"]:
            print(f"failed: point {f['point']} replication {f['replication']}: {f['error']}",
                  file=sys.stderr)
    print(f"results: {res.out_dir}")
    if sm["partial"]:
        return 130
    return 1 if sm["runs_failed"] else 0


def print_experiment(sm: dict) -> None:
    """An experiment's KPI means ± half-widths per design point: a table on a terminal, the
    plain lines anywhere else."""
    from .runner import fmt
    from .terminal import on_terminal, print_experiment_table

    print(f"\nexperiment {sm['experiment']}: {sm['runs_ok']} runs ok, "
          f"{sm['runs_failed']} failed, {sm['wall_s']:.1f} s wall, engine {sm['engine']}, "
          f"{sm['confidence']:.0%} intervals, warm-up {sm['warmup']}")
    if on_terminal(sys.stdout):
        print_experiment_table(sm, fmt)
        return
    for pt in sm["points"]:
        desc = ", ".join(f"{k}={v}" for k, v in pt["factors"].items()) or "base"
        print(f"\n point {pt['point']}: {desc}  ({pt['runs_ok']} runs)")
        for kpi, ci in pt["kpis"].items():
            hw = ci["half_width"]
            print(f"   {kpi:40s} {fmt(ci['mean']):>12s} ± {fmt(hw) if hw is not None else '-'}")


def cmd_compare(args) -> int:
    from .compare import format_compare, run_compare
    from .experiment import format_verdicts
    from .terminal import on_terminal, print_compare_table

    if len(args.controllers) != 2:
        print("compare: give --controller exactly twice (A, then B)", file=sys.stderr)
        return 2
    if args.replications < 1 or not 0 < args.confidence < 1:
        print("compare: --replications must be at least 1 and --confidence in (0, 1)",
              file=sys.stderr)
        return 2
    overrides = with_horizon(args)
    res = run_compare(args.scenario, args.controllers[0], args.controllers[1],
                      args.replications, overrides=overrides, seed=args.seed,
                      engine=args.engine, workers=args.workers, scheduler=args.scheduler,
                      out_dir=args.out, confidence=args.confidence,
                      progress=not args.no_progress)
    sm = res.summary
    if on_terminal(sys.stdout):
        print_compare_table(sm)
    else:
        print(format_compare(sm))
    print(format_verdicts(sm["verification"]))
    for f in sm["failed_runs"]:
        print(f"failed: {f['controller']} replication {f['replication']}: {f['error']}",
              file=sys.stderr)
    print(f"results: {res.out_dir}")
    return 1 if sm["runs_failed"] else 0
