"""``darkfab``: run, check and compare scenarios of lights-out plants from the command line.

Exit codes: 0 success; 2 invalid scenario or usage (one line per problem, no traceback);
1 the run failed (results written so far stay readable); 3 controller fault (the controller
raised: the plant was stopped safely, partial results); 4 ``--strict`` and the verification
report has a violation; 130 interrupted (partial results).

Start-up: this module imports only the standard library at the top; each verb imports what it
needs (the loader for ``check``, the simulator for ``run``, matplotlib for plots), so that
``darkfab --help`` and ``darkfab check`` start fast (``tests/benchmarks/bench_startup.py``).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

__all__ = ["main"]

DEFAULT_SCENARIO = "cdc-line"
ENGINES = ("serial", "processes", "dask")  # darkfab.scenarios.engines.ENGINES (test_cli checks)


class _Version(argparse.Action):
    """``--version``: the installed package's version (read only when asked)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS,
                 help="print the darkfab version and exit"):
        super().__init__(option_strings, dest, nargs=0, default=default, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        from importlib.metadata import PackageNotFoundError, version
        try:
            v = version("darkfab")
        except PackageNotFoundError:  # running from a source tree
            v = "0+unknown"
        print(f"darkfab {v}")
        parser.exit()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="darkfab", description="Discrete-event simulator of lights-out pharmaceutical "
        "plants: run, check and compare scenarios.", epilog="Exit codes: 0 ok, 1 run failed, "
        "2 invalid input, 3 controller fault, 4 verification failed (--strict), 130 "
        "interrupted. 'darkfab VERB --help' for a verb's options.")
    p.add_argument("--version", action=_Version)
    sub = p.add_subparsers(dest="cmd", required=True, metavar="VERB")
    r = sub.add_parser("run", help="run a scenario (default: %s)" % DEFAULT_SCENARIO)
    r.add_argument("scenario", nargs="?", default=None,
                   help="shipped scenario name or path to a .toml file (default: %s)"
                   % DEFAULT_SCENARIO)
    h = r.add_mutually_exclusive_group()
    h.add_argument("--days", type=float, help="horizon in simulated days")
    h.add_argument("--hours", type=float, help="horizon in simulated hours")
    r.add_argument("--seed", type=int, help="base seed (default: the scenario's)")
    r.add_argument("--replication", type=int, default=0, help="replication index (default 0)")
    r.add_argument("--out", type=Path, help="output folder (default results/runs/<scenario>/<run-id>)")
    r.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE",
                   help="override a scenario field, e.g. equipment.cartoner.servers=2")
    r.add_argument("--quiet", action="store_true", help="no progress bar or KPI table")
    r.add_argument("--no-progress", action="store_true",
                   help="no progress bar (the KPI table is still printed)")
    r.add_argument("--strict", action="store_true",
                   help="exit with code 4 if the verification report has a violation")
    r.add_argument("--no-verify", action="store_true",
                   help="skip verification.json (saves a pass over the event log)")
    r.add_argument("--controller", metavar="NAME",
                   help="use this controller instead of the scenario's: a registered name or "
                   "module:Class (your code: naming it here is your consent to run it), "
                   "optionally with parameters as a TOML inline table ('cautious{max_faults = "
                   "2}')")
    r.add_argument("--allow-code", action="store_true",
                   help="run a module:Class controller named by the scenario file (a scenario "
                   "file does not run code without this)")
    r.add_argument("--check-invariants", action="store_true",
                   help="stop at the first broken fleet invariant (collision, jump, charge)")
    r.add_argument("--live", action="store_true",
                   help="serve a live view of the run on http://127.0.0.1:PORT/")
    r.add_argument("--port", type=int, default=8765,
                   help="--live: TCP port on 127.0.0.1 (default 8765; 0: any free port)")
    r.add_argument("--flush-s", type=float, default=5.0, metavar="S",
                   help="crash safety: write every table to disk at least every S seconds of "
                   "wall time (default 5; inf: only by rows); after a kill, 'darkfab recover' "
                   "keeps everything up to the last write")
    r.add_argument("--flush-rows", type=int, default=65_536, metavar="N",
                   help="crash safety: write a table to disk when it holds N new rows "
                   "(default 65536)")
    r.add_argument("--jobshop", type=Path, metavar="FILE",
                   help="run a job-shop instance file in the standard format ('n m', then per "
                        "job 'machine time' pairs) instead of a scenario")
    r.add_argument("--scheduler", help="job shops: cpsat (default) or a dispatching rule "
                   "(fifo, spt, lpt, edd, cr, atc, mwkr)")
    r.add_argument("--time-limit", type=float, metavar="S", help="job shops: CP-SAT time limit")
    c = sub.add_parser("check", help="validate a scenario file without running it (never "
                       "imports code)")
    c.add_argument("scenario")
    c.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE")
    sub.add_parser("list", help="list the shipped scenarios with their descriptions")
    sc = sub.add_parser("schema", help="write the JSON Schema of scenario files (for editors "
                        "that check TOML against a JSON Schema)")
    sc.add_argument("--out", type=Path, help="JSON file (default: standard output)")
    sc.add_argument("--jobshop", action="store_true",
                    help="the schema of job-shop scenario files (a [jobshop] table)")
    x = sub.add_parser("experiment", help="run factors x replications with confidence intervals")
    x.add_argument("file", help="experiment .toml file")
    x.add_argument("--engine", choices=ENGINES, default="processes",
                   help="serial, processes (default: all cores) or dask")
    x.add_argument("--workers", type=int, help="worker processes (default: all cores)")
    x.add_argument("--scheduler", help="Dask scheduler address (default: a LocalCluster)")
    x.add_argument("--replications", type=int, help="override the file's replications")
    x.add_argument("--out", type=Path, help="output folder (default results/experiments/<name>)")
    x.add_argument("--allow-code", action="store_true",
                   help="run module:Class controllers named by the scenario or the factors")
    x.add_argument("--quiet", action="store_true", help="no progress bar or KPI table")
    x.add_argument("--no-progress", action="store_true",
                   help="no progress bar (the KPI table is still printed)")
    rc = sub.add_parser("recover", help="make the tables and a partial summary.json of a run "
                        "that was killed (SIGKILL, out of memory, power cut)")
    rc.add_argument("folder", type=Path, help="the run folder")
    rp = sub.add_parser("report", help="HTML report of a run or an experiment folder")
    rp.add_argument("folder", type=Path, help="a run folder or an experiment folder")
    rp.add_argument("--out", type=Path, help="HTML file (default FOLDER/report.html)")
    vw = sub.add_parser("view", help="write a self-contained HTML page that replays a run "
                        "(layout, robots, states, buffers, lines, charts)")
    vw.add_argument("folder", type=Path, help="a run folder")
    vw.add_argument("--out", type=Path, help="HTML file (default FOLDER/view.html)")
    pl = sub.add_parser("plot", help="draw a figure of a run (layout and lane usage)")
    pl.add_argument("what", choices=["layout"], help="layout: nodes by role, lanes, stations, "
                    "lane usage as a heat map")
    pl.add_argument("folder", type=Path, help="a run folder")
    pl.add_argument("--out", type=Path, help="PNG file (default FOLDER/layout.png); missing "
                    "folders are created")
    pl.add_argument("--labels", action=argparse.BooleanOptionalAction, default=None,
                    help="draw every node name, resident and link length (--no-labels: none; "
                    "default: all up to 60 nodes, past that only the names of non-waypoint "
                    "nodes)")
    cp = sub.add_parser("compare", help="two controllers on one scenario: paired differences "
                        "with common random numbers")
    cp.add_argument("scenario", help="shipped scenario name or path to a .toml file")
    cp.add_argument("--controller", dest="controllers", action="append", default=[],
                    metavar="NAME", help="a registered controller or module:Class, optionally with "
                    "parameters as a TOML inline table ('cautious{max_faults = 2}'); give it "
                    "twice (A, then B)")
    cp.add_argument("--replications", type=int, default=5, help="replications (default 5)")
    cp.add_argument("--engine", choices=ENGINES, default="processes",
                    help="serial, processes (default: all cores) or dask")
    cp.add_argument("--workers", type=int, help="worker processes (default: all cores)")
    cp.add_argument("--scheduler", help="Dask scheduler address (default: a LocalCluster)")
    ch = cp.add_mutually_exclusive_group()
    ch.add_argument("--days", type=float, help="horizon in simulated days")
    ch.add_argument("--hours", type=float, help="horizon in simulated hours")
    cp.add_argument("--seed", type=int, help="base seed (default: the scenario's)")
    cp.add_argument("--confidence", type=float, default=0.95, help="interval level (0.95)")
    cp.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE",
                    help="override a scenario field for both controllers")
    cp.add_argument("--out", type=Path, help="output folder (default results/compare/<scenario>-"
                    "<A>-vs-<B>)")
    cp.add_argument("--no-progress", action="store_true", help="no progress bar")
    fu = sub.add_parser("funnel", help="funnel plot of a continuous line: which disturbances "
                        "are diverted", description="Funnel plot of a scenario's continuous "
                        "line: disturbance magnitude x duration -> diverted or not (PNG).")
    fu.add_argument("scenario", nargs="?", default=DEFAULT_SCENARIO,
                    help="shipped scenario name or path (default: %s)" % DEFAULT_SCENARIO)
    fu.add_argument("--line", help="continuous line name (default: the first)")
    fu.add_argument("--out", type=Path, help="PNG file (default "
                    "results/funnel/<scenario>[-<line>].png)")
    fu.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE")
    ca = sub.add_parser("calibrate", help="estimate the line's RTD and feed-factor curves from "
                        "a run's sensor data; write them as a scenario that extends the run's",
                        description="Calibration: the blender RTD from a tracer seen by the NIR, "
                        "each feeder's feed-factor curve from its load cells (docs/calibration.md)."
                        " Writes FILE (TOML, extends the run's scenario) and FILE's .json and .md"
                        " fit report.")
    ca.add_argument("folder", type=Path, help="a run folder (nir_readings.parquet, "
                    "load_cells.parquet)")
    ca.add_argument("--out", type=Path, help="the override file (default "
                    "RUN_DIR/calibrated.toml)")
    ca.add_argument("--extends", help="the scenario the override extends (default: the run's "
                    "scenario, if shipped)")
    ca.add_argument("--line", help="calibrate this continuous line only")
    ca.add_argument("--refill-guard-s", type=float, help="NIR readings left out after a "
                    "refill ends (default 3 nominal line mean residence times)")
    vr = sub.add_parser("verify-records", help="check a run's electronic batch records: "
                        "edited, missing or reordered records (exit 0 intact, 1 tampered)")
    vr.add_argument("folder", type=Path, help="a run folder (with batch_records.jsonl)")
    sv = sub.add_parser("serve", help="run a plant paced to the wall clock (or in lockstep) "
                        "behind an OPC UA server (needs the 'opcua' extra)",
                        description="Software in the loop: the plant's units as OPC UA objects "
                        "with PackTags and PackML methods (docs/software-in-the-loop.md).")
    sv.add_argument("scenario", nargs="?", default=None,
                    help="shipped scenario name or path (default: %s)" % DEFAULT_SCENARIO)
    pace = sv.add_mutually_exclusive_group(required=True)
    pace.add_argument("--speed", type=float, metavar="X",
                      help="simulated seconds per wall second (1: real time, 3600: an hour a "
                      "second)")
    pace.add_argument("--lockstep", action="store_true",
                      help="advance one decision cycle per Plant/Acknowledge() call")
    sv.add_argument("--cycle-s", type=float, default=60.0,
                    help="--lockstep: simulated seconds per cycle (default 60)")
    sh = sv.add_mutually_exclusive_group()
    sh.add_argument("--days", type=float, help="horizon in simulated days")
    sh.add_argument("--hours", type=float, help="horizon in simulated hours")
    sv.add_argument("--host", default="127.0.0.1",
                    help="address to bind (default 127.0.0.1: this machine only)")
    sv.add_argument("--port", type=int, default=4840, help="TCP port (default 4840)")
    sv.add_argument("--read-only", action="store_true",
                    help="serve values only: every command and set-point write is refused")
    sv.add_argument("--seed", type=int, help="base seed (default: the scenario's)")
    sv.add_argument("--replication", type=int, default=0, help="replication index (default 0)")
    sv.add_argument("--out", type=Path, help="output folder (default "
                    "results/runs/<scenario>/<run-id>)")
    sv.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE")
    sv.add_argument("--controller", metavar="NAME",
                    help="the plant's own controller instead of the scenario's (as for run)")
    sv.add_argument("--allow-code", action="store_true",
                    help="run a module:Class controller named by the scenario file")
    sv.add_argument("--remote-controller", action="store_true",
                    help="--lockstep: the plant's controller is an OPC UA client (darkfab "
                    "supervise), which decides at each decision of the scenario's controller")
    _security_options(sv, server=True)
    su = sub.add_parser("supervise", help="run darkfab's supervisor as an OPC UA client of "
                        "darkfab serve --lockstep --remote-controller",
                        description="Software in the loop: the built-in supervisor (or another "
                        "controller) in its own process, seeing the plant and commanding it "
                        "over OPC UA (docs/software-in-the-loop.md).")
    su.add_argument("url", help="the server's endpoint, e.g. opc.tcp://127.0.0.1:4840/darkfab/")
    su.add_argument("--allow-code", action="store_true",
                    help="run the served controller when the server names it as module:Class "
                    "(code on this machine, named by the server)")
    su.add_argument("--timeout", type=float, default=60.0, metavar="S",
                    help="give up when the server does not answer a request in S wall seconds "
                    "(default 60)")
    _security_options(su, server=False)
    jb = sub.add_parser("jobshop-bench", help="job-shop benchmark: dispatching rules and "
                        "CP-SAT against the optima", description="ft06/ft10: every dispatching "
                        "rule and CP-SAT, makespan and gap to the optimum.")
    jb.add_argument("--time-limit", type=float, default=60.0, metavar="S",
                    help="CP-SAT time limit per instance (default 60)")
    jb.add_argument("--instances", nargs="+", default=["ft06", "ft10"],
                    help="shipped instance names or instance files (default ft06 ft10)")
    return p


