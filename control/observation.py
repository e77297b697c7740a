"""What a controller sees: frozen snapshots of the plant and the events that woke it.

The plant (``darkfab.scenarios.control_loop``) builds these; controllers only read them. Numeric
levels may have passed through a sensor model (delay, noise, dropout): a reading lost to dropout
is ``None``, a noisy level is a float that may not be an integer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from darkfab.factory.packml import State

__all__ = ["Event", "EVENT_KINDS", "EquipmentObs", "BufferObs", "RobotObs", "QualityObs",
           "Observation", "PlantInfo", "EquipmentInfo", "LineObs", "OrderObs", "OrderBookInfo",
           "FeederObs", "FeederInfo", "LotObs", "LotView", "AlarmObs", "Reading",
           "ProcessValues", "SetPointInfo"]

EVENT_KINDS = frozenset({"start", "state", "fault", "repaired", "starved", "blocked",
                         "command_rejected", "command_lost", "timer", "inspection",
                         "order", "order_release", "order_complete",
                         # fault recovery and containment
                         "watchdog", "quality", "lot",
                         # alarms (ISA-18.2)
                         "alarm", "alarm_cleared"})
"""``start``: the run begins, or the controller is back after an outage (detail ``resume``;
source ``plant``); ``state``: a unit entered a PackML state
(detail: the state); ``fault``: a failure mode struck (detail: its name); ``repaired``: it was
repaired; ``starved`` / ``blocked``: a unit suspended itself for lack of input / output room;
``command_rejected``: a command of this controller was refused (detail: the reason; delivered
with the next decision, it never wakes the controller by itself); ``command_lost``: a command
was lost on its way to the unit (detail: the command; a communication fault); ``timer``: a
:class:`~darkfab.control.commands.WakeUp` fell due; ``inspection``: a condition-monitoring
reading of a continuous line's press is in the observation (``Observation.lines``; source: the
line); ``order`` / ``order_release`` / ``order_complete``: a customer order arrived in an order
book, started to be released, or left the plant (source: the book; detail: the order id; the
order is in ``Observation.orders`` until it completes);
``watchdog``: a unit made no progress for the scenario's ``controller.watchdog_s`` — in
Execute or Suspend* without completing anything, or Holding/Held/Aborting/Aborted (source: the
unit; detail ``"<state> <seconds> s"``), once per stall; ``quality``: the quality system suspects
a raw-material lot (source: the continuous line; detail: the raw-material lot) after an
out-of-spec PAT excursion the line's model does not explain, or an out-of-spec QC assay of a unit
containing it; ``lot``: a continuous line added a unit to an output lot (source: the output lot,
detail: the line), its records are in ``Observation.lots`` (the topic ``lot:suspect`` wakes a
controller on ``lot`` events only once the quality system has named a suspect lot in the run);
``alarm`` / ``alarm_cleared``: an alarm was raised / returned to normal (source: the alarm's
source — a unit, robot, charger, line unit or ``plant``; detail ``"<id> <condition>: <text>"``,
the id to :class:`~darkfab.control.commands.Acknowledge` it); the active alarms are in
``Observation.alarms``. A controller's ``wakes_on`` may name ``alarm:<priority>`` /
``alarm_cleared:<priority>`` (e.g. ``alarm:critical``) to be woken by those of one priority
only, as ``state:<State>`` does for states."""


@dataclass(frozen=True, slots=True)
class Event:
    time_s: float
    kind: str
    source: str  # unit, robot or "plant"
    detail: str = ""

    @property
    def topic(self) -> str:
        """``kind``, or ``state:<State>`` for state events (what ``wakes_on`` filters on)."""
        return f"state:{self.detail}" if self.kind == "state" else self.kind


@dataclass(frozen=True, slots=True)
class Reading:
    """A process value as an instrument reports it: value, engineering unit, and the time of
    the reading (s; a sensor's reading may be older than the observation)."""

    value: float
    unit: str
    time_s: float


class ProcessValues(Mapping[str, Reading]):
    """A unit's process values, read-only: name → :class:`Reading`. Holds the values as
    ``(value, unit, time_s)`` triples taken when the observation was made, and makes each
    :class:`Reading` when it is looked up (a controller reads a few of the many)."""

    __slots__ = ("_raw",)

    def __init__(self, raw: Mapping[str, tuple[float, str, float]]) -> None:
        # unpacked: a value that is not a (value, unit, time) triple fails here, in the plant
        self._raw = {k: (v, u, t) for k, (v, u, t) in raw.items()}

    def __getitem__(self, name: str) -> Reading:
        return Reading(*self._raw[name])

    def copy(self) -> dict[str, Reading]:
        """A plain dict of the readings (as ``MappingProxyType.copy`` gives)."""
        return dict(self.items())

    def __or__(self, other: Mapping[str, Reading]) -> dict[str, Reading]:
        return self.copy() | dict(other)

    def __ror__(self, other: Mapping[str, Reading]) -> dict[str, Reading]:
        return dict(other) | self.copy()

    def __reversed__(self):
        return reversed(self._raw)

    def __contains__(self, name: object) -> bool:
        return name in self._raw

    def __iter__(self):
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)

    def __repr__(self) -> str:
        return f"ProcessValues({dict(self.items())!r})"


