"""A continuous line under supervision (ISA-95 level 2 over the line's level-1 automation):
PackML commands to the line and its units with the interlock chain, set-points with ranges,
process values as readings, and the units' state events.

Commands (:meth:`LineSupervision.command`) follow the PackML command table against each unit's
state (:mod:`.units`); acting states complete at once. Hold, Stop and Abort take the unit out of
Execute, which stops the flow of the whole line (the interlock chain: the units upstream of it
stop with it, in order, the ones downstream are starved); Unhold, Reset + Start and Clear +
Reset + Start bring it back, and the line restarts — the press first, then the blender and the
feeders — once no unit is commanded out of Execute and no cause of its own holds it (a failure
under repair, an empty feeder, a full output). Commands that lead back towards Execute (Reset,
Start, Unhold, Clear) are refused while a failure of the line is under repair. Suspend and
Unsuspend are the line's own (starved, blocked) and refused.

Set-points (:meth:`LineSupervision.set_point`), applied without a bump (every feeder at once, so
the recipe ratio holds through a rate change):

==================  =======================  ====================================================
unit                set-point                effect
==================  =======================  ====================================================
line, press         ``line_rate_kg_h``       every feeder at its ratio × the rate; turret speed
                                             follows (tablets/h = rate / tablet weight)
press               ``turret_speed_rpm``     the press alone with a press hopper (:mod:`.hopper`:
                                             its level loop moves the line rate), else the line
                                             rate in proportion
feeder              ``setpoint_kg_h``        that feeder's feed (a ratio trim: API content moves)
blender             ``speed_rpm``            the blender hold-up, H ∝ N^(−b), so the flow time
==================  =======================  ====================================================

The powder moves in flow time (:mod:`darkfab.factory.flow_clock`): while the line stands, the
blender and feed-frame hold-up stay in place.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from darkfab.factory.flow_clock import FlowClock, FlowLaw
from darkfab.factory.kpis import StateTimer
from darkfab.factory.packml import Command, State
from darkfab.factory.unit_operations import UnitAgent

from .units import LineUnit, SetPointRange, leader, commanded_after, unit_states

__all__ = ["LineSupervision", "Readings"]

Readings = dict[str, tuple[float, str, float]]
"""Process values of a unit: name → (value, engineering unit, time of the reading in s)."""

_BACK = frozenset({Command.RESET, Command.START, Command.UNHOLD, Command.CLEAR,
                   Command.UNSUSPEND})
_LINE_STATE = {State.HELD: "Held", State.STOPPED: "Stopped", State.IDLE: "Idle",
               State.ABORTED: "Aborted", State.SUSPENDED: "Suspended"}


class LineSupervision:
    """Mixin of :class:`~darkfab.agents.line.ContinuousLine`: units, commands, set-points."""

    # --- build ----------------------------------------------------------------------------
    def _build_units(self, ranges: dict[str, tuple[float, float]], blender_speed_rpm: float,
                     blender_speed_exponent: float, turret_speed_rpm: float) -> None:
        """The units and their set-point ranges (``ranges``: ``line_rate_kg_h``,
        ``feeder_pct`` (% of each feeder's nominal feed), ``turret_speed_rpm``,
        ``blender_speed_rpm``)."""
        n = self.name
        lo, hi = ranges["line_rate_kg_h"]
        rate = SetPointRange("line_rate_kg_h", "kg/h", lo, hi)
        self.units: list[LineUnit] = []
        for st in self.stations:
            a, b = ranges["feeder_pct"]
            sp = st.setpoint_kg_s * 3600.0
            self.units.append(LineUnit(f"{n}.{st.name}", "feeder", {"setpoint_kg_h": SetPointRange(
                "setpoint_kg_h", "kg/h", sp * a / 100.0, sp * b / 100.0)}))
        s0, s1 = ranges["blender_speed_rpm"]
        self.units.append(LineUnit(f"{n}.blender", "blender",
                                   {"speed_rpm": SetPointRange("speed_rpm", "rpm", s0, s1)}))
        t0, t1 = ranges["turret_speed_rpm"]
        d0, d1 = ranges["fill_depth_mm"]
        w0, w1 = ranges["target_weight_mg"]
        self.units.append(LineUnit(f"{n}.press", "press", {
            "line_rate_kg_h": rate,
            "turret_speed_rpm": SetPointRange("turret_speed_rpm", "rpm", t0, t1),
            "fill_depth_mm": SetPointRange("fill_depth_mm", "mm", d0, d1),
            "target_weight_mg": SetPointRange("target_weight_mg", "mg", w0, w1)}))
        self.units.append(LineUnit(f"{n}.pat", "pat", {}))
        self.units.append(LineUnit(f"{n}.gate", "gate", {}))
        self.unit_by_name = {u.name: u for u in self.units}
        self.press_unit = self.unit_by_name[f"{n}.press"]
        self.line_setpoints = {"line_rate_kg_h": rate}
        self.blender_speed_rpm = self._speed_ref_rpm = blender_speed_rpm
        self.flow_law = FlowLaw(blender_speed_exponent)  # the plant's (set_flow_laws)
        self.turret_speed_ref_rpm = turret_speed_rpm
        self.unit_timers = {u.name: StateTimer(u.name, State.EXECUTE.value, self.env.now,
                                               self.model.warmup_s, self.model.states)
                            for u in self.units}
        self.unit_agents: dict[str, UnitAgent] = {}  # registered unit operations' agents
        self.unit_subscribers: list[Callable[[str, str, str], None]] = []
        self.last_nir: tuple[float, float] | None = None  # (time available, content fraction)

    def add_unit_operation(self, kind: str, agent: UnitAgent) -> LineUnit:
        """Add a registered unit operation's unit (:mod:`darkfab.factory.unit_operations`)
        with its agent (before the run): its PackML state, place in the interlock chain,
        set-points and process values are then the line's like any unit's."""
        sps = {n: SetPointRange(n, unit, lo, hi) for n, (unit, lo, hi) in agent.setpoints.items()}
        u = LineUnit(f"{self.name}.{kind}", kind, sps)
        self.units.append(u)
        self.unit_by_name[u.name] = u
        self.unit_agents[u.name] = agent
        self.unit_timers[u.name] = StateTimer(u.name, State.EXECUTE.value, self.env.now,
                                              self.model.warmup_s, self.model.states)
        return u

    # --- the flow ---------------------------------------------------------------------------
    @property
    def rate_kg_s(self) -> float:
        """The commanded line rate: the feeders' set-points (kg/s)."""
        return sum(st.setpoint_kg_s for st in self.stations)

    def _set_flow(self, now: float, flowing: bool) -> None:
        """dθ/dt from ``now`` on (:mod:`darkfab.factory.flow_clock`): (ṁ/ṁ₀)·(N/N₀)^b while
        the line flows, 0 while it stands."""
        m, s = self.rate_kg_s / self.nominal_kg_s, self.blender_speed_rpm / self._speed_ref_rpm
        self.flow.set_rate(now, *self.flow_law.rate(m, s, flowing))
        if self.soft is not None:  # the control system's model, on its own law (if it differs)
            self.soft.set_flow(now, m, s, flowing)
        self._hopper_changed(now, flowing)  # the press hopper's inflow (:mod:`.hopper`)

    def set_flow_laws(self, plant: FlowLaw, model: FlowLaw) -> None:
        """The plant's true hold-up law and the control system's model of it (docs/twin.md;
        after ``set_twin``, before the run): the plant's flow clock moves on ``plant``, the soft
        sensor's on ``model`` (a clock of its own when they differ)."""
        self.flow_law = plant
        if model != plant and self.soft is not None:
            self.soft.own_clock(model)

    @property
    def model_flow(self) -> FlowClock:
        """The control system's flow clock: the soft sensor's (its own law), else the line's."""
        return self.flow if self.soft is None else self.soft.clock

    def _commanded_out(self) -> bool:
        return any(u.commanded is not None for u in self.units)

    def _internal_stop(self) -> tuple[LineUnit, State] | None:
        """The cause of the line's own stop now, if any: a failure or maintenance under repair
        (press Held), a full output (press Suspended), an empty feeder (Suspended)."""
        if math.isfinite(self._repair_until):
            return self.press_unit, State.HELD
        if self._blocked:
            return self.press_unit, State.SUSPENDED
        if self.hopper is not None and self.feed_held:  # press hopper high: the feed holds
            return self.unit_by_name[f"{self.name}.blender"], State.SUSPENDED
        for st, u in zip(self.stations, self.units):
            if st.feeder.mode == "starved":
                return u, State.SUSPENDED
        return None

    def _standing_state(self) -> str:
        """The line's state while it does not flow: its most severe commanded state, else that
        of its own cause, else Suspended."""
        lead = leader(self.units)
        if lead is not None:
            return _LINE_STATE[lead.commanded]
        cause = self._internal_stop()
        return _LINE_STATE[cause[1]] if cause is not None else "Suspended"

    def _publish_states(self, now: float) -> None:
        """Log every unit whose state changed (kind ``state``) — a commanded unit first, then
        from the press upstream — and tell the subscribers."""
        cause = self._internal_stop()
        if not self.running and cause is None and leader(self.units) is None:
            return  # stopping for a cause not yet recorded: the caller publishes again
        states = unit_states(self.units, self.running, cause[0] if cause else None,
                             cause[1] if cause else State.HELD)
        order = sorted(self.units, key=lambda u: (u.commanded is None, -u.rank))
        for u in order:
            new = states[u.name]
            if new is u.state:
                continue
            u.state = new
            self.unit_timers[u.name].change(now, new.value)
            self.model.log.record(now, "state", u.name, -1, "", self.node, new.value)
            for fn in self.unit_subscribers:
                fn(u.name, "state", new.value)

    # --- alarms (ISA-18.2, :mod:`darkfab.factory.alarms`) ----------------------------------
    def _alarm(self, now: float, unit: str, condition: str, text: str,
               priority: str = "high") -> None:
        """Raise an alarm of unit ``<line>.<unit>`` (``unit`` ""; the line itself)."""
        self.model.alarms.raise_alarm(now, f"{self.name}.{unit}" if unit else self.name,
                                      condition, text, priority)

    def _alarm_clear(self, now: float, unit: str, condition: str) -> None:
        self.model.alarms.clear(now, f"{self.name}.{unit}" if unit else self.name, condition)

    # --- commands ---------------------------------------------------------------------------
    def unit_of(self, name: str) -> LineUnit | None:
        """The unit ``name`` (the line's own name stands for its press)."""
        return self.press_unit if name == self.name else self.unit_by_name.get(name)

    def check_command(self, name: str, command: Command) -> str | None:
        """Why the PackML command to unit ``name`` would be refused now (``None``: legal)."""
        u = self.unit_of(name)
        if u is None:
            return f"unknown unit {name!r}"
        if command in (Command.SUSPEND, Command.UNSUSPEND):
            return f"{command.value} is the line's own (starved or blocked), not a command"
        target = commanded_after(u.state, command)
        if target is None:
            return f"{command.value} is not legal in {u.state.value}"
        if command in _BACK and math.isfinite(self._repair_until):
            return f"a failure of the line is under repair ({self._repair_name or 'failure'})"
        if command in _BACK and u.commanded is None:
            return f"{u.name} is {u.state.value} by interlock or a cause of the line's own"
        return None

    def command(self, name: str, command: Command, issuer: str) -> str | None:
        """Apply a PackML command to unit ``name`` now; returns why it is refused, or ``None``."""
        why = self.check_command(name, command)
        if why is not None:
            return why
        u = self.unit_of(name)
        assert u is not None
        target = commanded_after(u.state, command)
        now = self.env.now
        self._timed_sync(now)
        was_running = self.running
        u.commanded = None if target is State.EXECUTE else target
        if was_running and u.commanded is not None:
            self._stop(now, _LINE_STATE[u.commanded], f"{u.name} {command.value} ({issuer})")
        elif not was_running and not self._commanded_out():
            self._maybe_restart(now, f"{u.name} {command.value} ({issuer})")
        if not self.running:
            state = self._standing_state()
            if state != self.timer.state:
                self.timer.change(now, state)
                self.model.log.record(now, "line", self.name, -1, "", self.node,
                                      f"{state}: {u.name} {command.value} ({issuer})")
        self._publish_states(now)
        self._kick()
        return None

    # --- set-points -------------------------------------------------------------------------
    def setpoint_ranges(self) -> dict[str, dict[str, SetPointRange]]:
        """Unit (and the line) → its set-points with ranges."""
        out = {u.name: dict(u.setpoints) for u in self.units if u.setpoints}
        out[self.name] = dict(self.line_setpoints)
        return out

    def set_point(self, name: str, setpoint: str, value: float) -> str | None:
        """Change a set-point now, without a bump; returns why it is refused, or ``None``."""
        u = self.unit_of(name)
        if u is None:
            return f"unknown unit {name!r}"
        spec = (self.line_setpoints if name == self.name else u.setpoints).get(setpoint)
        if spec is None:
            have = ", ".join(sorted(self.line_setpoints if name == self.name else u.setpoints))
            return f"{name} has no set-point {setpoint!r} (it has: {have or 'none'})"
        if not (isinstance(value, (int, float)) and math.isfinite(value)):
            return f"{setpoint} must be a finite number"
        if not spec.low <= value <= spec.high:
            return f"{setpoint} = {value:g} {spec.unit} is outside [{spec.low:g}, {spec.high:g}]"
        now = self.env.now
        if u.name in self.unit_agents:  # a registered unit operation's own set-point
            return self.unit_agents[u.name].set_point(setpoint, float(value), now)
        if setpoint in ("fill_depth_mm", "target_weight_mg"):
            return self._set_weight(setpoint, value)
        if setpoint in ("line_rate_kg_h", "turret_speed_rpm") and self._set_press_speed(
                setpoint, value):  # a press hopper: the press and the feed apart
            self._kick()
            return None
        self._timed_sync(now)  # the feed up to now at the old set-points
        if setpoint in ("line_rate_kg_h", "turret_speed_rpm"):
            kg_s = (value / 3600.0 if setpoint == "line_rate_kg_h"
                    else self.nominal_kg_s * value / self.turret_speed_ref_rpm
                    * self.weight_kg / self.tablet.weight_kg)
            scale = kg_s / self.rate_kg_s
            for st in self.stations:
                st.setpoint_kg_s *= scale
        elif setpoint == "setpoint_kg_h":
            st = self.stations[self.units.index(u)]
            st.setpoint_kg_s = value / 3600.0
        else:  # blender speed_rpm
            self.blender_speed_rpm = float(value)
        self._apply_feed(now)
        self._kick()
        return None

    def _apply_feed(self, now: float) -> None:
        """The stations' set-points to the feeders now (synced before by the caller), the flow
        clock's rate with them, and a new projection (a running line; a stopped one takes them
        at its restart)."""
        if self.calibration_log is not None:  # sensor data for calibration
            self.calibration_log.feeders(now, "setpoint")
        if not self.running:
            return
        self._set_flow(now, True)
        for st in self.stations:
            st._next = None
            st.feeder.set_setpoint(now, st.setpoint_kg_s)
        self._timed_sync(now)
        self._reproject = True
        self._unit_eta = self._eta(now)

    def _set_weight(self, setpoint: str, value: float) -> str | None:
        """Fill depth (the weight loop off) or tablet weight target (the loop on): the press
        draws the feed either way, so only the tablets change."""
        loop_on = self.weight_loop is not None
        if setpoint == "fill_depth_mm":
            if loop_on:
                return ("the weight loop sets the fill depth: set target_weight_mg (or turn the "
                        "loop off: loops.weight_control = false)")
            self.fill_depth_m = value / 1e3
            self._weight_changed(self.env.now, f"fill depth {value:g} mm")
            return None
        if not loop_on:
            return "target_weight_mg needs the weight loop (loops.weight_control = true)"
        self.set_target_weight(value * 1e-6)
        return None

    @property
    def turret_speed_rpm(self) -> float:
        """The press's turret speed: its own with a press hopper (:mod:`.hopper`), else it
        draws the feed (an ideal level loop): ω ∝ ṁ / W."""
        if self.hopper is not None:
            return self.turret_rpm
        return (self.turret_speed_ref_rpm * self.rate_kg_s / self.nominal_kg_s
                * self.tablet.weight_kg / self.weight_kg)

    # --- process values ---------------------------------------------------------------------
    _holdup_at: tuple[float, float, str, float] | None = None

    def _holdup_reading(self) -> tuple[float, str, float]:
        """The blender's hold-up (kg) as of the engine's last sync, stamped with that time (the
        feed is in the model up to there; computed once per sync)."""
        t = self.engine.synced
        if self._holdup_at is None or self._holdup_at[0] != t:
            self._holdup_at = (t, self.engine.holdup_kg(t), "kg", t)
        return self._holdup_at[1:]

    def readings(self, now: float) -> dict[str, Readings]:
        """Every unit's process values now (the line's own name: line totals)."""
        out: dict[str, Readings] = {}
        flowing = self.running
        for st, u in zip(self.stations, self.units):
            f = st.feeder
            rate = f.setpoint_kg_s if flowing and f.mode == "gravimetric" else 0.0
            mass = f.mass_kg if f.mode == "refill" else max(0.0, f.mass_kg - rate * (now - f.t))
            out[u.name] = {"hopper_mass_kg": (mass, "kg", now),
                           "feed_rate_kg_h": (3600.0 * f.current_rate_kg_s() if flowing
                                              else 0.0, "kg/h", f.t),
                           "setpoint_kg_h": (3600.0 * st.setpoint_kg_s, "kg/h", now)}
        n = self.name
        out[f"{n}.blender"] = {"speed_rpm": (self.blender_speed_rpm if flowing else 0.0, "rpm",
                                             now),
                               "holdup_kg": self._holdup_reading()}
        w = self.weight_kg
        out[f"{n}.press"] = {
            "turret_speed_rpm": (self.turret_speed_rpm if flowing else 0.0, "rpm", now),
            "main_compression_force_kn": (self.force_n() / 1e3 if flowing else 0.0, "kN", now),
            "tablet_weight_mg": (w * 1e6, "mg", now),
            "target_weight_mg": (self.target_weight_kg * 1e6, "mg", now),
            "fill_depth_mm": (self.fill_depth_m * 1e3, "mm", now),
            "tablets_per_h": (3600.0 * self.rate_kg_s / w if flowing else 0.0, "1/h", now),
            "line_rate_kg_h": (3600.0 * self.rate_kg_s, "kg/h", now),
            **self._hopper_readings(now)}
        if self.last_nir is not None:
            ta, c = self.last_nir
            out[f"{n}.pat"] = {"api_content_pct": (100.0 * c, "%", ta)}
        else:
            out[f"{n}.pat"] = {}
        out[f"{n}.gate"] = {"diverting": (1.0 if self.gate.is_diverting(now - self.lag_s)
                                          else 0.0, "", now),
                            "accepted_kg": (self.accepted_kg, "kg", now),
                            "output_kg": (self.output_kg, "kg", now)}
        for name, agent in self.unit_agents.items():
            out[name] = agent.readings(now)
        out[n] = {"line_rate_kg_h": (3600.0 * self.rate_kg_s, "kg/h", now),
                  "accepted_kg": (self.accepted_kg, "kg", now),
                  "units_out": (float(self.units_out), "", now)}
        return out
