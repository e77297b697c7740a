"""Run one replication of a scenario: build, simulate, write Parquet tables and ``summary.json``.

An interrupted run (Ctrl-C, SIGTERM) or a failing component still closes every Parquet file and
writes a ``summary.json`` marked ``"partial": true`` with the KPIs up to the interruption.
"""

from __future__ import annotations

import hashlib
import json
import math
import signal
import sys
import time
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from darkfab.factory.kpis import finite
from darkfab.factory.recorder import KPIS_SCHEMA, write_table

from .builder import Plant, build_plant
from .schema import Scenario
from .summary import kpi_rows, plant_kpis

__all__ = ["RunResult", "run_scenario", "darkfab_version", "run_id_for"]


def darkfab_version() -> str:
    try:
        return version("darkfab")
    except PackageNotFoundError:  # running from a source tree
        return "0+unknown"


@dataclass
class RunResult:
    out_dir: Path
    summary: dict[str, Any]
    plant: Plant


def run_id_for(s: Scenario, seed: int, replication: int) -> str:
    """Deterministic run id: scenario name, seed, replication and a digest of the resolved
    scenario, so identical inputs give identical outputs, byte for byte."""
    digest = hashlib.sha256(s.model_dump_json().encode()).hexdigest()[:8]
    return f"{s.scenario.name}-s{seed}-r{replication}-{digest}"


class _Stop(Exception):
    pass


def run_scenario(s: Scenario, *, seed: int | None = None, replication: int = 0,
                 out_dir: Path | str | None = None, progress: bool = False,
                 batch_rows: int = 65_536) -> RunResult:
    """Simulate ``s`` for ``s.scenario.horizon_s`` seconds and write its results."""
    seed = s.scenario.seed if seed is None else seed
    run_id = run_id_for(s, seed, replication)
    out = Path(out_dir) if out_dir else Path("results/runs") / s.scenario.name / run_id
    out.mkdir(parents=True, exist_ok=True)
    horizon = s.scenario.horizon_s
    plant = build_plant(s, seed, replication, out, run_id, batch_rows)
    env = plant.model.env
    wall0 = time.perf_counter()
    partial, reason = False, ""

    def on_term(signum, frame):  # SIGTERM → same clean path as Ctrl-C
        raise _Stop()

    old = signal.signal(signal.SIGTERM, on_term) if _main_thread() else None
    try:
        plant.start()
        if progress:
            _run_with_progress(env, horizon)
        else:
            env.run(until=horizon)
    except (KeyboardInterrupt, _Stop):
        partial, reason = True, "interrupted"
    except Exception as e:  # noqa: BLE001 - keep results readable, then re-raise
        partial, reason = True, f"error: {type(e).__name__}: {e}"
        _finish(plant, s, seed, replication, run_id, out, wall0, partial, reason)
        raise
    finally:
        if old is not None:
            signal.signal(signal.SIGTERM, old)
    summary = _finish(plant, s, seed, replication, run_id, out, wall0, partial, reason)
    return RunResult(out, summary, plant)


def _main_thread() -> bool:
    import threading
    return threading.current_thread() is threading.main_thread()


def _finish(plant: Plant, s: Scenario, seed: int, replication: int, run_id: str, out: Path,
            wall0: float, partial: bool, reason: str) -> dict[str, Any]:
    env = plant.model.env
    end = min(env.now, s.scenario.horizon_s) if partial else s.scenario.horizon_s
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
    (out / "summary.json").write_text(json.dumps(_json_safe(summary), indent=2) + "\n")
    return summary


def _json_safe(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_json_safe(v) for v in x]
    return finite(x)


def _run_with_progress(env, horizon: float) -> None:
    """Run in 200 slices of simulated time and draw a one-line bar on stderr."""
    width = 30
    steps = 200
    for i in range(1, steps + 1):
        env.run(until=horizon * i / steps)
        done = int(width * i / steps)
        days = env.now / 86400.0
        sys.stderr.write(f"\r  [{'#' * done}{'.' * (width - done)}] {100 * i / steps:5.1f}%"
                         f"  {days:7.2f} / {horizon / 86400.0:.2f} simulated days")
        sys.stderr.flush()
    sys.stderr.write("\n")


def fmt(x: float) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return f"{x:,.4g}" if isinstance(x, float) else str(x)
