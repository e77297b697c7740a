"""Funnel plot: the one-tank boundary d* = −τ·ln(1 − L/Δ), grid decisions and the figure."""

from __future__ import annotations

import math

import numpy as np
import pytest

from darkfab.factory.funnel import funnel, funnel_boundary_s, funnel_figure, pulse_peak_fraction
from darkfab.factory.rtd import AxialDispersion, TanksInSeries


def test_funnel_one_tank_boundary():
    tau, lim = 90.0, 0.05
    r = TanksInSeries(tau, 1)
    mags = np.array([0.055, 0.08, 0.1, 0.2, 0.5, 1.0])
    data = funnel(r, mags, np.linspace(1, 400, 60), lim)
    expected = -tau * np.log(1 - lim / mags)
    assert data.boundary_s == pytest.approx(expected, rel=1e-8)
    for d in (5.0, 50.0, 300.0):
        assert pulse_peak_fraction(r, d) == pytest.approx(1 - math.exp(-d / tau), rel=1e-9)
    # grid decisions agree with the boundary
    assert np.array_equal(data.divert, data.durations_s[None, :] > expected[:, None])
    assert funnel_boundary_s(r, 0.04, lim) == math.inf


def test_funnel_figure_renders(tmp_path):
    data = funnel(AxialDispersion(60, 10, "closed"), np.linspace(0.02, 0.4, 12),
                  np.linspace(1, 200, 20), 0.05)
    assert np.all(np.diff(data.boundary_s[np.isfinite(data.boundary_s)]) < 0)
    fig = funnel_figure(data)
    out = tmp_path / "funnel.png"
    fig.savefig(out)
    assert out.stat().st_size > 1000