def _security_options(p, server: bool) -> None:
    """``--user``, ``--users``, ``--cert``, ``--key`` (and ``--server-cert`` for a client)."""
    if server:
        p.add_argument("--user", dest="users", action="append", default=[],
                       metavar="NAME:PASSWORD", help="accept this user (repeatable); anonymous "
                       "clients are then refused")
        p.add_argument("--users-file", type=Path, metavar="FILE",
                       help="accept the users of FILE, one NAME:PASSWORD a line")
        p.add_argument("--trust", action="append", default=[], type=Path, metavar="PEM",
                       help="with --cert: accept the client with this identity certificate "
                       "(repeatable)")
    else:
        p.add_argument("--user", metavar="NAME:PASSWORD", help="log in as this user")
        p.add_argument("--server-cert", type=Path, metavar="PEM",
                       help="the server's certificate (default: taken from its endpoint)")
    p.add_argument("--cert", type=Path, metavar="PEM",
                   help="certificate: serve/connect with Basic256Sha256 SignAndEncrypt only")
    p.add_argument("--key", type=Path, metavar="PEM", help="the certificate's private key")


def _with_horizon(args) -> list[str]:
    """``--set`` overrides, then ``--days`` / ``--hours`` as ``scenario.horizon_s``."""
    out = list(args.overrides)
    if args.days is not None:
        out.append(f"scenario.horizon_s={args.days * 86400.0}")
    if args.hours is not None:
        out.append(f"scenario.horizon_s={args.hours * 3600.0}")
    return out


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from .loader import ScenarioError

    verbs = {"list": _list, "experiment": _experiment, "report": _report, "plot": _plot,
             "jobshop-bench": _jobshop_bench, "compare": _compare, "funnel": _funnel,
             "check": _check, "run": _run, "view": _view,
             "verify-records": _verify_records, "recover": _recover, "calibrate": _calibrate,
             "schema": _schema, "serve": _serve, "supervise": _supervise}
    try:
        return verbs[args.cmd](args)
    except ScenarioError as e:
        for problem in e.problems:
            print(problem.format(e.file), file=sys.stderr)
        return 2


