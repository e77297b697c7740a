"""Scenario file schema: frozen, strict pydantic models with units in field names.

Every table forbids unknown keys; cross-references (buffers, sinks, nodes, products) and the
reachability of every material hop on the plant graph are checked after the fields, each problem
reported with its own field path.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import networkx as nx
import numpy as np
from pydantic import (AfterValidator, BaseModel, ConfigDict, Discriminator, Field, Tag, PositiveInt,
                      ValidationError, ValidationInfo, field_validator, model_validator)
from pydantic_core import PydanticCustomError

from darkfab.factory.content_uniformity import TableNotSourced, option1_limits
from darkfab.factory.distributions import Sampler, make_sampler
from darkfab.factory.packml import ACTING_STATES, MANDATORY_STATES, State
from darkfab.factory.unit_operations import registered, unit_operation

__all__ = ["Scenario", "Distribution", "DIST_TAGS", "UNION_TAGS", "reference_errors",
           "PositiveFloat", "NonNegativeFloat", "FiniteFloat", "Coordinate", "MAX_COORDINATE_M",
           "FolderName", "NORMAL_MIN_WINDOW_MASS", "routing_errors",
           "Fault", "FAULT_MODES", "VerificationSpec", "AlarmSpec",
           "transport_hops", "JobShopMeta", "JobShopSpec", "JobShopScenario", "jobshop_errors",
           "JOBSHOP_SCHEDULERS", "GridSpec", "LayoutSpec"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


# --- physical quantities: finite, sane magnitudes --------------------------------------------
# Every physical quantity (duration, rate, mass, length, distribution parameter) is finite:
# TOML's nan and inf, and literals that overflow to inf (1e999), are refused with the field's
# path. These replace pydantic's PositiveFloat and NonNegativeFloat, which accept inf.
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegativeFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
MAX_COORDINATE_M = 1e6
"""Largest |x_m|, |y_m| of a node (1,000 km): distances between nodes stay finite."""
Coordinate = Annotated[float, Field(ge=-MAX_COORDINATE_M, le=MAX_COORDINATE_M,
                                    allow_inf_nan=False)]
NORMAL_MIN_WINDOW_MASS = 1e-3
"""Smallest probability a truncated normal may put in [low_s, high_s]: below it the rejection
sampler would draw more than ~1,000 normals per value."""


# --- distributions ------------------------------------------------------------------------
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

Name = Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")]
_FOLDER_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,99}")


def _folder_name(v: str) -> str:
    if not _FOLDER_NAME.fullmatch(v):
        raise PydanticCustomError(
            "folder_name", "must be a safe folder name: 1 to 100 letters, digits, '_', '.' or "
            "'-', not starting with '.' or '-' (so never '.', '..' or a path)")
    return v


FolderName = Annotated[str, AfterValidator(_folder_name)]
"""A scenario name, used as a results folder name: letters, digits, ``_ . -``, not starting
with ``.`` or ``-`` (so never ``.``, ``..`` or a hidden folder), at most 100 characters."""


def _name_or_list(v) -> str | None:
    if isinstance(v, str):
        return "next-name"
    if isinstance(v, list):
        return "next-branches"
    return None


# --- plant --------------------------------------------------------------------------------
class Meta(Strict):
    name: FolderName
    description: str = ""
    horizon_s: PositiveFloat
    warmup_s: NonNegativeFloat = 0.0
    seed: Annotated[int, Field(ge=0)] = 0
    series_interval_s: PositiveFloat | None = None  # WIP/throughput buckets; default horizon/500

    @field_validator("warmup_s")
    @classmethod
    def _warmup(cls, v: float, info: ValidationInfo) -> float:
        horizon = info.data.get("horizon_s")
        if horizon is not None and v >= horizon:
            raise PydanticCustomError(
                "warmup", f"the warm-up ({v:g} s) must be shorter than scenario.horizon_s "
                f"({horizon:g} s): shorten the warm-up or lengthen the horizon")
        return v


class Product(Strict):
    description: str = ""
    mass_kg: NonNegativeFloat = 0.0  # per unit; counts against a robot's payload_kg


ROBOT_HOME_ROLES = ("parking", "holding", "charger")


class Node(Strict):
    x_m: Coordinate
    y_m: Coordinate
    role: Literal["station", "port", "waypoint", "storage", "dock", "charger", "parking",
                  "holding"] = "station"
    capacity_robots: PositiveInt = 1  # robots that fit on the node at once (wide crossings)


class Link(Strict):
    """A lane (robots drive it) or a conveyor (material moves along it without robots)."""

    a: Name
    b: Name
    directed: bool = False
    length_m: PositiveFloat | None = None
    speed_limit_m_s: PositiveFloat | None = None
    capacity_robots: PositiveInt = 1
    conveyor: bool = False


class BufferSpec(Strict):
    node: Name
    capacity_units: PositiveInt | None = None  # omitted: unbounded


class _ProductChoice(Strict):
    """One ``product``, or a ``product_mix`` of products with weights."""

    product: Name | None = None
    product_mix: dict[Name, PositiveFloat] | None = None

    @model_validator(mode="after")
    def _product(self):
        if (self.product is None) == (self.product_mix is None):
            raise PydanticCustomError("product", "give exactly one of product or product_mix")
        return self


class SourceSpec(_ProductChoice):
    node: Name
    to: Name
    interarrival: Distribution
    lot_size_units: PositiveInt = 1
    max_units: PositiveInt | None = None


class ScriptedOrder(Strict):
    """An order known in advance: ``quantity`` units of ``product`` due at ``due_s``."""

    id: Name
    product: Name
    quantity: PositiveInt
    arrival_s: NonNegativeFloat = 0.0
    due_s: NonNegativeFloat
    weight: PositiveFloat = 1.0


class OrderArrivals(_ProductChoice):
    """Random orders: quantity uniform on whole units in [quantity_min_units,
    quantity_max_units]; due date = arrival + due_allowance × quantity × work_s_per_unit."""

    interarrival: Distribution
    quantity_min_units: PositiveInt = 1
    quantity_max_units: PositiveInt = 1
    due_allowance: PositiveFloat = 3.0
    max_orders: PositiveInt | None = None

    @model_validator(mode="after")
    def _checks(self):
        if self.quantity_max_units < self.quantity_min_units:
            raise PydanticCustomError("order", "quantity_max_units < quantity_min_units")
        return self


class OrderBookSpec(Strict):
    """Customer orders released into buffer ``to`` (agents/orders.py): scripted ``orders``,
    random ``arrivals`` or both; at most ``max_orders_in_process`` released and not complete
    (CONWIP). ``work_s_per_unit`` (default: mean cycle time of the equipment fed by ``to`` per
    unit) sets stream due dates and is what schedulers plan with."""

    node: Name
    to: Name
    orders: list[ScriptedOrder] = []
    arrivals: OrderArrivals | None = None
    work_s_per_unit: PositiveFloat | None = None
    max_orders_in_process: PositiveInt = 2

    @model_validator(mode="after")
    def _checks(self):
        if not self.orders and self.arrivals is None:
            raise PydanticCustomError("orders", "give scripted orders, arrivals or both")
        ids = [o.id for o in self.orders]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise PydanticCustomError("dup", f"order ids must be unique: {', '.join(dup)}")
        return self


class SinkSpec(Strict):
    node: Name
    kind: Literal["product", "scrap"] = "product"


class Branch(Strict):
    to: Name
    probability: Annotated[float, Field(gt=0, le=1)]


class OutputSpec(Strict):
    """Transformation: each cycle turns its batch into ``units`` new units of ``product``."""

    product: Name
    units: PositiveInt = 1
    container: bool = False


class FailureMode(Strict):
    name: Name
    time_to_failure: Distribution  # operating time
    repair_time: Distribution
    reaction: Literal["hold", "abort"] = "hold"


ActingStateName = Literal[tuple(sorted(s.value.lower() for s in ACTING_STATES))]  # type: ignore[valid-type]
StateName = Literal[tuple(s.value for s in State)]  # type: ignore[valid-type]


class EquipmentSpec(Strict):
    node: Name
    input: Name
    servers: PositiveInt = 1
    process_time: Distribution
    batch_size_units: PositiveInt = 1
    ideal_cycle_time_s: PositiveFloat | None = None  # default: mean process time
    output: OutputSpec | None = None  # default: units pass through unchanged
    changeover: Distribution | None = None
    next: Annotated[
        Union[Annotated[Name, Tag("next-name")],
              Annotated[list[Branch], Field(min_length=1), Tag("next-branches")]],
        Discriminator(_name_or_list, custom_error_type="next",
                      custom_error_message="must be a buffer or sink name, or a list of "
                                           "{ to, probability } branches")]
    alternative_routes: bool = False  # `next` branches lead to parallel, equivalent equipment
    reject_probability: Annotated[float, Field(ge=0, lt=1)] = 0.0
    reject_to: Name | None = None
    failures: list[FailureMode] = []
    acting_state_s: dict[ActingStateName, NonNegativeFloat] = {}
    disabled_states: dict[Name, list[StateName]] = {}

    @field_validator("next")
    @classmethod
    def _probabilities(cls, v):
        if isinstance(v, list):
            total = sum(b.probability for b in v)
            if abs(total - 1.0) > 1e-9:
                raise PydanticCustomError(
                    "probability", f"branch probabilities sum to {round(total, 12)}, not 1")
        return v

    @field_validator("disabled_states")
    @classmethod
    def _mandatory(cls, v):
        for mode, states in v.items():
            bad = sorted(set(states) & {s.value for s in MANDATORY_STATES})
            if bad:
                raise PydanticCustomError(
                    "disabled", f"mode {mode}: {', '.join(bad)} cannot be disabled "
                    "(Stopped, Idle, Execute and Aborted are mandatory)")
        return v

    @model_validator(mode="after")
    def _checks(self):
        if self.reject_probability > 0 and self.reject_to is None:
            raise PydanticCustomError("reject", "reject_probability > 0 needs reject_to")
        if self.alternative_routes and not isinstance(self.next, list):
            raise PydanticCustomError("routes", "alternative_routes needs a list of next "
                                      "branches")
        names = [f.name for f in self.failures]
        if len(set(names)) != len(names):
            raise PydanticCustomError("dup", "failure mode names must be unique")
        return self

    def branches(self) -> list[tuple[str, float]]:
        if isinstance(self.next, str):
            return [(self.next, 1.0)]
        return [(b.to, b.probability) for b in self.next]


class BatterySpec(Strict):
    capacity_kwh: PositiveFloat
    initial_soc: Annotated[float, Field(gt=0, le=1)] = 1.0
    consumption_empty_kwh_per_m: NonNegativeFloat
    consumption_loaded_kwh_per_m: NonNegativeFloat
    base_kw: NonNegativeFloat = 0.0  # electronics and sensors, whenever not charging
    charging_kw: PositiveFloat


class GridSpec(Strict):
    """``[layout.grid]``: a rectangular grid of aisles, ``rows`` × ``cols`` waypoints
    ``{prefix}{row}_{col}`` spaced ``spacing_m`` apart from the origin (row 0 at
    ``origin_y_m``, rows growing in +y), joined to their row and column neighbours by lanes
    ``aisle_capacity_robots`` robots wide (both directions)."""

    rows: Annotated[int, Field(ge=1, le=1000)]
    cols: Annotated[int, Field(ge=1, le=1000)]
    spacing_m: PositiveFloat
    aisle_capacity_robots: PositiveInt = 1
    prefix: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.\-]*$")] = "g"
    origin_x_m: Coordinate = 0.0
    origin_y_m: Coordinate = 0.0
    speed_limit_m_s: PositiveFloat | None = None

    @model_validator(mode="after")
    def _size(self):
        if self.rows * self.cols > 100_000:
            raise PydanticCustomError("grid", "at most 100,000 grid nodes (rows × cols)")
        if max(abs(self.origin_x_m) + (self.cols - 1) * self.spacing_m,
               abs(self.origin_y_m) + (self.rows - 1) * self.spacing_m) > MAX_COORDINATE_M:
            raise PydanticCustomError("grid", f"the grid reaches beyond ±{MAX_COORDINATE_M:g} m")
        return self


class LayoutSpec(Strict):
    """``[layout]``: nodes and links read from files (paths relative to the scenario file
    that names them) or generated, added to the scenario's own ``[nodes]`` and ``[[links]]``
    when it is loaded (see docs/layouts.md)."""

    nodes_csv: Annotated[str, Field(min_length=1)] | None = None
    links_csv: Annotated[str, Field(min_length=1)] | None = None
    graphml: Annotated[str, Field(min_length=1)] | None = None
    grid: GridSpec | None = None


class StallSpec(Strict):
    name: Name
    time_to_failure: Distribution  # seconds of travel
    recovery_time: Distribution


class FleetSpec(Strict):
    """A fleet of identical AMRs; robot i starts at homes[i]."""

    count: PositiveInt
    homes: Annotated[list[Name], Field(min_length=1)]
    speed_empty_m_s: PositiveFloat
    speed_loaded_m_s: PositiveFloat
    payload_units: PositiveInt = 1
    payload_kg: PositiveFloat | None = None  # mass limit per trip (units' mass_kg); none: no limit
    battery: BatterySpec
    load_time: Distribution
    unload_time: Distribution
    stalls: list[StallSpec] = []
    task_allocation: Literal["nearest-idle", "battery-aware"] = "nearest-idle"
    traffic: Literal["reservations", "none"] = "reservations"
    charge_below_soc: Annotated[float, Field(ge=0, lt=1)] = 0.3
    charge_target_soc: Annotated[float, Field(gt=0, le=1)] = 0.95
    opportunistic_below_soc: Annotated[float, Field(ge=0, le=1)] = 0.8
    staging_capacity_units: PositiveInt = 10
    auto_parking: bool = False  # add parking nodes beside the homes when count > len(homes)

    @model_validator(mode="after")
    def _homes(self):
        if len(self.homes) < self.count:
            raise PydanticCustomError(
                "homes", f"fleet.count = {self.count} robots need at least {self.count} "
                         f"fleet.homes (got {len(self.homes)}): one robot per node; list more "
                         "homes or set fleet.auto_parking = true")
        if len(set(self.homes)) != len(self.homes):
            raise PydanticCustomError("homes", "homes must be distinct nodes")
        if self.charge_target_soc <= self.charge_below_soc:
            raise PydanticCustomError("soc", "charge_target_soc must exceed charge_below_soc")
        return self


class ArmSpec(Strict):
    """A fixed robot arm that loads and unloads the listed equipment (one move per cycle)."""

    node: Name
    cycle_time: Distribution
    equipment: Annotated[list[Name], Field(min_length=1)]


class SensorModelSpec(Strict):
    """What the controller's observations pass through: a delay, normal noise on numeric levels
    (buffer levels, queue lengths; clipped at 0) and independent dropout of each reading."""

    delay_s: NonNegativeFloat = 0.0
    noise_sd_units: NonNegativeFloat = 0.0
    dropout_probability: Annotated[float, Field(ge=0, lt=1)] = 0.0


class ControllerSpec(Strict):
    """A registered controller name (``darkfab.control.CONTROLLERS``) or ``module:Class``, with
    keyword parameters; commands apply ``decision_latency_s`` after the decision; on a
    controller fault the plant has ``safe_stop_s`` to come to a safe stop; a unit stalled for
    ``watchdog_s`` raises a ``watchdog`` event."""

    name: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_.\-]+(:[A-Za-z_][A-Za-z0-9_.]*)?$")] \
        = "auto-recovery"
    params: dict[str, Any] = {}
    decision_latency_s: NonNegativeFloat = 0.0
    sensors: SensorModelSpec | None = None
    safe_stop_s: PositiveFloat = 600.0
    # watchdog on stalled work (issue #5): a ``watchdog`` event for a unit in Execute/Suspend*
    # that completed nothing, or Holding/Held/Aborting/Aborted, for this long; 0: off
    watchdog_s: NonNegativeFloat = 3600.0


# --- continuous lines ---------------------------------------------------------------------
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


class LineDisturbanceSpec(Strict):
    """A scripted process disturbance: from ``time_s`` on, the blend fills the dies at
    ``bulk_density_factor`` × the press's ``fill_density_kg_m3``."""

    time_s: NonNegativeFloat
    bulk_density_factor: Annotated[float, Field(ge=0.5, le=2.0, allow_inf_nan=False)]


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


