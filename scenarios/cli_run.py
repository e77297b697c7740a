"""``darkfab run``, ``check`` and ``list``: load a scenario (or a job shop), validate it, run
it and print its KPIs.

Part of the ``darkfab`` command line (:mod:`darkfab.scenarios.cli` parses the arguments and
imports this module when one of its verbs runs). Exit codes: see there.
"""

from __future__ import annotations

import sys

from .cli_common import DEFAULT_SCENARIO, is_code, with_horizon

__all__ = ["cmd_run", "cmd_check", "cmd_list", "print_table"]


def cmd_check(args) -> int:
    """Schema and cross-reference validation only: no simulator, no user code."""
    from .loader import load_scenario
    from .schema import JobShopScenario

    s = load_scenario(args.scenario, args.overrides)
    if isinstance(s, JobShopScenario):
        print(f"{args.scenario}: OK ({s.scenario.name}: job shop {s.jobshop.instance}, "
              f"scheduler {s.jobshop.scheduler})")
        return 0
    note = ""
    if is_code(s.controller.name):
        note = (f"; controller {s.controller.name!r} is your code, not imported: run it with "
                f"--controller {s.controller.name} or --allow-code")
    print(f"{args.scenario}: OK ({s.scenario.name}: {len(s.equipment)} equipment, "
          f"{len(s.buffers)} buffers, {len(s.nodes)} nodes{note})")
    return 0


def cmd_list(args) -> int:
    """Names and descriptions, read from the TOML files without validating them (``check``
    validates; the shipped files are validated by the tests)."""
    import tomllib

    from .loader import shipped_scenarios

    for name, path in sorted(shipped_scenarios().items()):
        meta = tomllib.loads(path.read_text(encoding="utf-8")).get("scenario", {})
        print(f"{name:20s} {meta.get('description', '')}")
    return 0


def cmd_run(args) -> int:
    from .loader import controller_overrides

    overrides = with_horizon(args)
    if args.seed is not None and args.seed < 0 or args.replication < 0:
        print("--seed and --replication must be non-negative", file=sys.stderr)
        return 2
    if args.strict and args.no_verify:
        print("darkfab: --strict needs the verification report (drop --no-verify)",
              file=sys.stderr)
        return 2
    if not args.flush_s > 0 or args.flush_rows < 1:
        print("--flush-s must be > 0 (inf: only by rows) and --flush-rows >= 1",
              file=sys.stderr)
        return 2
    s = _jobshop_or_scenario(args, overrides)
    if s is None:
        return 2
    from .schema import JobShopScenario

    allow_code = args.allow_code
    if args.controller is not None:
        if isinstance(s, JobShopScenario):
            print("--controller: only for plant scenarios (a job shop has a --scheduler)",
                  file=sys.stderr)
            return 2
        s = _jobshop_or_scenario(args, overrides + controller_overrides(
            args.controller, s.controller.name))
        allow_code = True  # the command line names the controller: consent
    where = args.jobshop or args.scenario or DEFAULT_SCENARIO
    if not isinstance(s, JobShopScenario) and is_code(s.controller.name) and not allow_code:
        name = s.controller.name
        print(f"{where}: controller.name: {name!r} is code named by the scenario file; it runs "
              f"only with your consent: --controller {name} or --allow-code", file=sys.stderr)
        return 2
    return _simulate(args, s, allow_code, where)