def _calibrate(args) -> int:
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


def _verify_records(args) -> int:
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


def _schema(args) -> int:
    """The JSON Schema of scenario files, to a file or standard output."""
    import json

    from .json_schema import scenario_json_schema, write_json_schema

    if args.out is None:
        print(json.dumps(scenario_json_schema(args.jobshop), indent=2, ensure_ascii=False))
    else:
        print(f"JSON Schema: {write_json_schema(args.out, args.jobshop)}")
    return 0


def _check(args) -> int:
    """Schema and cross-reference validation only: no simulator, no user code."""
    from .loader import load_scenario
    from .schema import JobShopScenario

    s = load_scenario(args.scenario, args.overrides)
    if isinstance(s, JobShopScenario):
        print(f"{args.scenario}: OK ({s.scenario.name}: job shop {s.jobshop.instance}, "
              f"scheduler {s.jobshop.scheduler})")
        return 0
    note = ""
    if _is_code(s.controller.name):
        note = (f"; controller {s.controller.name!r} is your code, not imported: run it with "
                f"--controller {s.controller.name} or --allow-code")
    print(f"{args.scenario}: OK ({s.scenario.name}: {len(s.equipment)} equipment, "
          f"{len(s.buffers)} buffers, {len(s.nodes)} nodes{note})")
    return 0


