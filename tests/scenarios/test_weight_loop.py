"""The press's weight loop (main compression force → fill depth) and the in-process control of
tablets (line_units.parquet): a 10 % step in the blend's bulk density, with and without the
loop."""

from __future__ import annotations

import math

import pyarrow.parquet as pq
import pytest

from darkfab.factory.tablet_press import TabletPress, kawakita_relative_density
from darkfab.factory.weight_control import ForceGauge, compaction_pressure_pa
from darkfab.scenarios import load_scenario, run_scenario

STEP_S = 6 * 3600.0


def _run(tmp_path, loop: bool, tag: str):
    s = load_scenario("cdc-line", [
        "scenario.warmup_s=0", "scenario.horizon_s=36000",
        f"continuous_lines.cdc.loops.weight_control={str(loop).lower()}",
        f"continuous_lines.cdc.disturbances=[{{time_s = {STEP_S}, bulk_density_factor = 1.1}}]"])
    return run_scenario(s, out_dir=tmp_path / tag)


def test_weight_returns_to_target_after_a_density_step(tmp_path):
    """With the loop, the mean tablet weight is back within ±1 % of target within minutes of a
    10 % density step (the IPC samples of the units made from an hour after the step); without
    it, tablets stay 10 % heavy. The units' IPC means are the sample means of 20 tablets of
    RSD 1 %: each within a few 0.22 % standard errors of the true mean."""
    on, off = _run(tmp_path, True, "on"), _run(tmp_path, False, "off")
    target = on.summary["continuous_lines"]["cdc"]["weight_loop"]["target_weight_mg"]
    for res, want in ((on, 1.0), (off, 1.1)):
        rows = pq.read_table(res.out_dir / "line_units.parquet").to_pylist()
        before = [r["weight_mean_mg"] / target for r in rows if r["time_s"] < STEP_S - 600]
        after = [r["weight_mean_mg"] / target for r in rows if r["time_s"] > STEP_S + 3600]
        assert len(before) > 10 and len(after) > 10
        assert sum(before) / len(before) == pytest.approx(1.0, abs=0.01)
        assert sum(after) / len(after) == pytest.approx(want, abs=0.01)
        for r in rows:  # 20 tablets of 1 % RSD: the sample RSD is near 1 % (away from the step)
            if not STEP_S - 600 < r["time_s"] < STEP_S + 3600:
                assert 0.3 < r["weight_rsd_pct"] < 2.0
    k = on.summary["continuous_lines"]["cdc"]["weight_loop"]
    assert k["tablet_weight_mg"] == pytest.approx(target, rel=0.01)
    assert 0 < k["samples"] < 200  # the loop rests once settled: event-driven
    assert k["fill_depth_mm"] == pytest.approx(7.86 / 1.1, rel=0.01)  # ρ·A·h back to W*
    # the tablets' content follows their weight: heavy tablets carry more API
    rows_off = pq.read_table(off.out_dir / "line_units.parquet").to_pylist()
    late = [r["content_mean_pct"] for r in rows_off if r["time_s"] > STEP_S + 3600]
    assert sum(late) / len(late) == pytest.approx(110.0, abs=1.5)
    assert on.summary["mass_balance_rel_error"] < 1e-9


def test_force_gauge_inverts_the_compaction_law():
    """At the punch separation set for the nominal weight, the nominal weight is compressed at
    the nominal pressure (Kawakita's law forward, the gauge's inverse back), and a heavier
    tablet takes more force."""
    press = TabletPress(stations=36, turret_speed_rpm=100, die_diameter_m=0.009,
                        fill_depth_m=0.00786, fill_density_kg_m3=500, true_density_kg_m3=1500,
                        feed_frame_holdup_kg=0.2)
    p0 = 150e6
    g = ForceGauge(press, press.tablet_weight_kg, p0)
    area = math.pi * 0.0045 ** 2
    assert g.force_n(press.tablet_weight_kg) == pytest.approx(p0 * area, rel=1e-9)
    d = kawakita_relative_density(80e6, press.kawakita_a, press.kawakita_b_per_pa)
    assert compaction_pressure_pa(press, d) == pytest.approx(80e6, rel=1e-9)
    assert g.force_n(1.05 * press.tablet_weight_kg) > g.force_n(press.tablet_weight_kg)
    assert g.sensitivity_n_per_kg() > 0
