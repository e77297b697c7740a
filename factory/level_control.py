"""Level of a surge hopper and its PI level controller (an integrating process).

**The level.** A hopper with inflow q_in and outflow q_out (kg/s) holds
L(t) = L(t₀) + (q_in − q_out)·(t − t₀) while both flows are constant, so between events the
level is piecewise linear and the time it reaches a limit is computed, not searched
(:meth:`HopperLevel.time_to`). It is held within [0, capacity].

**The loop.** The level of a surge vessel is an integrating process: dL/dt = u − d, with u the
manipulated inflow and d the outflow (a disturbance), so its transfer function is k'/s with
k' = 1 (kg of level per kg of inflow). A sampled PI in velocity form (Åström & Hägglund 2006,
*Advanced PID Control*, §3.5 and §13.4: incremental form, bumpless transfer, anti-windup by
clamping the output) acts every ``period_s``:

    e_k = L_sp − L_k,        u_k = u_{k−1} + Kc·(e_k − e_{k−1}) + Kc·T/Ti·e_k,

clamped to [u_min, u_max]. Starting from the present inflow (u₀ = the line rate, e₋₁ = e₀) the
first move is Kc·T/Ti·e₀: no bump. The default tuning is Skogestad's SIMC rule for an
integrating process (Skogestad 2003, *J. Process Control* 13:291, Table 1; the same rule is
given for level loops by Seborg et al. 2011, *Process Dynamics and Control*, §12.3):

    Kc = 1 / (k'·(τc + θ)),   Ti = 4·(τc + θ),

with τc the desired closed-loop time constant and θ the effective delay (half the sampling
period, the zero-order hold). It gives no overshoot on a set-point change beyond ~ 10 % and
removes a step in outflow (a press-speed change) with no offset.

**Resting.** The loop samples only while the level is outside ``deadband_kg`` of its set-point
or the inflow still differs from the outflow. A PI that rests in a deadband with an imbalance
left hunts (the integral re-winds each time the level leaves the band), so once settled
(:meth:`LevelPI.settled`) the owner sets the inflow to the measured outflow (feedforward of the
press's draw, Seborg et al. 2011, §15.1): a settled loop then costs no events at all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["HopperLevel", "LevelPI", "simc_level_tuning"]


def simc_level_tuning(tau_c_s: float, period_s: float) -> tuple[float, float]:
    """SIMC PI for an integrating process with k' = 1: (Kc in 1/s, Ti in s) for the
    closed-loop time constant ``tau_c_s`` and a sample period ``period_s`` (θ = T/2)."""
    lam = tau_c_s + 0.5 * period_s
    return 1.0 / lam, 4.0 * lam


class HopperLevel:
    """The mass L (kg) in a hopper, exact between events (module docstring).

    Args:
        level_kg: the mass at ``t0_s``.
        capacity_kg: the most it holds.
        t0_s: the time of ``level_kg``.
    """

    __slots__ = ("t", "level0", "q_in", "q_out", "capacity_kg")

    def __init__(self, level_kg: float, capacity_kg: float, t0_s: float = 0.0) -> None:
        self.t = float(t0_s)
        self.level0 = float(level_kg)
        self.q_in = 0.0
        self.q_out = 0.0
        self.capacity_kg = float(capacity_kg)

    @property
    def slope_kg_s(self) -> float:
        """dL/dt now: inflow − outflow."""
        return self.q_in - self.q_out

    def level(self, t: float) -> float:
        """L at ``t`` (≥ the last change)."""
        return self.level0 + (self.q_in - self.q_out) * (t - self.t)

    def set_flows(self, t: float, q_in: float, q_out: float) -> None:
        """Inflow and outflow (kg/s) from ``t`` on."""
        self.level0 = self.level(t)
        self.t = float(t)
        self.q_in, self.q_out = float(q_in), float(q_out)

    def time_to(self, target_kg: float) -> float:
        """The time the level reaches ``target_kg`` at the present flows (``inf``: never;
        the present time if it is there now)."""
        s = self.q_in - self.q_out
        d = target_kg - self.level0
        if d == 0.0:
            return self.t
        if s == 0.0 or (d > 0) != (s > 0):
            return math.inf
        return self.t + d / s


@dataclass
class LevelPI:
    """Sampled PI in velocity form on a level (module docstring).

    Args:
        setpoint_kg: the level set-point L_sp.
        kc_per_s: gain Kc (kg/s of inflow per kg of level error).
        ti_s: integral time Ti.
        period_s: sample period T.
        deadband_kg: the loop rests while |L − L_sp| ≤ this and the flows balance.
        u_min, u_max: the inflow's range (kg/s).
    """

    setpoint_kg: float
    kc_per_s: float
    ti_s: float
    period_s: float
    deadband_kg: float
    u_min: float
    u_max: float
    _e_prev: float | None = None

    def start(self) -> None:
        """Start (or restart after resting) bumplessly: the next step has no proportional
        kick (e₋₁ = e₀)."""
        self._e_prev = None

    def step(self, level_kg: float, u_kg_s: float) -> float:
        """One sample: the new inflow from the present one ``u_kg_s`` (clamped to the range:
        the velocity form does not wind up)."""
        e = self.setpoint_kg - level_kg
        prev = e if self._e_prev is None else self._e_prev
        self._e_prev = e
        u = u_kg_s + self.kc_per_s * (e - prev) + self.kc_per_s * self.period_s / self.ti_s * e
        return min(self.u_max, max(self.u_min, u))

    def settled(self, level_kg: float, imbalance_kg_s: float) -> bool:
        """Whether the loop may rest: the level within the deadband and the flows so close
        (|u − d|·3·Ti ≤ deadband) that the owner can set the inflow to the outflow it measures
        (a feedforward step of at most deadband / (3·Ti)) and the level then holds."""
        return (abs(self.setpoint_kg - level_kg) <= self.deadband_kg
                and abs(imbalance_kg_s) * 3.0 * self.ti_s <= self.deadband_kg)
