"""The supervisor over the wire: ``darkfab supervise`` (a separate process, an OPC UA client of
``darkfab serve --lockstep --remote-controller``, another process) gives the same verification
verdict as the supervisor in the process on a 2-day fault campaign, and, since lockstep stops
the plant at each of its decisions and the observation crosses the wire losslessly, the same
event log row for row (only the run id differs). Plus the wire encoding and the handshake in
the process."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

pytest.importorskip("asyncua")

from opcua_processes import Served, darkfab, free_port  # noqa: E402

from darkfab.control import (Acknowledge, ChangeMode, PackMLCommand, Quarantine,  # noqa: E402
                             Sequence, SetPoint, WakeUp)
from darkfab.scenarios import load_scenario  # noqa: E402
from darkfab.scenarios.remote_control import open_remote  # noqa: E402
from darkfab.scenarios.runner import run_scenario  # noqa: E402
from darkfab.scenarios.serve import serve_simulation  # noqa: E402
from darkfab.scenarios.simulation import Simulation  # noqa: E402
from darkfab.scenarios.supervise import supervise  # noqa: E402
from darkfab.scenarios.wire import (command_call, observation_from_json,  # noqa: E402
                                    observation_json, plant_info_from_json, plant_info_json)

CAMPAIGN = str(Path(__file__).resolve().parents[1] / "data" / "fault-campaign-2d.toml")


def _verdict(folder: Path) -> dict:
    v = json.loads((folder / "verification.json").read_text())
    v.pop("run_id")
    return v


def _events(folder: Path):
    return pq.read_table(folder / "events.parquet").drop(["run_id"])


@pytest.mark.timeout(900)
def test_supervise_over_opcua_gives_the_in_process_verdict(tmp_path):
    s = load_scenario(CAMPAIGN)
    assert s.scenario.horizon_s == 2 * 86400.0 and s.controller.name == "auto-recovery"
    assert len(s.faults) >= 16  # every scripted fault type of the shipped campaign
    local = run_scenario(s, out_dir=tmp_path / "local")
    with Served(tmp_path, CAMPAIGN, "--lockstep", "--remote-controller", "--cycle-s", "3600",
                "--out", str(tmp_path / "remote")) as server:
        r = darkfab("supervise", server.url, "--timeout", "60", timeout_s=600)
        assert r.returncode == 0, r.stderr
        assert "Traceback" not in r.stderr
        assert server.wait(120) == 0, server.err()
    assert "decisions" in r.stdout and "(0 refused)" in r.stdout
    remote = tmp_path / "remote"
    summary = json.loads((remote / "summary.json").read_text())
    assert not summary["partial"] and summary["simulated_s"] == s.scenario.horizon_s
    # the requirement: the same verdict, fault by fault
    v_local, v_remote = _verdict(local.out_dir), _verdict(remote)
    assert v_local["ok"] is True, v_local["violations"]
    assert v_remote == v_local
    # lockstep and a complete observation: the same run, event for event
    a, b = _events(local.out_dir), _events(remote)
    assert a.num_rows == b.num_rows and a.equals(b)
    issuers = set(b.column("location").to_pylist())
    assert "auto-recovery" in issuers and not any(str(i).startswith("opcua:") for i in issuers)


def test_observation_and_plant_info_cross_the_wire_losslessly(tmp_path):
    s = load_scenario(CAMPAIGN, ["scenario.horizon_s=130000"])
    sim = Simulation.open(s, out_dir=tmp_path)
    sim.advance_to(125_000.0)  # after the OOS lot: lot records, alarms, a Held press
    obs = sim.plant.control.observe()
    back = observation_from_json(observation_json(obs))
    for field in ("equipment", "buffers", "robots", "feeders", "alarms", "lines", "orders"):
        assert getattr(back, field) == getattr(obs, field), field
    assert back.quality == obs.quality and back.time_s == obs.time_s
    assert set(back.alarms) == set(obs.alarms) and all(isinstance(k, int) for k in back.alarms)
    assert list(back.lots) == list(obs.lots) and len(obs.lots) > 1
    for lot in obs.lots:
        assert back.lots[lot] == obs.lots[lot]
    raws = {r for lot in obs.lots for r in obs.lots[lot].raw_lots}
    assert raws
    for raw in raws:
        assert back.lots.containing(raw) == obs.lots.containing(raw)
        assert back.lots.containing(raw, 0.05) == obs.lots.containing(raw, 0.05)
        assert back.lots.last_seen(raw) == obs.lots.last_seen(raw)
    sim.close()


def test_plant_info_round_trip(tmp_path):
    from darkfab.factory.random_streams import RandomStreams
    s = load_scenario(CAMPAIGN, ["scenario.horizon_s=30000"])
    sim, remote = open_remote(s, out_dir=tmp_path)
    try:
        info = plant_info_from_json(remote.info_json)
        assert remote.name == "auto-recovery" and remote.wakes_on
        assert info.equipment["cdc.press"].name == "cdc.press"
        assert info.setpoints["cdc"]["line_rate_kg_h"].high > 0
        assert info.feeds and info.feeders and info.horizon_s == 30000.0
        expect = RandomStreams(s.scenario.seed, 0).stream("controller.rng").random(3)
        assert list(info.rng.random(3)) == list(expect)
        again = plant_info_from_json(plant_info_json(info, s.scenario.seed, 0))
        assert again.equipment == info.equipment and again.setpoints == info.setpoints
        assert again.feeds == info.feeds and again.feeders == info.feeders
    finally:
        sim.close()


@pytest.mark.parametrize("cmd, call", [
    (PackMLCommand("cdc.press", "Hold", "why"), ("cdc.press", "Hold", ["why"])),
    (SetPoint("cdc", "line_rate_kg_h", 40.0), ("cdc", "SetPoint", ["line_rate_kg_h", 40.0, ""])),
    (ChangeMode("cartoner", "Maintenance"), ("cartoner", "SetUnitMode", ["Maintenance", ""])),
    (WakeUp(10.0, "t"), (None, "WakeUp", [10.0, "t", ""])),
    (Acknowledge(3, "seen"), (None, "Acknowledge", [3, "seen"])),
    (Quarantine("lot-1"), (None, "Quarantine", ["lot-1", ""])),
    (Sequence("cartoner", ("a", "b")), (None, "Sequence", ["cartoner", ["a", "b"], ""])),
])
def test_each_command_is_one_method_call(cmd, call):
    assert command_call(cmd) == call


class _Probe:
    """A controller that slows the line, holds and unholds the press, on its own timers."""

    name = "wire-probe"
    wakes_on = frozenset({"start", "timer"})

    def reset(self, info) -> None:
        self.nominal = None

    def decide(self, events, obs):
        out = []
        for e in events:
            if e.kind == "start":
                out.append(WakeUp(e.time_s + 600.0, "slow", "probe: timer"))
            elif e.kind == "timer" and e.detail == "slow":
                rate = obs.equipment["cdc"].values["line_rate_kg_h"].value
                out += [SetPoint("cdc", "line_rate_kg_h", 0.9 * rate, "probe: slower"),
                        WakeUp(e.time_s + 600.0, "hold")]
            elif e.kind == "timer" and e.detail == "hold":
                out += [PackMLCommand("cdc.press", "Hold", "probe: hold"),
                        WakeUp(e.time_s + 600.0, "unhold")]
            elif e.kind == "timer" and e.detail == "unhold":
                out.append(PackMLCommand("cdc.press", "Unhold", "probe: unhold"))
        return out


def test_supervise_in_process_every_command_type_reaches_the_plant(tmp_path):
    """A controller over the wire whose commands are WakeUps, a set-point and PackML commands:
    each arrives with its reason, at the decision's time, issued by the served controller's
    name (``do-nothing``: woken on every event)."""
    s = load_scenario("cdc-line", ["scenario.horizon_s=7200", "scenario.warmup_s=0",
                                   "controller.name=do-nothing"])

    async def go():
        sim, remote = open_remote(s, out_dir=tmp_path)
        port = free_port()
        ready = asyncio.Event()
        task = asyncio.create_task(serve_simulation(
            sim, lockstep=True, cycle_s=600.0, port=port, remote=remote,
            on_ready=lambda _u: ready.set(), linger_s=5))
        await asyncio.wait_for(ready.wait(), 60)
        st = await asyncio.wait_for(supervise(f"opc.tcp://127.0.0.1:{port}/darkfab/",
                                              controller=_Probe(), timeout_s=30), 300)
        result, _ = await asyncio.wait_for(task, 120)
        return st, result
    st, result = asyncio.run(go())
    assert st.decisions >= 4 and st.refused == 0 and st.controller == "wire-probe"
    ev = pq.read_table(tmp_path / "events.parquet").to_pandas()
    mine = ev[(ev.kind == "command") & (ev.location == "do-nothing")]
    assert any("probe: slower" in d for d in mine.detail), list(mine.detail)
    hold = mine[mine.detail.str.contains("probe: hold")]
    unhold = mine[mine.detail.str.contains("probe: unhold")]
    assert len(hold) == 1 and len(unhold) == 1, list(mine.detail)
    assert unhold.time_s.iloc[0] - hold.time_s.iloc[0] == pytest.approx(600.0)
    assert hold.time_s.iloc[0] == pytest.approx(1200.0)  # start at 0, timers at 600, 1200
