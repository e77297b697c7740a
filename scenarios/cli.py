"""``darkfab``: run, check and compare scenarios of lights-out plants from the command line.

Exit codes: 0 success; 2 invalid scenario or usage (one line per problem, no traceback);
1 the run failed (results written so far stay readable); 3 controller fault (the controller
raised: the plant was stopped safely, partial results); 4 ``--strict`` and the verification
report has a violation; 130 interrupted (partial results).

This module holds the argument parser and :func:`main`; each verb's body is a function
``cmd_<verb>`` in a module by concept (:data:`VERBS`): ``cli_run`` (run, check, list),
``cli_experiment`` (experiment, compare), ``cli_report`` (report, view, plot, funnel),
``cli_serve`` (serve, supervise) and ``cli_tools`` (calibrate, verify-records, recover, schema,
jobshop-bench); ``cli_common`` has what they share.

Start-up: this module imports only the standard library at the top; ``main`` imports the verb's
module when the verb runs, and each verb imports what it needs (the loader for ``check``, the
simulator for ``run``, matplotlib for plots), so that ``darkfab --help`` and ``darkfab check``
start fast (``tests/benchmarks/bench_startup.py``).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable
from pathlib import Path

from .cli_common import DEFAULT_SCENARIO

__all__ = ["main"]

ENGINES = ("serial", "processes", "dask")  # darkfab.scenarios.engines.ENGINES (test_cli checks)
VERBS = {"run": "cli_run", "check": "cli_run", "list": "cli_run",
         "experiment": "cli_experiment", "compare": "cli_experiment",
         "report": "cli_report", "view": "cli_report", "plot": "cli_report",
         "funnel": "cli_report", "serve": "cli_serve", "supervise": "cli_serve",
         "calibrate": "cli_tools", "verify-records": "cli_tools", "recover": "cli_tools",
         "schema": "cli_tools", "jobshop-bench": "cli_tools"}
"""Verb -> the module (in this package) of its function ``cmd_<verb>`` (``-`` as ``_``),
imported only when the verb runs."""


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


def verb_function(verb: str) -> Callable[[argparse.Namespace], int]:
    """The function that runs ``verb`` (its module imported now)."""
    module = importlib.import_module(f".{VERBS[verb]}", __package__)
    return getattr(module, "cmd_" + verb.replace("-", "_"))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from .loader import ScenarioError

    run = verb_function(args.cmd)
    try:
        return run(args)
    except ScenarioError as e:
        for problem in e.problems:
            print(problem.format(e.file), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
