"""``darkfab serve`` and ``supervise``: a plant served over OPC UA, and a controller that
supervises a served plant as a client.

Part of the ``darkfab`` command line (:mod:`darkfab.scenarios.cli` parses the arguments and
imports this module when one of its verbs runs). Exit codes: see there.
"""

from __future__ import annotations

import sys

from .cli_common import DEFAULT_SCENARIO, is_code, with_horizon

__all__ = ["cmd_serve", "cmd_supervise"]


def cmd_serve(args) -> int:
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
    overrides = with_horizon(args)
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
    if is_code(s.controller.name) and not allow_code:
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


def cmd_supervise(args) -> int:
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
