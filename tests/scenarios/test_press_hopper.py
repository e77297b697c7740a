"""The press hopper and its level loop (level → line rate): after a press-speed step the loop
brings the level back and the line rate to the press's new draw; with the loop off a mismatch
fills or drains the hopper at exactly that rate until an interlock; the mass balance closes
with the hopper's hold-up; in balance the hopper changes nothing."""

from __future__ import annotations

import math

import pyarrow.parquet as pq
import pytest

from darkfab.agents.line import line as line_module
from darkfab.factory.level_control import HopperLevel, LevelPI, simc_level_tuning
from darkfab.scenarios import load_scenario, run_scenario

PROBE = '''
from darkfab.control import WakeUp
from darkfab.control.commands import SetPoint
from darkfab.control.supervisor import AutoRecoverySupervisor

class Probe(AutoRecoverySupervisor):
    """The built-in supervisor, plus: at each time of SCRIPT send its set-points and record
    the observation."""
    SCRIPT = {script!r}
    seen = []

    def reset(self, info):
        super().reset(info)
        type(self).seen = []
        self.started = False

    def decide(self, events, obs):
        out = super().decide(events, obs)
        if not self.started:
            out += [WakeUp(t, f"probe:{{t!r}}") for t in sorted(self.SCRIPT)]
            self.started = True
        for e in events:
            if e.kind == "timer" and e.detail.startswith("probe:"):
                t = float(e.detail[6:])
                type(self).seen.append((obs.time_s, obs.equipment))
                out += [SetPoint(*c[1:]) for c in self.SCRIPT[t]]
            if e.kind == "command_rejected":
                type(self).seen.append(("rejected", e.detail))
        return out
'''
T0 = 3600.0
NO_FAILURES = ["scenario.warmup_s=0", "continuous_lines.cdc.failures=[]"]


def _run(tmp_path, controller_module, script, hours, name, extra=()):
    controller_module(name, PROBE.format(script=script))
    s = load_scenario("cdc-line", [*NO_FAILURES, f"scenario.horizon_s={hours * 3600.0}",
                                   f"controller.name={name}:Probe", *extra])
    res = run_scenario(s, out_dir=tmp_path / name, allow_code=True)
    import importlib
    return s, res, importlib.import_module(name).Probe


def _events(res, kind):
    return [r for r in pq.read_table(res.out_dir / "events.parquet").to_pylist()
            if r["kind"] == kind]


def test_loop_brings_level_back_after_turret_step(tmp_path, controller_module):
    """Turret 100 → 90 rpm at 1 h: the press draws 10 % less; the loop moves the line rate to
    the press's new draw, stations × ω × W (computed here from the press's spec), and the level
    back within its deadband; it then rests (few samples, none in the last hour)."""
    script = {T0: [("sp", "cdc.press", "turret_speed_rpm", 90.0, "test")],
              T0 + 2 * 3600.0: [], T0 + 3 * 3600.0: []}
    s, res, probe = _run(tmp_path, controller_module, script, 4.5, "probe_hopper_step")
    spec = s.continuous_lines["cdc"]
    demand_kg_h = 3600.0 * spec.mass_flow_kg_s() * 90.0 / spec.press.turret_speed_rpm
    seen = {t: eq for t, eq in probe.seen if t != "rejected"}
    hp = spec.press_hopper
    for t in (T0 + 2 * 3600.0, T0 + 3 * 3600.0):
        v = seen[t]["cdc.press"].values
        assert abs(v["hopper_level_kg"].value - hp.setpoint_kg) <= hp.deadband_kg + 1e-9
        # settled: the line rate is the press's draw (the loop's last move, feedforward)
        assert v["line_rate_kg_h"].value == pytest.approx(demand_kg_h, rel=1e-12)
        assert v["turret_speed_rpm"].value == 90.0
    k = res.summary["continuous_lines"]["cdc"]["press_hopper"]
    assert 0 < k["loop_samples"] < 150
    assert k["low_alarms"] == k["high_alarms"] == 0
    steps = [r["time_s"] for r in _events(res, "line_rate")]
    assert steps and min(steps) > T0 and max(steps) < T0 + 2 * 3600.0
    assert res.summary["mass_balance_rel_error"] < 1e-9