# --- scripted faults ------------------------------------------------------------------------
class _FaultBase(Strict):
    """A scripted fault: what (``mode``), where (``target``), when (``time_s``) and for how long
    (``duration_s``, simulated seconds)."""

    time_s: NonNegativeFloat
    target: Annotated[str, Field(min_length=1)]
    duration_s: PositiveFloat


class BreakdownFault(_FaultBase):
    """Equipment (a PackML unit: Held, or Aborted with ``reaction = "abort"``) or a continuous
    line (Held) breaks down; repaired ``duration_s`` later."""

    mode: Literal["breakdown"]
    reaction: Literal["hold", "abort"] = "hold"


class RobotStallFault(_FaultBase):
    """A robot (``amr-1`` ...) stalls on the next lane it drives, for ``duration_s``."""

    mode: Literal["robot_stall"]


class BatteryFadeFault(Strict):
    """A robot's battery loses ``fraction`` of its capacity (and stored energy) from ``time_s``
    on (permanent)."""

    mode: Literal["battery_fade"]
    time_s: NonNegativeFloat
    target: Annotated[str, Field(min_length=1)]
    fraction: Annotated[float, Field(gt=0, lt=1)]


class ChargerOutageFault(_FaultBase):
    """A charger node is out of service: no robot is sent there; one charging is taken off."""

    mode: Literal["charger_outage"]


