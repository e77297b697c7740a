"""Controllers: a conformance suite over every registered controller (networkx's ``flow_funcs``
pattern), user controllers as ``module:Class``, command validation, the sensor model, and a
controller that raises (a controller fault: safe stop, exit code 3, readable partial results).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from darkfab.control import (CONTROLLERS, ChangeMode, Charge, Controller, ControllerFault,
                             ControllerSpecError, Dispatch, Divert, Maintenance, PackMLCommand, Quarantine, Release,
                             Sequence, SetPoint, TransportRequest, WakeUp, make_controller)
from darkfab.scenarios import load_scenario, run_scenario
from darkfab.scenarios.cli import main
from darkfab.scenarios.loader import ScenarioError

# ANSI/ISA-TR88.00.02-2015 (Machine and Unit States): where each command is legal, written from
# the text.
ALL_STATES = {"Stopped", "Resetting", "Idle", "Starting", "Execute", "Completing", "Complete",
              "Holding", "Held", "Unholding", "Suspending", "Suspended", "Unsuspending",
              "Stopping", "Aborting", "Aborted", "Clearing"}
LEGAL_FROM = {
    "Reset": {"Stopped", "Complete"}, "Start": {"Idle"},
    "Stop": ALL_STATES - {"Stopping", "Stopped", "Aborting", "Aborted", "Clearing"},
    "Hold": {"Execute"}, "Unhold": {"Held"}, "Suspend": {"Execute"},
    "Unsuspend": {"Suspended"}, "Abort": ALL_STATES - {"Aborting", "Aborted"},
    "Clear": {"Aborted"},
}
TOWARD_EXECUTE = {"Reset", "Start", "Unhold", "Unsuspend", "Clear"}
HORIZON = 30_000.0


def plant_toml(controller: str = 'name = "auto-recovery"', horizon: float = HORIZON) -> str:
    """Two units in tandem, a finite buffer between them, a hold and an abort failure mode that
    strike often, acting states that take time."""
    return textwrap.dedent(f"""
        [scenario]
        name = "ctl"
        horizon_s = {horizon}
        warmup_s = 1000.0
        seed = 11
        [products.a]
        [products.box]
        [nodes.n]
        x_m = 0.0
        y_m = 0.0
        [sources.src]
        node = "n"
        to = "q1"
        product = "a"
        interarrival = {{ dist = "exponential", mean_s = 12.0 }}
        [buffers.q1]
        node = "n"
        [buffers.q2]
        node = "n"
        capacity_units = 4
        [equipment.m1]
        node = "n"
        input = "q1"
        process_time = {{ dist = "exponential", mean_s = 8.0 }}
        next = "q2"
        acting_state_s = {{ starting = 5.0, stopping = 3.0, clearing = 20.0, holding = 2.0 }}
        [[equipment.m1.failures]]
        name = "jam"
        time_to_failure = {{ dist = "exponential", mean_s = 2000.0 }}
        repair_time = {{ dist = "exponential", mean_s = 300.0 }}
        reaction = "hold"
        [equipment.m2]
        node = "n"
        input = "q2"
        process_time = {{ dist = "exponential", mean_s = 9.0 }}
        batch_size_units = 2
        output = {{ product = "box", units = 1 }}
        next = "out"
        reject_probability = 0.05
        reject_to = "scrap"
        acting_state_s = {{ resetting = 4.0, aborting = 1.0 }}
        [[equipment.m2.failures]]
        name = "crash"
        time_to_failure = {{ dist = "weibull", shape = 1.5, scale_s = 3000.0 }}
        repair_time = {{ dist = "lognormal", mean_s = 400.0, cv = 0.5 }}
        reaction = "abort"
        [sinks.out]
        node = "n"
        [sinks.scrap]
        node = "n"
        kind = "scrap"
        [controller]
        {controller}
        """)


def write(tmp_path: Path, text: str, name: str = "ctl.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def events_of(out: Path) -> list[dict]:
    return pq.read_table(out / "events.parquet").to_pylist()


def check_conformance(out: Path, summary: dict, issuer: str) -> None:
    """Every command executed was legal in the unit's state; no command towards Execute while a
    fault of the unit was active; material balance and buffer capacity hold."""
    ev = events_of(out)
    state = {"m1": "Stopped", "m2": "Stopped"}
    faulty: dict[str, int] = {"m1": 0, "m2": 0}
    wip = 0
    q2 = 0
    for e in ev:
        k, ent = e["kind"], e["entity"]
        if k == "state" and ent in state:
            state[ent] = e["detail"]
        elif k == "command" and ent in state:
            cmd = e["detail"].split(":", 1)[0].split(";", 1)[0]  # "<command>[: <reason>][; decided <t> s]"
            assert state[ent] in LEGAL_FROM[cmd], (e, state[ent])
            if e["location"] == issuer and cmd in TOWARD_EXECUTE:
                assert faulty[ent] == 0, f"unsafe command executed: {e}"
        elif k == "fault":
            faulty[ent] += 1
        elif k == "repair":
            faulty[ent] -= 1
        elif k == "command_rejected":
            assert e["detail"], e
        if k in ("create", "produce"):
            wip += 1
        elif k in ("consume", "complete", "scrap"):
            wip -= 1
        assert wip >= 0
        if k == "unload" and e["location"] == "q2":
            q2 += 1
        elif k == "load" and e["detail"] == "q2":
            q2 -= 1
        # m2 logs its loads when its batch of 2 is complete: one unit may have left unlogged
        assert -1 <= q2 <= 4
    assert summary["events"] == len(ev)
    for name in ("states", "genealogy", "timeseries", "kpis"):
        pq.read_table(out / f"{name}.parquet")


CASES = {
    "immediate": "",
    "latency-and-sensors": "decision_latency_s = 5.0\n"
                           "sensors = { delay_s = 2.0, noise_sd_units = 0.7, "
                           "dropout_probability = 0.2 }",
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("name", sorted(CONTROLLERS))
def test_conformance(tmp_path, name, case):
    """Every registered controller runs to the horizon, never has an illegal or unsafe command
    executed, and keeps the plant's invariants."""
    spec = f'name = "{name}"\n{CASES[case]}'
    res = run_scenario(load_scenario(write(tmp_path, plant_toml(spec))), out_dir=tmp_path / "o")
    sm = res.summary
    assert not sm["partial"] and sm["simulated_s"] == HORIZON
    assert sm["controller"]["fault"] is None
    ctl = make_controller(name)
    assert isinstance(ctl, Controller)
    check_conformance(res.out_dir, sm, getattr(ctl, "name", name))


