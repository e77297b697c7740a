"""The soft sensor of a continuous line: the control system's model of its output, apart from
the plant (docs/twin.md).

The plant (:class:`~.engine.HybridEngine`) pushes the true feeder flows through the true RTD.
The soft sensor pushes what the control system measures, each feeder's load-cell flow
(:class:`~darkfab.factory.instruments.LoadCellFlow`: filtered and noisy, a volumetric estimate
during refills), through the nominal RTD, with one channel per feeder. It knows nothing of lot
potencies, true feed factors or the true RTD. The engine calls :meth:`SoftSensor.push` at every
sync with the feeders' segments since the last one.

Its flow clock is the plant's, unless the plant's hold-up law (how its residence time follows
the line rate and the blender speed) differs from the model's (:meth:`SoftSensor.own_clock`):
then it runs on a flow clock of its own with the nominal exponents, moved by the same commands
(the line rate, the blender speed, stops: :meth:`SoftSensor.set_flow`).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any

import numpy as np

from darkfab.factory.flow_clock import FlowClock, FlowLaw, FlowTimePredictor
from darkfab.factory.instruments import LoadCellFlow, blind_factors
from darkfab.factory.mismatch import screw_wear_factor
from darkfab.factory.rtd import RTD
from darkfab.factory.rtd_predictor import RTDPredictor

__all__ = ["SoftSensor"]


class SoftSensor:
    """Measured feeder flows → nominal RTD (module docstring).

    Args:
        stations: the line's feeder stations (``name``, ``component``, ``feeder``).
        rtd: the nominal line RTD (the model's).
        clock: the plant's flow clock (the line's rate and stops are known to the control
            system: it commands them; :meth:`own_clock` for a model law of its own).
        lookback_s: clock time behind the present within which its outputs stay exact (as
            the engine's).
        load_cells: one per station.
        ff_multiplier: per station, hopper lot fractions → the true over nominal feed factor of
            that material (lots and bulk density; ``None``: nominal).
        wear_per_day: screw wear, fractional feed-factor loss per day.
    """

    def __init__(self, stations: Sequence[Any], rtd: RTD, clock: FlowClock, lookback_s: float,
                 load_cells: Sequence[LoadCellFlow],
                 ff_multiplier: Sequence[Callable[[dict[Hashable, float]], float] | None],
                 wear_per_day: float = 0.0) -> None:
        self.stations = list(stations)
        self.rtd = rtd
        self.plant_clock = self.clock = clock
        self.law: FlowLaw | None = None  # the model's own law (own_clock), or the plant's
        self.lookback_s = lookback_s
        self.comp = self._predictor()
        self.api_idx = [i for i, st in enumerate(self.stations) if st.component == "api"]
        self.load_cells = list(load_cells)
        self.ff_multiplier = list(ff_multiplier)
        self.wear_per_day = wear_per_day
        # per station: (start, end, K) of the refills seen, and the multipliers of refills started
        self._refills: list[list[tuple[float, float, float]]] = [[] for _ in self.stations]
        self._refill_k: list[list[float]] = [[] for _ in self.stations]
        self._seen = [0] * len(self.stations)  # refill log entries read

    def _predictor(self) -> FlowTimePredictor:
        comp = FlowTimePredictor(RTDPredictor(self.rtd, t0=0.0, retain_s=self.lookback_s),
                                 self.clock, lookback_s=self.lookback_s)
        for st in self.stations:
            comp.channel(st.name)
        return comp

    def own_clock(self, law: FlowLaw) -> None:
        """Run on a flow clock of its own with the model's ``law`` (before the first push): the
        plant's true hold-up law differs from it. The flow-time history kept is the one that
        passed on that clock in the look-back."""
        self.law = law
        self.clock = FlowClock(self.plant_clock.theta(0.0), self.plant_clock.rate)
        self.comp = self._predictor()

    def set_flow(self, now: float, flow_ratio: float, speed_ratio: float, flowing: bool) -> None:
        """The line's rate ṁ/ṁ₀ = ``flow_ratio`` and blender speed N/N₀ = ``speed_ratio`` from
        ``now`` on (``flowing``: the line runs): the model clock's rate by the nominal law."""
        if self.law is not None:
            self.clock.set_rate(now, *self.law.rate(flow_ratio, speed_ratio, flowing))

    def keep_theta(self) -> float:
        """The plant's flow time before which the soft sensor needs none of the plant clock's
        history (its own clock pruned likewise)."""
        if self.law is None:
            return self.comp.valid_from_theta
        self.clock.prune(self.comp.valid_from_theta)
        return self.plant_clock.theta(self.comp.valid_from)

    def refill_started(self, k: int, fractions: dict[Hashable, float]) -> None:
        """Station ``k`` starts a refill with its hopper of these lot fractions: the screw keeps
        feeding that material (it draws from the bottom of the hopper), whose feed factor the
        gravimetric loop learned; the control system's volumetric estimate uses the nominal one."""
        f = self.ff_multiplier[k]
        self._refill_k[k].append(1.0 if f is None else f(fractions))

    def _windows(self, k: int) -> list[tuple[float, float, float]]:
        """Station ``k``'s recent refill windows (start, end, K without wear), from its feeder's
        refill log (read only)."""
        log = self.stations[k].feeder.refill_log
        out, seen, mult = self._refills[k], self._seen[k], self._refill_k[k]
        if out and out[-1][1] == np.inf:  # the last one may have ended since
            out[-1] = (out[-1][0], log[seen - 1][1], out[-1][2])
        for i in range(seen, len(log)):
            out.append((log[i][0], log[i][1], mult[i] if i < len(mult) else 1.0))
        self._seen[k] = len(log)
        del out[:-4]  # only recent refills can cover the segments still to come
        return out

    def push(self, now: float, feeds: Sequence[tuple | None], rates_now: Sequence[float]) -> None:
        """The feed since the last push (per station: starts, ends, true rates, … as the engine's
        sync has them, or ``None``) and the present true rates, as the control system reads them,
        into the nominal RTD."""
        cols = []
        cuts_l = []
        now_row = []
        for k, f in enumerate(feeds):
            lc = self.load_cells[k]
            wins = self._windows(k)
            wear = screw_wear_factor(now, self.wear_per_day) if self.wear_per_day else 1.0
            if f is None:
                cols.append(None)
            else:
                a, b, x = f[0], f[1], f[2]
                wear_a = (screw_wear_factor(a, self.wear_per_day) if self.wear_per_day
                          else 1.0)
                y = lc.measure(a, b, x, blind_factors(a, wins, wear_a))
                cols.append((a, b, y))
                cuts_l += [a, b]
            kn = blind_factors(np.array([now]), wins, wear)[0]
            now_row.append(lc.present(float(rates_now[k]), float(kn)))
        if cuts_l:
            cuts = np.unique(np.concatenate(cuts_l))
            cuts = cuts[cuts < now]
        else:
            cuts = np.zeros(0)
        rows = np.zeros((cuts.size + 1, len(self.stations)))
        rows[-1] = now_row
        for k, c in enumerate(cols):
            if c is None or not cuts.size:
                continue
            a, b, y = c
            i = np.minimum(np.searchsorted(b, cuts, side="right"), a.size - 1)
            rows[:-1, k] = np.where((a[i] <= cuts) & (b[i] > cuts), y[i], 0.0)
        self.comp.push_many(np.append(cuts, now), rows)

    def reading(self, k: int, now: float, mass_kg: float, rate_kg_s: float) -> tuple[float, float]:
        """Station ``k``'s load cell as the control system reads it now: (hopper mass in kg with
        the last reading's noise, flow in kg/s: filtered, or the volumetric estimate during a
        refill) given the true mass and rate (for the calibration log; commits nothing)."""
        wear = screw_wear_factor(now, self.wear_per_day) if self.wear_per_day else 1.0
        kn = blind_factors(np.array([now]), self._windows(k), wear)[0]
        lc = self.load_cells[k]
        return lc.mass_reading(mass_kg), lc.present(rate_kg_s, float(kn))

    def output(self, ts: np.ndarray) -> np.ndarray:
        """The model's output flows per station at ``ts``, per flow-second of the plant's clock
        (as the plant's outputs, so one flow limit fits both): with a clock of its own, its
        outputs per model flow-second × r_model/r_plant = g_model/g_plant (both move with the
        same mass flow; g kept while the line stands)."""
        y = self.comp.output(ts)
        if self.law is None or (self.clock.uniform_speed() and self.plant_clock.uniform_speed()):
            return y
        return y * (self.clock.speed_factors(ts) / self.plant_clock.speed_factors(ts))[:, None]