class SensorDropoutFault(_FaultBase):
    """The NIR PAT sensor of a continuous line returns no readings."""

    mode: Literal["sensor_dropout"]


class SensorDriftFault(_FaultBase):
    """The NIR PAT sensor of a continuous line drifts: bias = rate × (t − time_s), gone when
    the fault clears (recalibrated)."""

    mode: Literal["sensor_drift"]
    rate_per_h: Annotated[float, Field(allow_inf_nan=False)]

    @field_validator("rate_per_h")
    @classmethod
    def _nonzero(cls, v: float) -> float:
        if v == 0:
            raise PydanticCustomError("drift", "rate_per_h must not be 0")
        return v


class FeederRefillFailureFault(_FaultBase):
    """Refills of a feeder (target ``line.feeder``) fail: a container at the dock is not
    emptied until the fault clears."""

    mode: Literal["feeder_refill_failure"]


class OosLotFault(Strict):
    """The next container emptied into the API feeder (target ``line.feeder``) after ``time_s``
    carries API at ``potency`` (fraction of the labelled strength); the line's model does not
    know it, the PAT sees it."""

    mode: Literal["oos_raw_material_lot"]
    time_s: NonNegativeFloat
    target: Annotated[str, Field(min_length=1)]
    potency: Annotated[float, Field(gt=0, allow_inf_nan=False)]

    @field_validator("potency")
    @classmethod
    def _off(cls, v: float) -> float:
        if v == 1.0:
            raise PydanticCustomError("potency", "potency 1 is not out of spec")
        return v