def test_auto_recovery_recovers_every_fault(tmp_path):
    res = run_scenario(load_scenario(write(tmp_path, plant_toml())), out_dir=tmp_path / "o")
    sm = res.summary
    faults = sum(e["faults"] for e in sm["equipment"].values())
    assert faults > 5
    rec = sm["controller"]["recovery_time_s"]
    assert rec["n"] >= faults - 2 and rec["mean"] > 0
    assert sm["controller"]["faults_unrecovered"] <= 2
    assert sm["units_completed"] > 0


def test_cautious_escalates_to_a_controlled_stop(tmp_path):
    spec = 'name = "cautious"\nparams = { max_faults = 1, window_s = 1e9 }'
    res = run_scenario(load_scenario(write(tmp_path, plant_toml(spec))), out_dir=tmp_path / "o")
    ev = events_of(res.out_dir)
    first = next(e for e in ev if e["kind"] == "fault")
    unit = first["entity"]
    later = [e for e in ev if e["time_s"] >= first["time_s"] and e["entity"] == unit]
    cmds = [e["detail"].split(":")[0] for e in later
            if e["kind"] == "command" and e["location"] == "cautious"]
    # hold reaction (m1): a controlled Stop; abort reaction (m2): cleared to Stopped on repair
    assert cmds == (["Stop"] if unit == "m1" else ["Clear"])
    assert [e["detail"] for e in later if e["kind"] == "state"][-1] == "Stopped"


def test_do_nothing_leaves_units_stopped(tmp_path):
    res = run_scenario(load_scenario(write(tmp_path, plant_toml('name = "do-nothing"'))),
                       out_dir=tmp_path / "o")
    assert res.summary["units_completed"] == 0
    assert not [e for e in events_of(res.out_dir) if e["kind"] == "command"]


