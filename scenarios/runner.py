"""Run one replication of a scenario: build, simulate, write Parquet tables and ``summary.json``.

An interrupted run (Ctrl-C, SIGTERM) stops cleanly at the next slice of simulated time; it, like a
failing component, still closes every Parquet file and writes a ``summary.json`` marked
``"partial": true`` with the KPIs up to the stop. A controller fault (the controller raised) stops
the plant safely and ends the run the same way, then raises
:class:`~darkfab.control.ControllerFault` with ``out_dir`` and ``summary`` attached.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import signal
import sys
import threading
import time
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from darkfab.control import (CONTROLLERS, Controller, ControllerFault, ControllerSpecError,
                             controller_reference, make_controller)
from darkfab.factory.kpis import finite
from darkfab.factory.recorder import KPIS_SCHEMA, FlushPolicy, staging, write_table

from .builder import Plant, build_plant
from .recover import STARTED_FILE, write_json
from .schema import JobShopScenario, Scenario
from .summary import kpi_rows, plant_kpis
from .verification import attach_event_scan, verify

__all__ = ["RunResult", "run_scenario", "darkfab_version", "run_id_for", "FlushPolicy"]


def darkfab_version() -> str:
    try:
        return version("darkfab")
    except PackageNotFoundError:  # running from a source tree
        return "0+unknown"


@dataclass
class RunResult:
    out_dir: Path
    summary: dict[str, Any]
    plant: Plant  # the simulated JobShopModel for a job-shop scenario
    verification: dict[str, Any] | None = None  # verification.json (plants only)


def run_id_for(s: Scenario | JobShopScenario, seed: int, replication: int) -> str:
    """Deterministic run id: scenario name, seed, replication and a digest of the resolved
    scenario, so identical inputs give identical outputs, byte for byte."""
    digest = hashlib.sha256(s.model_dump_json().encode()).hexdigest()[:8]
    return f"{s.scenario.name}-s{seed}-r{replication}-{digest}"


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
    ``None``: tables written straight to Parquet, unreadable if the process is killed."""
    if isinstance(s, JobShopScenario):
        from .jobshop import run_jobshop
        with staging(flush):
            return run_jobshop(s, seed=seed, replication=replication, out_dir=out_dir,
                               batch_rows=batch_rows)
    s, ctl = _controller_for(s, controller, allow_code)
    seed = s.scenario.seed if seed is None else seed
    run_id = run_id_for(s, seed, replication)
    out = Path(out_dir) if out_dir else Path("results/runs") / s.scenario.name / run_id
    out.mkdir(parents=True, exist_ok=True)
    horizon = s.scenario.horizon_s
    with staging(flush) as group:
        if group is not None:
            write_json(out / STARTED_FILE, _head(s, seed, replication, run_id))
        plant = build_plant(s, seed, replication, out, run_id, batch_rows, check_invariants,
                            ctl)
    scan = attach_event_scan(plant) if verify_run else None
    if live is not None:
        live.attach(plant, {"scenario": s.scenario.name, "run_id": run_id,
                            "resolved_scenario": s.model_dump(mode="json")})
    env = plant.model.env
    wall0 = time.perf_counter()
    partial, reason = False, ""
    stop = _StopFlag()
    try:
        with stop.installed():
            plant.start()
            if not _simulate(env, horizon, progress, stop, _on_slice(live, group)):
                partial, reason = True, f"interrupted ({stop.signal_name})"
    except KeyboardInterrupt:
        partial, reason = True, "interrupted"
    except ControllerFault as e:  # the plant was brought to a safe stop first
        e.out_dir = out  # type: ignore[attr-defined]
        e.summary = _finish(plant, s, seed, replication, run_id, out, wall0, True,  # type: ignore[attr-defined]
                            str(e))
        raise
    except Exception as e:  # noqa: BLE001 - keep results readable, then re-raise
        partial, reason = True, f"error: {type(e).__name__}: {e}"
        _finish(plant, s, seed, replication, run_id, out, wall0, partial, reason,
                verify_run, scan)
        raise
    if live is not None:
        live.finish(env.now)
    summary = _finish(plant, s, seed, replication, run_id, out, wall0, partial, reason,
                verify_run, scan)
    return RunResult(out, summary, plant, getattr(plant, "verification", None))


