"""A simulation that is opened, advanced, observed, commanded and closed: the step API.

:class:`Simulation` is what :func:`~darkfab.scenarios.runner.run_scenario` runs (open, advance
to the horizon, close), opened by hand: for notebooks, learning agents and software in the
loop (:mod:`darkfab.scenarios.serve`). Stepping in any pattern gives the same event log as
``run_scenario``, byte for byte, for the same seed, replication and commands: SimPy processes
events in (time, priority, insertion order), and stopping between two events changes none of
the three for the plant's own events::

    sim = Simulation.open(load_scenario("cdc-line"), seed=1)
    sim.advance_to(3600.0)                        # every event before t = 1 h
    obs = sim.observe()                           # darkfab.control.Observation
    sim.command(PackMLCommand("cdc.press", "Hold"))   # CommandResult(accepted=True, reason='')
    sim.step()                                    # every event of the next instant
    result = sim.close()                          # summary.json, verification.json, ...

Commands sent here pass the validation of the controller's commands
(:meth:`~darkfab.scenarios.control_loop.ControlLoop.apply`) and are logged with their issuer
(``"api"`` unless told). The scenario's own controller keeps running alongside.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from darkfab.control import (CONTROLLERS, Controller, ControllerFault, ControllerSpecError,
                             Observation, controller_reference, make_controller)
from darkfab.factory.kpis import finite
from darkfab.factory.recorder import KPIS_SCHEMA, FlushPolicy, staging, write_table

from .builder import Plant, build_plant
from .observing import Observer
from .recover import STARTED_FILE, write_json
from .schema import JobShopScenario, Scenario
from .summary import kpi_rows, plant_kpis
from .verification import attach_event_scan, verify

__all__ = ["Simulation", "CommandResult", "RunResult", "darkfab_version", "run_id_for"]

END_FILES = ("summary.json", "verification.json", "kpis.parquet")
"""Written when a run ends; a crash-safe run into a folder removes those of a previous run there
(its tables' files go as each table's stream is opened)."""


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


@dataclass(frozen=True)
class CommandResult:
    """What became of a command: ``accepted``, or refused with ``reason`` (as logged in the
    ``command_rejected`` row of ``events.parquet``)."""

    accepted: bool
    reason: str = ""

    def __bool__(self) -> bool:
        return self.accepted


def run_id_for(s: Scenario | JobShopScenario, seed: int, replication: int) -> str:
    """Deterministic run id: scenario name, seed, replication and a digest of the resolved
    scenario, so identical inputs give identical outputs, byte for byte."""
    digest = hashlib.sha256(s.model_dump_json().encode()).hexdigest()[:8]
    return f"{s.scenario.name}-s{seed}-r{replication}-{digest}"


class Simulation:
    """One replication of a plant scenario, advanced by its caller (see the module docstring).

    Open it with :meth:`open`; the attributes below are read-only.

    Attributes:
        scenario: the resolved scenario (``controller.name`` names the controller that runs).
        plant: the built and started :class:`~darkfab.scenarios.builder.Plant`.
        seed, replication, run_id, out_dir: as in ``summary.json``.
        horizon_s: the end of the run, simulated seconds.
        result: the :class:`RunResult` once closed, else ``None``.
    """

    def __init__(self, s: Scenario, plant: Plant, seed: int, replication: int, run_id: str,
                 out_dir: Path, verify_run: bool, live: Any) -> None:
        self.scenario = s
        self.plant = plant
        self.seed = seed
        self.replication = replication
        self.run_id = run_id
        self.out_dir = out_dir
        self.horizon_s = s.scenario.horizon_s
        self.result: RunResult | None = None
        self._verify = verify_run
        self._scan = attach_event_scan(plant) if verify_run else None
        self._live = live
        self._flush_group: Any = None  # set by open(): the crash-safe writers' flush group
        self._wall0 = time.perf_counter()
        self._observer: Observer | None = None

    @classmethod
    def open(cls, s: Scenario, *, seed: int | None = None, replication: int = 0,
             out_dir: Path | str | None = None, batch_rows: int = 65_536,
             check_invariants: bool = False, verify_run: bool = True,
             controller: type | Controller | None = None, allow_code: bool = False,
             live: Any = None, flush: FlushPolicy | None = FlushPolicy()) -> "Simulation":
        """Build and start the plant of ``s`` at simulated time 0. The parameters are
        :func:`~darkfab.scenarios.runner.run_scenario`'s (``seed``: default the scenario's;
        ``out_dir``: default ``results/runs/<scenario>/<run-id>``; ``controller``: a class or
        instance instead of the scenario's ``controller.name``, whose ``module:Class`` form is
        imported only with ``allow_code=True``; ``live``: a
        :class:`~darkfab.scenarios.live.LiveView`; ``flush``: when the tables reach the disk,
        :class:`~darkfab.factory.recorder.FlushPolicy`, ``None``: only at the end)."""
        if isinstance(s, JobShopScenario):
            raise TypeError("a job-shop scenario runs to its last job: use run_scenario")
        s, ctl = controller_for(s, controller, allow_code)
        seed = s.scenario.seed if seed is None else seed
        run_id = run_id_for(s, seed, replication)
        out = Path(out_dir) if out_dir else Path("results/runs") / s.scenario.name / run_id
        out.mkdir(parents=True, exist_ok=True)
        with staging(flush) as group:  # the run's tables, crash-safe under ``flush``
            if group is not None:
                write_json(out / STARTED_FILE, _head(s, seed, replication, run_id))
            plant = build_plant(s, seed, replication, out, run_id, batch_rows,
                                check_invariants, ctl)
            if group is not None:  # its streams locked: a previous run's end-of-run files go,
                for name in END_FILES:  # so a kill of this one is not taken for it
                    (out / name).unlink(missing_ok=True)
        sim = cls(s, plant, seed, replication, run_id, out, verify_run, live)
        sim._flush_group = group
        if live is not None:
            live.attach(plant, {"scenario": s.scenario.name, "run_id": run_id,
                                "resolved_scenario": s.model_dump(mode="json")})
        sim._guarded(plant.start, tick=False)
        return sim

    # --- time -----------------------------------------------------------------------------
    @property
    def now(self) -> float:
        """The plant clock, simulated seconds."""
        return self.plant.model.env.now

    @property
    def done(self) -> bool:
        """Whether the clock has reached the horizon (or the simulation is closed)."""
        return self.result is not None or self.now >= self.horizon_s

    def advance_to(self, t: float, until: Callable[[], bool] | None = None) -> float:
        """Process every event before ``t`` (at most the horizon); the clock then reads ``t``.
        Nothing happens for ``t`` at or before now. With ``until``, stop early, right after
        the event after which ``until()`` is true (the clock then reads that event's time;
        e.g. a decision of a controller outside the process). Returns the clock."""
        self._check_open()
        t = min(float(t), self.horizon_s)
        env = self.plant.model.env
        if t > env.now:
            if until is None:
                self._guarded(lambda: env.run(until=t))
            else:
                def run() -> None:
                    while env.peek() < t:
                        env.step()
                        if until():
                            return
                    env.run(until=t)
                self._guarded(run)
        return env.now

    def advance(self, dt_s: float) -> float:
        """:meth:`advance_to` ``now + dt_s``."""
        return self.advance_to(self.now + dt_s)

    def step(self) -> float:
        """Process every event of the next instant that has any (before the horizon; at the
        horizon, advance to it). Returns the clock."""
        self._check_open()
        env = self.plant.model.env
        t = env.peek()
        if t >= self.horizon_s:
            return self.advance_to(self.horizon_s)

        def instant() -> None:
            while env.peek() == t:
                env.step()
        self._guarded(instant)
        return env.now

    def _guarded(self, fn, tick: bool = True) -> None:
        """Run ``fn`` (which advances the clock); on a controller fault or any other error,
        write the partial results, then re-raise (a :class:`ControllerFault` carries
        ``out_dir`` and ``summary``)."""
        try:
            fn()
        except ControllerFault as e:  # the plant was brought to a safe stop first
            e.out_dir = self.out_dir  # type: ignore[attr-defined]
            e.summary = self._write(True, str(e), True, None)  # type: ignore[attr-defined]
            self._closed(e.summary)  # type: ignore[attr-defined]
            raise
        except KeyboardInterrupt:
            raise  # the caller decides: run_scenario closes with "interrupted"
        except Exception as e:  # noqa: BLE001 - keep results readable, then re-raise
            self.close(partial=True, reason=f"error: {type(e).__name__}: {e}")
            raise
        if tick and self._live is not None:
            self._live.tick(self.now)
        if self._flush_group is not None:  # the timed flush (a wall-clock check)
            self._flush_group.tick()

    # --- observe and command --------------------------------------------------------------
    def observe(self, *, exact: bool = True) -> Observation:
        """The plant now as a controller's :class:`~darkfab.control.Observation`.
        ``exact=True`` (default) reads the truth and draws no random number, so observing
        never changes the run; ``exact=False`` reads through the scenario's sensor model
        (noise and dropout draws from the controller's sensor streams change its later
        readings)."""
        loop = self._loop()
        if not exact:
            return loop.observe()
        if self._observer is None:
            self._observer = Observer(loop, None, loop.observer.stations, loop.observer.lots)
        return self._observer.observe()

    def command(self, cmd: Any, issuer: str = "api") -> CommandResult:
        """Validate ``cmd`` (a :data:`~darkfab.control.PlantCommand`) and apply it now if
        legal, exactly as a controller's command; logged with ``issuer``."""
        self._check_open()
        loop = self._loop()
        if loop.apply(cmd, issuer=issuer):
            return CommandResult(True)
        return CommandResult(False, loop.last_rejection)

    def dispatch(self, cmds: list) -> None:
        """Hand ``cmds`` to the plant as the answer of the controller's decision of this
        instant, as if ``decide`` had returned them (decision latency and communication faults
        apply; issuer: the controller). For a controller outside the process
        (:mod:`~darkfab.scenarios.remote_control`)."""
        self._check_open()
        loop = self._loop()
        self._guarded(lambda: loop.dispatch(list(cmds), self.now), tick=False)

    def _loop(self):
        loop = self.plant.control
        assert loop is not None, "the plant is started by open()"
        return loop

    # --- close ----------------------------------------------------------------------------
    def close(self, *, partial: bool | None = None, reason: str = "") -> RunResult:
        """End the run and write its results as ``run_scenario`` does (``kpis.parquet``,
        ``summary.json``, ``verification.json``, and every table closed). Closed before the
        horizon, the results are partial (``"partial": true``, ``partial_reason``). Closing
        twice returns the first result."""
        if self.result is not None:
            return self.result
        if partial is None:
            partial = self.now < self.horizon_s
            if partial and not reason:
                reason = f"closed at {self.now:g} s, before the horizon"
        if self._live is not None and not reason.startswith("error"):
            self._live.finish(self.now)
        summary = self._write(partial, reason, self._verify, self._scan)
        return self._closed(summary)

    def _closed(self, summary: dict[str, Any]) -> RunResult:
        self.result = RunResult(self.out_dir, summary, self.plant,
                                getattr(self.plant, "verification", None))
        return self.result

    def _check_open(self) -> None:
        if self.result is not None:
            raise RuntimeError(f"simulation {self.run_id} is closed")

    def __enter__(self) -> "Simulation":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.result is None:
            self.close(partial=True if exc_type is not None else None,
                       reason=f"error: {exc_type.__name__}: {exc}" if exc_type else "")

    def _write(self, partial: bool, reason: str, verify_run: bool, scan) -> dict[str, Any]:
        """Close the tables and write ``kpis.parquet``, ``summary.json`` and (``verify_run``)
        ``verification.json``; returns the summary."""
        plant, s, out = self.plant, self.scenario, self.out_dir
        run_id, replication = self.run_id, self.replication
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
            "seed": self.seed,
            "replication": replication,
            "horizon_s": s.scenario.horizon_s,
            "simulated_s": end,
            "warmup_s": s.scenario.warmup_s,
            "partial": partial,
            "events": len(plant.model.log),
            "wall_s": time.perf_counter() - self._wall0,
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
        (out / "verification.json").write_text(json.dumps(json_safe(v), indent=2) + "\n")
        return summary


def _head(s: Scenario, seed: int, replication: int, run_id: str) -> dict[str, Any]:
    """What a run's summary says before it has run (the content of ``started.json``)."""
    return {"scenario": s.scenario.name, "run_id": run_id, "seed": seed,
            "replication": replication, "horizon_s": s.scenario.horizon_s,
            "warmup_s": s.scenario.warmup_s, "darkfab_version": darkfab_version(),
            "resolved_scenario": s.model_dump(mode="json")}


def controller_for(s: Scenario, controller: type | Controller | None,
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


def json_safe(x: Any) -> Any:
    """``x`` with non-finite floats as ``None`` (JSON has no NaN)."""
    if isinstance(x, dict):
        return {k: json_safe(v) for k, v in x.items()}
    if isinstance(x, list):
        return [json_safe(v) for v in x]
    return finite(x)
