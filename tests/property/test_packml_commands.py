"""Stateful property test: a controller drives a live PackML unit through the plant's command
path (validation, guards, logging) with random commands while time passes.

The oracle is written here from ANSI/ISA-TR88.00.02-2015 (Machine and Unit States), not taken from
``darkfab.factory.packml``: a command is accepted exactly when it is legal in the unit's state,
an accepted command leads into its acting state, and every state change the unit makes (by a
command, its own Suspend/Unsuspend, or *state complete*) is a transition of the standard.
"""

from __future__ import annotations

import textwrap

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from darkfab.control import PackMLCommand
from darkfab.scenarios import load_scenario
from darkfab.scenarios.builder import build_plant

STATES = {"Stopped", "Resetting", "Idle", "Starting", "Execute", "Completing", "Complete",
          "Holding", "Held", "Unholding", "Suspending", "Suspended", "Unsuspending", "Stopping",
          "Aborting", "Aborted", "Clearing"}
LEGAL_FROM = {
    "Reset": {"Stopped", "Complete"},
    "Start": {"Idle"},
    "Stop": STATES - {"Stopping", "Stopped", "Aborting", "Aborted", "Clearing"},
    "Hold": {"Execute"},
    "Unhold": {"Held"},
    "Suspend": {"Execute"},
    "Unsuspend": {"Suspended"},
    "Abort": STATES - {"Aborting", "Aborted"},
    "Clear": {"Aborted"},
}
LEADS_TO = {"Reset": "Resetting", "Start": "Starting", "Stop": "Stopping", "Hold": "Holding",
            "Unhold": "Unholding", "Suspend": "Suspending", "Unsuspend": "Unsuspending",
            "Abort": "Aborting", "Clear": "Clearing"}
SC = {"Resetting": "Idle", "Starting": "Execute", "Execute": "Completing",
      "Completing": "Complete", "Holding": "Held", "Unholding": "Execute",
      "Suspending": "Suspended", "Unsuspending": "Execute", "Stopping": "Stopped",
      "Aborting": "Aborted", "Clearing": "Stopped"}
LEGAL_STEPS = {(a, b) for a, b in SC.items()} | {
    (a, LEADS_TO[c]) for c, froms in LEGAL_FROM.items() for a in froms}

SCENARIO = textwrap.dedent("""
    [scenario]
    name = "packml-cmd"
    horizon_s = 1e9
    seed = 5
    [products.a]
    [nodes.n]
    x_m = 0.0
    y_m = 0.0
    [sources.src]
    node = "n"
    to = "q"
    product = "a"
    interarrival = { dist = "exponential", mean_s = 4.0 }
    [buffers.q]
    node = "n"
    [equipment.m]
    node = "n"
    input = "q"
    process_time = { dist = "exponential", mean_s = 3.0 }
    next = "out"
    [equipment.m.acting_state_s]
    resetting = 1.0
    starting = 1.0
    stopping = 1.0
    holding = 1.0
    unholding = 1.0
    suspending = 0.5
    unsuspending = 0.5
    aborting = 1.0
    clearing = 1.0
    [sinks.out]
    node = "n"
    [controller]
    name = "do-nothing"
    """)


class PackMLUnderCommands(RuleBasedStateMachine):
    @initialize()
    def build(self):
        import tempfile
        from pathlib import Path
        self._tmp = tempfile.TemporaryDirectory()
        tmp = Path(self._tmp.name)
        (tmp / "s.toml").write_text(SCENARIO)
        self.plant = build_plant(load_scenario(tmp / "s.toml"), 5, 0, tmp, "prop")
        self.plant.start()
        self.env = self.plant.model.env
        self.unit = self.plant.equipment["m"]
        self.steps: list[tuple[str, str]] = []
        self.prev = self.unit.state.value
        self.unit.subscribe(self._on_event)

    def _on_event(self, _eq, kind, detail):
        if kind == "state":
            self.steps.append((self.prev, detail))
            self.prev = detail

    @rule(command=st.sampled_from(sorted(LEGAL_FROM)))
    def command(self, command):
        before = self.unit.state.value
        n = len(self.steps)
        accepted = self.plant.control.apply(PackMLCommand("m", command), issuer="hypothesis")
        assert accepted == (before in LEGAL_FROM[command]), (command, before)
        if accepted:  # every acting state lasts > 0 s here: the unit is in it now
            assert self.steps[n] == (before, LEADS_TO[command])
            assert self.unit.state.value == LEADS_TO[command]
        else:
            assert len(self.steps) == n and self.unit.state.value == before

    @rule(dt=st.floats(min_value=0.01, max_value=8.0))
    def wait(self, dt):
        self.env.run(until=self.env.now + dt)

    @invariant()
    def transitions_are_legal(self):
        if hasattr(self, "steps"):
            bad = [s for s in self.steps if s not in LEGAL_STEPS]
            assert not bad, bad

    def teardown(self):
        if hasattr(self, "plant"):
            self.plant.model.close()
            self._tmp.cleanup()


PackMLUnderCommands.TestCase.settings = settings(max_examples=40, stateful_step_count=40,
                                                 deadline=None)
TestPackMLUnderCommands = PackMLUnderCommands.TestCase
