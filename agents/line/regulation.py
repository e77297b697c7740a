"""Level-1 regulation of a continuous line's press and the in-process control (IPC) of its
tablets: tablet weight, the weight loop, and weight and content uniformity per unit and batch.

* **Tablet weight** W = ρ_fill·A·h (:mod:`darkfab.factory.weight_control`). The bulk density the
  die fills at can change (scripted disturbances, ``[[continuous_lines.X.disturbances]]``).
* **Weight loop** (``[continuous_lines.X.loops] weight_control``): a PI from the main
  compression force to the fill depth, sampled every ``weight_period_s`` while it is working
  (after a disturbance or a new target, until the force is back inside the deadband): a SimPy
  process that rests when settled, so a year of steady production costs nothing. The force is
  the mean of the tablets of one sample period: its noise is the tablet weight RSD / √n. The
  gauge reads it as an instrument (:meth:`Regulation.set_force_gauge`, docs/twin.md): with a
  calibration bias b, F_read = (1 + b)·F + F*·σ_g/√n·z, σ_g the relative noise of one
  tablet's reading; the loop then settles where (1 + b)·F(W) = F*, W/W* ≈ 1 − b/ε with
  ε = dlnF/dlnW the gauge's elasticity at the nominal weight.
* **Press-hopper level → line rate** (``[continuous_lines.X.press_hopper]``): a PI from the
  hopper level to the line rate, switchable, with low/high interlocks (:mod:`.hopper`).
* **API ratio trim from NIR** (level 2, ``api_trim``, off by default): at each supervisory cycle
  (``control_interval_s``) with new NIR readings, an integral trim of the API feeder's
  set-point, trim += ``api_trim_gain`` × (1 − mean reading), bounded by ``api_trim_max_pct``;
  not when the mean is within two standard errors of label claim (the readings' own noise),
  and changes under 0.01 % are not applied. It corrects what the NIR sees (a low-potency lot); it
  also follows a biased or drifting NIR.
* **Tablets vary**: each tablet's weight is W·(1 + RSD·z), z standard normal
  (``press.weight_rsd_pct``). A unit's IPC sample is ``ipc_tablets`` tablets drawn over its
  production interval (stream ``continuous_lines.X.press.ipc``); a tablet's API content is its
  weight relative to the target times the unit's blend content (% of label claim). Mean, RSD,
  min and max per unit go to ``line_units.parquet``, per batch to the batch records.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np

from darkfab.factory.weight_control import ForceGauge, WeightLoop

__all__ = ["Regulation", "Uniformity"]


class Uniformity:
    """Running mean, RSD, min and max of a sample (tablet weights or contents)."""

    __slots__ = ("n", "k", "s", "s2", "lo", "hi")

    def __init__(self) -> None:
        self.n, self.s, self.s2, self.lo, self.hi = 0, 0.0, 0.0, math.inf, -math.inf
        self.k = math.nan  # shift (the first value): sums of x − k, no cancellation

    def add(self, x: Sequence[float]) -> None:
        """Add the values ``x`` (a short list: plain floats beat numpy calls at IPC sizes)."""
        if not len(x):
            return
        if self.n == 0:
            self.k = float(x[0])
        k = self.k
        d = [v - k for v in x]
        self.n += len(d)
        self.s += sum(d)
        self.s2 += sum(v * v for v in d)
        self.lo = min(self.lo, min(x))
        self.hi = max(self.hi, max(x))

    def summary(self) -> dict[str, float]:
        if self.n == 0:
            return {"n": 0, "mean": math.nan, "rsd_pct": math.nan, "min": math.nan,
                    "max": math.nan}
        md = self.s / self.n
        var = max(self.s2 - self.n * md * md, 0.0) / (self.n - 1) if self.n > 1 else math.nan
        m = self.k + md
        return {"n": self.n, "mean": m, "rsd_pct": 100.0 * math.sqrt(var) / m,
                "min": self.lo, "max": self.hi}


class Regulation:
    """Mixin of :class:`~darkfab.agents.line.ContinuousLine`: tablet weight, weight loop, IPC."""

    _gauge_rng: np.random.Generator | None = None  # the force gauge's noise (set_force_gauge)
    _gauge_noise = 0.0
    _gauge_bias = 0.0

    def set_regulation(self, gauge: ForceGauge, fill_depth_m: float,
                       fill_density_kg_m3: float, weight_rsd: float = 0.0, ipc_tablets: int = 0,
                       ipc_rng: np.random.Generator | None = None,
                       force_rng: np.random.Generator | None = None,
                       loop: dict[str, float] | None = None,
                       disturbances: list[tuple[float, float]] = (), unit_table: Any = None
                       ) -> None:
        """Set up the press's weight regulation (before the run). Args: ``gauge`` the force
        gauge at the nominal weight; ``weight_rsd`` tablet-to-tablet weight RSD (fraction);
        ``ipc_tablets`` tablets sampled per unit from ``ipc_rng``; ``force_rng`` the force
        gauge's noise; ``loop`` the weight loop's ``kp``, ``ti_s``, ``period_s``, ``deadband``
        (None: off); ``disturbances`` (time s, bulk density factor); ``unit_table`` the
        ``line_units.parquet`` writer (None: no IPC rows)."""
        self.gauge = gauge
        self.target_weight_kg = gauge.weight_kg
        self.fill_depth_m = fill_depth_m
        self._nominal_density = fill_density_kg_m3
        self.bulk_density_kg_m3 = fill_density_kg_m3
        self.weight_rsd = weight_rsd
        self.ipc_tablets = ipc_tablets
        self._ipc_rng = ipc_rng
        self._force_rng = force_rng
        self.weight_loop = None if loop is None else WeightLoop(gauge, fill_depth_m, **loop)
        self._loop_busy = False
        self.loop_samples = 0
        self.unit_table = unit_table
        self._weights: deque[tuple[float, float]] = deque([(self.env.now, self.weight_kg)])
        self.batch_weight, self.batch_content = Uniformity(), Uniformity()
        self._trim: tuple[float, float] | None = None
        self.api_trim = 0.0  # relative trim of the API feeder's set-point
        self._nir_sum, self._nir_sum2, self._nir_n = 0.0, 0.0, 0
        for t, f in disturbances:
            self.env.process(self._disturb(t, f))

    def set_force_gauge(self, noise: float, bias: float, rng: np.random.Generator) -> None:
        """The force gauge as an instrument (module docstring): ``noise`` relative sd of one
        tablet's force reading, ``bias`` relative calibration bias, ``rng`` its noise stream."""
        self._gauge_noise, self._gauge_bias, self._gauge_rng = noise, bias, rng

    def set_api_trim(self, gain: float, max_fraction: float) -> None:
        """Turn on the NIR ratio trim of the API feeder (module docstring)."""
        self._trim = (gain, max_fraction)

    def _nir_seen(self, values: np.ndarray) -> None:
        """Readable NIR values of a scan (content, fraction of label claim), for the trim."""
        if self._trim is not None and values.size:
            self._nir_sum += float(values.sum())
            self._nir_sum2 += float((values * values).sum())
            self._nir_n += values.size

    def _api_trim_step(self, now: float) -> None:
        """One cycle of the ratio trim (module docstring)."""
        if self._trim is None or self._nir_n == 0:
            return
        gain, top = self._trim
        n = self._nir_n
        c = self._nir_sum / n
        var = max(self._nir_sum2 - n * c * c, 0.0) / (n - 1) if n > 1 else 0.0
        self._nir_sum, self._nir_sum2, self._nir_n = 0.0, 0.0, 0
        if abs(1.0 - c) <= 2.0 * math.sqrt(var / n):  # within the readings' noise: no trim
            return
        new = min(top, max(-top, self.api_trim + gain * (1.0 - c)))
        if abs(new - self.api_trim) < 1e-4:
            return
        st = next(x for x in self.stations if x.component == "api")
        st.setpoint_kg_s *= (1.0 + new) / (1.0 + self.api_trim)
        self.api_trim = new
        self.model.log.record(now, "api_trim", f"{self.name}.{st.name}", -1, "", self.node,
                              f"{100 * new:+.3f} %: NIR mean {100 * c:.2f} % of {n} readings")
        self._timed_sync(now)
        self._apply_feed(now)

    @property
    def weight_kg(self) -> float:
        """The present mean tablet weight (kg): ρ_fill·A·h."""
        return self.bulk_density_kg_m3 * self.gauge.area_m2 * self.fill_depth_m

    def force_n(self) -> float:
        return self.gauge.force_n(self.weight_kg)

    def _weight_changed(self, now: float, why: str) -> None:
        w = self.weight_kg
        if self._weights[-1][0] == now:
            self._weights[-1] = (now, w)
        else:
            self._weights.append((now, w))
        self.model.log.record(now, "tablet_weight", f"{self.name}.press", -1, "", self.node,
                              f"{w * 1e6:.3f} mg: {why}")
        self._hopper_changed(now)  # the press draws ρ·A·h per tablet
        if self.weight_loop is not None and not self._loop_busy:
            self._loop_busy = True
            self.env.process(self._weight_loop())

    def _disturb(self, at_s: float, factor: float):
        yield self.env.timeout(max(0.0, at_s - self.env.now))
        self.bulk_density_kg_m3 = self._nominal_density * factor
        self._weight_changed(self.env.now, f"bulk density x{factor:g}")

    def _weight_loop(self):
        """Sample the force every period while the loop works; rest once settled."""
        loop = self.weight_loop
        n = max(1.0, self.rate_kg_s / self.weight_kg * loop.period_s)  # tablets per sample
        while True:
            yield self.env.timeout(loop.period_s)
            if not self.running:  # no tablets, no force reading: the output holds
                continue
            self.loop_samples += 1
            f = self.force_n()
            if self.weight_rsd > 0 and self._force_rng is not None:
                f += (loop.gain_n_per_kg * self.weight_kg * self.weight_rsd / math.sqrt(n)
                      * float(self._force_rng.standard_normal()))
            if self._gauge_rng is not None:  # what the gauge reads of it
                f = f * (1.0 + self._gauge_bias) + (loop.setpoint_n * self._gauge_noise
                                                    / math.sqrt(n)
                                                    * float(self._gauge_rng.standard_normal()))
            if loop.settled(f):
                self._loop_busy = False
                return
            depth = loop.step(f)
            if depth != self.fill_depth_m:
                self.fill_depth_m = depth
                self._weight_changed(self.env.now, f"weight loop: fill depth "
                                     f"{depth * 1e3:.4f} mm")

    def set_target_weight(self, weight_kg: float) -> None:
        """A new tablet weight target for the loop (the force set-point follows)."""
        g = self.gauge
        self.gauge = ForceGauge(g.press, weight_kg, g.pressure_pa)
        self.target_weight_kg = weight_kg
        if self.weight_loop is not None:
            loop = self.weight_loop
            self.weight_loop = WeightLoop(self.gauge, self.fill_depth_m, loop.kp, loop.ti_s,
                                          loop.period_s, loop.deadband)
        self._weight_changed(self.env.now, f"target {weight_kg * 1e6:.3f} mg")

    def _mean_weight(self, a: float, b: float) -> float:
        """Time-mean tablet weight over [a, b] (the weight profile is piecewise constant)."""
        ws = self._weights
        while len(ws) > 1 and ws[1][0] <= a:
            ws.popleft()
        if b <= a:
            return ws[-1][1]
        tot = 0.0
        for i, (t, w) in enumerate(ws):
            end = ws[i + 1][0] if i + 1 < len(ws) else b
            lo, hi = max(t, a), min(end, b)
            if hi > lo:
                tot += w * (hi - lo)
        return tot / (b - a)

    def _ipc(self, now: float, unit_id: int, a: float, b: float, mass_kg: float,
             content: float) -> float:
        """The IPC sample of a unit made of the material pressed in [a, b]: a row of
        ``line_units.parquet`` and the batch's uniformity; returns the unit's tablet count."""
        w_mean = self._mean_weight(a, b)
        tablets = mass_kg / w_mean
        if self.ipc_tablets <= 0 or self._ipc_rng is None:
            return tablets
        rng, n, ws = self._ipc_rng, self.ipc_tablets, self._weights
        if len(ws) == 1:  # one weight over [a, b] (_mean_weight dropped the earlier ones)
            base: float | np.ndarray = ws[0][1]
        else:  # the weight at each tablet's time, uniform over [a, b]
            ts = a + (b - a) * rng.random(n) if b > a else np.full(n, b)
            idx = np.searchsorted([t for t, _ in ws], ts, side="right") - 1
            base = np.array([w for _, w in ws])[np.maximum(idx, 0)]
        w = base * (1.0 + self.weight_rsd * rng.standard_normal(n))
        c = w * (100.0 * content / self.target_weight_kg)
        w_mg, c_pct = (w * 1e6).tolist(), c.tolist()
        wu, cu = Uniformity(), Uniformity()
        wu.add(w_mg)
        cu.add(c_pct)
        self.batch_weight.add(w_mg)
        self.batch_content.add(c_pct)
        if self.release is not None:
            self.release.add_contents(c)
        if self.unit_table is not None:
            ws, cs = wu.summary(), cu.summary()
            self.unit_table.append(self.name, unit_id, self.batch.id, now, tablets,
                                   ws["mean"], ws["rsd_pct"], ws["min"], ws["max"],
                                   cs["mean"], cs["rsd_pct"], cs["min"], cs["max"])
        return tablets

    def _batch_uniformity(self) -> dict[str, dict[str, float]]:
        """The batch's IPC uniformity so far (and start a new one)."""
        out = {"weight_mg": self.batch_weight.summary(),
               "content_pct": self.batch_content.summary()}
        self.batch_weight, self.batch_content = Uniformity(), Uniformity()
        return out
