"""The plant side of the policy API: observe, call the controller, validate and apply commands.

:class:`ControlLoop` subscribes to every unit; the events a controller subscribed to
(``wakes_on``) are collected over one simulated instant, then the controller's ``decide`` is
called once with them and a frozen :class:`~darkfab.control.Observation` — built at that
instant and, with a sensor model, delivered ``delay_s`` later with noise on numeric levels and
readings lost to dropout (named random streams ``controller.sensors.noise`` and
``controller.sensors.dropout``). The returned commands are applied ``decision_latency_s`` later,
each validated first (target exists, PackML guards, interlocks, supported by this plant);
rejected ones are logged as ``command_rejected`` with the reason and reported back to the
controller with its next events.

A controller that raises, returns something other than a list of commands or livelocks
(more than :data:`MAX_DECISIONS_PER_INSTANT` decisions in one simulated instant) is a
*controller fault*: logged (``controller_fault``), the plant is brought to a safe state (sources
stop, every unit is commanded Stop where PackML allows it, robots finish what they are doing),
and after every unit is Stopped or Aborted — or ``safe_stop_s`` at the latest — the run ends
with :class:`~darkfab.control.ControllerFault`.

It also measures recovery time: from a unit's fault to the unit back in Execute.

Fault recovery and containment (issue #5): a **watchdog** (one lazily re-armed timer per unit,
no polling) posts a ``watchdog`` event when a unit has completed nothing for ``watchdog_s`` in
Execute or Suspend*, or has stayed in Holding/Held/Aborting/Aborted that long, once per stall;
the plant's **quality records** (:mod:`darkfab.agents.quality`) post ``quality`` (a suspect
raw-material lot) and ``lot`` (a unit added to an output lot) events and are readable as
``Observation.lots``; ``Quarantine`` / ``Release`` / ``Divert`` are applied to lots at the
product sinks, ``PackMLCommand`` Stop / Start to sources (stop / resume releasing). A command's
non-empty ``reason`` is logged in its ``command`` row's detail, ``"<command>: <reason>"``.

Communication faults (scripted by a fault campaign, :mod:`darkfab.scenarios.faults`): while
the controller is *offline* (:meth:`ControlLoop.set_offline`) it gets no events and commands in
transit are lost; when it comes back it is woken with a ``start`` event (detail ``resume``) and
a fresh observation. *Extra latency* delays the commands decided while it lasts; *command
loss* drops each command applied while it lasts with a probability (its own random stream):
the plant logs ``command_lost`` and, after :data:`ACK_TIMEOUT_S` without acknowledgement,
posts a ``command_lost`` event to the controller so that it can retry.

Alarms (ISA-18.2, ``model.alarms``): the loop subscribes to the plant's alarm system and posts
``alarm`` and ``alarm_cleared`` events (source: the alarm's source; detail
``"<id> <condition>: <text>"``); ``Observation.alarms`` holds the active alarms; an
:class:`~darkfab.control.commands.Acknowledge` is applied through
:meth:`~darkfab.factory.alarms.AlarmSystem.acknowledge` (refused: ``command_rejected`` with the
reason). The loop raises the communication alarms itself: ``controller_offline`` (source
``plant``, high; cleared when it is back), ``command_lost`` (source: the command's target,
medium; cleared when a later command to that target is applied) and ``command_latency``
(source ``plant``, low; cleared by the next command applied on time).
"""

from __future__ import annotations

import math
import traceback
from collections import deque
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import numpy as np

from darkfab.agents.equipment import Equipment
from darkfab.agents.flow import Source
from darkfab.control import (COMMAND_TYPES, AlarmObs, BufferObs, ChangeMode, Controller,
                             ControllerFault, EquipmentInfo, EquipmentObs, Event, Observation,
                             PackMLCommand, PlantInfo, QualityObs, RobotObs, WakeUp)
from darkfab.control.commands import (Acknowledge, Charge, Dispatch, Divert, Maintenance,
                                      Quarantine, Release, Sequence, SetPoint, TransportRequest)
from darkfab.control.observation import (FeederInfo, FeederObs, LineObs, LotView, OrderBookInfo,
                                         OrderObs)
from darkfab.control.release import RuleRelease
from darkfab.control.dispatching import RULES
from darkfab.factory.buffers import Buffer
from darkfab.factory.kpis import LogHistogram
from darkfab.factory.packml import Command, State
from darkfab.factory.transport import Staging

