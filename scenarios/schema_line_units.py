"""The unit operations of a continuous direct compression line: loss-in-weight feeders, the
blender, the tablet press (with punch wear, the level-1 loops and the press hopper) and the
NIR PAT probe.

Part of :mod:`darkfab.scenarios.schema` (which exports every name); see there.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, PositiveInt, model_validator
from pydantic_core import PydanticCustomError

from .schema_base import FiniteFloat, Name, NonNegativeFloat, PositiveFloat, Strict

__all__ = ["FeederSpec", "BlenderSpec", "PunchWearSpec", "PressSpec", "LoopsSpec",
           "PressHopperSpec", "PatSpec"]


class FeederSpec(Strict):
    """A loss-in-weight feeder (Wang, Li, Muzzio & Glasser 2017, Powder Technol 308:135; Engisch
    & Muzzio 2015, Powder Technol 283:389): recipe share, hopper levels, feed factor
    ff(M) = ff_max − (ff_max − ff_min)·e^(−βM), AR(1) feed noise, refills from ``refill_from``
    (a buffer where containers are delivered; a container's mass is its product's mass_kg)."""

    component: Name  # exactly one feeder of a line has component = "api"
    mass_fraction: Annotated[float, Field(gt=0, le=1)]
    refill_from: Name
    refill_rate_kg_s: PositiveFloat
    ff_max_kg_rev: PositiveFloat
    ff_min_kg_rev: PositiveFloat
    beta_per_kg: NonNegativeFloat = 0.0
    low_level_kg: NonNegativeFloat
    high_level_kg: PositiveFloat
    initial_kg: NonNegativeFloat | None = None  # default: high_level_kg
    noise_sd: NonNegativeFloat = 0.0
    noise_corr: Annotated[float, Field(gt=-1, lt=1)] = 0.0
    noise_period_s: PositiveFloat = 10.0
    # kanban: robots bring a container whenever the dock has room; controller: only when the
    # controller asks (TransportRequest from the store to the dock), i.e. refills are planned
    refill_request: Literal["kanban", "controller"] = "kanban"

    @model_validator(mode="after")
    def _levels(self):
        if self.ff_min_kg_rev > self.ff_max_kg_rev:
            raise PydanticCustomError("feeder", "ff_min_kg_rev must not exceed ff_max_kg_rev")
        if self.low_level_kg >= self.high_level_kg:
            raise PydanticCustomError("feeder", "low_level_kg must be below high_level_kg")
        return self


class BlenderSpec(Strict):
    """Continuous blender: hold-up H = H_ref·(ṁ/ṁ_ref)^a·(N_ref/N)^b, τ = H/ṁ, RTD tanks in
    series (``n_tanks``) or axial dispersion (``open``/``closed``, ``peclet``)."""

    holdup_ref_kg: PositiveFloat
    mass_flow_ref_kg_h: PositiveFloat
    speed_ref_rpm: PositiveFloat
    speed_rpm: PositiveFloat
    flow_exponent: FiniteFloat = 1.0
    speed_exponent: FiniteFloat = 0.5
    model: Literal["tanks", "open", "closed"] = "tanks"
    n_tanks: PositiveFloat = 3.0
    peclet: PositiveFloat = 10.0


class PunchWearSpec(Strict):
    """Punch wear (``darkfab.factory.wear``): a Gamma process in operating hours, increments
    Gamma(shape = ``shape_per_h``·Δ, scale = ``scale``), mean rate shape·scale per hour; the
    punches break at ``threshold`` (line Held for ``breakage_repair_h``); the symptom is a
    compression-force drift ``force_per_wear_kn``·wear read with noise ``noise_sd_kn``. A punch
    change (``Maintenance`` command) holds the line for ``maintenance_h``; the supervisor is
    woken with an ``inspection`` event every ``inspection_interval_h``."""

    shape_per_h: PositiveFloat
    scale: PositiveFloat
    threshold: PositiveFloat
    step_h: PositiveFloat = 0.25
    force_per_wear_kn: PositiveFloat = 1.0
    noise_sd_kn: NonNegativeFloat = 0.0
    maintenance_h: PositiveFloat = 1.0
    breakage_repair_h: PositiveFloat = 8.0
    inspection_interval_h: PositiveFloat = 1.0


class PressSpec(Strict):
    """Rotary tablet press: W = ρ_fill·A_die·h_fill; tablets/s = stations × turret speed; the
    line's mass flow is what the press draws. Compaction (Kawakita or Heckel) and tensile
    strength (Ryshkewitch–Duckworth or Kuentz–Leuenberger) at ``compaction_pressure_mpa``."""

    stations: PositiveInt
    turret_speed_rpm: PositiveFloat
    die_diameter_mm: PositiveFloat
    fill_depth_mm: PositiveFloat
    fill_density_kg_m3: PositiveFloat
    true_density_kg_m3: PositiveFloat
    feed_frame_holdup_kg: PositiveFloat
    feed_frame_tanks: PositiveFloat = 3.0
    compaction_pressure_mpa: PositiveFloat
    compaction: Literal["kawakita", "heckel"] = "kawakita"
    kawakita_a: Annotated[float, Field(gt=0, lt=1)] = 0.6
    kawakita_b_per_mpa: PositiveFloat = 0.05
    heckel_k_per_mpa: PositiveFloat = 0.01
    heckel_a: NonNegativeFloat = 0.5
    strength: Literal["ryshkewitch", "kuentz"] = "ryshkewitch"
    sigma0_mpa: PositiveFloat = 8.0
    k_rd: PositiveFloat = 10.0
    rho_c: Annotated[float, Field(ge=0, lt=1)] = 0.4
    wear: PunchWearSpec | None = None
    weight_rsd_pct: Annotated[float, Field(ge=0, le=20, allow_inf_nan=False)] = 0.0
    ipc_tablets: Annotated[int, Field(ge=0, le=1000)] = 20  # tablets sampled per unit (IPC)


class LoopsSpec(Strict):
    """Level-1 loops of the line: the tablet weight loop (main compression force → fill depth,
    a PI; ``weight_kp`` relative fill-depth change per relative weight error, ``weight_ti_s``
    integral time, sampled every ``weight_period_s``, resting inside ``weight_deadband_pct``),
    and the level-2 API ratio trim from the NIR (``api_trim``: an integral trim of the API
    feeder's set-point each supervisory cycle, ``api_trim_gain`` × (1 − mean NIR reading),
    bounded by ``api_trim_max_pct``)."""

    weight_control: bool = True
    weight_kp: Annotated[float, Field(ge=0, le=10, allow_inf_nan=False)] = 0.3
    weight_ti_s: Annotated[float, Field(gt=0, le=86400, allow_inf_nan=False)] = 20.0
    weight_period_s: Annotated[float, Field(ge=0.1, le=3600, allow_inf_nan=False)] = 10.0
    weight_deadband_pct: Annotated[float, Field(ge=0, le=10, allow_inf_nan=False)] = 0.1
    api_trim: bool = False  # level 2: API feeder ratio trim from the NIR readings
    api_trim_gain: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)] = 0.2
    api_trim_max_pct: Annotated[float, Field(gt=0, le=20, allow_inf_nan=False)] = 5.0


class PressHopperSpec(Strict):
    """The press hopper between the blender and the press feed frame (``darkfab.agents.line.
    hopper``): its level (kg) integrates line rate − press draw. ``level_control``: a PI from
    the level to the line rate (SIMC tuning for an integrating process from ``tau_c_s`` and
    ``period_s``, or ``kc_per_h`` and ``ti_s`` given), sampled every ``period_s`` while the
    level is outside ``deadband_kg`` of ``setpoint_kg``; off, the line rate stays and the
    difference fills or drains the hopper. At ``low_alarm_kg`` the press is starved, at
    ``high_alarm_kg`` the line's feed holds (alarms, interlocks), each until the level is back
    at its set-point."""

    capacity_kg: PositiveFloat = 5.0
    setpoint_kg: PositiveFloat = 2.5
    low_alarm_kg: PositiveFloat = 0.5
    high_alarm_kg: PositiveFloat = 4.5
    initial_kg: NonNegativeFloat | None = None  # default: setpoint_kg
    level_control: bool = True
    tau_c_s: Annotated[float, Field(gt=0, le=86400, allow_inf_nan=False)] = 60.0
    kc_per_h: Annotated[float, Field(gt=0, le=1e6, allow_inf_nan=False)] | None = None
    ti_s: Annotated[float, Field(gt=0, le=86400, allow_inf_nan=False)] | None = None
    period_s: Annotated[float, Field(ge=0.1, le=3600, allow_inf_nan=False)] = 10.0
    deadband_kg: NonNegativeFloat = 0.05

    @model_validator(mode="after")
    def _levels(self):
        if not (self.low_alarm_kg < self.setpoint_kg - self.deadband_kg
                and self.setpoint_kg + self.deadband_kg < self.high_alarm_kg
                < self.capacity_kg):
            raise PydanticCustomError("press_hopper", "need low_alarm_kg < setpoint_kg ± "
                                      "deadband_kg < high_alarm_kg < capacity_kg")
        if self.initial_kg is not None and not (
                self.low_alarm_kg < self.initial_kg < self.high_alarm_kg):
            raise PydanticCustomError("press_hopper", "initial_kg must lie between the alarm "
                                      "limits")
        if (self.kc_per_h is None) != (self.ti_s is None):
            raise PydanticCustomError("press_hopper", "give both kc_per_h and ti_s, or neither "
                                      "(SIMC from tau_c_s)")
        return self


class PatSpec(Strict):
    """NIR sensor for API content (fraction of label claim): sampling, noise, delay, dropout,
    drift (a fault: bias growing from ``drift_start_s`` at ``drift_per_h``), and the alarm rule
    on its readings (``single`` reading out of spec, ``k_of_n``: ``alarm_k`` of the last
    ``alarm_n``, ``moving_average`` of ``alarm_n`` readings)."""

    period_s: PositiveFloat
    noise_sd: NonNegativeFloat = 0.0
    delay_s: NonNegativeFloat = 0.0
    dropout_probability: Annotated[float, Field(ge=0, le=1)] = 0.0
    drift_start_s: NonNegativeFloat | None = None
    drift_per_h: FiniteFloat = 0.0
    alarm_rule: Literal["single", "k_of_n", "moving_average"] = "single"
    alarm_k: Annotated[int, Field(ge=1, le=100)] = 2  # k_of_n: k of the last n readings out
    alarm_n: Annotated[int, Field(ge=1, le=100)] = 3  # k_of_n, moving_average: n readings
    # measurement model (docs/twin.md): Gy's fundamental sampling error of the effective sample
    # mass, a calibration bias and a slow drift (zero: today's sensor)
    sample_mass_g: Annotated[float, Field(gt=0, le=1000, allow_inf_nan=False)] = 1.0
    sampling_rsd_1g_pct: Annotated[float, Field(ge=0, le=20, allow_inf_nan=False)] = 0.0
    bias_pct: Annotated[float, Field(ge=-20, le=20, allow_inf_nan=False)] = 0.0
    drift_pct_per_day: Annotated[float, Field(ge=-5, le=5, allow_inf_nan=False)] = 0.0

    @model_validator(mode="after")
    def _k_of_n(self):
        if self.alarm_rule == "k_of_n" and self.alarm_k > self.alarm_n:
            raise PydanticCustomError("alarm_k", "alarm_k must not exceed alarm_n")
        return self