class SupervisorOutageFault(_FaultBase):
    """The controller is offline (target ``controller``): no events, no commands."""

    mode: Literal["supervisor_outage"]


class CommandLatencyFault(_FaultBase):
    """Commands decided in the window apply ``extra_latency_s`` later than usual."""

    mode: Literal["command_latency"]
    extra_latency_s: PositiveFloat


class CommandLossFault(_FaultBase):
    """Each command applied in the window is lost with ``probability`` (random stream
    ``faults.<index>.command_loss``)."""

    mode: Literal["command_loss"]
    probability: Annotated[float, Field(gt=0, le=1)]


Fault = Annotated[
    Union[BreakdownFault, RobotStallFault, BatteryFadeFault, ChargerOutageFault,
          SensorDropoutFault, SensorDriftFault, FeederRefillFailureFault, OosLotFault,
          SupervisorOutageFault, CommandLatencyFault, CommandLossFault],
    Field(discriminator="mode"),
]
FAULT_MODES = ("breakdown", "robot_stall", "battery_fade", "charger_outage", "sensor_dropout",
               "sensor_drift", "feeder_refill_failure", "oos_raw_material_lot",
               "supervisor_outage", "command_latency", "command_loss")


class AlarmSpec(Strict):
    """Alarm management (ISA-18.2, EEMUA 191) figures in ``summary.json``: a flood is more than
    ``flood_threshold`` alarms raised within ``flood_window_s``; rates are per operator
    position; an alarm active for ``standing_after_s`` or longer is standing. The defaults are
    EEMUA 191's: 10 alarms in 10 minutes for one operator, standing after a day."""

    flood_window_s: PositiveFloat = 600.0
    flood_threshold: PositiveInt = 10
    operator_positions: PositiveInt = 1
    standing_after_s: PositiveFloat = 86_400.0