def _controller_for(s: Scenario, controller: type | Controller | None,
                    allow_code: bool) -> tuple[Scenario, Controller]:
    """The controller instance of a run, and the scenario with ``controller.name`` naming it
    (so that the run id and ``resolved_scenario`` tell which controller ran)."""
    spec = s.controller
    if controller is None:
        return s, _built(spec.name, spec.params, allow_code)
    cls = controller if isinstance(controller, type) else type(controller)
    ref = next((n for n, c in CONTROLLERS.items() if c is cls), controller_reference(cls))
    same = ref == spec.name
    if isinstance(controller, type):
        ctl = _built(cls, spec.params if same else {}, False)
    else:
        if not isinstance(controller, Controller):
            raise TypeError(f"{controller!r} is not a Controller (it needs reset(info) and "
                            "decide(events, observation) methods)")
        ctl = controller
        same = same and not spec.params
    if same:
        return s, ctl
    return s.model_copy(update={"controller": spec.model_copy(update={"name": ref,
                                                                      "params": {}})}), ctl


def _built(name: str | type, params: dict, allow_code: bool) -> Controller:
    """``make_controller``, with a constructor that raises reported as a
    :class:`~darkfab.control.ControllerSpecError` (a scenario error, not a failed run)."""
    try:
        return make_controller(name, params, allow_code=allow_code)
    except ControllerSpecError:
        raise
    except Exception as e:  # noqa: BLE001 - the user's constructor
        raise ControllerSpecError(f"controller {name!r} failed to construct: "
                                  f"{type(e).__name__}: {e}") from None


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


def _simulate(env, horizon: float, progress: bool, stop: _StopFlag, on_slice=None) -> bool:
    """Run to the horizon; ``False`` if a stop was requested first. ``on_slice(now)`` is
    called after each slice (the live view's publisher)."""
    width = 30
    for i in range(1, SLICES + 1):
        env.run(until=horizon * i / SLICES)
        if on_slice is not None:
            on_slice(env.now)
        if stop.requested:
            if progress:
                sys.stderr.write("\n")
            return False
        if progress and (i % 5 == 0 or i == SLICES):
            done = int(width * i / SLICES)
            sys.stderr.write(f"\r  [{'#' * done}{'.' * (width - done)}] {100 * i / SLICES:5.1f}%"
                             f"  {env.now / 86400.0:8.2f} / {horizon / 86400.0:.2f} simulated days")
            sys.stderr.flush()
    if progress:
        sys.stderr.write("\n")
    return True


def _finish(plant: Plant, s: Scenario, seed: int, replication: int, run_id: str, out: Path,
            wall0: float, partial: bool, reason: str, verify_run: bool = True,
            scan=None) -> dict[str, Any]:
    env = plant.model.env
    end = min(env.now, s.scenario.horizon_s) if partial else s.scenario.horizon_s
    if plant.fleet is not None:
        plant.fleet.finish(end)
    plant.model.finish(end)
    k = plant_kpis(plant, end)
    write_table(out / "kpis.parquet", KPIS_SCHEMA, kpi_rows(k), run_id, replication)
    summary: dict[str, Any] = {
        "scenario": s.scenario.name,
        "run_id": run_id,
        "seed": seed,
        "replication": replication,
        "horizon_s": s.scenario.horizon_s,
        "simulated_s": end,
        "warmup_s": s.scenario.warmup_s,
        "partial": partial,
        "events": len(plant.model.log),
        "wall_s": time.perf_counter() - wall0,
        **k,
        "darkfab_version": darkfab_version(),
        "resolved_scenario": s.model_dump(mode="json"),
    }
    if reason:
        summary["partial_reason"] = reason
    write_json(out / "summary.json", summary)
    (out / STARTED_FILE).unlink(missing_ok=True)
    if not verify_run:
        return summary
    faults = plant.faults.finish(end) if plant.faults is not None else []
    v = verify(plant, summary, out, end, faults, scan)
    v = {"run_id": run_id, "simulated_s": end, "partial": partial, **v}
    plant.verification = v  # type: ignore[attr-defined]
    (out / "verification.json").write_text(json.dumps(_json_safe(v), indent=2) + "\n")
    return summary


def _head(s: Scenario, seed: int, replication: int, run_id: str) -> dict[str, Any]:
    """What a run's summary says before it has run (also the content of ``started.json``)."""
    return {"scenario": s.scenario.name, "run_id": run_id, "seed": seed,
            "replication": replication, "horizon_s": s.scenario.horizon_s,
            "warmup_s": s.scenario.warmup_s, "darkfab_version": darkfab_version(),
            "resolved_scenario": s.model_dump(mode="json")}


def _on_slice(live, group):
    """Called between slices of simulated time: the live view's publisher, the timed flush."""
    if group is None:
        return live.tick if live is not None else None

    def on_slice(now: float) -> None:
        if live is not None:
            live.tick(now)
        group.tick()
    return on_slice


def _json_safe(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_json_safe(v) for v in x]
    return finite(x)


def fmt(x: float) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return f"{x:,.4g}" if isinstance(x, float) else str(x)
