"""Run one replication of a scenario: build, simulate, write Parquet tables and ``summary.json``.

An interrupted run (Ctrl-C, SIGTERM) stops cleanly at the next slice of simulated time; it, like a
failing component, still closes every Parquet file and writes a ``summary.json`` marked
``"partial": true`` with the KPIs up to the stop. A controller fault (the controller raised) stops
the plant safely and ends the run the same way, then raises
:class:`~darkfab.control.ControllerFault` with ``out_dir`` and ``summary`` attached.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
from pathlib import Path

from darkfab.control import Controller
from darkfab.factory.recorder import FlushPolicy, staging

from .schema import JobShopScenario, Scenario
from .simulation import (RunResult, Simulation, controller_for as _controller_for,  # noqa: F401
                         darkfab_version, json_safe as _json_safe, run_id_for)

__all__ = ["RunResult", "run_scenario", "darkfab_version", "run_id_for", "FlushPolicy"]


def run_scenario(s: Scenario | JobShopScenario, *, seed: int | None = None, replication: int = 0,
                 out_dir: Path | str | None = None, progress: bool = False,
                 batch_rows: int = 65_536, check_invariants: bool = False,
                 verify_run: bool = True, controller: type | Controller | None = None,
                 allow_code: bool = False, live=None,
                 flush: FlushPolicy | None = FlushPolicy()) -> RunResult:
    """Simulate ``s`` for ``s.scenario.horizon_s`` seconds and write its results (a job-shop
    scenario runs until its last job is done: :func:`darkfab.scenarios.jobshop.run_jobshop`).
    ``verify_run=False`` skips verification.json (the checks see the event and state logs'
    batches as they are written: 1–2 % of the CPU time of an event-dense run such as
    ``mm1``).

    The controller: ``controller`` (a class, built with the scenario's ``controller.params``
    if the scenario names that class, else without parameters; or an instance), else the
    scenario's ``controller.name``. A ``module:Class`` name there is imported only with
    ``allow_code=True`` (else :class:`~darkfab.control.ControllerCodeNotAllowed`, before
    anything is written): a scenario file is data and does not run code by itself.
    ``live``: a :class:`~darkfab.scenarios.live.LiveView` that publishes the run between
    slices of simulated time.

    ``flush``: when the tables reach the disk (:class:`~darkfab.factory.recorder.FlushPolicy`:
    every 5 s of wall time, or 65,536 rows of a table); after a SIGKILL everything up to the
    last flush is recovered by ``darkfab recover`` (:mod:`darkfab.scenarios.recover`).
    ``None``: tables written straight to Parquet, unreadable if the process is killed.

    It is :meth:`Simulation.open <darkfab.scenarios.simulation.Simulation.open>`, advance to
    the horizon in :data:`SLICES` slices, and :meth:`~darkfab.scenarios.simulation.Simulation.close`."""
    if isinstance(s, JobShopScenario):
        from .jobshop import run_jobshop
        with staging(flush):
            return run_jobshop(s, seed=seed, replication=replication, out_dir=out_dir,
                               batch_rows=batch_rows)
    sim = Simulation.open(s, seed=seed, replication=replication, out_dir=out_dir,
                          batch_rows=batch_rows, check_invariants=check_invariants,
                          verify_run=verify_run, controller=controller, allow_code=allow_code,
                          live=live, flush=flush)
    partial, reason = False, ""
    stop = _StopFlag()
    try:
        with stop.installed():
            if not _simulate(sim, progress, stop):
                partial, reason = True, f"interrupted ({stop.signal_name})"
    except KeyboardInterrupt:
        partial, reason = True, "interrupted"
    return sim.close(partial=partial, reason=reason)


class _StopFlag:
    """SIGINT/SIGTERM set a flag that the run loop checks between slices of simulated time, so
    an interruption never lands inside the event loop or a Parquet write."""

    def __init__(self) -> None:
        self.requested = False
        self.signal_name = ""

    def _handler(self, signum, frame) -> None:
        self.requested = True
        self.signal_name = signal.Signals(signum).name

    @contextlib.contextmanager
    def installed(self):
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        old = {sig: signal.signal(sig, self._handler) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for sig, h in old.items():
                signal.signal(sig, h)


SLICES = 1000
"""The horizon is simulated in this many slices; between them the run checks for a stop
request and redraws the progress bar (the cost is one SimPy event per slice)."""


def _simulate(sim: Simulation, progress: bool, stop: _StopFlag) -> bool:
    """Run to the horizon; ``False`` if a stop was requested first (the live view, if any,
    publishes after each slice). ``progress``: a live bar on stderr when it is a terminal
    (:mod:`darkfab.scenarios.terminal`)."""
    from .terminal import sim_progress

    horizon = sim.horizon_s
    with sim_progress(horizon, progress) as bar:
        for i in range(1, SLICES + 1):
            sim.advance_to(horizon * i / SLICES)
            if stop.requested:
                return False
            if i % 5 == 0 or i == SLICES:
                bar.update(sim.now)
    return True


def fmt(x: float) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return f"{x:,.4g}" if isinstance(x, float) else str(x)