class VerificationSpec(Strict):
    """Rules of the verification report (``verification.json``)."""

    deadlock_bound_s: PositiveFloat = 7200.0  # longest wait without progress allowed
    mass_balance_tolerance: PositiveFloat = 1e-9


class Scenario(Strict):
    scenario: Meta
    products: Annotated[dict[Name, Product], Field(min_length=1)]
    nodes: Annotated[dict[Name, Node], Field(min_length=1)]
    links: list[Link] = []
    buffers: dict[Name, BufferSpec] = {}
    sources: dict[Name, SourceSpec] = {}
    order_books: dict[Name, OrderBookSpec] = {}
    sinks: Annotated[dict[Name, SinkSpec], Field(min_length=1)]
    equipment: dict[Name, EquipmentSpec] = {}
    fleet: FleetSpec | None = None
    arms: dict[Name, ArmSpec] = {}
    controller: ControllerSpec = ControllerSpec()
    continuous_lines: dict[Name, ContinuousLineSpec] = {}
    faults: list[Fault] = []
    alarms: AlarmSpec = AlarmSpec()
    verification: VerificationSpec = VerificationSpec()

    def graph(self, lanes_only: bool = False) -> nx.DiGraph:
        """The plant graph: nodes with coordinates (m), links as arcs with ``length_m``;
        ``lanes_only`` leaves out conveyors (the graph robots drive on)."""
        g = nx.DiGraph()
        for n, spec in self.nodes.items():
            g.add_node(n, x_m=spec.x_m, y_m=spec.y_m, role=spec.role)
        for link in self.links:
            if link.a not in self.nodes or link.b not in self.nodes:
                continue
            if lanes_only and link.conveyor:
                continue
            length = self.link_length(link)
            g.add_edge(link.a, link.b, length_m=length, conveyor=link.conveyor)
            if not link.directed:
                g.add_edge(link.b, link.a, length_m=length, conveyor=link.conveyor)
        return g

    def link_length(self, link: Link) -> float:
        a, b = self.nodes[link.a], self.nodes[link.b]
        return link.length_m or math.hypot(a.x_m - b.x_m, a.y_m - b.y_m) or 1e-3

    def conveyor_joined(self, a: str, b: str) -> bool:
        """True if material can pass from node ``a`` to ``b`` without a robot."""
        if a == b:
            return True
        return any(link.conveyor and ((link.a, link.b) == (a, b) or
                                      (not link.directed and (link.b, link.a) == (a, b)))
                   for link in self.links)


