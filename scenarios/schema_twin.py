"""A continuous line's plant apart from its model (docs/twin.md): raw-material lot variation
and the model mismatch, what the instruments measure, and the tracer experiments and sensor
logs that calibration reads.

Part of :mod:`darkfab.scenarios.schema` (which exports every name); see there.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError

from .schema_base import Name, NonNegativeFloat, PositiveFloat, Strict

__all__ = ["TracerSpec", "LineLoggingSpec", "LotVariationSpec", "MismatchSpec",
           "InstrumentsSpec"]


class TracerSpec(Strict):
    """A tracer experiment (for ``darkfab calibrate``): from ``time_s`` the feeder ``feeder``
    (default: the line's API feeder) runs at (100 + ``size_pct``) % of its nominal set-point;
    a ``pulse`` returns to 100 % ``duration_s`` later, a ``step`` stays (a step of 0 returns to
    nominal). Applied as a controller's set-point change."""

    time_s: NonNegativeFloat
    kind: Literal["step", "pulse"] = "step"
    size_pct: Annotated[float, Field(ge=-50, le=50, allow_inf_nan=False)]
    duration_s: PositiveFloat | None = None
    feeder: Name | None = None

    @model_validator(mode="after")
    def _duration(self):
        if self.kind == "pulse" and self.duration_s is None:
            raise PydanticCustomError("tracer", "a pulse needs duration_s")
        if self.kind == "step" and self.duration_s is not None:
            raise PydanticCustomError("tracer", "a step takes no duration_s (a pulse does)")
        return self


class LineLoggingSpec(Strict):
    """Sensor data written for calibration (``darkfab calibrate``): the NIR readings
    (``nir_readings.parquet``, on by default), the feeders' load cells at set-point changes and
    refills (``load_cells.parquet``, on by default), and every ``load_cells_s`` seconds (off by
    default: a sample costs a look-ahead of every feeder)."""

    nir: bool = True
    load_cells: bool = True
    load_cells_s: Annotated[float, Field(ge=1, le=86400, allow_inf_nan=False)] | None = None


class LotVariationSpec(Strict):
    """Raw-material lot variation of one feeder's material (relative standard deviations, %):
    each lot draws its API potency (API feeders only), bulk density and feed-factor multiplier
    from a normal distribution around 1 (``darkfab.factory.mismatch``)."""

    potency_sd_pct: Annotated[float, Field(ge=0, le=20, allow_inf_nan=False)] = 0.0
    bulk_density_sd_pct: Annotated[float, Field(ge=0, le=20, allow_inf_nan=False)] = 0.0
    feed_factor_sd_pct: Annotated[float, Field(ge=0, le=20, allow_inf_nan=False)] = 0.0


class MismatchSpec(Strict):
    """The plant's truth apart from the model (docs/twin.md): the plant runs on true parameters,
    the soft sensor and the control strategy on the nominal ones. Zero everywhere (the default):
    the ideal plant, the model is the plant. ``lots`` per feeder name; ``screw_wear_pct_per_day``:
    feed-factor loss of every feeder screw per day; the true blender mean residence time is
    ``blender_tau_factor`` × nominal, its true tanks-in-series n (or Péclet number)
    ``blender_n_factor`` × nominal (at the reference point; ``blender_*_exponent_delta``:
    its hold-up law's exponents apart from the model's);
    ``tablet_content_rsd_pct``: tablet-to-tablet API content variation at
    compression (the truth audit counts tablets out of spec with it). ``scale`` multiplies
    every deviation from the ideal plant (the standard deviations, the wear rate, and
    factor − 1 of the blender's factors): 0 is the ideal plant, 2 twice the mismatch (the
    margin-sizing experiment's factor); :meth:`scaled` gives the plant it describes."""

    lots: dict[Name, LotVariationSpec] = {}
    screw_wear_pct_per_day: Annotated[float, Field(ge=0, le=5, allow_inf_nan=False)] = 0.0
    blender_tau_factor: Annotated[float, Field(gt=0.2, lt=5, allow_inf_nan=False)] = 1.0
    blender_n_factor: Annotated[float, Field(gt=0.2, lt=5, allow_inf_nan=False)] = 1.0
    tablet_content_rsd_pct: Annotated[float, Field(ge=0, le=20, allow_inf_nan=False)] = 0.0
    # the true hold-up law apart from the model's (docs/twin.md): true b − nominal b of
    # H ∝ N^(−b), and true a − nominal a of H ∝ ṁ^a
    blender_speed_exponent_delta: Annotated[float, Field(ge=-1, le=1, allow_inf_nan=False)] = 0.0
    blender_flow_exponent_delta: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] = 0.0
    scale: Annotated[float, Field(ge=0, le=10, allow_inf_nan=False)] = 1.0

    @model_validator(mode="after")
    def _scaled_in_range(self):
        m = self.scaled()
        if not (0.2 < m.blender_tau_factor < 5 and 0.2 < m.blender_n_factor < 5):
            raise PydanticCustomError("scale", "the scaled blender factors must lie in (0.2, 5)")
        if (m.screw_wear_pct_per_day > 5 or m.tablet_content_rsd_pct > 20
                or abs(m.blender_speed_exponent_delta) > 1 or m.blender_flow_exponent_delta > 1
                or any(max(v.potency_sd_pct, v.bulk_density_sd_pct, v.feed_factor_sd_pct) > 20
                       for v in m.lots.values())):
            raise PydanticCustomError("scale", "the scaled mismatch exceeds a field's bound")
        return self

    def scaled(self) -> MismatchSpec:
        """The mismatch with ``scale`` applied (and ``scale`` 1): the plant it describes."""
        s = self.scale
        if s == 1.0:
            return self
        lots = {k: v.model_copy(update={"potency_sd_pct": s * v.potency_sd_pct,
                                        "bulk_density_sd_pct": s * v.bulk_density_sd_pct,
                                        "feed_factor_sd_pct": s * v.feed_factor_sd_pct})
                for k, v in self.lots.items()}
        return self.model_copy(update={
            "lots": lots, "screw_wear_pct_per_day": s * self.screw_wear_pct_per_day,
            "blender_tau_factor": 1.0 + s * (self.blender_tau_factor - 1.0),
            "blender_n_factor": 1.0 + s * (self.blender_n_factor - 1.0),
            "tablet_content_rsd_pct": s * self.tablet_content_rsd_pct,
            "blender_speed_exponent_delta": s * self.blender_speed_exponent_delta,
            "blender_flow_exponent_delta": s * self.blender_flow_exponent_delta, "scale": 1.0})

    def is_zero(self) -> bool:
        """No mismatch at all: the plant is its model."""
        m = self.scaled()
        return (not any(v.potency_sd_pct or v.bulk_density_sd_pct or v.feed_factor_sd_pct
                        for v in m.lots.values())
                and m.screw_wear_pct_per_day == 0 and m.blender_tau_factor == 1.0
                and m.blender_n_factor == 1.0 and m.tablet_content_rsd_pct == 0
                and m.blender_speed_exponent_delta == 0
                and m.blender_flow_exponent_delta == 0)


class InstrumentsSpec(Strict):
    """What the control system measures (``darkfab.factory.instruments``): each feeder's load
    cell reads the hopper mass with noise ``load_cell_noise_g`` (sd per reading, one reading per
    feed-noise cell) and the flow is the filtered mass loss (first-order filter,
    ``load_cell_filter_s``); during a refill the load cell is blind and the flow is estimated as
    screw speed × nominal feed factor. Zero (the default): the load cells report the true flow.
    The press's main-compression force gauge (read by the weight loop) has a noise
    ``force_noise_pct`` (sd of one tablet's reading, % of the nominal force; a loop sample is
    the mean over the tablets of its period) and a calibration bias ``force_bias_pct`` (% of
    the reading)."""

    load_cell_noise_g: Annotated[float, Field(ge=0, le=1000, allow_inf_nan=False)] = 0.0
    load_cell_filter_s: Annotated[float, Field(ge=0, le=600, allow_inf_nan=False)] = 0.0
    force_noise_pct: Annotated[float, Field(ge=0, le=50, allow_inf_nan=False)] = 0.0
    force_bias_pct: Annotated[float, Field(ge=-20, le=20, allow_inf_nan=False)] = 0.0
