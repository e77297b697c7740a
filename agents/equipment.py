"""Equipment agent: a PackML unit with parallel servers, batches, changeovers and failures.

Each server is a SimPy process (``Equipment._server``) that loads a batch from the input buffer,
changes over if the product differs from its last one, processes, and unloads the outputs to the
destinations its router picks (blocking after service when a buffer is full).

PackML behaviour (ISA-TR88.00.02):

* the unit produces only in Execute; when no server is busy because the input is empty
  (starved) or an output buffer is full (blocked), the unit issues Suspend itself and Unsuspend
  when work is possible again;
* a failure mode whose time to failure (operating time = time in Execute) has elapsed issues
  Hold (reaction ``hold``: in-process work is kept and resumes after Unhold) or Abort
  (``abort``: the material in the unit is scrapped; recovery is Clear → Reset → Start);
* acting states last ``acting_state_s[state]`` seconds (default 0) and end on state complete;
* an illegal command is rejected and logged (``command_rejected``), never applied.

Alarms (ISA-18.2, ``model.alarms``): a failure raises an alarm of priority ``high`` (equipment
down) whose condition is the failure mode's name; the repair clears it.

Machine-shop idiom: a failure interrupts busy server processes, which keep their remaining work.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import simpy
from mesa.discrete_space import FixedAgent

from darkfab.factory.buffers import EMPTY, Buffer
from darkfab.factory.distributions import Sampler
from darkfab.factory.kpis import ActivePeriods, StateTimer
from darkfab.factory.packml import ACTING_STATES, Command, PackMLStateMachine, State

from .flow import Router, Sink
from .model import PlantModel

__all__ = ["Equipment", "FailureMode", "Transform"]

S = State
# server statuses
WAITING, STARVED, BLOCKED, SETUP, BUSY = "waiting", "starved", "blocked", "setup", "busy"
_WORKING = (SETUP, BUSY)

_CONDITION = {
    S.EXECUTE: "producing",
    S.HOLDING: "down", S.HELD: "down", S.UNHOLDING: "down",
    S.ABORTING: "down", S.ABORTED: "down", S.CLEARING: "down",
}
"""Equipment condition per PackML state; Suspend* states take the starved/blocked reason and
every other state counts as ``stopped``."""

# States as module constants: ``S.EXECUTE`` is a class-attribute lookup through the Enum
# metaclass, several times slower than a global (these are on the hot path).
_EXECUTE, _SUSPENDED = S.EXECUTE, S.SUSPENDED
_SUSPEND, _UNSUSPEND = Command.SUSPEND, Command.UNSUSPEND
_SUSPEND_STATES = frozenset({S.SUSPENDING, S.SUSPENDED, S.UNSUSPENDING})
_ABORT_STATES = frozenset({S.ABORTING, S.ABORTED})
_ACTIVE_CONDITIONS = frozenset({"producing", "down"})
_IDLE_STATUSES = (STARVED, BLOCKED)


@dataclass(frozen=True)
class FailureMode:
    name: str
    time_to_failure: Sampler  # operating seconds
    repair_time: Sampler
    reaction: str = "hold"  # or "abort"


@dataclass(frozen=True)
class Transform:
    """Each cycle turns the loaded batch into ``units`` new units of ``product``."""

    product: str
    units: int = 1
    container: bool = False


Listener = Callable[["Equipment", str, str], None]


class Equipment(FixedAgent):
    """A production unit at a plant node; see the module docstring for its behaviour."""

    def __init__(self, model: PlantModel, name: str, node: str, input_buffer: Buffer,
                 process_time: Sampler, router: Router, *, servers: int = 1,
                 batch_size: int = 1, ideal_cycle_time_s: float | None = None,
                 transform: Transform | None = None, changeover: Sampler | None = None,
                 reject_probability: float = 0.0, reject_to: Sink | None = None,
                 reject_draw: Sampler | None = None,
                 failures: Sequence[FailureMode] = (),
                 acting_state_s: dict[State, float] | None = None,
                 disabled_states: dict[str, Sequence[State]] | None = None,
                 arm=None) -> None:
        super().__init__(model)
        self.cell = model.node_cell(node)
        self.name = name
        self.node = node
        self.env: simpy.Environment = model.env
        self.input = input_buffer
        self.process_time = process_time
        self.router = router
        self.servers = servers
        self.batch_size = batch_size
        self.ideal_cycle_time_s = ideal_cycle_time_s or process_time.mean
        self.transform = transform
        self.changeover = changeover
        self.reject_probability = reject_probability
        self.reject_to = reject_to
        self._reject_draw = reject_draw
        self.failures = list(failures)
        self.arm = arm  # a RobotArm that loads and unloads this unit, or None
        self.acting_state_s = dict(acting_state_s or {})
        self.sm = PackMLStateMachine(disabled=dict(disabled_states or {}))
        self.sm.add_listener(self._on_state)
        self._listeners: list[Listener] = []
        now, w = self.env.now, model.warmup_s
        # results accumulators (constant memory)
        self.state_time = StateTimer(name, self.sm.state.value, now, w, model.states)
        self.condition = StateTimer(name, "stopped", now, w, None)
        self.active = ActivePeriods(w)
        self._server_time = [StateTimer(f"{name}#{k}", WAITING, now, w, None)
                             for k in range(servers)]
        self.cycles = 0  # produced cycles after warm-up (ISO 22400 PQ in cycles)
        self.units_out = 0
        self.units_good = 0
        self.faults = 0
        self.commands_rejected = 0
        # run-time state
        self._status = [WAITING] * servers
        self._busy = 0
        self._procs: list[simpy.Process] = []
        self._interrupted = [False] * servers
        self._loaded = [False] * servers  # server holds a batch not yet unloaded
        self._last_product: list[str | None] = [None] * servers
        self._aborts = 0
        self._suspend_reason = STARVED
        self._exec_ev = self.env.event()
        self._op_accum = 0.0  # operating (Execute) seconds before _op_since
        self._op_since: float | None = None
        self._sc_token = 0

    # --- public interface ------------------------------------------------------------------
    @property
    def state(self) -> State:
        return self.sm.state

    @property
    def suspend_reason(self) -> str:
        """Why the unit last suspended itself: ``starved`` or ``blocked``."""
        return self._suspend_reason

    def subscribe(self, fn: Listener) -> None:
        """``fn(equipment, kind, detail)`` for kind ``state`` (new state), ``fault`` (before the
        unit reacts to it) and ``repaired`` (detail: the failure mode)."""
        self._listeners.append(fn)

    def command(self, command: Command, issuer: str = "supervisor") -> bool:
        """Apply a PackML command if legal now; a rejected command is logged, never applied."""
        now = self.env.now
        if self.sm.target(command) is None:
            self.commands_rejected += 1
            self.model.log.record(now, "command_rejected", self.name, -1, "", issuer,
                                  f"{command.value} in {self.sm.state.value}")
            return False
        # ``_value_``: the plain string, without the slower ``Enum.value`` property (hot path)
        self.model.log.record(now, "command", self.name, -1, "", issuer, command._value_)
        return self.sm.command(command)

    def change_mode(self, mode: str, issuer: str = "supervisor") -> bool:
        ok = self.sm.change_mode(mode)
        kind = "mode" if ok else "command_rejected"
        self.model.log.record(self.env.now, kind, self.name, -1, "", issuer,
                              mode if ok else f"mode {mode} in {self.sm.state.value}")
        if ok:
            self.condition.change(self.env.now, self._condition(self.sm.state))
        return ok

    def operating_time(self) -> float:
        """Seconds spent in Execute so far (the clock failure modes count)."""
        if self._op_since is None:
            return self._op_accum
        return self._op_accum + self.env.now - self._op_since

    def start_processes(self) -> None:
        env = self.env
        self._procs = [env.process(self._server(k)) for k in range(self.servers)]
        for mode in self.failures:
            env.process(self._failure(mode))

    # --- PackML plumbing -------------------------------------------------------------------
    def _condition(self, state: State) -> str:
        if self.sm.mode != "Production":
            return "planned_downtime"
        if state in _SUSPEND_STATES:
            return self._suspend_reason
        return _CONDITION.get(state, "stopped")

    def _on_state(self, old: State, new: State) -> None:
        env = self.env
        now = env.now
        value = new._value_  # the plain string (``Enum.value`` is a slower property)
        self.model.log.record(now, "state", self.name, -1, "", "", value)
        self.state_time.change(now, value)
        cond = self._condition(new)
        self.condition.change(now, cond)
        self.active.set(now, cond in _ACTIVE_CONDITIONS)
        if old is _EXECUTE:
            self._op_accum += now - self._op_since  # type: ignore[operator]
            self._op_since = None
            self._exec_ev = env.event()
            cause = "abort" if new in _ABORT_STATES else "hold"
            for k, st in enumerate(self._status):
                if st in _WORKING and not self._interrupted[k]:
                    self._interrupted[k] = True
                    self._procs[k].interrupt(cause)
        if new in _ABORT_STATES:
            self._aborts += 1
        if new is _EXECUTE:
            self._op_since = now
            self._exec_ev.succeed()
        for fn in self._listeners:
            fn(self, "state", value)
        if new is _SUSPENDED and WAITING in self._status and self._has_loaded_batch():
            self._internal(_UNSUSPEND)
        elif new is _EXECUTE and self._busy == 0 and not self._has_loaded_batch():
            # (re)started with nothing to work on: starved or blocked from the outset
            self._suspend_reason = BLOCKED if BLOCKED in self._status else STARVED
            self._internal(_SUSPEND)
        elif new in ACTING_STATES:  # last: may re-enter this listener
            d = self.acting_state_s.get(new, 0.0)
            if d <= 0:
                self.sm.state_complete()
            else:
                self._sc_token += 1
                token = self._sc_token
                env.timeout(d).callbacks.append(lambda _e: self._complete(token, new))

    def _complete(self, token: int, state: State) -> None:
        if token == self._sc_token and self.sm.state is state:
            self.sm.state_complete()

    def _internal(self, command: Command) -> None:
        self.command(command, issuer=self.name)

    def _has_loaded_batch(self) -> bool:
        return any(self._loaded)

    def _set_status(self, k: int, status: str) -> None:
        old = self._status[k]
        if old == status:
            return
        self._status[k] = status
        self._server_time[k].change(self.env.now, status)
        if old in _WORKING:
            self._busy -= 1
        if status in _WORKING:
            self._busy += 1
        elif self._busy == 0 and status in _IDLE_STATUSES:
            reason = BLOCKED if BLOCKED in self._status else STARVED
            state = self.sm.state
            if state is _EXECUTE:
                self._suspend_reason = reason
                self._internal(_SUSPEND)
            elif reason != self._suspend_reason and state in _SUSPEND_STATES:
                # still suspended, for another reason: a server that unblocked onto an empty
                # input is starved from now on (and the unit with it)
                self._suspend_reason = reason
                self.condition.change(self.env.now, self._condition(state))

    # --- server process --------------------------------------------------------------------
    def _server(self, k: int):
        env, m = self.env, self.model
        log = m.log.record
        name, inp = self.name, self.input
        inp_name, try_get, sm, status = inp.name, inp.try_get, self.sm, self._status
        while True:
            batch = []
            for _ in range(self.batch_size):
                u = try_get()
                if u is EMPTY:
                    ev = inp.get()
                    if not ev.triggered:
                        self._set_status(k, STARVED)
                        yield ev
                    u = ev.value
                batch.append(u)
            if self.arm is not None:
                yield from self.arm.handle(batch, "load", name)
            self._loaded[k] = True
            aborts = self._aborts
            now = env.now
            for u in batch:
                log(now, "load", name, u.id, u.product, name, inp_name)
            if sm.state is _EXECUTE:  # the common case, without a sub-generator
                ok = True
            else:
                ok = yield from self._await_execute(k)
            product = batch[0].product
            if ok and self.changeover is not None and self._last_product[k] not in (None, product):
                log(env.now, "changeover", name, -1, product, name, self._last_product[k] or "")
                ok = yield from self._work(k, self.changeover(), SETUP, aborts)
            self._last_product[k] = product
            if ok:  # self._work(k, self.process_time(), BUSY, aborts), inlined
                duration = self.process_time()
                if status[k] is not BUSY:
                    self._set_status(k, BUSY)
                start = env.now
                try:
                    yield env.timeout(duration)
                except simpy.Interrupt:
                    ok = yield from self._after_interrupt(k, duration - (env.now - start), BUSY,
                                                          aborts)
            self._loaded[k] = False
            if not ok:  # aborted: the material in the unit is scrapped
                for u in batch:
                    log(env.now, "scrap", name, u.id, u.product, name, "abort")
                    m.unit_left(env.now, u, False)
                continue
            if self.arm is not None:
                yield from self._unload(k, batch)
                continue
            # no arm: dispatch without a sub-generator unless an output buffer blocks
            outs = batch if self.transform is None else self._outputs(batch)
            counted = env.now >= m.warmup_s  # self._count(outs), inlined
            if counted:
                self.cycles += 1
                self.units_out += len(outs)
            blocked = self._dispatch(outs, 0, counted)
            if blocked is not None:
                yield from self._dispatch_blocked(k, outs, counted, blocked)

    def _await_execute(self, k: int):
        """Wait until the unit is in Execute (unsuspending it if needed); ``False`` if the unit
        was aborted meanwhile."""
        aborts = self._aborts
        while self.sm.state is not _EXECUTE:
            if self.sm.state is _SUSPENDED:
                self._internal(_UNSUSPEND)
                continue
            self._set_status(k, WAITING)
            yield self._exec_ev
        return self._aborts == aborts

    def _work(self, k: int, duration: float, status: str, aborts: int):
        """Work ``duration`` s in ``status``; ``False`` if the unit was aborted meanwhile."""
        env = self.env
        self._set_status(k, status)
        start = env.now
        try:
            yield env.timeout(duration)
            return True
        except simpy.Interrupt:
            return (yield from self._after_interrupt(k, duration - (env.now - start), status,
                                                     aborts))

    def _after_interrupt(self, k: int, remaining: float, status: str, aborts: int):
        """Interrupted (Hold or Abort) with ``remaining`` s of work left: wait for Execute, then
        finish the work (again after each further interrupt); ``False`` if aborted."""
        env = self.env
        while True:
            self._interrupted[k] = False
            self._set_status(k, WAITING)
            while self.sm.state is not _EXECUTE:
                yield self._exec_ev
            if self._aborts != aborts:
                return False
            self._set_status(k, status)
            start = env.now
            try:
                yield env.timeout(remaining)
                return True
            except simpy.Interrupt:
                remaining -= env.now - start

    def _unload(self, k: int, batch: list):
        """Transform, hand the outputs to the arm (if any) and dispatch them."""
        outs = self._outputs(batch)
        if self.arm is not None:
            yield from self.arm.handle(outs, "unload", self.name)
        counted = self._count(outs)
        blocked = self._dispatch(outs, 0, counted)
        if blocked is not None:
            yield from self._dispatch_blocked(k, outs, counted, blocked)

    def _outputs(self, batch: list) -> list:
        """The units that leave this cycle: the batch itself, or its transformation (logged as
        consumed and produced)."""
        if self.transform is None:
            return batch
        m = self.model
        now = self.env.now
        t = self.transform
        outs = m.material.transform(now, batch, t.product, t.units, self.name, t.container)
        m.units_entered(now, len(outs) - len(batch))
        if m.lots is not None:
            m.lots.transformed(batch, outs, now)
        log = m.log.record
        for u in batch:
            log(now, "consume", self.name, u.id, u.product, self.name, "")
        for u in outs:
            log(now, "produce", self.name, u.id, u.product, self.name, u.lot)
        return outs

    def _count(self, outs: list) -> bool:
        """Count the cycle if it ends after warm-up; ``True`` if counted."""
        counted = self.env.now >= self.model.warmup_s
        if counted:
            self.cycles += 1
            self.units_out += len(outs)
        return counted

    def _dispatch(self, outs: list, i: int, counted: bool):
        """Send ``outs[i:]`` to rejects, sinks and buffers in order. Return ``None`` when all
        are gone, or ``(index, destination, put event)`` for the first output whose buffer is
        full (its put is queued; the rest wait)."""
        m = self.model
        name = self.name
        reject_to = self.reject_to
        for j in range(i, len(outs)):
            u = outs[j]
            if reject_to is not None and self._reject_draw() < self.reject_probability:
                reject_to.absorb(u, name)
                continue
            if counted:
                self.units_good += 1
            dest = self.router()
            if isinstance(dest, Sink):
                dest.absorb(u, name)
                continue
            if not dest.try_put(u):
                ev = dest.put(u)
                if not ev.triggered:
                    return j, dest, ev
            m.log.record(self.env.now, "unload", name, u.id, u.product, dest.name, "")
        return None

    def _dispatch_blocked(self, k: int, outs: list, counted: bool, blocked):
        """Blocked after service: wait for each full output buffer in turn."""
        env, log = self.env, self.model.log.record
        while blocked is not None:
            j, dest, ev = blocked
            self._set_status(k, BLOCKED)
            yield ev
            u = outs[j]
            log(env.now, "unload", self.name, u.id, u.product, dest.name, "")
            blocked = self._dispatch(outs, j + 1, counted)

    # --- failures (operating-time based) ---------------------------------------------------
    def _failure(self, mode: FailureMode):
        env = self.env
        while True:
            need = mode.time_to_failure()
            tol = 1e-9 * max(1.0, need)
            while need > tol or self.sm.state is not _EXECUTE:
                if self.sm.state is not _EXECUTE:
                    yield self._exec_ev
                    continue
                t0 = self.operating_time()
                yield env.timeout(need)
                need -= self.operating_time() - t0
            self.faults += env.now >= self.model.warmup_s
            self.model.log.record(env.now, "fault", self.name, -1, "", self.name, mode.name)
            self._raise_alarm(mode.name, mode.reaction)
            for fn in self._listeners:
                fn(self, "fault", mode.name)
            self._internal(Command.ABORT if mode.reaction == "abort" else Command.HOLD)
            yield env.timeout(mode.repair_time())
            self.model.log.record(env.now, "repair", self.name, -1, "", self.name, mode.name)
            self.model.alarms.clear(env.now, self.name, mode.name)
            for fn in self._listeners:
                fn(self, "repaired", mode.name)

    def breakdown(self, name: str, duration_s: float, reaction: str = "hold"):
        """A scripted failure now (a fault campaign): the unit is held (or aborted) as by a
        failure mode ``name`` and repaired ``duration_s`` later. A unit that cannot be held now
        (not in Execute) is held as soon as it enters Execute within the repair time."""
        return self.env.process(self._scripted_failure(name, duration_s, reaction))

    def _scripted_failure(self, name: str, duration_s: float, reaction: str):
        env = self.env
        end = env.now + duration_s
        self.faults += env.now >= self.model.warmup_s
        self.model.log.record(env.now, "fault", self.name, -1, "", self.name, name)
        self._raise_alarm(name, reaction)
        for fn in self._listeners:
            fn(self, "fault", name)
        cmd = Command.ABORT if reaction == "abort" else Command.HOLD
        while self.sm.target(cmd) is None and env.now < end:
            yield self._exec_ev | env.timeout(end - env.now)
        if self.sm.target(cmd) is not None:
            self._internal(cmd)
        if env.now < end:
            yield env.timeout(end - env.now)
        self.model.log.record(env.now, "repair", self.name, -1, "", self.name, name)
        self.model.alarms.clear(env.now, self.name, name)
        for fn in self._listeners:
            fn(self, "repaired", name)

    def _raise_alarm(self, mode: str, reaction: str) -> None:
        what = "aborted (material scrapped)" if reaction == "abort" else "held"
        self.model.alarms.raise_alarm(self.env.now, self.name, mode,
                                      f"{self.name} {what} until repaired", "high")

    def last_progress_s(self) -> float:
        """When the unit last made progress (s): now while a server is busy or in set-up, else
        the latest time a server stopped working."""
        if any(st in (BUSY, SETUP) for st in self._status):
            return self.env.now
        return max(t.since for t in self._server_time)

    # --- end of run ------------------------------------------------------------------------
    def finish(self, now: float) -> None:
        self.state_time.finish(now)
        self.condition.finish(now)
        for t in self._server_time:
            t.finish(now)
