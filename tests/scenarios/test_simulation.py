"""The step API (darkfab.scenarios.simulation): stepping in any pattern gives the event log of
run_scenario byte for byte; commands are validated like a controller's; close writes results."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from darkfab.control import PackMLCommand, SetPoint
from darkfab.scenarios import load_scenario, run_scenario
from darkfab.scenarios.simulation import Simulation

HOURS = 3600.0
CASES = {
    "packaging-line": ["scenario.horizon_s=86400"],  # 1 day, past the 12 h warm-up
    "cdc-line": ["scenario.horizon_s=21600", "scenario.warmup_s=3600"],  # 6 h
}


def _bytes(out: Path) -> bytes:
    return (out / "events.parquet").read_bytes()


def _uneven(sim: Simulation) -> None:
    """Advance in chunks of growing, irregular size (primes of seconds, then hours)."""
    t, k = 0.0, 0
    sizes = [1.0, 7.0, 13.0, 97.0, 1009.0, 3 * HOURS + 17.0, 0.5, 5 * HOURS]
    while not sim.done:
        t += sizes[k % len(sizes)]
        k += 1
        sim.advance_to(t)


def _steps_then_advance(sim: Simulation, n: int = 3000) -> None:
    """``step()`` ``n`` times, observing after each, then ``advance_to`` the horizon."""
    for _ in range(n):
        sim.step()
        sim.observe()
    sim.advance_to(sim.horizon_s)


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request, tmp_path_factory):
    name = request.param
    s = load_scenario(name, CASES[name])
    tmp = tmp_path_factory.mktemp(name)
    ref = run_scenario(s, out_dir=tmp / "run")
    return s, tmp, ref


@pytest.mark.parametrize("pattern", [_uneven, _steps_then_advance], ids=["uneven", "steps"])
def test_stepping_gives_run_scenarios_event_log(case, pattern):
    s, tmp, ref = case
    sim = Simulation.open(s, out_dir=tmp / pattern.__name__)
    pattern(sim)
    assert sim.now == s.scenario.horizon_s
    res = sim.close()
    assert _bytes(res.out_dir) == _bytes(ref.out_dir)
    assert not res.summary["partial"]
    for k in ("units_completed", "events"):
        if k in ref.summary:
            assert res.summary[k] == ref.summary[k]
    assert (res.out_dir / "verification.json").exists()
    assert res.verification["ok"] == ref.verification["ok"]


def test_step_goes_to_the_next_instant(tmp_path):
    s = load_scenario("packaging-line", CASES["packaging-line"])
    sim = Simulation.open(s, out_dir=tmp_path)
    times = [sim.step() for _ in range(200)]
    assert all(b > a for a, b in zip(times, times[1:]))  # one instant per step, in order
    sim.close()


def _hold_and_unhold(sim: Simulation, unit: str, t_hold: float, t_unhold: float) -> list:
    sim.advance_to(t_hold)
    out = [sim.command(PackMLCommand(unit, "Hold"))]
    sim.advance_to(t_unhold)
    out.append(sim.command(PackMLCommand(unit, "Unhold")))
    return out


def test_same_commands_same_log_whatever_the_stepping(tmp_path):
    s = load_scenario("cdc-line", CASES["cdc-line"])
    logs = []
    for tag, pre in (("a", None), ("b", 500)):
        sim = Simulation.open(s, out_dir=tmp_path / tag)
        if pre:
            for _ in range(pre):
                sim.step()
        res = _hold_and_unhold(sim, "cdc.press", 2 * HOURS, 2.5 * HOURS)
        assert all(r.accepted for r in res), res
        _uneven(sim) if tag == "b" else sim.advance_to(sim.horizon_s)
        logs.append(_bytes(sim.close().out_dir))
    assert logs[0] == logs[1]
    ev = pq.read_table(tmp_path / "a" / "events.parquet").to_pandas()
    cmd = ev[(ev.kind == "command") & (ev.entity == "cdc.press") & (ev.detail == "Hold")]
    assert len(cmd) == 1 and cmd.time_s.iloc[0] == 2 * HOURS
    assert cmd.location.iloc[0] == "api"  # the issuer


def test_command_is_validated_like_a_controllers(tmp_path):
    s = load_scenario("cdc-line", CASES["cdc-line"])
    with Simulation.open(s, out_dir=tmp_path) as sim:
        sim.advance_to(HOURS)
        assert sim.observe().equipment["cdc.press"].state.value == "Execute"
        bad = sim.command(PackMLCommand("cdc.press", "Unhold"))  # not Held: PackML refuses
        assert not bad.accepted and "Unhold" in bad.reason
        assert not sim.command(PackMLCommand("no-such-unit", "Hold"))
        rng = sim.observe()  # a set-point out of its range is refused with the range
        r = sim.command(SetPoint("cdc", "line_rate_kg_h", 1e6))
        assert not r.accepted and r.reason
        ok = sim.command(PackMLCommand("cdc.press", "Hold"), issuer="notebook")
        assert ok.accepted
        sim.step()
        assert sim.observe().equipment["cdc.press"].state.value == "Held"
        assert rng.time_s == HOURS
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["partial"] and summary["simulated_s"] < s.scenario.horizon_s
    ev = pq.read_table(tmp_path / "events.parquet").to_pandas()
    rej = ev[ev.kind == "command_rejected"]
    assert len(rej) >= 3


def test_observe_is_exact_by_default_and_draws_nothing(tmp_path):
    s = load_scenario("packaging-line", CASES["packaging-line"]
                      + ["controller.sensors={noise_sd_units = 2.0}"])
    a = Simulation.open(s, out_dir=tmp_path / "a")
    b = Simulation.open(s, out_dir=tmp_path / "b")
    for t in (3600.0, 7200.0, 30000.0):
        a.advance_to(t)
        b.advance_to(t)
        oa = a.observe()
        for _ in range(5):
            ob = b.observe()
        assert {n: o.queue_units for n, o in oa.equipment.items()} == \
            {n: o.queue_units for n, o in ob.equipment.items()}
        assert all(float(q).is_integer() for q in
                   (o.queue_units for o in oa.equipment.values()) if q is not None)
    a.advance_to(a.horizon_s)
    b.advance_to(b.horizon_s)
    assert _bytes(a.close().out_dir) == _bytes(b.close().out_dir)


def test_closed_simulation_refuses_to_advance(tmp_path):
    s = load_scenario("packaging-line", CASES["packaging-line"])
    sim = Simulation.open(s, out_dir=tmp_path)
    r1 = sim.close()
    assert sim.close() is r1
    with pytest.raises(RuntimeError):
        sim.advance_to(10.0)
