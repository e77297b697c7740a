"""The press hopper of a continuous line and its level-1 loop, level → line rate.

The blend leaves the blender into a small hopper over the press feed frame; the press draws
from it at its own rate, ṁ_press = ṁ₀·(ω/ω₀)·(W/W₀) (turret speed ω, tablet weight W; ṁ₀ the
nominal line rate at ω₀ and W₀: stations × turret speed × tablet weight), and the line feeds it
at the line rate ṁ_line (the feeders' set-points). The level (kg,
:class:`~darkfab.factory.level_control.HopperLevel`) is piecewise linear between events, so
every limit it reaches is a SimPy timeout at a computed time, superseded (a generation count)
at any change of either flow. Steady production costs no events.

* **Loop on** (``press_hopper.level_control``): a sampled PI in velocity form
  (:class:`~darkfab.factory.level_control.LevelPI`) moves the line rate (every feeder at its
  ratio, bumpless, within the ``line_rate_kg_h`` range) to bring the level back to its
  set-point; it samples only while the level is outside the deadband and rests once settled,
  the line rate then set to the press's draw (so a resting loop does not hunt).
* **Loop off**: the line rate stays at its set-point and the press at its turret speed; the
  difference fills or drains the hopper.
* **Interlocks** (either way; ISA-18.2 alarms of ``<line>.press``): at the low limit the press
  is starved (``press_hopper_low``) and stops pressing until the level is back at its
  set-point; at the high limit (``press_hopper_high``) the line's feed holds (the feeders and
  the blender Suspended, the press pressing on from the hopper) until the level is back at its
  set-point.

Mass: the tablets pressed over an interval are the RTD model's output over it less the rise of
the level (:meth:`PressHopper._pressed_masses`), at the output's composition (the hopper adds no
mixing of its own; the RTD model already holds the press feed frame); the balance is
fed + initial level = accepted + diverted + line hold-up + level. The level integrates the
commanded flows: the feeders' noise and the RTD's smoothing reach the press output, not the
level.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

import numpy as np

from darkfab.factory.level_control import HopperLevel, LevelPI

__all__ = ["PressHopper"]

_EPS_KG = 1e-9


class PressHopper:
    """Mixin of :class:`~darkfab.agents.line.ContinuousLine` (first in its bases: it wraps
    ``_maybe_restart`` and ``command``). With no hopper set (:meth:`set_press_hopper`) the press
    follows the feed ideally, as a line without a hopper model."""

    hopper: HopperLevel | None = None
    hopper_loop: LevelPI | None = None

    def set_press_hopper(self, capacity_kg: float, setpoint_kg: float, low_kg: float,
                         high_kg: float, loop: LevelPI | None = None,
                         initial_kg: float | None = None) -> None:
        """Give the line a press hopper (before the run). Args: ``capacity_kg`` what it holds;
        ``setpoint_kg`` the level set-point (and where the interlocks release);
        ``low_kg``/``high_kg`` the alarm and interlock limits; ``loop`` the level loop (None:
        off); ``initial_kg`` the level at the start (None: the set-point)."""
        now = self.env.now
        level = setpoint_kg if initial_kg is None else initial_kg
        self.hopper = HopperLevel(level, capacity_kg, now)
        self.hopper_initial_kg = level
        self.hopper_setpoint_kg = setpoint_kg
        self.hopper_limits_kg = (low_kg, high_kg)
        self.hopper_loop = loop
        self.turret_rpm = self.turret_speed_ref_rpm
        self.weight_ref_kg = self.weight_kg  # W₀ of ṁ₀ (as ρ·A·h: the same rounding as W)
        self.press_starved = False
        self.feed_held = False
        self.hopper_samples = 0
        self.hopper_alarms = {"low": 0, "high": 0}
        self._hopper_gen = 0
        self._level_busy = False
        self._level_saturated = False  # the loop at a limit of the line rate: resting
        # (from time, level then, slope, the press's draw): the level's piecewise-linear history
        self._level_hist: deque[tuple[float, float, float, float]] = deque(
            [(now, level, 0.0, 0.0)])
        self._last_comp: np.ndarray | None = None
        self._unpressed_kg = 0.0  # model output while the press did not press (see below)

    # --- flows ------------------------------------------------------------------------------
    def press_demand_kg_s(self) -> float:
        """What the press draws when it presses (kg/s): ṁ₀·(ω/ω₀)·(W/W₀)."""
        return (self.nominal_kg_s * self.turret_rpm / self.turret_speed_ref_rpm
                * self.weight_kg / self.weight_ref_kg)

    def press_pressing(self) -> bool:
        """Whether the press draws from the hopper now."""
        if self.hopper is None:
            return self.running
        return not self.press_starved and (self.running or (
            self.feed_held and not self._commanded_out()
            and not math.isfinite(self._repair_until)))

    def hopper_level_kg(self, now: float) -> float:
        return self.hopper.level(now) if self.hopper is not None else math.nan

    def _hopper_changed(self, now: float, flowing: bool | None = None) -> None:
        """A flow may have changed at ``now`` (``flowing``: whether the feed flows from now,
        when the caller knows better than ``running``): the level's new slope, the next limit
        it reaches scheduled, the loop woken if the level is away from its set-point."""
        h = self.hopper
        if h is None:
            return
        feeding = self.running if flowing is None else flowing
        q_in = self.rate_kg_s if feeding else 0.0
        q_out = self.press_demand_kg_s() if (not self.press_starved and (
            feeding or (self.feed_held and not self._commanded_out()
                        and not math.isfinite(self._repair_until)))) else 0.0
        if q_in == h.q_in and q_out == h.q_out:
            return
        h.set_flows(now, q_in, q_out)
        self._level_saturated = False
        hist = self._level_hist
        if hist[-1][0] == now:
            hist.pop()
        hist.append((now, h.level0, h.slope_kg_s, q_out))
        self._schedule_level(now, feeding)

    def _schedule_level(self, now: float, feeding: bool) -> None:
        h = self.hopper
        self._hopper_gen += 1
        low, high = self.hopper_limits_kg
        sp = self.hopper_setpoint_kg
        targets = [sp if self.press_starved else low, sp if self.feed_held else high]
        loop = self.hopper_loop
        if loop is not None and not self._level_busy and feeding and not self._level_saturated:
            level = h.level(now)
            if abs(level - sp) > loop.deadband_kg + _EPS_KG:  # away already: act now
                self._start_level_loop()
            else:
                targets += [sp - loop.deadband_kg, sp + loop.deadband_kg]
        t = min(h.time_to(x) for x in targets)
        if t == now and h.slope_kg_s == 0.0:
            t = math.inf
        if math.isfinite(t):
            ev = self.env.timeout(max(0.0, t - now))
            gen = self._hopper_gen
            ev.callbacks.append(lambda _ev: self._level_event(gen))

    def _level_event(self, gen: int) -> None:
        """The level reached a limit computed at the last change (stale if flows changed)."""
        if gen != self._hopper_gen:
            return
        now = self.env.now
        h = self.hopper
        level = h.level(now)
        low, high = self.hopper_limits_kg
        sp = self.hopper_setpoint_kg
        s = h.slope_kg_s
        unit = "press"
        if not self.press_starved and s < 0 and level <= low + _EPS_KG:
            self.press_starved = True
            self.hopper_alarms["low"] += 1
            self._alarm(now, unit, "press_hopper_low", f"press hopper {level:.3f} kg at the "
                        "low limit: the press is starved")
            self.model.log.record(now, "press_hopper", f"{self.name}.press", -1, "",
                                  self.node, f"low {level:.3f} kg: press starved")
            self._hopper_changed(now)
        elif self.press_starved and s > 0 and level >= sp - _EPS_KG:
            self.press_starved = False
            self._alarm_clear(now, unit, "press_hopper_low")
            self.model.log.record(now, "press_hopper", f"{self.name}.press", -1, "",
                                  self.node, f"{level:.3f} kg: press pressing again")
            self._hopper_changed(now)
        elif not self.feed_held and s > 0 and level >= high - _EPS_KG:
            self.feed_held = True
            self.hopper_alarms["high"] += 1
            self._alarm(now, unit, "press_hopper_high", f"press hopper {level:.3f} kg at the "
                        "high limit: the line's feed holds")
            self._stop(now, "Suspended", "press hopper high")  # the press presses on
            self._hopper_changed(now)
            self._kick()
        elif self.feed_held and s < 0 and level <= sp + _EPS_KG:
            self.feed_held = False
            self._alarm_clear(now, unit, "press_hopper_high")
            self._maybe_restart(now, "press hopper level back at set-point")
            if not self.running:
                self._hopper_changed(now)
                self.timer.change(now, self._standing_state())
                self._publish_states(now)
            self._kick()
        else:  # the deadband: the loop starts
            loop = self.hopper_loop
            if loop is not None and not self._level_busy:
                self._start_level_loop()
            else:
                self._schedule_level(now, self.running)

    # --- the level loop ---------------------------------------------------------------------
    def _start_level_loop(self) -> None:
        self._level_busy = True
        self.hopper_loop.start()
        self.env.process(self._level_loop())

    def _level_loop(self):
        """Sample the level every period while it is away from its set-point; rest once settled
        (the line not flowing: rest too, the next restart wakes it)."""
        loop = self.hopper_loop
        while True:
            yield self.env.timeout(loop.period_s)
            now = self.env.now
            h = self.hopper
            if not self.running:
                self._level_busy = False
                return
            level = h.level(now)
            self.hopper_samples += 1
            if loop.settled(level, h.slope_kg_s):  # the feed to the press's draw: no hunting
                self._level_busy = False
                u = min(loop.u_max, max(loop.u_min, h.q_out))
                if h.q_out > 0 and u != self.rate_kg_s:
                    self._set_line_rate(now, u)
                self._schedule_level(now, True)
                return
            u = loop.step(level, self.rate_kg_s)
            if u == self.rate_kg_s and u in (loop.u_min, loop.u_max):
                # saturated: the level runs linearly to its interlock (an event); any change
                # of the flows wakes the loop again (_hopper_changed)
                self._level_busy = False
                self._level_saturated = True
                self._schedule_level(now, True)
                return
            if u != self.rate_kg_s:
                self.model.log.record(now, "line_rate", self.name, -1, "", self.node,
                                      f"{3600 * u:.4f} kg/h: press hopper {level:.3f} kg")
                self._set_line_rate(now, u)

    def _set_line_rate(self, now: float, kg_s: float) -> None:
        """Every feeder at its ratio × ``kg_s`` from now, without a bump."""
        self._timed_sync(now)
        scale = kg_s / self.rate_kg_s
        for st in self.stations:
            st.setpoint_kg_s *= scale
        self._apply_feed(now)
        self._kick()

    def _set_press_speed(self, setpoint: str, value: float) -> bool:
        """A press set-point with a hopper model: ``turret_speed_rpm`` moves the press alone
        (the loop, when on, brings the feed along); ``line_rate_kg_h`` moves the feed and the
        turret together (feedforward: no level change). False: no hopper (the caller does it)."""
        if self.hopper is None:
            return False
        now = self.env.now
        if setpoint == "turret_speed_rpm":
            self.turret_rpm = float(value)
            self._hopper_changed(now)
            return True
        kg_s = value / 3600.0
        self.turret_rpm = (self.turret_speed_ref_rpm * kg_s / self.nominal_kg_s
                           * self.weight_ref_kg / self.weight_kg)
        self._set_line_rate(now, kg_s)
        self._hopper_changed(now)
        return True

    # --- wrapped line methods ---------------------------------------------------------------
    def _maybe_restart(self, now: float, why: str) -> None:
        if self.hopper is not None and self.feed_held:
            return  # the feed holds until the level is back at its set-point
        super()._maybe_restart(now, why)
        if self.hopper is not None:
            self._hopper_changed(now)

    def command(self, name: str, command: Any, issuer: str) -> str | None:
        """:meth:`LineSupervision.command`, then the press's draw (a command may stop or
        restart the press while the feed holds)."""
        why = super().command(name, command, issuer)
        if why is None and self.hopper is not None:
            self._hopper_changed(self.env.now)
        return why

    # --- the press's output -----------------------------------------------------------------
    def _level_at(self, ts: list[float]) -> list[float]:
        hist = self._level_hist
        out = []
        k = 0
        for t in ts:
            while k + 1 < len(hist) and hist[k + 1][0] <= t:
                k += 1
            t0, l0, s, _ = hist[k]
            out.append(l0 + s * (t - t0))
        return out

    def _drawn(self, a: float, b: float) -> float:
        """The press's commanded draw over [a, b] (kg), from the level's history."""
        hist = self._level_hist
        tot = 0.0
        for i, (t0, _, _, q) in enumerate(hist):
            t1 = hist[i + 1][0] if i + 1 < len(hist) else math.inf
            lo, hi = max(a, t0), min(b, t1)
            if hi > lo:
                tot += q * (hi - lo)
        return tot

    def _pressed_masses(self, cuts: list[float], masses: np.ndarray) -> np.ndarray:
        """The masses pressed between ``cuts`` (rows per output channel): the RTD model's
        output ``masses`` less the level's rise over each piece, at the output's composition
        (the last one while the line's output stands still). The level integrates the commanded
        flows, the model's output carries the feed noise: over a piece in which the press drew
        nothing (starved or stopped) nothing is pressed, and that difference stays in the
        hopper (``_unpressed_kg``, in the mass balance)."""
        if self.hopper is None:
            return masses
        hist = self._level_hist
        while len(hist) > 1 and hist[1][0] <= cuts[0]:
            hist.popleft()
        if len(hist) == 1 and hist[0][2] == 0.0 and hist[0][3] > 0.0:
            tot = masses.sum(axis=1)
            if tot[-1] > 0:
                self._last_comp = masses[-1] / tot[-1]
            return masses
        lv = self._level_at(cuts)
        rise = np.diff(np.asarray(lv))
        tot = masses.sum(axis=1)
        out = np.empty_like(masses)
        for k in range(masses.shape[0]):
            if tot[k] > 0:
                self._last_comp = masses[k] / tot[k]
            comp = self._last_comp if self._last_comp is not None else np.full(
                masses.shape[1], 1.0 / masses.shape[1])
            if self._drawn(cuts[k], cuts[k + 1]) > 0.0:
                out[k] = comp * (tot[k] - rise[k])
            else:
                out[k] = 0.0
                self._unpressed_kg += tot[k] - rise[k]
        return out

    def hopper_balance_kg(self) -> tuple[float, float]:
        """(initial level, level at the time routed so far) for the mass balance (with the
        model output that came while the press drew nothing, :meth:`_pressed_masses`)."""
        if self.hopper is None:
            return 0.0, 0.0
        return self.hopper_initial_kg, self._level_at([self._routed])[0] + self._unpressed_kg

    def _hopper_readings(self, now: float) -> dict[str, tuple[float, str, float]]:
        """The press's process values that the hopper model changes."""
        if self.hopper is None:
            return {}
        on = self.press_pressing()
        w = self.weight_kg
        return {"hopper_level_kg": (self.hopper.level(now), "kg", now),
                "turret_speed_rpm": (self.turret_rpm if on else 0.0, "rpm", now),
                "tablets_per_h": (3600.0 * self.press_demand_kg_s() / w if on else 0.0,
                                  "1/h", now)}

    def hopper_kpis(self, end: float) -> dict:
        if self.hopper is None:
            return {}
        return {"press_hopper": {
            "level_kg": self.hopper.level(end), "setpoint_kg": self.hopper_setpoint_kg,
            "level_control": self.hopper_loop is not None, "loop_samples": self.hopper_samples,
            "low_alarms": self.hopper_alarms["low"], "high_alarms": self.hopper_alarms["high"],
            "press_demand_kg_h": 3600.0 * self.press_demand_kg_s()}}