from .line_control import LineControl

__all__ = ["ControlLoop", "SensorModel", "MAX_DECISIONS_PER_INSTANT"]

MAX_DECISIONS_PER_INSTANT = 10_000
"""More decisions than this at one simulated time is a livelock: a controller fault."""

_STATE_TOPIC = {s.value: f"state:{s.value}" for s in State}
_INTERLOCKED = frozenset({Command.RESET, Command.START, Command.UNHOLD, Command.UNSUSPEND,
                          Command.CLEAR})
"""Commands that lead back towards Execute: refused while a fault of the unit is active."""
_SAFE = frozenset({State.STOPPED, State.ABORTED})
_SAFETY = "safety"
ALARM_JOURNAL = 10_000
"""Alarm events kept for a controller while it is offline (the oldest are dropped)."""
ACK_TIMEOUT_S = 5.0
"""A command neither applied nor refused within this time is reported lost."""
_WD_CLASS = {State.EXECUTE.value: "run", State.SUSPENDING.value: "run",
             State.SUSPENDED.value: "run", State.UNSUSPENDING.value: "run",
             State.HOLDING.value: "down", State.HELD.value: "down",
             State.ABORTING.value: "down", State.ABORTED.value: "down"}
"""Watched states: working (progress expected) and down (a repair expected)."""
_WORKING = ("busy", "setup")


class SensorModel:
    """Noise (normal, sd in units) on numeric levels and per-reading dropout."""

    def __init__(self, noise_sd_units: float, dropout_probability: float,
                 noise: np.random.Generator | None, dropout: np.random.Generator | None) -> None:
        self.sd = noise_sd_units
        self.p = dropout_probability
        self._noise = noise
        self._dropout = dropout

    def level(self, x: float) -> float | None:
        if self.p > 0 and self._dropout.random() < self.p:  # type: ignore[union-attr]
            return None
        if self.sd > 0:
            return max(0.0, x + self.sd * self._noise.standard_normal())  # type: ignore[union-attr]
        return x

    def reading(self, x: float) -> float | None:
        """A non-level reading (state of charge): dropout only."""
        if self.p > 0 and self._dropout.random() < self.p:  # type: ignore[union-attr]
            return None
        return x


