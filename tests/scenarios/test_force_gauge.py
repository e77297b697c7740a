"""The press's force gauge as an instrument (docs/twin.md): the weight loop reads the main
compression force with noise and a calibration bias. With the shipped gauge (cdc-line-mismatch)
the loop still holds the tablet weight within ±1 % after a 10 % bulk-density step; with a
larger bias it settles where the biased reading meets the set-point, W/W* ≈ 1 − b/ε with
ε = dlnF/dlnW of the gauge (the compaction law), within the loop's deadband."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
from scipy.optimize import brentq

from darkfab.factory.weight_control import ForceGauge
from darkfab.scenarios import load_scenario, run_scenario
from darkfab.scenarios.builder import line_models

STEP_S = 3 * 3600.0


def _run(tmp_path, tag: str, *sets: str):
    s = load_scenario("cdc-line-mismatch", [
        "scenario.warmup_s=0", "scenario.horizon_s=25200",
        f"continuous_lines.cdc.disturbances=[{{time_s = {STEP_S}, bulk_density_factor = 1.1}}]",
        *sets])
    return s, run_scenario(s, out_dir=tmp_path / tag, verify_run=False)


def test_weight_loop_holds_weight_with_the_shipped_force_gauge(tmp_path):
    s, res = _run(tmp_path, "shipped")
    ins = s.continuous_lines["cdc"].instruments
    assert ins.force_noise_pct > 0 and ins.force_bias_pct != 0  # the shipped gauge is not ideal
    k = res.summary["continuous_lines"]["cdc"]["weight_loop"]
    target = k["target_weight_mg"]
    rows = pq.read_table(res.out_dir / "line_units.parquet").to_pylist()
    after = [r["weight_mean_mg"] / target for r in rows if r["time_s"] > STEP_S + 1800]
    assert len(after) > 5
    assert all(abs(w - 1.0) < 0.01 for w in after)  # every unit's IPC mean within ±1 %
    assert k["tablet_weight_mg"] / target == pytest.approx(1.0, abs=0.01)
    assert k["samples"] > 0


def test_a_biased_gauge_moves_the_weight_by_bias_over_elasticity(tmp_path):
    bias = 0.05
    s, res = _run(tmp_path, "bias", f"continuous_lines.cdc.instruments.force_bias_pct={100 * bias}")
    spec = s.continuous_lines["cdc"]
    press = line_models(spec)[0]
    g = ForceGauge(press, press.tablet_weight_kg, spec.press.compaction_pressure_mpa * 1e6)
    eps = g.sensitivity_n_per_kg() * g.weight_kg / g.force_n(g.weight_kg)
    assert 3.0 < eps < 20.0
    w0, f0 = g.weight_kg, g.force_n(g.weight_kg)
    exact = brentq(lambda r: (1.0 + bias) * g.force_n(r * w0) - f0, 0.9, 1.0)  # F_read = F*
    assert exact == pytest.approx(1.0 - bias / eps, abs=1e-3)  # the linearised offset
    k = res.summary["continuous_lines"]["cdc"]["weight_loop"]
    w = k["tablet_weight_mg"] / k["target_weight_mg"]
    # settled: |weight error seen| < deadband (0.1 %), the reading's noise ≪ that
    assert w == pytest.approx(exact, abs=0.0015)
    assert w < 0.996  # well apart from an unbiased gauge's 1 ± 0.1 %
