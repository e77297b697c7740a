"""Rotary tablet press: feed-frame RTD, tablet weight, output rate, compaction and hardness.

* Feed frame: tanks in series, τ = hold-up/mass flow (Levenspiel, *Chemical Reaction
  Engineering*, 3rd ed., Wiley 1999, ch. 14).
* Tablet weight W = ρ_fill·A_die·h_fill; output rate = stations × turret speed.
* Kawakita: C = (V₀ − V)/V₀ = a·b·P/(1 + b·P), a = initial porosity, so the relative density is
  ρr = (1 − a)/(1 − C) (Kawakita & Lüdde 1971, Powder Technol 4:61).
* Heckel: ln(1/(1 − D)) = K·P + A, D relative density, yield pressure Py = 1/K
  (Heckel 1961, Trans Metall Soc AIME 221:671).
* Tensile strength: Ryshkewitch–Duckworth σ = σ₀·e^(−k·ε), ε porosity (Ryshkewitch 1953);
  Kuentz–Leuenberger σ = σ_max·[1 − ((1 − ρr)/(1 − ρc))·e^(ρr − ρc)], ρc percolation
  threshold (Kuentz & Leuenberger 2000, J Pharm Sci 88:174).
* Breaking force of a flat round tablet F = σ·π·D·t/2 (Fell & Newton 1970, J Pharm Sci 59:688).

Units: pressures in Pa (or MPa consistently with b and K), lengths in m, masses in kg.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from darkfab.factory.rtd import TanksInSeries

__all__ = ["tablet_weight_kg", "output_rate_tablets_s", "kawakita_relative_density",
           "heckel_relative_density", "ryshkewitch_duckworth", "kuentz_leuenberger",
           "breaking_force_n", "tablet_thickness_m", "TabletPress", "TabletQuality"]


def tablet_weight_kg(fill_density_kg_m3: float, die_diameter_m: float,
                     fill_depth_m: float) -> float:
    """W = ρ_fill·A_die·h_fill, A_die = πD²/4."""
    return fill_density_kg_m3 * math.pi * die_diameter_m**2 / 4 * fill_depth_m


def output_rate_tablets_s(stations: int, turret_speed_rpm: float) -> float:
    """Tablets per second = stations × turret revolutions per second."""
    return stations * turret_speed_rpm / 60.0


def kawakita_relative_density(pressure: float, a: float, b: float) -> float:
    """ρr = (1 − a)/(1 − C), C = a·b·P/(1 + b·P) (a = initial porosity, b in 1/pressure)."""
    c = a * b * pressure / (1 + b * pressure)
    return (1 - a) / (1 - c)


def heckel_relative_density(pressure: float, k: float, a: float) -> float:
    """D = 1 − exp(−(K·P + A))."""
    return 1 - math.exp(-(k * pressure + a))


def ryshkewitch_duckworth(porosity: float, sigma0: float, k: float) -> float:
    """σ = σ₀·e^(−k·ε)."""
    return sigma0 * math.exp(-k * porosity)


def kuentz_leuenberger(rel_density: float, sigma_max: float, rho_c: float) -> float:
    """σ = σ_max·[1 − ((1 − ρr)/(1 − ρc))·e^(ρr − ρc)] for ρr ≥ ρc, else 0."""
    if rel_density < rho_c:
        return 0.0
    return sigma_max * (1 - (1 - rel_density) / (1 - rho_c) * math.exp(rel_density - rho_c))


def breaking_force_n(tensile_strength_pa: float, diameter_m: float, thickness_m: float) -> float:
    """F = σ·π·D·t/2 (diametral compression of a flat round tablet)."""
    return tensile_strength_pa * math.pi * diameter_m * thickness_m / 2


def tablet_thickness_m(weight_kg: float, true_density_kg_m3: float, rel_density: float,
                       diameter_m: float) -> float:
    """t = W/(ρ_true·ρr·πD²/4)."""
    return weight_kg / (true_density_kg_m3 * rel_density * math.pi * diameter_m**2 / 4)


@dataclass(frozen=True)
class TabletQuality:
    weight_kg: float
    rel_density: float
    porosity: float
    thickness_m: float
    tensile_strength_pa: float
    breaking_force_n: float


@dataclass(frozen=True)
class TabletPress:
    """Press geometry and material parameters (pressures in Pa; Kawakita b and Heckel K in
    1/Pa). ``compaction`` selects Kawakita or Heckel; ``strength`` selects
    Ryshkewitch–Duckworth (σ₀, k_rd) or Kuentz–Leuenberger (σ_max = σ₀, ρc)."""

    stations: int
    turret_speed_rpm: float
    die_diameter_m: float
    fill_depth_m: float
    fill_density_kg_m3: float
    true_density_kg_m3: float
    feed_frame_holdup_kg: float
    feed_frame_tanks: float = 3.0
    compaction: Literal["kawakita", "heckel"] = "kawakita"
    kawakita_a: float = 0.6
    kawakita_b_per_pa: float = 5e-8
    heckel_k_per_pa: float = 1e-8
    heckel_a: float = 0.5
    strength: Literal["ryshkewitch", "kuentz"] = "ryshkewitch"
    sigma0_pa: float = 8e6
    k_rd: float = 10.0
    rho_c: float = 0.4

    @property
    def tablet_weight_kg(self) -> float:
        return tablet_weight_kg(self.fill_density_kg_m3, self.die_diameter_m, self.fill_depth_m)

    @property
    def tablets_per_s(self) -> float:
        return output_rate_tablets_s(self.stations, self.turret_speed_rpm)

    @property
    def mass_flow_kg_s(self) -> float:
        """Mass the press draws: tablets/s × W."""
        return self.tablets_per_s * self.tablet_weight_kg

    def feed_frame_rtd(self, mass_flow_kg_s: float | None = None) -> TanksInSeries:
        """Feed-frame RTD: tanks in series, τ = hold-up/ṁ."""
        m = self.mass_flow_kg_s if mass_flow_kg_s is None else mass_flow_kg_s
        return TanksInSeries(self.feed_frame_holdup_kg / m, self.feed_frame_tanks)

    def quality(self, pressure_pa: float) -> TabletQuality:
        """Tablet properties at main compression pressure ``pressure_pa``."""
        if self.compaction == "kawakita":
            rd = kawakita_relative_density(pressure_pa, self.kawakita_a, self.kawakita_b_per_pa)
        else:
            rd = heckel_relative_density(pressure_pa, self.heckel_k_per_pa, self.heckel_a)
        rd = min(rd, 1.0)
        eps = 1 - rd
        if self.strength == "ryshkewitch":
            sig = ryshkewitch_duckworth(eps, self.sigma0_pa, self.k_rd)
        else:
            sig = kuentz_leuenberger(rd, self.sigma0_pa, self.rho_c)
        w = self.tablet_weight_kg
        th = tablet_thickness_m(w, self.true_density_kg_m3, rd, self.die_diameter_m)
        return TabletQuality(w, rd, eps, th, sig, breaking_force_n(sig, self.die_diameter_m, th))
