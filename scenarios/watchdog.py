"""The control loop's watchdog: a ``watchdog`` event when a unit stalls (issue #5).

One lazily re-armed timer per unit, no polling. A unit stalls when it has completed nothing for
``watchdog_s`` in Execute or Suspend* (*run* states, progress expected: see
:meth:`~darkfab.agents.equipment.Equipment.last_progress_s`), or has stayed in
Holding/Held/Aborting/Aborted that long (*down* states, a repair expected). Each stall is
reported once: a ``watchdog`` row in the event log (detail ``"<state> <stalled for> s"``) and
the loop's ``notify``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from darkfab.agents.equipment import Equipment
from darkfab.factory.packml import State

__all__ = ["Watchdog"]

_WD_CLASS = {State.EXECUTE.value: "run", State.SUSPENDING.value: "run",
             State.SUSPENDED.value: "run", State.UNSUSPENDING.value: "run",
             State.HOLDING.value: "down", State.HELD.value: "down",
             State.ABORTING.value: "down", State.ABORTED.value: "down"}
"""Watched states: working (progress expected) and down (a repair expected)."""


class Watchdog:
    """Stall detection for the units of one control loop.

    Args:
        env: the SimPy environment.
        equipment: unit name → unit.
        watchdog_s: stall time (s), > 0.
        log: the event log's ``record``.
        issuer: the name logged as the ``watchdog`` row's location (the controller's).
        notify: ``fn(now, unit, detail)`` for each stall reported.
        live: ``fn() -> bool``: whether the loop still runs (no controller fault, not halting).
    """

    def __init__(self, env, equipment: Mapping[str, Equipment], watchdog_s: float,
                 log: Callable[..., None], issuer: str,
                 notify: Callable[[float, str, str], None],
                 live: Callable[[], bool]) -> None:
        self.env = env
        self.equipment = equipment
        self.watchdog_s = watchdog_s
        self._log = log
        self._issuer = issuer
        self._notify = notify
        self._live = live
        self._class: dict[str, str | None] = {n: None for n in equipment}
        self._since: dict[str, float] = {n: 0.0 for n in equipment}
        self._armed: set[str] = set()
        self._fired: dict[str, float] = {}
        self.events = 0

    def on_state(self, name: str, state: str) -> None:
        """A unit's state changed: the stall class and since when; arm the unit's timer if
        none is pending."""
        cls = _WD_CLASS.get(state)
        if cls != self._class[name]:
            self._class[name] = cls
            self._since[name] = self.env.now
        if cls is not None and name not in self._armed:
            self._arm(name, self.env.now + self.watchdog_s)

    def _arm(self, name: str, at: float) -> None:
        self._armed.add(name)
        self.env.timeout(max(0.0, at - self.env.now)).callbacks.append(
            lambda _e: self._fire(name))

    def _fire(self, name: str) -> None:
        self._armed.discard(name)
        cls = self._class[name]
        if cls is None or not self._live():
            return
        now = self.env.now
        since = self._since[name]
        if cls == "run":
            since = max(since, self.equipment[name].last_progress_s())
        due = since + self.watchdog_s
        if now < due - 1e-9 * max(1.0, due):
            self._arm(name, due)
            return
        if self._fired.get(name) == since:
            return  # reported; re-armed by the next state change
        self._fired[name] = since
        self.events += 1
        state = self.equipment[name].sm.state.value
        detail = f"{state} {now - since:g} s"
        self._log(now, "watchdog", name, -1, "", self._issuer, detail)
        self._notify(now, name, detail)
