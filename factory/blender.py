"""Continuous blender: hold-up from mass flow and impeller speed, and its RTD.

Hold-up falls as the impeller speed rises and grows with the mass flow (Vanarase & Muzzio 2011,
Powder Technol 208:26). Empirical power law with reference point (ṁ_ref, N_ref, H_ref):

    H = H_ref·(ṁ/ṁ_ref)^a·(N_ref/N)^b         (kg)
    τ = H/ṁ                                     (s, mean residence time)

The RTD is tanks in series (n) or axial dispersion (Pe, open or closed) with that τ
(Levenspiel, *Chemical Reaction Engineering*, 3rd ed., Wiley 1999, ch. 13–14). An
operating-point change (ṁ or N) changes τ: the unit is linear and time-invariant only between
such changes, so the caller builds a new predictor there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from darkfab.factory.rtd import RTD, AxialDispersion, TanksInSeries

__all__ = ["BlenderParams", "holdup_kg", "mean_residence_time_s", "blender_rtd"]


@dataclass(frozen=True)
class BlenderParams:
    """Reference hold-up ``holdup_ref_kg`` at ``mass_flow_ref_kg_s`` and ``speed_ref_rpm``;
    exponents a (flow) and b (speed); RTD model and its shape parameter."""

    holdup_ref_kg: float
    mass_flow_ref_kg_s: float
    speed_ref_rpm: float
    flow_exponent: float = 1.0
    speed_exponent: float = 0.5
    model: Literal["tanks", "open", "closed"] = "tanks"
    n_tanks: float = 2.0
    peclet: float = 10.0

    def __post_init__(self) -> None:
        if min(self.holdup_ref_kg, self.mass_flow_ref_kg_s, self.speed_ref_rpm) <= 0:
            raise ValueError("blender reference values must be positive")
        if self.model not in ("tanks", "open", "closed"):
            raise ValueError("model must be 'tanks', 'open' or 'closed'")


def holdup_kg(p: BlenderParams, mass_flow_kg_s: float, speed_rpm: float) -> float:
    """H = H_ref·(ṁ/ṁ_ref)^a·(N_ref/N)^b (kg)."""
    if mass_flow_kg_s <= 0 or speed_rpm <= 0:
        raise ValueError("mass flow and impeller speed must be positive")
    return (p.holdup_ref_kg * (mass_flow_kg_s / p.mass_flow_ref_kg_s) ** p.flow_exponent
            * (p.speed_ref_rpm / speed_rpm) ** p.speed_exponent)


def mean_residence_time_s(p: BlenderParams, mass_flow_kg_s: float, speed_rpm: float) -> float:
    """τ = H/ṁ (s)."""
    return holdup_kg(p, mass_flow_kg_s, speed_rpm) / mass_flow_kg_s


def blender_rtd(p: BlenderParams, mass_flow_kg_s: float, speed_rpm: float) -> RTD:
    """The blender's RTD at this operating point (mean τ = H/ṁ)."""
    tau = mean_residence_time_s(p, mass_flow_kg_s, speed_rpm)
    if p.model == "tanks":
        return TanksInSeries(tau, p.n_tanks)
    return AxialDispersion(tau, p.peclet, boundary=p.model)
