"""Scenario file schema: frozen, strict pydantic models with units in field names.

Every table forbids unknown keys; cross-references (buffers, sinks, nodes, products) and the
reachability of every material hop on the plant graph are checked after the fields, each problem
reported with its own field path.

The schema is split by concept into sibling modules, each re-exported here (import from
``darkfab.scenarios.schema``): ``schema_base`` (the strict base model, finite quantities,
names), ``schema_distributions``, ``schema_equipment`` (products, buffers, sources, order books,
sinks, equipment), ``schema_layout`` (nodes, links, fleet, arms), ``schema_line_units``,
``schema_twin`` and ``schema_line`` (continuous lines), ``schema_faults``,
``schema_references`` (the checks across tables) and ``schema_jobshop``. This module holds the
scenario's own tables (``[scenario]``, ``[controller]``, ``[alarms]``, ``[verification]``) and
:class:`Scenario`.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

import networkx as nx
from pydantic import Field, PositiveInt, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from .schema_base import (MAX_COORDINATE_M, Coordinate, FiniteFloat, FolderName, Name,
                          NonNegativeFloat, PositiveFloat, Strict)
from .schema_distributions import (DIST_TAGS, NORMAL_MIN_WINDOW_MASS, UNION_TAGS,
                                   CoefficientOfVariation, Constant, Distribution, Empirical,
                                   Exponential, Gamma, Lognormal, Normal, Triangular, Uniform,
                                   Weibull)
from .schema_equipment import (ActingStateName, Branch, BufferSpec, EquipmentSpec, FailureMode,
                               OrderArrivals, OrderBookSpec, OutputSpec, Product, ScriptedOrder,
                               SinkSpec, SourceSpec, StateName)
from .schema_faults import (FAULT_MODES, BatteryFadeFault, BreakdownFault, ChargerOutageFault,
                            CommandLatencyFault, CommandLossFault, Fault,
                            FeederRefillFailureFault, OosLotFault, RobotStallFault,
                            SensorDriftFault, SensorDropoutFault, SupervisorOutageFault)
from .schema_jobshop import (JOBSHOP_SCHEDULERS, JobShopMeta, JobShopScenario, JobShopSpec,
                             jobshop_errors)
from .schema_layout import (ROBOT_HOME_ROLES, ArmSpec, BatterySpec, FleetSpec, GridSpec,
                            LayoutSpec, Link, Node, StallSpec)
from .schema_line import (ContinuousLineSpec, LineDisturbanceSpec, LineQualitySpec,
                          LineReleaseSpec)
from .schema_line_units import (BlenderSpec, FeederSpec, LoopsSpec, PatSpec, PressHopperSpec,
                                PressSpec, PunchWearSpec)
from .schema_references import reference_errors, routing_errors, transport_hops
from .schema_twin import (InstrumentsSpec, LineLoggingSpec, LotVariationSpec, MismatchSpec,
                          TracerSpec)

__all__ = ["Scenario", "Distribution", "DIST_TAGS", "UNION_TAGS", "reference_errors",
           "PositiveFloat", "NonNegativeFloat", "FiniteFloat", "Coordinate", "MAX_COORDINATE_M",
           "FolderName", "NORMAL_MIN_WINDOW_MASS", "routing_errors",
           "Fault", "FAULT_MODES", "VerificationSpec", "AlarmSpec",
           "transport_hops", "JobShopMeta", "JobShopSpec", "JobShopScenario", "jobshop_errors",
           "JOBSHOP_SCHEDULERS", "GridSpec", "LayoutSpec"]

PARTS = ("schema_base", "schema_distributions", "schema_equipment", "schema_layout",
         "schema_line_units", "schema_twin", "schema_line", "schema_faults",
         "schema_references", "schema_jobshop")
"""The sibling modules of the schema, by name (``json_schema.field_comments`` reads their
source with this module's)."""


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

