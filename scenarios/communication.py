"""Communication between a controller and the plant, and its faults (scripted by a fault
campaign, :mod:`darkfab.scenarios.faults`): commands delivered on time, late (a latency fault),
lost (a command-loss fault: the plant posts ``command_lost`` after :data:`ACK_TIMEOUT_S`
without acknowledgement) or dropped while the controller is offline; the controller's outage
and its return (``start`` / ``resume``, then the alarm events it missed: the alarm journal)."""

from __future__ import annotations

from typing import Any

import numpy as np

from darkfab.control import Event, PackMLCommand
from darkfab.factory.packml import Command

__all__ = ["CommunicationFaults", "ACK_TIMEOUT_S", "ALARM_JOURNAL"]

ACK_TIMEOUT_S = 5.0
"""A command neither applied nor refused within this time is reported lost."""
ALARM_JOURNAL = 10_000
"""Alarm events kept for a controller while it is offline (the oldest are dropped)."""


class CommunicationFaults:
    """Mixin of :class:`~darkfab.scenarios.control_loop.ControlLoop`: command delivery and
    communication faults."""

    def _apply_late(self, cmds: list, latency: float, decided_s: float) -> None:
        """Commands delayed by a latency fault: the plant notices the late acknowledgement."""
        self.model.alarms.raise_alarm(self.env.now, "plant", "command_latency",
                                      f"{len(cmds)} command(s) applied {latency:g} s after the "
                                      "decision", "low")
        for fn in self.fault_listeners:
            fn("command_latency", f"{latency:g} s")
        self._apply_all(cmds, late=True, decided_s=decided_s)

    def _apply_all(self, cmds: list, late: bool = False, decided_s: float | None = None
                   ) -> None:
        if self.fault is not None:
            return
        if self._offline:  # lost in transit: the controller went offline
            self.commands_lost += len(cmds)
            for c in cmds:
                self.model.log.record(self.env.now, "command_lost", self._target(c), -1, "",
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
            alarms.clear(now, self._target(c), "command_lost")  # it hears commands again
            self.apply(c, decided_s=decided_s)

    def _lose(self, cmd: Any) -> None:
        self.commands_lost += 1
        target = self._target(cmd)
        what = type(cmd).__name__ + (f" {Command(cmd.command).value}"
                                     if isinstance(cmd, PackMLCommand) else "")
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
