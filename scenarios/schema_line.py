"""A continuous line as a whole: its units, control strategy limits (quality), release by
evidence of each batch, scripted disturbances, and the recipe checks across its sections.

Part of :mod:`darkfab.scenarios.schema` (which exports every name); see there.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import Field, PositiveInt, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from darkfab.factory.content_uniformity import TableNotSourced, option1_limits
from darkfab.factory.unit_operations import registered, unit_operation

from .schema_base import Name, NonNegativeFloat, PositiveFloat, Strict
from .schema_equipment import FailureMode
from .schema_line_units import (BlenderSpec, FeederSpec, LoopsSpec, PatSpec, PressHopperSpec,
                                PressSpec)
from .schema_twin import InstrumentsSpec, LineLoggingSpec, MismatchSpec, TracerSpec

__all__ = ["LineDisturbanceSpec", "LineQualitySpec", "LineReleaseSpec", "ContinuousLineSpec"]


class LineDisturbanceSpec(Strict):
    """A scripted process disturbance: from ``time_s`` on, the blend fills the dies at
    ``bulk_density_factor`` × the press's ``fill_density_kg_m3``."""

    time_s: NonNegativeFloat
    bulk_density_factor: Annotated[float, Field(ge=0.5, le=2.0, allow_inf_nan=False)]


class LineQualitySpec(Strict):
    """Control strategy: API content limits (% of label claim), the minimum output flow (% of
    nominal) below which tablets are off weight, diversion margins: ``margin_s`` in time either
    side of a model excursion, ``guard_band_pct`` in content (the model diverts when its
    predicted content leaves [spec_low + guard band, spec_high − guard band]: guarded
    acceptance, JCGM 106:2012; docs/twin.md)."""

    spec_low_pct: PositiveFloat = 95.0
    spec_high_pct: PositiveFloat = 105.0
    min_flow_pct: Annotated[float, Field(ge=0, le=100)] = 80.0
    margin_s: NonNegativeFloat = 10.0
    pat_hold_s: NonNegativeFloat = 60.0
    startup_divert_s: NonNegativeFloat = 0.0
    guard_band_pct: Annotated[float, Field(ge=0, le=20, allow_inf_nan=False)] = 0.0

    @model_validator(mode="after")
    def _limits(self):
        if not self.spec_low_pct < 100.0 < self.spec_high_pct:
            raise PydanticCustomError("limits", "need spec_low_pct < 100 < spec_high_pct")
        if not self.spec_low_pct + self.guard_band_pct < 100.0 < (self.spec_high_pct
                                                                   - self.guard_band_pct):
            raise PydanticCustomError("guard_band", "the guard band must leave 100 % inside "
                                      "the acceptance limits")
        return self


class LineReleaseSpec(Strict):
    """Release by evidence of each batch (``darkfab.agents.line.release``): the CU test on a
    random sample of ``sample_size`` of the batch's IPC tablets (``test``: Ph. Eur. 2.9.47
    alternative 1 or 2, or USP <905> on the first 10/30 of the sample), target ``target_pct``;
    ``k``/``c2`` (alternative 1: both or neither; neither: the sourced rows of Table
    2.9.47.-1) and ``c1``/``c2`` (alternative 2: required, Table 2.9.47.-2 of the chapter).
    Rejected if the CU test fails; investigation if it cannot be evaluated, if more than
    ``investigate_diverted_pct`` of the batch's output was diverted, or if an alarm of a
    priority in ``investigate_alarm_priorities`` touched the batch; else released. Each
    batch's electronic record goes to ``batch_records.jsonl`` when ``records`` is true."""

    test: Literal["ph_eur_2.9.47_option1", "ph_eur_2.9.47_option2", "usp_905"] = \
        "ph_eur_2.9.47_option1"
    sample_size: Annotated[int, Field(ge=30, le=100_000)] = 400
    target_pct: Annotated[float, Field(gt=50, lt=150, allow_inf_nan=False)] = 100.0
    k: Annotated[float, Field(gt=0, le=10, allow_inf_nan=False)] | None = None
    c1: Annotated[int, Field(ge=0)] | None = None
    c2: Annotated[int, Field(ge=0)] | None = None
    investigate_diverted_pct: Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)] = 5.0
    investigate_alarm_priorities: list[Literal["critical", "high", "medium", "low"]] = \
        ["critical"]
    records: bool = True

    @model_validator(mode="after")
    def _table(self):
        if self.test != "usp_905" and self.sample_size < 100:
            raise PydanticCustomError("release", "Ph. Eur. 2.9.47 needs sample_size >= 100")
        if self.test == "ph_eur_2.9.47_option1":
            if self.c1 is not None:
                raise PydanticCustomError("release", "c1 is for ph_eur_2.9.47_option2")
            if (self.k is None) != (self.c2 is None):
                raise PydanticCustomError("release", "give both k and c2, or neither")
            if self.k is None:
                try:
                    option1_limits(self.sample_size)
                except TableNotSourced as e:
                    raise PydanticCustomError("release", str(e)) from None
        elif self.test == "ph_eur_2.9.47_option2":
            if self.c1 is None or self.c2 is None or self.k is not None:
                raise PydanticCustomError(
                    "release", "ph_eur_2.9.47_option2 needs c1 and c2 (Table 2.9.47.-2 of the "
                    "chapter, for sample_size) and no k")
        elif self.k is not None or self.c1 is not None or self.c2 is not None:
            raise PydanticCustomError("release", "usp_905 takes no k, c1 or c2")
        return self