def _is_code(name: str) -> bool:
    from darkfab.control.registry import is_code_reference
    return is_code_reference(name)


def _funnel(args) -> int:
    from .funnel import default_funnel_path, write_funnel_png
    from .loader import load_scenario
    from .schema import JobShopScenario

    s = load_scenario(args.scenario, args.overrides)
    if isinstance(s, JobShopScenario) or not s.continuous_lines:
        print(f"darkfab: scenario {s.scenario.name!r} has no continuous line", file=sys.stderr)
        return 2
    if args.line is not None and args.line not in s.continuous_lines:
        print(f"darkfab: no continuous line {args.line!r}; lines: "
              + ", ".join(sorted(s.continuous_lines)), file=sys.stderr)
        return 2
    out = args.out or default_funnel_path(s.scenario.name, args.line)
    print(f"funnel plot: {write_funnel_png(s, out, args.line)}")
    return 0


def _list(args) -> int:
    """Names and descriptions, read from the TOML files without validating them (``check``
    validates; the shipped files are validated by the tests)."""
    import tomllib

    from .loader import shipped_scenarios

    for name, path in sorted(shipped_scenarios().items()):
        meta = tomllib.loads(path.read_text(encoding="utf-8")).get("scenario", {})
        print(f"{name:20s} {meta.get('description', '')}")
    return 0


