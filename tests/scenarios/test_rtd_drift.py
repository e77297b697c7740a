"""The plant's hold-up law apart from the model's (docs/twin.md, ``blender_speed_exponent_delta``
and ``blender_flow_exponent_delta``): after a blender speed change the plant's true output and
the soft sensor's prediction follow their own laws, τ(N) = τ₀·(N₀/N)^b with the true b and the
nominal b, measured from each one's response to a tracer step."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from darkfab.agents.line.supervision import LineSupervision
from darkfab.control import SetPoint
from darkfab.scenarios import builder, load_scenario, run_scenario
from darkfab.scenarios.simulation import Simulation

B_NOM = 0.5  # cdc-line's blender speed exponent (the model's)
DELTA_B = 0.3  # the plant's: 0.8
N0, N1 = 250.0, 400.0  # rpm: the blender's speed, and after the set-point change
T_SPEED, T_STEP, T_END = 60.0, 900.0, 2400.0
STEP_PCT = 4.0  # the API feeder's ratio step (content 104 %: in spec, no PAT hold)


def _scenario(delta_b: float):
    exc = -STEP_PCT * 0.10 / 0.89  # the excipient down by the same mass flow: the rate stays
    return load_scenario("cdc-line", [
        "scenario.warmup_s=0", f"scenario.horizon_s={T_END + 60}",
        f"continuous_lines.cdc.mismatch.blender_speed_exponent_delta={delta_b}",
        "continuous_lines.cdc.press_hopper.level_control=false",  # the line rate stays put
        "continuous_lines.cdc.control_interval_s=3600",  # history kept for the whole response
        "continuous_lines.cdc.feeders.api.noise_sd=0",  # a clean step response
        "continuous_lines.cdc.feeders.excipient.noise_sd=0",
        "continuous_lines.cdc.feeders.lubricant.noise_sd=0",
        "continuous_lines.cdc.feeders.excipient.high_level_kg=60",  # no refill before T_END
        f"continuous_lines.cdc.tracer=[{{time_s={T_STEP}, size_pct={STEP_PCT}}}, "
        f"{{time_s={T_STEP}, feeder=\"excipient\", size_pct={exc}}}]"])


def _mean_residence_s(ts: np.ndarray, y: np.ndarray, api: list[int]) -> float:
    """First moment of the content's step response: ∫ (1 − F) dt after the step, F the
    normalised content step from its value at the step to +STEP_PCT %."""
    c = y[:, api].sum(axis=1) / y.sum(axis=1)
    f = (c - c[0]) / (c[0] * STEP_PCT / 100.0)
    assert f[-1] == pytest.approx(1.0, abs=1e-6)  # the response is complete by T_END
    return float(np.trapezoid(1.0 - f, ts))


@pytest.fixture(scope="module")
def responses(tmp_path_factory):
    out = tmp_path_factory.mktemp("rtd_drift")
    sim = Simulation.open(_scenario(DELTA_B), out_dir=out)
    line = sim.plant.lines["cdc"]
    sim.advance_to(T_SPEED)
    assert sim.command(SetPoint("cdc.blender", "speed_rpm", N1))
    sim.advance_to(T_END)
    ts = np.linspace(T_STEP, T_END, 6001)
    assert ts[0] >= max(line.comp.valid_from, line.soft.comp.valid_from)
    true = _mean_residence_s(ts, line.comp.output(ts), line.engine.channels_of("api"))
    model = _mean_residence_s(ts, line.soft.output(ts), line.soft.api_idx)
    res = sim.close()
    return line, true, model, res


def test_plant_and_model_follow_their_own_speed_laws(responses):
    """τ after the speed change: the plant's true line RTD mean × (N₀/N)^(b + δb), the
    model's nominal mean × (N₀/N)^b (the whole line RTD is stretched, docs/twin.md)."""
    line, true, model, _ = responses
    tau0_true, tau0_model = line.plant_rtd.mean_s, line.rtd.mean_s
    assert tau0_true == pytest.approx(tau0_model, rel=1e-12)  # τ₀ apart only by the law
    assert true == pytest.approx(tau0_true * (N0 / N1) ** (B_NOM + DELTA_B), rel=1e-6)
    assert model == pytest.approx(tau0_model * (N0 / N1) ** B_NOM, rel=1e-6)
    assert model / true == pytest.approx((N1 / N0) ** DELTA_B, rel=1e-6)  # 15 % apart


def test_mass_balance_holds_with_the_laws_apart(responses):
    assert responses[3].summary["mass_balance_rel_error"] < 1e-9


def test_zero_deltas_are_no_mismatch():
    """Zero deltas (the defaults) leave the line the ideal plant: no soft sensor, no second
    clock (so no extra CPU time)."""
    s = load_scenario("cdc-line", ["continuous_lines.cdc.mismatch.blender_speed_exponent_delta=0",
                                   "continuous_lines.cdc.mismatch.blender_flow_exponent_delta=0"])
    assert s.continuous_lines["cdc"].mismatch.is_zero()
    s = load_scenario("cdc-line", ["continuous_lines.cdc.mismatch.blender_flow_exponent_delta=0.2"])
    assert not s.continuous_lines["cdc"].mismatch.is_zero()


def test_a_model_clock_on_the_plant_law_is_the_plant_clock(tmp_path, monkeypatch):
    """The soft sensor forced onto a flow clock of its own with the plant's law: moved by the
    same starts, stops and commands, it is the shared clock, and the run (1 day, its stops and
    restarts) the same event log, byte for byte."""
    monkeypatch.setattr(builder, "needs_twin", lambda spec: True)
    day = ["scenario.warmup_s=0", "scenario.horizon_s=86400"]
    run_scenario(load_scenario("cdc-line", day), out_dir=tmp_path / "shared")
    plain = LineSupervision.set_flow_laws
    owned = []

    def own(self, plant, model):
        plain(self, plant, model)
        self.soft.own_clock(model)
        owned.append(self.soft)

    monkeypatch.setattr(LineSupervision, "set_flow_laws", own)
    run_scenario(load_scenario("cdc-line", day), out_dir=tmp_path / "own")
    assert owned and owned[0].clock is not owned[0].plant_clock
    a, b = (pq.read_table(tmp_path / d / "events.parquet") for d in ("shared", "own"))
    assert a.num_rows > 1000 and a.equals(b)