def reference_errors(s: Scenario):
    """Yield ``(path, message)`` for every dangling reference and unreachable material hop."""
    kinds = {"buffer": s.buffers, "sink": s.sinks, "equipment": s.equipment,
             "source": s.sources, "continuous line": s.continuous_lines,
             "order book": s.order_books}
    seen: dict[str, str] = {}
    for kind, table in kinds.items():
        for name in table:
            if name in seen:
                yield (f"{_plural(kind)}.{name}",
                       f"name {name!r} is already used by a {seen[name]}")
            seen[name] = kind
    from darkfab.control import controller_problems
    for msg in controller_problems(s.controller.name, s.controller.params):
        yield ("controller.params" if msg.startswith("bad parameters") else "controller.name",
               msg)
    for i, link in enumerate(s.links):
        for end in ("a", "b"):
            if getattr(link, end) not in s.nodes:
                yield (f"links[{i}].{end}", f"unknown node {getattr(link, end)!r}")

    def node_of(path: str, node: str):
        if node not in s.nodes:
            return [(path, f"unknown node {node!r}")]
        return []

    for kind, table in kinds.items():
        for name, spec in table.items():
            yield from node_of(f"{_plural(kind)}.{name}.node", spec.node)

    g = s.graph()

    def hop(path: str, a: str, b: str, what: str):
        if a in g and b in g and not nx.has_path(g, a, b):
            yield (path, f"{what}: node {b!r} is unreachable from node {a!r} on the plant graph")

    for name, src in s.sources.items():
        p = f"sources.{name}"
        if src.to not in s.buffers:
            yield (f"{p}.to", f"unknown buffer {src.to!r}")
        else:
            yield from hop(f"{p}.to", src.node, s.buffers[src.to].node, f"buffer {src.to!r}")
        prods = [src.product] if src.product else list(src.product_mix or {})
        for prod in prods:
            if prod not in s.products:
                field = "product" if src.product else f"product_mix.{prod}"
                yield (f"{p}.{field}", f"unknown product {prod!r}")
    if not s.sources and not s.order_books:
        yield ("sources", "give at least one source or order book")
    for name, book in s.order_books.items():
        p = f"order_books.{name}"
        if book.to not in s.buffers:
            yield (f"{p}.to", f"unknown buffer {book.to!r}")
        else:
            yield from hop(f"{p}.to", book.node, s.buffers[book.to].node, f"buffer {book.to!r}")
            if book.work_s_per_unit is None and not any(
                    e.input == book.to for e in s.equipment.values()):
                yield (f"{p}.work_s_per_unit", f"no equipment takes from {book.to!r} to "
                       "estimate it from: give it")
        for i, o in enumerate(book.orders):
            if o.product not in s.products:
                yield (f"{p}.orders[{i}].product", f"unknown product {o.product!r}")
        a = book.arrivals
        if a is not None:
            for prod in [a.product] if a.product else list(a.product_mix or {}):
                if prod not in s.products:
                    field = "product" if a.product else f"product_mix.{prod}"
                    yield (f"{p}.arrivals.{field}", f"unknown product {prod!r}")
    fed = {}
    for name, eq in s.equipment.items():
        p = f"equipment.{name}"
        if eq.input not in s.buffers:
            yield (f"{p}.input", f"unknown buffer {eq.input!r}")
        else:
            if eq.input in fed:
                yield (f"{p}.input", f"buffer {eq.input!r} already feeds {fed[eq.input]!r}")
            fed[eq.input] = name
            yield from hop(f"{p}.input", s.buffers[eq.input].node, eq.node,
                           f"buffer {eq.input!r}")
        targets = eq.branches()
        for i, (to, _) in enumerate(targets):
            tp = f"{p}.next" if isinstance(eq.next, str) else f"{p}.next[{i}].to"
            yield from _target(s, g, tp, eq.node, to, hop)
        if eq.reject_to is not None:
            if eq.reject_to not in s.sinks:
                yield (f"{p}.reject_to", f"unknown sink {eq.reject_to!r}")
            else:
                yield from hop(f"{p}.reject_to", eq.node, s.sinks[eq.reject_to].node,
                               f"sink {eq.reject_to!r}")
        if eq.output is not None and eq.output.product not in s.products:
            yield (f"{p}.output.product", f"unknown product {eq.output.product!r}")
    for name, line in s.continuous_lines.items():
        p = f"continuous_lines.{name}"
        if line.output not in s.buffers:
            yield (f"{p}.output", f"unknown buffer {line.output!r}")
        else:
            yield from hop(f"{p}.output", line.node, s.buffers[line.output].node,
                           f"buffer {line.output!r}")
        if line.product not in s.products:
            yield (f"{p}.product", f"unknown product {line.product!r}")
        flow = line.mass_flow_kg_s()
        for fname, f in line.feeders.items():
            fp = f"{p}.feeders.{fname}"
            if f.refill_from not in s.buffers:
                yield (f"{fp}.refill_from", f"unknown buffer {f.refill_from!r}")
                continue
            if f.refill_from in fed:
                yield (f"{fp}.refill_from",
                       f"buffer {f.refill_from!r} already feeds {fed[f.refill_from]!r}")
            fed[f.refill_from] = f"{name}.{fname}"
            yield from hop(f"{fp}.refill_from", s.buffers[f.refill_from].node, line.node,
                           f"buffer {f.refill_from!r}")
            if f.refill_request == "controller" and (s.fleet is None or not any(
                    dest == f.refill_from for _, _, dest in transport_hops(s))):
                yield (f"{fp}.refill_request", "controller-requested refills need robots "
                       f"carrying containers to {f.refill_from!r} (a fleet and a store at "
                       "another node)")
            if f.refill_rate_kg_s <= f.mass_fraction * flow:
                yield (f"{fp}.refill_rate_kg_s", f"must exceed the feed rate "
                       f"{f.mass_fraction * flow:.6g} kg/s (press draw × mass_fraction)")
            for src_name, src in s.sources.items():
                if src.to == f.refill_from:
                    for prod in [src.product] if src.product else list(src.product_mix or {}):
                        if prod in s.products and s.products[prod].mass_kg <= 0:
                            yield (f"products.{prod}.mass_kg", "a refill container needs a "
                                   f"mass (it is emptied into feeder {fname!r})")
    yield from _fleet_errors(s)
    for name, arm in s.arms.items():
        yield from node_of(f"arms.{name}.node", arm.node)
        for i, e in enumerate(arm.equipment):
            if e not in s.equipment:
                yield (f"arms.{name}.equipment[{i}]", f"unknown equipment {e!r}")
    yield from _fault_errors(s)
    feeding = ({src.to for src in s.sources.values()}
               | {to for eq in s.equipment.values() for to, _ in eq.branches()}
               | {line.output for line in s.continuous_lines.values()}
               | {book.to for book in s.order_books.values()})
    for b in s.buffers:
        if b not in fed:
            yield (f"buffers.{b}", "no equipment takes from this buffer (set it as an input)")
        if b not in feeding:
            yield (f"buffers.{b}", "nothing feeds this buffer (no source or equipment sends to it)")
    yield from routing_errors(s)