def _simulate(args, s, allow_code: bool, where) -> int:
    from darkfab.control import ControllerFault, ControllerSpecError

    from .runner import FlushPolicy, run_scenario
    from .schema import JobShopScenario
    from .verification import format_verification

    show = not (args.quiet or args.no_progress)  # drawn only if stderr is a terminal
    live = None
    if args.live:
        if isinstance(s, JobShopScenario):
            print("darkfab: --live needs a plant scenario (not a job shop)", file=sys.stderr)
            return 2
        if not 0 <= args.port <= 65535:
            print(f"--port: {args.port} is not a TCP port (0-65535)", file=sys.stderr)
            return 2
        from .live import LiveView
        live = LiveView(args.port)
    if args.strict and args.no_verify:
        print("darkfab: --strict needs the verification report (drop --no-verify)",
              file=sys.stderr)
        return 2
    try:
        try:
            res = run_scenario(s, seed=args.seed, replication=args.replication,
                               out_dir=args.out, verify_run=not args.no_verify, progress=show,
                               check_invariants=args.check_invariants, allow_code=allow_code,
                               live=live, flush=FlushPolicy(args.flush_s, args.flush_rows))
        except OSError as e:
            if live is None or live.serving or live.publications:
                raise
            print(f"--port: cannot serve on 127.0.0.1:{args.port}: {e.strerror or e}",
                  file=sys.stderr)
            return 2
    except ControllerSpecError as e:  # raised before the run starts: nothing written
        field = "controller.params" if str(e).startswith("bad parameters") else "controller.name"
        print(f"{where}: {field}: {e}", file=sys.stderr)
        return 2
    except ControllerFault as e:
        out = getattr(e, "out_dir", None)
        print(f"darkfab: {e}; plant stopped safely, partial results in {out}", file=sys.stderr)
        return 3
    except Exception as e:  # noqa: BLE001
        print(f"darkfab: run failed: {type(e).__name__}: {e} (partial results kept)",
              file=sys.stderr)
        return 1
    if not args.quiet:
        if isinstance(s, JobShopScenario):
            _print_jobshop(res.summary)
        else:
            print_table(res.summary)
    v = res.verification
    if v is not None and not args.quiet:
        print(format_verification(v))
    print(f"results: {res.out_dir}")
    if live is not None:
        if sys.stdin.isatty() and not res.summary["partial"]:
            print(f"live view still at {live.url} (Ctrl-C to stop)", file=sys.stderr)
            live.wait()
        live.close()
    if res.summary["partial"]:
        print("run interrupted: partial results written", file=sys.stderr)
        return 130
    if args.strict and v is not None and not v["ok"]:
        print(f"darkfab: verification failed ({len(v['violations'])} violation(s), see "
              f"{res.out_dir / 'verification.json'})", file=sys.stderr)
        return 4
    return 0


def _jobshop_or_scenario(args, overrides: list[str]):
    """The scenario to run; ``None`` after printing a usage error."""
    from .loader import ScenarioError, load_scenario
    from .schema import JobShopScenario

    js_opts = [o for o, v in (("--scheduler", args.scheduler), ("--time-limit", args.time_limit))
               if v is not None]
    if args.jobshop is not None:
        if args.scenario is not None:
            print("give either a scenario or --jobshop FILE, not both", file=sys.stderr)
            return None
        from .jobshop import jobshop_scenario_for_file
        s = jobshop_scenario_for_file(args.jobshop, args.scheduler, args.time_limit)
        if overrides:
            from .loader import apply_overrides
            data = s.model_dump(mode="json")
            problems = apply_overrides(data, overrides)
            if problems:
                raise ScenarioError(str(args.jobshop), problems)
            s = JobShopScenario.model_validate(data)
        return s
    s = load_scenario(args.scenario or DEFAULT_SCENARIO, overrides)
    if not js_opts:
        return s
    if not isinstance(s, JobShopScenario):
        print(f"{', '.join(js_opts)}: only for job-shop scenarios", file=sys.stderr)
        return None
    if args.scheduler is not None:
        overrides.append(("jobshop.scheduler", args.scheduler))
    if args.time_limit is not None:
        overrides.append(("jobshop.time_limit_s", args.time_limit))
    return load_scenario(args.scenario, overrides)


def _print_jobshop(k: dict) -> None:
    sol = k["solver"]
    gap = "-" if k["gap_pct"] is None else f"{k['gap_pct']:.1f} %"
    print(f"\n{k['scenario']}  job shop {k['instance']} ({k['jobs']} jobs x "
          f"{k['machines_count']} machines)  scheduler {k['scheduler']['name']}")
    print(f"makespan {k['makespan']:g}  ({k['makespan_s']:g} s)   {k['reference']} "
          f"{k['reference_makespan']:g}   gap {gap}   {k['events']:,} events in "
          f"{k['wall_s']:.2f} s wall")
    if sol is not None:
        print(f"CP-SAT {sol['status']}  objective {sol['objective']:g}  bound "
              f"{sol['lower_bound']:g}  {sol['wall_s']:.2f} s")


