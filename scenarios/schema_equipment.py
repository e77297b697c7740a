"""The discrete material flow of a scenario: products, buffers, sources, order books, sinks
and equipment (PackML units with routes, failures and rejects).

Part of :mod:`darkfab.scenarios.schema` (which exports every name); see there.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Discriminator, Field, PositiveInt, Tag, field_validator, model_validator
from pydantic_core import PydanticCustomError

from darkfab.factory.packml import ACTING_STATES, MANDATORY_STATES, State

from .schema_base import Name, NonNegativeFloat, PositiveFloat, Strict
from .schema_distributions import Distribution

__all__ = ["Product", "BufferSpec", "SourceSpec", "ScriptedOrder", "OrderArrivals",
           "OrderBookSpec", "SinkSpec", "Branch", "OutputSpec", "FailureMode", "ActingStateName",
           "StateName", "EquipmentSpec"]


def _name_or_list(v) -> str | None:
    if isinstance(v, str):
        return "next-name"
    if isinstance(v, list):
        return "next-branches"
    return None


class Product(Strict):
    description: str = ""
    mass_kg: NonNegativeFloat = 0.0  # per unit; counts against a robot's payload_kg


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