def routing_errors(s: Scenario):
    """Yield ``(path, message)`` for equipment whose units can never leave the plant: every
    buffer a unit can be sent to must lead, by routes of positive probability, to a sink or to
    a continuous line's feeder (which consumes it). Otherwise units circulate for ever (a
    ``next`` that is the equipment's own input, or a cycle of buffers with no way out)."""
    taken = {eq.input for eq in s.equipment.values()}
    exits = set(s.sinks) | {f.refill_from for line in s.continuous_lines.values()
                            for f in line.feeders.values()}
    exits |= set(s.buffers) - taken  # a dead end, reported as "no equipment takes from" it
    g = nx.DiGraph()  # buffer or sink -> where the equipment taking from it sends units
    for eq in s.equipment.values():
        g.add_node(eq.input)
        for to, prob in eq.branches():
            if prob > 0:
                g.add_edge(eq.input, to)
        if eq.reject_to is not None and eq.reject_probability > 0:
            g.add_edge(eq.input, eq.reject_to)
    out = set()
    for x in exits & set(g):
        out |= nx.ancestors(g, x) | {x}
    for name, eq in s.equipment.items():
        if eq.input not in s.buffers or eq.input in out:
            continue
        if any(to not in s.buffers and to not in s.sinks for to, _ in eq.branches()):
            continue  # a dangling name, reported above
        field = f"equipment.{name}.next"
        if [to for to, _ in eq.branches()] == [eq.input]:
            yield (field, f"{eq.next!r} is this equipment's own input: its units can never "
                   "leave (routing loop)")
        else:
            yield (field, f"units taken from buffer {eq.input!r} can never reach a sink: every "
                   "route leads back into the same buffers (routing loop with no way out)")


def _fault_errors(s: Scenario):
    """Each scripted fault's target exists and fits its mode."""
    robots = [f"amr-{i + 1}" for i in range(s.fleet.count)] if s.fleet else []
    chargers = sorted(n for n, spec in s.nodes.items() if spec.role == "charger")
    for i, f in enumerate(s.faults):
        p = f"faults[{i}].target"
        t, mode = f.target, f.mode
        if mode == "breakdown":
            if t not in s.equipment and t not in s.continuous_lines:
                yield (p, f"breakdown: unknown equipment or continuous line {t!r}")
            elif t in s.continuous_lines and f.reaction == "abort":
                yield (f"faults[{i}].reaction", "a continuous line breaks down with "
                       "reaction = \"hold\" only")
        elif mode in ("robot_stall", "battery_fade"):
            if t not in robots:
                yield (p, f"{mode}: unknown robot {t!r}" + (f"; robots: {', '.join(robots)}"
                                                            if robots else "; no [fleet]"))
        elif mode == "charger_outage":
            if t not in chargers:
                yield (p, f"charger_outage: {t!r} is not a node with role = \"charger\""
                       + (f" (chargers: {', '.join(chargers)})" if chargers else ""))
        elif mode in ("sensor_dropout", "sensor_drift"):
            if t not in s.continuous_lines:
                yield (p, f"{mode}: unknown continuous line {t!r}")
            elif s.continuous_lines[t].pat is None:
                yield (p, f"{mode}: continuous line {t!r} has no [pat] sensor")
        elif mode in ("feeder_refill_failure", "oos_raw_material_lot"):
            line, _, feeder = t.partition(".")
            if line not in s.continuous_lines or feeder not in s.continuous_lines[line].feeders:
                yield (p, f"{mode}: target must be <continuous line>.<feeder>, got {t!r}")
            elif mode == "oos_raw_material_lot" and \
                    s.continuous_lines[line].feeders[feeder].component != "api":
                yield (p, f"{mode}: feeder {feeder!r} does not feed the API")
        elif t != "controller":
            yield (p, f"{mode}: the target is \"controller\"")


def transport_hops(s: Scenario) -> list[tuple[str, str, str]]:
    """(origin entity, origin node, destination buffer) for every hop a robot must carry."""
    hops = []
    for name, src in s.sources.items():
        if src.to in s.buffers and not s.conveyor_joined(src.node, s.buffers[src.to].node):
            hops.append((name, src.node, src.to))
    for name, eq in s.equipment.items():
        for to, _ in eq.branches():
            if to in s.buffers and not s.conveyor_joined(eq.node, s.buffers[to].node):
                hops.append((name, eq.node, to))
    for name, line in s.continuous_lines.items():
        to = line.output
        if to in s.buffers and not s.conveyor_joined(line.node, s.buffers[to].node):
            hops.append((name, line.node, to))
    return hops


def _fleet_errors(s: Scenario):
    f = s.fleet
    if f is None:
        return
    lanes = s.graph(lanes_only=True)
    for i, h in enumerate(f.homes):
        if h not in s.nodes:
            yield (f"fleet.homes[{i}]", f"unknown node {h!r}")
        elif s.nodes[h].role not in ROBOT_HOME_ROLES:
            yield (f"fleet.homes[{i}]", f"node {h!r} has role {s.nodes[h].role!r}; a home must "
                   f"be one of {', '.join(ROBOT_HOME_ROLES)}")
    if f.payload_kg is not None:
        for name, prod in s.products.items():
            if prod.mass_kg > f.payload_kg:
                yield (f"products.{name}.mass_kg", f"{prod.mass_kg:g} kg is more than a robot "
                       f"carries (fleet.payload_kg = {f.payload_kg:g})")
    chargers = [n for n, spec in s.nodes.items() if spec.role == "charger"]
    if not chargers:
        yield ("fleet", "a fleet needs at least one node with role = \"charger\"")
    ports = sorted({n for _, n, _ in transport_hops(s)} |
                   {s.buffers[b].node for _, _, b in transport_hops(s)})
    ports = [n for n in ports if n in s.nodes]  # unknown nodes are reported elsewhere
    homes = [h for h in f.homes[: f.count] if h in s.nodes]
    must = sorted(set(ports) | set(homes) | set(chargers))
    if not must:
        return
    root = ports[0] if ports else must[0]
    unreachable = [n for n in must if not (nx.has_path(lanes, root, n)
                                           and nx.has_path(lanes, n, root))]
    if unreachable:
        yield ("fleet", f"robots cannot drive both ways between {root!r} and node(s) "
               f"{', '.join(repr(n) for n in unreachable)} (ports, homes and chargers must all "
               "be reachable from each other over lanes)")


