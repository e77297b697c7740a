"""Tablet weight on a rotary press: the main compression force as the weight sensor, and the
level-1 weight loop (main compression force → fill depth).

At a fixed punch separation at main compression (the tablet's thickness ``t`` in the die), a
heavier fill is compressed to a higher relative density D = W/(ρ_true·A·t), which takes a
higher pressure: the press reads the tablet weight through its force gauge (Singh et al. 2014,
Int J Pharm 473:38; Bhaskar, Barros & Singh 2017, Int J Pharm 534:159). The pressure is the
compaction law solved for P:

* Kawakita, D = (1 − a)/(1 − C), C = a·b·P/(1 + b·P):  C = 1 − (1 − a)/D,  P = C/(b·(a − C));
* Heckel, ln(1/(1 − D)) = K·P + A:  P = (ln(1/(1 − D)) − A)/K;

and the force F = P·A. The punch separation is set so that the nominal weight is compressed at
the nominal pressure.

The loop is a discrete PI in velocity form on the weight error the force reveals, through the
force–weight sensitivity dF/dW at the nominal point (the loop's model; the plant follows the
compaction law):

    e_k = (F_sp − F_k)/(dF/dW)/W*,   h_k = h_(k−1)·(1 + K_p·(e_k − e_(k−1)) + (T/T_i)·e_k)

Tablet weight W = ρ_fill·A·h (ρ_fill the bulk density the die is filled at).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

from .tablet_press import TabletPress

__all__ = ["compaction_pressure_pa", "ForceGauge", "WeightLoop"]


def compaction_pressure_pa(press: TabletPress, rel_density: float) -> float:
    """The pressure (Pa) that compresses the powder to ``rel_density`` (inverse compaction
    law; see the module docstring). ``inf`` where the law cannot reach that density."""
    d = rel_density
    if press.compaction == "kawakita":
        a, b = press.kawakita_a, press.kawakita_b_per_pa
        c = 1.0 - (1.0 - a) / d
        if c <= 0.0:
            return 0.0
        return c / (b * (a - c)) if c < a else math.inf
    if d >= 1.0:
        return math.inf
    p = (math.log(1.0 / (1.0 - d)) - press.heckel_a) / press.heckel_k_per_pa
    return max(p, 0.0)


@dataclass(frozen=True)
class ForceGauge:
    """Main compression force of tablets of weight W at a punch separation set for the nominal
    weight ``weight_kg`` at ``pressure_pa``.

    Args:
        press: the press (die, true density, compaction law).
        weight_kg: nominal tablet weight (kg).
        pressure_pa: nominal main compression pressure (Pa).
    """

    press: TabletPress
    weight_kg: float
    pressure_pa: float

    @cached_property
    def area_m2(self) -> float:
        return math.pi * (self.press.die_diameter_m / 2.0) ** 2

    @cached_property
    def gap_m(self) -> float:
        """Punch separation at main compression: the nominal tablet's thickness in the die
        (computed once: the gauge is immutable)."""
        d0 = self.press.quality(self.pressure_pa).rel_density
        return self.weight_kg / (self.press.true_density_kg_m3 * self.area_m2 * d0)

    def force_n(self, weight_kg: float) -> float:
        d = weight_kg / (self.press.true_density_kg_m3 * self.area_m2 * self.gap_m)
        return compaction_pressure_pa(self.press, d) * self.area_m2

    def sensitivity_n_per_kg(self) -> float:
        """dF/dW at the nominal weight (central difference, ±0.1 %)."""
        h = 1e-3 * self.weight_kg
        return (self.force_n(self.weight_kg + h) - self.force_n(self.weight_kg - h)) / (2 * h)


@dataclass
class WeightLoop:
    """The PI weight loop (module docstring): ``step(force)`` gives the next fill depth.

    Args:
        gauge: the force gauge (set-point F_sp = its force at the nominal weight).
        fill_depth_m: the present fill depth.
        kp: proportional gain (relative fill-depth change per relative weight error).
        ti_s: integral time (s).
        period_s: sample period T (s).
        deadband: relative weight error under which the loop does not act.
    """

    gauge: ForceGauge
    fill_depth_m: float
    kp: float = 0.3
    ti_s: float = 20.0
    period_s: float = 10.0
    deadband: float = 0.001
    _e_prev: float = 0.0

    def __post_init__(self) -> None:
        self.setpoint_n = self.gauge.force_n(self.gauge.weight_kg)
        self.gain_n_per_kg = self.gauge.sensitivity_n_per_kg()

    def weight_error(self, force_n: float) -> float:
        """Relative weight error (W* − W)/W* the force reveals, through dF/dW."""
        return (self.setpoint_n - force_n) / self.gain_n_per_kg / self.gauge.weight_kg

    def step(self, force_n: float) -> float:
        """One sample: the new fill depth (m). Inside the deadband the depth holds and the
        loop rests (``settled``)."""
        e = self.weight_error(force_n)
        if abs(e) < self.deadband:
            self._e_prev = 0.0
            return self.fill_depth_m
        du = self.kp * (e - self._e_prev) + self.period_s / self.ti_s * e
        self._e_prev = e
        self.fill_depth_m *= 1.0 + du
        return self.fill_depth_m

    def settled(self, force_n: float) -> bool:
        return abs(self.weight_error(force_n)) < self.deadband
