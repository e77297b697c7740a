"""Random durations in scenario files: tagged tables ``{dist = "lognormal", mean_s = 40,
cv = 0.3}``, each with its sampler (``darkfab.factory.distributions``).

Part of :mod:`darkfab.scenarios.schema` (which exports every name); see there.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal, Union

import numpy as np
from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError

from darkfab.factory.distributions import Sampler, make_sampler

from .schema_base import NonNegativeFloat, PositiveFloat, Strict

__all__ = ["Distribution", "DIST_TAGS", "UNION_TAGS", "NORMAL_MIN_WINDOW_MASS", "Constant",
           "Exponential", "Uniform", "Triangular", "Normal", "Lognormal", "Gamma", "Weibull",
           "Empirical", "CoefficientOfVariation"]


NORMAL_MIN_WINDOW_MASS = 1e-3
"""Smallest probability a truncated normal may put in [low_s, high_s]: below it the rejection
sampler would draw more than ~1,000 normals per value."""


class _Dist(Strict):
    def params(self) -> dict:
        """Parameters without the unit suffix, as :func:`make_sampler` takes them."""
        out = {}
        for k, v in self.model_dump(exclude={"dist"}, exclude_none=True).items():
            out[k[:-2] if k.endswith("_s") else k] = v
        return out

    def sampler(self, name: str, rng: np.random.Generator) -> Sampler:
        return make_sampler(name, self.dist, self.params(), rng)  # type: ignore[attr-defined]


class Constant(_Dist):
    dist: Literal["constant"]
    value_s: NonNegativeFloat


class Exponential(_Dist):
    dist: Literal["exponential"]
    mean_s: PositiveFloat


class Uniform(_Dist):
    dist: Literal["uniform"]
    low_s: NonNegativeFloat
    high_s: NonNegativeFloat

    @model_validator(mode="after")
    def _order(self):
        if self.high_s < self.low_s:
            raise PydanticCustomError("order", "high_s must be >= low_s")
        return self


class Triangular(_Dist):
    dist: Literal["triangular"]
    low_s: NonNegativeFloat
    mode_s: NonNegativeFloat
    high_s: NonNegativeFloat

    @model_validator(mode="after")
    def _order(self):
        if not self.low_s <= self.mode_s <= self.high_s:
            raise PydanticCustomError("order", "need low_s <= mode_s <= high_s")
        return self


class Normal(_Dist):
    """Normal truncated to [low_s, high_s] (default [0, ∞))."""

    dist: Literal["normal"]
    mean_s: NonNegativeFloat
    sd_s: NonNegativeFloat
    low_s: NonNegativeFloat = 0.0
    high_s: PositiveFloat | None = None

    @model_validator(mode="after")
    def _order(self):
        hi = math.inf if self.high_s is None else self.high_s
        if hi <= self.low_s:
            raise PydanticCustomError("order", "high_s must be > low_s")
        if self.sd_s > 0:
            mass = _normal_mass((self.low_s - self.mean_s) / self.sd_s,
                                (hi - self.mean_s) / self.sd_s)
            if not mass >= NORMAL_MIN_WINDOW_MASS:
                raise PydanticCustomError(
                    "window", f"[low_s, high_s] holds only {mass:.3g} of the normal's "
                    f"probability (at least {NORMAL_MIN_WINDOW_MASS:g} needed to sample it)")
        return self


def _normal_mass(a: float, b: float) -> float:
    """P(a ≤ Z ≤ b) for a standard normal Z, a < b, accurate in either tail (erfc)."""
    r = math.sqrt(2.0)
    if a >= 0:
        return 0.5 * (math.erfc(a / r) - math.erfc(b / r))
    if b <= 0:
        return 0.5 * (math.erfc(-b / r) - math.erfc(-a / r))
    return 1.0 - 0.5 * math.erfc(-a / r) - 0.5 * math.erfc(b / r)


# cv in [1e-6, 1e3]: the sampler's parameters (1/cv², ln(1 + cv²)) stay finite and non-zero
CoefficientOfVariation = Annotated[float, Field(ge=1e-6, le=1e3, allow_inf_nan=False)]


class Lognormal(_Dist):
    dist: Literal["lognormal"]
    mean_s: PositiveFloat
    cv: CoefficientOfVariation


class Gamma(_Dist):
    dist: Literal["gamma"]
    mean_s: PositiveFloat
    cv: CoefficientOfVariation


class Weibull(_Dist):
    dist: Literal["weibull"]
    shape: PositiveFloat
    scale_s: PositiveFloat

    @model_validator(mode="after")
    def _finite_mean(self):
        try:
            mean = self.scale_s * math.gamma(1.0 + 1.0 / self.shape)
        except OverflowError:
            mean = math.inf
        if not math.isfinite(mean):
            raise PydanticCustomError("weibull", "the mean scale_s·Γ(1 + 1/shape) overflows: "
                                      "shape is too small")
        return self


class Empirical(_Dist):
    dist: Literal["empirical"]
    values_s: Annotated[list[NonNegativeFloat], Field(min_length=1)]
    weights: list[PositiveFloat] | None = None

    @model_validator(mode="after")
    def _len(self):
        if self.weights is not None and len(self.weights) != len(self.values_s):
            raise PydanticCustomError("length", "weights must have as many entries as values_s")
        if self.weights is not None and not math.isfinite(math.fsum(self.weights)):
            raise PydanticCustomError("weights", "the weights' sum overflows")
        return self


Distribution = Annotated[
    Union[Constant, Exponential, Uniform, Triangular, Normal, Lognormal, Gamma, Weibull,
          Empirical],
    Field(discriminator="dist"),
]
UNION_TAGS = frozenset({"next-name", "next-branches"})
DIST_TAGS = frozenset({"constant", "exponential", "uniform", "triangular", "normal",
                       "lognormal", "gamma", "weibull", "empirical"})