@dataclass(frozen=True, slots=True)
class SetPointInfo:
    """A set-point a controller may change with ``SetPoint(unit, name, value)``: engineering
    unit and allowed range (a value outside it is rejected)."""

    name: str
    unit: str
    low: float
    high: float


@dataclass(frozen=True, slots=True)
class EquipmentObs:
    name: str
    state: State
    mode: str  # PackML unit mode: Production, Maintenance, Manual or user-defined
    condition: str  # producing, starved, blocked, down, stopped or planned_downtime
    queue_units: float | None  # units in the input buffer (sensor reading)
    alarms: tuple[str, ...]  # failure modes active now (struck and not yet repaired)
    faults: int  # failures so far in this run
    units_out: int  # units produced after warm-up
    units_good: int  # of which not rejected
    values: Mapping[str, Reading] = field(  # process values (units of continuous lines)
        default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True, slots=True)
class BufferObs:
    name: str
    level_units: float | None  # sensor reading
    capacity_units: int | None  # None: unbounded


@dataclass(frozen=True, slots=True)
class RobotObs:
    name: str
    position: str  # a node, or "lane:<a>-<b>" while driving
    state: str  # idle, travel_empty, travel_loaded, loading, charging, ...
    soc: float | None  # state of charge, fraction (sensor reading)
    job: str | None  # kind of the current job (transport, charge, park) or None


@dataclass(frozen=True, slots=True)
class LineObs:
    """A continuous line with a punch-wear model (``darkfab.factory.wear``): its state and a
    condition-monitoring reading of the press."""

    name: str
    state: str  # Execute, Held or Suspended
    operating_h: float  # operating hours on the present punches
    force_drift_kn: float  # measured compression-force drift (the wear symptom)
    wear_estimate: float  # wear estimated from the measured drift
    rul_h: float  # remaining useful life from the estimate, operating hours
    in_maintenance: bool


# --- quality records: output lots and their raw-material lots (issue #5) ----------------------
@dataclass(frozen=True, slots=True)
class LotObs:
    """An output lot (batch) of a continuous line as the quality system records it: the
    raw-material lots in its units (from the units' genealogy) and the QC assays of its units.
    Fractions are of mass."""

    lot: str
    line: str
    units: int  # units made so far
    mass_kg: float
    raw_lots: Mapping[str, float]  # raw-material lot -> mass fraction in the lot so far
    peak_fraction: Mapping[str, float]  # raw-material lot -> highest fraction in one unit
    last_seen_s: Mapping[str, float]  # raw-material lot -> time of the latest unit with it
    latest_unit: Mapping[str, float]  # raw-material lot -> fraction in the latest unit
    assayed: int  # units whose QC sample was assayed (all, at-line, when the unit is made)
    out_of_spec: int  # of which out of spec (content uniformity of the accepted material)
    content_min_pct: float  # lowest / highest predicted mean API content of a unit, % of
    content_max_pct: float  # label claim (the line's model: blind to a lot's potency)
    disposition: str  # open, quarantined, released or diverted


