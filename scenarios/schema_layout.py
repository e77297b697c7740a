"""The plant's layout and its robots: nodes, links (lanes and conveyors), layouts read from
files or generated as a grid, the AMR fleet with its batteries and stalls, and robot arms.

Part of :mod:`darkfab.scenarios.schema` (which exports every name); see there.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, PositiveInt, model_validator
from pydantic_core import PydanticCustomError

from .schema_base import (MAX_COORDINATE_M, Coordinate, Name, NonNegativeFloat, PositiveFloat,
                          Strict)
from .schema_distributions import Distribution

__all__ = ["ROBOT_HOME_ROLES", "Node", "Link", "BatterySpec", "GridSpec", "LayoutSpec",
           "StallSpec", "FleetSpec", "ArmSpec"]


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
