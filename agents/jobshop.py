"""A job shop as a discrete-event simulation: machines, and jobs that go through their routes.

Each job is a SimPy process (SimPy's machine-shop idiom): for each operation in route order it
joins the queue of the operation's machine, waits until the machine takes it, works for the
operation's (deterministic) time and moves on; there is no transport. Machines do one operation
at a time without pre-emption. Which waiting operation a free machine takes is decided online by
a :class:`MachinePolicy`:

- a dispatching policy (wired in ``darkfab.scenarios.jobshop`` from a rule of
  ``darkfab.control.dispatching``) picks among the waiting operations: *non-delay* dispatching,
  a free machine never stays idle while an operation waits for it;
- :class:`SequencePolicy` makes each machine follow a given sequence (an optimized schedule):
  the machine waits for its next operation even if others are waiting.

Decisions at time ``t`` are taken once every event at ``t`` that was scheduled before ``t``
has happened (every completion at ``t``): a decision round is a zero-delay timeout requested by
the first arrival or release at ``t``, and SimPy runs events of equal time in the order they were
scheduled. Zero-time operations started in a round finish in the same instant and lead to a
further round. This layer knows nothing of rules or solvers (``control`` is wired in by
``scenarios``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import simpy

__all__ = ["WaitingOperation", "MachinePolicy", "SequencePolicy", "JobShopModel", "EventSink",
           "StateSink"]


@dataclass(frozen=True, slots=True)
class WaitingOperation:
    """Operation ``op`` of ``job`` (``time`` long) in a machine's queue since ``ready_time``;
    times in instance units (simulated seconds / ``time_unit_s``)."""

    job: int
    op: int
    time: float
    ready_time: float


class MachinePolicy(Protocol):
    """Which of ``waiting`` machine ``machine`` starts at ``now`` (an index), or ``None`` to
    stay idle; ``now`` in instance units."""

    def choose(self, machine: int, waiting: Sequence[WaitingOperation],
               now: float) -> int | None: ...


class SequencePolicy:
    """Each machine processes its operations in the given order: ``sequences[k]`` lists
    ``(job, op)`` for machine ``k``."""

    def __init__(self, sequences: Sequence[Sequence[tuple[int, int]]]) -> None:
        self.sequences = [list(s) for s in sequences]
        self._next = [0] * len(self.sequences)

    def choose(self, machine: int, waiting: Sequence[WaitingOperation],
               now: float) -> int | None:
        seq = self.sequences[machine]
        pos = self._next[machine]
        if pos >= len(seq):
            return None
        want = seq[pos]
        for i, w in enumerate(waiting):
            if (w.job, w.op) == want:
                self._next[machine] += 1
                return i
        return None


class EventSink(Protocol):
    """Where events go (:class:`darkfab.factory.recorder.EventLog` fits)."""

    def record(self, t: float, kind: str, entity: str, unit_id: int = -1, product: str = "",
               location: str = "", detail: str = "") -> None: ...


class StateSink(Protocol):
    """Where state intervals go (a ``TableWriter`` of ``STATES_SCHEMA`` fits)."""

    def append(self, *row) -> None: ...


class _Machine:
    __slots__ = ("index", "name", "queue", "busy", "idle_since", "busy_s", "operations")

    def __init__(self, index: int, name: str) -> None:
        self.index = index
        self.name = name
        self.queue: list[tuple[WaitingOperation, simpy.Event]] = []
        self.busy = False
        self.idle_since = 0.0
        self.busy_s = 0.0
        self.operations = 0


class JobShopModel:
    """Jobs ``routes[j] = [(machine, time), ...]`` on ``num_machines`` machines.

    ``time_unit_s`` converts instance time units to simulated seconds. After :meth:`start` and
    ``env.run()``, :attr:`makespan_s` is the completion of the last job and :attr:`starts`
    holds ``(job, op) -> (machine, start_s, end_s)`` as executed. ``machine_names`` and
    ``job_names`` name the entities in the event log."""

    def __init__(self, env: simpy.Environment, routes: Sequence[Sequence[tuple[int, float]]],
                 num_machines: int, policy: MachinePolicy, *, time_unit_s: float = 1.0,
                 log: EventSink | None = None, states: StateSink | None = None,
                 machine_names: Sequence[str] | None = None,
                 job_names: Sequence[str] | None = None) -> None:
        self.env = env
        self.routes = [list(r) for r in routes]
        self.policy = policy
        self.time_unit_s = time_unit_s
        self.log = log
        self.states = states
        names = machine_names or [f"m{k}" for k in range(num_machines)]
        self.machines = [_Machine(k, names[k]) for k in range(num_machines)]
        self.job_names = list(job_names or [f"job{j}" for j in range(len(self.routes))])
        self.starts: dict[tuple[int, int], tuple[int, float, float]] = {}
        self.completed: dict[int, float] = {}
        self.makespan_s = 0.0
        self.events = 0
        self._round_pending = False

    @property
    def done(self) -> bool:
        return len(self.completed) == len(self.routes)

    def start(self) -> None:
        """Start one process per job (all released at the current time)."""
        for j in range(len(self.routes)):
            self.env.process(self._job(j))

    def finish(self, end: float | None = None) -> None:
        """Close every machine's last idle interval at ``end`` (default: now)."""
        end = self.env.now if end is None else end
        for m in self.machines:
            if not m.busy and end > m.idle_since:
                self._state(m, "Idle", m.idle_since, end)
                m.idle_since = end

    # --- processes ------------------------------------------------------------------------
    def _job(self, j: int):
        env = self.env
        name = self.job_names[j]
        self._record(env.now, "create", name, j, detail=f"{len(self.routes[j])} operations")
        for i, (k, t) in enumerate(self.routes[j]):
            m = self.machines[k]
            granted = env.event()
            w = WaitingOperation(j, i, float(t), env.now / self.time_unit_s)
            m.queue.append((w, granted))
            self._request_round()
            yield granted
            start = env.now
            self._record(start, "load", m.name, j, name, m.name, f"op {i}")
            yield env.timeout(t * self.time_unit_s)
            end = env.now
            self.starts[(j, i)] = (k, start, end)
            self._record(end, "unload", m.name, j, name, m.name, f"op {i}")
            self._state(m, "Execute", start, end)
            m.busy = False
            m.busy_s += end - start
            m.operations += 1
            m.idle_since = end
            self._request_round()
        self.completed[j] = env.now
        self.makespan_s = max(self.makespan_s, env.now)
        self._record(env.now, "complete", name, j, name, "", "")

    def _request_round(self) -> None:
        if not self._round_pending:
            self._round_pending = True
            self.env.timeout(0).callbacks.append(self._round)

    def _round(self, _event) -> None:
        self._round_pending = False
        now = self.env.now
        for m in self.machines:
            if m.busy or not m.queue:
                continue
            waiting = [w for w, _ in m.queue]
            i = self.policy.choose(m.index, waiting, now / self.time_unit_s)
            if i is None:
                continue
            _, granted = m.queue.pop(i)
            if now > m.idle_since:
                self._state(m, "Idle", m.idle_since, now)
            m.busy = True
            granted.succeed()

    # --- recording ------------------------------------------------------------------------
    def _record(self, t: float, kind: str, entity: str, unit: int = -1, product: str = "",
                location: str = "", detail: str = "") -> None:
        self.events += 1
        if self.log is not None:
            self.log.record(t, kind, entity, unit, product, location, detail)

    def _state(self, m: _Machine, state: str, start: float, end: float) -> None:
        if self.states is not None:
            self.states.append(m.name, state, start, end, end - start)
