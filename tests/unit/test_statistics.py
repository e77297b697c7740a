"""t-intervals and MSER-5 warm-up detection on synthetic series with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from darkfab.factory.statistics import mser5, t_interval


def test_t_interval_matches_textbook_formula():
    x = [1.0, 2.0, 4.0, 7.0]
    ci = t_interval(x, 0.95)
    s = np.std(x, ddof=1)
    assert ci.mean == pytest.approx(3.5)
    assert ci.half_width == pytest.approx(stats.t.ppf(0.975, 3) * s / 2.0)
    assert ci.n == 4 and ci.contains(3.5)


def test_t_interval_ignores_missing_and_needs_two_values():
    assert math.isnan(t_interval([1.0, None, float("nan")]).half_width)
    assert t_interval([]).n == 0


def test_mser5_finds_a_known_transient():
    rng = np.random.default_rng(20261126)
    n, transient = 4000, 600
    t = np.arange(n)
    # a linear ramp-down over the first `transient` observations, then stationary noise
    bias = np.where(t < transient, 20.0 * (1 - t / transient), 0.0)
    y = 10.0 + bias + rng.normal(0, 1.0, n)
    res = mser5(y)
    assert res.reliable
    # MSER stops where the remaining bias is small against the noise: near the end of the ramp
    assert 0.6 * transient <= res.truncate <= 1.2 * transient


def test_mser5_truncates_little_on_a_stationary_series():
    rng = np.random.default_rng(7)
    y = rng.normal(5.0, 1.0, 5000)
    res = mser5(y)
    assert res.truncate <= 0.1 * y.size


def test_mser5_flags_too_short_a_run():
    y = np.linspace(100.0, 0.0, 200)  # still trending at the end: no steady state
    assert not mser5(y).reliable