class ControlLoop:
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
        self.line_control = LineControl(lines or {}, self._post, model.log.record)
        self.feeders = dict(feeders or {})
        self._stations = {f"{n}.{st.name}": (ln, st) for n, ln in (lines or {}).items()
                          for st in ln.stations if f"{n}.{st.name}" in self.feeders}
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
        self.fault_listeners: list = []
        self._missed_alarms: deque[Event] = deque(maxlen=ALARM_JOURNAL)  # fn(kind, detail) when the plant notices a fault
        # --- fault recovery and containment (issue #5) ---------------------------------------
        self.quality = quality  # darkfab.agents.quality.QualityRecords or None
        self.containment = containment  # darkfab.agents.quality.Containment or None
        self._lots = LotView(quality)
        self._feeds = dict(feeds or {})
        self.watchdog_s = watchdog_s
        self._wd_class: dict[str, str | None] = {n: None for n in self.equipment}
        self._wd_since: dict[str, float] = {n: 0.0 for n in self.equipment}
        self._wd_armed: set[str] = set()
        self._wd_fired: dict[str, float] = {}
        self.watchdog_events = 0
        self.lot_commands = 0

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
        eq = {n: EquipmentInfo(n, e.input.name, e.servers, tuple(f.name for f in e.failures),
                               tuple(f.reaction for f in e.failures),
                               routes=tuple(zip(e.router.names, e.router.weights)),
                               alternative_routes=n in self.alternative_routes,
                               outputs=tuple(x for x in self._feeds.get(n, ()) if x != n),
                               batch_size=e.batch_size)
              for n, e in self.equipment.items()}
        eq.update(self.line_control.equipment_info())
        books = {n: OrderBookInfo(n, b.to.name, b.work_s_per_unit, b.changeover_s,
                                  b.max_in_process) for n, b in self.order_books.items()}
        return PlantInfo(MappingProxyType(eq), tuple(self.buffers), tuple(self.robots),
                         tuple(self.sources), self.horizon_s, self.model.warmup_s,
                         self.model.streams.stream("controller.rng"),
                         MappingProxyType(dict(self._info_extra)),
                         order_books=MappingProxyType(books),
                         feeders=MappingProxyType(self.feeders),
                         feeds=MappingProxyType(dict(self._feeds)),
                         setpoints=MappingProxyType(self.line_control.setpoint_info()))

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
        if self.watchdog_s > 0:
            for eq in self.equipment.values():
                self._wd_state(eq.name, eq.sm.state.value)

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
            if self.watchdog_s > 0:
                self._wd_state(name, detail)
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
            with _suppress_value_error():
                self._alarms[name].remove(detail)
        if self._halting:
            return
        if self._wakes is None or kind in self._wakes:
            self._post(Event(self.env.now, kind, name, detail))

    def _line_alarms(self, unit: str) -> tuple[str, ...]:
        """Conditions of the active alarms of a line unit (the line's own name: its own and its
        press's)."""
        ln = self.line_control.line_of[unit]
        sources = (ln.name, ln.press_unit.name) if unit == ln.name else (unit,)
        return tuple(a.condition for s in sources for a in self.model.alarms.active(s))

    def _on_alarm(self, kind: str, alarm) -> None:
        """An alarm was raised or cleared (acknowledgements are the controller's own)."""
        if kind == "alarm_acknowledged" or self.fault is not None or self._halting:
            return
        if self._wakes is None or kind in self._wakes:
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
        obs = self.observe()
        if self.sensor_delay > 0:
            self.env.timeout(self.sensor_delay).callbacks.append(
                lambda _e: self._decide(events, obs))
        else:
            self._decide(events, obs)

    # --- observation ----------------------------------------------------------------------
    def observe(self) -> Observation:
        """A snapshot of the plant now (through the sensor model, if any)."""
        m = self.model
        sens = self.sensors
        lvl = sens.level if sens is not None else _identity
        eq = {}
        for n, e in self.equipment.items():
            eq[n] = EquipmentObs(n, e.sm.state, e.sm.mode, e.condition.state,
                                 lvl(float(e.input.level)), tuple(self._alarms[n]), e.faults,
                                 e.units_out, e.units_good)
        eq.update(self.line_control.observe(self.env.now, self._line_alarms))
        bufs = {n: BufferObs(n, lvl(float(b.level)),
                          None if math.isinf(b.capacity) else int(b.capacity))
                for n, b in self.buffers.items()}
        robots = {}
        if self.robots:
            soc = sens.reading if sens is not None else _identity
            for n, r in self.robots.items():
                pos = r.node if r.node is not None else f"lane:{r.lane[1]}-{r.lane[2]}"
                robots[n] = RobotObs(n, pos, r.state, soc(r.battery.soc),
                                     None if r.job is None else r.job.kind)
        lines = {}
        for n, ln in self.lines.items():
            c = ln.condition()
            lines[n] = LineObs(n, ln.timer.state, c["operating_h"], c["force_drift_kn"],
                               c["wear_estimate"], c["rul_h"], c["in_maintenance"])
        orders = {}
        for bn, book in self.order_books.items():
            for o in book.known.values():
                orders[o.id] = OrderObs(o.id, bn, o.product, o.quantity, o.weight, o.arrival_s,
                                        o.due_s, o.released, o.status, o.release_start_s)
        feeders = {}
        now = self.env.now
        for fn, (ln, st) in self._stations.items():
            f, dock = st.feeder, st.refill_dock
            rate = f.setpoint_kg_s if ln.running and f.mode == "gravimetric" else 0.0
            mass = f.mass_kg if f.mode == "refill" else max(0.0, f.mass_kg - rate * (now - f.t))
            info = self.feeders[fn]
            sg = self.staging.get(f"{info.store}->{info.dock}")
            coming = dock.reserved + (sg.requested if sg is not None else 0)
            feeders[fn] = FeederObs(fn, mass, f.p.m_low_kg, f.p.m_high_kg, rate, f.mode,
                                    dock.level + (st.held_unit is not None), coming)
        alarms = {a.id: AlarmObs(a.id, a.source, a.condition, a.priority, a.text, a.raised_s,
                                 a.acknowledged_s is not None) for a in m.alarms.active()}
        return Observation(self.env.now, MappingProxyType(eq), MappingProxyType(bufs),
                           MappingProxyType(robots),
                           QualityObs(m.units_completed, m.units_scrapped),
                           MappingProxyType(lines), orders=MappingProxyType(orders),
                           feeders=MappingProxyType(feeders), lots=self._lots,
                           alarms=MappingProxyType(alarms))

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
        if not cmds:
            return
        cmds = list(cmds)
        latency = self.latency + self._extra_latency
        if latency > 0:
            if self._extra_latency > 0:
                self.env.timeout(latency).callbacks.append(
                    lambda _e: self._apply_late(cmds, latency))
            else:
                self.env.timeout(latency).callbacks.append(lambda _e: self._apply_all(cmds))
        else:
            self._apply_all(cmds)

    def _apply_late(self, cmds: list, latency: float) -> None:
        """Commands delayed by a latency fault: the plant notices the late acknowledgement."""
        self.model.alarms.raise_alarm(self.env.now, "plant", "command_latency",
                                      f"{len(cmds)} command(s) applied {latency:g} s after the "
                                      "decision", "low")
        for fn in self.fault_listeners:
            fn("command_latency", f"{latency:g} s")
        self._apply_all(cmds, late=True)

    def _apply_all(self, cmds: list, late: bool = False) -> None:
        if self.fault is not None:
            return
        if self._offline:  # lost in transit: the controller went offline
            self.commands_lost += len(cmds)
            for c in cmds:
                self.model.log.record(self.env.now, "command_lost", _target(c), -1, "",
                                      self.name, f"{type(c).__name__}: controller offline")
            return
        alarms = self.model.alarms
        now = self.env.now
        if not late:  # commands arrive on time again
            alarms.clear(now, "plant", "command_latency")
        loss = self._loss
        for c in cmds:
            if loss is not None and loss[1].random() < loss[0]:
                self._lose(c)
                continue
            alarms.clear(now, _target(c), "command_lost")  # the target hears commands again
            self.apply(c)

    def _lose(self, cmd: Any) -> None:
        self.commands_lost += 1
        target = _target(cmd)
        what = f"{type(cmd).__name__}" + (f" {Command(cmd.command).value}" if isinstance(cmd, PackMLCommand)
                                          else "")
        self.model.log.record(self.env.now, "command_lost", target, -1, "", self.name, what)

        def timeout(_e) -> None:
            self.model.alarms.raise_alarm(self.env.now, target, "command_lost",
                                          f"{what} not acknowledged within {ACK_TIMEOUT_S:g} s",
                                          "medium")
            for fn in self.fault_listeners:
                fn("command_lost", f"{target}: {what}")
            if self.fault is None and not self._halting:
                if self._wakes is None or "command_lost" in self._wakes:
                    self._post(Event(self.env.now, "command_lost", target, what))

        self.env.timeout(ACK_TIMEOUT_S).callbacks.append(timeout)

    # --- communication faults (fault campaigns) -------------------------------------------
    def set_offline(self, offline: bool) -> None:
        """Controller offline (no events, no commands) or back online (woken with ``start``,
        detail ``resume``, followed by the alarm events it missed, with their own times: at
        most :data:`ALARM_JOURNAL` of them)."""
        now = self.env.now
        self._offline = offline
        if offline:
            self._pending.clear()
            self.model.alarms.raise_alarm(now, "plant", "controller_offline",
                                          f"{self.name}: heartbeat lost", "high")
            for fn in self.fault_listeners:
                fn("controller_offline", self.name)
        else:
            if self.fault is None and not self._halting:
                self._post(Event(now, "start", "plant", "resume"))
                for e in self._missed_alarms:  # in order, with the times they happened
                    self._post(e)
            self._missed_alarms.clear()
            self.model.alarms.clear(now, "plant", "controller_offline")

    def set_extra_latency(self, extra_s: float) -> None:
        self._extra_latency = extra_s

    def set_command_loss(self, probability: float, rng: np.random.Generator | None) -> None:
        self._loss = None if rng is None or probability <= 0 else (probability, rng)

    def apply(self, cmd: Any, issuer: str | None = None) -> bool:
        """Validate ``cmd`` and apply it if legal now; log it either way."""
        issuer = issuer or self.name
        self.commands += 1
        if not isinstance(cmd, COMMAND_TYPES):
            return self._reject("plant", type(cmd).__name__, "not a darkfab command", issuer)
        label = type(cmd).__name__
        if isinstance(cmd, (PackMLCommand, SetPoint)) and cmd.unit in self.line_control:
            why = self.line_control.apply(cmd, issuer, self.env.now)
            return True if why is None else self._reject(cmd.unit, label, why, issuer)
        if isinstance(cmd, PackMLCommand):
            eq = self.equipment.get(cmd.unit)
            if eq is None and cmd.unit in self.sources:
                return self._command_source(cmd, issuer)
            if eq is None:
                return self._reject(cmd.unit, label, f"unknown unit {cmd.unit!r}", issuer)
            try:
                command = Command(cmd.command)
            except ValueError:
                return self._reject(cmd.unit, label, f"unknown PackML command {cmd.command!r}",
                                    issuer)
            if command in _INTERLOCKED and self._alarms[cmd.unit]:
                return self._reject(cmd.unit, label, f"interlock: {command.value} with active "
                                    f"fault {', '.join(self._alarms[cmd.unit])}", issuer)
            if cmd.reason and eq.sm.target(command) is not None:
                # as Equipment.command, with the reason in the log
                self.model.log.record(self.env.now, "command", eq.name, -1, "", issuer,
                                      f"{command.value}: {cmd.reason}")
                return eq.sm.command(command)
            if eq.command(command, issuer=issuer):  # the unit logs command / command_rejected
                return True
            self.rejected += 1
            self._feedback.append(Event(self.env.now, "command_rejected", cmd.unit,
                                        f"{command.value} in {eq.state.value}"))
            return False
        if isinstance(cmd, ChangeMode):
            eq = self.equipment.get(cmd.unit)
            if eq is None:
                return self._reject(cmd.unit, label, f"unknown unit {cmd.unit!r}", issuer)
            if eq.change_mode(cmd.mode, issuer=issuer):
                return True
            self.rejected += 1
            self._feedback.append(Event(self.env.now, "command_rejected", cmd.unit,
                                        f"mode {cmd.mode} in {eq.state.value}"))
            return False
        if isinstance(cmd, Acknowledge):
            return self._acknowledge(cmd, label, issuer)
        if isinstance(cmd, WakeUp):
            if not math.isfinite(cmd.at_s) or cmd.at_s < self.env.now:
                return self._reject("plant", label, f"time {cmd.at_s} is in the past", issuer)
            self.model.log.record(self.env.now, "command", "plant", -1, "", issuer,
                                  f"WakeUp {cmd.at_s:g} {cmd.tag}"
                                  + (f": {cmd.reason}" if cmd.reason else ""))
            tag = cmd.tag
            self.env.timeout(cmd.at_s - self.env.now).callbacks.append(
                lambda _e: self._post(Event(self.env.now, "timer", "plant", tag))
                if self.fault is None and not self._halting else None)
            return True
        if isinstance(cmd, (Dispatch, Sequence)) and cmd.unit in self.order_books:
            return self._apply_release(cmd, label, issuer)
        if isinstance(cmd, SetPoint) and cmd.unit in self.equipment and \
                cmd.name.startswith("route:"):
            why = self.equipment[cmd.unit].router.set_weight(cmd.name[len("route:"):],
                                                             cmd.value)
            if why is not None:
                return self._reject(cmd.unit, label, why, issuer)
            self.model.log.record(self.env.now, "command", cmd.unit, -1, "", issuer,
                                  f"SetPoint {cmd.name}={cmd.value:g}"
                                  + (f": {cmd.reason}" if cmd.reason else ""))
            return True
        if isinstance(cmd, TransportRequest) and self.fleet is not None:
            return self._apply_transport(cmd, label, issuer)
        if isinstance(cmd, Maintenance) and cmd.unit in self.lines:
            why = self.lines[cmd.unit].maintenance(cmd.kind, cmd.reason)
            if why is not None:
                return self._reject(cmd.unit, label, why, issuer)
            self.maintenance_commands += 1
            self.model.log.record(self.env.now, "command", cmd.unit, -1, "", issuer,
                                  f"Maintenance {cmd.kind}"
                                  + (f": {cmd.reason}" if cmd.reason else ""))
            return True
        if isinstance(cmd, (Quarantine, Release, Divert)) and self.containment is not None:
            return self._dispose(cmd, label, issuer)
        return self._unsupported(cmd, label, issuer)

    def _acknowledge(self, cmd: Acknowledge, label: str, issuer: str) -> bool:
        """Acknowledge an active alarm (ISA-18.2); logged as a ``command`` row of the alarm's
        source, detail ``"Acknowledge <id>[: <reason>]"``."""
        alarms = self.model.alarms
        a = alarms.get(cmd.alarm_id)
        why = alarms.refusal(cmd.alarm_id)
        if why is not None:
            return self._reject(a.source if a is not None else "plant", label, why, issuer)
        assert a is not None
        self.model.log.record(self.env.now, "command", a.source, -1, "", issuer,
                              f"Acknowledge {a.id}" + (f": {cmd.reason}" if cmd.reason else ""))
        alarms.acknowledge(self.env.now, a.id, issuer)
        return True

    def _apply_release(self, cmd: Dispatch | Sequence, label: str, issuer: str) -> bool:
        """A release rule or an order sequence for an order book."""
        book = self.order_books[cmd.unit]
        if isinstance(cmd, Dispatch):
            if cmd.rule not in RULES:
                return self._reject(cmd.unit, label, f"unknown dispatching rule {cmd.rule!r}",
                                    issuer)
            book.set_policy(RuleRelease(cmd.rule, book.work_s_per_unit))
            detail = f"Dispatch {cmd.rule}"
        else:
            unknown = [lot for lot in cmd.lots if lot not in book.known]
            if unknown:
                return self._reject(cmd.unit, label, "unknown or completed orders: "
                                    + ", ".join(map(str, unknown[:5])), issuer)
            if len(set(cmd.lots)) != len(cmd.lots):
                return self._reject(cmd.unit, label, "an order appears twice", issuer)
            book.set_priority(cmd.lots)
            detail = "Sequence " + " ".join(cmd.lots)
        self.model.log.record(self.env.now, "command", cmd.unit, -1, "", issuer,
                              detail + (f": {cmd.reason}" if cmd.reason else ""))
        return True

    def _apply_transport(self, cmd: TransportRequest, label: str, issuer: str) -> bool:
        """Move up to ``cmd.units`` units waiting in one buffer to another by robot: they leave
        the origin buffer (the first ones, FIFO) for a staging area ``origin=>destination`` at
        its node, from which the fleet carries them like any other transport."""
        st = self.staging.get(f"{cmd.origin}->{cmd.destination}")
        if st is not None and cmd.origin not in self.buffers:
            return self._request_from_staging(st, cmd, label, issuer)
        o, d = self.buffers.get(cmd.origin), self.buffers.get(cmd.destination)
        for name, b in ((cmd.origin, o), (cmd.destination, d)):
            if b is None:
                return self._reject(cmd.origin, label, f"unknown buffer {name!r}", issuer)
        assert o is not None and d is not None
        if o is d:
            return self._reject(cmd.origin, label, "origin and destination are the same",
                                issuer)
        if cmd.units < 1:
            return self._reject(cmd.origin, label, f"units must be >= 1, got {cmd.units}",
                                issuer)
        n = int(min(cmd.units, o.level, d.free))
        if n < 1:
            why = "origin is empty" if o.level == 0 else "no room at the destination"
            return self._reject(cmd.origin, label, why, issuer)
        if o.node != d.node and self.fleet._path(o.node, d.node) is None:
            return self._reject(cmd.origin, label, f"no lane from {o.node!r} to {d.node!r}",
                                issuer)
        st = self.staging.get(f"{cmd.origin}=>{cmd.destination}")
        if st is None:
            st = Staging(self.env, cmd.origin, o.node, d, 1 << 30, self.fleet.on_staged)
            st.name = f"{cmd.origin}=>{cmd.destination}"
            self.staging[st.name] = st
            _notify_fleet_of_space(d, self.fleet)
        now = self.env.now
        self.model.log.record(now, "command", cmd.origin, -1, "", issuer,
                              f"TransportRequest {cmd.destination} {n}"
                              + (f": {cmd.reason}" if cmd.reason else ""))
        for _ in range(n):
            unit = o.items.popleft()
            if o._on_level is not None:
                o._on_level(now, len(o.items))
            if not st.try_put(unit):
                st.put(unit)
        o._trigger_put(None)  # units waiting for room in the origin may enter now
        self.transport_requests += 1
        return True

    def _request_from_staging(self, st: Staging, cmd: TransportRequest, label: str,
                              issuer: str) -> bool:
        """Units a source or unit staged for a destination whose transports wait for the
        controller (``on_request``, e.g. planned feeder refills): ask the fleet for them."""
        if not st.on_request:
            return self._reject(cmd.origin, label, f"robots carry from {cmd.origin!r} to "
                                f"{cmd.destination!r} on their own (kanban)", issuer)
        if cmd.units < 1:
            return self._reject(cmd.origin, label, f"units must be >= 1, got {cmd.units}",
                                issuer)
        st.requested += cmd.units
        self.model.log.record(self.env.now, "command", cmd.origin, -1, "", issuer,
                              f"TransportRequest {cmd.destination} {cmd.units}"
                              + (f": {cmd.reason}" if cmd.reason else ""))
        self.transport_requests += 1
        self.fleet.on_staged(st)
        return True

    # --- fault recovery and containment (issue #5) ----------------------------------------
    def _dispose(self, cmd: Quarantine | Release | Divert, label: str, issuer: str) -> bool:
        """Apply a lot disposition at the product sinks (validated by the containment)."""
        c = self.containment
        lot = str(cmd.lot)
        fn = {Quarantine: c.quarantine, Release: c.release, Divert: c.divert}[type(cmd)]

        def accepted() -> None:  # logged before the held units it completes or scraps
            self.lot_commands += 1
            self.model.log.record(self.env.now, "command", lot, -1, "", issuer,
                                  label + (f": {cmd.reason}" if cmd.reason else ""))
        why = fn(lot, cmd.reason, accepted)
        if why is not None:
            return self._reject(lot, label, why, issuer)
        return True

    def _command_source(self, cmd: PackMLCommand, issuer: str) -> bool:
        """Stop a source (it releases nothing more) or Start it again."""
        src = self.sources[cmd.unit]
        try:
            command = Command(cmd.command)
        except ValueError:
            command = None
        if command is Command.STOP and not src.stopped:
            src.stop()
        elif command is Command.START and src.stopped:
            src.stopped = False
            src.start()
        else:
            what = cmd.command.value if isinstance(cmd.command, Command) else cmd.command
            return self._reject(cmd.unit, "PackMLCommand",
                                f"a source takes Stop (running) and Start (stopped), not "
                                f"{what} ({'stopped' if src.stopped else 'running'})", issuer)
        self.model.log.record(self.env.now, "command", src.name, -1, "", issuer,
                              command.value + (f": {cmd.reason}" if cmd.reason else ""))
        return True

    def _on_quality(self, kind: str, source: str, detail: str) -> None:
        if self.fault is not None or self._halting:
            return
        if self._wakes is None or kind in self._wakes:
            self._post(Event(self.env.now, kind, source, detail))

    def _wd_state(self, name: str, state: str) -> None:
        """Watchdog bookkeeping on a state change: the stall class and since when; arm the
        unit's timer if none is pending."""
        cls = _WD_CLASS.get(state)
        if cls != self._wd_class[name]:
            self._wd_class[name] = cls
            self._wd_since[name] = self.env.now
        if cls is not None and name not in self._wd_armed:
            self._wd_arm(name, self.env.now + self.watchdog_s)

    def _wd_arm(self, name: str, at: float) -> None:
        self._wd_armed.add(name)
        self.env.timeout(max(0.0, at - self.env.now)).callbacks.append(
            lambda _e: self._wd_fire(name))

    def _last_progress(self, eq: Equipment) -> float:
        """When the unit last completed work: now if a server is working, else the latest time
        a server stopped working (its status timers)."""
        if any(st in _WORKING for st in eq._status):
            return self.env.now
        return max(t.since for t in eq._server_time)

    def _wd_fire(self, name: str) -> None:
        self._wd_armed.discard(name)
        cls = self._wd_class[name]
        if cls is None or self.fault is not None or self._halting:
            return
        now = self.env.now
        since = self._wd_since[name]
        if cls == "run":
            since = max(since, self._last_progress(self.equipment[name]))
        due = since + self.watchdog_s
        if now < due - 1e-9 * max(1.0, due):
            self._wd_arm(name, due)
            return
        if self._wd_fired.get(name) == since:
            return  # reported; re-armed by the next state change
        self._wd_fired[name] = since
        self.watchdog_events += 1
        state = self.equipment[name].sm.state.value
        detail = f"{state} {now - since:g} s"
        self.model.log.record(now, "watchdog", name, -1, "", self.name, detail)
        if self._wakes is None or "watchdog" in self._wakes:
            self._post(Event(now, "watchdog", name, detail))

    def _unsupported(self, cmd: Any, label: str, issuer: str) -> bool:
        target = getattr(cmd, "unit", None) or getattr(cmd, "robot", None) or \
            getattr(cmd, "lot", None) or getattr(cmd, "origin", None) or "plant"
        if isinstance(cmd, (Dispatch, Sequence)) and cmd.unit not in self.equipment:
            return self._reject(target, label, f"unknown unit {cmd.unit!r}", issuer)
        if isinstance(cmd, Dispatch) and cmd.rule not in RULES:
            return self._reject(target, label, f"unknown dispatching rule {cmd.rule!r}", issuer)
        if isinstance(cmd, Charge) and cmd.robot not in self.robots:
            return self._reject(target, label, f"unknown robot {cmd.robot!r}", issuer)
        if isinstance(cmd, TransportRequest) and not self.robots:
            return self._reject(target, label, "no fleet in this plant", issuer)
        self.unsupported += 1
        return self._reject(target, label, "unsupported by this plant", issuer)

    def _reject(self, entity: str, label: str, reason: str, issuer: str) -> bool:
        self.rejected += 1
        self.model.log.record(self.env.now, "command_rejected", str(entity), -1, "", issuer,
                              f"{label}: {reason}")
        self._feedback.append(Event(self.env.now, "command_rejected", str(entity),
                                    f"{label}: {reason}"))
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
            "watchdog_events": self.watchdog_events,
            "lot_commands": self.lot_commands,
            "fault": None if self.fault is None else str(self.fault),
        }


