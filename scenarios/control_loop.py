"""The plant side of the policy API: observe, call the controller, validate and apply commands.

:class:`ControlLoop` subscribes to every unit; the events a controller subscribed to
(``wakes_on``) are collected over one simulated instant, then the controller's ``decide`` is
called once with them and a frozen :class:`~darkfab.control.Observation`, built at that instant
(:mod:`~darkfab.scenarios.observing`) and, with a sensor model, delivered ``delay_s`` later.
The returned commands are applied ``decision_latency_s`` later, each by its handler
(:mod:`~darkfab.scenarios.commanding`): validated first (target exists, PackML guards,
interlocks, supported by this plant), logged as ``command`` (or ``command_rejected`` with the
reason, also reported back to the controller with its next events). A row of a command applied
after its decision ends in ``"; decided <t> s"``.

A controller that raises, returns something other than a list of commands or livelocks
(more than :data:`MAX_DECISIONS_PER_INSTANT` decisions in one simulated instant) is a
*controller fault*: logged (``controller_fault``), the plant is brought to a safe state (sources
stop, every unit is commanded Stop where PackML allows it, robots finish what they are doing),
and after every unit is Stopped or Aborted — or ``safe_stop_s`` at the latest — the run ends
with :class:`~darkfab.control.ControllerFault`. The loop measures recovery time: from a unit's
fault to the unit back in Execute.

Other events: ``watchdog`` (:mod:`~darkfab.scenarios.watchdog`), ``quality`` and ``lot`` from
the plant's quality records (:mod:`darkfab.agents.quality`; the topic ``lot:suspect`` passes
``lot`` events only once a raw-material lot is suspect), ``inspection`` of a line with a
punch-wear model, order-book events, ``alarm`` / ``alarm_cleared`` from the plant's alarm
system (ISA-18.2; detail ``"<id> <condition>: <text>"``).

Communication faults (scripted by a fault campaign, :mod:`darkfab.scenarios.faults`): while
the controller is *offline* (:meth:`ControlLoop.set_offline`) it gets no events and commands in
transit are lost; when it comes back it is woken with a ``start`` event (detail ``resume``) and
a fresh observation. *Extra latency* delays the commands decided while it lasts; *command
loss* drops each command applied while it lasts with a probability (its own random stream):
the plant logs ``command_lost`` and, after :data:`ACK_TIMEOUT_S` without acknowledgement,
posts a ``command_lost`` event to the controller so that it can retry. The loop raises these
alarms itself: ``controller_offline`` (source ``plant``, high; cleared when it is back),
``command_lost`` (source: the command's target, medium; cleared when a later command to that
target is applied) and ``command_latency`` (source ``plant``, low; cleared by the next command
applied on time).
"""

from __future__ import annotations

import math
import traceback
from collections import deque
from collections.abc import Mapping
from typing import Any

import numpy as np

from darkfab.agents.equipment import Equipment
from darkfab.agents.flow import Source
from darkfab.control import Controller, ControllerFault, Event, PlantInfo
from darkfab.control.observation import FeederInfo, LotView, Observation
from darkfab.factory.buffers import Buffer
from darkfab.factory.kpis import LogHistogram
from darkfab.factory.packml import Command, State

from .commanding import UNSUPPORTED, CommandHandler, UnitRefusal, handlers_for
from .communication import ACK_TIMEOUT_S, ALARM_JOURNAL, CommunicationFaults
from .line_control import LineControl
from .observing import Observer, SensorModel, feeder_infos, material_flow, plant_info
from .watchdog import Watchdog

__all__ = ["ControlLoop", "SensorModel", "MAX_DECISIONS_PER_INSTANT", "ACK_TIMEOUT_S",
           "material_flow", "feeder_infos"]

MAX_DECISIONS_PER_INSTANT = 10_000
"""More decisions than this at one simulated time is a livelock: a controller fault."""

_STATE_TOPIC = {s.value: f"state:{s.value}" for s in State}
_SAFE = frozenset({State.STOPPED, State.ABORTED})
_SAFETY = "safety"