def _target(s: Scenario, g, path: str, origin: str, to: str, hop):
    if to in s.buffers:
        yield from hop(path, origin, s.buffers[to].node, f"buffer {to!r}")
    elif to in s.sinks:
        yield from hop(path, origin, s.sinks[to].node, f"sink {to!r}")
    else:
        yield (path, f"unknown buffer or sink {to!r}")


def _plural(kind: str) -> str:
    return {"buffer": "buffers", "sink": "sinks", "equipment": "equipment",
            "source": "sources", "continuous line": "continuous_lines",
            "order book": "order_books"}[kind]


# --- job shop -----------------------------------------------------------------------------
def _jobshop_schedulers() -> list[str]:
    from darkfab.control.dispatching import RULES
    return ["cpsat", *sorted(RULES)]


JOBSHOP_SCHEDULERS = _jobshop_schedulers()
"""``cpsat`` (the optimizer) and every registered dispatching rule."""


class JobShopMeta(Strict):
    """``[scenario]`` of a job-shop scenario: no warm-up; the run ends when the last job does,
    or at ``horizon_s`` (a cap) with a partial result."""

    name: FolderName
    description: str = ""
    seed: Annotated[int, Field(ge=0)] = 0  # CP-SAT's random seed
    horizon_s: PositiveFloat | None = None


class JobShopSpec(Strict):
    """``[jobshop]``: a job-shop instance (deterministic times, no transport) and how the
    machines are sequenced."""

    instance: Annotated[str, Field(min_length=1)]  # shipped name (ft06, ft10) or a file path
    scheduler: str = "cpsat"  # cpsat or a dispatching rule (fifo, spt, edd, cr, atc, ...)
    time_limit_s: PositiveFloat = 60.0  # CP-SAT wall-clock limit
    deterministic_time_limit: PositiveFloat | None = None  # CP-SAT work limit; default 1/40 of it
    num_workers: PositiveInt = 2  # CP-SAT threads
    deterministic: bool = True  # CP-SAT interleaved deterministic search
    hint_rule: str | None = "mwkr"  # dispatching rule of CP-SAT's warm start
    time_unit_s: PositiveFloat = 1.0  # simulated seconds per instance time unit
    due_date_allowance: PositiveFloat = 1.5  # TWK due dates d_j = allowance * work of job j
    atc_k: PositiveFloat = 2.0  # ATC look-ahead parameter

    @field_validator("scheduler")
    @classmethod
    def _scheduler(cls, v: str) -> str:
        if v not in JOBSHOP_SCHEDULERS:
            raise PydanticCustomError("scheduler", f"unknown scheduler {v!r}; known: "
                                      + ", ".join(JOBSHOP_SCHEDULERS))
        return v

    @field_validator("hint_rule")
    @classmethod
    def _hint(cls, v: str | None) -> str | None:
        if v is not None and v not in JOBSHOP_SCHEDULERS[1:]:
            raise PydanticCustomError("hint_rule", f"unknown dispatching rule {v!r}; known: "
                                      + ", ".join(JOBSHOP_SCHEDULERS[1:]))
        return v


class JobShopScenario(Strict):
    """A job-shop scenario: ``[scenario]`` and ``[jobshop]``, no plant tables."""

    scenario: JobShopMeta
    jobshop: JobShopSpec


def jobshop_errors(s: JobShopScenario):
    """Yield ``(path, message)`` if the instance cannot be found or parsed."""
    from darkfab.control.jobshop import JobShopFormatError, load_instance, shipped_instances

    from .toml_input import MAX_FILE_BYTES

    inst = s.jobshop.instance
    if inst not in shipped_instances():
        try:  # a regular file of bounded size: never /dev/zero, a FIFO or a 10 GB file
            if not Path(inst).is_file():
                yield ("jobshop.instance", f"no shipped instance or file {inst!r}")
                return
            if Path(inst).stat().st_size > MAX_FILE_BYTES:
                yield ("jobshop.instance", f"{inst}: the file is larger than the limit of "
                       f"{MAX_FILE_BYTES:,} bytes")
                return
        except (OSError, ValueError) as e:  # ValueError: a NUL in the name
            yield ("jobshop.instance", f"{inst!r}: {e}")
            return
    try:
        load_instance(inst)
    except FileNotFoundError:
        yield ("jobshop.instance", f"no shipped instance or file {inst!r}")
    except (JobShopFormatError, OSError, UnicodeDecodeError, ValueError) as e:
        yield ("jobshop.instance", f"{inst}: {e}")
