"""The one command path: a handler per command type in one table, rejection of unknown command
types, the decision time in the log, and the small public methods the path uses instead of
other objects' private state."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import simpy

from darkfab.control.commands import COMMAND_TYPES, PackMLCommand, WakeUp
from darkfab.factory.buffers import Buffer
from darkfab.scenarios import load_scenario, run_scenario
from darkfab.scenarios.builder import build_plant
from darkfab.scenarios.commanding import HANDLERS, handlers_for

from test_controllers import plant_toml, write  # the two-unit plant of the controller suite

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios" / "files"


def test_every_command_type_has_exactly_one_handler():
    assert set(HANDLERS) == set(COMMAND_TYPES)
    assert len(COMMAND_TYPES) == len(set(COMMAND_TYPES))
    for t, h in HANDLERS.items():
        for method in ("target", "check", "apply"):
            assert callable(getattr(h, method)), (t, method)


@dataclass(frozen=True)
class Teleport:
    """A command type with no handler."""

    unit: str
    reason: str = ""


def _plant(tmp_path, toml: str):
    """A built, started plant whose event-log rows are also kept in ``plant.rows`` as
    (time, kind, entity, location, detail)."""
    out = tmp_path / "o"
    out.mkdir()
    plant = build_plant(load_scenario(write(tmp_path, toml)), 11, 0, out, "t")
    log = plant.model.log
    record = log.record
    rows: list[tuple] = []

    def keep(t, kind, entity, unit_id=-1, product="", location="", detail=""):
        rows.append((t, kind, entity, location, detail))
        record(t, kind, entity, unit_id, product, location, detail)
    log.record = keep
    plant.rows = rows
    plant.start()
    return plant


def _commands(plant) -> list[tuple]:
    return [r for r in plant.rows if r[1] in ("command", "command_rejected")]


def test_unknown_command_type_is_rejected_and_known_ones_dispatch(tmp_path):
    plant = _plant(tmp_path, plant_toml('name = "do-nothing"'))
    loop = plant.control
    assert set(loop.handlers) == set(COMMAND_TYPES)
    assert len({id(h) for h in handlers_for(loop).values()}) < len(COMMAND_TYPES)  # shared
    plant.model.env.run(until=10.0)
    n = len(_commands(plant))
    assert not loop.apply(Teleport("m1"))
    assert not loop.apply(PackMLCommand("nowhere", "Start"))
    assert loop.apply(PackMLCommand("m1", "Reset", "go"))
    assert not loop.apply(PackMLCommand("m1", "Reset"))  # the unit's guard: Idle now (no resetting time)
    got = [r[1:] for r in _commands(plant)[n:]]
    assert got == [("command_rejected", "plant", "do-nothing", "Teleport: not a darkfab command"),
                   ("command_rejected", "nowhere", "do-nothing",
                    "PackMLCommand: unknown unit 'nowhere'"),
                   ("command", "m1", "do-nothing", "Reset: go"),
                   ("command_rejected", "m1", "do-nothing", "Reset in Idle")]
    assert loop.rejected == 3 and loop.commands == 4


def test_active_faults_is_the_interlock(tmp_path):
    """``ControlLoop.active_faults`` lists a unit's active failure modes, and a command towards
    Execute is refused while it is not empty."""
    plant = _plant(tmp_path, plant_toml('name = "do-nothing"', horizon=50_000.0))
    loop, env = plant.control, plant.model.env
    assert loop.active_faults("m1") == () and loop.active_faults("no-such-unit") == ()
    for unit in ("m1", "m2"):
        loop.apply(PackMLCommand(unit, "Reset"))
    env.run(until=env.now + 60.0)
    for unit in ("m1", "m2"):
        loop.apply(PackMLCommand(unit, "Start"))
    faulty = []
    while env.now < 50_000.0 and not faulty:
        env.run(until=env.now + 1.0)
        faulty = [u for u in ("m1", "m2") if loop.active_faults(u)]
    unit = faulty[0]
    mode = {"m1": "jam", "m2": "crash"}[unit]
    assert loop.active_faults(unit) == (mode,) and plant.equipment[unit].faults >= 1
    assert not loop.apply(PackMLCommand(unit, "Reset"))
    assert _commands(plant)[-1][-1] == f"PackMLCommand: interlock: Reset with active fault {mode}"


def test_command_rows_keep_decision_and_apply_time(tmp_path):
    """With decision latency L, every command row of the controller is applied L after its
    decision and says when it was decided; the PackML replay of verification still reads
    them (its count of executed commands equals the PackML command rows)."""
    spec = 'name = "auto-recovery"\ndecision_latency_s = 5.0'
    res = run_scenario(load_scenario(write(tmp_path, plant_toml(spec, horizon=20_000.0))),
                       out_dir=tmp_path / "o")
    ev = pq.read_table(res.out_dir / "events.parquet").to_pylist()
    mine = [e for e in ev if e["kind"] in ("command", "command_rejected")
            and e["location"] == "auto-recovery"]
    assert len(mine) > 5
    for e in mine:
        m = re.search(r"; decided ([0-9.]+) s$", e["detail"])
        assert m, e
        assert e["time_s"] - float(m.group(1)) == pytest.approx(5.0, abs=1e-6)
    packml = [e for e in ev if e["kind"] == "command" and e["entity"] in ("m1", "m2")]
    unsafe = res.verification["checks"]["unsafe_commands"]
    assert unsafe["commands_executed"] == len(packml) and unsafe["unsafe"] == 0


REASONLESS = """
from darkfab.control import PackMLCommand