# --- user controllers -----------------------------------------------------------------------
USER_MODULE = '''
from darkfab.control import (AutoRecoverySupervisor, PackMLCommand, Dispatch, Divert, SetPoint,
                             TransportRequest, Charge, Maintenance, Quarantine, Release, Sequence,
                             WakeUp, ChangeMode)


class Recording(AutoRecoverySupervisor):
    """Auto-recovery that also records what it saw, and tries every unsupported command."""
    name = "recording"
    wakes_on = None
    seen = []

    def __init__(self, probe=False):
        self.probe = probe

    def reset(self, info):
        super().reset(info)
        type(self).seen = []
        self.info = info

    def decide(self, events, observation):
        type(self).seen.append((tuple(events), observation))
        out = super().decide(events, observation)
        if self.probe and any(e.kind == "start" for e in events):
            out += [Dispatch("m1", "spt"), Dispatch("m1", "nope"), Sequence("m1", ("L1",)),
                    TransportRequest("q1", "q2"), Charge("amr-9"), Maintenance("m2"),
                    Divert("L1"), Quarantine("L1"), Release("L1"), SetPoint("m1", "speed", 2.0),
                    PackMLCommand("ghost", "Start"), PackMLCommand("m1", "Fly"),
                    PackMLCommand("m1", "Unhold"), ChangeMode("m2", "Maintenance"),
                    WakeUp(-1.0), "not a command", WakeUp(5000.0, "ping")]
        return out


class Raising(AutoRecoverySupervisor):
    name = "raising"

    def decide(self, events, observation):
        if observation.time_s > 8000:
            raise ZeroDivisionError("boom in user policy")
        return super().decide(events, observation)


class RaisingInReset:
    def reset(self, info):
        raise KeyError("no such thing")

    def decide(self, events, observation):
        return []


class BadReturn(AutoRecoverySupervisor):
    def decide(self, events, observation):
        return None


class NotAController:
    pass
'''


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """A module of user controllers in the working directory, under a unique name."""
    name = f"user_ctl_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(USER_MODULE)
    monkeypatch.chdir(tmp_path)
    yield name
    sys.modules.pop(name, None)


def test_user_controller_by_module_path(tmp_path, user_module):
    spec = f'name = "{user_module}:Recording"\nparams = {{ probe = true }}'
    res = run_scenario(load_scenario(write(tmp_path, plant_toml(spec, horizon=10_000.0))),
                       out_dir=tmp_path / "o", allow_code=True)
    mod = sys.modules[user_module]
    seen = mod.Recording.seen
    assert seen[0][0][0].kind == "start"
    obs = seen[-1][1]
    assert set(obs.equipment) == {"m1", "m2"} and set(obs.buffers) == {"q1", "q2"}
    assert obs.buffers["q2"].capacity_units == 4 and obs.buffers["q1"].capacity_units is None
    kinds = {e.kind for evs, _ in seen for e in evs}
    assert {"start", "state", "fault", "repaired", "command_rejected", "timer"} <= kinds
    assert {"starved", "blocked"} & kinds
    ev = events_of(res.out_dir)
    rej = [e["detail"] for e in ev if e["kind"] == "command_rejected" and e["location"] ==
           "recording"]
    for part in ("Dispatch: unknown dispatching rule", "Dispatch: unsupported",
                 "Sequence: unsupported", "TransportRequest: no fleet", "Charge: unknown robot",
                 "Maintenance: unsupported", "Divert: unknown lot 'L1'",
                 "Quarantine: unknown lot 'L1'", "Release: unknown lot 'L1'",
                 "SetPoint: unsupported", "PackMLCommand: unknown unit",
                 "PackMLCommand: unknown PackML command", "Unhold in ", "mode Maintenance in ",
                 "WakeUp: time -1", "str: not a darkfab command"):
        assert any(part in r for r in rej), (part, rej)
    assert res.summary["controller"]["commands_unsupported"] == 4
    assert not res.summary["partial"]


def test_sensor_model_noise_dropout_and_delay(tmp_path, user_module):
    spec = (f'name = "{user_module}:Recording"\n'
            'sensors = { delay_s = 7.0, noise_sd_units = 2.0, dropout_probability = 0.3 }\n'
            'decision_latency_s = 3.0')
    res = run_scenario(load_scenario(write(tmp_path, plant_toml(spec, horizon=5000.0))),
                       out_dir=tmp_path / "o", allow_code=True)
    seen = sys.modules[user_module].Recording.seen
    levels = [o.buffers["q1"].level_units for _, o in seen]
    assert any(x is None for x in levels)
    vals = [x for x in levels if x is not None]
    assert all(x >= 0 for x in vals) and any(x != int(x) for x in vals)
    ev = events_of(res.out_dir)
    first = next(e for e in ev if e["kind"] == "command")
    assert first["time_s"] == pytest.approx(10.0) and first["detail"].startswith("Reset: ")


