"""PackML unit state model (ANSI/ISA-TR88.00.02), without any notion of time.

The machine knows the 17 states, the 9 commands and the *state complete* (SC) transitions that end
acting ("-ing") states. It rejects an illegal command (returns ``False``) and never applies it.
Unit modes (Production, Maintenance, Manual, or user-defined) may disable states: a disabled
acting state is passed straight through to its SC target; a command or SC whose path ends in a
disabled wait state is rejected (e.g. with Held disabled, Hold is illegal). Stopped, Idle,
Execute and Aborted cannot be disabled. Listeners are called ``(old, new)`` after every state change.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from enum import Enum

__all__ = [
    "State", "Command", "Mode", "COMMAND_TRANSITIONS", "SC_TRANSITIONS", "ACTING_STATES",
    "MODE_CHANGE_STATES", "MANDATORY_STATES", "PackMLStateMachine",
]


class State(str, Enum):
    STOPPED = "Stopped"
    RESETTING = "Resetting"
    IDLE = "Idle"
    STARTING = "Starting"
    EXECUTE = "Execute"
    COMPLETING = "Completing"
    COMPLETE = "Complete"
    HOLDING = "Holding"
    HELD = "Held"
    UNHOLDING = "Unholding"
    SUSPENDING = "Suspending"
    SUSPENDED = "Suspended"
    UNSUSPENDING = "Unsuspending"
    STOPPING = "Stopping"
    ABORTING = "Aborting"
    ABORTED = "Aborted"
    CLEARING = "Clearing"


class Command(str, Enum):
    RESET = "Reset"
    START = "Start"
    STOP = "Stop"
    HOLD = "Hold"
    UNHOLD = "Unhold"
    SUSPEND = "Suspend"
    UNSUSPEND = "Unsuspend"
    ABORT = "Abort"
    CLEAR = "Clear"


class Mode(str, Enum):
    PRODUCTION = "Production"
    MAINTENANCE = "Maintenance"
    MANUAL = "Manual"


S = State
_STOPPABLE = set(State) - {S.STOPPING, S.STOPPED, S.ABORTING, S.ABORTED, S.CLEARING}
_ABORTABLE = set(State) - {S.ABORTING, S.ABORTED}

COMMAND_TRANSITIONS: dict[Command, dict[State, State]] = {
    Command.RESET: {S.STOPPED: S.RESETTING, S.COMPLETE: S.RESETTING},
    Command.START: {S.IDLE: S.STARTING},
    Command.STOP: {s: S.STOPPING for s in _STOPPABLE},
    Command.HOLD: {S.EXECUTE: S.HOLDING},
    Command.UNHOLD: {S.HELD: S.UNHOLDING},
    Command.SUSPEND: {S.EXECUTE: S.SUSPENDING},
    Command.UNSUSPEND: {S.SUSPENDED: S.UNSUSPENDING},
    Command.ABORT: {s: S.ABORTING for s in _ABORTABLE},
    Command.CLEAR: {S.ABORTED: S.CLEARING},
}
"""Legal command → {from state: to state}."""

SC_TRANSITIONS: dict[State, State] = {
    S.RESETTING: S.IDLE,
    S.STARTING: S.EXECUTE,
    S.EXECUTE: S.COMPLETING,
    S.COMPLETING: S.COMPLETE,
    S.HOLDING: S.HELD,
    S.UNHOLDING: S.EXECUTE,
    S.SUSPENDING: S.SUSPENDED,
    S.UNSUSPENDING: S.EXECUTE,
    S.STOPPING: S.STOPPED,
    S.ABORTING: S.ABORTED,
    S.CLEARING: S.STOPPED,
}
"""State complete: where each acting state (and Execute, when its work is done) goes."""

ACTING_STATES = frozenset(s for s in SC_TRANSITIONS if s is not S.EXECUTE)
MODE_CHANGE_STATES = frozenset({S.STOPPED, S.IDLE, S.ABORTED, S.COMPLETE})
MANDATORY_STATES = frozenset({S.STOPPED, S.IDLE, S.EXECUTE, S.ABORTED})
"""States no mode may disable: without them a unit could never start, run or be made safe."""
"""Wait states in which the unit mode may be changed."""

Listener = Callable[[State, State], None]


class PackMLStateMachine:
    """Timeless PackML state machine; the owner decides when acting states are complete."""

    __slots__ = ("state", "mode", "_disabled", "_listeners")

    def __init__(self, state: State = S.STOPPED, mode: str = Mode.PRODUCTION.value,
                 disabled: dict[str, Iterable[State]] | None = None) -> None:
        self.state = state
        self.mode = mode
        self._disabled: dict[str, frozenset[State]] = {
            m: frozenset(v) for m, v in (disabled or {}).items()
        }
        for m, states in self._disabled.items():
            if states & MANDATORY_STATES:
                names = ", ".join(sorted(s.value for s in states & MANDATORY_STATES))
                raise ValueError(f"mode {m}: {names} cannot be disabled")
        self._listeners: list[Listener] = []

    def add_listener(self, fn: Listener) -> None:
        self._listeners.append(fn)

    def is_enabled(self, state: State) -> bool:
        return state not in self._disabled.get(self.mode, ())

    def target(self, command: Command) -> State | None:
        """The state ``command`` would lead to now, or ``None`` if it is illegal here."""
        nxt = COMMAND_TRANSITIONS[command].get(self.state)
        return None if nxt is None else self._settle(nxt, self.mode)

    def _settle(self, state: State, mode: str) -> State | None:
        """Where entering ``state`` ends up in ``mode``: disabled acting states are passed
        through to their SC target; ``None`` if the path ends in a disabled wait state (then the
        transition is not allowed at all)."""
        while not self.is_enabled_in(mode, state):
            if state not in ACTING_STATES:
                return None
            state = SC_TRANSITIONS[state]
        end = state
        while end in ACTING_STATES:  # the wait state this acting state will complete into
            end = SC_TRANSITIONS[end]
        return state if self.is_enabled_in(mode, end) else None

    def command(self, command: Command) -> bool:
        """Apply ``command`` if legal in the current state and mode; return whether it was."""
        nxt = self.target(command)
        if nxt is None:
            return False
        self._enter(nxt)
        return True

    def state_complete(self) -> bool:
        """Signal SC for the current acting state (or Execute); ``False`` in a wait state or
        when the SC target is disabled in this mode."""
        nxt = SC_TRANSITIONS.get(self.state)
        if nxt is None:
            return False
        nxt = self._settle(nxt, self.mode)
        if nxt is None:
            return False
        self._enter(nxt)
        return True

    def change_mode(self, mode: str) -> bool:
        """Change unit mode; legal only in Stopped, Idle, Aborted and Complete."""
        if self.state not in MODE_CHANGE_STATES or not self.is_enabled_in(mode, self.state):
            return False
        self.mode = mode
        return True

    def is_enabled_in(self, mode: str, state: State) -> bool:
        return state not in self._disabled.get(mode, ())

    def _enter(self, new: State) -> None:
        old = self.state
        self.state = new
        for fn in self._listeners:
            fn(old, new)