@pytest.mark.parametrize("rpm", [95.0, 105.0])
def test_loop_off_mismatch_fills_or_drains_at_the_mismatch(tmp_path, controller_module, rpm):
    """Loop off, turret to ``rpm`` at 1 h: the hopper fills (95) or drains (105) at
    |ṁ_line − ṁ_press| = 5 % of 54 kg/h; the high (low) alarm is raised at the analytic time
    t0 + 2 kg / mismatch; then the feed holds (the press is starved) until the level is back at
    its set-point, again at the analytic time."""
    name = f"probe_hopper_off_{int(rpm)}"
    s, res, _ = _run(tmp_path, controller_module,
                     {T0: [("sp", "cdc.press", "turret_speed_rpm", rpm, "test")]}, 3.0, name,
                     ["continuous_lines.cdc.press_hopper.level_control=false"])
    spec = s.continuous_lines["cdc"]
    hp = spec.press_hopper
    m_line = spec.mass_flow_kg_s()
    m_press = m_line * rpm / spec.press.turret_speed_rpm
    mismatch = abs(m_line - m_press)
    high = rpm < spec.press.turret_speed_rpm
    cond = "press_hopper_high" if high else "press_hopper_low"
    limit = hp.high_alarm_kg if high else hp.low_alarm_kg
    raised = [r["time_s"] for r in _events(res, "alarm") if r["entity"] == "cdc.press"
              and r["detail"].startswith(cond)]
    cleared = [r["time_s"] for r in _events(res, "alarm_cleared") if r["entity"] == "cdc.press"
               and r["detail"] == cond]
    t_alarm = T0 + abs(limit - hp.setpoint_kg) / mismatch
    stops = [r["time_s"] for r in _events(res, "line") if T0 < r["time_s"] < t_alarm - 1e-6]
    assert not stops  # nothing else interrupted the ramp: the analytic time holds
    assert raised[0] == pytest.approx(t_alarm, rel=1e-9)
    # back at the set-point: the press alone drains it (high), the feed alone fills it (low)
    back = abs(limit - hp.setpoint_kg) / (m_press if high else m_line)
    assert cleared[0] == pytest.approx(t_alarm + back, rel=1e-9)
    assert len(raised) >= 2  # and again: the mismatch stays
    k = res.summary["continuous_lines"]["cdc"]
    assert k["press_hopper"]["level_control"] is False
    assert k["press_hopper"]["loop_samples"] == 0
    assert res.summary["mass_balance_rel_error"] < 1e-9
    mb = k["mass_balance"]
    assert mb["press_hopper_kg"] != pytest.approx(hp.setpoint_kg)  # mid-cycle: it counts


def test_in_balance_the_hopper_changes_nothing(tmp_path, monkeypatch):
    """The default line with its hopper (loop on, press and feed in balance) gives the KPIs of
    the same line without a hopper model (the press drawing the feed ideally)."""
    s = load_scenario("cdc-line", ["scenario.horizon_s=43200"])
    with_hopper = run_scenario(s, out_dir=tmp_path / "with").summary["continuous_lines"]["cdc"]
    monkeypatch.setattr(line_module.ContinuousLine, "set_press_hopper",
                        lambda self, *a, **k: None)
    ideal = run_scenario(s, out_dir=tmp_path / "ideal").summary["continuous_lines"]["cdc"]
    hop = with_hopper.pop("press_hopper")
    assert hop["loop_samples"] == 0 and hop["level_kg"] == hop["setpoint_kg"]
    for k in ("continuous_model_wall_s", "continuous_model_cpu_s"):
        with_hopper.pop(k), ideal.pop(k)
    for k in ("press_hopper_initial_kg", "press_hopper_kg"):
        with_hopper["mass_balance"].pop(k)
    assert with_hopper == ideal


def test_level_and_pi_against_theory():
    """The level is exact between events (crossing times by hand); the PI on dL/dt = u − d,
    simulated sample by sample, removes a step in d with no offset (integral action) and
    does not bump at the start (first move Kc·T/Ti·e₀)."""
    h = HopperLevel(2.0, 5.0, 0.0)
    h.set_flows(10.0, 0.015, 0.010)
    assert h.level(110.0) == pytest.approx(2.5, rel=1e-15)
    assert h.time_to(4.5) == pytest.approx(10.0 + 2.5 / 0.005, rel=1e-15)
    assert h.time_to(1.0) == math.inf
    kc, ti = simc_level_tuning(120.0, 10.0)
    assert kc == pytest.approx(1 / 125.0) and ti == pytest.approx(500.0)
    pi = LevelPI(2.5, kc, ti, 10.0, 0.01, 0.0, 1.0)
    pi.start()
    u, d, level = 0.015, 0.0135, 2.5  # the draw steps down 10 %
    first = pi.step(2.6, u)
    assert first == pytest.approx(u + kc * 10.0 / ti * (2.5 - 2.6))  # no proportional kick
    pi.start()
    peak = 0.0
    for _ in range(2000):  # 20000 s ≫ Ti
        level += (u - d) * 10.0
        peak = max(peak, level - 2.5)
        u = pi.step(level, u)
    assert u == pytest.approx(d, rel=1e-6) and level == pytest.approx(2.5, abs=1e-6)
    # SIMC for an integrating process: the peak deviation of a load step Δd is ≈ Δd·(τc+θ)·1.4
    assert 0 < peak < 2.0 * 0.0015 * 125.0