def _run(args) -> int:
    from .loader import controller_overrides

    overrides = _with_horizon(args)
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
    if not isinstance(s, JobShopScenario) and _is_code(s.controller.name) and not allow_code:
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
            _print_table(res.summary)
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


def _serve(args) -> int:
    """``darkfab serve``: see :mod:`darkfab.scenarios.serve`."""
    import asyncio

    from .loader import controller_overrides, load_scenario
    from .schema import JobShopScenario

    problems = []
    if args.speed is not None and not args.speed > 0:
        problems.append(f"--speed: must be positive, got {args.speed:g}")
    if not args.cycle_s > 0:
        problems.append(f"--cycle-s: must be positive, got {args.cycle_s:g}")
    if not 1 <= args.port <= 65535:
        problems.append(f"--port: {args.port} is not a TCP port (1-65535)")
    if args.seed is not None and args.seed < 0 or args.replication < 0:
        problems.append("--seed and --replication must be non-negative")
    if args.remote_controller and not args.lockstep:
        problems.append("--remote-controller: needs --lockstep")
    try:
        import asyncua  # noqa: F401
    except ImportError:
        problems.append("darkfab serve needs asyncua: pip install 'darkfab[opcua]'")
    else:
        from .opcua_security import server_security
        security = server_security(args, problems)
    for p in problems:
        print(p, file=sys.stderr)
    if problems:
        return 2
    overrides = _with_horizon(args)
    where = args.scenario or DEFAULT_SCENARIO
    s = load_scenario(where, overrides)
    if isinstance(s, JobShopScenario):
        print(f"{where}: serve needs a plant scenario (not a job shop)", file=sys.stderr)
        return 2
    allow_code = args.allow_code
    if args.controller is not None:
        s = load_scenario(where, overrides + controller_overrides(args.controller,
                                                                  s.controller.name))
        allow_code = True
    if _is_code(s.controller.name) and not allow_code:
        print(f"{where}: controller.name: {s.controller.name!r} is code named by the scenario "
              f"file; it runs only with your consent: --allow-code", file=sys.stderr)
        return 2
    from darkfab.control import ControllerFault, ControllerSpecError

    from .serve import install_stop, serve_simulation
    from .simulation import Simulation

    remote = None
    try:
        if args.remote_controller:
            from .remote_control import open_remote
            sim, remote = open_remote(s, seed=args.seed, replication=args.replication,
                                      out_dir=args.out, allow_code=allow_code)
        else:
            sim = Simulation.open(s, seed=args.seed, replication=args.replication,
                                  out_dir=args.out, allow_code=allow_code)
    except ControllerSpecError as e:
        print(f"{where}: controller.name: {e}", file=sys.stderr)
        return 2

    def ready(endpoint: str) -> None:
        how = ("lockstep: call Plant/Acknowledge() to advance %g s" % args.cycle_s
               if args.lockstep else f"speed {args.speed:g} simulated s per wall s")
        print(f"serving {s.scenario.name} at {endpoint} ({how}"
              f"{'; read-only' if args.read_only else ''}"
              f"{'; controller: a client (darkfab supervise)' if remote else ''}"
              f"{'; ' + security.describe() if security else ''})", file=sys.stderr,
              flush=True)

    async def main_() -> tuple:
        stop = asyncio.Event()
        install_stop(stop)
        return await serve_simulation(
            sim, speed=None if args.lockstep else args.speed, lockstep=args.lockstep,
            cycle_s=args.cycle_s, host=args.host, port=args.port, read_only=args.read_only,
            on_ready=ready, stop=stop, remote=remote, security=security)
    try:
        res, stats = asyncio.run(main_())
    except ControllerFault as e:
        print(f"darkfab: {e}; plant stopped safely, partial results in {sim.out_dir}",
              file=sys.stderr)
        return 3
    except OSError as e:
        print(f"--host/--port: cannot serve on {args.host}:{args.port}: {e.strerror or e}",
              file=sys.stderr)
        sim.close(partial=True, reason=f"error: {e}")
        return 2
    if stats:
        print(f"pacing: {stats['ticks']} ticks, lag mean {stats['mean_lag_s']:.3f} s, p95 "
              f"{stats['p95_lag_s']:.3f} s, max {stats['max_lag_s']:.3f} s, behind (> 1 s) in "
              f"{stats['behind_ticks']} ticks", file=sys.stderr)
    print(f"results: {res.out_dir}")
    if res.summary["partial"]:
        print("run interrupted: partial results written", file=sys.stderr)
        return 130
    return 0