class LotView(Mapping[str, LotObs]):
    """Read-only view of the plant's lot records (a quality system / MES): output lot ->
    :class:`LotObs`, built when read (a frozen copy as of the decision), plus the reverse
    genealogy query :meth:`containing`. The plant maintains the records in O(lots per unit)
    per unit made; a controller only reads them."""

    __slots__ = ("_r",)

    def __init__(self, records: Any = None) -> None:
        self._r = records

    def __getitem__(self, lot: str) -> LotObs:
        if self._r is None:
            raise KeyError(lot)
        r = self._r.lots[lot]
        return LotObs(r.lot, r.line, r.units, r.mass_kg,
                      MappingProxyType({k: v / r.mass_kg for k, v in r.raw_kg.items()}),
                      MappingProxyType(dict(r.peak)), MappingProxyType(dict(r.last_seen)),
                      MappingProxyType(r.latest), r.assayed, r.out_of_spec, 100.0 * r.cmin, 100.0 * r.cmax,
                      self._r.disposition(lot))

    def __iter__(self):
        return iter(()) if self._r is None else iter(self._r.lots)

    def __len__(self) -> int:
        return 0 if self._r is None else len(self._r.lots)

    def containing(self, raw_lot: str, min_fraction: float = 0.0) -> tuple[str, ...]:
        """Output lots with a unit that holds ``raw_lot`` at a mass fraction above
        ``min_fraction``, in order of first appearance."""
        if self._r is None:
            return ()
        return tuple(k for k, x in self._r.by_raw.get(raw_lot, {}).items() if x > min_fraction)

    def last_seen(self, raw_lot: str) -> float | None:
        """Time of the latest unit made with ``raw_lot`` in it (``None``: never)."""
        return None if self._r is None else self._r.last_seen.get(raw_lot)

    def raw_lot_index(self) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
        """Copies of the reverse genealogy behind :meth:`containing` (raw-material lot ->
        output lot -> highest mass fraction in one unit) and :meth:`last_seen` (raw-material
        lot -> time), e.g. to send the view over a network."""
        if self._r is None:
            return {}, {}
        return ({k: dict(v) for k, v in self._r.by_raw.items()}, dict(self._r.last_seen))


_NO_LOTS = LotView()


@dataclass(frozen=True, slots=True)
class OrderObs:
    """An open customer order (arrived, not complete) of an order book."""

    id: str
    book: str
    product: str
    quantity: int  # units
    weight: float
    arrival_s: float
    due_s: float
    released_units: int
    status: str  # waiting, releasing or released (all units in the plant)
    release_start_s: float  # nan while waiting


@dataclass(frozen=True, slots=True)
class FeederObs:
    """A loss-in-weight feeder of a continuous line (name ``<line>.<feeder>``): its load-cell
    reading and the containers on their way to its refill dock."""

    name: str
    mass_kg: float  # hopper mass now
    low_level_kg: float  # a refill starts here when a container is at the dock
    high_level_kg: float
    feed_rate_kg_s: float  # now (0 while the line is stopped)
    mode: str  # gravimetric, refill or starved
    containers_at_dock: int
    containers_coming: int  # requested or carried, not yet at the dock


@dataclass(frozen=True, slots=True)
class AlarmObs:
    """An active alarm (ISA-18.2) as the alarm list shows it; see ``darkfab.factory.alarms``.
    Priorities: critical, high, medium, low."""

    id: int  # acknowledge it by this id
    source: str  # unit, robot, charger node, line unit or "plant"
    condition: str  # machine name: a failure mode, "battery_fade", "controller_offline", ...
    priority: str
    text: str
    raised_s: float
    acknowledged: bool


@dataclass(frozen=True, slots=True)
class QualityObs:
    units_completed: int  # good units that left the plant after warm-up
    units_scrapped: int  # rejected or scrapped after warm-up


def _frozen(d: Mapping | None = None) -> Mapping:
    return MappingProxyType(dict(d or {}))


