"""Plant-model mismatch: the true parameters a plant runs on, apart from the nominal model its
control system uses (the central question of a digital twin: is the control strategy safe when
the plant is not its model?).

* Raw-material lot variation: every lot draws its API potency p, bulk density ratio r_ρ and
  feed-factor multiplier r_ff once, from its own named random stream (so a lot's draws do not
  depend on how many other lots came before it): p, r_ρ, r_ff ~ N(1, sd²), clipped at 0.5 and
  1.5. The true feed factor is ff_true(M) = r_ρ·r_ff·w(t)·ff_nom(M): the feed factor is the
  bulk density × the screw's swept volume per revolution (Engisch & Muzzio 2015, Powder Technol
  283:389), so a denser lot feeds more per revolution.
* Screw wear: w(t) = max(0.5, 1 − r_w·t/86 400 s), r_w the fractional loss of feed factor per
  day (worn flights and a widening clearance let material slip back).
* Blender: the true mean residence time τ_true = f_τ·τ_nom and the true tanks-in-series number
  (or Péclet number) n_true = f_n·n_nom (Gao, Muzzio & Ierapetritou 2012, Powder Technol
  228:416: τ and the RTD shape depend on fill level and speed, which a nominal correlation only
  approximates), at the reference point; off it, τ follows the plant's own hold-up law
  (:class:`~darkfab.factory.flow_clock.FlowLaw`, exponents apart from the model's).

The engine integrates the true feed through the true RTD (the plant); the soft sensor integrates
the measured feed through the nominal RTD (the model, :mod:`darkfab.factory.instruments`).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass

import numpy as np

__all__ = ["LotVariation", "LotProperties", "LotDraws", "screw_wear_factor"]


@dataclass(frozen=True)
class LotVariation:
    """Relative standard deviations (fractions, not %) of one material's lot properties."""

    potency_sd: float = 0.0
    bulk_density_sd: float = 0.0
    feed_factor_sd: float = 0.0

    def is_zero(self) -> bool:
        return self.potency_sd == 0 and self.bulk_density_sd == 0 and self.feed_factor_sd == 0


@dataclass(frozen=True)
class LotProperties:
    """The true properties of one raw-material lot (ratios to nominal)."""

    potency: float = 1.0
    bulk_density: float = 1.0
    feed_factor: float = 1.0

    @property
    def ff_multiplier(self) -> float:
        """True over nominal feed factor from this lot's material: r_ρ·r_ff."""
        return self.bulk_density * self.feed_factor


def _clip(x: float) -> float:
    return min(1.5, max(0.5, x))


class LotDraws:
    """The true properties of each lot of one material, drawn once per lot from the stream
    ``stream_of(lot)`` (a named stream per lot: reproducible whatever the order of lots).

    Args:
        variation: the material's lot-to-lot variation.
        stream_of: lot id → a fresh numpy ``Generator`` (``model.streams.stream(name)``).
    """

    def __init__(self, variation: LotVariation,
                 stream_of: Callable[[Hashable], np.random.Generator]) -> None:
        self.variation = variation
        self.stream_of = stream_of
        self._props: dict[Hashable, LotProperties] = {}

    def __call__(self, lot: Hashable) -> LotProperties:
        """The lot's true properties (drawn on first use: three standard normals in the order
        potency, bulk density, feed factor)."""
        p = self._props.get(lot)
        if p is None:
            v = self.variation
            if v.is_zero():
                p = LotProperties()
            else:
                z = self.stream_of(lot).standard_normal(3)
                p = LotProperties(_clip(1.0 + v.potency_sd * z[0]),
                                  _clip(1.0 + v.bulk_density_sd * z[1]),
                                  _clip(1.0 + v.feed_factor_sd * z[2]))
            self._props[lot] = p
        return p

    def ff_multiplier(self, fractions: dict[Hashable, float]) -> float:
        """The feed-factor multiplier of a hopper of these lot mass fractions (mass-weighted)."""
        tot = sum(fractions.values())
        if tot <= 0:
            return 1.0
        return sum(x * self(lot).ff_multiplier for lot, x in fractions.items()) / tot


def screw_wear_factor(t_s: float | np.ndarray, rate_per_day: float) -> float | np.ndarray:
    """w(t) = max(0.5, 1 − r_w·t/86 400): the worn screw's share of its new feed factor."""
    return np.maximum(0.5, 1.0 - rate_per_day * np.asarray(t_s) / 86400.0)