def material_flow(s) -> dict[str, tuple[str, ...]]:
    """What feeds what in scenario ``s`` (see ``PlantInfo.feeds``)."""
    out: dict[str, dict[str, None]] = {}

    def edge(a: str, b: str) -> None:
        out.setdefault(a, {})[b] = None
    for n, src in s.sources.items():
        edge(n, src.to)
    for n, e in s.equipment.items():
        edge(e.input, n)
        for target, _ in e.branches():
            edge(n, target)
        if e.reject_to:
            edge(n, e.reject_to)
    for n, ln in s.continuous_lines.items():
        edge(n, ln.output)
        for f in ln.feeders.values():
            edge(f.refill_from, n)
    return {a: tuple(bs) for a, bs in out.items()}


def _target(cmd: Any) -> str:
    return str(getattr(cmd, "unit", None) or getattr(cmd, "robot", None) or "plant")


def feeder_infos(plant) -> dict[str, FeederInfo]:
    """The refill logistics of every feeder of the plant's continuous lines."""
    s = plant.scenario
    out = {}
    for ln, spec in s.continuous_lines.items():
        for fname, f in spec.feeders.items():
            st = next((x for x in plant.staging.values()
                       if x.destination.name == f.refill_from), None)
            store = st.origin if st is not None else ""
            src = s.sources.get(store)
            kg = s.products[src.product].mass_kg if src is not None and src.product else 0.0
            out[f"{ln}.{fname}"] = FeederInfo(f"{ln}.{fname}", ln, f.refill_from, store, kg,
                                              f.refill_request)
    return out


def _notify_fleet_of_space(buffer: Buffer, fleet: Any) -> None:
    """Make ``buffer`` tell the fleet when it loses a unit (transports wait for room there),
    once; buffers that are scenario transport destinations already do."""
    if getattr(buffer, "_fleet_space", False):
        return
    prev = buffer._on_level

    def on_level(now: float, level: int) -> None:
        if prev is not None:
            prev(now, level)
        fleet.on_space(buffer)
    buffer._on_level = on_level
    buffer._fleet_space = True  # type: ignore[attr-defined]


def _identity(x):
    return x


class _suppress_value_error:
    def __enter__(self):
        return self

    def __exit__(self, tp, val, tb):
        return tp is ValueError