@dataclass(frozen=True, slots=True)
class Observation:
    """A snapshot of the plant at ``time_s`` (the time of the reading, not of the decision when
    the sensor model delays observations)."""

    time_s: float
    equipment: Mapping[str, EquipmentObs] = field(default_factory=_frozen)
    buffers: Mapping[str, BufferObs] = field(default_factory=_frozen)
    robots: Mapping[str, RobotObs] = field(default_factory=_frozen)
    quality: QualityObs = QualityObs(0, 0)
    lines: Mapping[str, LineObs] = field(default_factory=_frozen)
    orders: Mapping[str, OrderObs] = field(default_factory=_frozen)
    feeders: Mapping[str, FeederObs] = field(default_factory=_frozen)
    # --- quality records (issue #5): output lots of continuous lines, read-only -----------
    lots: LotView = field(default_factory=lambda: _NO_LOTS)
    # --- alarms (ISA-18.2): the active alarms, id -> AlarmObs in raising order -------------
    alarms: Mapping[int, AlarmObs] = field(default_factory=_frozen)


@dataclass(frozen=True, slots=True)
class EquipmentInfo:
    name: str
    input: str  # input buffer
    servers: int
    failure_modes: tuple[str, ...]
    failure_reactions: tuple[str, ...]  # hold or abort, one per failure mode
    outputs: tuple[str, ...] = ()  # buffers and sinks it sends units to (incl. rejects)
    batch_size: int = 1  # units loaded per cycle
    routes: tuple[tuple[str, float], ...] = ()  # (buffer or sink, initial weight) per branch
    alternative_routes: bool = False  # the branches lead to equivalent (parallel) equipment


@dataclass(frozen=True, slots=True)
class OrderBookInfo:
    """An order book: the buffer it releases into, the expected bottleneck work per released
    unit and changeover between products (s), its CONWIP limit (orders in process)."""

    name: str
    buffer: str
    work_s_per_unit: float
    changeover_s: float
    max_orders_in_process: int


@dataclass(frozen=True, slots=True)
class FeederInfo:
    """A feeder's refill logistics: containers of ``container_kg`` come from ``store`` (the
    origin to name in a ``TransportRequest``) to ``dock``; ``refill_request`` is ``kanban``
    (robots bring one whenever the dock has room) or ``controller`` (only when asked)."""

    name: str
    line: str
    dock: str
    store: str
    container_kg: float
    refill_request: str


@dataclass(frozen=True)
class PlantInfo:
    """The static plant a controller is reset for. ``rng`` is the controller's own named
    random stream (``controller.rng``): a stochastic policy draws from it and nothing else."""

    equipment: Mapping[str, EquipmentInfo]
    buffers: tuple[str, ...]
    robots: tuple[str, ...]
    sources: tuple[str, ...]
    horizon_s: float
    warmup_s: float
    rng: np.random.Generator = field(default_factory=lambda: np.random.Generator(
        np.random.PCG64(0)), compare=False, repr=False)
    extra: Mapping[str, Any] = field(default_factory=_frozen)
    order_books: Mapping[str, OrderBookInfo] = field(default_factory=_frozen)
    feeders: Mapping[str, FeederInfo] = field(default_factory=_frozen)
    # --- material flow (issue #5): what feeds what, for controlled shutdowns ---------------
    feeds: Mapping[str, tuple[str, ...]] = field(default_factory=_frozen)
    """Source, unit, continuous line or buffer -> the buffers, units, lines and sinks it passes
    material to (a source to its buffer, a buffer to the units and lines taking from it, a unit
    to its outputs, a line to its output buffer)."""

    setpoints: Mapping[str, Mapping[str, SetPointInfo]] = field(default_factory=_frozen)
    """Unit -> the set-points it takes (continuous lines and their units)."""

    def upstream(self, unit: str) -> list[str]:
        """Sources, units and lines upstream of ``unit``, farthest first (buffers left out)."""
        back: dict[str, list[str]] = {}
        for a, bs in self.feeds.items():
            for b in bs:
                back.setdefault(b, []).append(a)
        dist = {unit: 0}
        frontier = [unit]
        while frontier:
            nxt = []
            for x in frontier:
                for p in back.get(x, ()):
                    if p not in dist:
                        dist[p] = dist[x] + 1
                        nxt.append(p)
            frontier = nxt
        return sorted((x for x in dist if x != unit and x not in self.buffers),
                      key=lambda x: (-dist[x], x))
