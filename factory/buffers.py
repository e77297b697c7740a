"""Finite (or unbounded) FIFO buffers with blocking, built on SimPy's ``Store`` hooks.

A full buffer blocks the ``put`` of its upstream equipment (blocking after service); an empty one
starves the ``get`` of its downstream equipment. The level is reported to a listener after every
change so the time-average contents can be accumulated without storing history.

``try_put`` / ``try_get`` are the hot-path shortcuts: when a put or get would complete at once
and nothing else could come of its SimPy event, they do it without creating that event (see
:meth:`Buffer.try_put` for the conditions).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable

import simpy

__all__ = ["Buffer", "EMPTY"]

EMPTY = object()
"""What :meth:`Buffer.try_get` returns when it cannot take a unit at once."""


class Buffer(simpy.Store):
    """A named FIFO store at a plant node; ``capacity_units`` of ``None`` means unbounded."""

    def __init__(self, env: simpy.Environment, name: str, node: str,
                 capacity_units: int | None = None,
                 on_level: Callable[[float, int], None] | None = None) -> None:
        super().__init__(env, capacity=math.inf if capacity_units is None else capacity_units)
        self.items: deque = deque()  # O(1) pop from the front
        self.name = name
        self.node = node
        self._on_level = on_level
        self.reserved = 0  # places promised to units in transit to this buffer

    @property
    def level(self) -> int:
        return len(self.items)

    @property
    def free(self) -> float:
        """Places neither filled nor promised to a unit in transit."""
        return self._capacity - len(self.items) - self.reserved

    def try_put(self, item) -> bool:
        """Put ``item`` at once without a SimPy event, as ``put`` would; ``False`` (nothing
        done) when the shortcut does not apply, and the caller then uses ``put``.

        It applies when there is room, no put is waiting (FIFO), no get is waiting and no other
        event is due at this instant. A ``put`` that succeeds at once still schedules its
        event, whose only effect is a ``_trigger_get`` when it is processed later in this
        instant; under these conditions that call would find no getter, so skipping the event
        changes no outcome and no order of events. The one exception: if, in what is left of
        the current step (the caller, other callbacks of the event being processed, urgent
        interrupts), a getter starts waiting *and* a unit then arrives, that getter is woken
        by the later put's event instead, later among the events of this instant. (The event
        logs of the shipped scenarios are unchanged by the shortcut.)
        """
        if (self.put_queue or self.get_queue
                or len(self.items) + self.reserved >= self._capacity):
            return False
        env = self._env
        queue = env._queue  # SimPy's event heap: entries (time, priority, id, event)
        if queue and queue[0][0] <= env._now:
            return False
        self.items.append(item)
        if self._on_level is not None:
            self._on_level(env._now, len(self.items))
        if self._after_put is not None:
            self._after_put()
        return True

    def try_get(self):
        """Take the first unit at once without a SimPy event, as ``get`` would; :data:`EMPTY`
        (nothing done) when the shortcut does not apply, and the caller then uses ``get``.

        The mirror image of :meth:`try_put`: it applies when a unit is there, no get is
        waiting, no put is waiting for a place and no other event is due at this instant (the
        skipped event would only have run ``_trigger_put``, finding no put to serve), with the
        same one exception for a put that starts waiting in the rest of the current step."""
        if not self.items or self.get_queue or self.put_queue:
            return EMPTY
        env = self._env
        queue = env._queue
        if queue and queue[0][0] <= env._now:
            return EMPTY
        item = self.items.popleft()
        if self._on_level is not None:
            self._on_level(env._now, len(self.items))
        return item

    def take(self, n: int, hand_to: Callable[[object], None] | None = None) -> list:
        """Take the first ``n`` units (FIFO; fewer if fewer are here) outside SimPy's get
        queue, e.g. for a transport a controller requested: the level is reported after each
        unit leaves, then each is passed to ``hand_to`` (if given) before the next leaves;
        finally puts waiting for room are let in."""
        out = []
        on_level = self._on_level
        for _ in range(min(n, len(self.items))):
            item = self.items.popleft()
            if on_level is not None:
                on_level(self._env.now, len(self.items))
            if hand_to is not None:
                hand_to(item)
            out.append(item)
        self._trigger_put(None)  # units waiting for room may enter now
        return out

    def add_level_listener(self, fn: Callable[[float, int], None]) -> None:
        """Also call ``fn(now, level)`` after every change of the level, after the listeners
        already there."""
        prev = self._on_level
        if prev is None:
            self._on_level = fn
            return

        def both(now: float, level: int) -> None:
            prev(now, level)
            fn(now, level)
        self._on_level = both

    _after_put: Callable[[], None] | None = None
    """Hook run after every successful put (event-based or :meth:`try_put`), after the level
    is reported; ``None`` for none. Subclasses set it to a method."""

    def _do_put(self, event):  # type: ignore[override]
        if len(self.items) + self.reserved < self._capacity or getattr(event, "reserved", False):
            self.items.append(event.item)
            event.succeed()
            if self._on_level is not None:
                self._on_level(self._env.now, len(self.items))
            if self._after_put is not None:
                self._after_put()
        return None

    def _do_get(self, event):  # type: ignore[override]
        if self.items:
            event.succeed(self.items.popleft())
            if self._on_level is not None:
                self._on_level(self._env.now, len(self.items))
        return None