class Reasonless:
    \"\"\"Brings both units to Execute with commands that carry no reason.\"\"\"

    name = "reasonless"

    def reset(self, info):
        pass

    def decide(self, events, obs):
        out = []
        for e in events:
            if e.kind == "start":
                out += [PackMLCommand(u, "Reset") for u in ("m1", "m2")]
            elif e.kind == "state" and e.detail == "Idle":
                out.append(PackMLCommand(e.source, "Start"))
        return out
"""


def test_commands_without_reason_are_replayed_with_their_decision_time(tmp_path, monkeypatch):
    """A command row without a reason, applied after its decision (``"Start; decided <t> s"``),
    is still a PackML command to the verification's replay."""
    (tmp_path / "reasonless_ctl.py").write_text(REASONLESS)
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = 'name = "reasonless_ctl:Reasonless"\ndecision_latency_s = 2.5'
    res = run_scenario(load_scenario(write(tmp_path, plant_toml(spec, horizon=2_000.0))),
                       out_dir=tmp_path / "o", allow_code=True)
    ev = pq.read_table(res.out_dir / "events.parquet").to_pylist()
    mine = [e for e in ev if e["kind"] == "command" and e["location"] == "reasonless"]
    assert {e["detail"].split(";")[0] for e in mine} == {"Reset", "Start"}
    assert all(re.fullmatch(r"(Reset|Start); decided [0-9.]+ s", e["detail"]) for e in mine)
    assert len(mine) == 4
    packml = [e for e in ev if e["kind"] == "command" and e["entity"] in ("m1", "m2")]
    unsafe = res.verification["checks"]["unsafe_commands"]
    assert unsafe["commands_executed"] == len(packml) and unsafe["unsafe"] == 0


def test_no_decision_suffix_without_latency(tmp_path):
    res = run_scenario(load_scenario(write(tmp_path, plant_toml())), out_dir=tmp_path / "o")
    ev = pq.read_table(res.out_dir / "events.parquet").to_pylist()
    cmds = [e for e in ev if e["kind"] == "command"]
    assert cmds and not any("decided" in e["detail"] for e in cmds)


def test_decision_time_on_accepted_and_rejected_rows(tmp_path):
    plant = _plant(tmp_path, plant_toml('name = "do-nothing"'))
    loop = plant.control
    plant.model.env.run(until=100.0)
    assert not loop.apply(WakeUp(50.0), decided_s=97.5)
    assert loop.apply(WakeUp(150.0, "t"), decided_s=99.25)
    assert loop.apply(WakeUp(160.0, "u"), decided_s=100.0)  # decided now: no suffix
    got = [r[1:] for r in _commands(plant)[-3:]]
    assert got == [("command_rejected", "plant", "do-nothing",
                    "WakeUp: time 50.0 is in the past; decided 97.5 s"),
                   ("command", "plant", "do-nothing", "WakeUp 150 t; decided 99.25 s"),
                   ("command", "plant", "do-nothing", "WakeUp 160 u")]


# --- public methods used by the command path ----------------------------------------------
def test_buffer_take_reports_levels_hands_over_and_admits_waiting_puts():
    env = simpy.Environment()
    levels: list[tuple[float, int]] = []
    b = Buffer(env, "b", "n", capacity_units=2, on_level=lambda t, n: levels.append((t, n)))
    extra: list[int] = []
    b.add_level_listener(lambda t, n: extra.append(n))
    for x in ("u1", "u2"):
        assert b.try_put(x)
    waiting = b.put("u3")  # full: waits for room
    env.run(until=1.0)
    assert not waiting.triggered
    handed: list[tuple[str, int]] = []
    got = b.take(5, lambda u: handed.append((u, b.level)))
    assert got == ["u1", "u2"]  # FIFO, no more than there are
    assert handed == [("u1", 1), ("u2", 0)]  # each handed over after its level report
    assert levels[-3:] == [(1.0, 1), (1.0, 0), (1.0, 1)]  # ..., then u3 admitted
    assert extra == [n for _, n in levels]  # the added listener sees every change, after
    assert list(b.items) == ["u3"] and waiting.triggered
