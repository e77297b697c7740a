"""Blender hold-up and RTD; tablet press weight, rate, compaction and strength."""

from __future__ import annotations

import math

import pytest

from darkfab.factory import tablet_press as tp
from darkfab.factory.blender import BlenderParams, blender_rtd, holdup_kg, mean_residence_time_s
from darkfab.factory.rtd import AxialDispersion, TanksInSeries


def test_blender_holdup_and_rtd():
    p = BlenderParams(holdup_ref_kg=0.5, mass_flow_ref_kg_s=25 / 3600, speed_ref_rpm=250,
                      flow_exponent=0.8, speed_exponent=0.6, model="tanks", n_tanks=3)
    m = 25 / 3600
    assert holdup_kg(p, m, 250) == pytest.approx(0.5)
    assert holdup_kg(p, m, 500) == pytest.approx(0.5 * 0.5**0.6)
    assert holdup_kg(p, m, 500) < holdup_kg(p, m, 250)  # faster impeller, less hold-up
    assert holdup_kg(p, 2 * m, 250) == pytest.approx(0.5 * 2**0.8)
    tau = mean_residence_time_s(p, m, 250)
    assert tau == pytest.approx(0.5 / m)
    r = blender_rtd(p, m, 250)
    assert isinstance(r, TanksInSeries) and r.mean_s == pytest.approx(tau) and r.n == 3
    q = BlenderParams(0.5, m, 250, model="closed", peclet=12)
    rq = blender_rtd(q, m, 250)
    assert isinstance(rq, AxialDispersion) and rq.mean_s == pytest.approx(0.5 / m)


def test_press_weight_rate_and_feed_frame():
    press = tp.TabletPress(stations=36, turret_speed_rpm=50, die_diameter_m=0.01,
                           fill_depth_m=0.008, fill_density_kg_m3=500, true_density_kg_m3=1500,
                           feed_frame_holdup_kg=0.2)
    w = 500 * math.pi * 0.01**2 / 4 * 0.008
    assert press.tablet_weight_kg == pytest.approx(w)
    assert press.tablets_per_s == pytest.approx(30.0)
    assert press.mass_flow_kg_s == pytest.approx(30 * w)
    assert press.feed_frame_rtd().mean_s == pytest.approx(0.2 / (30 * w))


def test_press_compaction_and_strength():
    assert tp.kawakita_relative_density(0.0, 0.6, 1e-7) == pytest.approx(0.4)
    assert tp.kawakita_relative_density(1e15, 0.6, 1e-7) == pytest.approx(1.0, rel=1e-6)
    b, pr = 2e-8, 1.5e8
    c = 0.6 * b * pr / (1 + b * pr)
    assert tp.kawakita_relative_density(pr, 0.6, b) == pytest.approx(0.4 / (1 - c))
    d = tp.heckel_relative_density(1e8, 1e-8, 0.5)
    assert math.log(1 / (1 - d)) == pytest.approx(1e-8 * 1e8 + 0.5)
    assert tp.ryshkewitch_duckworth(0.0, 5e6, 8) == pytest.approx(5e6)
    assert tp.ryshkewitch_duckworth(0.1, 5e6, 8) == pytest.approx(5e6 * math.exp(-0.8))
    assert tp.kuentz_leuenberger(1.0, 4e6, 0.4) == pytest.approx(4e6)
    assert tp.kuentz_leuenberger(0.4, 4e6, 0.4) == pytest.approx(0.0, abs=1e-9)
    assert tp.kuentz_leuenberger(0.3, 4e6, 0.4) == 0.0
    assert tp.breaking_force_n(2e6, 0.01, 0.004) == pytest.approx(2e6 * math.pi * 0.01 * 0.004 / 2)
    press = tp.TabletPress(36, 50, 0.01, 0.008, 500, 1500, 0.2, compaction="heckel",
                           strength="kuentz", sigma0_pa=4e6)
    lo, hi = press.quality(5e7), press.quality(2e8)
    assert hi.rel_density > lo.rel_density and hi.breaking_force_n > lo.breaking_force_n
    assert hi.thickness_m == pytest.approx(
        hi.weight_kg / (1500 * hi.rel_density * math.pi * 0.01**2 / 4))