def _supervise(args) -> int:
    """``darkfab supervise URL``: see :mod:`darkfab.scenarios.supervise`."""
    import asyncio

    problems = []
    if not args.url.startswith("opc.tcp://"):
        problems.append(f"url: {args.url!r} is not an opc.tcp:// endpoint")
    if not args.timeout > 0:
        problems.append(f"--timeout: must be positive, got {args.timeout:g}")
    try:
        import asyncua  # noqa: F401
    except ImportError:
        problems.append("darkfab supervise needs asyncua: pip install 'darkfab[opcua]'")
    else:
        from .opcua_security import client_security
        configure = client_security(args, problems)
    for p in problems:
        print(p, file=sys.stderr)
    if problems:
        return 2
    from darkfab.control import ControllerSpecError

    from .supervise import supervise

    try:
        st = asyncio.run(supervise(args.url, allow_code=args.allow_code,
                                   timeout_s=args.timeout,
                                   configure=configure,
                                   report=lambda m: print(m, file=sys.stderr, flush=True)))
    except ControllerSpecError as e:
        print(f"{args.url}: the served controller: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except (OSError, TimeoutError, asyncio.TimeoutError) as e:
        print(f"{args.url}: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # noqa: BLE001 - asyncua's errors: one line, no traceback
        print(f"{args.url}: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print(f"supervised to t = {st.plant_clock_s:g} s as {st.controller}: {st.decisions} "
          f"decisions, {st.commands} commands ({st.refused} refused)")
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


def _jobshop_bench(args) -> int:
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


def _unfinished(verb: str, folder: Path) -> bool:
    """Print why ``folder`` cannot be read yet, if it has unfinished tables (reading never
    recovers by itself: see darkfab.scenarios.recover)."""
    from .recover import unfinished_message

    why = unfinished_message(folder)
    if why is not None:
        print(f"darkfab {verb}: {why}", file=sys.stderr)
    return why is not None


def _recover(args) -> int:
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


def _plot(args) -> int:
    from .report_layout import write_layout_png

    if _unfinished("plot", args.folder):
        return 2
    try:
        path = write_layout_png(args.folder, args.out, args.labels)
    except ValueError as e:
        print(f"darkfab plot: {e}", file=sys.stderr)
        return 2
    print(f"layout: {path}")
    return 0


def _view(args) -> int:
    from .view import write_view

    if _unfinished("view", args.folder):
        return 2
    try:
        path = write_view(args.folder, args.out)
    except (ValueError, FileNotFoundError) as e:
        print(f"darkfab view: {e}", file=sys.stderr)
        return 2
    print(f"view: {path}")
    return 0


def _report(args) -> int:
    from .report import write_report

    if _unfinished("report", args.folder):
        return 2
    try:
        path = write_report(args.folder, args.out)
    except ValueError as e:
        print(f"darkfab report: {e}", file=sys.stderr)
        return 2
    print(f"report: {path}")
    return 0


def _experiment(args) -> int:
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
        _print_experiment(sm)
        print(format_verdicts(sm["verification"]))
        for f in sm["failed_runs"]:
            print(f"failed: point {f['point']} replication {f['replication']}: {f['error']}",
                  file=sys.stderr)
    print(f"results: {res.out_dir}")
    if sm["partial"]:
        return 130
    return 1 if sm["runs_failed"] else 0


def _print_experiment(sm: dict) -> None:
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


def _print_table(k: dict) -> None:
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


def _compare(args) -> int:
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
    overrides = _with_horizon(args)
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


if __name__ == "__main__":
    sys.exit(main())
