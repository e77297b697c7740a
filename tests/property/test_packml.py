"""PackML state machine against an independent oracle written from the standard's text
(ANSI/ISA-TR88.00.02-2015, Machine and Unit States), not from the module's transition tables.

The oracle:

* commands: Reset from Stopped/Complete; Start from Idle; Stop from any state except Stopping,
  Stopped, Aborting, Aborted, Clearing; Hold/Suspend from Execute; Unhold from Held; Unsuspend
  from Suspended; Abort from any state except Aborting, Aborted; Clear from Aborted;
* state complete (SC) ends each acting ("-ing") state, and Execute (→ Completing);
* a disabled acting state is passed through to its SC target; a command leading into a
  disabled wait state is rejected;
* the unit mode may change only in Stopped, Idle, Aborted and Complete.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from darkfab.factory.packml import Command, PackMLStateMachine, State

# --- the oracle (written from the text, by state and command *names*) -----------------------
STATES = ["Stopped", "Resetting", "Idle", "Starting", "Execute", "Completing", "Complete",
          "Holding", "Held", "Unholding", "Suspending", "Suspended", "Unsuspending", "Stopping",
          "Aborting", "Aborted", "Clearing"]
COMMANDS = ["Reset", "Start", "Stop", "Hold", "Unhold", "Suspend", "Unsuspend", "Abort", "Clear"]
MODES = ["Production", "Maintenance", "Manual"]

_LEGAL_FROM = {
    "Reset": {"Stopped", "Complete"},
    "Start": {"Idle"},
    "Stop": set(STATES) - {"Stopping", "Stopped", "Aborting", "Aborted", "Clearing"},
    "Hold": {"Execute"},
    "Unhold": {"Held"},
    "Suspend": {"Execute"},
    "Unsuspend": {"Suspended"},
    "Abort": set(STATES) - {"Aborting", "Aborted"},
    "Clear": {"Aborted"},
}
_LEADS_TO = {"Reset": "Resetting", "Start": "Starting", "Stop": "Stopping", "Hold": "Holding",
             "Unhold": "Unholding", "Suspend": "Suspending", "Unsuspend": "Unsuspending",
             "Abort": "Aborting", "Clear": "Clearing"}
_SC = {"Resetting": "Idle", "Starting": "Execute", "Execute": "Completing",
       "Completing": "Complete", "Holding": "Held", "Unholding": "Execute",
       "Suspending": "Suspended", "Unsuspending": "Execute", "Stopping": "Stopped",
       "Aborting": "Aborted", "Clearing": "Stopped"}
_MODE_CHANGE = {"Stopped", "Idle", "Aborted", "Complete"}
# Stopped, Execute and Aborted may never be disabled (the machine refuses them).
# Stopped, Idle, Execute and Aborted are mandatory: without them a unit could never start, run
# or be made safe (darkfab's rule; the standard leaves the set of disableable states open).
MANDATORY = ("Stopped", "Idle", "Execute", "Aborted")
DISABLEABLE = [s for s in STATES if s not in MANDATORY]


def is_acting(state: str) -> bool:
    return state.endswith("ing")


class Oracle:
    def __init__(self, state: str = "Stopped", mode: str = "Production",
                 disabled: dict[str, set[str]] | None = None) -> None:
        self.state = state
        self.mode = mode
        self.disabled = disabled or {}

    def enabled(self, state: str, mode: str | None = None) -> bool:
        return state not in self.disabled.get(mode or self.mode, set())

    def _pass_through(self, nxt: str) -> str | None:
        while not self.enabled(nxt):
            if not is_acting(nxt):
                return None  # into a disabled wait state: rejected
            nxt = _SC[nxt]
        return nxt

    def target(self, command: str) -> str | None:
        if self.state not in _LEGAL_FROM[command]:
            return None
        return self._pass_through(_LEADS_TO[command])

    def command(self, command: str) -> bool:
        nxt = self.target(command)
        if nxt is None:
            return False
        self.state = nxt
        return True

    def state_complete(self) -> bool:
        if self.state not in _SC:
            return False
        nxt = self._pass_through(_SC[self.state])
        if nxt is None:
            return False
        self.state = nxt
        return True

    def change_mode(self, mode: str) -> bool:
        if self.state not in _MODE_CHANGE or not self.enabled(self.state, mode):
            return False
        self.mode = mode
        return True


def consistent(disabled: set[str]) -> bool:
    """No SC can end in a disabled wait state: enabled acting states (and Execute) must reach an
    enabled state by SC alone. (Configurations that break this are tested separately below.)"""
    for s in [*(x for x in STATES if is_acting(x) and x not in disabled), "Execute"]:
        nxt = _SC[s]
        while nxt in disabled and is_acting(nxt):
            nxt = _SC[nxt]
        if nxt in disabled:
            return False
    return True


# --- sanity of the test's own vocabulary ------------------------------------------------------
def test_enums_are_the_standard_vocabulary():
    assert sorted(s.value for s in State) == sorted(STATES) and len(State) == 17
    assert sorted(c.value for c in Command) == sorted(COMMANDS) and len(Command) == 9


def test_defaults():
    sm = PackMLStateMachine()
    assert sm.state is State.STOPPED
    assert sm.mode == "Production"


# --- every (state, command) pair ---------------------------------------------------------
@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("state", STATES)
def test_accepts_exactly_the_legal_commands(state, command):
    sm = PackMLStateMachine(state=State(state))
    calls = []
    sm.add_listener(lambda old, new: calls.append((old, new)))
    legal = state in _LEGAL_FROM[command]
    expected = _LEADS_TO[command] if legal else None
    got_target = sm.target(Command(command))
    assert (got_target.value if got_target is not None else None) == expected
    assert sm.state is State(state), "target() must not change the state"
    assert sm.command(Command(command)) is legal
    if legal:
        assert sm.state is State(expected)
        assert calls == [(State(state), State(expected))]
    else:
        assert sm.state is State(state)
        assert calls == []


@pytest.mark.parametrize("state", STATES)
def test_state_complete_in_every_state(state):
    sm = PackMLStateMachine(state=State(state))
    calls = []
    sm.add_listener(lambda old, new: calls.append((old, new)))
    ok = sm.state_complete()
    if state in _SC:
        assert ok is True
        assert sm.state is State(_SC[state])
        assert calls == [(State(state), State(_SC[state]))]
    else:  # wait states do not complete
        assert ok is False
        assert sm.state is State(state)
        assert calls == []


@pytest.mark.parametrize("mode", ["Maintenance", "Manual", "Cleaning"])
@pytest.mark.parametrize("state", STATES)
def test_mode_change_only_in_stopped_idle_aborted_complete(state, mode):
    sm = PackMLStateMachine(state=State(state))
    ok = sm.change_mode(mode)
    assert ok is (state in _MODE_CHANGE)
    assert sm.mode == (mode if ok else "Production")
    assert sm.state is State(state), "a mode change never changes the state"


# --- random walks against the oracle -----------------------------------------------------
actions = st.one_of(
    st.tuples(st.just("command"), st.sampled_from(COMMANDS)),
    st.tuples(st.just("sc"), st.none()),
    st.tuples(st.just("mode"), st.sampled_from(MODES)),
)


def make_consistent(disabled: set[str]) -> set[str]:
    """Re-enable the wait states an enabled acting state (or Execute) completes into."""
    out = set(disabled)
    changed = True
    while changed:
        changed = False
        for s in [*(x for x in STATES if is_acting(x) and x not in out), "Execute"]:
            nxt = _SC[s]
            while nxt in out and is_acting(nxt):
                nxt = _SC[nxt]
            if nxt in out:
                out.discard(nxt)
                changed = True
    assert consistent(out)
    return out


disabled_sets = st.sets(st.sampled_from(DISABLEABLE)).map(make_consistent)


def _check_walk(start: str, disabled: dict[str, set[str]], steps) -> None:
    sm = PackMLStateMachine(state=State(start),
                            disabled={m: [State(s) for s in v] for m, v in disabled.items()})
    oracle = Oracle(start, "Production", disabled)
    calls: list[tuple[State, State]] = []
    sm.add_listener(lambda old, new: calls.append((old, new)))
    for i, (kind, arg) in enumerate(steps):
        before = sm.state
        n_calls = len(calls)
        if kind == "command":
            t = sm.target(Command(arg))
            assert (t.value if t is not None else None) == oracle.target(arg), (i, kind, arg)
            assert sm.state is before
            got, want = sm.command(Command(arg)), oracle.command(arg)
        elif kind == "sc":
            got, want = sm.state_complete(), oracle.state_complete()
        else:
            got, want = sm.change_mode(arg), oracle.change_mode(arg)
        assert got is want, (i, kind, arg, before)
        assert sm.state.value == oracle.state, (i, kind, arg, before)
        assert sm.mode == oracle.mode
        # the machine never rests in a state disabled in its mode
        assert oracle.enabled(sm.state.value)
        # listeners: called once with (old, new) exactly when the state changed
        if sm.state is before:
            assert len(calls) == n_calls
        else:
            assert calls[n_calls:] == [(before, sm.state)]


@settings(max_examples=300, deadline=None)
@given(start=st.sampled_from(STATES),
       steps=st.lists(st.tuples(st.sampled_from(["command", "sc"]), st.sampled_from(COMMANDS)),
                      max_size=60))
def test_random_walks_agree_with_oracle(start, steps):
    steps = [(k, c if k == "command" else None) for k, c in steps]
    _check_walk(start, {}, steps)


@settings(max_examples=300, deadline=None)
@given(disabled=st.fixed_dictionaries({m: disabled_sets for m in MODES}),
       steps=st.lists(actions, max_size=80))
def test_random_walks_with_modes_and_disabled_states(disabled, steps):
    _check_walk("Stopped", disabled, steps)


# --- disabled states: the rules spelled out ------------------------------------------------
def test_disabled_acting_state_is_passed_through_to_its_sc_target():
    sm = PackMLStateMachine(state=State.EXECUTE,
                            disabled={"Production": [State.HOLDING, State.UNHOLDING]})
    calls = []
    sm.add_listener(lambda old, new: calls.append((old, new)))
    assert sm.command(Command.HOLD)
    assert sm.state is State.HELD
    assert sm.command(Command.UNHOLD)
    assert sm.state is State.EXECUTE
    assert calls == [(State.EXECUTE, State.HELD), (State.HELD, State.EXECUTE)]


def test_chain_of_disabled_acting_states_on_sc():
    sm = PackMLStateMachine(state=State.EXECUTE, disabled={"Production": [State.COMPLETING]})
    assert sm.state_complete()
    assert sm.state is State.COMPLETE


def test_command_into_disabled_wait_state_is_rejected():
    sm = PackMLStateMachine(state=State.EXECUTE, disabled={
        "Production": [State.SUSPENDING, State.SUSPENDED, State.UNSUSPENDING]})
    calls = []
    sm.add_listener(lambda old, new: calls.append((old, new)))
    assert sm.target(Command.SUSPEND) is None
    assert not sm.command(Command.SUSPEND)
    assert sm.state is State.EXECUTE and calls == []


def test_disabled_states_apply_only_in_their_mode():
    sm = PackMLStateMachine(disabled={"Maintenance": [State.RESETTING]})
    assert sm.command(Command.RESET) and sm.state is State.RESETTING  # Production: enabled
    assert sm.state_complete() and sm.state is State.IDLE
    assert sm.change_mode("Maintenance")
    assert sm.command(Command.STOP) and sm.state_complete() and sm.state is State.STOPPED
    assert sm.command(Command.RESET)
    assert sm.state is State.IDLE  # Resetting disabled in Maintenance: passed through


def test_mode_change_refused_into_a_mode_where_the_current_state_is_disabled():
    sm = PackMLStateMachine(state=State.COMPLETE, disabled={"Manual": [State.COMPLETE]})
    assert not sm.change_mode("Manual")
    assert sm.mode == "Production"
    assert sm.state is State.COMPLETE


@pytest.mark.parametrize("state", [State.STOPPED, State.IDLE, State.EXECUTE, State.ABORTED])
def test_mandatory_states_cannot_be_disabled(state):
    with pytest.raises(ValueError):
        PackMLStateMachine(disabled={"Manual": [state]})


# Configurations where an *enabled* acting state (or Execute) completes into a disabled wait
# state. The machine must either refuse the configuration (ValueError) or refuse the SC
# (return False, state unchanged) — it must never crash with an internal error.
@pytest.mark.parametrize("start, disabled", [
    (State.EXECUTE, [State.COMPLETE]),                    # Execute → Completing → (Complete)
    (State.EXECUTE, [State.COMPLETING, State.COMPLETE]),  # Execute → (Completing) → (Complete)
    (State.HOLDING, [State.HELD]),                        # Holding → (Held)
    (State.SUSPENDING, [State.SUSPENDED]),                # Suspending → (Suspended)
    (State.RESETTING, [State.IDLE]),                      # Resetting → (Idle)
])
def test_sc_into_disabled_wait_state_never_crashes(start, disabled):
    try:
        sm = PackMLStateMachine(state=start, disabled={"Production": disabled})
    except ValueError:
        return  # refusing the configuration is acceptable
    ok = sm.state_complete()
    assert ok is False
    assert sm.state is start