class ControlLoop(CommunicationFaults):
    """Connects one controller to the plant (see the module docstring)."""

    def __init__(self, model, controller: Controller, name: str, *,
                 equipment: Mapping[str, Equipment], buffers: Mapping[str, Buffer],
                 sources: Mapping[str, Source], robots: Mapping[str, Any] | None = None,
                 horizon_s: float, decision_latency_s: float = 0.0, sensor_delay_s: float = 0.0,
                 sensors: SensorModel | None = None, safe_stop_s: float = 600.0,
                 info_extra: Mapping[str, Any] | None = None,
                 lines: Mapping[str, Any] | None = None, watchdog_s: float = 0.0,
                 quality: Any = None, containment: Any = None,
                 feeds: Mapping[str, tuple[str, ...]] | None = None,
                 order_books: Mapping[str, Any] | None = None,
                 alternative_routes: frozenset[str] = frozenset(),
                 fleet: Any = None, staging: dict[str, Any] | None = None,
                 feeders: Mapping[str, FeederInfo] | None = None) -> None:
        self.model = model
        self.env = model.env
        self.controller = controller
        self.name = name
        self.equipment = dict(equipment)
        self.buffers = dict(buffers)
        self.sources = dict(sources)
        self.robots = dict(robots or {})
        self.order_books = dict(order_books or {})
        self.alternative_routes = alternative_routes
        self.fleet = fleet
        self.staging = staging if staging is not None else {}  # the plant's: shared, not copied
        self.transport_requests = 0
        # continuous lines with a punch-wear model: observed (Observation.lines) and maintained
        self.lines = {n: ln for n, ln in (lines or {}).items() if ln.wear is not None}
        self.line_control = LineControl(lines or {}, self._post)
        self.feeders = dict(feeders or {})
        self.maintenance_commands = 0
        self.horizon_s = horizon_s
        self.latency = decision_latency_s
        self.sensor_delay = sensor_delay_s
        self.sensors = sensors
        self.safe_stop_s = safe_stop_s
        self._info_extra = info_extra or {}
        wakes = getattr(controller, "wakes_on", None)
        self._wakes = None if wakes is None else frozenset(wakes)
        # run state
        self._pending: list[Event] = []
        self._feedback: list[Event] = []
        self._scheduled = False
        self._alarms: dict[str, list[str]] = {n: [] for n in self.equipment}
        self._fault_since: dict[str, float] = {}
        self.recovery = LogHistogram()
        self.decisions = 0
        self.commands = 0
        self.rejected = 0
        self.unsupported = 0
        self.fault: ControllerFault | None = None
        self._instant = -1.0
        self._instant_decisions = 0
        self._halting = False
        # communication faults
        self._offline = False
        self._extra_latency = 0.0
        self._loss: tuple[float, np.random.Generator] | None = None
        self.events_missed = 0
        self.commands_lost = 0
        self.fault_listeners: list = []  # fn(kind, detail) when the plant notices a fault
        self._missed_alarms: deque[Event] = deque(maxlen=ALARM_JOURNAL)  # while offline
        # --- fault recovery and containment (issue #5) ---------------------------------------
        self.quality = quality  # darkfab.agents.quality.QualityRecords or None
        self.containment = containment  # darkfab.agents.quality.Containment or None
        self._feeds = dict(feeds or {})
        self.watchdog_s = watchdog_s
        self.watchdog = Watchdog(self.env, self.equipment, watchdog_s, model.log.record,
                                 name, self._on_watchdog, self._live) if watchdog_s > 0 else None
        self.lot_commands = 0
        stations = {f"{n}.{st.name}": (ln, st) for n, ln in (lines or {}).items()
                    for st in ln.stations if f"{n}.{st.name}" in self.feeders}
        self.observer = Observer(self, sensors, stations, LotView(quality))
        self.handlers: dict[type, CommandHandler] = handlers_for(self)
        self._decided = ""  # "; decided <t> s" while applying commands decided earlier
        self.last_rejection = ""  # the reason of the latest command rejected (its log detail)

    @classmethod
    def for_plant(cls, plant) -> "ControlLoop":
        """The loop for a built :class:`~darkfab.scenarios.builder.Plant` and its scenario's
        ``[controller]`` section."""
        spec = plant.scenario.controller
        model = plant.model
        sensors, delay = None, 0.0
        if spec.sensors is not None:
            sn = spec.sensors
            delay = sn.delay_s
            if sn.noise_sd_units > 0 or sn.dropout_probability > 0:
                streams = model.streams
                sensors = SensorModel(
                    sn.noise_sd_units, sn.dropout_probability,
                    streams.stream("controller.sensors.noise") if sn.noise_sd_units > 0 else None,
                    streams.stream("controller.sensors.dropout")
                    if sn.dropout_probability > 0 else None)
        name = getattr(plant.controller, "name", None) or spec.name
        return cls(model, plant.controller, str(name), equipment=plant.equipment,
                   buffers=plant.buffers, sources=plant.sources, robots=plant.robots,
                   horizon_s=plant.scenario.scenario.horizon_s,
                   decision_latency_s=spec.decision_latency_s, sensor_delay_s=delay,
                   sensors=sensors, safe_stop_s=spec.safe_stop_s, lines=plant.lines,
                   watchdog_s=spec.watchdog_s, quality=getattr(plant, "quality", None),
                   containment=getattr(plant, "containment", None),
                   feeds=material_flow(plant.scenario),
                   order_books=plant.order_books,
                   alternative_routes=frozenset(n for n, e in plant.scenario.equipment.items()
                                                if e.alternative_routes),
                   fleet=plant.fleet, staging=plant.staging, feeders=feeder_infos(plant))

    # --- start ----------------------------------------------------------------------------
    def plant_info(self) -> PlantInfo:
        """The static plant facts given to the controller's ``reset``."""
        return plant_info(self, self._feeds, self._info_extra)

    def start(self) -> None:
        """Subscribe to the units, reset the controller and wake it with a ``start`` event."""
        for eq in self.equipment.values():
            eq.subscribe(self._on_unit)
        for book in self.order_books.values():
            book.listeners.append(self._on_order)
        self.line_control.start(lambda: self.env.now)
        self.model.alarms.subscribe(self._on_alarm)
        try:
            self.controller.reset(self.plant_info())
        except Exception as e:  # noqa: BLE001 - a controller fault, not a crash
            self._controller_fault(e, "reset")
            return
        self._post(Event(self.env.now, "start", "plant"))
        for ln in self.lines.values():
            self.env.process(self._inspect(ln))
        if self.quality is not None:
            self.quality.listeners.append(self._on_quality)
        if self.watchdog is not None:
            for eq in self.equipment.values():
                self.watchdog.on_state(eq.name, eq.sm.state.value)

    def _inspect(self, line):
        """Wake the controller with an ``inspection`` event of ``line`` every
        ``inspection_s`` (condition monitoring of the press)."""
        while True:
            yield self.env.timeout(line.inspection_s)
            if self.fault is not None or self._halting:
                return
            if self._wakes is None or "inspection" in self._wakes:
                self._post(Event(self.env.now, "inspection", line.name))

    # --- events ---------------------------------------------------------------------------
    def _on_unit(self, eq: Equipment, kind: str, detail: str) -> None:
        name = eq.name
        if kind == "state":
            if self.watchdog is not None:
                self.watchdog.on_state(name, detail)
            if self._fault_since and detail == "Execute" and name in self._fault_since:
                t0 = self._fault_since.pop(name)
                if t0 >= self.model.warmup_s:
                    self.recovery.add(self.env.now - t0)
            if self._halting:
                self._check_safe()
                return
            topic = _STATE_TOPIC[detail]
            wakes = self._wakes
            if wakes is not None and topic not in wakes and "state" not in wakes:
                if detail == "Suspended":
                    self._on_suspended(eq)
                return
            self._post(Event(self.env.now, "state", name, detail))
            if detail == "Suspended":
                self._on_suspended(eq)
            return
        if kind == "fault":
            self._alarms[name].append(detail)
            self._fault_since.setdefault(name, self.env.now)
        elif kind == "repaired":
            if detail in self._alarms[name]:
                self._alarms[name].remove(detail)
        if self._halting:
            return
        if self._wakes is None or kind in self._wakes:
            self._post(Event(self.env.now, kind, name, detail))

    def active_faults(self, unit: str) -> tuple[str, ...]:
        """The failure modes of ``unit`` (a discrete unit) active now, in order of onset; empty
        for a name that is not a discrete unit."""
        return tuple(self._alarms.get(unit, ()))

    def _live(self) -> bool:
        """No controller fault and not halting: the loop still posts events."""
        return self.fault is None and not self._halting

    def post_if_running(self, event: Event) -> None:
        """Queue ``event`` for the controller unless the loop has stopped (controller fault)."""
        if self._live():
            self._post(event)

    def _on_watchdog(self, now: float, unit: str, detail: str) -> None:
        if self._wakes is None or "watchdog" in self._wakes:
            self._post(Event(now, "watchdog", unit, detail))

    def _on_alarm(self, kind: str, alarm) -> None:
        """An alarm was raised or cleared (acknowledgements are the controller's own)."""
        if kind == "alarm_acknowledged" or self.fault is not None or self._halting:
            return
        wakes = self._wakes
        if wakes is None or kind in wakes or f"{kind}:{alarm.priority}" in wakes:
            event = Event(self.env.now, kind, alarm.source,
                          f"{alarm.id} {alarm.condition}: {alarm.text}")
            if self._offline:  # the alarm journal: replayed when the controller is back
                self._missed_alarms.append(event)
            else:
                self._post(event)

    def _on_order(self, book, kind: str, order) -> None:
        """An order arrived, started or completed in ``book``."""
        if self._halting:
            return
        if self._wakes is None or kind in self._wakes:
            self._post(Event(self.env.now, kind, book.name, order.id))

    def _on_quality(self, kind: str, source: str, detail: str) -> None:
        if self.fault is not None or self._halting:
            return
        wakes = self._wakes
        if wakes is None or kind in wakes or (
                kind == "lot" and "lot:suspect" in wakes and self.quality.suspects):
            self._post(Event(self.env.now, kind, source, detail))

    def _on_suspended(self, eq: Equipment) -> None:
        reason = eq.suspend_reason
        if self._wakes is None or reason in self._wakes:
            self._post(Event(self.env.now, reason, eq.name))

    def _post(self, event: Event) -> None:
        if self._offline:  # the controller hears nothing
            self.events_missed += 1
            return
        self._pending.append(event)
        if not self._scheduled:
            self._scheduled = True
            # at the end of the current instant, outside the units' own callbacks
            self.env.timeout(0).callbacks.append(self._observe)

    def _observe(self, _ev=None) -> None:
        self._scheduled = False
        if self.fault is not None:
            return
        events = self._feedback + self._pending
        self._feedback, self._pending = [], []
        obs = self.observer.observe()
        if self.sensor_delay > 0:
            self.env.timeout(self.sensor_delay).callbacks.append(
                lambda _e: self._decide(events, obs))
        else:
            self._decide(events, obs)

    def observe(self) -> Observation:
        """A snapshot of the plant now (through the sensor model, if any)."""
        return self.observer.observe()

    # --- decisions ------------------------------------------------------------------------
    def _decide(self, events: list[Event], obs: Observation) -> None:
        if self.fault is not None or self._halting or self._offline:
            return
        now = self.env.now
        if now != self._instant:
            self._instant, self._instant_decisions = now, 0
        self._instant_decisions += 1
        if self._instant_decisions > MAX_DECISIONS_PER_INSTANT:
            self._controller_fault(RuntimeError(
                f"livelock: more than {MAX_DECISIONS_PER_INSTANT} decisions at one instant"),
                "decide")
            return
        self.decisions += 1
        try:
            cmds = self.controller.decide(tuple(events), obs)
            if not isinstance(cmds, (list, tuple)):
                raise TypeError(f"decide() returned {type(cmds).__name__}, not a list of "
                                "commands")
        except Exception as e:  # noqa: BLE001 - a controller fault, not a crash
            self._controller_fault(e, "decide")
            return
        self.dispatch(list(cmds), now)

    def dispatch(self, cmds: list, decided_s: float) -> None:
        """Send the commands of a decision taken at ``decided_s`` (now, or earlier in this
        instant) on their way: applied after the decision latency (plus any extra latency of
        a communication fault), or at once. ``decide`` does this with the controller's
        answer; a controller outside the process (:mod:`~darkfab.scenarios.remote_control`)
        answers later in the same instant through this method."""
        if not cmds:
            return
        now = decided_s
        latency = self.latency + self._extra_latency
        if latency > 0:
            if self._extra_latency > 0:
                self.env.timeout(latency).callbacks.append(
                    lambda _e: self._apply_late(cmds, latency, now))
            else:
                self.env.timeout(latency).callbacks.append(
                    lambda _e: self._apply_all(cmds, decided_s=now))
        else:
            self._apply_all(cmds, decided_s=now)

    # --- commands ----------------------------------------------------------------------
    def _handler(self, cmd: Any) -> CommandHandler | None:
        """The handler of ``cmd``'s class (or of the nearest registered base class)."""
        for t in type(cmd).__mro__:
            h = self.handlers.get(t)
            if h is not None:
                return h
        return None

    def _target(self, cmd: Any) -> str:
        h = self._handler(cmd)
        return "plant" if h is None else h.target(cmd)

    def apply(self, cmd: Any, issuer: str | None = None, decided_s: float | None = None
              ) -> bool:
        """Validate ``cmd`` and apply it if legal now; log it either way (see
        :mod:`~darkfab.scenarios.commanding`). ``decided_s``: when the controller decided it;
        if earlier than now, the log row's detail ends in ``"; decided <t> s"``."""
        issuer = issuer or self.name
        self.commands += 1
        now = self.env.now
        self._decided = "" if decided_s is None or decided_s == now else \
            f"; decided {_seconds(decided_s)} s"
        try:
            label = type(cmd).__name__
            h = self._handler(cmd)
            if h is None:
                return self._reject("plant", label, "not a darkfab command", issuer)
            why = h.check(cmd)
            if why is None:
                why = h.apply(cmd, issuer)
                if why is None:
                    return True
            if why == UNSUPPORTED:
                self.unsupported += 1
            return self._reject(h.target(cmd), label, why, issuer)
        finally:
            self._decided = ""

    def log_command(self, entity: str, what: str, cmd: Any, issuer: str) -> None:
        """Log an accepted command: a ``command`` row, detail ``"<what>[: <reason>]"`` and,
        for a command decided earlier, ``"; decided <t> s"``."""
        reason = getattr(cmd, "reason", "")
        self.model.log.record(self.env.now, "command", entity, -1, "", issuer,
                              what + (f": {reason}" if reason else "") + self._decided)

    def _reject(self, entity: str, label: str, reason: str, issuer: str) -> bool:
        self.rejected += 1
        if isinstance(reason, UnitRefusal):  # the unit has logged it
            detail = str(reason)
        else:
            detail = f"{label}: {reason}"
            self.model.log.record(self.env.now, "command_rejected", str(entity), -1, "",
                                  issuer, detail + self._decided)
        self.last_rejection = detail
        self._feedback.append(Event(self.env.now, "command_rejected", str(entity), detail))
        return False

    # --- controller fault -----------------------------------------------------------------
    def _controller_fault(self, exc: BaseException, where: str) -> None:
        now = self.env.now
        frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
        at = f" ({frame.filename.rsplit('/', 1)[-1]}:{frame.lineno})" if frame else ""
        cause = f"{where}() raised {type(exc).__name__}: {exc}{at}"
        self.fault = ControllerFault(self.name, now, cause)
        self.model.log.record(now, "controller_fault", self.name, -1, "", self.name, cause)
        self._halting = True
        self._pending.clear()
        for src in (*self.sources.values(), *self.order_books.values()):
            src.stop()
        for n, eq in self.equipment.items():
            if eq.sm.target(Command.STOP) is not None:
                eq.command(Command.STOP, issuer=_SAFETY)
        self.env.timeout(self.safe_stop_s).callbacks.append(self._halt)
        self._check_safe()

    def _check_safe(self) -> None:
        if all(eq.sm.state in _SAFE for eq in self.equipment.values()):
            self.env.timeout(0).callbacks.append(self._halt)

    def _halt(self, _ev=None) -> None:
        raise self.fault  # type: ignore[misc]  # ends env.run(); the runner writes the results

    # --- results --------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        r = self.recovery
        return {
            "name": self.name,
            "decisions": self.decisions,
            "commands": self.commands,
            "commands_rejected": self.rejected,
            "commands_unsupported": self.unsupported,
            "transport_requests": self.transport_requests,
            "recovery_time_s": {"mean": r.mean(), "p95": r.quantile(0.95), "n": r.n,
                                "max": r.max if r.n else math.nan},
            "faults_unrecovered": len(self._fault_since),
            "events_missed_offline": self.events_missed,
            "commands_lost": self.commands_lost,
            "watchdog_events": 0 if self.watchdog is None else self.watchdog.events,
            "lot_commands": self.lot_commands,
            "fault": None if self.fault is None else str(self.fault),
        }


def _seconds(t: float) -> str:
    """Simulated seconds to the microsecond, without trailing zeros."""
    return f"{t:.6f}".rstrip("0").rstrip(".")