def print_table(k: dict) -> None:
    """A run's KPIs: header lines and the equipment table (boxed on a terminal, the plain
    columns anywhere else), then continuous lines and order books."""
    from .runner import fmt
    from .terminal import on_terminal, print_run_table

    lt = k["lead_time_s"]
    head = [f"\n{k['scenario']}  seed {k['seed']}  replication {k['replication']}  "
            f"horizon {k['horizon_s'] / 86400:.3g} d  warm-up {k['warmup_s'] / 3600:.3g} h  "
            f"{k['events']:,} events in {k['wall_s']:.2f} s wall",
            f"throughput {fmt(k['throughput_per_h'])} units/h   completed "
            f"{k['units_completed']:,}   scrapped {k['units_scrapped']:,}   WIP "
            f"{fmt(k['wip_mean'])}",
            f"lead time s: mean {fmt(lt['mean'])}  p50 {fmt(lt['p50'])}  p95 {fmt(lt['p95'])}"]
    hdr = ("equipment", "util", "avail", "perf", "qual", "OEE", "starved h", "blocked h",
           "down h", "faults")
    rows = []
    for name in k["bottleneck_ranking"]:
        e = k["equipment"][name]
        vals = [e["utilization"], e["availability"], e["performance"], e["quality"], e["oee"]]
        rows.append([name] + [f"{v:.3f}" if v is not None else "-" for v in vals]
                    + [f"{e[x] / 3600:.2f}" for x in ("starved_s", "blocked_s", "down_s")]
                    + [f"{e['faults']:d}"])
    note = "(equipment listed by bottleneck rank: longest mean active period first)"
    if on_terminal(sys.stdout):
        print_run_table(head, hdr, rows, note)
    else:
        print("\n".join(head))
        print("\n" + "{:16s}" .format(hdr[0]) + "".join(f"{h:>10s}" for h in hdr[1:]))
        for r in rows:
            print(f"{r[0]:16s}" + "".join(f"{c:>10s}" for c in r[1:]))
        print(note)
    for name, c in k.get("continuous_lines", {}).items():
        by = ", ".join(f"{cause} {kg:.1f}" for cause, kg in c["diverted_kg_by_cause"].items())
        print(f"\ncontinuous line {name}: {c['line_rate_kg_h']:.1f} kg/h, "
              f"{c['tablets_accepted']:,.0f} tablets accepted of {c['tablets_produced']:,.0f}, "
              f"{c['units_out']:,} units, API {c['api_content_mean_pct']:.2f} % "
              f"(RSD {c['api_content_rsd_pct']:.2f} %), state of control "
              f"{100 * c['state_of_control_fraction']:.1f} % of the time")
        print(f"  diverted kg by cause: {by or '-'}; released out of spec "
              f"{c['released_out_of_spec_kg']:.3g} kg; refills "
              + ", ".join(f"{f} {n}" for f, n in c["refills"].items())
              + f"; mass balance error {k['mass_balance_rel_error']:.1e}")
    for name, o in k.get("orders", {}).items():
        by = o["release_policy"] + (f", {o['orders_released_by_sequence']} in the controller's "
                                    "sequence" if o["orders_released_by_sequence"] else "")
        print(f"\norders {name} (released by {by}): {o['orders_completed']} of "
              f"{o['orders_arrived']} completed, {100 * o['on_time_fraction']:.0f} % on time"
              if o["orders_completed"] else f"\norders {name}: none completed", end="")
        print(f", mean tardiness {fmt(o['mean_tardiness_s'])} s, max "
              f"{fmt(o['max_tardiness_s'])} s, mean lead time {fmt(o['mean_lead_time_s'])} s"
              if o["orders_completed"] else "")
