"""Sensor data for calibration: a continuous line's NIR readings and its feeders' load-cell
readings, recorded to Parquet, and the tracer experiments that excite the line.

* NIR readings (``nir_readings.parquet``): every reading the control strategy takes, with its
  sample and availability times and the line's flow time θ at the sample (the RTD's own time
  axis, :mod:`darkfab.factory.flow_clock`). One columnar append per scan: cheap.
* Load cells (``load_cells.parquet``): per feeder, hopper mass, set-point, screw speed and
  measured feed rate, at every set-point change, refill start and refill end (a few rows an
  hour), and every ``load_cells_s`` seconds when asked for (a process of its own that reads the
  feeders' state at its times without advancing them: the run's event log is the same with or
  without it).
* Tracer (:class:`TracerProgramme`): scripted steps and pulses of one feeder's set-point
  (% of its nominal set-point), applied as a controller's ``SetPoint`` would be
  (:meth:`ContinuousLine.set_point`), each logged as a ``tracer`` event.

The load cells report what the control system reads: with the plant apart from its model
(``mismatch`` or ``instruments`` set, docs/twin.md) the instruments' hopper mass (with its
reading noise) and flow (filtered, or the volumetric estimate during a refill,
:mod:`darkfab.factory.instruments`); otherwise the true hopper mass and the rate of the present
feed-noise cell (what an ideal load cell and its rate filter report).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from darkfab.factory.recorder import TableWriter

if TYPE_CHECKING:
    from .line import ContinuousLine

__all__ = ["CalibrationLog", "TracerProgramme", "TracerStep"]


class CalibrationLog:
    """Records a line's sensor data for calibration (module docstring).

    Args:
        line: the line.
        nir_table: the ``nir_readings.parquet`` writer (None: no NIR rows).
        cells_table: the ``load_cells.parquet`` writer (None: no load-cell rows).
        sample_s: period of the load-cell samples (None: at feeder events only).
    """

    def __init__(self, line: ContinuousLine, nir_table: TableWriter | None,
                 cells_table: TableWriter | None, sample_s: float | None = None) -> None:
        self.line = line
        self.nir_table = nir_table
        self.cells_table = cells_table
        self.sample_s = sample_s
        if cells_table is not None and sample_s is not None:
            line.env.process(self._sampler())

    def nir(self, sample_s: np.ndarray, available_s: np.ndarray, value: np.ndarray) -> None:
        """Record a batch of NIR readings (NaN values: lost readings, written as null)."""
        if self.nir_table is None or sample_s.size == 0:
            return
        theta = self.line.model_flow.thetas(sample_s)
        vals = [None if math.isnan(v) else v for v in value.tolist()]
        self.nir_table.extend([self.line.name] * sample_s.size, sample_s.tolist(),
                              available_s.tolist(), theta.tolist(), vals)

    def feeders(self, now: float, event: str, only: str | None = None) -> None:
        """Record the load cells at ``now`` (an event: ``setpoint``, ``refill``,
        ``refill_done``; or ``sample``): every feeder's, or feeder ``only``'s (its own refill),
        with its commanded set-point (the line's: a stopped line's feeders take it at the
        restart)."""
        table = self.cells_table
        if table is None:
            return
        line = self.line
        theta = line.model_flow.theta(now)
        soft = line.soft
        for k, st in enumerate(line.stations):
            if only is not None and st.name != only:
                continue
            mass, mode, rate, omega = st.feeder.state_at(now)
            if soft is not None:  # the instruments' readings, not the truth
                mass, rate = soft.reading(k, now, mass, rate)
            table.append(line.name, st.name, now, theta, event, mode, mass, st.setpoint_kg_s,
                         omega, rate)

    def _sampler(self):
        env = self.line.env
        while True:
            yield env.timeout(self.sample_s)
            self.feeders(env.now, "sample")


@dataclass(frozen=True)
class TracerStep:
    """A scripted change of a feeder's set-point: from ``time_s`` (s) at (100 + ``size_pct``) %
    of its nominal set-point; a pulse returns to 100 % ``duration_s`` later."""

    time_s: float
    feeder: str
    kind: str  # "step" or "pulse"
    size_pct: float
    duration_s: float | None = None


class TracerProgramme:
    """Applies :class:`TracerStep` s to a line at their times (a SimPy process each)."""

    def __init__(self, line: ContinuousLine, steps: Sequence[TracerStep]) -> None:
        self.line = line
        self.nominal_kg_s = {st.name: st.setpoint_kg_s for st in line.stations}
        for s in steps:
            line.env.process(self._run(s))

    def _run(self, s: TracerStep):
        env = self.line.env
        yield env.timeout(max(0.0, s.time_s - env.now))
        self._set(s, 1.0 + s.size_pct / 100.0, f"{s.kind} {s.size_pct:+g} %")
        if s.kind == "pulse":
            yield env.timeout(s.duration_s)
            self._set(s, 1.0, "pulse end")

    def _set(self, s: TracerStep, factor: float, what: str) -> None:
        line = self.line
        kg_h = 3600.0 * self.nominal_kg_s[s.feeder] * factor
        why = line.set_point(f"{line.name}.{s.feeder}", "setpoint_kg_h", kg_h)
        detail = f"{s.feeder} {what}: {kg_h:.4g} kg/h"
        line.model.log.record(line.env.now, "tracer", line.name, -1, "", line.node,
                              detail if why is None else f"{detail} refused: {why}")