@pytest.mark.parametrize("cls,message", [
    ("NotAController", "is not a Controller"),
    ("Missing", "has no 'Missing'"),
])
def test_not_a_controller_is_a_scenario_error(tmp_path, user_module, capsys, cls, message):
    p = write(tmp_path, plant_toml(f'name = "{user_module}:{cls}"'))
    assert main(["run", str(p), "--quiet", "--allow-code", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "controller.name" in err and message in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()  # refused before anything was written


def test_unimportable_controller_and_bad_params(tmp_path):
    s = load_scenario(write(tmp_path, plant_toml('name = "no_such_module_xyz:C"')))
    with pytest.raises(ControllerSpecError, match="cannot import module 'no_such_module_xyz'"):
        run_scenario(s, out_dir=tmp_path / "o", allow_code=True)
    with pytest.raises(ScenarioError) as e:
        load_scenario(write(tmp_path, plant_toml('name = "cautious"\nparams = { nope = 1 }')))
    assert [p.path for p in e.value.problems] == ["controller.params"]


# --- controller faults ----------------------------------------------------------------------
def test_raising_controller_stops_the_plant_safely_exit_3(tmp_path, user_module):
    p = write(tmp_path, plant_toml(f'name = "{user_module}:Raising"'))
    out = tmp_path / "o"
    proc = subprocess.run([sys.executable, "-m", "darkfab.scenarios.cli", "run", str(p),
                           "--quiet", "--allow-code", "--out", str(out)], capture_output=True,
                          text=True,
                          cwd=tmp_path, timeout=120)
    assert proc.returncode == 3, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert "controller fault" in lines[0] and "ZeroDivisionError: boom in user policy" in lines[0]
    sm = json.loads((out / "summary.json").read_text())
    assert sm["partial"] is True and "controller fault" in sm["partial_reason"]
    ev = events_of(out)
    assert sm["events"] == len(ev)
    fault = next(e for e in ev if e["kind"] == "controller_fault")
    assert 8000 < fault["time_s"] <= sm["simulated_s"] <= fault["time_s"] + 600  # safe_stop_s
    assert "ZeroDivisionError" in fault["detail"]
    after = ev[ev.index(fault) + 1:]  # logged after the fault (a unit's own Abort that woke
    # the controller may share its time stamp)
    assert not [e for e in after if e["kind"] == "create"]  # sources stopped
    # no command but the safety stops and the units' own (a failure's Abort at that instant)
    assert not [e for e in after if e["kind"] == "command"
                and e["location"] not in ("safety", e["entity"])]
    last = {e["entity"]: e["detail"] for e in ev if e["kind"] == "state"}
    assert set(last.values()) <= {"Stopped", "Aborted"}
    for name in ("states", "genealogy", "timeseries", "kpis"):
        pq.read_table(out / f"{name}.parquet")


@pytest.mark.parametrize("cls,cause", [("RaisingInReset", "reset() raised KeyError"),
                                       ("BadReturn", "decide() raised TypeError")])
def test_controller_fault_in_reset_or_protocol(tmp_path, user_module, cls, cause):
    s = load_scenario(write(tmp_path, plant_toml(f'name = "{user_module}:{cls}"')))
    with pytest.raises(ControllerFault) as e:
        run_scenario(s, out_dir=tmp_path / "o", allow_code=True)
    assert cause in str(e.value)
    assert e.value.summary["partial"] is True  # type: ignore[attr-defined]
    assert e.value.summary["simulated_s"] < 1.0  # type: ignore[attr-defined]


def test_command_types_are_frozen():
    c = PackMLCommand("m1", "Start")
    with pytest.raises(AttributeError):
        c.unit = "m2"  # type: ignore[misc]
    for cmd in (ChangeMode("a", "b"), Dispatch("a", "spt"), Divert("L"), SetPoint("a", "x", 1)):
        assert hash(cmd) == hash(type(cmd)(*[getattr(cmd, f) for f in cmd.__slots__]))