class ContinuousLineSpec(Strict):
    """A continuous direct compression line (feeders → blender → press, PAT, diversion gate)
    that emits units of ``tablets_per_unit`` accepted tablets into buffer ``output``."""

    node: Name
    feeders: Annotated[dict[Name, FeederSpec], Field(min_length=1)]
    blender: BlenderSpec
    press: PressSpec
    pat: PatSpec | None = None
    quality: LineQualitySpec = LineQualitySpec()
    output: Name
    product: Name
    tablets_per_unit: PositiveInt
    qc_tablets_per_unit: Annotated[int, Field(ge=0)] = 0
    batch_hours: PositiveFloat | None = 24.0  # ICH Q13 batch by run time ...
    batch_kg: PositiveFloat | None = None  # ... or by accepted mass
    failures: list[FailureMode] = []
    control_interval_s: PositiveFloat = 600.0
    lot_trace_min_fraction: Annotated[float, Field(ge=0, lt=1)] = 1e-3  # smaller: "older-lots"
    loops: LoopsSpec = LoopsSpec()
    press_hopper: PressHopperSpec = PressHopperSpec()
    # registered unit operations (darkfab.factory.unit_operations): kind -> its section
    unit_operations: dict[Name, Any] = {}
    disturbances: list[LineDisturbanceSpec] = []
    release: LineReleaseSpec | None = None  # CU test, decision and record per batch
    mismatch: MismatchSpec = MismatchSpec()  # the plant's truth apart from the model
    instruments: InstrumentsSpec = InstrumentsSpec()  # load cells (NIR: ``pat``)
    tracer: list[TracerSpec] = []  # set-point steps and pulses for calibration
    logging: LineLoggingSpec = LineLoggingSpec()  # sensor data for calibration

    @model_validator(mode="after")
    def _recipe(self):
        total = sum(f.mass_fraction for f in self.feeders.values())
        if abs(total - 1.0) > 1e-6:
            raise PydanticCustomError("recipe", f"feeder mass_fraction values sum to {total:g},"
                                      " not 1")
        apis = [n for n, f in self.feeders.items() if f.component == "api"]
        if len(apis) != 1:
            raise PydanticCustomError("recipe", "exactly one feeder needs component = \"api\"")
        if self.batch_hours is not None and self.batch_kg is not None:
            raise PydanticCustomError("batch", "give batch_hours or batch_kg, not both")
        unknown = sorted(set(self.mismatch.lots) - set(self.feeders))
        if unknown:
            raise PydanticCustomError("mismatch", f"mismatch.lots names no feeder: "
                                      f"{', '.join(unknown)}")
        for tr in self.tracer:
            if tr.feeder is not None and tr.feeder not in self.feeders:
                raise PydanticCustomError("tracer", f"tracer feeder {tr.feeder!r} is not a "
                                          f"feeder of the line ({', '.join(self.feeders)})")
        return self

    def api_feeder(self) -> str:
        """The name of the line's API feeder."""
        return next(n for n, f in self.feeders.items() if f.component == "api")

    @field_validator("unit_operations")
    @classmethod
    def _unit_operations(cls, v: dict[str, Any]) -> dict[str, Any]:
        """Each section validated by its registered unit operation's model."""
        out = {}
        for kind, raw in v.items():
            op = unit_operation(kind)
            if op is None:
                have = ", ".join(sorted(registered())) or "none"
                raise PydanticCustomError("unit_operation", "unknown unit operation {kind} "
                                          "(registered: {have})", {"kind": repr(kind),
                                                                   "have": have})
            if isinstance(raw, op.spec):
                out[kind] = raw
                continue
            try:
                out[kind] = op.spec.model_validate(raw)
            except ValidationError as e:
                msgs = "; ".join(f"{'.'.join(str(x) for x in (kind, *err['loc']))}: "
                                 f"{err['msg']}" for err in e.errors())
                raise PydanticCustomError("unit_operation", "{msgs}", {"msgs": msgs}) from None
        return out

    def mass_flow_kg_s(self) -> float:
        """The press's draw (kg/s): stations × turret speed × tablet weight."""
        p = self.press
        area = math.pi * (p.die_diameter_mm / 2000.0) ** 2
        return p.stations * p.turret_speed_rpm / 60.0 * p.fill_density_kg_m3 * area \
            * p.fill_depth_mm / 1000.0
